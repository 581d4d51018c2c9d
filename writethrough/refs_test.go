package writethrough

import (
	"strings"
	"testing"
)

// TestInvoiceLineUpdate: UPDATE stripe.invoice_line_items goes to
// POST /v1/invoices/{invoice}/lines/{id}; Stripe's answer is applied to
// the line, the invoice (re-read: its totals) and, in the emulator, the
// invoice item behind the line. Stored tax rate objects go back as ids.
// A line of a finalized invoice is refused by Stripe (55000) and nothing
// changes locally.
func TestInvoiceLineUpdate(t *testing.T) {
	e := setup(t)
	one := func(sql string, args ...any) string {
		t.Helper()
		r := e.ok(sql, args...)
		if len(r.rows) != 1 {
			t.Fatalf("%s: %d rows", sql, len(r.rows))
		}
		return r.rows[0][0]
	}
	cus := e.newCustomers("lines@b.co")[0]
	prod := one(`INSERT INTO stripe.products (name) VALUES ('Widget') RETURNING id`)
	price := one(`INSERT INTO stripe.prices (product, currency, unit_amount) VALUES ($1, 'usd', 500) RETURNING id`, prod)
	txr1 := one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txr2 := one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('GST', 5, false) RETURNING id`)
	inv := one(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus)
	ii := one(`INSERT INTO stripe.invoiceitems (customer, invoice, price) VALUES ($1, $2, to_jsonb($3::text)) RETURNING id`, cus, inv, price)
	// The invoice's answer brings its lines.
	e.ok(`UPDATE stripe.invoices SET description = 'with lines' WHERE id = $1`, inv)
	line := e.local(`SELECT id FROM stripe.invoice_line_items WHERE invoice = $1 AND invoice_item = $2`, inv, ii)

	r := e.ok(`UPDATE stripe.invoice_line_items SET quantity = 3, description = 'three' WHERE id = $1 RETURNING amount, quantity, description`, line)
	if r.tag != "UPDATE 1" || len(r.rows) != 1 || strings.Join(r.rows[0], " ") != "1500 3 three" {
		t.Fatalf("RETURNING %v (tag %s), want 1500 3 three", r.rows, r.tag)
	}
	if got := e.local(`SELECT amount_due::text FROM stripe.invoices WHERE id = $1`, inv); got != "1500" {
		t.Fatalf("local invoice amount_due %s, want 1500 (the invoice is re-read after its line changed)", got)
	}
	if got := e.stripeObj("invoiceitems", ii)["quantity"]; got != float64(3) {
		t.Fatalf("invoice item quantity in Stripe %v, want 3 (line updates propagate)", got)
	}
	if got := e.local(`SELECT quantity::text || ' ' || amount::text FROM stripe.invoiceitems WHERE id = $1`, ii); got != "3 1500" {
		t.Fatalf("local invoice item %s, want quantity 3 and amount 1500 (re-read: Stripe sends no invoiceitem.updated)", got)
	}

	// Tax rates: Stripe answers with tax rate objects, which go back as ids.
	e.ok(`UPDATE stripe.invoice_line_items SET tax_rates = jsonb_build_array($1::text) WHERE id = $2`, txr1, line)
	if got := e.local(`SELECT tax_rates->0->>'object' FROM stripe.invoice_line_items WHERE id = $1`, line); got != "tax_rate" {
		t.Fatalf("stored tax_rates[0].object = %s, want tax_rate", got)
	}
	e.ok(`UPDATE stripe.invoice_line_items SET tax_rates = tax_rates || jsonb_build_array($1::text), metadata = '{"k":"v"}' WHERE id = $2`, txr2, line)
	if got := e.local(`SELECT string_agg(x->>'id', ',' ORDER BY n) FROM stripe.invoice_line_items, jsonb_array_elements(tax_rates) WITH ORDINALITY AS t(x, n) WHERE id = $1`, line); got != txr1+","+txr2 {
		t.Fatalf("tax rates %s, want %s,%s", got, txr1, txr2)
	}

	// Finalized: Stripe refuses; the local line stays as it was.
	e.ok(`UPDATE stripe.invoices SET status = 'open' WHERE id = $1`, inv)
	before := e.local(`SELECT _raw::text FROM stripe.invoice_line_items WHERE id = $1`, line)
	f := e.fails("55000", `UPDATE stripe.invoice_line_items SET quantity = 4 WHERE id = $1`, line)
	if !strings.Contains(f.err.Message, "draft") || !strings.Contains(f.err.Detail, "invoice_not_editable") {
		t.Fatalf("refusal: %s (%s)", f.err.Message, f.err.Detail)
	}
	if after := e.local(`SELECT _raw::text FROM stripe.invoice_line_items WHERE id = $1`, line); after != before {
		t.Fatal("the refused update changed the local line")
	}

	// No create or delete of lines: hints name the invoice items.
	if h := e.fails("0A000", `DELETE FROM stripe.invoice_line_items WHERE id = $1`, line); !strings.Contains(h.err.Hint, "stripe.invoiceitems") {
		t.Fatalf("DELETE hint %q", h.err.Hint)
	}
}

// TestSchedulePhasesRoundTrip: a schedule's phases as Stripe returns
// them (default_tax_rates and items' tax_rates as tax rate objects, an
// item's price expanded) written back with a change: the objects go as
// their ids, which the emulator's validation of Stripe's spec accepts.
func TestSchedulePhasesRoundTrip(t *testing.T) {
	e := setup(t)
	cus := e.newCustomers("phases@b.co")[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	price := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	txr := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	sched := e.one(`INSERT INTO stripe.subscription_schedules (customer, _params, phases) VALUES ($1, '{"start_date": "now"}', jsonb_build_array(jsonb_build_object('items', jsonb_build_array(jsonb_build_object('price', $2::text)), 'iterations', 2))) RETURNING id`, cus, price)
	// The emulator leaves a phase's tax rates empty and its prices as
	// ids; Stripe returns tax rate objects, and a price object when
	// expanded. Give the local row that shape.
	if _, err := e.pool.Exec(e.ctx, `UPDATE stripe.subscription_schedules SET phases = jsonb_set(jsonb_set(jsonb_set(phases,
		'{0,default_tax_rates}', jsonb_build_array(jsonb_build_object('id', $1::text, 'object', 'tax_rate', 'percentage', 20, 'active', true))),
		'{0,items,0,tax_rates}', jsonb_build_array(jsonb_build_object('id', $1::text, 'object', 'tax_rate', 'percentage', 20))),
		'{0,items,0,price}', jsonb_build_object('id', $2::text, 'object', 'price', 'unit_amount', 1000, 'currency', 'usd'))
		WHERE id = $3`, txr, price, sched); err != nil {
		t.Fatal(err)
	}
	before := e.calls()
	e.ok(`UPDATE stripe.subscription_schedules SET phases = jsonb_set(phases, '{0,metadata}', '{"k":"v"}') WHERE id = $1`, sched)
	if e.calls() == before {
		t.Fatal("Stripe was not called")
	}
	if got := e.local(`SELECT phases->0->'metadata'->>'k' FROM stripe.subscription_schedules WHERE id = $1`, sched); got != "v" {
		t.Fatalf("phases[0].metadata.k = %s", got)
	}
}

// TestObjectChangedWhereAnIDGoes: an object that a statement gives
// whole where Stripe's request takes only its id (a subscription item's
// price, a tax rate), with content other than Stripe's, is refused with
// 42703 naming the place, before any Stripe call. Before, the object went
// as its id and the change was dropped without a word: a request-shaped
// item {"id", "price": {… "unit_amount": 2000}} updated the item as it
// was, an INSERT created the subscription at the stored amount, and
// subscription_items.price changed with jsonb_set made no call at all
// and answered UPDATE 1.
func TestObjectChangedWhereAnIDGoes(t *testing.T) {
	e := setup(t)
	sub, si1, _, p3 := twoItemSubscription(t, e, "priceobj@b.co")
	cus := e.local(`SELECT customer FROM stripe.subscriptions WHERE id = $1`, sub)
	p1 := e.local(`SELECT items->'data'->0->'price'->>'id' FROM stripe.subscriptions WHERE id = $1`, sub)
	p3Raw := e.local(`SELECT _raw::text FROM stripe.prices WHERE id = $1`, p3)
	txr := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txrRaw := e.local(`SELECT _raw::text FROM stripe.tax_rates WHERE id = $1`, txr)

	for _, c := range []struct {
		name, sql string
		args      []any
		place     string // named in the message
		hint      string // in the hint
	}{
		{"request-shaped item naming a stored item", `UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', jsonb_set(items->'data'->0->'price', '{unit_amount}', '2000'), 'quantity', 1)) WHERE id = $1`,
			[]any{sub, si1}, "items.[].price", "price_data"},
		{"new item with a changed copy of a stored price", `UPDATE stripe.subscriptions SET items = items->'data' || jsonb_build_array(jsonb_build_object('price', jsonb_set(items->'data'->0->'price', '{unit_amount}', '2000'))) WHERE id = $1`,
			[]any{sub}, "items.[].price", "price_data"},
		{"INSERT of a subscription", `INSERT INTO stripe.subscriptions (customer, items, collection_method, days_until_due) VALUES ($1, jsonb_build_array(jsonb_build_object('price', jsonb_set($2::jsonb, '{unit_amount}', '2000'))), 'send_invoice', 7)`,
			[]any{cus, p3Raw}, "items.[].price", "price_data"},
		{"subscription_items.price with jsonb_set", `UPDATE stripe.subscription_items SET price = jsonb_set(price, '{unit_amount}', '2000') WHERE id = $1`,
			[]any{si1}, "price", "price_data"},
		{"INSERT of a subscription item", `INSERT INTO stripe.subscription_items (subscription, price) VALUES ($1, jsonb_set($2::jsonb, '{unit_amount}', '2000'))`,
			[]any{sub, p3Raw}, "price", "price_data"},
		{"a price's nickname: changed in its own table", `UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', jsonb_set(items->'data'->0->'price', '{nickname}', '"renamed"'))) WHERE id = $1`,
			[]any{sub, si1}, "items.[].price", "stripe.prices"},
		{"a tax rate object", `UPDATE stripe.subscriptions SET default_tax_rates = jsonb_build_array(jsonb_set($2::jsonb, '{percentage}', '7')) WHERE id = $1`,
			[]any{sub, txrRaw}, "default_tax_rates.[]", ""},
		{"a price with keys besides its id and no object", `UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', jsonb_build_object('id', $3::text, 'unit_amount', 2000))) WHERE id = $1`,
			[]any{sub, si1, p1}, "items.[].price", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.calls()
			r := e.run(c.sql, c.args...)
			if r.err == nil || r.err.Code != "42703" {
				t.Fatalf("want 42703, got %s", replyText(r))
			}
			if !strings.Contains(r.err.Message, c.place+" of stripe.") {
				t.Errorf("message %q does not name %s", r.err.Message, c.place)
			}
			if !strings.Contains(r.err.Hint, c.hint) {
				t.Errorf("hint %q does not say %q", r.err.Hint, c.hint)
			}
			if n := e.calls() - before; n != 0 {
				t.Errorf("%d Stripe calls for the refused statement", n)
			}
		})
	}
	if a := e.stripeObj("subscription_items", si1)["price"].(map[string]any)["unit_amount"]; a != 1000.0 {
		t.Errorf("Stripe's item price amount %v, want 1000", a)
	}
}

// TestObjectAsStoredWhereAnIDGoes: an object given whole where
// Stripe takes its id still goes as its id when it is as stored: the
// copy the column holds, the object's own row (stripe.prices._raw), a
// copy from another subscription older than that row in what the
// price's own update changes (its nickname), or the id alone. Before,
// {"id": …} alone went as items[0][price][id], which Stripe refuses.
func TestObjectAsStoredWhereAnIDGoes(t *testing.T) {
	e := setup(t)
	sub, si1, si2, p3 := twoItemSubscription(t, e, "priceobjok@b.co")
	cus := e.local(`SELECT customer FROM stripe.subscriptions WHERE id = $1`, sub)
	p1 := e.local(`SELECT items->'data'->0->'price'->>'id' FROM stripe.subscriptions WHERE id = $1`, sub)
	bodies := recordPosts(e, "/v1/")
	step := func(name string, want map[string]string, sql string, args ...any) {
		t.Helper()
		n := len(bodies())
		r := e.run(sql, args...)
		if r.err != nil {
			t.Errorf("%s: %s (hint %s)", name, replyText(r), r.err.Hint)
			return
		}
		got := bodies()
		if len(got) != n+1 {
			t.Errorf("%s: %d calls reached Stripe, want 1", name, len(got)-n)
			return
		}
		for k, v := range want {
			if got[n].Get(k) != v {
				t.Errorf("%s: Stripe got %s=%q, want %q (%v)", name, k, got[n].Get(k), v, got[n])
			}
		}
	}

	step("request-shaped item with the column's price object", map[string]string{"items[0][id]": si1, "items[0][price]": p1, "items[0][quantity]": "5"},
		`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', items->'data'->0->'price', 'quantity', 5)) WHERE id = $1`, sub, si1)
	step("the id alone", map[string]string{"items[0][id]": si1, "items[0][price]": p1, "items[0][quantity]": "6"},
		`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'price', jsonb_build_object('id', $3::text), 'quantity', 6)) WHERE id = $1`, sub, si1, p1)
	step("another price as stored in stripe.prices", map[string]string{"price": p3},
		`UPDATE stripe.subscription_items SET price = (SELECT _raw FROM stripe.prices WHERE id = $2) WHERE id = $1`, si2, p3)

	// The price renamed in its own table: the copy in the subscription's
	// items column is older in that key, and still the price.
	e.ok(`UPDATE stripe.prices SET nickname = 'renamed' WHERE id = $1`, p1)
	if e.local(`SELECT items->'data'->0->'price'->>'nickname' FROM stripe.subscriptions WHERE id = $1`, sub) == "renamed" {
		t.Log("the items column already holds the new nickname: the older copy is not tried")
	}
	step("a subscription created with the items of another", nil,
		`INSERT INTO stripe.subscriptions (customer, items, collection_method, days_until_due) VALUES ($1, (SELECT items->'data' FROM stripe.subscriptions WHERE id = $2), 'send_invoice', 7)`, cus, sub)
	if got := bodies(); len(got) > 0 {
		last := got[len(got)-1]
		prices := []string{last.Get("items[0][price]"), last.Get("items[1][price]")}
		if !(prices[0] == p1 && prices[1] == p3 || prices[0] == p3 && prices[1] == p1) {
			t.Errorf("the new subscription's prices %v, want %s and %s (%v)", prices, p1, p3, last)
		}
	}
}

// TestStoredObjectReadNeedsClientsSelect: the stored copy an
// object given whole where Stripe takes its id is compared with is read on
// pgstripe's pool, whose role reads every table. A client must learn
// nothing from it about rows it may not SELECT: any object type may be
// written at any id place (invoice_settings.default_payment_method on a
// customer), so a correct guess of an invoice's customer_email, or of a price's
// amount hidden by row-level security, went on to Stripe while a wrong one
// was refused naming the key that differs. Both must be answered alike,
// before any call.
func TestStoredObjectReadNeedsClientsSelect(t *testing.T) {
	e := setup(t)
	cus := e.newCustomers("oracle@b.co")[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Hidden plan') RETURNING id`)
	price := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount) VALUES ($1, 'usd', 4321) RETURNING id`, prod)
	inv := e.one(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus)
	if got := e.local(`SELECT _raw->>'customer_email' FROM stripe.invoices WHERE id = $1`, inv); got != "oracle@b.co" {
		t.Fatalf("the invoice's customer_email is %s", got)
	}
	// The role may read and write customers, read prices under a
	// row-level security policy that shows it no row, and not read
	// invoices at all.
	e.asRole(`GRANT SELECT ON stripe.prices TO $role`, `ALTER TABLE stripe.prices ENABLE ROW LEVEL SECURITY`)
	if got, err := e.conn.Exec(e.ctx, `SELECT 1 FROM stripe.prices`); err != nil || got.RowsAffected() != 0 {
		t.Fatalf("the role sees %v prices (%v)", got.RowsAffected(), err)
	}
	sql := `UPDATE stripe.customers SET invoice_settings = jsonb_build_object('default_payment_method', $2::jsonb) WHERE id = $1`
	for _, c := range []struct{ name, right, wrong string }{
		{"an invoice the role may not SELECT",
			`{"id": "` + inv + `", "object": "invoice", "customer_email": "oracle@b.co"}`,
			`{"id": "` + inv + `", "object": "invoice", "customer_email": "guess@b.co"}`},
		{"a price row-level security hides",
			`{"id": "` + price + `", "object": "price", "unit_amount": 4321}`,
			`{"id": "` + price + `", "object": "price", "unit_amount": 1}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.calls()
			right, wrong := e.run(sql, cus, c.right), e.run(sql, cus, c.wrong)
			if right.err == nil || wrong.err == nil {
				t.Fatalf("right guess: %s; wrong guess: %s", replyText(right), replyText(wrong))
			}
			if right.err.Code != wrong.err.Code || right.err.Message != wrong.err.Message || right.err.Detail != wrong.err.Detail {
				t.Errorf("the guesses are told apart:\n right: %s\n wrong: %s", replyText(right), replyText(wrong))
			}
			if right.err.Code != "42703" {
				t.Errorf("want 42703 for both, got %s", replyText(right))
			}
			if n := e.calls() - before; n != 0 {
				t.Errorf("%d Stripe calls", n)
			}
		})
	}
}

// TestObjectNumbersAsJSONValues: a copy is as stored when its
// values are, as JSON (and jsonb's =) compare them: 20.0 is 20. A client
// that maps jsonb to its own numbers (Jackson's double, JavaScript's
// Number) writes back the tax rate objects of default_tax_rates it read
// with the number spelled its way; they name the same tax rates and must
// go as their ids. Before, a number spelled otherwise than the stored
// text was a change: 42703, "percentage of tax_rate … differs from
// Stripe's".
func TestObjectNumbersAsJSONValues(t *testing.T) {
	e := setup(t)
	sub, _, _, _ := twoItemSubscription(t, e, "numbers@b.co")
	txr1 := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txr2 := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('GST', 5, false) RETURNING id`)
	e.ok(`UPDATE stripe.subscriptions SET default_tax_rates = $2 WHERE id = $1`, sub, `["`+txr1+`"]`)
	stored := e.local(`SELECT default_tax_rates::text FROM stripe.subscriptions WHERE id = $1`, sub)
	if !strings.Contains(stored, `"percentage": 20`) {
		t.Fatalf("default_tax_rates holds %s", stored)
	}
	respelled := strings.Replace(stored, `"percentage": 20`, `"percentage": 20.0`, 1)
	if strings.Contains(stored, `"percentage": 20.0`) {
		respelled = strings.Replace(stored, `"percentage": 20.0`, `"percentage": 20`, 1)
	}
	bodies := recordPosts(e, "/v1/subscriptions/")
	r := e.run(`UPDATE stripe.subscriptions SET default_tax_rates = $2::jsonb || jsonb_build_array($3::text) WHERE id = $1`, sub, respelled, txr2)
	if r.err != nil {
		t.Fatalf("%s (hint %s)", replyText(r), r.err.Hint)
	}
	got := bodies()
	if len(got) != 1 || got[0].Get("default_tax_rates[0]") != txr1 || got[0].Get("default_tax_rates[1]") != txr2 {
		t.Errorf("Stripe got %v, want default_tax_rates %s, %s", got, txr1, txr2)
	}
}

// TestCouponCopyAfterRedemption: a promotion code created with
// the coupon of another (INSERT … SELECT coupon, an ORM duplicating a
// row) copies the coupon as that row last stored it. Stripe counts
// redemptions on the coupon itself (times_redeemed, no update of the
// coupon, and valid when it runs out), so stripe.coupons holds a newer
// count: the copy is still that coupon, and goes as its id. Before, it
// was refused: "times_redeemed of coupon … differs from Stripe's", hint
// "give the id of one that has it".
func TestCouponCopyAfterRedemption(t *testing.T) {
	e := setup(t)
	co := e.one(`INSERT INTO stripe.coupons (percent_off, duration) VALUES (10, 'forever') RETURNING id`)
	promo := e.one(`INSERT INTO stripe.promotion_codes (coupon, code) VALUES ($1, 'FIRST') RETURNING id`, `"`+co+`"`)
	// A customer redeems the coupon; sync brings Stripe's coupon, with
	// its new count, into stripe.coupons (events do: see sync/events).
	cus := e.newCustomers("redeem@b.co")[0]
	e.ok(`UPDATE stripe.customers SET _params = jsonb_build_object('coupon', $2::text) WHERE id = $1`, cus, co)
	raw := e.emu.Objects("coupons")[co]
	if !strings.Contains(string(raw), `"times_redeemed":1`) && !strings.Contains(string(raw), `"times_redeemed": 1`) {
		t.Fatalf("Stripe's coupon after a redemption: %s", raw)
	}
	if _, err := e.pool.Exec(e.ctx, `UPDATE stripe.coupons SET _raw = $2::jsonb, times_redeemed = 1 WHERE id = $1`, co, string(raw)); err != nil {
		t.Fatal(err)
	}
	if got := e.local(`SELECT coupon->>'times_redeemed' FROM stripe.promotion_codes WHERE id = $1`, promo); got != "0" {
		t.Fatalf("the promotion code's copy of the coupon counts %s", got)
	}
	bodies := recordPosts(e, "/v1/promotion_codes")
	r := e.run(`INSERT INTO stripe.promotion_codes (coupon, code) VALUES ((SELECT coupon FROM stripe.promotion_codes WHERE id = $1), 'SECOND')`, promo)
	if r.err != nil {
		t.Fatalf("%s (hint %s)", replyText(r), r.err.Hint)
	}
	if got := bodies(); len(got) != 1 || got[0].Get("coupon") != co {
		t.Errorf("Stripe got %v, want coupon=%s", got, co)
	}
}
