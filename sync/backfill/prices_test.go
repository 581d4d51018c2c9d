package backfill_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/verify"
)

// Stripe lists active prices only unless asked for inactive ones: archived
// prices, which old subscriptions and invoices use, need a second pass.
func TestBackfillListsArchivedPrices(t *testing.T) {
	v := setup(t, emulator.Options{})
	c := v.client(t, 1000)
	ctx := context.Background()
	prod := mustPost(t, c, "/v1/products", url.Values{"name": {"p"}})
	active := mustPost(t, c, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"100"}})
	archived := mustPost(t, c, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"200"}})
	mustPost(t, c, "/v1/prices/"+archived, url.Values{"active": {"false"}})
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c, Objects: []string{"prices"}}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{active: true, archived: false} {
		var got bool
		if err := v.pool.QueryRow(ctx, `SELECT active FROM stripe.prices WHERE id = $1`, id).Scan(&got); err != nil || got != want {
			t.Errorf("price %s: active %v (%v), want a row with active %v", id, got, err, want)
		}
	}
}

// Prices created inline (an invoice item's price_data or amount) are not
// in Stripe's price lists; the backfill takes them from the objects that
// embed them. An embedded copy older than the price (a listed price
// updated after the invoice item used it) doesn't replace the listed state.
func TestBackfillInlinePrices(t *testing.T) {
	v := setup(t, emulator.Options{})
	c := v.client(t, 1000)
	ctx := context.Background()
	prod := mustPost(t, c, "/v1/products", url.Values{"name": {"p"}})
	listed := mustPost(t, c, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"100"}})
	cus := mustPost(t, c, "/v1/customers", url.Values{"email": {"a@b.co"}})
	mustPost(t, c, "/v1/invoiceitems", url.Values{"customer": {cus}, "price": {listed}})
	mustPost(t, c, "/v1/prices/"+listed, url.Values{"metadata[k]": {"v"}, "active": {"false"}})
	mustPost(t, c, "/v1/invoiceitems", url.Values{"customer": {cus}, "price_data[currency]": {"usd"}, "price_data[product]": {prod}, "price_data[unit_amount]": {"300"}})
	mustPost(t, c, "/v1/invoiceitems", url.Values{"customer": {cus}, "currency": {"usd"}, "amount": {"400"}})
	mustPost(t, c, "/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"}})
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.prices`).Scan(&n); err != nil || n != 3 {
		t.Errorf("stripe.prices has %d rows (%v), want 3", n, err)
	}
	d, err := verify.Compare(ctx, v.pool, v.e)
	if err != nil {
		t.Fatal(err)
	}
	if d.Total() != 0 {
		t.Errorf("tables differ from the emulator: %+v", d)
	}
}

// Decimal amounts land as Stripe answers them: the decimal string as
// written (the columns are text, so 0.000000000001 and 12.5 keep every
// digit), the integer column NULL unless the amount is whole, for prices,
// plans and invoice items alike, and each row equal to the emulator's
// object.
func TestBackfillDecimalAmounts(t *testing.T) {
	v := setup(t, emulator.Options{})
	c := v.client(t, 1000)
	ctx := context.Background()
	prod := mustPost(t, c, "/v1/products", url.Values{"name": {"p"}})
	cus := mustPost(t, c, "/v1/customers", url.Values{"email": {"a@b.co"}})
	type want struct {
		table, id, intCol, decCol string
		integer                   *int64
		decimal                   string
	}
	i64 := func(n int64) *int64 { return &n }
	wants := []want{
		{"prices", mustPost(t, c, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount_decimal": {"12.50"}}),
			"unit_amount", "unit_amount_decimal", nil, "12.5"},
		{"prices", mustPost(t, c, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount_decimal": {"0.000000000001"}}),
			"unit_amount", "unit_amount_decimal", nil, "0.000000000001"},
		{"prices", mustPost(t, c, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount_decimal": {"1500.0"}}),
			"unit_amount", "unit_amount_decimal", i64(1500), "1500"},
		{"plans", mustPost(t, c, "/v1/plans", url.Values{"product": {prod}, "currency": {"usd"}, "interval": {"month"}, "amount_decimal": {"0.05"}}),
			"amount", "amount_decimal", nil, "0.05"},
		{"invoiceitems", mustPost(t, c, "/v1/invoiceitems", url.Values{"customer": {cus}, "currency": {"usd"}, "unit_amount_decimal": {"0.05"}, "quantity": {"30"}}),
			"unit_amount", "unit_amount_decimal", nil, "0.05"},
	}
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c, Objects: []string{"prices", "plans", "invoiceitems"}}); err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		var integer *int64
		var decimal *string
		if err := v.pool.QueryRow(ctx, `SELECT `+w.intCol+`, `+w.decCol+` FROM stripe.`+w.table+` WHERE id = $1`, w.id).Scan(&integer, &decimal); err != nil {
			t.Fatalf("%s %s: %v", w.table, w.id, err)
		}
		if decimal == nil || *decimal != w.decimal || (integer == nil) != (w.integer == nil) || integer != nil && *integer != *w.integer {
			t.Errorf("%s %s: %s %v %s %v, want %v %q", w.table, w.id, w.intCol, deref(integer), w.decCol, deref(decimal), deref(w.integer), w.decimal)
		}
		var obj map[string]any
		if err := json.Unmarshal(v.e.Objects(w.table)[w.id], &obj); err != nil {
			t.Fatalf("%s %s in the emulator: %v", w.table, w.id, err)
		}
		if obj[w.decCol] != w.decimal {
			t.Errorf("%s %s: the emulator's %s is %v, the table's %q", w.table, w.id, w.decCol, obj[w.decCol], w.decimal)
		}
	}
	var amount int64
	if err := v.pool.QueryRow(ctx, `SELECT amount FROM stripe.invoiceitems WHERE id = $1`, wants[4].id).Scan(&amount); err != nil || amount != 2 {
		t.Errorf("invoice item amount %d (%v), want 2 (0.05 × 30 = 1.5, rounded up)", amount, err)
	}
	for _, table := range []string{"prices", "plans", "invoiceitems"} {
		v.compare(t, table)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
