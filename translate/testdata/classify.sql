-- case: read passes without parsing
SELECT * FROM stripe.customers WHERE email = 'a@b.co'

-- case: select for update is a read
SELECT id FROM stripe.customers FOR UPDATE

-- case: write to another schema
INSERT INTO public.orders (id) VALUES (1)

-- case: unknown table in schema stripe is left to Postgres
INSERT INTO stripe.my_notes (body) VALUES ('x')

-- case: quoted, upper-case schema and table
INSERT INTO "stripe"."customers" (email) VALUES ('q@b.co')

-- case: upper-case keywords and names fold
INSERT INTO STRIPE.CUSTOMERS (EMAIL) VALUES ('q@b.co')

-- case: quoted mixed-case table is not ours
INSERT INTO stripe."Customers" (email) VALUES ('q@b.co')

-- case: unqualified name resolved at execution
UPDATE customers SET name = 'x' WHERE id = 'cus_1'

-- case: unqualified non-stripe name
UPDATE orders SET total = 1

-- case: truncate
TRUNCATE stripe.customers, public.orders

-- case: truncate maybe ours
TRUNCATE customers

-- case: copy from
COPY stripe.customers (email) FROM STDIN

-- case: copy to is a read
COPY stripe.customers TO STDOUT

-- case: merge
MERGE INTO stripe.customers c USING src s ON c.id = s.id WHEN MATCHED THEN UPDATE SET name = s.name

-- case: writable cte in a select
WITH n AS (INSERT INTO stripe.customers (email) VALUES ('a') RETURNING id) SELECT * FROM n

-- case: writable cte elsewhere, stripe target
WITH x AS (DELETE FROM public.t RETURNING id) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM x)

-- case: read-only cte on a stripe write
WITH x AS (SELECT 1) INSERT INTO stripe.customers (email) VALUES ('a')

-- case: insert select
INSERT INTO stripe.customers (email) SELECT email FROM public.users

-- case: on conflict
INSERT INTO stripe.customers (id, email) VALUES ('cus_1', 'a') ON CONFLICT (id) DO NOTHING

-- case: multi-statement with a stripe write
BEGIN; INSERT INTO stripe.customers (email) VALUES ('a'); COMMIT

-- case: multi-statement, maybe ours
INSERT INTO customers (email) VALUES ('a'); SELECT 1

-- case: explain analyze
EXPLAIN ANALYZE DELETE FROM stripe.customers

-- case: explain without analyze is a read
EXPLAIN DELETE FROM stripe.customers

-- case: copy of a write's returning runs the write
COPY (DELETE FROM stripe.customers WHERE true RETURNING id) TO STDOUT

-- case: copy of an insert's returning
COPY (INSERT INTO stripe.customers (email) VALUES ('a') RETURNING id) TO STDOUT

-- case: copy of an unqualified write is decided at execution
COPY (UPDATE customers SET name = 'x' RETURNING id) TO STDOUT

-- case: copy of a table or a read passes
COPY (SELECT * FROM stripe.customers) TO STDOUT

-- case: copy of a write elsewhere passes
COPY (DELETE FROM public.t RETURNING id) TO STDOUT

-- case: create table as with a writing cte
CREATE TABLE x AS WITH d AS (DELETE FROM stripe.customers RETURNING id) SELECT id FROM d

-- case: create table as of a read passes
CREATE TABLE x AS SELECT * FROM stripe.customers

-- case: explain analyze of create table as with a writing cte
EXPLAIN ANALYZE CREATE TABLE x AS WITH d AS (UPDATE stripe.customers SET name = 'x' RETURNING id) SELECT id FROM d

-- case: prepare
PREPARE p AS INSERT INTO stripe.customers (email) VALUES ($1)

-- case: ddl passes
ALTER TABLE stripe.customers ADD COLUMN note text

-- case: syntax error is Postgres's to report
INSERT INTO stripe.customers (email VALUES

-- case: read-only table
INSERT INTO stripe.balance_transactions (amount, currency) VALUES (100, 'usd')

-- case: read-only table, update
UPDATE stripe.balance_transactions SET description = 'x'
