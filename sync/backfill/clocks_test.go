package backfill_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/verify"
)

// clockAccount adds, besides a seeded account, n test clocks (frozen in
// 2020 and in 2099, both outside the usual range) with a customer each,
// every third with a subscription, and returns the clock customers' ids.
func clockAccount(t *testing.T, v *env, n int) []string {
	t.Helper()
	c := v.client(t, 5000)
	post := func(path string, q url.Values) string {
		t.Helper()
		return mustPost(t, c, path, q)
	}
	prod := post("/v1/products", url.Values{"name": {"p"}})
	price := post("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"500"}, "recurring[interval]": {"month"}})
	var custs []string
	for i := range n {
		frozen := "1577836800" // 2020
		if i%2 == 1 {
			frozen = "4070908800" // 2099
		}
		clock := post("/v1/test_helpers/test_clocks", url.Values{"frozen_time": {frozen}})
		cus := post("/v1/customers", url.Values{"test_clock": {clock}, "email": {fmt.Sprintf("clock%d@example.com", i)}})
		custs = append(custs, cus)
		if i%3 == 0 {
			post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "payment_behavior": {"default_incomplete"}})
		}
	}
	return custs
}

func requireSame(t *testing.T, v *env) {
	t.Helper()
	d, err := verify.Compare(context.Background(), v.pool, v.e)
	if err != nil {
		t.Fatal(err)
	}
	if d.Total() != 0 {
		t.Fatalf("tables differ from the emulator: %d missing, %d extra, %d stale %v:\n%s",
			d.Missing, d.Extra, d.Stale, d.ByTable, strings.Join(d.Details, "\n"))
	}
}

// Stripe leaves customers on test clocks out of GET /v1/customers, and
// their subscriptions out of GET /v1/subscriptions, unless test_clock is
// given: a test-mode backfill lists the clocks and each clock's objects,
// so every table equals the account (105 clocks: two pages of clocks).
func TestBackfillTestClocks(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(20, "uniform"); err != nil {
		t.Fatal(err)
	}
	custs := clockAccount(t, v, 105)
	if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: v.client(t, 2000)}); err != nil {
		t.Fatal(err)
	}
	requireSame(t, v)
	var n int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe.customers WHERE test_clock IS NOT NULL`).Scan(&n); err != nil || n != len(custs) {
		t.Fatalf("%d customers on test clocks stored (err %v), want %d", n, err, len(custs))
	}
}

// A backfill killed after it listed the clocks and fetched some of their
// customers resumes exactly: no clock lost, none fetched twice.
func TestBackfillTestClocksResume(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(10, "uniform"); err != nil {
		t.Fatal(err)
	}
	clockAccount(t, v, 12)
	ctx, cancel := context.WithCancel(context.Background())
	var clockLists atomic.Int64
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if r.URL.Path == "/v1/customers" && r.URL.Query().Get("test_clock") != "" && clockLists.Add(1) == 5 {
			cancel()
			return 503, `{"error":{"type":"api_error","message":"killed"}}`
		}
		return 0, ""
	})
	err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), MaxWorkers: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want context.Canceled", err)
	}
	v.rec.hooks(nil, nil)
	var pending int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe_sync.backfill_slices WHERE test_clock IS NOT NULL`).Scan(&pending); err != nil || pending == 0 {
		t.Fatalf("no clock slices pending after the kill (%d, %v)", pending, err)
	}
	if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: v.client(t, 1000)}); err != nil {
		t.Fatal(err)
	}
	requireSame(t, v)
	// One page of clocks per table that needs them (customers,
	// subscriptions) over both runs: none listed again after the kill.
	lists := 0
	for _, r := range v.rec.requests() {
		if strings.HasPrefix(r, "GET /v1/test_helpers/test_clocks?") {
			lists++
		}
	}
	if lists != 2 {
		t.Errorf("clocks listed %d times, want 2", lists)
	}
}

// Live keys have no test clocks: no clock list is requested.
func TestBackfillLiveKeyNoClocks(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(5, "uniform"); err != nil {
		t.Fatal(err)
	}
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_live_backfill", BaseURL: v.base, RateLimit: 1000, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: c, Objects: []string{"customers", "subscriptions"}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range v.rec.requests() {
		if strings.Contains(r, "test_clock") {
			t.Errorf("live-mode backfill asked for test clocks: %s", r)
		}
	}
}
