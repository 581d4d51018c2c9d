package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/workload"
)

// Customers on a test clock, and their subscriptions, are left out of
// Stripe's plain lists. A re-backfill (cursor past retention) removes
// every row it did not write; the clock's objects, whether the first
// backfill or events brought them, must survive it.
func TestRebackfillKeepsTestClockObjects(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	w := workload.New(v.mut, 41)
	for range 3 {
		w.Do(ctx, "createCustomer")
	}
	onClock := v.clockCustomers(t)
	backfilled := onClock()
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{})
	viaEvents := onClock() // after the backfill: its events bring it
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	v.e.SetClockOffset(31 * 24 * time.Hour)
	w.Do(ctx, "createCustomer")
	stop = v.loop(t, events.Config{Backfill: func(ctx context.Context, since time.Time) error {
		return backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4, RestartCompletedBefore: since})
	}})
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'rebackfill_complete'`).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no re-backfill")
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, cus := range []string{backfilled, viaEvents} {
		var subs int
		if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.subscriptions WHERE customer = $1`, cus).Scan(&subs); err != nil || subs != 1 {
			t.Errorf("customer %s on the clock: %d subscriptions after the re-backfill (err %v), want 1", cus, subs, err)
		}
	}
}

// clockCustomers makes a test clock frozen in 2020 and returns a function
// that makes a customer on it, with a subscription, and returns its id.
func (v *env) clockCustomers(t *testing.T) func() string {
	t.Helper()
	prod := v.post(t, "/v1/products", url.Values{"name": {"p"}})
	price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"700"}, "recurring[interval]": {"month"}})
	clock := v.post(t, "/v1/test_helpers/test_clocks", url.Values{"frozen_time": {"1577836800"}})
	return func() string {
		cus := v.post(t, "/v1/customers", url.Values{"test_clock": {clock}})
		v.post(t, "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "payment_behavior": {"default_incomplete"}})
		return cus
	}
}
