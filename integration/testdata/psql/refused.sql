-- Writes the proxy refuses before any Stripe call, through psql.
-- Run by integration/clients_test.go, which also checks that the emulator
-- saw no request that changes anything while this script ran; the output,
-- normalised, must equal refused.golden.
\set VERBOSITY verbose
\pset pager off
SELECT id AS cus FROM stripe.customers WHERE id NOT LIKE 'cus_bulk%' ORDER BY id LIMIT 1 \gset
SELECT id AS price FROM stripe.prices ORDER BY id LIMIT 1 \gset

-- unknown column (42703)
INSERT INTO stripe.customers (email, nonsense) VALUES ('refused@example.test', 1);
UPDATE stripe.customers SET nonsense = 1 WHERE id = :'cus';
-- a column Stripe computes, given a value (42703, with the columns Stripe takes)
INSERT INTO stripe.customers (id, email) VALUES ('cus_mine', 'refused@example.test');
UPDATE stripe.customers SET created = now() WHERE id = :'cus';
-- wrong type: Postgres evaluates the values first (22P02)
INSERT INTO stripe.customers (email, balance) VALUES ('refused@example.test', 'lots');
UPDATE stripe.customers SET metadata = 'not json' WHERE id = :'cus';
-- a NULL Stripe cannot take (23502)
UPDATE stripe.customers SET balance = NULL WHERE id = :'cus';

-- unsupported statements (0A000, with a hint)
DELETE FROM stripe.prices WHERE id = :'price';
DELETE FROM stripe.charges WHERE customer = :'cus';
INSERT INTO stripe.customers (id, email) VALUES ('cus_x', 'refused@example.test') ON CONFLICT (id) DO NOTHING;
INSERT INTO stripe.customers (email) SELECT 'refused@example.test';
WITH c AS (UPDATE stripe.customers SET name = 'cte' WHERE id = :'cus' RETURNING id) SELECT * FROM c;
TRUNCATE stripe.customers;
\copy stripe.customers (email) FROM '/dev/null'
-- the same, and a write inside a multi-statement query, naming the table
-- without its schema: stripe comes first on the search_path
SET search_path = stripe, public;
\copy customers (email) FROM '/dev/null'
INSERT INTO customers (email) VALUES ('refused@example.test') \; SELECT 1;
RESET search_path;
-- (COPY out is a read: it passes through)
\copy (SELECT count(*) FROM stripe.customers WHERE email LIKE 'bulk-%@example.test') TO STDOUT

-- more than 100 rows (54000): a 101-row INSERT, and an UPDATE whose WHERE
-- matches 101 local rows (the test inserted them directly, not through the proxy)
SELECT 'INSERT INTO stripe.customers (email) VALUES '
    || string_agg(format('(%L)', 'many' || i || '@example.test'), ', ')
FROM generate_series(1, 101) i \gexec
UPDATE stripe.customers SET name = 'bulk' WHERE email LIKE 'bulk-%@example.test';
DELETE FROM stripe.customers WHERE email LIKE 'bulk-%@example.test';

-- a role without INSERT/UPDATE/DELETE (42501): app may only SELECT
SET ROLE app;
SELECT count(*) > 0 AS app_can_read FROM stripe.customers;
INSERT INTO stripe.customers (email) VALUES ('refused@example.test');
UPDATE stripe.customers SET name = 'app' WHERE id = :'cus';
DELETE FROM stripe.customers WHERE id = :'cus';
RESET ROLE;

-- in a failed transaction (25P02)
BEGIN;
SELECT 1 / 0;
INSERT INTO stripe.customers (email) VALUES ('refused@example.test');
ROLLBACK;

-- a read-only transaction (25006)
BEGIN READ ONLY;
INSERT INTO stripe.customers (email) VALUES ('refused@example.test');
ROLLBACK;

-- nothing was created
SELECT count(*) FROM stripe.customers
WHERE email IN ('refused@example.test', 'copy@example.test') OR email LIKE 'many%@example.test';
