package events_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/sync/events"
)

// A role or database may set lock_timeout (OwnSession leaves it alone, and
// the loop keeps a shorter one than its own): an apply that waits on a
// lock a user's transaction holds then fails with 55P03. A held row is
// not waited for (TestReviewRowLockDoesNotStallSync); a table lock (LOCK
// TABLE … IN SHARE MODE) is. That is a lock conflict like a deadlock:
// the apply transaction runs again after a backoff, instead of failing the
// poll (a warning, last_error in stripe_sync.status, the poll backoff).
func TestEventsRetryLockTimeout(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(v.db)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "100ms"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	v.pool = pool
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	cus := v.post(t, "/v1/customers", url.Values{"email": {"a@example.com"}})
	var logs logtest.Buffer
	v.loop(t, events.Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	v.converge(t, 10*time.Second)

	user := pgtest.Connect(t, v.db)
	tx, err := user.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE stripe.customers IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	v.post(t, "/v1/customers/"+cus, url.Values{"email": {"b@example.com"}})
	// Held until an apply has met it: a fixed wait could end before the
	// first poll on a busy machine.
	waitFor(t, "an apply to meet the lock (55P03)", func() bool { return strings.Contains(logs.String(), "55P03") })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 10*time.Second)
	if strings.Contains(logs.String(), "events poll failed") {
		t.Errorf("a lock timeout failed the poll:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "55P03") {
		t.Errorf("the apply never met the lock (the test did not test anything):\n%s", logs.String())
	}
}

// The events loop writes the tables of a batch in the order store.Upsert
// locks them (parents, their nested lists, prices last). In name order a
// batch with price.updated and customer.subscription.updated locked the
// price, then waited for the subscription, while a write-through's apply
// of that subscription (subscription, items, then the price its items
// embed) waited for the price: a deadlock, and the write-through's apply
// was the one Postgres aborted here. A user's transaction holding the item
// makes the interleaving deterministic.
func TestEventsLockOrderWithWriteThrough(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	cus := v.post(t, "/v1/customers", url.Values{"email": {"a@example.com"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"p"}})
	price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"700"}, "recurring[interval]": {"month"}})
	sub := v.post(t, "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}})
	stop := v.loop(t, events.Config{})
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var item string
	if err := v.pool.QueryRow(ctx, `SELECT id FROM stripe.subscription_items WHERE subscription = $1`, sub).Scan(&item); err != nil {
		t.Fatal(err)
	}

	// Both change; their events wait for the next loop. In a later second
	// than anything stored, so that the apply below replaces the row.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	v.post(t, "/v1/prices/"+price, url.Values{"metadata[k]": {"v"}})
	v.post(t, "/v1/subscriptions/"+sub, url.Values{"metadata[k]": {"v"}})
	resp, err := v.mut.Get(ctx, "/v1/subscriptions/"+sub, nil)
	if err != nil {
		t.Fatal(err)
	}

	user := pgtest.Connect(t, v.db)
	u, err := user.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Rollback(ctx)
	if _, err := u.Exec(ctx, `SELECT 1 FROM stripe.subscription_items WHERE id = $1 FOR UPDATE`, item); err != nil {
		t.Fatal(err)
	}
	var userPID int
	if err := u.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&userPID); err != nil {
		t.Fatal(err)
	}

	// The write-through's apply, as writethrough.upsert does it; its
	// deadlock check runs first.
	wt := pgtest.Connect(t, v.db)
	if _, err := wt.Exec(ctx, `SET deadlock_timeout = '100ms'`); err != nil {
		t.Fatal(err)
	}
	applied := make(chan error, 1)
	go func() {
		applied <- pgx.BeginFunc(ctx, wt, func(tx pgx.Tx) error {
			_, err := store.Upsert(ctx, tx, "subscriptions", []store.Object{{Raw: resp.Body, AsOf: resp.AsOf}})
			return err
		})
	}()
	blockedBy := func(pid int) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var n int
			if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(end) {
				rows, _ := v.pool.Query(ctx, `SELECT pid, state, coalesce(wait_event_type,''), pg_blocking_pids(pid)::text, left(query, 150) FROM pg_stat_activity WHERE datname = current_database()`)
				for rows.Next() {
					var a int
					var b, c, d, e string
					rows.Scan(&a, &b, &c, &d, &e)
					t.Logf("%d %s %s %s %s", a, b, c, d, e)
				}
				t.Fatalf("nothing waited for backend %d", pid)
			}
		}
	}
	blockedBy(userPID) // the apply holds the subscription, waits for the item
	v.loop(t, events.Config{})
	// The events' transaction used to wait for the subscription here;
	// it now leaves the held subscription to a re-fetch and applies the
	// price, so the write-through's apply finds the price committed.
	waitFor(t, "the held subscription to be left to a re-fetch", func() bool {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch WHERE object = 'subscriptions' AND id = $1`, sub).Scan(&n)
		return n == 1
	})
	if err := u.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; err != nil {
		t.Fatalf("write-through apply: %v", err)
	}
	v.converge(t, 10*time.Second)
}
