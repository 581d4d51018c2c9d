package backfill_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
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
