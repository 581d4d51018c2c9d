package backfill_test

import (
	"context"
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
