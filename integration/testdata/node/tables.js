// Every row of README's per-table list through node-postgres (extended
// protocol, $n parameters as text) and the pgstripe proxy. Run by
// integration/clients_test.go with PGSTRIPE_PROXY_URL set; prints a
// transcript that the test compares, ids normalised, with tables.golden.
'use strict';
const { Client } = require('pg');

async function main() {
  const client = new Client({ connectionString: process.env.PGSTRIPE_PROXY_URL });
  await client.connect();
  const lines = [];
  // q runs one statement and records its command tag and rows.
  const q = async (sql, params = []) => {
    lines.push(`> ${sql}  ${JSON.stringify(params)}`);
    try {
      const r = await client.query(sql, params);
      lines.push(`${r.command} ${r.rowCount}${r.rows.length ? ' ' + JSON.stringify(r.rows) : ''}`);
      return r.rows;
    } catch (e) {
      lines.push(`ERROR ${e.code}: ${e.message}`);
      return null;
    }
  };
  const id = async (sql, params) => (await q(sql, params))[0].id;
  try {
    // customers
    const cus = await id('INSERT INTO stripe.customers (email, name) VALUES ($1, $2) RETURNING id', ['tables-node@example.test', 'A']);
    await q('UPDATE stripe.customers SET name = $1 WHERE id = $2 RETURNING name', ['B', cus]);
    const doomed = await id('INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id', ['tables-node-doomed@example.test']);
    await q('DELETE FROM stripe.customers WHERE id = $1', [doomed]);
    // products
    const prod = await id('INSERT INTO stripe.products (name) VALUES ($1) RETURNING id', ['Node Tables Pro']);
    await q('UPDATE stripe.products SET description = $1 WHERE id = $2 RETURNING description', ['The pro plan', prod]);
    const spare = await id('INSERT INTO stripe.products (name) VALUES ($1) RETURNING id', ['Node Spare']);
    await q('DELETE FROM stripe.products WHERE id = $1', [spare]);
    // prices
    const price = await id('INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, $2, $3, $4) RETURNING id',
      [prod, 'usd', 1500, { interval: 'month' }]);
    await q('UPDATE stripe.prices SET nickname = $1 WHERE id = $2 RETURNING nickname', ['monthly', price]);
    await q('DELETE FROM stripe.prices WHERE id = $1', [price]);
    // plans
    const plan = await id('INSERT INTO stripe.plans (product, currency, amount, interval) VALUES ($1, $2, $3, $4) RETURNING id', [prod, 'usd', 900, 'month']);
    await q('UPDATE stripe.plans SET nickname = $1 WHERE id = $2 RETURNING nickname', ['legacy', plan]);
    await q('DELETE FROM stripe.plans WHERE id = $1', [plan]);
    // tax_rates
    const txr = await id('INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ($1, $2, $3) RETURNING id', ['VAT', 20.5, false]);
    await q('UPDATE stripe.tax_rates SET active = $1 WHERE id = $2 RETURNING active, percentage', [false, txr]);
    await q('DELETE FROM stripe.tax_rates WHERE id = $1', [txr]);
    // coupons
    // (a coupon id of one's own: Stripe's are random capitals, which would not normalise)
    const co = await id('INSERT INTO stripe.coupons (id, percent_off, duration) VALUES ($1, $2, $3) RETURNING id', ['NODE25OFF', 25, 'once']);
    await q('UPDATE stripe.coupons SET name = $1, metadata = $2 WHERE id = $3 RETURNING name, metadata', ['Quarter off', { src: 'node' }, co]);
    await q('UPDATE stripe.coupons SET percent_off = $1 WHERE id = $2', [50, co]);
    // promotion_codes (coupon is jsonb: a JSON string names it)
    const promo = await id('INSERT INTO stripe.promotion_codes (coupon, code) VALUES ($1, $2) RETURNING id', [JSON.stringify(co), 'TABLESNODE']);
    await q('UPDATE stripe.promotion_codes SET active = $1 WHERE id = $2 RETURNING code, active', [false, promo]);
    await q('DELETE FROM stripe.promotion_codes WHERE id = $1', [promo]);
    await q('DELETE FROM stripe.coupons WHERE id = $1', [co]);
    // invoiceitems
    const ii = await id('INSERT INTO stripe.invoiceitems (customer, amount, currency) VALUES ($1, $2, $3) RETURNING id', [cus, 700, 'usd']);
    await q('UPDATE stripe.invoiceitems SET description = $1 WHERE id = $2 RETURNING amount, description', ['setup fee', ii]);
    await q('DELETE FROM stripe.invoiceitems WHERE id = $1', [ii]);
    // payment_methods: create, attach, update
    const pm = await id('INSERT INTO stripe.payment_methods (type, card) VALUES ($1, $2) RETURNING id', ['card', { token: 'tok_visa' }]);
    await q('UPDATE stripe.payment_methods SET customer = $1 WHERE id = $2 RETURNING customer', [cus, pm]);
    await q('UPDATE stripe.payment_methods SET metadata = $1 WHERE id = $2 RETURNING metadata', [{ k: 'v' }, pm]);
    await q('UPDATE stripe.customers SET invoice_settings = $1 WHERE id = $2', [{ default_payment_method: pm }, cus]);
    // subscriptions and subscription_items
    const sub = await id('INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, $2) RETURNING id', [cus, JSON.stringify([{ price }])]);
    await q('UPDATE stripe.subscriptions SET metadata = metadata || $1 WHERE id = $2 RETURNING metadata', [{ seats: '3' }, sub]);
    const price2 = await id('INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, $2, $3, $4) RETURNING id',
      [prod, 'usd', 300, { interval: 'month' }]);
    const si = await id('INSERT INTO stripe.subscription_items (subscription, price, quantity) VALUES ($1, $2, $3) RETURNING id', [sub, JSON.stringify(price2), 2]);
    await q('UPDATE stripe.subscription_items SET quantity = $1 WHERE id = $2 RETURNING quantity', [5, si]);
    await q("SELECT jsonb_array_length(items->'data') AS items FROM stripe.subscriptions WHERE id = $1", [sub]);
    await q('DELETE FROM stripe.subscription_items WHERE id = $1', [si]);
    await q("SELECT jsonb_array_length(items->'data') AS items FROM stripe.subscriptions WHERE id = $1", [sub]);
    await q('DELETE FROM stripe.subscriptions WHERE id = $1', [sub]);
    await q('SELECT status FROM stripe.subscriptions WHERE id = $1', [sub]);
    // tax_ids
    const txi = await id('INSERT INTO stripe.tax_ids (customer, type, value) VALUES ($1, $2, $3) RETURNING id', [cus, 'eu_vat', 'DE123456789']);
    await q('UPDATE stripe.tax_ids SET value = $1 WHERE id = $2', ['DE000000000', txi]);
    await q('DELETE FROM stripe.tax_ids WHERE id = $1', [txi]);
    // invoices
    const draft = await id('INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id', [cus]);
    await q('UPDATE stripe.invoices SET description = $1 WHERE id = $2 RETURNING status, description', ['first', draft]);
    await q('DELETE FROM stripe.invoices WHERE id = $1', [draft]);
    const paid = await id('INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id', [cus]);
    await q('INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES ($1, $2, $3, $4)', [cus, paid, 800, 'usd']);
    await q('UPDATE stripe.invoices SET status = $1 WHERE id = $2 RETURNING status, amount_due', ['open', paid]);
    await q('UPDATE stripe.invoices SET status = $1 WHERE id = $2 RETURNING status, amount_paid', ['paid', paid]);
    const voided = await id('INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id', [cus]);
    await q('INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES ($1, $2, $3, $4)', [cus, voided, 500, 'usd']);
    await q('UPDATE stripe.invoices SET status = $1 WHERE id = $2', ['open', voided]);
    await q('UPDATE stripe.invoices SET status = $1 WHERE id = $2 RETURNING status', ['void', voided]);
    const bad = await id('INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id', [cus]);
    await q('INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES ($1, $2, $3, $4)', [cus, bad, 900, 'usd']);
    await q('UPDATE stripe.invoices SET status = $1 WHERE id = $2', ['open', bad]);
    await q('UPDATE stripe.invoices SET status = $1 WHERE id = $2 RETURNING status', ['uncollectible', bad]);
    await q('UPDATE stripe.invoices SET status = $1 WHERE id = $2', ['draft', bad]);
    // credit_notes
    await q('INSERT INTO stripe.credit_notes (invoice, amount) VALUES ($1, $2) RETURNING amount, status', [paid, 100]);
    // payment_intents
    const pi = await id('INSERT INTO stripe.payment_intents (amount, currency, customer) VALUES ($1, $2, $3) RETURNING id', [2000, 'usd', cus]);
    await q('UPDATE stripe.payment_intents SET description = $1 WHERE id = $2 RETURNING description, status', ['order 1', pi]);
    await q('UPDATE stripe.payment_intents SET status = $1 WHERE id = $2 RETURNING status', ['canceled', pi]);
    await q('DELETE FROM stripe.payment_intents WHERE id = $1', [pi]);
    // setup_intents
    const seti = await id('INSERT INTO stripe.setup_intents (customer) VALUES ($1) RETURNING id', [cus]);
    await q('UPDATE stripe.setup_intents SET metadata = $1 WHERE id = $2 RETURNING metadata', [{ k: 'v' }, seti]);
    await q('UPDATE stripe.setup_intents SET status = $1 WHERE id = $2 RETURNING status', ['canceled', seti]);
    // refunds
    const charge = (await q('SELECT charge FROM stripe.invoices WHERE id = $1', [paid]))[0].charge;
    const re = await id('INSERT INTO stripe.refunds (charge, amount) VALUES ($1, $2) RETURNING id', [charge, 100]);
    await q('UPDATE stripe.refunds SET metadata = $1 WHERE id = $2 RETURNING metadata, status', [{ why: 'test' }, re]);
    // checkout_sessions
    await q('INSERT INTO stripe.checkout_sessions (mode, success_url, line_items) VALUES ($1, $2, $3) RETURNING mode, status',
      ['subscription', 'https://example.test/ok', JSON.stringify([{ price, quantity: 1 }])]);
    // payment_methods: detach
    await q('UPDATE stripe.customers SET invoice_settings = $1 WHERE id = $2', [{ default_payment_method: '' }, cus]);
    await q('UPDATE stripe.payment_methods SET customer = $1 WHERE id = $2 RETURNING customer', [null, pm]);
    // tables Stripe has no write for
    await q('UPDATE stripe.balance_transactions SET description = $1 WHERE source = $2', ['x', charge]);
  } finally {
    await client.end();
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(`node-postgres: ${e.code || ''} ${e.message}\n${e.stack}\n`);
  process.exit(1);
});
