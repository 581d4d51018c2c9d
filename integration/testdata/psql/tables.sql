-- Every row of README's per-table list (INSERT / UPDATE / DELETE per
-- stripe table) through psql and the pgstripe proxy. Run by
-- integration/clients_test.go; the output, normalised, must equal
-- tables.golden.
\set VERBOSITY verbose
\pset pager off

-- customers: create / update / delete
INSERT INTO stripe.customers (email, name) VALUES ('tables@example.test', 'A') RETURNING id AS cus \gset
UPDATE stripe.customers SET name = 'B' WHERE id = :'cus' RETURNING name;
INSERT INTO stripe.customers (email) VALUES ('tables-doomed@example.test') RETURNING id AS doomed \gset
DELETE FROM stripe.customers WHERE id = :'doomed';
SELECT count(*) AS doomed_left FROM stripe.customers WHERE id = :'doomed';

-- products: create / update / delete
INSERT INTO stripe.products (name) VALUES ('Tables Pro') RETURNING id AS prod \gset
UPDATE stripe.products SET description = 'The pro plan' WHERE id = :'prod' RETURNING name, description;
INSERT INTO stripe.products (name) VALUES ('Tables Spare') RETURNING id AS spare \gset
DELETE FROM stripe.products WHERE id = :'spare';

-- prices: create / update; DELETE refused with a hint
INSERT INTO stripe.prices (product, currency, unit_amount, recurring)
VALUES (:'prod', 'usd', 1500, '{"interval": "month"}') RETURNING id AS price \gset
UPDATE stripe.prices SET nickname = 'monthly' WHERE id = :'price' RETURNING nickname, unit_amount, type;
DELETE FROM stripe.prices WHERE id = :'price';

-- plans: create / update / delete
INSERT INTO stripe.plans (product, currency, amount, interval) VALUES (:'prod', 'usd', 900, 'month') RETURNING id AS plan \gset
UPDATE stripe.plans SET nickname = 'legacy' WHERE id = :'plan' RETURNING nickname, amount, interval;
DELETE FROM stripe.plans WHERE id = :'plan';

-- tax_rates: create / update; no delete
INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20.5, false) RETURNING id AS txr \gset
UPDATE stripe.tax_rates SET active = false WHERE id = :'txr' RETURNING display_name, percentage, active;
DELETE FROM stripe.tax_rates WHERE id = :'txr';

-- coupons: create, update (name and metadata only), delete
INSERT INTO stripe.coupons (percent_off, duration) VALUES (25, 'once') RETURNING id AS co \gset
UPDATE stripe.coupons SET name = 'Quarter off', metadata = '{"src": "psql"}' WHERE id = :'co' RETURNING name, percent_off, metadata;
UPDATE stripe.coupons SET percent_off = 50 WHERE id = :'co';

-- promotion_codes: create / update; no delete (coupon is jsonb: a JSON string names it)
INSERT INTO stripe.promotion_codes (coupon, code) VALUES (to_jsonb(:'co'::text), 'TABLESPSQL') RETURNING id AS promo \gset
UPDATE stripe.promotion_codes SET active = false WHERE id = :'promo' RETURNING code, active, coupon->>'id' = :'co' AS for_coupon;
DELETE FROM stripe.promotion_codes WHERE id = :'promo';
DELETE FROM stripe.coupons WHERE id = :'co';

-- invoiceitems: create / update / delete
INSERT INTO stripe.invoiceitems (customer, amount, currency) VALUES (:'cus', 700, 'usd') RETURNING id AS ii \gset
UPDATE stripe.invoiceitems SET description = 'setup fee' WHERE id = :'ii' RETURNING amount, description;
DELETE FROM stripe.invoiceitems WHERE id = :'ii';

-- payment_methods: create, attach (SET customer), update, detach (SET customer = NULL)
INSERT INTO stripe.payment_methods (type, card) VALUES ('card', '{"token": "tok_visa"}') RETURNING id AS pm \gset
UPDATE stripe.payment_methods SET customer = :'cus' WHERE id = :'pm' RETURNING type, customer = :'cus' AS attached;
UPDATE stripe.payment_methods SET metadata = '{"k": "v"}' WHERE id = :'pm' RETURNING metadata;
UPDATE stripe.customers SET invoice_settings = jsonb_build_object('default_payment_method', :'pm') WHERE id = :'cus';

-- subscriptions: create / update / cancel (DELETE)
INSERT INTO stripe.subscriptions (customer, items) VALUES (:'cus', jsonb_build_array(jsonb_build_object('price', :'price')))
RETURNING id AS sub \gset
SELECT status, jsonb_array_length(items->'data') AS items FROM stripe.subscriptions WHERE id = :'sub';
UPDATE stripe.subscriptions SET metadata = metadata || '{"seats": "3"}' WHERE id = :'sub' RETURNING metadata;

-- subscription_items: create / update / delete (the subscription's list follows)
INSERT INTO stripe.prices (product, currency, unit_amount, recurring)
VALUES (:'prod', 'usd', 300, '{"interval": "month"}') RETURNING id AS price2 \gset
INSERT INTO stripe.subscription_items (subscription, price, quantity) VALUES (:'sub', to_jsonb(:'price2'::text), 2)
RETURNING id AS si \gset
UPDATE stripe.subscription_items SET quantity = 5 WHERE id = :'si' RETURNING quantity, subscription = :'sub' AS for_subscription;
SELECT jsonb_array_length(items->'data') AS items,
       jsonb_path_query_first(items, '$.data[*] ? (@.id == $si).quantity', jsonb_build_object('si', :'si'::text)) AS quantity
FROM stripe.subscriptions WHERE id = :'sub';
DELETE FROM stripe.subscription_items WHERE id = :'si';
SELECT jsonb_array_length(items->'data') AS items FROM stripe.subscriptions WHERE id = :'sub';
DELETE FROM stripe.subscriptions WHERE id = :'sub';
SELECT status FROM stripe.subscriptions WHERE id = :'sub';

-- tax_ids: create (customer or owner) / delete; no update
INSERT INTO stripe.tax_ids (customer, type, value) VALUES (:'cus', 'eu_vat', 'DE123456789') RETURNING id AS txi \gset
SELECT type, value, owner->>'customer' = :'cus' AS owned FROM stripe.tax_ids WHERE id = :'txi';
UPDATE stripe.tax_ids SET value = 'DE000000000' WHERE id = :'txi';
DELETE FROM stripe.tax_ids WHERE id = :'txi';

-- invoices: create / update drafts / delete drafts; status transitions
INSERT INTO stripe.invoices (customer) VALUES (:'cus') RETURNING id AS draft \gset
UPDATE stripe.invoices SET description = 'first' WHERE id = :'draft' RETURNING status, description;
DELETE FROM stripe.invoices WHERE id = :'draft';
INSERT INTO stripe.invoices (customer) VALUES (:'cus') RETURNING id AS inv_void \gset
INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES (:'cus', :'inv_void', 500, 'usd');
UPDATE stripe.invoices SET status = 'open' WHERE id = :'inv_void' RETURNING status, amount_due;
UPDATE stripe.invoices SET status = 'void' WHERE id = :'inv_void' RETURNING status;
INSERT INTO stripe.invoices (customer) VALUES (:'cus') RETURNING id AS inv_paid \gset
INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES (:'cus', :'inv_paid', 800, 'usd');
UPDATE stripe.invoices SET status = 'paid' WHERE id = :'inv_paid' RETURNING status, amount_paid, charge IS NOT NULL AS charged;
SELECT charge FROM stripe.invoices WHERE id = :'inv_paid' \gset
INSERT INTO stripe.invoices (customer) VALUES (:'cus') RETURNING id AS inv_bad \gset
INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES (:'cus', :'inv_bad', 900, 'usd');
UPDATE stripe.invoices SET status = 'open' WHERE id = :'inv_bad';
UPDATE stripe.invoices SET status = 'uncollectible' WHERE id = :'inv_bad' RETURNING status;
UPDATE stripe.invoices SET status = 'draft' WHERE id = :'inv_bad';

-- credit_notes: create, update memo, void (SET status); no delete
INSERT INTO stripe.credit_notes (invoice, amount) VALUES (:'inv_paid', 100) RETURNING invoice = :'inv_paid' AS for_invoice, amount, status;
UPDATE stripe.credit_notes SET memo = 'x' WHERE invoice = :'inv_paid' RETURNING memo;
UPDATE stripe.credit_notes SET status = 'void' WHERE invoice = :'inv_paid' RETURNING status;
DELETE FROM stripe.credit_notes WHERE invoice = :'inv_paid';

-- payment_intents: create / update / cancel (SET status); no delete
INSERT INTO stripe.payment_intents (amount, currency, customer) VALUES (2000, 'usd', :'cus') RETURNING id AS pi \gset
UPDATE stripe.payment_intents SET description = 'order 1' WHERE id = :'pi' RETURNING amount, description, status;
UPDATE stripe.payment_intents SET status = 'canceled' WHERE id = :'pi' RETURNING status;
DELETE FROM stripe.payment_intents WHERE id = :'pi';

-- setup_intents: create / update / cancel; no delete
INSERT INTO stripe.setup_intents (customer) VALUES (:'cus') RETURNING id AS seti \gset
UPDATE stripe.setup_intents SET metadata = '{"k": "v"}' WHERE id = :'seti' RETURNING metadata;
UPDATE stripe.setup_intents SET status = 'canceled' WHERE id = :'seti' RETURNING status;

-- refunds: create / update metadata only
INSERT INTO stripe.refunds (charge, amount) VALUES (:'charge', 100) RETURNING id AS re \gset
UPDATE stripe.refunds SET metadata = '{"why": "test"}' WHERE id = :'re' RETURNING amount, metadata, status;
UPDATE stripe.refunds SET amount = 50 WHERE id = :'re';

-- checkout_sessions: create only
INSERT INTO stripe.checkout_sessions (mode, success_url, line_items)
VALUES ('subscription', 'https://example.test/ok', jsonb_build_array(jsonb_build_object('price', :'price', 'quantity', 1)))
RETURNING mode, status;

-- payment_methods: detach
UPDATE stripe.customers SET invoice_settings = '{"default_payment_method": ""}' WHERE id = :'cus';
UPDATE stripe.payment_methods SET customer = NULL WHERE id = :'pm' RETURNING customer;

-- a line of an invoice that is no longer a draft: Stripe refuses
UPDATE stripe.invoice_line_items SET description = 'x' WHERE invoice = :'inv_paid';
-- tables Stripe has no write for: refused, saying what to do instead
INSERT INTO stripe.invoice_line_items (invoice, description) VALUES (:'inv_paid', 'x');
INSERT INTO stripe.balance_transactions (amount) VALUES (1);
DELETE FROM stripe.upcoming_invoices WHERE customer = :'cus';
