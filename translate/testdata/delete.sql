-- case: delete customer
DELETE FROM stripe.customers WHERE id = $1 RETURNING *
-- row: ["cus_1"]

-- case: subscription delete cancels
DELETE FROM stripe.subscriptions s WHERE s.customer = 'cus_1'
-- row: ["sub_1"]
-- row: ["sub_2"]

-- case: invoice draft delete
DELETE FROM stripe.invoices WHERE status = 'draft' AND customer = $1
-- row: ["in_1"]

-- case: tax id delete
DELETE FROM stripe.tax_ids WHERE id = 'txi_1'
-- row: ["txi_1"]

-- case: prices cannot be deleted
DELETE FROM stripe.prices WHERE id = 'price_1'

-- case: tax rates cannot be deleted
DELETE FROM stripe.tax_rates WHERE id = 'txr_1'

-- case: payment intents are canceled, not deleted
DELETE FROM stripe.payment_intents WHERE id = 'pi_1'

-- case: delete using
DELETE FROM stripe.customers c USING public.banned b WHERE b.email = c.email
-- row: ["cus_1"]

-- case: delete using with returning
DELETE FROM stripe.customers c USING public.banned b WHERE b.email = c.email RETURNING c.id

-- case: delete of a read-only table
DELETE FROM stripe.charges

-- case: refunds are canceled, not deleted
DELETE FROM stripe.refunds WHERE id = 're_1'

-- case: checkout sessions are expired, not deleted
DELETE FROM stripe.checkout_sessions WHERE id = 'cs_1'

-- case: payouts are canceled, not deleted
DELETE FROM stripe.payouts WHERE id = 'po_1'

-- case: subscription schedules are canceled or released, not deleted
DELETE FROM stripe.subscription_schedules WHERE id = 'sub_sched_1'

-- case: disputes are closed, not deleted
DELETE FROM stripe.disputes WHERE id = 'dp_1'

-- case: invoice lines go with their invoice items
DELETE FROM stripe.invoice_line_items WHERE id = 'il_1'

-- case: upcoming invoices are computed
DELETE FROM stripe.upcoming_invoices WHERE customer = 'cus_1'
