package backfill_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
)

// staleCopy backfills the customers, then changes them in Stripe
// behind the stored copy's back: held gets a new email, doomed is
// deleted, and the events cursor is forgotten, as for rows restored from
// an older dump of schema stripe, so no replayed event brings either change:
// only a backfill (and what it leaves to the events loop) can.
func staleCopy(t *testing.T, v *env, held, doomed []string) {
	t.Helper()
	ctx := context.Background()
	c := v.client(t, 1000)
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c, Objects: []string{"customers"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range held {
		if _, err := c.Post(ctx, "/v1/customers/"+id, url.Values{"email": {"after-" + id + "@example.com"}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range doomed {
		if _, err := c.Delete(ctx, "/v1/customers/"+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Older than the next backfill's planning by more than the second
	// both may share: its sweep tells them from the rows it rewrote.
	if _, err := v.pool.Exec(ctx, `DELETE FROM stripe_sync.cursor;
UPDATE stripe.customers SET _as_of = _as_of - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
}

// seededEnv is an env whose emulator seed (Emulator.Seed or
// SeedCustomers) gave n customers, and their ids, newest first: the first
// page of a customers backfill lists them first.
func seededEnv(t *testing.T, seed func(*emulator.Emulator, int, string) error, n int) (*env, []string) {
	t.Helper()
	v := setup(t, emulator.Options{})
	if err := seed(v.e, n, "uniform"); err != nil {
		t.Fatal(err)
	}
	return v, newestCustomers(t, v, n)
}

// newestCustomers are the n newest customers' ids (the first page
// of a customers backfill lists them).
func newestCustomers(t *testing.T, v *env, n int) []string {
	t.Helper()
	type cus struct {
		id      string
		created int64
	}
	var all []cus
	for id, raw := range v.e.Objects("customers") {
		var o struct{ Created int64 }
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatal(err)
		}
		all = append(all, cus{id, o.Created})
	}
	slices.SortFunc(all, func(a, b cus) int {
		return cmp.Or(cmp.Compare(b.created, a.created), cmp.Compare(b.id, a.id))
	})
	out := make([]string, 0, n)
	for _, c := range all[:n] {
		out = append(out, c.id)
	}
	return out
}

// queuedFor are the ids of table queued for re-fetch with reason.
func queuedFor(t *testing.T, v *env, table, reason string) []string {
	t.Helper()
	rows, err := v.pool.Query(context.Background(), `SELECT id FROM stripe_sync.events_refetch WHERE object = $1 AND reason = $2 ORDER BY id`, table, reason)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (v *env) queryText(t *testing.T, query string, args ...any) string {
	t.Helper()
	var s *string
	if err := v.pool.QueryRow(context.Background(), query, args...).Scan(&s); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// convergeWithLoop runs the events loop until cond holds (the held rows'
// objects are stored as Stripe has them), then stops it.
func convergeWithLoop(t *testing.T, v *env, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- events.Run(ctx, events.Config{Pool: v.pool, Client: v.client(t, 1000), PollInterval: 100 * time.Millisecond,
			LookBack: 5 * time.Second, SweepEvery: time.Second, BalanceEvery: -1})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("events loop: %v", err)
		}
	}()
	for end := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("events loop: timed out waiting for %s", what)
		}
		select {
		case err := <-done:
			t.Fatalf("events loop ended: %v", err)
		default:
		}
	}
}

// drainHeld re-fetches only the held entries, as a one-shot backfill
// drains them (the events loop would mark the table live before its
// backfill ends), and fails unless it leaves none.
func drainHeld(t *testing.T, v *env) {
	t.Helper()
	left, err := events.DrainHeld(context.Background(), events.Config{Pool: v.pool, Client: v.client(t, 1000),
		PollInterval: 50 * time.Millisecond}, nil, 20*time.Second)
	if err != nil || len(left) > 0 {
		t.Fatalf("draining the held entries: %v, left %v", err, left)
	}
}

// runBounded runs a backfill that must not wait for the user's
// lock: it gets far longer than it needs, but not for ever.
func runBounded(t *testing.T, cfg backfill.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := backfill.Run(ctx, cfg); err != nil {
		t.Fatalf("backfill while a user holds customers' rows: %v (it must not wait for the lock)", err)
	}
}

// A user's transaction holds two customers' rows (SELECT … FOR UPDATE,
// left idle) while the customers are backfilled again: one customer
// changed in Stripe since it was stored, the other was deleted. The
// backfill must complete without waiting for the lock, with every other
// customer stored; its sweep must neither delete the held live customer
// nor wait for the held deleted one. Both are left to the events loop,
// which, once the lock is released, stores the first as Stripe has it
// and removes (and tombstones) the second.
func TestBackfillDoesNotWaitForHeldRow(t *testing.T) {
	v, ids := seededEnv(t, (*emulator.Emulator).SeedCustomers, 8)
	held, doomed := ids[3], ids[5]
	staleCopy(t, v, []string{held}, []string{doomed})
	tx, _ := pgtest.HoldRows(t, v.db, "customers", held, doomed)

	runBounded(t, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers"},
		RestartCompletedBefore: time.Now().Add(time.Hour)})
	if phase := v.queryText(t, `SELECT phase FROM stripe_sync.status WHERE object = 'customers'`); phase != "live" {
		t.Errorf("customers phase %q, want live", phase)
	}
	if got := v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, held); got == "" || got == "after-"+held+"@example.com" {
		t.Errorf("held customer's email %q; want its old stored state, untouched under the user's lock (and not swept)", got)
	}
	if got := v.queryText(t, `SELECT id FROM stripe.customers WHERE id = $1`, doomed); got != doomed {
		t.Errorf("the held row of a deleted customer is gone while the user holds it")
	}
	if got, want := queuedFor(t, v, "customers", "locked"), slices.Sorted(slices.Values([]string{held, doomed})); !slices.Equal(got, want) {
		t.Errorf("queued for re-fetch (locked): %v, want %v", got, want)
	}
	// Every other customer is stored as Stripe has it.
	stripe := v.e.Objects("customers")
	for _, id := range ids {
		if id == held || id == doomed {
			continue
		}
		want := canonicalJSON(t, stripe[id])
		if got := v.queryText(t, `SELECT _raw::text FROM stripe.customers WHERE id = $1`, id); got == "" || canonicalJSON(t, []byte(got)) != want {
			t.Errorf("customer %s not stored as in Stripe while another one was held", id)
		}
	}

	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	convergeWithLoop(t, v, "the held customers to converge", func() bool {
		return v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, held) == "after-"+held+"@example.com" &&
			v.queryText(t, `SELECT id FROM stripe.customers WHERE id = $1`, doomed) == ""
	})
	v.compare(t, "customers")
	if v.queryText(t, `SELECT id FROM stripe_sync.tombstones WHERE object = 'customers' AND id = $1`, doomed) != doomed {
		t.Errorf("deleted customer %s removed without a tombstone", doomed)
	}
}

// The backfill is killed after its first page of customers, which met
// rows users hold; one is released, the resumed run completes while the
// others are still held. Nothing is lost: the held customers stay queued
// across the kill, the sweep leaves them (held or not), and the events
// loop stores Stripe's state once the users' transactions end.
func TestBackfillHeldRowSurvivesKill(t *testing.T) {
	v, ids := seededEnv(t, (*emulator.Emulator).Seed, 150)
	held := ids[:3] // on the first page
	staleCopy(t, v, held, nil)
	// One is released after the kill: the resumed run's sweep finds its
	// stale row unheld, and must still leave it to the re-fetch (a
	// tombstone would keep Stripe's state out for good).
	released, _ := pgtest.HoldRows(t, v.db, "customers", held[0])
	tx, _ := pgtest.HoldRows(t, v.db, "customers", held[1:]...)

	restart := time.Now() // as a re-backfill: the resumed run resumes, it does not start over
	killAtSecondCustomersPage(t, v, backfill.Config{Objects: []string{"customers"}, RestartCompletedBefore: restart})
	want := slices.Sorted(slices.Values(held))
	if got := queuedFor(t, v, "customers", "locked"); !slices.Equal(got, want) {
		t.Fatalf("after the kill, queued for re-fetch (locked): %v, want %v", got, want)
	}

	if err := released.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	runBounded(t, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers"},
		RestartCompletedBefore: restart})
	var stored int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe.customers`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 150 {
		t.Errorf("%d customers stored after the resumed backfill, want 150 (held ones kept, none swept)", stored)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	convergeWithLoop(t, v, "the held customers to converge", func() bool {
		for _, id := range held {
			if v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, id) != "after-"+id+"@example.com" {
				return false
			}
		}
		return true
	})
	v.compare(t, "customers")
}

// refuseRetrieve answers GET /v1/customers/{id} of ids as Stripe answers a
// restricted key without the right to read them: 403, for good.
func refuseRetrieve(v *env, ids ...string) {
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if r.Method == http.MethodGet && slices.Contains(ids, strings.TrimPrefix(r.URL.Path, "/v1/customers/")) {
			return 403, `{"error":{"type":"invalid_request_error","message":"The provided key 'rk_test_***abc' does not have the required permissions for this endpoint."}}`
		}
		return 0, ""
	})
}

// An event's update and deletion of customers whose rows a user holds are
// left to the re-fetch queue; once the rows are free, Stripe refuses the
// re-fetches for good (a restricted key that may list events but not
// retrieve customers). The events' own states must then be written, as
// they would have been without the lock: the update stored, the deletion
// applied (row removed, tombstoned). Before, the entries were dropped and
// both changes lost.
func TestHeldEventStateWrittenWhenRefetchRefused(t *testing.T) {
	v, ids := seededEnv(t, (*emulator.Emulator).SeedCustomers, 3)
	upd, del := ids[0], ids[1]
	ctx := context.Background()
	c := v.client(t, 1000)
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c, Objects: []string{"customers"}}); err != nil {
		t.Fatal(err)
	}
	// Stored a second or more before the events below: a state of the
	// events' own second could not be ordered against them.
	if _, err := v.pool.Exec(ctx, `UPDATE stripe.customers SET _as_of = _as_of - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	tx, _ := pgtest.HoldRows(t, v.db, "customers", upd, del)
	if _, err := c.Post(ctx, "/v1/customers/"+upd, url.Values{"email": {"event-state@example.com"}}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "/v1/customers/"+del, nil); err != nil {
		t.Fatal(err)
	}
	heldQueued := func() bool {
		return v.queryText(t, `SELECT count(*)::text FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = ANY($1) AND reason = 'locked'`,
			[]string{upd, del}) == "2"
	}
	convergeWithLoop(t, v, "the held customers' events to be queued", heldQueued)
	if got := v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, upd); got == "event-state@example.com" {
		t.Fatal("the held row was written under the user's lock")
	}
	refuseRetrieve(v, upd, del)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	convergeWithLoop(t, v, "the refused re-fetches to leave the queue", func() bool {
		return v.queryText(t, `SELECT count(*)::text FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = ANY($1)`,
			[]string{upd, del}) == "0"
	})
	if got := v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, upd); got != "event-state@example.com" {
		t.Errorf("held customer's email %q after a refused re-fetch, want its event's event-state@example.com", got)
	}
	if got := v.queryText(t, `SELECT id FROM stripe.customers WHERE id = $1`, del); got != "" {
		t.Errorf("customer %s, deleted by an event while held, is still stored after a refused re-fetch", del)
	}
	if v.queryText(t, `SELECT id FROM stripe_sync.tombstones WHERE object = 'customers' AND id = $1`, del) != del {
		t.Errorf("deleted customer %s has no tombstone", del)
	}
}

// A backfill page meets a row a user holds and is killed; the row is
// released and its re-fetch is refused for good before the resumed run
// completes. The resumed run's sweep must not take the row for a gone
// object's: the customer exists, and it stays stored, with the state the
// page saw. Before, the refused entry was dropped and the sweep deleted
// (and tombstoned) a live customer.
func TestSweepKeepsHeldRowWhoseRefetchWasRefused(t *testing.T) {
	v, ids := seededEnv(t, (*emulator.Emulator).Seed, 150)
	held := ids[0] // on the first page
	staleCopy(t, v, []string{held}, nil)
	tx, _ := pgtest.HoldRows(t, v.db, "customers", held)

	restart := time.Now()
	killAtSecondCustomersPage(t, v, backfill.Config{Objects: []string{"customers"}, RestartCompletedBefore: restart})
	if got := queuedFor(t, v, "customers", "locked"); !slices.Equal(got, []string{held}) {
		t.Fatalf("after the kill, queued for re-fetch (locked): %v, want [%s]", got, held)
	}
	refuseRetrieve(v, held)
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	drainHeld(t, v)
	runBounded(t, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers"},
		RestartCompletedBefore: restart})
	if got := v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, held); got != "after-"+held+"@example.com" {
		t.Errorf("held customer %s: email %q after the resumed backfill, want the page's (Stripe's) after-%s@example.com", held, got, held)
	}
	if v.queryText(t, `SELECT id FROM stripe_sync.tombstones WHERE object = 'customers' AND id = $1`, held) != "" {
		t.Errorf("live customer %s was tombstoned", held)
	}
	v.rec.hooks(nil, nil)
	v.compare(t, "customers")
}

// A sweep that finds a gone object's row held queues the sweep's verdict
// with its re-fetch: refused for good once the row is free, the row is
// removed as the sweep would have removed it.
func TestSweptHeldRowRemovedWhenRefetchRefused(t *testing.T) {
	v, ids := seededEnv(t, (*emulator.Emulator).SeedCustomers, 4)
	doomed := ids[2]
	staleCopy(t, v, nil, []string{doomed})
	tx, _ := pgtest.HoldRows(t, v.db, "customers", doomed)
	runBounded(t, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers"},
		RestartCompletedBefore: time.Now().Add(time.Hour)})
	if got := queuedFor(t, v, "customers", "locked"); !slices.Equal(got, []string{doomed}) {
		t.Fatalf("queued for re-fetch (locked): %v, want [%s]", got, doomed)
	}
	refuseRetrieve(v, doomed)
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	drainHeld(t, v)
	if v.queryText(t, `SELECT id FROM stripe.customers WHERE id = $1`, doomed) != "" {
		t.Errorf("customer %s, on no list of the completed backfill, is still stored after a refused re-fetch", doomed)
	}
	v.rec.hooks(nil, nil)
	v.compare(t, "customers")
}

// refuseGets answers, as a restricted key without the right to read them,
// 403 for good to the GETs whose path the predicate matches.
func refuseGets(v *env, match func(path string) bool) {
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if r.Method == http.MethodGet && match(r.URL.Path) {
			return 403, `{"error":{"type":"invalid_request_error","message":"The provided key 'rk_test_***abc' does not have the required permissions for this endpoint."}}`
		}
		return 0, ""
	})
}

// entry is the queue entry of table's id: its reason ("" when none).
func entry(t *testing.T, v *env, table, id string) string {
	t.Helper()
	return v.queryText(t, `SELECT reason FROM stripe_sync.events_refetch WHERE object = $1 AND id = $2`, table, id)
}

// A held customer's event state is of the very second of the state
// stored since (a same-second write that committed with the user's
// transaction), and Stripe refuses the re-fetch that would order them.
// No order can be told: neither is taken for the newer, the entry stays
// queued, unresolved, and stripe_sync.status names the object, as does a
// one-shot backfill's DrainHeld, at once (not after its whole wait, nor
// as a row held). Once Stripe answers the entry's next re-fetch, Stripe's
// state is stored and the status clears. Before, the state was handed to
// the guard, which left the stored one, and the entry was dropped: the
// event's change lost without a word.
func TestHeldSameSecondTieKeptQueued(t *testing.T) {
	v, ids := seededEnv(t, (*emulator.Emulator).SeedCustomers, 3)
	cus := ids[0]
	ctx := context.Background()
	c := v.client(t, 1000)
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c, Objects: []string{"customers"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.pool.Exec(ctx, `UPDATE stripe.customers SET _as_of = _as_of - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	tx, _ := pgtest.HoldRows(t, v.db, "customers", cus)
	if _, err := c.Post(ctx, "/v1/customers/"+cus, url.Values{"email": {"event-state@example.com"}}, ""); err != nil {
		t.Fatal(err)
	}
	convergeWithLoop(t, v, "the held customer's event to be queued", func() bool {
		return v.queryText(t, `SELECT reason FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = $1 AND held IS NOT NULL`, cus) != ""
	})
	// The holder stores another state of the event's second, and commits.
	if _, err := tx.Exec(ctx, `UPDATE stripe.customers SET email = 'same-second@example.com',
    _raw = _raw || '{"email": "same-second@example.com"}',
    _as_of = (SELECT held_as_of FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = $1)
WHERE id = $1`, cus); err != nil {
		t.Fatal(err)
	}
	refuseGets(v, func(path string) bool { return path == "/v1/customers/"+cus })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	keptUnresolved(t, v, "customers", cus)
	if got := v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, cus); got != "same-second@example.com" {
		t.Errorf("email %q: a state of the stored one's second was taken for the newer", got)
	}
	status := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`)
	if !strings.Contains(status, cus) || !strings.Contains(status, "second") {
		t.Errorf("customers last_error %q, want it to name %s and the same-second tie", status, cus)
	}
	start := time.Now()
	left, err := events.DrainHeld(ctx, events.Config{Pool: v.pool, Client: c, PollInterval: 50 * time.Millisecond}, nil, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("DrainHeld waited %s for an entry Stripe refused, which waiting can't settle", took.Round(time.Second))
	}
	if held, failed := events.SplitHeld(left); len(held) > 0 || len(failed) != 1 || failed[0].ID != cus ||
		!strings.Contains(events.FailedSummary(failed), "Stripe refused the re-fetch") {
		t.Errorf("DrainHeld left held %+v, failed %+v; want %s reported as refused by Stripe, not as held", held, failed, cus)
	}

	// Stripe answers again; the entry's next re-fetch (made due here)
	// settles it.
	v.rec.hooks(nil, nil)
	if _, err := v.pool.Exec(ctx, `UPDATE stripe_sync.events_refetch SET not_before = not_before - interval '1 day' WHERE object = 'customers' AND id = $1`, cus); err != nil {
		t.Fatal(err)
	}
	convergeWithLoop(t, v, "the unresolved customer to be re-fetched", func() bool {
		return entry(t, v, "customers", cus) == "" &&
			v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, cus) == "event-state@example.com"
	})
	if s := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`); s != "" {
		t.Errorf("customers last_error %q once the object is stored, want none", s)
	}
	v.compare(t, "customers")
}

// heldSubscription makes a subscription of 11 items (an event embeds 10),
// backfills it, and has Stripe add a 12th while a user holds the
// subscription's row: the held state left out is the event's, its items
// cut at has_more, the new item beyond them. It returns the subscription,
// the new item's price and the holding transaction.
func heldSubscription(t *testing.T, v *env) (sub, price string, tx pgx.Tx) {
	t.Helper()
	ctx := context.Background()
	post := v.poster(t)
	cus := post("/v1/customers", url.Values{"name": {"Items"}})
	prod := post("/v1/products", url.Values{"name": {"Seat"}})
	newPrice := func(amount int) string {
		return post("/v1/prices", url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(amount)}, "currency": {"usd"}, "recurring[interval]": {"month"}})
	}
	q := url.Values{"customer": {cus}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}}
	for i := range 11 {
		q.Set(fmt.Sprintf("items[%d][price]", i), newPrice(100+i))
	}
	sub = post("/v1/subscriptions", q)
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"subscriptions"}}); err != nil {
		t.Fatal(err)
	}
	if n := v.queryText(t, `SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub); n != "11" {
		t.Fatalf("%s items backfilled, want 11", n)
	}
	// Stored well before the event: no tie with its second.
	if _, err := v.pool.Exec(ctx, `UPDATE stripe.subscriptions SET _as_of = _as_of - interval '1 minute';
UPDATE stripe.subscription_items SET _as_of = _as_of - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	price = newPrice(300)
	tx, _ = pgtest.HoldRows(t, v.db, "subscriptions", sub)
	post("/v1/subscriptions/"+sub, url.Values{"items[0][price]": {price}, "proration_behavior": {"none"}})
	convergeWithLoop(t, v, "the held subscription's event to be queued", func() bool {
		return v.queryText(t, `SELECT reason FROM stripe_sync.events_refetch WHERE object = 'subscriptions' AND id = $1 AND held IS NOT NULL`, sub) != ""
	})
	var cut bool
	if err := v.pool.QueryRow(ctx, `SELECT (held->'object'->'items'->>'has_more')::boolean FROM stripe_sync.events_refetch WHERE object = 'subscriptions' AND id = $1`, sub).Scan(&cut); err != nil {
		t.Fatal(err)
	}
	if !cut {
		t.Fatal("the held state's items are not cut at has_more: the test does not exercise a cut list")
	}
	return sub, price, tx
}

// A held subscription whose re-fetch Stripe refuses for good is written
// with its held state, whose items an event cut at has_more: the rest of
// the list is paged (the key may list items), so the new item beyond the
// first page is stored too. Before, the state was written as it stood:
// the new item missing.
func TestHeldCutNestedListPaged(t *testing.T) {
	v := setup(t, emulator.Options{})
	sub, price, tx := heldSubscription(t, v)
	refuseGets(v, func(path string) bool { return path == "/v1/subscriptions/"+sub })
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	convergeWithLoop(t, v, "the refused re-fetch to leave the queue", func() bool {
		return entry(t, v, "subscriptions", sub) == ""
	})
	if n := v.queryText(t, `SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub); n != "12" {
		t.Errorf("%s items stored after the held state was written, want all 12 (the list paged)", n)
	}
	if v.queryText(t, `SELECT id FROM stripe.subscription_items WHERE subscription = $1 AND _raw->'price'->>'id' = $2`, sub, price) == "" {
		t.Errorf("the item added beyond the event's first page (price %s) is not stored", price)
	}
	v.rec.hooks(nil, nil)
	v.compare(t, "subscription_items")
}

// Stripe refuses the rest of the list too: the held state is not written
// (its list would be cut), the entry stays queued, unresolved, and
// stripe_sync.status names the subscription. Before, the state was
// written as it stood and the entry dropped.
func TestHeldCutNestedListRefusedKeptQueued(t *testing.T) {
	v := setup(t, emulator.Options{})
	sub, _, tx := heldSubscription(t, v)
	before := v.queryText(t, `SELECT _raw::text FROM stripe.subscriptions WHERE id = $1`, sub)
	refuseGets(v, func(path string) bool {
		return path == "/v1/subscriptions/"+sub || path == "/v1/subscription_items"
	})
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	keptUnresolved(t, v, "subscriptions", sub)
	if got := v.queryText(t, `SELECT _raw::text FROM stripe.subscriptions WHERE id = $1`, sub); got != before {
		t.Errorf("the held state, its items cut, was written")
	}
	if n := v.queryText(t, `SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub); n != "11" {
		t.Errorf("%s items stored, want the 11 stored before, untouched", n)
	}
	status := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'subscriptions'`)
	if !strings.Contains(status, sub) || !strings.Contains(status, "has_more") {
		t.Errorf("subscriptions last_error %q, want it to name %s and its cut list", status, sub)
	}
	// Stripe answers again and the subscription changes: the change's
	// re-fetch supersedes the unresolved entry's retry (due in minutes),
	// settles it, and clears the status.
	v.rec.hooks(nil, nil)
	c := v.client(t, 1000)
	if _, err := c.Post(context.Background(), "/v1/subscriptions/"+sub, url.Values{"metadata[k]": {"v"}}, ""); err != nil {
		t.Fatal(err)
	}
	convergeWithLoop(t, v, "the subscription's change to settle its unresolved entry", func() bool {
		return entry(t, v, "subscriptions", sub) == "" &&
			v.queryText(t, `SELECT count(*)::text FROM stripe.subscription_items WHERE subscription = $1`, sub) == "12"
	})
	if s := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'subscriptions'`); s != "" {
		t.Errorf("subscriptions last_error %q once the subscription is stored, want none", s)
	}
	v.compare(t, "subscription_items")
}

// keptUnresolved runs the events loop until the re-fetch of object id,
// which Stripe refuses, is settled, and fails t unless it was kept queued,
// unresolved.
func keptUnresolved(t *testing.T, v *env, object, id string) {
	t.Helper()
	convergeWithLoop(t, v, "the refused re-fetch to be settled", func() bool {
		r := entry(t, v, object, id)
		return r == "" || r == "unresolved"
	})
	if r := entry(t, v, object, id); r != "unresolved" {
		t.Fatalf("%s %s: queue entry %q after a refused re-fetch, want it kept, unresolved", object, id, r)
	}
}
