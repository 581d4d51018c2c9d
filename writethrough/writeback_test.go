package writethrough

import (
	"strings"
	"testing"
)

// TestWriteBackAgainstEmulator writes values as the local tables hold
// them back to the emulator, which validates every request against Stripe's
// spec: jsonb columns whose stored shape is not the update parameter's
// (tax rates as objects, Stripe-set keys of restrictions and card), and the
// update operations Stripe has (credit notes).
func TestWriteBackAgainstEmulator(t *testing.T) {
	e := setup(t)
	id := func(sql string, args ...any) string {
		t.Helper()
		r := e.ok(sql, args...)
		if len(r.rows) != 1 {
			t.Fatalf("%s: %d rows", sql, len(r.rows))
		}
		return r.rows[0][0]
	}
	cus := id(`INSERT INTO stripe.customers (email) VALUES ('review@b.co') RETURNING id`)
	prod := id(`INSERT INTO stripe.products (name) VALUES ('Review') RETURNING id`)
	price := id(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	txr1 := id(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txr2 := id(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('GST', 5, false) RETURNING id`)
	pm := id(`INSERT INTO stripe.payment_methods (type, card) VALUES ('card', '{"token":"tok_visa"}') RETURNING id`)
	e.ok(`UPDATE stripe.payment_methods SET customer = $1 WHERE id = $2`, cus, pm)
	e.ok(`UPDATE stripe.customers SET invoice_settings = $1 WHERE id = $2`, `{"default_payment_method":"`+pm+`"}`, cus)

	// tax_rates as stored (objects) plus a new id.
	sub := id(`INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, $2) RETURNING id`, cus, `[{"price":"`+price+`"}]`)
	si := e.local(`SELECT id FROM stripe.subscription_items WHERE subscription = $1`, sub)
	// The emulator keeps items' tax_rates empty; Stripe returns them as
	// tax rate objects, so the local row is given that shape directly.
	if _, err := e.pool.Exec(e.ctx, `UPDATE stripe.subscription_items SET tax_rates = jsonb_build_array(jsonb_build_object('id', $1::text, 'object', 'tax_rate', 'percentage', 20, 'active', true)) WHERE id = $2`, txr1, si); err != nil {
		t.Fatal(err)
	}
	before := e.calls()
	e.ok(`UPDATE stripe.subscription_items SET tax_rates = tax_rates || $1::jsonb WHERE id = $2`, `["`+txr2+`"]`, si)
	if e.calls() == before {
		t.Fatal("tax_rates append: Stripe was not called")
	}

	// billing_cycle_anchor: a timestamp is never a value of Stripe's update.
	before = e.calls()
	e.fails("42703", `UPDATE stripe.subscriptions SET billing_cycle_anchor = now() + interval '1 day' WHERE id = $1`, sub)
	if e.calls() != before {
		t.Fatal("billing_cycle_anchor: Stripe was called")
	}
	e.ok(`UPDATE stripe.subscriptions SET _params = '{"billing_cycle_anchor": "now", "proration_behavior": "none"}' WHERE id = $1`, sub)

	// promotion code restrictions: Stripe-set keys stay out of the call.
	co := id(`INSERT INTO stripe.coupons (percent_off, duration) VALUES (10, 'once') RETURNING id`)
	promo := id(`INSERT INTO stripe.promotion_codes (coupon, code, restrictions) VALUES ($1, 'REVIEW10', '{"minimum_amount": 1000, "minimum_amount_currency": "usd"}') RETURNING id`, `"`+co+`"`)
	e.ok(`UPDATE stripe.promotion_codes SET restrictions = restrictions || '{"currency_options": {"eur": {"minimum_amount": 900}}}' WHERE id = $1`, promo)
	if got := e.local(`SELECT restrictions#>>'{currency_options,eur,minimum_amount}' FROM stripe.promotion_codes WHERE id = $1`, promo); got != "900" {
		t.Fatalf("restrictions.currency_options.eur.minimum_amount = %s", got)
	}

	// card expiry: the card's brand, last4, checks … are Stripe's.
	e.ok(`UPDATE stripe.payment_methods SET card = card || '{"exp_month": 11}' WHERE id = $1`, pm)
	if got := e.local(`SELECT card->>'exp_month' FROM stripe.payment_methods WHERE id = $1`, pm); got != "11" {
		t.Fatalf("card.exp_month = %s", got)
	}

	// credit notes: Stripe updates memo and metadata, and voids.
	inv := id(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus)
	id(`INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES ($1, $2, 800, 'usd') RETURNING id`, cus, inv)
	e.ok(`UPDATE stripe.invoices SET status = 'open' WHERE id = $1`, inv)
	cn := id(`INSERT INTO stripe.credit_notes (invoice, amount) VALUES ($1, 100) RETURNING id`, inv)
	e.ok(`UPDATE stripe.credit_notes SET memo = 'goodwill', metadata = '{"k":"v"}' WHERE id = $1`, cn)
	if got := e.local(`SELECT memo || ' ' || (metadata->>'k') FROM stripe.credit_notes WHERE id = $1`, cn); got != "goodwill v" {
		t.Fatalf("credit note after update: %s", got)
	}
	e.ok(`UPDATE stripe.credit_notes SET status = 'void' WHERE id = $1`, cn)
	if got := e.local(`SELECT status FROM stripe.credit_notes WHERE id = $1`, cn); got != "void" {
		t.Fatalf("credit note status %s", got)
	}
	if r := e.fails("0A000", `DELETE FROM stripe.credit_notes WHERE id = $1`, cn); !strings.Contains(r.err.Hint, "void") {
		t.Fatalf("credit note DELETE hint: %q", r.err.Hint)
	}
}

// TestInlinePriceWriteThrough: an invoice item created with
// price_data brings its inline price (in no price list) into stripe.prices
// with the item, before the client's reply.
func TestInlinePriceWriteThrough(t *testing.T) {
	e := setup(t)
	cus := e.newCustomers("x1@b.co")[0]
	prod := string(e.ok(`INSERT INTO stripe.products (name) VALUES ('P') RETURNING id`).rows[0][0])
	r := e.ok(`INSERT INTO stripe.invoiceitems (customer, _params) VALUES ($1, jsonb_build_object('price_data', jsonb_build_object('currency', 'usd', 'product', $2::text, 'unit_amount', 500))) RETURNING price->>'id'`, cus, prod)
	price := string(r.rows[0][0])
	if got := e.local(`SELECT unit_amount::text FROM stripe.prices WHERE id = $1`, price); got != "500" {
		t.Fatalf("inline price %s: unit_amount %s", price, got)
	}
}
