package backfill_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// A key refused the test clocks list can't list the customers on clocks:
// the customers sweep keeps their rows, and the tables listed per customer
// (payment methods, tax ids) must keep theirs too, for their customers are
// not among the parents the run fetches.
func TestSweepKeepsPerCustomerRowsOfClockCustomers(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	c := v.client(t, 5000)
	custs := clockAccount(t, v, 2)
	var pms []string
	for _, cus := range custs {
		pm := mustPost(t, c, "/v1/payment_methods", url.Values{"type": {"card"}})
		mustPost(t, c, "/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {cus}})
		pms = append(pms, pm)
	}
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.payment_methods WHERE id = ANY($1)`, pms).Scan(&n); err != nil || n != len(pms) {
		t.Fatalf("after the first backfill %d of %d payment methods stored (%v)", n, len(pms), err)
	}

	// A re-backfill with a key that may not list the clocks.
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if strings.HasPrefix(r.URL.Path, "/v1/test_helpers/test_clocks") {
			return 403, `{"error":{"type":"invalid_request_error","message":"This key can't list test clocks."}}`
		}
		return 0, ""
	})
	time.Sleep(1100 * time.Millisecond) // a later planning second
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c, RestartCompletedBefore: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE id = ANY($1)`, custs).Scan(&n); err != nil || n != len(custs) {
		t.Fatalf("%d of %d customers on clocks kept (%v)", n, len(custs), err)
	}
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.payment_methods WHERE id = ANY($1)`, pms).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(pms) {
		var tomb int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.tombstones WHERE object = 'payment_methods' AND id = ANY($1)`, pms).Scan(&tomb)
		t.Errorf("%d of %d payment methods of customers on clocks kept (%d tombstoned): they exist in Stripe", n, len(pms), tomb)
	}
}
