-- case: done-when statement
INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', '{"tier":"gold"}') RETURNING id, email, created;
-- row: ["a@b.co", {"tier": "gold"}]

-- case: nested objects and arrays become bracketed params
INSERT INTO stripe.customers (email, address, preferred_locales, metadata) VALUES ($1, $2, $3, $4)
-- row: ["x@y.co", {"city": "Paris", "line1": "1 rue", "state": null}, ["fr", "en"], {"n": 1, "ok": true}]

-- case: ORM lists every column: NULL and DEFAULT for read-only ones are ignored
INSERT INTO stripe.customers (id, object, created, livemode, email, name, _raw, _synced_at) VALUES (DEFAULT, NULL, NULL, DEFAULT, $1, $2, NULL, DEFAULT) RETURNING *
-- row: [null, null, null, null, "o@b.co", null, null, null]

-- case: read-only column with a value from a parameter fails at build
INSERT INTO stripe.customers (email, created) VALUES ($1, $2)
-- row: ["o@b.co", 1700000000]

-- case: read-only column with a constant fails at once
INSERT INTO stripe.customers (email, created) VALUES ('a@b.co', '2024-01-01')

-- case: read-only column with a cast constant fails at once
INSERT INTO stripe.customers (email, livemode) VALUES ('a@b.co', true::boolean)

-- case: unknown column
INSERT INTO stripe.customers (email, shoe_size) VALUES ('a@b.co', 42)

-- case: pgstripe column
INSERT INTO stripe.customers (email, _raw) VALUES ('a@b.co', '{}')

-- case: duplicate column
INSERT INTO stripe.customers (email, email) VALUES ('a', 'b')

-- case: column count mismatch
INSERT INTO stripe.customers (email, name) VALUES ('a')

-- case: no column list
INSERT INTO stripe.customers VALUES ('cus_1')

-- case: default values
INSERT INTO stripe.customers DEFAULT VALUES RETURNING id

-- case: subscription with items array and a timestamp
INSERT INTO stripe.subscriptions (customer, items, trial_end, metadata) VALUES ($1, $2, now() + interval '7 days', NULL)
-- row: ["cus_1", [{"price": "price_1", "quantity": 2}, {"price": "price_2"}], 1700000000, null]

-- case: products may choose their id
INSERT INTO stripe.products (id, name, active) VALUES ('prod_custom', 'Pro', true)
-- row: ["prod_custom", "Pro", true]

-- case: prices with a numeric and an expandable reference
INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ('prod_1', 'usd', 1500, '{"interval":"month"}')
-- row: ["prod_1", "usd", 1500, {"interval": "month"}]

-- case: tiers as Stripe returns them: the last up_to null is sent as inf
INSERT INTO stripe.prices (product, currency, billing_scheme, tiers_mode, tiers, recurring) VALUES ('prod_1', 'usd', 'tiered', 'graduated', '[{"up_to": 10, "unit_amount": 500, "flat_amount": null}, {"up_to": null, "unit_amount": 400, "flat_amount": null}]', '{"interval":"month"}')
-- row: ["prod_1", "usd", "tiered", "graduated", [{"up_to": 10, "unit_amount": 500, "flat_amount": null}, {"up_to": null, "unit_amount": 400, "flat_amount": null}], {"interval": "month"}]

-- case: two rows, second with different NULLs
INSERT INTO stripe.customers AS c (email, name) VALUES ($1, $2), ($3, NULL) RETURNING c.id, upper(c.email) AS e
-- row: ["a@b.co", "A"]
-- row: ["b@b.co", null]

-- case: parameter only in RETURNING
INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id, $2::text AS tag

-- case: tax id (no update, create via /v1/tax_ids)
INSERT INTO stripe.tax_ids (type, value, owner) VALUES ('eu_vat', 'DE123456789', '{"type":"customer","customer":"cus_1"}')
-- row: ["eu_vat", "DE123456789", {"customer": "cus_1", "type": "customer"}]

-- case: credit notes and checkout sessions are create-only
INSERT INTO stripe.checkout_sessions (mode, success_url, line_items) VALUES ('payment', 'https://x.test/ok', '[{"price":"price_1","quantity":1}]')
-- row: ["payment", "https://x.test/ok", [{"price": "price_1", "quantity": 1}]]

-- case: refund
INSERT INTO stripe.refunds (payment_intent, amount) VALUES ('pi_1', 500)
-- row: ["pi_1", 500]

-- case: invoice status is not a create parameter
INSERT INTO stripe.invoices (customer, status) VALUES ('cus_1', 'paid')

-- case: embedded object column named by a JSON string or by the object
INSERT INTO stripe.promotion_codes (coupon, code) VALUES ($1, 'SPRING')
-- row: ["co_1", "SPRING"]
-- row: [{"id": "co_2", "object": "coupon"}, "SPRING"]

-- case: tax id for a customer, the 2023 way
INSERT INTO stripe.tax_ids (customer, type, value) VALUES ($1, 'eu_vat', 'DE123456789')
-- row: ["cus_1", "eu_vat", "DE123456789"]

-- case: tax id with both customer and owner
INSERT INTO stripe.tax_ids (customer, owner, type, value) VALUES ('cus_1', '{}', 'eu_vat', 'DE1')

-- case: parameters without a column go in _params
INSERT INTO stripe.subscriptions (customer, items, _params) VALUES ($1, $2, $3)
-- row: ["cus_1", [{"price": "price_1"}], {"payment_behavior": "default_incomplete", "proration_behavior": "none"}]

-- case: _params with expand: the answer would carry other tables' objects
INSERT INTO stripe.subscriptions (customer, items, _params) VALUES ($1, $2, $3)
-- row: ["cus_1", [{"price": "price_1"}], {"payment_behavior": "default_incomplete", "expand": ["latest_invoice"]}]

-- case: _params key that is not a create parameter
INSERT INTO stripe.customers (email, _params) VALUES ('a@b.co', '{"shoe_size": 42}')
-- row: ["a@b.co", {"shoe_size": 42}]

-- case: _params repeats a column
INSERT INTO stripe.customers (email, _params) VALUES ('a@b.co', '{"email": "b@b.co"}')
-- row: ["a@b.co", {"email": "b@b.co"}]

-- case: _params must be an object
INSERT INTO stripe.customers (email, _params) VALUES ('a@b.co', '[1]')
-- row: ["a@b.co", [1]]

-- case: charge (Stripe's legacy create)
INSERT INTO stripe.charges (amount, currency, _params) VALUES (1000, 'usd', '{"source": "tok_visa"}')
-- row: [1000, "usd", {"source": "tok_visa"}]

-- case: payout
INSERT INTO stripe.payouts (amount, currency) VALUES (500, 'usd')
-- row: [500, "usd"]

-- case: subscription schedule
INSERT INTO stripe.subscription_schedules (customer, phases) VALUES ('cus_1', '[{"items":[{"price":"price_1"}]}]')
-- row: ["cus_1", [{"items": [{"price": "price_1"}]}]]

-- case: disputes are opened by the bank
INSERT INTO stripe.disputes (charge) VALUES ('ch_1')

-- case: invoice lines come from invoice items
INSERT INTO stripe.invoice_line_items (invoice, amount) VALUES ('in_1', 100)

-- case: upcoming invoices are computed
INSERT INTO stripe.upcoming_invoices (customer) VALUES ('cus_1')

-- case: subscription created with the items of another, read back: request keys only, objects as ids, no item ids
INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, $2)
-- row: ["cus_2", {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}]
-- stored: {"id": "price_1", "object": "price", "unit_amount": 100, "nickname": "newer"}
-- stored: {"id": "price_2", "object": "price", "unit_amount": 200}
-- stored: {"id": "txr_1", "object": "tax_rate", "percentage": 20}

-- case: credit note lines as a list object
INSERT INTO stripe.credit_notes (invoice, lines) VALUES ($1, $2)
-- row: ["in_1", {"object": "list", "data": [{"id": "cnli_1", "object": "credit_note_line_item", "amount": 100, "discount_amount": 0, "invoice_line_item": "il_1", "quantity": 1, "tax_rates": [{"id": "txr_1", "object": "tax_rate"}], "type": "invoice_line_item", "unit_amount": null, "livemode": false}], "has_more": false, "url": "/v1/credit_notes/cn_1/lines"}]
