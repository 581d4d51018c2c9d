package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
)

// A price created inline after the backfill (an invoice item's
// price_data: no price event, not in the price lists) comes in with the
// invoice item's event, and a re-backfill, which can't list it, doesn't
// sweep it away.
func TestInlinePriceEventsAndRebackfill(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	prod := v.post(t, "/v1/products", url.Values{"name": {"p"}})
	cus := v.post(t, "/v1/customers", url.Values{"email": {"a@b.co"}})
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{})
	v.post(t, "/v1/invoiceitems", url.Values{"customer": {cus}, "price_data[currency]": {"usd"}, "price_data[product]": {prod}, "price_data[unit_amount]": {"300"}})
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := v.rows(t, "prices"); n != 1 {
		t.Fatalf("stripe.prices has %d rows, want the inline price", n)
	}

	v.e.SetClockOffset(31 * 24 * time.Hour)
	v.post(t, "/v1/customers", url.Values{"email": {"c@d.co"}})
	stop = v.loop(t, events.Config{Backfill: func(ctx context.Context, since time.Time) error {
		return backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4, RestartCompletedBefore: since})
	}})
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var done bool
		if err := v.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_sync.log WHERE kind = 'rebackfill_complete')`).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no rebackfill_complete")
		}
	}
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
