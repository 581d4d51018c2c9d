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
