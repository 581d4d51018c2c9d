-- case: metadata merge and a parameter
UPDATE stripe.customers SET metadata = metadata || '{"plan":"pro"}', name = $1 WHERE email = $2 RETURNING id, name
-- row: ["cus_1", {"a": "1", "plan": "pro"}, {"a": "1"}, "New", "Old"]

-- case: metadata key removed, unchanged name makes no param
UPDATE stripe.customers c SET metadata = c.metadata - 'a', name = c.name WHERE c.id = 'cus_1'
-- row: ["cus_1", {"b": "2"}, {"a": "1", "b": "2"}, "N", "N"]

-- case: nothing changed: no call
UPDATE stripe.customers SET name = 'N' WHERE id = $1
-- row: ["cus_1", "N", "N"]

-- case: NULL unsets where Stripe allows
UPDATE stripe.customers SET address = NULL, metadata = NULL WHERE id = 'cus_1'
-- row: ["cus_1", null, {"city": "Paris"}, null, {"a": "1"}]

-- case: NULL where Stripe can't unset
UPDATE stripe.customers SET email = NULL WHERE id = 'cus_1'
-- row: ["cus_1", null, "a@b.co"]

-- case: nested object update: whole object, removed key unset
UPDATE stripe.customers SET address = $1 WHERE id = 'cus_1'
-- row: ["cus_1", {"city": "Lyon", "line1": "1 rue"}, {"city": "Paris", "line1": "1 rue", "postal_code": "75001"}]

-- case: ORM sets read-only columns to their current values
UPDATE stripe.customers SET id = $1, created = $2, email = $3 WHERE id = $1
-- row: ["cus_1", "cus_1", "cus_1", 1700000000, 1700000000, "new@b.co", "old@b.co"]

-- case: changing a read-only column
UPDATE stripe.customers SET created = $1 WHERE id = 'cus_1'
-- row: ["cus_1", 1700000001, 1700000000]

-- case: read-only constant
UPDATE stripe.customers SET livemode = true

-- case: multi-assignment
UPDATE stripe.customers SET (name, phone) = ($1, $2) WHERE id = $3
-- row: ["cus_1", "N", "O", "+331", null]

-- case: multi-assignment from a subquery
UPDATE stripe.customers SET (name, phone) = (SELECT 'a', 'b') WHERE id = 'x'

-- case: subscript assignment
UPDATE stripe.customers SET metadata['plan'] = '"pro"' WHERE id = 'x'

-- case: update from another table
UPDATE stripe.customers c SET name = u.name FROM public.users u WHERE u.email = c.email
-- row: ["cus_1", "A", "B"]
-- row: ["cus_1", "A2", "B"]
-- row: ["cus_2", "C", "D"]

-- case: update from with returning
UPDATE stripe.customers c SET name = u.name FROM public.users u WHERE u.email = c.email RETURNING c.id

-- case: where current of
UPDATE stripe.customers SET name = 'x' WHERE CURRENT OF cur

-- case: coupons only update name and metadata
UPDATE stripe.coupons SET name = 'X', percent_off = 50 WHERE id = 'co_1'
-- row: ["co_1", "X", "Y", 50, 25]

-- case: tax ids cannot be updated
UPDATE stripe.tax_ids SET value = 'x' WHERE id = 'txi_1'

-- case: credit notes: Stripe updates memo and metadata
UPDATE stripe.credit_notes SET memo = 'x', metadata = '{"k":"v"}' WHERE id = 'cn_1'
-- row: ["cn_1", "x", null, {"k": "v"}, {}]

-- case: credit notes: void
UPDATE stripe.credit_notes SET status = 'void' WHERE id = 'cn_1'
-- row: ["cn_1", "void", "issued"]

-- case: credit notes: other columns are not update parameters
UPDATE stripe.credit_notes SET amount = 5 WHERE id = 'cn_1'
-- row: ["cn_1", 5, 100]

-- case: invoice finalize with a field update first
UPDATE stripe.invoices SET status = 'open', description = $1 WHERE id = $2
-- row: ["in_1", "open", "draft", "D", null]

-- case: invoice pay, void, mark uncollectible
UPDATE stripe.invoices SET status = $1 WHERE customer = 'cus_1'
-- row: ["in_1", "paid", "open"]
-- row: ["in_2", "void", "open"]
-- row: ["in_3", "uncollectible", "open"]
-- row: ["in_4", "open", "open"]

-- case: invoice status without an endpoint
UPDATE stripe.invoices SET status = 'draft' WHERE id = 'in_1'
-- row: ["in_1", "draft", "open"]

-- case: payment intent cancel
UPDATE stripe.payment_intents SET status = 'canceled' WHERE id = 'pi_1'
-- row: ["pi_1", "canceled", "requires_payment_method"]

-- case: setup intent cancel
UPDATE stripe.setup_intents SET status = 'canceled', metadata = '{"r":"x"}' WHERE id = 'seti_1'
-- row: ["seti_1", "canceled", "requires_payment_method", {"r": "x"}, {}]

-- case: payment method attach and detach
UPDATE stripe.payment_methods SET customer = CASE id WHEN 'pm_1' THEN 'cus_1' END WHERE id IN ('pm_1', 'pm_2')
-- row: ["pm_1", "cus_1", null]
-- row: ["pm_2", null, "cus_9"]

-- case: refunds update metadata only
UPDATE stripe.refunds SET metadata = '{"a":"b"}', amount = 1 WHERE id = 're_1'
-- row: ["re_1", {"a": "b"}, {}, 1, 500]

-- case: subscription update with items
UPDATE stripe.subscriptions SET items = $1, cancel_at_period_end = true WHERE id = 'sub_1'
-- row: ["sub_1", [{"id": "si_1", "quantity": 3}], {"data": [], "object": "list"}, true, false]

-- case: prices archive
UPDATE stripe.prices SET active = false WHERE product = 'prod_1'
-- row: ["price_1", false, true]

-- case: more than 100 matched rows
UPDATE stripe.customers SET name = 'x'

-- case: DEFAULT leaves a field alone
UPDATE stripe.customers SET name = DEFAULT, email = $1 WHERE id = $2
-- row: ["cus_1", "n@b.co", "o@b.co"]

-- case: _params on an update
UPDATE stripe.subscriptions SET items = $1, _params = '{"proration_behavior":"none"}' WHERE id = 'sub_1'
-- row: ["sub_1", [{"id": "si_1", "quantity": 2}], [], {"proration_behavior": "none"}, null]

-- case: _params go to the status endpoint
UPDATE stripe.invoices SET status = 'paid', _params = '{"paid_out_of_band": true}' WHERE id = 'in_1'
-- row: ["in_1", "paid", "open", {"paid_out_of_band": true}, null]

-- case: _params for a payment intent cancel
UPDATE stripe.payment_intents SET status = 'canceled', _params = '{"cancellation_reason":"abandoned"}' WHERE id = 'pi_1'
-- row: ["pi_1", "canceled", "requires_payment_method", {"cancellation_reason": "abandoned"}, null]

-- case: subscription billing_cycle_anchor: Stripe's update takes only 'now'/'unchanged', never a timestamp
UPDATE stripe.subscriptions SET billing_cycle_anchor = now() WHERE id = 'sub_1'
-- row: ["sub_1", 1700000000, 1690000000]

-- case: subscription billing_cycle_anchor: ORM sends the current value back
UPDATE stripe.subscriptions SET billing_cycle_anchor = $1, description = $2 WHERE id = 'sub_1'
-- row: ["sub_1", 1690000000, 1690000000, "d", null]

-- case: subscription billing_cycle_anchor 'now' goes in _params
UPDATE stripe.subscriptions SET _params = '{"billing_cycle_anchor": "now", "proration_behavior": "none"}' WHERE id = 'sub_1'
-- row: ["sub_1", {"billing_cycle_anchor": "now", "proration_behavior": "none"}, null]

-- case: tax_rates appended: the stored tax rate objects go back as ids
UPDATE stripe.subscription_items SET tax_rates = tax_rates || '["txr_2"]' WHERE id = 'si_1'
-- row: ["si_1", [{"id": "txr_1", "object": "tax_rate", "percentage": 20, "active": true}, "txr_2"], [{"id": "txr_1", "object": "tax_rate", "percentage": 20, "active": true}]]

-- case: invoice discounts appended: stored discount ids go back as {"discount": id}
UPDATE stripe.invoices SET discounts = discounts || '[{"coupon": "co_2"}]' WHERE id = 'in_1'
-- row: ["in_1", ["di_1", {"coupon": "co_2"}], ["di_1"]]

-- case: customer tax: automatic_tax and location are Stripe's, not update parameters
UPDATE stripe.customers SET tax = '{"ip_address": "1.2.3.4"}' WHERE id = 'cus_1'
-- row: ["cus_1", {"ip_address": "1.2.3.4"}, {"automatic_tax": "supported", "ip_address": null, "location": {"country": "US", "source": "ip_address", "state": null}}]

-- case: customer tax merged keeps Stripe's keys out of the call
UPDATE stripe.customers SET tax = tax || '{"validate_location": "deferred"}' WHERE id = 'cus_1'
-- row: ["cus_1", {"automatic_tax": "supported", "ip_address": "1.2.3.4", "location": {"country": "US", "source": "ip_address", "state": null}, "validate_location": "deferred"}, {"automatic_tax": "supported", "ip_address": "1.2.3.4", "location": {"country": "US", "source": "ip_address", "state": null}}]

-- case: customer tax: changing a key Stripe sets is refused
UPDATE stripe.customers SET tax = tax || '{"automatic_tax": "failed"}' WHERE id = 'cus_1'
-- row: ["cus_1", {"automatic_tax": "failed", "ip_address": null}, {"automatic_tax": "supported", "ip_address": null}]

-- case: payment intent card options: installments.available_plans is Stripe's, not an update parameter
UPDATE stripe.payment_intents SET payment_method_options = jsonb_set(payment_method_options, '{card,request_three_d_secure}', '"any"') WHERE id = 'pi_1'
-- row: ["pi_1", {"card": {"installments": {"available_plans": [{"count": 3, "interval": "month", "type": "fixed_count"}], "enabled": true, "plan": null}, "mandate_options": null, "network": null, "request_three_d_secure": "any"}}, {"card": {"installments": {"available_plans": [{"count": 3, "interval": "month", "type": "fixed_count"}], "enabled": true, "plan": null}, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}}]

-- case: promotion code restrictions: only currency_options is an update parameter
UPDATE stripe.promotion_codes SET restrictions = restrictions || '{"currency_options": {"eur": {"minimum_amount": 500}}}' WHERE id = 'promo_1'
-- row: ["promo_1", {"currency_options": {"eur": {"minimum_amount": 500}}, "first_time_transaction": false, "minimum_amount": 1000, "minimum_amount_currency": "usd"}, {"currency_options": {}, "first_time_transaction": false, "minimum_amount": 1000, "minimum_amount_currency": "usd"}]

-- case: payment method card expiry
UPDATE stripe.payment_methods SET card = card || '{"exp_month": 12}' WHERE id = 'pm_1'
-- row: ["pm_1", {"brand": "visa", "checks": {"cvc_check": "pass"}, "country": "US", "exp_month": 12, "exp_year": 2030, "last4": "4242", "networks": {"available": ["visa"], "preferred": null}, "wallet": null}, {"brand": "visa", "checks": {"cvc_check": "pass"}, "country": "US", "exp_month": 8, "exp_year": 2030, "last4": "4242", "networks": {"available": ["visa"], "preferred": null}, "wallet": null}]

-- case: payment intent transfer_data: the update takes the amount only
UPDATE stripe.payment_intents SET transfer_data = '{"amount": 500}' WHERE id = 'pi_1'
-- row: ["pi_1", {"amount": 500}, {"amount": 1000, "destination": "acct_1"}]

-- case: refund cancel
UPDATE stripe.refunds SET status = 'canceled' WHERE id = 're_1'
-- row: ["re_1", "canceled", "requires_action"]

-- case: checkout session expire
UPDATE stripe.checkout_sessions SET status = 'expired' WHERE id = 'cs_1'
-- row: ["cs_1", "expired", "open"]

-- case: checkout sessions: no other update
UPDATE stripe.checkout_sessions SET success_url = $1 WHERE id = 'cs_1'
-- row: ["cs_1", "https://x.test/new", "https://x.test/ok"]

-- case: checkout sessions: status without an endpoint
UPDATE stripe.checkout_sessions SET status = 'complete' WHERE id = 'cs_1'
-- row: ["cs_1", "complete", "open"]

-- case: charge update
UPDATE stripe.charges SET description = 'order 7', metadata = '{"k":"v"}' WHERE id = 'ch_1'
-- row: ["ch_1", "order 7", null, {"k": "v"}, {}]

-- case: payout metadata and cancel
UPDATE stripe.payouts SET metadata = '{"k":"v"}', status = 'canceled' WHERE id = 'po_1'
-- row: ["po_1", {"k": "v"}, {}, "canceled", "pending"]

-- case: subscription schedule release and cancel
UPDATE stripe.subscription_schedules SET status = $1 WHERE customer = 'cus_1'
-- row: ["sub_sched_1", "released", "active"]
-- row: ["sub_sched_2", "canceled", "not_started"]

-- case: dispute evidence, then close
UPDATE stripe.disputes SET evidence = '{"product_description":"a hat"}', status = 'lost' WHERE id = 'dp_1'
-- row: ["dp_1", {"product_description": "a hat"}, {}, "lost", "needs_response"]

-- case: invoice line: the update path names the line's invoice
UPDATE stripe.invoice_line_items SET description = 'x', quantity = quantity + 1 WHERE id = 'il_1'
-- row: ["il_1", "in_1", "x", "old", 3, 2]

-- case: invoice line: the stored price object and tax rate objects go back as ids
UPDATE stripe.invoice_line_items SET price = price, tax_rates = tax_rates || '["txr_2"]', metadata = '{"k":"v"}' WHERE invoice = 'in_1'
-- row: ["il_1", "in_1", {"id": "price_1", "object": "price", "unit_amount": 100}, {"id": "price_1", "object": "price", "unit_amount": 100}, [{"id": "txr_1", "object": "tax_rate", "percentage": 20}, "txr_2"], [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], {"k": "v"}, {}]

-- case: invoice line: a line without its invoice can't be addressed
UPDATE stripe.invoice_line_items SET description = 'x' WHERE id = 'il_1'
-- row: ["il_1", null, "x", "old"]

-- case: invoice line: tax_amounts set anew, Stripe's keys of the stored ones left out
UPDATE stripe.invoice_line_items SET tax_amounts = '[{"amount": 20, "taxable_amount": 100, "tax_rate_data": {"display_name": "VAT", "inclusive": false, "percentage": 20}}]' WHERE id = 'il_1'
-- row: ["il_1", "in_1", [{"amount": 20, "taxable_amount": 100, "tax_rate_data": {"display_name": "VAT", "inclusive": false, "percentage": 20}}], [{"amount": 10, "inclusive": false, "tax_rate": "txr_1", "taxability_reason": null, "taxable_amount": 100}]]

-- case: invoice line: a column Stripe's line update doesn't take
UPDATE stripe.invoice_line_items SET proration = true WHERE id = 'il_1'
-- row: ["il_1", "in_1", true, false]

-- case: balance transactions are read-only, with a hint
UPDATE stripe.balance_transactions SET description = 'x' WHERE id = 'txn_1'

-- case: subscriptions are canceled by DELETE, not by status
UPDATE stripe.subscriptions SET status = 'canceled' WHERE id = 'sub_1'
-- row: ["sub_1", "canceled", "active"]

-- case: schedule phases round-tripped: tax rate and price objects inside go back as ids
UPDATE stripe.subscription_schedules SET phases = jsonb_set(phases, '{0,metadata}', '{"k":"v"}') WHERE id = 'sub_sched_1'
-- row: ["sub_sched_1", [{"currency": "usd", "default_tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "end_date": 1700100000, "items": [{"price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "tax_rates": [{"id": "txr_2", "object": "tax_rate", "percentage": 5}]}], "metadata": {"k": "v"}, "start_date": 1700000000}], [{"currency": "usd", "default_tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "end_date": 1700100000, "items": [{"price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "tax_rates": [{"id": "txr_2", "object": "tax_rate", "percentage": 5}]}], "metadata": {}, "start_date": 1700000000}]]

-- case: schedule default_settings: an expanded default payment method goes back as its id
UPDATE stripe.subscription_schedules SET default_settings = default_settings || '{"description": "d"}' WHERE id = 'sub_sched_1'
-- row: ["sub_sched_1", {"default_payment_method": {"id": "pm_1", "object": "payment_method", "type": "card"}, "description": "d", "invoice_settings": {"account_tax_ids": [{"id": "txi_1", "object": "tax_id", "value": "x"}], "days_until_due": null}}, {"default_payment_method": {"id": "pm_1", "object": "payment_method", "type": "card"}, "description": null, "invoice_settings": {"account_tax_ids": [{"id": "txi_1", "object": "tax_id", "value": "x"}], "days_until_due": null}}]

-- case: invoice default_tax_rates and account_tax_ids as stored objects
UPDATE stripe.invoices SET default_tax_rates = default_tax_rates || '["txr_2"]', account_tax_ids = account_tax_ids WHERE id = 'in_1'
-- row: ["in_1", [{"id": "txr_1", "object": "tax_rate"}, "txr_2"], [{"id": "txr_1", "object": "tax_rate"}], [{"id": "txi_1", "object": "tax_id"}], [{"id": "txi_1", "object": "tax_id"}]]

-- case: subscription transfer_data: an expanded destination account goes back as its id
UPDATE stripe.subscriptions SET transfer_data = transfer_data || '{"amount_percent": 10}' WHERE id = 'sub_1'
-- row: ["sub_1", {"amount_percent": 10, "destination": {"id": "acct_1", "object": "account"}}, {"amount_percent": null, "destination": {"id": "acct_1", "object": "account"}}]

-- case: subscription items read back: a changed item goes as its id and changed keys, unchanged items stay out
UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,quantity}', '3') WHERE id = 'sub_1'
-- row: ["sub_1", {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 3, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}, {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}]

-- case: subscription items read back: tax rate objects go back as ids, removed metadata keys are unset
UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0}', $1) WHERE id = 'sub_1'
-- row: ["sub_1", {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"b": "2"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}, "txr_2"], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}, {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}]

-- case: subscription items read back: an item left out is deleted, a new one added
UPDATE stripe.subscriptions SET items = jsonb_insert(items #- '{data,1}', '{data,1}', '{"price": "price_3", "quantity": 1}') WHERE id = 'sub_1'
-- row: ["sub_1", {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"price": "price_3", "quantity": 1}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}, {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}]

-- case: subscription items: an item replaced in the request's shape changes only the keys it has
UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0}', '{"id": "si_1", "quantity": 5}') WHERE id = 'sub_1'
-- row: ["sub_1", {"object": "list", "data": [{"id": "si_1", "quantity": 5}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}, {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}]

-- case: subscription items read back unchanged: no call
UPDATE stripe.subscriptions SET items = items || '{}' WHERE id = 'sub_1'
-- row: ["sub_1", {"object": "list", "data": [{"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}, {"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}, {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}]

-- case: subscription items read back: a key Stripe's update doesn't take cannot change
UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,created}', '1700000001') WHERE id = 'sub_1'
-- row: ["sub_1", {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000001, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}, {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}], "billing_thresholds": null}, {"id": "si_2", "object": "subscription_item", "created": 1700000000, "metadata": {}, "plan": {"id": "price_2", "object": "plan"}, "price": {"id": "price_2", "object": "price", "unit_amount": 200}, "quantity": 2, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}]
