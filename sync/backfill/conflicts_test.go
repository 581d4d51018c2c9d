package backfill_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// A user's transaction that locks rows the backfill's page writes, in
// another order than the page, deadlocks with it, and Postgres aborts the
// backfill's transaction (its deadlock check runs first). That is a
// transient error: the page's transaction must run again, not end the run
// (which makes serve resign and the one-shot backfill command fail). A
// page no longer waits for a held stripe row (it leaves it to the events
// loop), so the cycle runs through its slice's row here: the user holds
// the slice, the page locks the customers and waits for the slice, the
// user asks for the first customer.
func TestBackfillRetriesDeadlock(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.SeedCustomers(5, "uniform"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers"}}
	if err := backfill.Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range v.e.Objects("customers") {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	first := ids[0]

	user := pgtest.Connect(t, v.db)
	var userPID int
	if err := user.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&userPID); err != nil {
		t.Fatal(err)
	}
	// The user's deadlock check comes long after the backfill's (1 s).
	if _, err := user.Exec(ctx, `SET deadlock_timeout = '1min'`); err != nil {
		t.Fatal(err)
	}
	tx, err := user.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// The page's request waits until the user holds its slice.
	requested, slicesHeld := make(chan struct{}), make(chan struct{})
	var once sync.Once
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if r.URL.Path == "/v1/customers" {
			once.Do(func() {
				close(requested)
				<-slicesHeld
			})
		}
		return 0, ""
	})

	done := make(chan error, 1)
	go func() {
		c := cfg
		c.RestartCompletedBefore = time.Now().Add(time.Hour) // fetch and write every row again
		done <- backfill.Run(ctx, c)
	}()
	select {
	case <-requested:
	case err := <-done:
		t.Fatalf("Run = %v before its first page", err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM stripe_sync.backfill_slices WHERE object = 'customers' AND NOT clocks FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	close(slicesHeld)
	// The page has locked the customers and waits for its slice.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, userPID).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backfill never waited for the user's lock of its slice")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Closing the cycle: returns once Postgres has aborted the backfill's
	// transaction.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM stripe.customers WHERE id = $1 FOR UPDATE`, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil (a deadlock is retried)", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("backfill did not finish")
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
