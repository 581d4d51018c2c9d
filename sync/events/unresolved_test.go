package events_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/workload"
)

// restrictedKeyRefusal is the 403 Stripe answers a restricted key without a
// read permission.
const restrictedKeyRefusal = "The provided key 'rk_test_***abc' does not have the required permissions for this endpoint. Having the 'rak_customer_read' permission would allow this request to continue."

// A customer's same-second states queue its re-fetch ('ambiguous': only
// a re-fetch orders them), which Stripe refuses for good (a restricted key
// that may list events but not retrieve customers). The row may hold the
// wrong one of the two states: the entry must stay queued, unresolved,
// due again in 10 minutes, and stripe_sync.status must name the object,
// why it may be stale and what to do. Once the key may read customers,
// the next re-fetch (of a restarted process, which knows no refusal)
// stores Stripe's state and the status clears. Before, the entry was
// dropped with a log line: the row stale with nothing telling the user.
func TestRefusedAmbiguousRefetchKeptUnresolved(t *testing.T) {
	var refuse atomic.Bool
	v := setupWrapped(t, emulator.Options{}, refusing(func(r *http.Request) bool {
		return refuse.Load() && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/customers/")
	}, http.StatusForbidden, restrictedKeyRefusal))
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	w := workload.New(v.mut, 71)
	w.Do(ctx, "createCustomer")
	cus := w.Pick("customers")
	refuse.Store(true)
	v.sameSecondStates(t, cus, 4)
	stop := v.loop(t, events.Config{})
	reason := func() string {
		return v.queryText(t, `SELECT reason FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = $1`, cus)
	}
	waitUntil(t, 15*time.Second, "the refused re-fetch to be kept queued, unresolved", func() bool { return reason() == "unresolved" })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var wait float64
	if err := v.pool.QueryRow(ctx, `SELECT extract(epoch FROM not_before - now()) FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = $1`, cus).Scan(&wait); err != nil {
		t.Fatal(err)
	}
	if wait < 9*60 || wait > 11*60 {
		t.Errorf("unresolved entry due again in %.0fs, want about 10 minutes", wait)
	}
	status := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`)
	for _, want := range []string{cus, "same second", "grant the key", "10m0s", "rak_customer_read"} {
		if !strings.Contains(status, want) {
			t.Errorf("customers last_error %q does not say %q", status, want)
		}
	}

	refuse.Store(false)
	if _, err := v.pool.Exec(ctx, `UPDATE stripe_sync.events_refetch SET not_before = now() - interval '1 hour' WHERE object = 'customers' AND id = $1`, cus); err != nil {
		t.Fatal(err)
	}
	stop = v.loop(t, events.Config{})
	v.converge(t, 15*time.Second)
	waitUntil(t, 10*time.Second, "the settled entry to leave the queue", func() bool { return reason() == "" })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`); s != "" {
		t.Errorf("customers last_error %q once the object is stored, want none", s)
	}
}

// A key that may never read a table (invoice items, 403) while 150 of
// its objects are queued for re-fetch: every entry stays queued,
// unresolved, and the table costs Stripe one request, not one per object,
// nor a batch's worth at once; the status counts them and says to grant
// the permission. A restarted process (no refusal known) makes them all
// due again at the same time: still one request. Before, each entry was
// fetched, refused and dropped.
func TestRestrictedTableProbedOnce(t *testing.T) {
	var gets atomic.Int64
	refuse := refusing(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/invoiceitems/")
	}, http.StatusForbidden, restrictedKeyRefusal)
	v := setupWrapped(t, emulator.Options{}, func(h http.Handler) http.Handler {
		inner := refuse(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/invoiceitems/") {
				gets.Add(1)
			}
			inner.ServeHTTP(w, r)
		})
	})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	const n = 150
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT 'invoiceitems', 'ii_review' || g, now() - interval '1 hour', CASE WHEN g % 2 = 0 THEN 'owner' ELSE 'incomplete' END FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	unresolvedLater := func() int {
		var k int
		if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch
WHERE object = 'invoiceitems' AND reason = 'unresolved' AND not_before > now() + interval '9 minutes'`).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	for round := 1; round <= 2; round++ {
		stop := v.loop(t, events.Config{})
		waitUntil(t, 20*time.Second, "every refused entry to be kept queued, unresolved, for 10 minutes", func() bool { return unresolvedLater() == n })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := gets.Load(); got != int64(round) {
			t.Errorf("round %d: %d re-fetches of invoice items in all, want %d (one per process for a table the key can't read)", round, got, round)
		}
		status := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'invoiceitems'`)
		for _, want := range []string{fmt.Sprintf("and %d more", n-1), "grant the key"} {
			if !strings.Contains(status, want) {
				t.Errorf("round %d: invoiceitems last_error %q does not say %q", round, status, want)
			}
		}
		// As after a restart when they come due.
		if _, err := v.pool.Exec(ctx, `UPDATE stripe_sync.events_refetch SET not_before = now() - interval '1 hour'`); err != nil {
			t.Fatal(err)
		}
	}
}

// One customer Stripe refuses (403) while others of the table are
// readable: once its refusal window ends, the next probe is another
// customer (the refused one is probed again only alone), whose answer
// opens the table, and a 403 for one object of a table that answers
// others concerns that object only. Before, the refused customer, due
// first, was probed again at the end of every window and closed the table
// again: no re-fetch of the table was ever made.
func TestOneRefusedObjectDoesNotCloseItsTable(t *testing.T) {
	var refused atomic.Value
	refused.Store("")
	v := setupWrapped(t, emulator.Options{}, refusing(func(r *http.Request) bool {
		id, _ := refused.Load().(string)
		return id != "" && r.Method == http.MethodGet && r.URL.Path == "/v1/customers/"+id
	}, http.StatusForbidden, restrictedKeyRefusal))
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	w := workload.New(v.mut, 73)
	for range 3 {
		w.Do(ctx, "createCustomer")
	}
	stop := v.loop(t, events.Config{})
	v.converge(t, 15*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rows, err := v.pool.Query(ctx, `SELECT id FROM stripe.customers ORDER BY id LIMIT 3`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(ids) != 3 {
		t.Fatalf("customers %v: %v", ids, err)
	}
	x, others := ids[0], ids[1:]
	refused.Store(x)
	// x due first: the first drain's probe, refused, closes the table.
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT 'customers', id, now() - CASE WHEN id = $1 THEN interval '2 hours' ELSE interval '1 hour' END, 'owner' FROM unnest($2::text[]) id
ON CONFLICT (object, id) DO UPDATE SET not_before = excluded.not_before, reason = excluded.reason`, x, ids); err != nil {
		t.Fatal(err)
	}
	reasons := func() map[string]string {
		out := map[string]string{}
		rows, err := v.pool.Query(ctx, `SELECT id, reason FROM stripe_sync.events_refetch WHERE object = 'customers'`)
		if err != nil {
			t.Fatal(err)
		}
		var id, reason string
		if _, err := pgx.ForEachRow(rows, []any{&id, &reason}, func() error { out[id] = reason; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	stop = v.loop(t, events.Config{})
	defer stop()
	waitUntil(t, 15*time.Second, "all three kept unresolved while the table is closed", func() bool {
		r := reasons()
		return len(r) == 3 && r[x] == "unresolved" && r[others[0]] == "unresolved" && r[others[1]] == "unresolved"
	})
	// The window ends (Stripe's clock), and all three are due again, x
	// still first.
	v.e.SetClockOffset(11 * time.Minute)
	if _, err := v.pool.Exec(ctx, `UPDATE stripe_sync.events_refetch SET not_before = now() - CASE WHEN id = $1 THEN interval '2 hours' ELSE interval '1 hour' END WHERE object = 'customers'`, x); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "the readable customers to be fetched and leave the queue, the refused one to stay", func() bool {
		r := reasons()
		return len(r) == 1 && r[x] == "unresolved"
	})
}
