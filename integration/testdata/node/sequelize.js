// Sequelize 6 (ORM on node-postgres) against the pgstripe proxy. Run by
// integration/clients_test.go with PGSTRIPE_PROXY_URL set; prints one JSON
// object with what each step saw. A hand-written model of stripe.customers,
// used as Sequelize users do: create, bulkCreate, update with returning, a
// pessimistic lock before an update in a transaction, destroy.
'use strict';
const { Sequelize, DataTypes, Op } = require('sequelize');

const sequelize = new Sequelize(process.env.PGSTRIPE_PROXY_URL, {
  dialect: 'postgres',
  logging: false,
  pool: { max: 1 },
});

const Customer = sequelize.define('Customer', {
  id: { type: DataTypes.TEXT, primaryKey: true },
  email: DataTypes.TEXT,
  name: DataTypes.TEXT,
  metadata: DataTypes.JSONB,
  balance: DataTypes.BIGINT,
}, { schema: 'stripe', tableName: 'customers', timestamps: false });

const tag = `${process.env.PGSTRIPE_TAG || 'node'}-sequelize`;

const errorOf = async (fn) => {
  try {
    await fn();
    return { ok: true };
  } catch (e) {
    const p = e.parent || e.original || {};
    return { code: p.code, message: e.message };
  }
};

async function main() {
  const out = {};
  const c = await Customer.create({ email: `${tag}@example.test`, name: 'Seq', metadata: { source: 'sequelize' } });
  out.create = { id: c.id, email: c.email, name: c.name, metadata: c.metadata };

  const bulk = await Customer.bulkCreate([{ email: `${tag}-b1@example.test` }, { email: `${tag}-b2@example.test`, name: 'B2' }], { returning: true });
  out.bulk = bulk.map((b) => ({ id: b.id, email: b.email, name: b.name }));

  const [n, rows] = await Customer.update({ name: 'Renamed', balance: 250 }, { where: { id: c.id }, returning: true });
  out.update = { count: n, name: rows[0] && rows[0].name, balance: rows[0] && String(rows[0].balance) };

  // Pessimistic locking: the client holds the row lock when it updates, so
  // pgstripe's apply can't write the row before COMMIT; RETURNING must
  // still show what the UPDATE did.
  out.locked = await sequelize.transaction(async (t) => {
    const locked = await Customer.findByPk(c.id, { lock: t.LOCK.UPDATE, transaction: t });
    const [count, after] = await Customer.update({ name: 'After lock' }, { where: { id: c.id }, returning: true, transaction: t });
    return { before: locked.name, count, after: after[0] && after[0].name };
  });

  out.refused = await errorOf(() => Customer.upsert({ id: c.id, email: `${tag}@example.test` }));
  out.stripeError = await errorOf(() => Customer.create({ email: `${tag}-bad@example.test`, metadata: { [`${'k'.repeat(41)}`]: 'x' } }));

  const found = await Customer.findAll({ where: { email: { [Op.like]: `${tag}%` } }, order: [['email', 'ASC']] });
  out.found = found.map((f) => f.email);

  out.destroyed = await Customer.destroy({ where: { email: { [Op.like]: `${tag}%` } } });
  out.left = await Customer.count({ where: { email: { [Op.like]: `${tag}%` } } });
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`sequelize: ${e.name} ${e.message}\n${(e.parent && e.parent.detail) || ''}\n`);
  process.exitCode = 1;
}).finally(() => sequelize.close());
