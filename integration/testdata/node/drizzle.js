// Drizzle ORM on postgres.js against the pgstripe proxy. Run by
// integration/drivers_test.go with PGSTRIPE_PROXY_URL set; prints one JSON
// object with what each step saw. Drizzle lists every column of the model
// in an INSERT, with DEFAULT for those not given (id, created …), runs
// its statements through postgres.js's unsafe() (unnamed statements,
// described before they are executed), and wraps errors in
// DrizzleQueryError with the driver's error as its cause.
'use strict';
const postgres = require('postgres');
const { drizzle } = require('drizzle-orm/postgres-js');
const { pgSchema, text, bigint, jsonb, timestamp, boolean } = require('drizzle-orm/pg-core');
const { eq, inArray, like, sql } = require('drizzle-orm');

const stripe = pgSchema('stripe');
const customers = stripe.table('customers', {
  id: text('id').primaryKey(),
  email: text('email'),
  name: text('name'),
  description: text('description'),
  balance: bigint('balance', { mode: 'number' }),
  metadata: jsonb('metadata').$type(),
  taxExempt: text('tax_exempt'),
  created: timestamp('created', { withTimezone: true }),
  livemode: boolean('livemode'),
});

const client = postgres(process.env.PGSTRIPE_PROXY_URL, { max: 1, onnotice: () => {} });
const db = drizzle(client);
const tag = `${process.env.PGSTRIPE_TAG || 'node'}-drizzle`;

const codeOf = async (fn) => {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    return (e.cause && e.cause.code) || e.code || e.message;
  }
};

async function main() {
  const out = {};
  const [c] = await db.insert(customers)
    .values({ email: `${tag}@example.test`, name: 'Drizzle', metadata: { source: 'drizzle' } })
    .returning();
  out.insert = { id: c.id, email: c.email, metadata: c.metadata, balance: c.balance, created: c.created instanceof Date, livemode: c.livemode };

  out.multi = await db.insert(customers)
    .values([{ email: `${tag}-m1@example.test` }, { email: `${tag}-m2@example.test`, name: 'M2' }])
    .returning({ email: customers.email, name: customers.name });

  out.update = await db.update(customers)
    .set({ description: 'from drizzle', balance: sql`${customers.balance} + 100` })
    .where(eq(customers.id, c.id))
    .returning({ description: customers.description, balance: customers.balance });

  // db.$with(…) and db.with(…): a read-only CTE on an UPDATE.
  const target = db.$with('target').as(db.select({ id: customers.id }).from(customers).where(eq(customers.email, `${tag}-m2@example.test`)));
  out.with = await db.with(target).update(customers)
    .set({ metadata: { plan: 'pro' } })
    .where(inArray(customers.id, db.select({ id: target.id }).from(target)))
    .returning({ email: customers.email, metadata: customers.metadata });

  out.read = await db.select({ email: customers.email, balance: customers.balance }).from(customers).where(eq(customers.id, c.id));

  // A transaction with a nested one (a savepoint) around a Stripe refusal.
  out.transaction = await db.transaction(async (tx) => {
    const inner = await codeOf(() => tx.transaction(async (sp) => {
      await sp.update(customers).set({ taxExempt: 'bogus' }).where(eq(customers.id, c.id));
    }));
    const [r] = await tx.update(customers).set({ name: 'In tx' }).where(eq(customers.id, c.id)).returning({ name: customers.name });
    return { inner, after: r.name };
  });
  out.errors = {
    computed: await codeOf(() => db.insert(customers).values({ email: `${tag}-x@example.test`, livemode: false })),
    stripe: await codeOf(() => db.update(customers).set({ taxExempt: 'bogus' }).where(eq(customers.id, c.id))),
    upsert: await codeOf(() => db.insert(customers).values({ email: `${tag}-x@example.test` }).onConflictDoNothing()),
  };
  const gone = await db.delete(customers).where(like(customers.email, `${tag}%`)).returning({ email: customers.email });
  out.deleted = gone.map((x) => x.email).sort();
  await client.end({ timeout: 5 });
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch(async (e) => {
  process.stderr.write(`drizzle: ${(e.cause && e.cause.code) || e.code || ''} ${e.message}\n${e.cause ? e.cause.message : ''}\n`);
  process.exit(1);
});
