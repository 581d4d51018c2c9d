package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// A backfill of customers alone is killed after its first page; the next
// run covers every table (pgstripe serve after an interrupted
// `pgstripe backfill --objects customers`). Customers resume from their
// pending slices, so the customers of the first run's finished page are not
// fetched again, and their payment methods and tax ids, per-customer lists
// new in this run, must still be fetched (CONTRACT §4: kill -9 at any
// moment, restart, tables exactly equal to Stripe).
func TestResumedParentFreshPerParentKid(t *testing.T) {
	v := killedAfterFirstCustomersPage(t, "customers")
	var stored int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe.customers`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == 0 || stored >= 150 {
		t.Fatalf("first run stored %d customers; want a part of them", stored)
	}
	if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: v.client(t, 1000),
		Objects: []string{"customers", "payment_methods", "tax_ids"}}); err != nil {
		t.Fatal(err)
	}
	v.compare(t, "customers")
	v.compare(t, "payment_methods")
	v.compare(t, "tax_ids")
}

// GET /v1/invoices/upcoming?customer= answers 400 for one customer (Stripe
// refuses a customer deleted since its subscription was listed: the
// events loop treats that 400 as "nothing upcoming"). One customer's
// refusal must not fail upcoming_invoices as a whole: the others' upcoming
// invoices are stored and the table goes live.
func TestUpcoming400ForOneCustomer(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(40, "uniform"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	refused := ""
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if r.URL.Path != "/v1/invoices/upcoming" {
			return 0, ""
		}
		cus := r.URL.Query().Get("customer")
		mu.Lock()
		defer mu.Unlock()
		if refused == "" {
			refused = cus
		}
		if cus == refused {
			return 400, `{"error":{"type":"invalid_request_error","code":"resource_missing","param":"customer","message":"No such customer: '` + cus + `'"}}`
		}
		return 0, ""
	})
	ctx := context.Background()
	err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"subscriptions", "upcoming_invoices"}})
	if err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if refused == "" {
		t.Fatal("no upcoming invoice was requested")
	}
	var phase string
	if err := v.pool.QueryRow(ctx, `SELECT phase FROM stripe_sync.status WHERE object = 'upcoming_invoices'`).Scan(&phase); err != nil {
		t.Fatal(err)
	}
	if phase != "live" {
		t.Errorf("upcoming_invoices phase %q, want live", phase)
	}
	want := v.e.Objects("upcoming_invoices")
	delete(want, refused)
	var got int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.upcoming_invoices`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != len(want) {
		t.Errorf("upcoming_invoices: %d rows, want %d", got, len(want))
	}
}

// The reverse: a full backfill is killed after the first page of
// customers; the next run names payment_methods alone. It must not
// declare payment_methods complete while customers are not (the parents
// still to come would never get their payment methods listed: a later run
// finds payment_methods complete and skips them).
func TestPerParentKidAloneWhileParentIncomplete(t *testing.T) {
	v := killedAfterFirstCustomersPage(t, "customers", "payment_methods")
	for _, objs := range [][]string{{"payment_methods"}, {"customers", "payment_methods"}} {
		if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: objs}); err != nil {
			t.Fatal(err)
		}
	}
	v.compare(t, "customers")
	v.compare(t, "payment_methods")
}

// Two pages of subscriptions commit concurrently and queue the upcoming
// invoices of customers they share, in their own page orders (a customer
// with an old and a new subscription is on two slices). The unique index on
// (object, parent) makes each INSERT … ON CONFLICT DO NOTHING wait for the
// other's uncommitted row: queued in opposite orders, that is a deadlock,
// and a database error ends the backfill run. Here a third transaction
// holds one customer so that the interleaving is deterministic.
func TestQueueParentsNoDeadlock(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	hold, err := v.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if err := backfill.InsertParents(ctx, hold, []string{"upcoming_invoices"}, []string{"cus_x"}); err != nil {
		t.Fatal(err)
	}
	run := func(parents []string) chan error {
		done := make(chan error, 1)
		go func() {
			tx, err := v.pool.Begin(ctx)
			if err != nil {
				done <- err
				return
			}
			defer tx.Rollback(ctx)
			if err := backfill.InsertParents(ctx, tx, []string{"upcoming_invoices"}, parents); err != nil {
				done <- err
				return
			}
			done <- tx.Commit(ctx)
		}()
		return done
	}
	waiting := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var w int
			if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&w); err != nil {
				t.Fatal(err)
			}
			if w >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d transactions waiting, want %d", w, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Page A: cus_1, cus_x, cus_2 (stops at cus_x, held). Page B: cus_2,
	// cus_1 (waits for A at cus_1 once it holds cus_2).
	a := run([]string{"cus_1", "cus_x", "cus_2"})
	waiting(1)
	b := run([]string{"cus_2", "cus_1"})
	waiting(2)
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan error{a, b} {
		if err := <-ch; err != nil {
			t.Errorf("queueing parents: %v", err)
		}
	}
}

// After a kill part-way, the restarted backfill continues from its pending
// slices, and says so: stripe_sync.log's backfill_started names the
// resumed tables (CONTRACT §4: a backfill resumes where it stopped), so an
// operator restarting after a crash need not infer it from what "fresh"
// leaves out.
func TestResumedBackfillIsLogged(t *testing.T) {
	v := killedAfterFirstCustomersPage(t, "customers")
	if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: v.client(t, 1000),
		Objects: []string{"customers", "products"}}); err != nil {
		t.Fatal(err)
	}
	v.compare(t, "customers")
	var raw []byte
	if err := v.pool.QueryRow(context.Background(), `SELECT detail FROM stripe_sync.log
WHERE kind = 'backfill_started' ORDER BY id DESC LIMIT 1`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var d struct {
		Fresh   []string `json:"fresh"`
		Resumed []string `json:"resumed"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Resumed, []string{"customers"}) || !slices.Equal(d.Fresh, []string{"products"}) {
		t.Errorf("second backfill_started: %s; want customers resumed and products fresh", raw)
	}
}

// killedAfterFirstCustomersPage seeds 150 customers and runs a backfill of
// objects that stops as a kill would once its first page of customers
// committed (killAtSecondCustomersPage).
func killedAfterFirstCustomersPage(t *testing.T, objects ...string) *env {
	t.Helper()
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(150, "uniform"); err != nil {
		t.Fatal(err)
	}
	killAtSecondCustomersPage(t, v, backfill.Config{Objects: objects})
	return v
}

// killAtSecondCustomersPage runs cfg's backfill on v's pool with one
// worker and stops it as a kill would once its first page of customers
// committed: the second page is requested only after the first one
// committed (successors are queued after the commit). Bounded: a first
// page that waited for a lock would never be killed.
func killAtSecondCustomersPage(t *testing.T, v *env, cfg backfill.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lists atomic.Int64
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if r.URL.Path == "/v1/customers" && lists.Add(1) == 2 {
			cancel()
			return 503, `{"error":{"type":"api_error","message":"killed"}}`
		}
		return 0, ""
	})
	cfg.Pool, cfg.Client, cfg.MaxWorkers = v.pool, v.client(t, 1000), 1
	if err := backfill.Run(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want context.Canceled", err)
	}
	v.rec.hooks(nil, nil)
}
