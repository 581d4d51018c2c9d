package events_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
)

// A re-backfill whose key may not list test clocks (403) leaves the
// clocks' customers and subscriptions out of its pages: that is no
// evidence they are gone. The sweep after it must keep them, as it keeps
// the rows of a table the backfill failed, rather than delete and
// tombstone objects that still exist in Stripe.
func TestRebackfillWithClocksRefusedKeepsClockObjects(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	cus := v.clockCustomers(t)()
	v.post(t, "/v1/customers", url.Values{"email": {"plain@example.com"}})

	// The first backfill may read the clocks.
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 10*time.Second)

	// From now on the sync's key is refused the clocks list.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/test_helpers/test_clocks") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"The provided key does not have the required permissions for this endpoint."}}`))
			return
		}
		v.e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	restricted, err := stripeapi.New(stripeapi.Config{APIKey: "rk_test_review", BaseURL: srv.URL, RateLimit: 500, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	v.client = restricted

	v.e.SetClockOffset(31 * 24 * time.Hour)
	v.post(t, "/v1/customers", url.Values{"email": {"later@example.com"}})
	stop := v.loop(t, events.Config{Backfill: func(ctx context.Context, since time.Time) error {
		return backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: restricted, MaxWorkers: 4, RestartCompletedBefore: since})
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
	// A change to the clock's customer after the re-backfill: its event
	// must reach the table.
	if _, err := v.mut.Post(ctx, "/v1/customers/"+cus, url.Values{"name": {"after"}}, ""); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
