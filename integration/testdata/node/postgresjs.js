// postgres.js (porsager's `postgres`, its own protocol implementation)
// against the pgstripe proxy. Run by integration/drivers_test.go:
//
//   node postgresjs.js pass  URL   statements that pass through untouched;
//                                  the test runs it through the proxy and
//                                  directly and compares
//   node postgresjs.js write URL   writes to stripe.* (proxy only)
//
// One line per step, with nothing that changes from run to run.
'use strict';
const postgres = require('postgres');
const { Readable } = require('node:stream');
const { pipeline } = require('node:stream/promises');

const [mode, url = process.env.PGSTRIPE_PROXY_URL] = process.argv.slice(2);
const p = (...a) => process.stdout.write(a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ') + '\n');
const errOf = (e) => ({ code: e.code, message: e.message });
const attempt = async (what, fn) => {
  try {
    p(what, 'ok', await fn());
  } catch (e) {
    p(what, 'error', errOf(e));
  }
};

async function passthrough() {
  const notices = [];
  const sql = postgres(url, { max: 1, onnotice: (n) => notices.push(n.code + ' ' + n.message) });
  // Dropped at the end: the run through the proxy and the direct one
  // share the database.
  await sql`CREATE TABLE pgjs_t (id serial PRIMARY KEY, name text UNIQUE, n bigint, j jsonb, b bytea, a int[], t timestamptz, f float8, num numeric)`;
  await sql`DO $$BEGIN RAISE NOTICE 'from postgres.js %', 1; END$$`;
  // Pipelining: many queries in flight on the one connection.
  const rows = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    sql`INSERT INTO pgjs_t (name, n, j, b, a, t, f, num) VALUES (${'n' + i}, ${i}, ${sql.json({ i })}, ${Buffer.from([i, 0, 255])}, ${[i, i + 1]}, ${new Date(Date.UTC(2024, 0, 1, 0, 0, i))}, ${i / 4}, ${'1.' + i}) RETURNING id`));
  p('pipelined inserts', rows.length, rows.every((r) => r.count === 1));
  let r = await sql`SELECT name, n, j, b, a, t, f, num FROM pgjs_t WHERE n < ${3} ORDER BY n`;
  p('types', r.map((x) => ({ ...x, b: x.b.toString('hex'), t: x.t.toISOString() })));
  p('columns', r.columns.map((c) => [c.name, c.type]));
  r = await sql`SELECT ${null}::text AS nul, ${true} AS yes, ${'it\'s'} AS s, ${12345678901234n}::int8 AS big`.catch(errOf);
  p('params', r);
  // Same statement again: Bind/Execute of the named statement only.
  for (let i = 0; i < 3; i++) {
    r = await sql`SELECT count(*)::int AS c FROM pgjs_t WHERE n >= ${i * 10}`;
    p('prepared again', r[0].c);
  }
  // Describe without executing.
  const d = await sql`SELECT name FROM pgjs_t WHERE n = ${1} AND name = ${'x'}`.describe();
  p('describe', d.types, d.columns.map((c) => c.name));
  // unsafe: unnamed statements, with and without parameters, and prepare: true.
  r = await sql.unsafe('SELECT name FROM pgjs_t WHERE n = $1', [7]);
  p('unsafe', r);
  r = await sql.unsafe('SELECT name FROM pgjs_t WHERE n = $1', [8], { prepare: true });
  p('unsafe prepared', r);
  r = await sql.unsafe('SELECT 1 AS a; SELECT 2 AS b');
  p('unsafe multi', r.map((x) => [...x]));
  r = await sql`SELECT 1 AS one; SELECT 2 AS two`.simple();
  p('simple multi', r.map((x) => [...x]));
  // values(), raw(), cursor(), forEach().
  r = await sql`SELECT name, n FROM pgjs_t WHERE n < 2 ORDER BY n`.values();
  p('values', r);
  const seen = [];
  await sql`SELECT n FROM pgjs_t ORDER BY n LIMIT 7`.cursor(3, (rs) => { seen.push(rs.map((x) => Number(x.n))); });
  p('cursor', seen);
  let count = 0;
  await sql`SELECT n FROM pgjs_t`.forEach(() => { count++; });
  p('forEach', count);
  // Dynamic inserts and updates.
  r = await sql`INSERT INTO pgjs_t ${sql([{ name: 'dyn1', n: 100 }, { name: 'dyn2', n: 101 }])} RETURNING name, n`;
  p('dynamic insert', r);
  r = await sql`UPDATE pgjs_t SET ${sql({ n: 200, j: sql.json({ up: true }) })} WHERE name = ${'dyn1'} RETURNING n, j`;
  p('dynamic update', r);
  r = await sql`SELECT name FROM pgjs_t WHERE name IN ${sql(['dyn1', 'dyn2'])} ORDER BY name`;
  p('where in', r);
  // Errors and the connection after them.
  await attempt('division by zero', () => sql`SELECT 1/0`);
  await attempt('unique violation', () => sql`INSERT INTO pgjs_t (name) VALUES (${'n1'})`);
  await attempt('bad parse', () => sql`SELEC 1`);
  await attempt('wrong type', () => sql`SELECT ${'abc'}::int`);
  await attempt('after errors', async () => (await sql`SELECT 1 AS x`)[0].x);
  // A failing query in the middle of a pipeline.
  const res = await Promise.allSettled([sql`SELECT 1 AS a`, sql`SELECT 1/0 AS b`, sql`SELECT 3 AS c`]);
  p('pipeline with error', res.map((x) => (x.status === 'fulfilled' ? x.value[0] : x.reason.code)));
  // Transactions: begin, savepoint, rollback on throw, pipelined array.
  r = await sql.begin(async (tx) => {
    await tx`INSERT INTO pgjs_t (name, n) VALUES ('tx1', 1)`;
    const sp = await tx.savepoint((s) => s`INSERT INTO pgjs_t (name) VALUES ('n1')`).catch((e) => e.code);
    const [row] = await tx`SELECT count(*)::int AS c FROM pgjs_t WHERE name = 'tx1'`;
    return { sp, c: row.c };
  });
  p('begin with savepoint', r);
  await attempt('begin rolled back', () => sql.begin(async (tx) => {
    await tx`INSERT INTO pgjs_t (name, n) VALUES ('tx2', 1)`;
    throw new Error('boom');
  }));
  r = await sql`SELECT count(*)::int AS c FROM pgjs_t WHERE name = 'tx2'`;
  p('after rollback', r[0].c);
  r = await sql.begin((tx) => [tx`INSERT INTO pgjs_t (name) VALUES ('tx3')`, tx`SELECT count(*)::int AS c FROM pgjs_t WHERE name LIKE 'tx%'`]);
  p('begin pipelined', r.map((x) => x.count));
  await attempt('begin read only', () => sql.begin('read only', (tx) => tx`INSERT INTO pgjs_t (name) VALUES ('ro')`));
  // COPY in and out through streams.
  const w = await sql`COPY pgjs_t (name, n) FROM STDIN`.writable();
  await pipeline(Readable.from(['c1\t1\n', 'c2\t2\n', 'c3\t3\n']), w);
  r = await sql`SELECT count(*)::int AS c FROM pgjs_t WHERE name LIKE 'c_'`;
  p('copy in', r[0].c);
  const rd = await sql`COPY (SELECT name, n FROM pgjs_t WHERE name LIKE 'c_' ORDER BY name) TO STDOUT WITH CSV`.readable();
  let copied = '';
  for await (const chunk of rd) copied += chunk;
  p('copy out', JSON.stringify(copied));
  // A COPY the client abandons (CopyFail): nothing is written and the
  // connection goes on. (A COPY that Postgres refuses mid-stream leaves
  // postgres.js waiting for ever, directly too: not tested.)
  const w2 = await sql`COPY pgjs_t (name, n) FROM STDIN`.writable();
  const failed = new Promise((res) => w2.on('error', (e) => res(e.message)));
  w2.write('c8\t8\n');
  w2.destroy(new Error('abandoned'));
  p('copy fail', await failed);
  await attempt('after copy fail', async () => (await sql`SELECT count(*)::int AS c FROM pgjs_t WHERE name = 'c8'`)[0].c);
  // LISTEN / NOTIFY on a dedicated connection.
  const got = [];
  let resolveNotified;
  const notified = new Promise((res) => { resolveNotified = res; });
  const listener = await sql.listen('pgjs_chan', (x) => { got.push(x); if (got.length === 2) resolveNotified(); });
  await sql.notify('pgjs_chan', 'hello');
  await sql`SELECT pg_notify('pgjs_chan', 'world')`;
  await notified;
  p('notify', got);
  await listener.unlisten();
  // Cancel a running query.
  const q = sql`SELECT pg_sleep(10)`.execute();
  setTimeout(() => q.cancel(), 300);
  const t0 = Date.now();
  await attempt('cancel', () => q);
  p('cancel fast', Date.now() - t0 < 5000);
  await attempt('after cancel', async () => (await sql`SELECT 3 AS x`)[0].x);
  // Reading stripe.* (the seeded account).
  r = await sql`SELECT count(*)::int AS c, count(email)::int AS e FROM stripe.customers`;
  p('stripe customers', r[0].c > 0, r[0].e > 0);
  r = await sql`SELECT id, created, metadata, balance FROM stripe.customers ORDER BY id LIMIT ${2}`;
  p('stripe typed', r.map((x) => [typeof x.id, x.created instanceof Date, typeof x.metadata, typeof x.balance]));
  await sql`DROP TABLE pgjs_t`;
  p('notices', notices);
  await sql.end({ timeout: 5 });
  p('end');
}

async function writes() {
  const notices = [];
  const opts = { max: 1, onnotice: (n) => notices.push([n.code, n.message]) };
  const sql = postgres(url, opts);
  const tag = 'pgjs';
  // describe-then-execute: Parse and Describe of a named statement with
  // Flush, then Bind and Execute once the parameter types are known. A
  // plain JavaScript object for jsonb (postgres.js serialises it by the
  // type Postgres described).
  let r = await sql`INSERT INTO stripe.customers (email, name, metadata) VALUES (${tag + '@example.test'}, ${'Pgjs User'}, ${{ source: 'postgres.js' }}) RETURNING id, email, name, metadata, balance, created`;
  p('insert returning', r.command, r.count, r[0].email, r[0].name, r[0].metadata, r[0].balance, r[0].created instanceof Date, r.columns.map((c) => c.name));
  const cus = r[0].id;
  // The same text again: Bind and Execute of the statement prepared above.
  r = await sql`INSERT INTO stripe.customers (email, name, metadata) VALUES (${tag + '-2@example.test'}, ${'Second'}, ${{ source: 'again' }}) RETURNING id, email, name, metadata, balance, created`;
  p('insert again (prepared)', r.count, r[0].email, r[0].id !== cus);
  const cus2 = r[0].id;
  r = await sql`UPDATE stripe.customers SET metadata = metadata || ${sql.json({ plan: 'pro' })}, description = ${'from postgres.js'} WHERE id = ${cus} RETURNING metadata, description`;
  p('update returning', r.command, r.count, r[0]);
  r = await sql`SELECT metadata, description FROM stripe.customers WHERE id = ${cus}`;
  p('read own write', r[0]);
  // Helpers that build the statement: sql(rows) and sql(object).
  r = await sql`INSERT INTO stripe.customers ${sql([{ email: tag + '-m1@example.test', name: 'M1' }, { email: tag + '-m2@example.test', name: 'M2' }])} RETURNING email, name`;
  p('dynamic multi-row insert', r.count, r);
  const multi = await sql`SELECT id FROM stripe.customers WHERE email IN ${sql([tag + '-m1@example.test', tag + '-m2@example.test'])} ORDER BY email`;
  p('read multi', multi.length);
  r = await sql`UPDATE stripe.customers SET ${sql({ name: 'Renamed', balance: 250 })} WHERE id = ${cus2} RETURNING name, balance`;
  p('dynamic update', r.count, r[0]);
  r = await sql`UPDATE stripe.customers SET balance = balance + ${100} WHERE id = ${cus2} RETURNING balance`;
  p('balance + $1', r[0].balance);
  // A JavaScript array for text[] (postgres.js sends an array literal with
  // the array type) and for jsonb (JSON, by the described type).
  r = await sql`UPDATE stripe.customers SET preferred_locales = ${['en', 'fr']} WHERE id = ${cus2} RETURNING preferred_locales`;
  p('text[] param', r[0]);
  r = await sql`UPDATE stripe.customers SET metadata = ${null} WHERE id = ${cus2} RETURNING metadata`;
  p('metadata NULL', r[0]);
  // Pipelined writes outside a transaction: one Sync each, so each is its
  // own transaction.
  const piped = await Promise.all([1, 2, 3].map((i) => sql`UPDATE stripe.customers SET metadata = ${sql.json({ n: String(i) })} WHERE id = ${cus} RETURNING metadata->>'n' AS n`));
  p('pipelined updates', piped.map((x) => x[0].n));
  const mixed = await Promise.allSettled([
    sql`INSERT INTO stripe.customers (email) VALUES (${tag + '-p1@example.test'}) RETURNING email`,
    sql`INSERT INTO stripe.customers (email, tax_exempt) VALUES (${tag + '-bad@example.test'}, ${'bogus'}) RETURNING email`,
    sql`INSERT INTO stripe.customers (email) VALUES (${tag + '-p2@example.test'}) RETURNING email`,
  ]);
  p('pipeline with a Stripe refusal', mixed.map((x) => (x.status === 'fulfilled' ? x.value[0].email : x.reason.code)));
  // Once prepared, concurrent queries go out in one write: Bind, Execute,
  // Sync each, a Stripe refusal among them.
  const ins = (email, exempt) => sql`INSERT INTO stripe.customers (email, tax_exempt) VALUES (${email}, ${exempt}) RETURNING email, tax_exempt`;
  await ins(tag + '-w@example.test', 'none');
  const burst = await Promise.allSettled(['none', 'exempt', 'bogus', 'reverse', 'none'].map((x, i) => ins(`${tag}-b${i}@example.test`, x)));
  p('prepared pipeline', burst.map((x) => (x.status === 'fulfilled' ? x.value[0].email + ' ' + x.value[0].tax_exempt : x.reason.code)));
  // unsafe: an unnamed statement; with parameters describe-then-execute,
  // without them Parse/Describe/Bind/Execute at once; prepare: true names it.
  r = await sql.unsafe('UPDATE stripe.customers SET name = $1 WHERE id = $2 RETURNING name', ['Unsafe', cus]);
  p('unsafe with parameters', r.count, r[0]);
  r = await sql.unsafe(`UPDATE stripe.customers SET name = 'Unsafe literal' WHERE id = '${cus}' RETURNING name`);
  p('unsafe without parameters', r.count, r[0]);
  r = await sql.unsafe('UPDATE stripe.customers SET name = $1 WHERE id = $2 RETURNING name', ['Unsafe prepared', cus], { prepare: true });
  p('unsafe prepared', r.count, r[0]);
  // The simple protocol.
  r = await sql`UPDATE stripe.customers SET name = 'Simple' WHERE id = ${sql.unsafe(`'${cus}'`)} RETURNING name`.simple();
  p('simple', r.count, r[0]);
  // Errors with their SQLSTATE, and the connection still usable.
  const err = async (what, q) => {
    try {
      const x = await q;
      p(what, 'no error', x.count);
    } catch (e) {
      p(what, e.code, e.message, (e.detail || '').includes('req_') ? 'detail has request id' : e.detail || '', e.hint || '');
    }
  };
  await err('unknown column', sql`INSERT INTO stripe.customers (email, nonsense) VALUES (${'x@example.test'}, ${'y'})`);
  await err('computed column', sql`INSERT INTO stripe.customers (email, created) VALUES (${'x@example.test'}, now())`);
  await err('wrong type', sql`UPDATE stripe.customers SET balance = ${'lots'} WHERE id = ${cus}`);
  await err('stripe refusal', sql`UPDATE stripe.customers SET tax_exempt = ${'bogus'} WHERE id = ${cus}`);
  await err('missing customer', sql`INSERT INTO stripe.subscriptions (customer, items) VALUES (${'cus_doesnotexist'}, ${sql.json([{ price: 'price_nope' }])})`);
  await err('unsupported', sql`DELETE FROM stripe.balance_transactions WHERE id = ${'txn_x'}`);
  await err('on conflict', sql`INSERT INTO stripe.customers (email) VALUES (${'x@example.test'}) ON CONFLICT DO NOTHING`);
  await err('too many rows', sql`INSERT INTO stripe.customers ${sql(Array.from({ length: 101 }, (_, i) => ({ email: `${tag}-many${i}@example.test` })))}`);
  await err('multi-statement', sql.unsafe(`UPDATE stripe.customers SET name = 'a' WHERE id = '${cus}'; SELECT 1`));
  r = await sql`SELECT name FROM stripe.customers WHERE id = ${cus}`;
  p('after errors', r[0]);
  // Transactions: the write happens at once, with a NOTICE; a Stripe
  // refusal in a savepoint; ROLLBACK keeps the write.
  r = await sql.begin(async (tx) => {
    const [c] = await tx`INSERT INTO stripe.customers (email) VALUES (${tag + '-tx@example.test'}) RETURNING id`;
    const sp = await tx.savepoint((s) => s`UPDATE stripe.customers SET tax_exempt = ${'bogus'} WHERE id = ${c.id}`).catch((e) => e.code);
    const [u] = await tx`UPDATE stripe.customers SET name = ${'In tx'} WHERE id = ${c.id} RETURNING name`;
    return { id: c.id, sp, name: u.name };
  });
  p('begin, savepoint, commit', r.sp, r.name);
  const txCus = r.id;
  await err('begin rolled back', sql.begin(async (tx) => {
    await tx`UPDATE stripe.customers SET name = ${'Rolled back'} WHERE id = ${txCus}`;
    throw Object.assign(new Error('boom'), { code: 'BOOM' });
  }));
  r = await sql`SELECT name FROM stripe.customers WHERE id = ${txCus}`;
  p('after rollback (Stripe kept it)', r[0]);
  // postgres.js rethrows a transaction's first error from sql.begin; the
  // statement after it gets 25P02 (and no Stripe call).
  const codes = [];
  await sql.begin(async (tx) => {
    codes.push(await tx`UPDATE stripe.customers SET tax_exempt = ${'bogus'} WHERE id = ${txCus}`.then(() => 'ok', (e) => e.code));
    codes.push(await tx`UPDATE stripe.customers SET name = ${'never'} WHERE id = ${txCus}`.then(() => 'ok', (e) => e.code));
  }).catch((e) => codes.push(e.code));
  p('statements after a refusal in a transaction', codes);
  r = await sql.begin((tx) => [
    tx`UPDATE stripe.customers SET metadata = ${sql.json({ piped: 'a' })} WHERE id = ${txCus} RETURNING metadata`,
    tx`UPDATE stripe.customers SET metadata = metadata || ${sql.json({ piped2: 'b' })} WHERE id = ${txCus} RETURNING metadata`,
  ]);
  p('begin pipelined', r.map((x) => x[0].metadata));
  await err('read only transaction', sql.begin('read only', (tx) => tx`UPDATE stripe.customers SET name = ${'ro'} WHERE id = ${txCus}`));
  // A subscription: product, price, then items as jsonb from a JS array.
  const [prod] = await sql`INSERT INTO stripe.products (name) VALUES (${'Pgjs Plan'}) RETURNING id`;
  const [price] = await sql`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES (${prod.id}, ${'usd'}, ${900}, ${{ interval: 'month' }}) RETURNING id, unit_amount, recurring`;
  p('price', price.unit_amount, price.recurring.interval);
  r = await sql`INSERT INTO stripe.subscriptions (customer, items) VALUES (${cus}, ${sql.json([{ price: price.id, quantity: 2 }])}) RETURNING id, status, items`;
  p('subscription', r[0].status, r[0].items.data.length, r[0].items.data[0].quantity);
  const sub = r[0].id;
  r = await sql`DELETE FROM stripe.subscriptions WHERE id = ${sub} RETURNING status`;
  p('subscription cancel', r.command, r.count, r[0]);
  // DELETE … RETURNING, then nothing left.
  const ids = [cus, cus2, txCus, ...multi.map((x) => x.id)];
  const pipedIds = await sql`SELECT id FROM stripe.customers WHERE email LIKE ${tag + '-p_@example.test'} OR email LIKE ${tag + '-b_@example.test'} OR email = ${tag + '-w@example.test'}`;
  ids.push(...pipedIds.map((x) => x.id));
  r = await sql`DELETE FROM stripe.customers WHERE id = ANY(${ids}) RETURNING email`;
  p('delete returning', r.command, r.count, r.map((x) => x.email).sort());
  r = await sql`SELECT count(*)::int AS c FROM stripe.customers WHERE id = ANY(${ids})`;
  p('after delete', r[0].c);
  p('notices', notices);
  await sql.end({ timeout: 5 });
  p('end');
}

async function main() {
  if (mode === 'pass') await passthrough();
  else if (mode === 'write') await writes();
  else throw new Error('unknown mode ' + mode);
}

main().catch((e) => {
  process.stderr.write(`postgres.js: ${e.code || ''} ${e.message}\n${e.stack}\n`);
  process.exit(1);
});
