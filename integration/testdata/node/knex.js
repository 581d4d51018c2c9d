// knex (query builder on node-postgres) against the pgstripe proxy. Run by
// integration/clients_test.go with PGSTRIPE_PROXY_URL set; prints one JSON
// object with what each step saw. It sends what an ORM sends: every column
// of RETURNING *, DEFAULT for a key one row of a multi-row INSERT lacks,
// BEGIN/COMMIT around writes, SAVEPOINT for nested transactions, and
// pg_cancel_backend(<its process id>) for a query timeout.
'use strict';
const knex = require('knex')({
  client: 'pg',
  connection: process.env.PGSTRIPE_PROXY_URL,
  // One connection: a query the timeout failed to cancel holds it.
  pool: { min: 0, max: 1 },
});

const tag = `${process.env.PGSTRIPE_TAG || 'node'}-knex`;

const errorOf = async (fn) => {
  try {
    await fn();
    return { ok: true };
  } catch (e) {
    return { code: e.code, message: e.message, detail: e.detail };
  }
};

async function main() {
  const out = {};
  const [cus] = await knex('stripe.customers')
    .insert({ email: `${tag}@example.test`, name: 'Knex', metadata: { source: 'knex' } })
    .returning('*');
  out.insert = { id: cus.id, email: cus.email, metadata: cus.metadata, created: cus.created, raw: cus._raw !== null };

  // Rows with different keys: knex fills the gaps with DEFAULT.
  out.multi = await knex('stripe.customers')
    .insert([{ email: `${tag}-m1@example.test` }, { email: `${tag}-m2@example.test`, name: 'M2' }])
    .returning(['id', 'email', 'name']);

  [out.update] = await knex('stripe.customers').where({ id: cus.id })
    .update({ metadata: { source: 'knex', plan: 'pro' }, description: 'from knex' })
    .returning(['metadata', 'description']);

  out.commit = await knex.transaction(async (trx) => {
    const [r] = await trx('stripe.customers').insert({ email: `${tag}-tx@example.test` }).returning('id');
    const n = await trx('stripe.customers').where({ id: r.id }).update({ name: 'in tx' });
    return { id: r.id, updated: n };
  });

  // A Stripe refusal inside a nested transaction rolls back to its
  // savepoint; the outer transaction goes on and commits.
  out.savepoint = await knex.transaction(async (trx) => {
    const inner = await errorOf(() => trx.transaction(async (t2) => {
      await t2('stripe.customers').insert({ email: `${tag}-bad@example.test`, tax_exempt: 'bogus' });
    }));
    const [r] = await trx('stripe.customers').insert({ email: `${tag}-sp@example.test` }).returning('email');
    return { inner, after: r.email };
  });

  // Without a savepoint the transaction is failed, as in Postgres.
  out.aborted = await errorOf(() => knex.transaction(async (trx) => {
    await errorOf(() => trx('stripe.customers').insert({ email: `${tag}-bad@example.test`, tax_exempt: 'bogus' }));
    await trx.raw('SELECT 1');
  }));

  // knex's timeout cancels with pg_cancel_backend(processID) on a second
  // connection; the next query runs at once only if that cancelled it.
  out.timeout = await errorOf(() => knex.raw('SELECT pg_sleep(20)').timeout(300, { cancel: true }));
  const t0 = Date.now();
  await knex.raw('SELECT 1');
  out.afterTimeoutMs = Date.now() - t0;

  out.deleted = await knex('stripe.customers').where('email', 'like', `${tag}%`).del();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`knex: ${e.code || ''} ${e.message}\n${e.detail || ''}\n`);
  process.exitCode = 1;
}).finally(() => knex.destroy());
