package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// oneShot runs a one-shot backfill of the customers of the Stripe at
// base into dbURL, which must succeed, as instance. run runs it again,
// waiting at most wait for rows users hold; pool is on dbURL, and logs
// has what every run logged.
func oneShot(t *testing.T, dbURL, base, instance string) (run func(wait time.Duration) error, pool *pgxpool.Pool, logs *logtest.Buffer) {
	t.Helper()
	logs = &logtest.Buffer{}
	opts := Options{Config: keyCheckConfig(dbURL, base, "sk_test_oneshot"), Logger: slog.New(slog.NewTextHandler(logs, nil))}
	opts.Instance.Instance, opts.Instance.Host = instance, "h"
	run = func(wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		o := opts
		o.HeldWait = wait
		return Backfill(ctx, o, []string{"customers"}, true)
	}
	if err := run(time.Second); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return run, pool, logs
}

// A one-shot backfill that meets a row a user's transaction holds does
// not end as if complete, leaving the row's old state until the next
// serve: it retries the held objects for a bounded time, logging how many
// it waits for and the backends holding them, and then either stores them
// (the lock ended meanwhile) or fails with an error naming what stays
// queued for serve, and the holding backend.
func TestOneShotBackfillWaitsForHeldRows(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 3})
	run, pool, logs := oneShot(t, dbURL, base, "oneshot-held")
	ctx := context.Background()
	var id string
	if err := pool.QueryRow(ctx, `SELECT id FROM stripe.customers ORDER BY id LIMIT 1`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	client, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_oneshot", BaseURL: base, RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	email := func() string {
		var e string
		if err := pool.QueryRow(ctx, `SELECT coalesce(email, '') FROM stripe.customers WHERE id = $1`, id).Scan(&e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	change := func(to string) {
		t.Helper()
		if _, err := client.Post(ctx, "/v1/customers/"+id, url.Values{"email": {to}}, ""); err != nil {
			t.Fatal(err)
		}
		// Stored well before the backfill's second: its state, and the
		// re-fetch's, are newer for certain.
		if _, err := pool.Exec(ctx, `UPDATE stripe.customers SET _as_of = _as_of - interval '1 minute'`); err != nil {
			t.Fatal(err)
		}
	}

	// Held for longer than the backfill waits: it says what it leaves.
	change("first@example.com")
	tx, pid := pgtest.HoldRows(t, dbURL, "customers", id)
	// 3 s: the first look must fit in it on a loaded machine for the
	// progress line this checks.
	err = run(3 * time.Second)
	var he *HeldError
	if !errors.As(err, &he) {
		t.Fatalf("backfill with a held row: %v, want a HeldError", err)
	}
	if len(he.Rows) != 1 || he.Rows[0].Table != "customers" || he.Rows[0].ID != id || !slices.Contains(he.Rows[0].Pids, int32(pid)) {
		t.Errorf("left queued: %+v, want customers %s held by %d", he.Rows, id, pid)
	}
	for _, want := range []string{id, fmt.Sprint(pid), "pgstripe serve"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %q: %s", want, err)
		}
	}
	progress := func() int { return strings.Count(logs.String(), "waiting for them to be released") }
	if progress() == 0 || !strings.Contains(logs.String(), fmt.Sprint(pid)) {
		t.Errorf("no progress line naming the blocking backend %d:\n%s", pid, logs.String())
	}
	if got := email(); got == "first@example.com" {
		t.Error("the held row was written under the user's lock")
	}
	if strings.Contains(logs.String(), "first@example.com") {
		t.Error("the logs show row data")
	}

	// Released while the backfill waits: it stores the object and
	// succeeds.
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	change("second@example.com")
	tx, _ = pgtest.HoldRows(t, dbURL, "customers", id)
	before := progress()
	done := make(chan error, 1)
	go func() { done <- run(30 * time.Second) }()
	for progress() == before {
		select {
		case err := <-done:
			t.Fatalf("backfill ended before it waited for the held row: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("backfill whose held row was released while it waited: %v", err)
	}
	if got := email(); got != "second@example.com" {
		t.Errorf("email %q after the backfill, want Stripe's second@example.com", got)
	}
	var queued int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch WHERE reason = 'locked'`).Scan(&queued); err != nil {
		t.Fatal(err)
	}
	if queued != 0 {
		t.Errorf("%d held entries still queued after the backfill succeeded", queued)
	}
}

// A one-shot backfill ends with one object still held by a user's
// transaction and another, left queued by a held row too but free now,
// whose re-fetch Stripe keeps failing (500). The error says which is
// which: the held one with its backend, the other with Stripe's error,
// not as a row other transactions hold (before, both were "held by other
// transactions", the second with no pid to look for).
func TestOneShotBackfillNamesStripeFailuresApart(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	e, _ := emulatortest.Start(t, emulator.Options{Seed: 3})
	var failing atomic.Pointer[string] // the customer whose retrieve fails
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := failing.Load(); id != nil && r.Method == http.MethodGet && r.URL.Path == "/v1/customers/"+*id {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":{"type":"api_error","message":"outage for one customer"}}`))
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	run, pool, _ := oneShot(t, dbURL, srv.URL, "oneshot-outage")
	ctx := context.Background()
	var held, free string
	if err := pool.QueryRow(ctx, `SELECT min(id), max(id) FROM stripe.customers`).Scan(&held, &free); err != nil {
		t.Fatal(err)
	}
	// Left queued by a held row of an earlier run; free now.
	if _, err := pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason) VALUES ('customers', $1, now() - interval '1 minute', 'locked')`, free); err != nil {
		t.Fatal(err)
	}
	failing.Store(&free)
	// The row the backfill's page meets held.
	if _, err := pool.Exec(ctx, `UPDATE stripe.customers SET _as_of = _as_of - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	_, pid := pgtest.HoldRows(t, dbURL, "customers", held)
	err := run(3 * time.Second)
	var he *HeldError
	if !errors.As(err, &he) {
		t.Fatalf("backfill: %v, want a HeldError", err)
	}
	msg := err.Error()
	heldPart, stripePart, ok := strings.Cut(msg, "Stripe failed the re-fetch of ")
	if !ok {
		t.Fatalf("the error does not say Stripe failed the re-fetch: %s", msg)
	}
	for _, want := range []string{"rows held by other transactions kept 1 object(s)", held, fmt.Sprint(pid)} {
		if !strings.Contains(heldPart, want) {
			t.Errorf("the error's held part does not name %q: %s", want, msg)
		}
	}
	if strings.Contains(heldPart, free) {
		t.Errorf("the error calls %s, whose row is free, held: %s", free, msg)
	}
	for _, want := range []string{"1 object(s) (customers=1): customers " + free, "outage for one customer", "HTTP 500", "pgstripe serve"} {
		if !strings.Contains(stripePart, want) {
			t.Errorf("the error's Stripe part does not name %q: %s", want, msg)
		}
	}
	if strings.Contains(stripePart, held) {
		t.Errorf("the error blames Stripe for the held %s: %s", held, msg)
	}
}
