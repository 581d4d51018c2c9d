// node-postgres against the pgstripe proxy. Run by integration/clients_test.go
// with PGSTRIPE_PROXY_URL set; prints one JSON object with what each step saw
// (the Go test checks it). Every query with values uses the extended protocol
// (Parse/Bind/Execute with $n parameters), as node-postgres does.
'use strict';
const { Client } = require('pg');

const tag = process.env.PGSTRIPE_TAG || 'node';

async function main() {
  const client = new Client({ connectionString: process.env.PGSTRIPE_PROXY_URL });
  const notices = [];
  client.on('notice', (n) => notices.push({ code: n.code, message: n.message }));
  await client.connect();
  const out = { notices };
  const errorOf = async (sql, params) => {
    try {
      const r = await client.query(sql, params);
      return { ok: true, command: r.command, rowCount: r.rowCount };
    } catch (e) {
      return { code: e.code, message: e.message, detail: e.detail, hint: e.hint };
    }
  };
  try {
    // INSERT … RETURNING with parameters; node-postgres sends a JS object
    // as JSON text, which Postgres reads as jsonb.
    let r = await client.query(
      'INSERT INTO stripe.customers (email, name, metadata) VALUES ($1, $2, $3) RETURNING id, email, name, metadata',
      [`${tag}@example.test`, 'Node User', { source: 'node' }]);
    out.insert = { command: r.command, rowCount: r.rowCount, row: r.rows[0] };
    const cus = r.rows[0].id;

    r = await client.query(
      `UPDATE stripe.customers SET metadata = metadata || $1::jsonb, description = $2 WHERE id = $3 RETURNING metadata, description`,
      [JSON.stringify({ plan: 'pro' }), 'updated from node', cus]);
    out.update = { command: r.command, rowCount: r.rowCount, row: r.rows[0] };

    r = await client.query('SELECT metadata, description FROM stripe.customers WHERE id = $1', [cus]);
    out.readBack = r.rows[0];

    // A subscription needs a product and a recurring price first.
    r = await client.query('INSERT INTO stripe.products (name) VALUES ($1) RETURNING id', ['Node Plan']);
    const prod = r.rows[0].id;
    r = await client.query(
      'INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, $2, $3, $4) RETURNING id, unit_amount, recurring',
      [prod, 'usd', 900, { interval: 'month' }]);
    const price = r.rows[0].id;
    out.price = r.rows[0];
    // items is jsonb: a JS array would be sent as a Postgres array literal,
    // so it is stringified (the usual node-postgres rule for json arrays).
    r = await client.query(
      'INSERT INTO stripe.subscriptions (customer, items, metadata) VALUES ($1, $2, $3) RETURNING id, customer, status, items',
      [cus, JSON.stringify([{ price, quantity: 2 }]), { from: 'node' }]);
    const sub = r.rows[0].id;
    const item = r.rows[0].items.data[0];
    out.subscription = {
      command: r.command, id: sub, customer: r.rows[0].customer, status: r.rows[0].status,
      itemPrice: item.price.id, itemQuantity: item.quantity, price,
    };
    r = await client.query('UPDATE stripe.subscriptions SET metadata = $1 WHERE id = $2 RETURNING metadata', [{ from: 'node', step: 'updated' }, sub]);
    out.subscriptionUpdate = { command: r.command, rowCount: r.rowCount, metadata: r.rows[0].metadata };
    r = await client.query('SELECT count(*)::int AS n FROM stripe.subscription_items WHERE subscription = $1', [sub]);
    out.subscriptionItems = r.rows[0].n;
    r = await client.query('DELETE FROM stripe.subscriptions WHERE id = $1', [sub]);
    out.subscriptionCancel = { command: r.command, rowCount: r.rowCount };
    r = await client.query('SELECT status FROM stripe.subscriptions WHERE id = $1', [sub]);
    out.subscriptionAfterCancel = r.rows[0];

    // A named prepared statement, parsed once and executed twice.
    const named = { name: 'pgstripe-insert-customer', text: 'INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id, email' };
    const p1 = await client.query({ ...named, values: [`${tag}-p1@example.test`] });
    const p2 = await client.query({ ...named, values: [`${tag}-p2@example.test`] });
    out.prepared = [p1.rows[0], p2.rows[0]];
    r = await client.query('DELETE FROM stripe.customers WHERE id = ANY($1) RETURNING email', [[p1.rows[0].id, p2.rows[0].id]]);
    out.preparedDelete = { rowCount: r.rowCount, emails: r.rows.map((x) => x.email).sort() };

    // A transaction: the write happens at once, with a NOTICE.
    await client.query('BEGIN');
    r = await client.query('INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id', [`${tag}-tx@example.test`]);
    const txCus = r.rows[0].id;
    await client.query('ROLLBACK');
    r = await client.query('SELECT count(*)::int AS n FROM stripe.customers WHERE id = $1', [txCus]);
    out.afterRollback = { id: txCus, localRows: r.rows[0].n };

    // Errors, by SQLSTATE on err.code.
    out.errors = {
      unknownColumn: await errorOf('INSERT INTO stripe.customers (email, nonsense) VALUES ($1, $2)', ['x@example.test', 'y']),
      readOnlyColumn: await errorOf('INSERT INTO stripe.customers (email, created) VALUES ($1, now())', ['x@example.test']),
      wrongType: await errorOf('INSERT INTO stripe.customers (email, balance) VALUES ($1, $2)', ['x@example.test', 'lots']),
      unsupported: await errorOf('DELETE FROM stripe.prices WHERE id = $1', [price]),
      tooManyRows: await errorOf(
        'INSERT INTO stripe.customers (email) VALUES ' + Array.from({ length: 101 }, (_, i) => `($${i + 1})`).join(', '),
        Array.from({ length: 101 }, (_, i) => `${tag}-many${i}@example.test`)),
      resourceMissing: await errorOf(
        'INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, $2)', ['cus_doesnotexist', JSON.stringify([{ price }])]),
    };

    r = await client.query('DELETE FROM stripe.customers WHERE id = ANY($1)', [[cus, txCus]]);
    out.delete = { command: r.command, rowCount: r.rowCount };
    r = await client.query('SELECT count(*)::int AS n FROM stripe.customers WHERE id = ANY($1)', [[cus, txCus]]);
    out.afterDelete = r.rows[0].n;
  } finally {
    await client.end();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`node-postgres: ${e.code || ''} ${e.message}\n${e.detail || ''}\n`);
  process.exit(1);
});
