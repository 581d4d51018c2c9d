// Runs one workload with node-postgres and prints a transcript on stdout;
// the Go test compares the transcript direct and through the proxy.
const { Client } = require('pg');

async function main() {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  const out = [];
  const note = (label, v) => out.push(label + ' ' + JSON.stringify(v));
  client.on('notice', (n) => note('notice', n.message));
  client.on('notification', (n) => note('notification', [n.channel, n.payload]));
  await client.connect();
  const step = async (label, fn) => {
    try {
      note(label, await fn());
    } catch (e) {
      note(label + ' error', [e.code, e.message]);
    }
  };
  await step('create', async () => (await client.query('CREATE TABLE nt (id int primary key, s text, j jsonb, b bytea)')).command);
  await step('insert', async () => {
    let n = 0;
    for (let i = 1; i <= 30; i++) {
      const r = await client.query('INSERT INTO nt VALUES ($1, $2, $3, $4)', [i, 's' + i, { i }, Buffer.from([i, 0, 255])]);
      n += r.rowCount;
    }
    return n;
  });
  await step('select', async () => (await client.query('SELECT id, s, j, b FROM nt WHERE id > $1 ORDER BY id', [25])).rows.map((r) => [r.id, r.s, r.j, r.b.toString('hex')]));
  await step('named', async () => (await client.query({ name: 'byid', text: 'SELECT s FROM nt WHERE id = $1', values: [3] })).rows);
  await step('named again', async () => (await client.query({ name: 'byid', text: 'SELECT s FROM nt WHERE id = $1', values: [4] })).rows);
  await step('array mode', async () => (await client.query({ text: 'SELECT 1 AS a, 2 AS b', rowMode: 'array' })).rows);
  await step('dup', async () => client.query('INSERT INTO nt (id) VALUES (1)'));
  await step('tx', async () => {
    await client.query('BEGIN');
    await client.query('UPDATE nt SET s = $1 WHERE id = 1', ['changed']);
    try { await client.query('SELECT 1/0'); } catch (e) { note('in tx', e.code); }
    try { await client.query('SELECT 1'); } catch (e) { note('aborted', e.code); }
    await client.query('ROLLBACK');
    return (await client.query('SELECT s FROM nt WHERE id = 1')).rows;
  });
  await step('multi', async () => (await client.query('SELECT 1 AS x; SELECT 2 AS y')).map((r) => r.rows));
  await step('notice', async () => (await client.query("DO $$ BEGIN RAISE NOTICE 'hi from node'; END $$")).command);
  await step('listen', async () => {
    await client.query('LISTEN nchan');
    await client.query("NOTIFY nchan, 'payload'");
    await new Promise((r) => setTimeout(r, 100));
    return 'ok';
  });
  await step('big', async () => (await client.query('SELECT repeat($1, 500000) AS r', ['ab'])).rows[0].r.length);
  await step('pipelined', async () => Promise.all([1, 2, 3, 4, 5].map((i) => client.query('SELECT $1::int * 2 AS v', [i]).then((r) => r.rows[0].v))));
  await client.end();
  console.log(out.join('\n'));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
