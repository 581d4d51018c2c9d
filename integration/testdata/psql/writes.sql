-- Writes through the pgstripe proxy with psql, as a user types them.
-- Run by integration/clients_test.go (psql -X -a -v ON_ERROR_STOP=0 -f);
-- the output, with ids and times normalised, must equal writes.golden.
\set VERBOSITY verbose
\pset pager off

-- INSERT … RETURNING: the row comes back from the local table at once.
INSERT INTO stripe.customers (email, name, metadata)
VALUES ('psql@example.test', 'Psql User', '{"source": "psql"}')
RETURNING id, email, name, metadata, created IS NOT NULL AS has_created;
SELECT id AS cus FROM stripe.customers WHERE email = 'psql@example.test' \gset

-- UPDATE with a jsonb expression, evaluated by Postgres, sent as Stripe params.
UPDATE stripe.customers SET metadata = metadata || '{"plan": "pro"}', description = upper(name),
       address = jsonb_build_object('city', 'Paris', 'country', 'FR')
WHERE id = :'cus'
RETURNING id, metadata, description, address->>'city' AS city;

-- Removing a key with jsonb's minus, and NULL to unset a field Stripe lets
-- one unset (address); not one it doesn't (description, 23502).
UPDATE stripe.customers SET metadata = metadata - 'plan', address = NULL WHERE id = :'cus'
RETURNING metadata, address IS NULL AS no_address;
UPDATE stripe.customers SET description = NULL WHERE id = :'cus';

-- Setting metadata replaces it (keys left out are removed in Stripe too).
UPDATE stripe.customers SET metadata = '{"tier": "gold"}' WHERE id = :'cus' RETURNING metadata;

-- A subscription: product, monthly price, then the subscription with items as jsonb.
INSERT INTO stripe.products (name) VALUES ('Psql Plan') RETURNING id AS prod \gset
SELECT name, active FROM stripe.products WHERE id = :'prod';
INSERT INTO stripe.prices (product, currency, unit_amount, recurring)
VALUES (:'prod', 'usd', 1500, '{"interval": "month"}')
RETURNING id AS price \gset
SELECT product = :'prod' AS for_product, currency, unit_amount, recurring->>'interval' AS interval
FROM stripe.prices WHERE id = :'price';
INSERT INTO stripe.subscriptions (customer, items, metadata)
VALUES (:'cus', jsonb_build_array(jsonb_build_object('price', :'price', 'quantity', 3)), '{"seats": "3"}')
RETURNING customer = :'cus' AS for_customer, status, items->'data'->0->>'quantity' AS quantity, metadata;
SELECT id AS sub FROM stripe.subscriptions WHERE customer = :'cus' \gset
SELECT count(*) AS items, min(quantity) AS quantity FROM stripe.subscription_items WHERE subscription = :'sub';
UPDATE stripe.subscriptions SET metadata = metadata || '{"seats": "4"}', cancel_at_period_end = true
WHERE id = :'sub'
RETURNING metadata, cancel_at_period_end;

-- DELETE on subscriptions cancels; RETURNING shows the row as it was.
DELETE FROM stripe.subscriptions WHERE id = :'sub' RETURNING status;
SELECT status FROM stripe.subscriptions WHERE id = :'sub';

-- Prices cannot be deleted: archive them.
UPDATE stripe.prices SET active = false WHERE id = :'price' RETURNING active;

-- Inside BEGIN … COMMIT the write goes to Stripe at once, with a NOTICE.
BEGIN;
INSERT INTO stripe.customers (email) VALUES ('psql-tx@example.test') RETURNING email;
UPDATE stripe.customers SET name = 'In Transaction' WHERE email = 'psql-tx@example.test';
COMMIT;
SELECT email, name FROM stripe.customers WHERE email = 'psql-tx@example.test';

-- ROLLBACK cannot undo it: the customer exists in Stripe and locally.
BEGIN;
INSERT INTO stripe.customers (email) VALUES ('psql-rollback@example.test') RETURNING email;
ROLLBACK;
SELECT email FROM stripe.customers WHERE email = 'psql-rollback@example.test';

-- Stripe's 4xx answers: nothing is applied locally.
-- resource missing (Stripe answers 400 resource_missing):
INSERT INTO stripe.subscriptions (customer, items)
VALUES ('cus_doesnotexist', jsonb_build_array(jsonb_build_object('price', :'price')));
-- a card error (402): paying an open invoice of a customer with no payment method.
INSERT INTO stripe.invoices (customer) VALUES (:'cus') RETURNING id AS inv \gset
SELECT status FROM stripe.invoices WHERE id = :'inv';
INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES (:'cus', :'inv', 2500, 'usd') RETURNING amount;
UPDATE stripe.invoices SET status = 'open' WHERE id = :'inv' RETURNING status, amount_due;
UPDATE stripe.invoices SET status = 'paid' WHERE id = :'inv' RETURNING status;
SELECT status, amount_paid FROM stripe.invoices WHERE id = :'inv';
-- an invalid parameter value (400 naming the param):
INSERT INTO stripe.customers (email, tax_exempt) VALUES ('psql-invalid@example.test', 'sometimes');
SELECT count(*) FROM stripe.customers WHERE email = 'psql-invalid@example.test';
-- a required parameter left NULL (Stripe's 400 names it):
INSERT INTO stripe.prices (product, currency, unit_amount) VALUES (NULL, 'usd', 100);
SELECT count(*) AS prices FROM stripe.prices WHERE product = :'prod';

-- DELETE a customer: gone from Stripe and from the table.
DELETE FROM stripe.customers WHERE email IN ('psql@example.test', 'psql-tx@example.test', 'psql-rollback@example.test');
SELECT count(*) FROM stripe.customers WHERE email LIKE 'psql%@example.test';
