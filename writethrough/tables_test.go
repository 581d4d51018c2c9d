package writethrough

import (
	"fmt"
	"strings"
	"testing"
)

// walker runs statements through the proxy and checks each against the
// local table and the emulator.
type walker struct {
	e *env
	t *testing.T
	c *client
}

func (w *walker) one(sql string, args ...any) string {
	w.t.Helper()
	var id string
	if err := w.c.QueryRow(w.e.ctx, sql, args...).Scan(&id); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return id
}

func (w *walker) exec(wantTag, sql string, args ...any) {
	w.t.Helper()
	tag, err := w.c.Exec(w.e.ctx, sql, args...)
	if err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	if tag.String() != wantTag {
		w.t.Fatalf("%s: tag %q, want %q", sql, tag, wantTag)
	}
}

func (w *walker) refused(code, sql string, args ...any) {
	w.t.Helper()
	before := w.e.calls()
	_, err := w.c.Exec(w.e.ctx, sql, args...)
	if sqlstate(err) != code {
		w.t.Fatalf("%s: want %s, got %v", sql, code, err)
	}
	if code != "P0002" && code != "P0001" && w.e.calls() != before {
		w.t.Fatalf("%s: Stripe was called", sql)
	}
}

// local asserts a value of the local row.
func (w *walker) local(table, id, col, want string) {
	w.t.Helper()
	got := w.e.local(`SELECT (`+col+`)::text FROM stripe.`+table+` WHERE id = $1`, id)
	if got != want {
		w.t.Fatalf("stripe.%s %s: %s = %q, want %q", table, id, col, got, want)
	}
}

// remote asserts a top-level field of the object in the emulator.
func (w *walker) remote(table, id, field string, want any) {
	w.t.Helper()
	obj := w.e.stripeObj(table, id)
	if obj == nil {
		w.t.Fatalf("%s %s not in Stripe", table, id)
	}
	if obj[field] != want {
		w.t.Fatalf("Stripe %s %s: %s = %v, want %v", table, id, field, obj[field], want)
	}
}

func (w *walker) gone(table, id string) {
	w.t.Helper()
	if got := w.e.local(`SELECT count(*)::text FROM stripe.`+table+` WHERE id = $1`, id); got != "0" {
		w.t.Fatalf("stripe.%s %s still local", table, id)
	}
	if w.e.stripeObj(table, id) != nil {
		w.t.Fatalf("%s %s still in Stripe", table, id)
	}
}

// TestEveryTableOperation walks the per-table operations list of CONTRACT
// §5 / issue 8 through pgx and the proxy, in the simple and the extended
// protocol (binary parameters).
func TestEveryTableOperation(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			w := &walker{e: e, t: t, c: e.client(u, m.mode)}
			walkTables(w)
		})
	}
}

func walkTables(w *walker) {
	// customers: create / update / delete.
	cus := w.one(`INSERT INTO stripe.customers (email, name) VALUES ($1, 'A') RETURNING id`, "walk@b.co")
	w.exec("UPDATE 1", `UPDATE stripe.customers SET name = $1 WHERE id = $2`, "B", cus)
	w.local("customers", cus, "name", "B")
	w.remote("customers", cus, "name", "B")
	doomed := w.one(`INSERT INTO stripe.customers (email) VALUES ('doomed@b.co') RETURNING id`)
	w.exec("DELETE 1", `DELETE FROM stripe.customers WHERE id = $1`, doomed)
	w.gone("customers", doomed)

	// products: create / update / delete.
	prod := w.one(`INSERT INTO stripe.products (name) VALUES ($1) RETURNING id`, "Pro")
	w.exec("UPDATE 1", `UPDATE stripe.products SET description = 'The pro plan' WHERE id = $1`, prod)
	w.local("products", prod, "description", "The pro plan")
	spare := w.one(`INSERT INTO stripe.products (name) VALUES ('Spare') RETURNING id`)
	w.exec("DELETE 1", `DELETE FROM stripe.products WHERE id = $1`, spare)
	w.gone("products", spare)

	// prices: create / update; DELETE refused with a hint.
	price := w.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', $2, '{"interval":"month"}') RETURNING id`, prod, int64(1500))
	w.local("prices", price, "unit_amount", "1500")
	w.exec("UPDATE 1", `UPDATE stripe.prices SET nickname = 'monthly' WHERE id = $1`, price)
	w.remote("prices", price, "nickname", "monthly")
	w.refused("0A000", `DELETE FROM stripe.prices WHERE id = $1`, price)

	// plans: create / update / delete.
	plan := w.one(`INSERT INTO stripe.plans (product, currency, amount, interval) VALUES ($1, 'usd', 900, 'month') RETURNING id`, prod)
	w.exec("UPDATE 1", `UPDATE stripe.plans SET nickname = 'legacy' WHERE id = $1`, plan)
	w.local("plans", plan, "nickname", "legacy")
	w.exec("DELETE 1", `DELETE FROM stripe.plans WHERE id = $1`, plan)
	w.gone("plans", plan)

	// tax_rates: create / update; no delete.
	txr := w.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20.5, false) RETURNING id`)
	w.local("tax_rates", txr, "percentage", "20.5")
	w.exec("UPDATE 1", `UPDATE stripe.tax_rates SET active = false WHERE id = $1`, txr)
	w.local("tax_rates", txr, "active", "false")
	w.refused("0A000", `DELETE FROM stripe.tax_rates WHERE id = $1`, txr)

	// coupons: create, update name and metadata only, delete.
	co := w.one(`INSERT INTO stripe.coupons (percent_off, duration) VALUES (25, 'once') RETURNING id`)
	w.exec("UPDATE 1", `UPDATE stripe.coupons SET name = 'Quarter off', metadata = '{"src":"sql"}' WHERE id = $1`, co)
	w.local("coupons", co, "name", "Quarter off")
	w.refused("42703", `UPDATE stripe.coupons SET percent_off = 50 WHERE id = $1`, co)

	// promotion_codes: create / update; no delete.
	// coupon is a jsonb column (Stripe embeds the coupon): a JSON string
	// (or the coupon object) names it.
	promo := w.one(`INSERT INTO stripe.promotion_codes (coupon, code) VALUES ($1, $2) RETURNING id`, `"`+co+`"`, "WALK"+strings.ToUpper(w.t.Name()[len(w.t.Name())-3:]))
	w.exec("UPDATE 1", `UPDATE stripe.promotion_codes SET active = false WHERE id = $1`, promo)
	w.local("promotion_codes", promo, "active", "false")
	w.refused("0A000", `DELETE FROM stripe.promotion_codes WHERE id = $1`, promo)
	co2 := w.one(`INSERT INTO stripe.coupons (amount_off, currency, duration) VALUES (100, 'usd', 'once') RETURNING id`)
	w.exec("DELETE 1", `DELETE FROM stripe.coupons WHERE id = $1`, co2)
	w.gone("coupons", co2)

	// invoiceitems: create / update / delete.
	ii := w.one(`INSERT INTO stripe.invoiceitems (customer, amount, currency) VALUES ($1, 700, 'usd') RETURNING id`, cus)
	w.exec("UPDATE 1", `UPDATE stripe.invoiceitems SET description = 'setup fee' WHERE id = $1`, ii)
	w.local("invoiceitems", ii, "description", "setup fee")
	w.exec("DELETE 1", `DELETE FROM stripe.invoiceitems WHERE id = $1`, ii)
	w.gone("invoiceitems", ii)

	// payment_methods: create, attach, update, detach.
	pm := w.one(`INSERT INTO stripe.payment_methods (type, card) VALUES ('card', '{"token":"tok_visa"}') RETURNING id`)
	w.exec("UPDATE 1", `UPDATE stripe.payment_methods SET customer = $1 WHERE id = $2`, cus, pm)
	w.local("payment_methods", pm, "customer", cus)
	w.remote("payment_methods", pm, "customer", cus)
	w.exec("UPDATE 1", `UPDATE stripe.customers SET invoice_settings = '{"default_payment_method":"`+pm+`"}' WHERE id = $1`, cus)

	// subscriptions: create (items land in subscription_items), update,
	// DELETE cancels.
	sub := w.one(`INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, $2) RETURNING id`, cus, `[{"price":"`+price+`"}]`)
	if got := w.e.local(`SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub); got != "1" {
		w.t.Fatalf("subscription items after create: %s", got)
	}
	w.exec("UPDATE 1", `UPDATE stripe.subscriptions SET metadata = metadata || '{"seats":"3"}' WHERE id = $1`, sub)
	w.local("subscriptions", sub, "metadata->>'seats'", "3")

	// subscription_items: create / update / delete.
	price2 := w.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 300, '{"interval":"month"}') RETURNING id`, prod)
	si := w.one(`INSERT INTO stripe.subscription_items (subscription, price, quantity) VALUES ($1, $2, 2) RETURNING id`, sub, `"`+price2+`"`)
	w.local("subscription_items", si, "subscription", sub)
	w.exec("UPDATE 1", `UPDATE stripe.subscription_items SET quantity = 5 WHERE id = $1`, si)
	w.local("subscription_items", si, "quantity", "5")
	// The subscription's embedded list follows its items.
	if got := w.e.local(`SELECT jsonb_path_query_first(items, '$.data[*] ? (@.id == $si).quantity', jsonb_build_object('si', $1::text))::text FROM stripe.subscriptions WHERE id = $2`, si, sub); got != "5" {
		w.t.Fatalf("subscription %s: its items list shows quantity %s for %s, want 5", sub, got, si)
	}
	w.exec("DELETE 1", `DELETE FROM stripe.subscription_items WHERE id = $1`, si)
	w.gone("subscription_items", si)

	w.exec("DELETE 1", `DELETE FROM stripe.subscriptions WHERE id = $1`, sub)
	w.local("subscriptions", sub, "status", "canceled")
	w.remote("subscriptions", sub, "status", "canceled")

	// tax_ids: create / delete; no update.
	txi := w.one(`INSERT INTO stripe.tax_ids (type, value, owner) VALUES ('eu_vat', 'DE123456789', $1) RETURNING id`, `{"type":"customer","customer":"`+cus+`"}`)
	w.local("tax_ids", txi, "customer", cus)
	txi2 := w.one(`INSERT INTO stripe.tax_ids (customer, type, value) VALUES ($1, 'eu_vat', 'DE987654321') RETURNING id`, cus)
	w.local("tax_ids", txi2, "owner->>'customer'", cus)
	w.refused("0A000", `UPDATE stripe.tax_ids SET value = 'x' WHERE id = $1`, txi)
	w.exec("DELETE 1", `DELETE FROM stripe.tax_ids WHERE id = $1`, txi)
	w.gone("tax_ids", txi)

	// invoices: create / update drafts, DELETE drafts, status transitions.
	draft := w.one(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus)
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET description = 'first' WHERE id = $1`, draft)
	w.local("invoices", draft, "description", "first")
	w.exec("DELETE 1", `DELETE FROM stripe.invoices WHERE id = $1`, draft)
	w.gone("invoices", draft)
	// An invoice with an item of its own, so finalizing leaves it open.
	invoice := func(amount int64) string {
		id := w.one(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus)
		w.one(`INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES ($1, $2, $3, 'usd') RETURNING id`, cus, id, amount)
		return id
	}
	open := invoice(500)
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET status = $1 WHERE id = $2`, "open", open)
	w.local("invoices", open, "status", "open")
	w.remote("invoices", open, "status", "open")
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET status = $1 WHERE id = $2`, "void", open)
	w.local("invoices", open, "status", "void")
	w.remote("invoices", open, "status", "void")
	paid := invoice(800)
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET status = 'open' WHERE id = $1`, paid)
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET status = 'paid' WHERE id = $1`, paid)
	w.local("invoices", paid, "status", "paid")
	bad := invoice(900)
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET status = 'open' WHERE id = $1`, bad)
	w.exec("UPDATE 1", `UPDATE stripe.invoices SET status = 'uncollectible' WHERE id = $1`, bad)
	w.local("invoices", bad, "status", "uncollectible")
	w.refused("0A000", `UPDATE stripe.invoices SET status = 'draft' WHERE id = $1`, bad)

	// credit_notes: create.
	cn := w.one(`INSERT INTO stripe.credit_notes (invoice, amount) VALUES ($1, 100) RETURNING id`, paid)
	w.local("credit_notes", cn, "invoice", paid)

	// payment_intents: create / update / cancel.
	pi := w.one(`INSERT INTO stripe.payment_intents (amount, currency, customer) VALUES ($1, 'usd', $2) RETURNING id`, int64(2000), cus)
	w.exec("UPDATE 1", `UPDATE stripe.payment_intents SET description = 'order 1' WHERE id = $1`, pi)
	w.local("payment_intents", pi, "description", "order 1")
	w.exec("UPDATE 1", `UPDATE stripe.payment_intents SET status = 'canceled' WHERE id = $1`, pi)
	w.local("payment_intents", pi, "status", "canceled")

	// setup_intents: create / update / cancel.
	seti := w.one(`INSERT INTO stripe.setup_intents (customer) VALUES ($1) RETURNING id`, cus)
	w.exec("UPDATE 1", `UPDATE stripe.setup_intents SET metadata = '{"k":"v"}' WHERE id = $1`, seti)
	w.exec("UPDATE 1", `UPDATE stripe.setup_intents SET status = 'canceled' WHERE id = $1`, seti)
	w.local("setup_intents", seti, "status", "canceled")

	// refunds: create, update metadata.
	charge := w.e.local(`SELECT charge FROM stripe.invoices WHERE id = $1`, paid)
	if charge == "NULL" {
		w.t.Fatalf("paid invoice %s has no charge", paid)
	}
	re := w.one(`INSERT INTO stripe.refunds (charge, amount) VALUES ($1, 100) RETURNING id`, charge)
	w.exec("UPDATE 1", `UPDATE stripe.refunds SET metadata = '{"why":"test"}' WHERE id = $1`, re)
	w.local("refunds", re, "metadata->>'why'", "test")

	// checkout_sessions: create.
	cs := w.one(`INSERT INTO stripe.checkout_sessions (mode, success_url, line_items) VALUES ('subscription', 'https://x.test/ok', $1) RETURNING id`,
		`[{"price":"`+price+`","quantity":1}]`)
	w.local("checkout_sessions", cs, "mode", "subscription")

	// payment_methods: detach.
	w.exec("UPDATE 1", `UPDATE stripe.payment_methods SET customer = NULL WHERE id = $1`, pm)
	w.local("payment_methods", pm, "customer", "NULL")

	// Tables Stripe has no write for: refused, saying what to do instead.
	w.refused("0A000", `UPDATE stripe.balance_transactions SET description = 'x' WHERE source = $1`, charge)
}

// TestSubscriptionItemCreatedReturning: a subscription item written
// through the proxy returns Stripe's created as a timestamptz; an UPDATE
// that sends it back unchanged (ORMs' save) is taken, one that changes it
// is refused before any call, as for every other created.
func TestSubscriptionItemCreatedReturning(t *testing.T) {
	e := setup(t)
	cus := e.newCustomers("created@b.co")[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	p1 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	p2 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 300, '{"interval":"month"}') RETURNING id`, prod)
	sub := e.one(`INSERT INTO stripe.subscriptions (customer, collection_method, days_until_due, items) VALUES ($1, 'send_invoice', 7, jsonb_build_array(jsonb_build_object('price', $2::text))) RETURNING id`, cus, p1)

	r := e.ok(`INSERT INTO stripe.subscription_items (subscription, price, quantity) VALUES ($1, $2, 2)
		RETURNING id, pg_typeof(created)::text, extract(epoch FROM created)::bigint::text`, sub, `"`+p2+`"`)
	si := r.rows[0][0]
	st := e.stripeObj("subscription_items", si)
	if st == nil {
		t.Fatalf("%s not in Stripe", si)
	}
	want := fmt.Sprint(int64(st["created"].(float64)))
	if got := r.rows[0][1:]; got[0] != "timestamp with time zone" || got[1] != want {
		t.Fatalf("RETURNING type and epoch of created: %v, want timestamp with time zone, %s", got, want)
	}
	// Comparable with its subscription's created, as users join them.
	if got := e.local(`SELECT (i.created >= s.created)::text FROM stripe.subscription_items i JOIN stripe.subscriptions s ON s.id = i.subscription WHERE i.id = $1`, si); got != "true" {
		t.Errorf("item created >= its subscription's: %s", got)
	}

	before := e.calls()
	e.ok(`UPDATE stripe.subscription_items SET quantity = 4, created = created WHERE id = $1`, si)
	if e.calls() == before {
		t.Fatal("Stripe was not called")
	}
	if got := e.local(`SELECT extract(epoch FROM created)::bigint::text || ' ' || quantity FROM stripe.subscription_items WHERE id = $1`, si); got != want+" 4" {
		t.Errorf("after the update: %s, want %s 4", got, want)
	}
	before = e.calls()
	e.fails("42703", `UPDATE stripe.subscription_items SET created = created + interval '1 day' WHERE id = $1`, si)
	if e.calls() != before {
		t.Error("Stripe was called for a changed created")
	}
}
