-- case: drizzle update with a read-only cte
WITH "sq" AS (SELECT "id" FROM "stripe"."customers" WHERE "email" = $1) UPDATE "stripe"."customers" SET "name" = $2 WHERE "stripe"."customers"."id" IN (SELECT "id" FROM "sq") RETURNING "id", "name"
-- row: ["cus_1", "\"Ann\"", "\"Old\""]

-- case: kysely insert with a cte, cte in values and returning
WITH "v" AS (SELECT $1::text AS email) INSERT INTO "stripe"."customers" ("email", "name") VALUES ((SELECT email FROM v), 'x') RETURNING "id", (SELECT email FROM v) AS given
-- row: ["\"a@b.co\"", "\"x\""]

-- case: delete with a cte, returning reads it
WITH old AS (SELECT id FROM stripe.customers WHERE created < now() - interval '1 year') DELETE FROM stripe.customers WHERE id IN (SELECT id FROM old) RETURNING id, (SELECT count(*) FROM old) AS n
-- row: ["cus_1"]

-- case: recursive and materialization hints
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3), m AS MATERIALIZED (SELECT 1 AS one), nm AS NOT MATERIALIZED (SELECT 2 AS two) UPDATE stripe.customers SET metadata = jsonb_build_object('n', (SELECT max(n) FROM r)) WHERE id = 'cus_1' AND (SELECT one FROM m) = 1 AND (SELECT two FROM nm) = 2

-- case: cte shadows an unqualified target
WITH customers AS (SELECT 'cus_1'::text AS id) UPDATE customers SET name = 'x' WHERE id IN (SELECT id FROM customers) RETURNING id, (SELECT count(*) FROM customers) AS n

-- case: cte shadows a qualified target
WITH customers AS (SELECT 'cus_1'::text AS id) DELETE FROM stripe.customers WHERE id IN (SELECT id FROM customers)

-- case: insert default values with a cte in returning
WITH c AS (SELECT 1 AS one) INSERT INTO stripe.customers DEFAULT VALUES RETURNING id, (SELECT one FROM c)

-- case: update from with a cte
WITH b AS (SELECT email FROM public.banned) UPDATE stripe.customers c SET name = 'banned' FROM b WHERE b.email = c.email

-- case: writable cte writing another table
WITH x AS (DELETE FROM public.t RETURNING id) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM x)

-- case: writable cte on an insert
WITH x AS (INSERT INTO public.log (msg) VALUES ('hi') RETURNING 1) INSERT INTO stripe.customers (email) VALUES ('a')

-- case: writable cte on a delete
WITH x AS (UPDATE public.t SET n = 1 RETURNING id) DELETE FROM stripe.customers WHERE id IN (SELECT id FROM x)

-- case: writable cte writing a stripe table
WITH x AS (DELETE FROM stripe.products RETURNING id) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM x)

-- case: data-modifying statement nested in a cte of a cte
WITH a AS (WITH b AS (DELETE FROM public.t RETURNING id) SELECT id FROM b) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM a)

-- case: merge in a cte
WITH a AS (MERGE INTO public.t USING public.s ON t.id = s.id WHEN MATCHED THEN DELETE) DELETE FROM stripe.customers WHERE false

-- case: row lock in a cte
WITH a AS (SELECT id FROM stripe.customers WHERE email = 'a' FOR UPDATE SKIP LOCKED) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM a)

-- case: update returning reads a cte over a stripe table
WITH c AS (SELECT id, name FROM stripe.customers) UPDATE stripe.customers SET name = 'new' WHERE id = 'cus_1' RETURNING (SELECT c.name FROM c WHERE c.id = customers.id)

-- case: insert returning reads a cte over a stripe table through another cte
WITH a AS (SELECT count(*) AS n FROM customers), b AS (SELECT n FROM a) INSERT INTO stripe.customers (email) VALUES ('a') RETURNING id, (SELECT n FROM b)

-- case: delete returning may read a cte over a stripe table
WITH c AS (SELECT id, name FROM stripe.customers) DELETE FROM stripe.customers WHERE id = 'cus_1' RETURNING (SELECT c.name FROM c WHERE c.id = customers.id)

-- case: unqualified target with a cte is resolved
WITH c AS (SELECT 'cus_1'::text AS id) DELETE FROM customers WHERE id IN (SELECT id FROM c)

-- case: unqualified target with a writable cte is decided at execution
WITH x AS (DELETE FROM public.t RETURNING id) DELETE FROM customers WHERE id IN (SELECT id FROM x)

-- case: with on a read-only table
WITH c AS (SELECT 1) DELETE FROM stripe.balance_transactions WHERE false

-- case: with inside insert values is still insert select
INSERT INTO stripe.customers (email) WITH c AS (SELECT 'a' AS e) VALUES ((SELECT e FROM c))

-- case: update returning a subquery over its own table (refused: it would see the new row)
UPDATE stripe.customers SET name = 'New' WHERE id = $1 RETURNING name, (SELECT c2.name FROM stripe.customers c2 WHERE c2.id = customers.id) AS before

-- case: insert returning a count of its own table (refused)
INSERT INTO stripe.customers (email) VALUES ('a@b.co') RETURNING id, (SELECT count(*) FROM stripe.customers) AS n

-- case: delete returning a subquery over its own table (before the apply, as in Postgres)
DELETE FROM stripe.customers WHERE id = $1 RETURNING id, (SELECT count(*) FROM stripe.customers) AS n
