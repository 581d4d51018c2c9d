package events_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/workload"
)

// A quiet account whose newest event is a little under 30 days old: the
// backfill's handoff cursor must be the time the backfill started, not the
// newest event's created, or the events loop finds its cursor "past
// retention" right after a complete backfill and backfills everything
// again (and sweeps rows by a time the first backfill's rows may not
// reach). Every event after the handoff is still retained.
func TestNoRebackfillRightAfterBackfill(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	w := workload.New(v.mut, 21)
	// The account's last activity: 30 days minus 20 minutes ago.
	v.e.SetClockOffset(-(30*24*time.Hour - 20*time.Minute))
	w.Do(ctx, "createCustomer")
	w.Do(ctx, "createProduct")
	v.e.SetClockOffset(0)
	if w.OK("") != 2 {
		t.Fatalf("workload: %s", w.Summary())
	}
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	stop := v.loop(t, events.Config{Backfill: func(ctx context.Context, since time.Time) error {
		calls.Add(1)
		return backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4, RestartCompletedBefore: since})
	}})
	// A change after the backfill still flows.
	w.Do(ctx, "updateCustomer")
	v.converge(t, 10*time.Second)
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("a complete backfill was followed at once by %d re-backfill(s) of every table", n)
	}
	var logged int
	v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'rebackfill_started'`).Scan(&logged)
	if logged != 0 {
		t.Errorf("rebackfill_started logged %d times", logged)
	}
}

// setupWrapped is setup with the emulator behind wrap (for answers the
// emulator doesn't give, e.g. a restricted key's 403).
func setupWrapped(t *testing.T, opts emulator.Options, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	v := setup(t, opts)
	srv := httptest.NewServer(wrap(v.e))
	t.Cleanup(srv.Close)
	v.base = srv.URL
	v.client = v.newClient(t, "sk_test_events", 500)
	v.mut = v.newClient(t, "sk_test_workload", 5000)
	return v
}

// A re-fetch Stripe refuses for good (a restricted key without access to
// invoice items answers 403; the items' table is then in phase error, but
// invoice events still queue their items) must not stay at the head of
// the queue: the drain takes the 100 oldest due entries, so 100 such
// entries would starve every other re-fetch (same-second orderings,
// nested lists, upcoming invoices) forever.
func TestRefusedRefetchDoesNotStarveQueue(t *testing.T) {
	g := &retrievalGate{table: "invoiceitems"}
	g.failAll(gateError{http.StatusForbidden, "The provided key does not have the required permissions for this endpoint."})
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	// Invoice items queued by earlier invoice events, due long ago.
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT 'invoiceitems', 'ii_refused' || g, now() - interval '1 hour', 'owner' FROM generate_series(1, 150) g`); err != nil {
		t.Fatal(err)
	}
	w := workload.New(v.mut, 31)
	w.Do(ctx, "createCustomer")
	cus := w.Pick("customers")
	v.sameSecondStates(t, cus, 4) // only a re-fetch orders them
	route := "GET /v1/customers/{customer}"
	before := v.e.Stats().ByRoute[route]
	stop := v.loop(t, events.Config{})
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && v.e.Stats().ByRoute[route] == before; {
		time.Sleep(100 * time.Millisecond)
	}
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := v.e.Stats().ByRoute[route] - before; got < 1 {
		t.Errorf("the same-second states of %s were never re-fetched: the queue is blocked by refused entries", cus)
	}
}

// A table whose first backfill failed part-way (a non-retryable 4xx on a
// later page; phase error, its remaining slices kept) and that completes
// in a re-backfill after the cursor expired: the re-backfill resumes the
// remaining slices only, so the rows of the first run's pages are older
// than the re-backfill's start and the sweep deletes and tombstones
// objects that still exist.
func TestRebackfillResumingFailedTableKeepsRows(t *testing.T) {
	var refuse atomic.Bool
	v := setupWrapped(t, emulator.Options{}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if refuse.Load() && r.URL.Path == "/v1/customers" && r.URL.Query().Get("starting_after") != "" &&
				strings.HasSuffix(r.Header.Get("Authorization"), "sk_test_events") {
				gateError{http.StatusBadRequest, "Something Stripe refused."}.write(w)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx := context.Background()
	w := workload.New(v.mut, 41)
	for range 130 {
		w.Do(ctx, "createCustomer")
	}
	refuse.Store(true)
	err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4, Objects: []string{"customers"}})
	var partial *backfill.PartialError
	if !errors.As(err, &partial) {
		t.Fatalf("first backfill = %v, want a PartialError", err)
	}
	refuse.Store(false)
	if n := v.rows(t, "customers"); n == 0 || n >= 130 {
		t.Fatalf("first backfill stored %d customers, want part of them", n)
	}
	v.e.SetClockOffset(31 * 24 * time.Hour)
	stop := v.loop(t, events.Config{Backfill: func(ctx context.Context, since time.Time) error {
		return backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4, Objects: []string{"customers"}, RestartCompletedBefore: since})
	}})
	defer stop()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'rebackfill_complete'`).Scan(&n)
		if n > 0 {
			break
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var tomb int
	v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.tombstones WHERE object = 'customers'`).Scan(&tomb)
	if n := v.rows(t, "customers"); n != 130 || tomb != 0 {
		t.Errorf("after the re-backfill: %d customers of 130, %d tombstoned (none was deleted)", n, tomb)
	}
}
