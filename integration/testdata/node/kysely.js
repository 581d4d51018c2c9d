// Kysely (query builder on node-postgres) against the pgstripe proxy. Run by
// integration/clients_test.go with PGSTRIPE_PROXY_URL set; prints one JSON
// object with what each step saw. It sends what Kysely users write: no id
// (kysely-codegen types it Generated), returningAll, rows with different
// keys in one INSERT, a read-only .with() on an UPDATE, savepoints, a
// JavaScript [] that node-postgres sends as '{}', and onConflict.
'use strict';
const { Kysely, PostgresDialect, sql } = require('kysely');
const { Pool } = require('pg');

const db = new Kysely({
  dialect: new PostgresDialect({ pool: new Pool({ connectionString: process.env.PGSTRIPE_PROXY_URL, max: 1 }) }),
});
const s = db.withSchema('stripe');
const tag = `${process.env.PGSTRIPE_TAG || 'node'}-kysely`;

const errorOf = async (fn) => {
  try {
    await fn();
    return { ok: true };
  } catch (e) {
    return { code: e.code, message: e.message };
  }
};

async function main() {
  const out = {};
  const cus = await s.insertInto('customers')
    .values({ email: `${tag}@example.test`, metadata: JSON.stringify({ source: 'kysely' }), preferred_locales: JSON.stringify(['en']) })
    .returningAll().executeTakeFirstOrThrow();
  out.insert = { id: cus.id, email: cus.email, balance: cus.balance, locales: cus.preferred_locales, created: cus.created !== null };

  out.multi = await s.insertInto('customers')
    .values([{ email: `${tag}-m1@example.test` }, { email: `${tag}-m2@example.test`, name: 'M2' }])
    .returning(['email', 'name']).execute();

  // Kysely's .with(): the CTE only reads, so the write goes through.
  out.with = await s.with('target', (qb) => qb.selectFrom('stripe.customers').select('id').where('email', '=', `${tag}@example.test`))
    .updateTable('customers')
    .set({ metadata: sql`metadata || '{"plan": "pro"}'::jsonb` })
    .where('id', 'in', (qb) => qb.selectFrom('target').select('id'))
    .returning(['metadata']).execute();

  const prod = await s.insertInto('products').values({ name: `${tag} product`, images: [] })
    .returning(['id', 'images']).executeTakeFirstOrThrow();
  out.product = { images: prod.images };
  // node-postgres sends [] as '{}': refused as '[]' is, not given Stripe's ["card"].
  out.emptyTypes = await errorOf(() => s.insertInto('payment_intents')
    .values({ amount: 500, currency: 'usd', payment_method_types: [] }).execute());

  // A controlled transaction: a Stripe refusal rolls back to its
  // savepoint and the transaction goes on.
  const trx = await db.startTransaction().execute();
  try {
    const sp = await trx.savepoint('bad').execute();
    const inner = await errorOf(() => sp.withSchema('stripe').insertInto('customers')
      .values({ email: `${tag}-bad@example.test`, tax_exempt: 'bogus' }).execute());
    await sp.rollbackToSavepoint('bad').execute();
    const r = await trx.withSchema('stripe').insertInto('customers').values({ email: `${tag}-sp@example.test` })
      .returning('email').executeTakeFirstOrThrow();
    await trx.commit().execute();
    out.savepoint = { inner: inner.code, after: r.email };
  } catch (e) {
    await trx.rollback().execute();
    throw e;
  }

  out.upsert = await errorOf(() => s.insertInto('customers').values({ id: cus.id, email: `${tag}@example.test` })
    .onConflict((oc) => oc.column('id').doUpdateSet({ email: `${tag}@example.test` })).execute());

  const del = await s.deleteFrom('customers').where('email', 'like', `${tag}%`).executeTakeFirst();
  out.deleted = Number(del.numDeletedRows);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`kysely: ${e.code || ''} ${e.message}\n${e.detail || ''}\n`);
  process.exitCode = 1;
}).finally(() => db.destroy());
