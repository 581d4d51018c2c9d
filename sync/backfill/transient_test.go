package backfill_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// A 500 that Stripe marks Stripe-Should-Retry: false (Stripe and the
// emulator do so for their internal errors) is still a 5xx: CONTRACT §4
// says 429 and 5xx are retried and a sync never aborts on them. The list
// is a GET, so repeating it is always safe; the object must not end in
// phase error.
func Test500ShouldRetryFalseIsNotFatal(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(5, "uniform"); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Int64
	v.rec.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/customers" && failed.Add(1) <= 2 {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Stripe-Should-Retry", "false")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":{"type":"api_error","message":"An unknown error occurred"}}`))
			return
		}
		v.e.ServeHTTP(w, r)
	})
	ctx := context.Background()
	err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers"}})
	if err != nil {
		t.Fatalf("Run = %v, want nil (5xx are retried, never fatal)", err)
	}
	if failed.Load() < 2 {
		t.Fatalf("the 500 path was not exercised")
	}
	var phase string
	if err := v.pool.QueryRow(ctx, `SELECT phase FROM stripe_sync.status WHERE object = 'customers'`).Scan(&phase); err != nil {
		t.Fatal(err)
	}
	if phase != "live" {
		t.Errorf("customers phase %q, want live", phase)
	}
	v.compare(t, "customers")
}
