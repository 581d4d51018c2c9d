package events_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/events"
)

// waitUntil polls cond every 20 ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

func (v *env) queryText(t *testing.T, query string, args ...any) string {
	t.Helper()
	var s *string
	err := v.pool.QueryRow(context.Background(), query, args...).Scan(&s)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// A user's transaction left idle holding stripe rows (SELECT … FOR
// UPDATE) must not stall the events loop: the other objects' changes
// keep arriving at the loop's usual pace, the held rows converge to
// Stripe's newest state (an update and a deletion here) once the
// transaction ends, and a warning names the blocking backend once, not
// per retry, without row data.
func TestRowLockDoesNotStallSync(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	held := v.post(t, "/v1/customers", url.Values{"email": {"held-0@example.com"}})
	doomed := v.post(t, "/v1/customers", url.Values{"email": {"doomed@example.com"}})
	other := v.post(t, "/v1/customers", url.Values{"email": {"other@example.com"}})
	var logs logtest.Buffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	v.loop(t, events.Config{Logger: log})
	v.converge(t, 10*time.Second)

	tx, pid := pgtest.HoldRows(t, v.db, "customers", held, doomed)
	for i := 1; i <= 3; i++ {
		v.post(t, "/v1/customers/"+held, url.Values{"email": {fmt.Sprintf("held-%d@example.com", i)}})
	}
	if _, err := v.mut.Delete(ctx, "/v1/customers/"+doomed, nil); err != nil {
		t.Fatal(err)
	}
	v.post(t, "/v1/customers/"+other, url.Values{"name": {"changed"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"arrives"}})
	// The loop polls every 100 ms: 5 s is far more than it needs.
	waitUntil(t, 5*time.Second, "the other objects to sync while two customers are locked", func() bool {
		return v.queryText(t, `SELECT name FROM stripe.customers WHERE id = $1`, other) == "changed" &&
			v.queryText(t, `SELECT name FROM stripe.products WHERE id = $1`, prod) == "arrives"
	})
	// Still later changes keep arriving while the rows stay locked.
	v.post(t, "/v1/products/"+prod, url.Values{"name": {"again"}})
	waitUntil(t, 5*time.Second, "a later change to sync while two customers are locked", func() bool {
		return v.queryText(t, `SELECT name FROM stripe.products WHERE id = $1`, prod) == "again"
	})
	if got := v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, held); got != "held-0@example.com" {
		t.Fatalf("the locked row changed under the user's lock: email %q", got)
	}
	// Held over a few seconds: one warning names the user's backend.
	warned := func() int { return strings.Count(logs.String(), "row locked by another transaction") }
	waitUntil(t, 10*time.Second, "the warning about the locked rows", func() bool { return warned() > 0 })
	if !strings.Contains(logs.String(), fmt.Sprint(pid)) {
		t.Errorf("the warning does not name the blocking backend %d:\n%s", pid, logs.String())
	}
	// Let the re-fetcher meet the lock twice more (its entry postponed
	// again each time), so that a second warning would have had its
	// chance.
	notBefore := func() string {
		return v.queryText(t, `SELECT not_before::text FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = $1`, held)
	}
	for range 2 {
		nb := notBefore()
		waitUntil(t, 12*time.Second, "the re-fetcher to meet the lock again", func() bool { return notBefore() != nb })
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 15*time.Second)
	if got := v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, held); got != "held-3@example.com" {
		t.Errorf("locked customer's email %q after the lock, want Stripe's newest held-3@example.com", got)
	}
	if n := warned(); n != 2 { // one per locked row
		t.Errorf("%d warnings about locked rows, want one per row (2):\n%s", n, logs.String())
	}
	for _, s := range []string{"held-1@", "held-2@", "held-3@", "doomed@"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the logs show row data (%s):\n%s", s, logs.String())
		}
	}
	if strings.Contains(logs.String(), "events poll failed") {
		t.Errorf("a poll failed:\n%s", logs.String())
	}
}

// A user holding a subscription's item (not the subscription) is a lock
// the subscription's apply meets too, through the items it replaces.
func TestChildRowLockDoesNotStallSync(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	cus := v.post(t, "/v1/customers", url.Values{"email": {"a@example.com"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"p"}})
	price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"700"}, "recurring[interval]": {"month"}})
	sub := v.post(t, "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}})
	v.loop(t, events.Config{})
	v.converge(t, 10*time.Second)
	item := v.queryText(t, `SELECT id FROM stripe.subscription_items WHERE subscription = $1`, sub)
	tx, _ := pgtest.HoldRows(t, v.db, "subscription_items", item)
	v.post(t, "/v1/subscriptions/"+sub, url.Values{"metadata[k]": {"v"}})
	v.post(t, "/v1/customers/"+cus, url.Values{"name": {"changed"}})
	waitUntil(t, 5*time.Second, "the customer to sync while a subscription item is locked", func() bool {
		return v.queryText(t, `SELECT name FROM stripe.customers WHERE id = $1`, cus) == "changed"
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 15*time.Second)
	if got := v.queryText(t, `SELECT metadata->>'k' FROM stripe.subscriptions WHERE id = $1`, sub); got != "v" {
		t.Errorf("subscription metadata k = %q after the lock, want v", got)
	}
}

// A kill while a user holds a row whose event was applied (recorded as
// applied, its effect left to the re-fetch queue) loses nothing: the
// restarted loop syncs the others while the row is still held and the
// held row once it is released, though the event is never applied again.
func TestRowLockSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess kill")
	}
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	held := v.post(t, "/v1/customers", url.Values{"email": {"held-0@example.com"}})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "EVENTS_HELPER=1", "EVENTS_DB="+v.db, "EVENTS_API="+v.base)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	waitUntil(t, 10*time.Second, "the customer to sync", func() bool {
		return v.queryText(t, `SELECT email FROM stripe.customers WHERE id = $1`, held) == "held-0@example.com"
	})
	tx, _ := pgtest.HoldRows(t, v.db, "customers", held)
	v.post(t, "/v1/customers/"+held, url.Values{"email": {"held-1@example.com"}})
	// The update's event is applied (recorded, the cursor past it) with
	// the held row left to the durable re-fetch queue.
	waitUntil(t, 10*time.Second, "the held customer to be queued for re-fetch", func() bool {
		return v.queryText(t, `SELECT reason FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = $1`, held) == "locked"
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true

	stop := v.loop(t, events.Config{})
	prod := v.post(t, "/v1/products", url.Values{"name": {"arrives"}})
	waitUntil(t, 5*time.Second, "a product to sync after the restart while the customer is locked", func() bool {
		return v.queryText(t, `SELECT name FROM stripe.products WHERE id = $1`, prod) == "arrives"
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 15*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A held object's event state is queued as jsonb with its re-fetch; a
// string jsonb refuses (\u0000 in a name, which Upsert stores as U+FFFD)
// must not fail the batch's transaction: the loop would retry that batch,
// and nothing else would sync, for as long as the row stays held.
func TestHeldStateWithNULDoesNotStallSync(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	held := v.post(t, "/v1/customers", url.Values{"email": {"held@example.com"}})
	var logs logtest.Buffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	v.loop(t, events.Config{Logger: log})
	v.converge(t, 10*time.Second)

	tx, _ := pgtest.HoldRows(t, v.db, "customers", held)
	v.post(t, "/v1/customers/"+held, url.Values{"name": {"a\x00b"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"arrives"}})
	// The loop polls every 100 ms: 5 s is far more than it needs.
	waitUntil(t, 5*time.Second, "a product to sync while a customer whose new name holds NUL is locked", func() bool {
		return v.queryText(t, `SELECT name FROM stripe.products WHERE id = $1`, prod) == "arrives"
	})
	if got := v.queryText(t, `SELECT count(*)::text FROM stripe_sync.events_refetch WHERE object = 'customers' AND id = $1 AND held IS NOT NULL`, held); got != "1" {
		t.Errorf("held customer queued with its event's state: %s entries, want 1", got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Stored as Upsert stores such a string (the tables' comparison with
	// the emulator would call it stale).
	waitUntil(t, 15*time.Second, "the released customer's new name", func() bool {
		return v.queryText(t, `SELECT name FROM stripe.customers WHERE id = $1`, held) == "a\ufffdb"
	})
	if strings.Contains(logs.String(), "unsupported Unicode escape") {
		t.Errorf("a transaction failed on the held state:\n%s", logs.String())
	}
}

// A one-shot backfill waits for its held rows at most its wait, even when
// Stripe hangs (a request the client would give 80 s, then retry): it
// ends about then, saying what stays queued for serve, instead of after
// the client's minutes of retries.
func TestDrainHeldBoundedWhenStripeHangs(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewMigratedDB(t)
	if _, err := pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason) VALUES ('customers', 'cus_left', now(), 'locked')`); err != nil {
		t.Fatal(err)
	}
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	client, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_hang", BaseURL: hang.URL, RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Far longer than the wait, far shorter than the client's retries.
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	start := time.Now()
	_, err = events.DrainHeld(cctx, events.Config{Pool: pool, Client: client, PollInterval: 50 * time.Millisecond, Logger: testLogger(t)}, nil, time.Second)
	took := time.Since(start)
	if cctx.Err() != nil {
		t.Fatalf("DrainHeld with a 1 s wait ran %s, until its caller's context ended (%v)", took.Round(time.Second), err)
	}
	if err == nil || !strings.Contains(err.Error(), "cus_left") || !strings.Contains(err.Error(), "pgstripe serve") {
		t.Errorf("DrainHeld with Stripe hanging: %v, want an error naming the queued customers cus_left and that serve stores it", err)
	}
}

// A one-shot backfill's held entries, drained while Stripe fails the
// re-fetch of one whose row is free: that one is reported with Stripe's
// error, not as a row other transactions hold (with no pid, sending the
// user after a transaction that isn't there), while the one still held
// is reported as held, with its backend. Before, DrainHeld's progress
// line and its result called both held.
func TestDrainHeldTellsStripeFailuresFromHeldRows(t *testing.T) {
	for _, c := range []struct {
		name string
		// answer answers the re-fetch of the free customer.
		answer func(w http.ResponseWriter, r *http.Request)
		// progress: the first look ends well before the wait, so the
		// progress lines show (not when Stripe hangs until the end).
		progress bool
		want     string // what HeldRow.Err and FailedSummary say
		wording  string
	}{
		{"500", stripeError(500, "api_error", "outage"), true, "outage", "Stripe failed the re-fetch"},
		{"401", stripeError(401, "invalid_request_error", "key revoked"), true, "key revoked", "Stripe refused the re-fetch"},
		{"hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, false,
			"deadline exceeded", "Stripe did not answer the re-fetch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			pool, db := pgtest.NewMigratedDB(t)
			now := time.Now().UTC().Truncate(time.Second)
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"cus_held", "cus_free"} {
				if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: []byte(`{"id":"` + id + `","object":"customer","created":1700000000}`), AsOf: now.Add(-time.Minute)}}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
VALUES ('customers', 'cus_held', $1, 'locked'), ('customers', 'cus_free', $1, 'locked')`, now.Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			_, pid := pgtest.HoldRows(t, db, "customers", "cus_held")

			var fetchedHeld bool
			client, srv := eventlessStripe(t, 1, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/customers/cus_free" {
					c.answer(w, r)
					return
				}
				fetchedHeld = fetchedHeld || r.URL.Path == "/v1/customers/cus_held"
				stripeError(404, "invalid_request_error", "No such object")(w, r)
			})
			var logs logtest.Buffer
			log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
			left, err := events.DrainHeld(ctx, events.Config{Pool: pool, Client: client, PollInterval: 50 * time.Millisecond, Logger: log}, nil, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			srv.Close() // no handler runs past here
			if fetchedHeld {
				t.Error("the held customer was fetched while its row was held")
			}
			if len(left) != 2 {
				t.Fatalf("left queued: %+v, want cus_free and cus_held", left)
			}
			byID := map[string]events.HeldRow{}
			for _, r := range left {
				byID[r.ID] = r
			}
			if h := byID["cus_held"]; h.Err != nil || !slices.Contains(h.Pids, int32(pid)) {
				t.Errorf("cus_held: %+v, want held (no error) by backend %d", h, pid)
			}
			f := byID["cus_free"]
			if f.Err == nil || !strings.Contains(f.Err.Error(), c.want) || len(f.Pids) > 0 {
				t.Errorf("cus_free: %+v, want Stripe's error %q and no backend", f, c.want)
			}
			held, failed := events.SplitHeld(left)
			if len(held) != 1 || len(failed) != 1 {
				t.Fatalf("split: held %+v, failed %+v", held, failed)
			}
			if s := events.FailedSummary(failed); !strings.HasPrefix(s, c.wording+" of 1 object(s) (customers=1): customers cus_free") || !strings.Contains(s, c.want) {
				t.Errorf("FailedSummary: %q, want %q … %q", s, c.wording, c.want)
			}
			if !c.progress {
				return
			}
			var heldLine, stripeLine string
			for _, l := range strings.Split(logs.String(), "\n") {
				switch {
				case heldLine == "" && strings.Contains(l, "rows held by other transactions; waiting"):
					heldLine = l
				case stripeLine == "" && strings.Contains(l, c.wording+" of objects left by rows other transactions held"):
					stripeLine = l
				}
			}
			if !strings.Contains(heldLine, "objects=1 ") {
				t.Errorf("progress line for held rows %q, want it to count only the held customer", heldLine)
			}
			if !strings.Contains(stripeLine, "objects=1 ") || !strings.Contains(stripeLine, c.want) {
				t.Errorf("progress line for Stripe's failures %q, want one object and %q", stripeLine, c.want)
			}
		})
	}
}

// eventlessStripe is a Stripe that lists no events and answers every
// other request with answer, and a client of it (key sk_test_drain,
// maxRetries) for DrainHeld.
func eventlessStripe(t *testing.T, maxRetries int, answer http.HandlerFunc) (*stripeapi.Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/events" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"object":"list","data":[],"has_more":false,"url":"/v1/events"}`))
			return
		}
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	client, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_drain", BaseURL: srv.URL, RateLimit: 1000, MaxRetries: maxRetries})
	if err != nil {
		t.Fatal(err)
	}
	return client, srv
}

// stripeError answers as Stripe does with an error of status.
func stripeError(status int, typ, msg string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(`{"error":{"type":"` + typ + `","message":"` + msg + `"}}`))
	}
}
