package events_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
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
	g := &retrievalGate{}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	w := workload.New(v.mut, 71)
	w.Do(ctx, "createCustomer")
	cus := w.Pick("customers")
	g.failAll(refusal403)
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

	g.failAll(gateError{})
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
	g := &retrievalGate{table: "invoiceitems"}
	g.failAll(refusal403)
	v := setupWrapped(t, emulator.Options{}, g.wrap)
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
		if got := g.count(); got != round {
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
	g := &retrievalGate{}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
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
	g.fail(refusal403, x)
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

// retrievalGate stands between the emulator and the sync (key
// sk_test_events): it records the sync's retrievals of single objects of
// one table, answers them with Stripe's errors when told, and in an
// outage answers every request of the sync with a 500.
type retrievalGate struct {
	table string // whose retrievals (GET /v1/{table}/{id}) it gates: customers when empty
	// latency delays each retrieval, as Stripe's does: long enough for a
	// drain's other fetches to start meanwhile.
	latency time.Duration
	// answering, when set, is told of each retrieval and the status it
	// gets, before it is answered.
	answering func(id string, status int)

	outage atomic.Bool // every request of the sync: 500

	mu          sync.Mutex
	all         gateError            // every retrieval, when set
	ids         map[string]gateError // the retrievals of these ids
	gets        []retrieval
	inFlight    int
	maxInFlight int // during an outage
}

// gateError is Stripe's answer to a request it fails or refuses; the zero
// gateError lets the request through.
type gateError struct {
	status  int
	message string
}

var (
	outage500  = gateError{http.StatusInternalServerError, "outage"}
	refusal403 = gateError{http.StatusForbidden, restrictedKeyRefusal}
)

type retrieval struct {
	id     string
	status int
	at     time.Time // when answered
}

// failAll answers every retrieval with e (the zero gateError: none).
func (g *retrievalGate) failAll(e gateError) {
	g.mu.Lock()
	g.all = e
	g.mu.Unlock()
}

// fail answers the retrievals of ids with e.
func (g *retrievalGate) fail(e gateError, ids ...string) {
	g.mu.Lock()
	if g.ids == nil {
		g.ids = map[string]gateError{}
	}
	for _, id := range ids {
		g.ids[id] = e
	}
	g.mu.Unlock()
}

func (g *retrievalGate) wrap(h http.Handler) http.Handler {
	prefix := "/v1/customers/"
	if g.table != "" {
		prefix = "/v1/" + g.table + "/"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.Header.Get("Authorization"), "sk_test_events") {
			h.ServeHTTP(w, r)
			return
		}
		id, single := strings.CutPrefix(r.URL.Path, prefix)
		single = single && r.Method == http.MethodGet && id != "" && !strings.Contains(id, "/")
		if !single {
			if g.outage.Load() {
				outage500.write(w)
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		g.mu.Lock()
		g.inFlight++
		if g.outage.Load() {
			g.maxInFlight = max(g.maxInFlight, g.inFlight)
		}
		g.mu.Unlock()
		time.Sleep(g.latency)
		g.mu.Lock()
		answer := g.all
		if e, ok := g.ids[id]; ok && answer.status == 0 {
			answer = e
		}
		g.mu.Unlock()
		if g.outage.Load() {
			answer = outage500
		}
		status := cmp.Or(answer.status, http.StatusOK)
		if g.answering != nil {
			g.answering(id, status)
		}
		if answer.status != 0 {
			answer.write(w)
		} else {
			h.ServeHTTP(w, r)
		}
		g.mu.Lock()
		g.inFlight--
		g.gets = append(g.gets, retrieval{id: id, status: status, at: time.Now()})
		g.mu.Unlock()
	})
}

func (e gateError) write(w http.ResponseWriter) {
	typ := "invalid_request_error"
	if e.status >= 500 {
		typ = "api_error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `{"error":{"type":%q,"message":%q}}`, typ, e.message)
}

// since are the retrievals answered from the n-th on, and how many there are in all.
func (g *retrievalGate) since(n int) ([]retrieval, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]retrieval(nil), g.gets[min(n, len(g.gets)):]...), len(g.gets)
}

// count is how many retrievals were answered.
func (g *retrievalGate) count() int {
	_, n := g.since(0)
	return n
}

// newCustomers creates n customers in Stripe, then the events cursor.
func (v *env) newCustomers(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = v.post(t, "/v1/customers", url.Values{"email": {fmt.Sprintf("gate%d@example.com", i)}})
	}
	if _, _, err := events.EnsureCursor(context.Background(), v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	return ids
}

// queueCustomers queues the re-fetch of ids (reason owner), due long ago,
// the first of them first.
func (v *env) queueCustomers(t *testing.T, ids []string) {
	t.Helper()
	if _, err := v.pool.Exec(context.Background(), `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT 'customers', id, now() - interval '1 hour' + i * interval '1 second', 'owner' FROM unnest($1::text[]) WITH ORDINALITY AS x(id, i)`, ids); err != nil {
		t.Fatal(err)
	}
}

func (v *env) queuedCustomers(t *testing.T, cond string) int {
	t.Helper()
	var n int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe_sync.events_refetch WHERE object = 'customers' AND `+cond).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// okSpan is the time from the first to the last of gets, all answered 200,
// which must be want.
func okSpan(t *testing.T, gets []retrieval, want int) time.Duration {
	t.Helper()
	ok := 0
	for _, g := range gets {
		if g.status == http.StatusOK {
			ok++
		}
	}
	if ok != want || len(gets) == 0 {
		t.Fatalf("%d retrievals of customers answered, %d of them with the object; want %d", len(gets), ok, want)
	}
	return gets[len(gets)-1].at.Sub(gets[0].at)
}

// A restarted process knows of no table that Stripe answers: its first
// re-fetch of a table is one object (a probe), so that a key that can't
// read the table costs one request, not a batch. Once the probe is
// answered, the table's other due objects are fetched in the same drain.
// Before, they waited for the next drain (a poll interval), or more
// for a table with more than a batch due.
func TestReadableTableFetchedInFirstDrain(t *testing.T) {
	g := &retrievalGate{latency: 20 * time.Millisecond}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	const n, poll = 30, 2 * time.Second
	ids := v.newCustomers(t, n)
	v.queueCustomers(t, ids)
	stop := v.loop(t, events.Config{PollInterval: poll})
	waitUntil(t, 20*time.Second, "every queued customer to be re-fetched", func() bool { return v.queuedCustomers(t, "true") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	gets, _ := g.since(0)
	if span := okSpan(t, gets, n); span >= poll/2 {
		t.Errorf("the %d re-fetches of a readable table took %s from the probe to the last: more than one drain (poll interval %s)", n, span.Round(time.Millisecond), poll)
	}
}

// A Stripe outage (500 to everything) while customers are queued and the
// table is not yet known readable: each drain spends one request on the
// table (the client's retries aside), never a batch's worth at once. Once
// Stripe answers again, every queued customer is fetched in the drain
// whose probe it answers. Measured before: the probe's drain, then the
// rest at the next one (a poll interval more per 100 objects).
func TestRefetchesSettleInOneDrainAfterOutage(t *testing.T) {
	g := &retrievalGate{latency: 20 * time.Millisecond}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	const n, poll = 30, 2 * time.Second
	ids := v.newCustomers(t, n)
	stop := v.loop(t, events.Config{PollInterval: poll})
	// A poll answered: the loop knows Stripe's clock, by which entries
	// come due.
	waitUntil(t, 10*time.Second, "the first poll", func() bool {
		return v.queryText(t, `SELECT max(_synced_at)::text FROM stripe.customers`) != ""
	})
	g.outage.Store(true)
	v.queueCustomers(t, ids)
	waitUntil(t, 20*time.Second, "two drains' probes to fail", func() bool {
		gets, _ := g.since(0)
		return len(gets) > 4 // the client's attempts of one probe: 1 + MaxRetries 3
	})
	_, mark := g.since(0)
	g.outage.Store(false)
	waitUntil(t, 20*time.Second, "every queued customer to be re-fetched", func() bool { return v.queuedCustomers(t, "true") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	most := g.maxInFlight
	g.mu.Unlock()
	if most != 1 {
		t.Errorf("%d retrievals of customers at once during the outage, want 1 (one probe of the table per drain)", most)
	}
	gets, _ := g.since(mark)
	for len(gets) > 0 && gets[0].status != http.StatusOK {
		gets = gets[1:] // a probe's attempts from before the end of the outage
	}
	if span := okSpan(t, gets, n); span >= poll/2 {
		t.Errorf("after the outage, the %d re-fetches took %s from the first answered to the last: more than one drain (poll interval %s)", n, span.Round(time.Millisecond), poll)
	}
}

// One customer whose retrieval Stripe keeps failing (500), due first, on
// a table not yet known readable: the next drain probes another, whose
// answer lets the table's other objects be fetched; the failing one stays
// queued, retried. Before, it was the table's probe at every drain, and
// no other customer was ever re-fetched.
func TestFailingObjectDoesNotStarveItsTable(t *testing.T) {
	g := &retrievalGate{latency: 20 * time.Millisecond}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	ids := v.newCustomers(t, 10)
	g.fail(outage500, ids[0])
	v.queueCustomers(t, ids)
	stop := v.loop(t, events.Config{PollInterval: 300 * time.Millisecond})
	waitUntil(t, 30*time.Second, "the other customers to be re-fetched", func() bool {
		return v.queuedCustomers(t, "id <> '"+ids[0]+"'") == 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := v.queuedCustomers(t, "id = '"+ids[0]+"' AND reason = 'owner'"); n != 1 {
		t.Errorf("the customer Stripe fails is queued %d times with its reason, want once: kept for a retry", n)
	}
}

// A key that loses the read permission of a table while running (Stripe
// answered the table's re-fetches, then answers 403): the table's queued
// objects cost the requests in flight when the first refusal came, not
// one each, and once their 10 minutes are over, one probe in all. They
// all stay queued, the status counts them, and once the permission is
// back every one is stored and the status clears. Before, the table was
// taken for readable for good: each object was fetched and refused on
// its own, every 10 minutes.
func TestTableRefusedMidRunProbedOnce(t *testing.T) {
	g := &retrievalGate{latency: 20 * time.Millisecond}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	const n, inFlight = 25, 8 // refetchParallel
	ids := v.newCustomers(t, n+5)
	stop := v.loop(t, events.Config{})
	defer stop()
	v.queueCustomers(t, ids[:5])
	waitUntil(t, 15*time.Second, "the readable table's customers to be re-fetched", func() bool { return v.queuedCustomers(t, "true") == 0 })

	g.failAll(refusal403)
	_, mark := g.since(0)
	v.queueCustomers(t, ids[5:])
	waitUntil(t, 20*time.Second, "every refused customer to be kept queued, unresolved, for 10 minutes", func() bool {
		return v.queuedCustomers(t, "reason = 'unresolved' AND not_before > now() + interval '9 minutes'") == n
	})
	gets, all := g.since(mark)
	if len(gets) > inFlight {
		t.Errorf("%d retrievals of %d customers after the key lost the permission, want at most the %d in flight when the first was refused", len(gets), n, inFlight)
	}
	status := v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`)
	for _, want := range []string{fmt.Sprintf("and %d more", n-1), "grant the key", "rak_customer_read"} {
		if !strings.Contains(status, want) {
			t.Errorf("customers last_error %q does not say %q", status, want)
		}
	}

	// 10 minutes later (Stripe's clock), all due again: one probe.
	v.e.SetClockOffset(11 * time.Minute)
	waitUntil(t, 20*time.Second, "every refused customer to be kept queued for 10 more minutes", func() bool {
		return v.queuedCustomers(t, "reason = 'unresolved' AND not_before > now() + interval '20 minutes'") == n
	})
	if gets, _ := g.since(all); len(gets) != 1 {
		t.Errorf("%d retrievals of a table the key can't read when its %d objects came due again, want 1", len(gets), n)
	}

	// The permission granted: nothing was lost.
	g.failAll(gateError{})
	v.e.SetClockOffset(22 * time.Minute)
	waitUntil(t, 20*time.Second, "every customer to be re-fetched once the key may read them", func() bool { return v.queuedCustomers(t, "true") == 0 })
	waitUntil(t, 10*time.Second, "the status to clear", func() bool {
		return v.queryText(t, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`) == ""
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// One customer Stripe refuses (403) on a table it answers otherwise, due
// again alone (its 10 minutes over): its refusal says no more of the
// table than the first one did, so the table is not closed, and the next
// customer queued is fetched. Closing it at the second refusal of the
// same object would leave every customer queued in the next 10 minutes
// unresolved.
func TestRefusedObjectAloneDoesNotCloseItsTable(t *testing.T) {
	g := &retrievalGate{}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	ids := v.newCustomers(t, 3)
	x := ids[0]
	stop := v.loop(t, events.Config{})
	defer stop()
	v.queueCustomers(t, ids[1:2])
	waitUntil(t, 15*time.Second, "a readable customer to be re-fetched", func() bool { return v.queuedCustomers(t, "true") == 0 })

	g.fail(refusal403, x)
	v.queueCustomers(t, []string{x})
	waitUntil(t, 15*time.Second, "the refused customer to be kept queued, unresolved", func() bool {
		return v.queuedCustomers(t, "reason = 'unresolved' AND not_before > now() + interval '9 minutes'") == 1
	})
	v.e.SetClockOffset(11 * time.Minute)
	waitUntil(t, 15*time.Second, "the refused customer to be tried again alone, and refused", func() bool {
		return v.queuedCustomers(t, "reason = 'unresolved' AND not_before > now() + interval '20 minutes'") == 1
	})

	v.queueCustomers(t, ids[2:])
	waitUntil(t, 15*time.Second, "the new customer's re-fetch to be settled", func() bool {
		return v.queuedCustomers(t, "id = '"+ids[2]+"' AND reason = 'owner'") == 0
	})
	if n := v.queuedCustomers(t, "id = '"+ids[2]+"'"); n != 0 {
		t.Errorf("a readable customer kept queued, unresolved, after another one alone was refused twice: the table was closed")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A key Stripe stops accepting (401: rolled, or revoked) while more than
// a batch of re-fetches is due: the re-fetcher may try the table once
// per poll interval, never in a loop without pause. Before, a drain that
// read a full batch started the next one at once, whatever it had
// settled: 150 entries left due by the failed probe (a 401 is not
// retried) made the re-fetcher read the queue, lock rows and ask Stripe
// back to back, hundreds of times a second, each with its warning.
func TestUnansweredFullBatchWaitsAPollInterval(t *testing.T) {
	g := &retrievalGate{}
	g.failAll(gateError{http.StatusUnauthorized, "Invalid API Key provided: sk_test_***ents"})
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	ids := make([]string, 150)
	for i := range ids {
		ids[i] = fmt.Sprintf("cus_gate%03d", i)
	}
	if _, _, err := events.EnsureCursor(context.Background(), v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.queueCustomers(t, ids)
	const poll, window = 500 * time.Millisecond, 2 * time.Second
	stop := v.loop(t, events.Config{PollInterval: poll})
	waitUntil(t, 20*time.Second, "the first re-fetch", func() bool { return g.count() > 0 })
	start := g.count()
	// A rate: only time tells it. A slower machine makes fewer requests.
	time.Sleep(window)
	got := g.count() - start
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if most := int(window/poll) + 2; got > most {
		t.Errorf("%d retrievals of customers in %s with every one refused 401 (poll interval %s), want at most %d: the re-fetcher loops without pause", got, window, poll, most)
	}
	if n := v.queuedCustomers(t, "reason = 'owner'"); n != len(ids) {
		t.Errorf("%d of %d entries still queued as they were, want all (Stripe answered none)", n, len(ids))
	}
}

// Two customers Stripe keeps failing (500), due first, on a table not
// known readable: the probes must move on to the others, not alternate
// between the two failing ones forever. Before, the probe was "another
// one than the last", which with two failing objects is always the other
// failing one: the table's other objects were never re-fetched.
func TestTwoFailingObjectsDoNotStarveTheirTable(t *testing.T) {
	g := &retrievalGate{}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	ids := v.newCustomers(t, 6)
	g.fail(outage500, ids[0], ids[1])
	v.queueCustomers(t, ids)
	stop := v.loop(t, events.Config{PollInterval: 300 * time.Millisecond})
	waitUntil(t, 45*time.Second, "the readable customers to be re-fetched", func() bool {
		return v.queuedCustomers(t, fmt.Sprintf("id NOT IN ('%s', '%s')", ids[0], ids[1])) == 0
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := v.queuedCustomers(t, "reason = 'owner'"); n != 2 {
		t.Errorf("%d customers queued with their reason, want the 2 Stripe fails, kept for a retry", n)
	}
}

// A one-shot backfill's held entries whose rows are released while
// Stripe fails their table (500): DrainHeld probes the table once per
// drain and leaves the others for the next one. At the end, none of them
// may be reported as a row another transaction holds: their rows are
// free, and the user would look for a transaction that isn't there.
// Before, an object found held at an earlier look and not tried since
// (its table's probe failed) was reported as held.
func TestDrainHeldObjectsLeftByAFailedProbeAreNotHeld(t *testing.T) {
	ctx := context.Background()
	pool, db := pgtest.NewMigratedDB(t)
	queued := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	ids := make([]string, 10)
	objs := make([]store.Object, len(ids))
	for i := range ids {
		ids[i] = fmt.Sprintf("cus_gate%02d", i)
		objs[i] = store.Object{Raw: []byte(`{"id":"` + ids[i] + `","object":"customer","created":1700000000}`), AsOf: queued}
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := store.Upsert(ctx, tx, "customers", objs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT 'customers', id, $2::timestamptz + i * interval '1 second', 'locked' FROM unnest($1::text[]) WITH ORDINALITY AS x(id, i)`, ids, queued); err != nil {
		t.Fatal(err)
	}
	tx, _ := pgtest.HoldRows(t, db, "customers", ids...)
	client, _ := eventlessStripe(t, 3, stripeError(500, "api_error", "outage"))
	type result struct {
		left []events.HeldRow
		err  error
	}
	done := make(chan result, 1)
	go func() {
		left, err := events.DrainHeld(ctx, events.Config{Pool: pool, Client: client, PollInterval: 50 * time.Millisecond, Logger: testLogger(t)}, nil, 5*time.Second)
		done <- result{left, err}
	}()
	waitUntil(t, 10*time.Second, "DrainHeld to find every row held", func() bool {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch WHERE not_before > $1::timestamptz + interval '1 minute'`, queued).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == len(ids)
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.left) != len(ids) {
		t.Fatalf("%d objects left queued, want all %d (Stripe answered none)", len(res.left), len(ids))
	}
	held, failed := events.SplitHeld(res.left)
	if len(held) > 0 {
		t.Errorf("%d of %d objects reported held by another transaction (%s), though every row was free: Stripe failed their table's probe", len(held), len(ids), events.HeldSummary(held))
	}
	for _, r := range failed {
		if len(r.Pids) > 0 {
			t.Errorf("%s reported with backends %v", r.ID, r.Pids)
		}
	}
}

// A Stripe outage (500) on a table the sync has read before: the fetches
// in flight when it began fail, and then one probe per drain tries the
// table, as for a table not known readable, not every due object with
// the client's retries at every drain. Before, a 5xx left the table
// readable: 30 queued customers cost 30 fetches (each 1 + MaxRetries
// attempts), 8 at once, at every drain for the whole outage.
func TestOutageOnReadableTableProbedOncePerDrain(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	const (
		wave     = 8 // refetchParallel
		attempts = 4 // per fetch: 1 + the client's MaxRetries
	)
	// At each attempt in the outage, the customers whose re-fetch is
	// under way (tried, its attempts not all spent): the fetches at once.
	var (
		mu       sync.Mutex
		tries    = map[string]int{}
		spent    int // customers whose attempts are all spent
		maxAfter int // most fetches at once once the first wave is spent
	)
	spentCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return spent
	}
	g := &retrievalGate{answering: func(id string, status int) {
		if status != http.StatusInternalServerError {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		tries[id]++
		if tries[id] == attempts {
			spent++
		}
		open := 0
		for _, n := range tries {
			if n < attempts {
				open++
			}
		}
		if spent >= wave && tries[id] == 1 {
			maxAfter = max(maxAfter, open)
		}
	}}
	v := setupWrapped(t, emulator.Options{}, g.wrap)
	ids := v.newCustomers(t, 31)
	stop := v.loop(t, events.Config{PollInterval: 300 * time.Millisecond})
	v.queueCustomers(t, ids[:1])
	waitUntil(t, 15*time.Second, "a customer re-fetched: the table is known readable", func() bool { return v.queuedCustomers(t, "true") == 0 })
	g.failAll(outage500)
	v.queueCustomers(t, ids[1:])
	waitUntil(t, 60*time.Second, "the first wave and 3 more fetches to fail", func() bool { return spentCount() >= wave+3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	most := maxAfter
	mu.Unlock()
	if most > 1 {
		t.Errorf("%d re-fetches of customers at once after the first %d failed in an outage, want 1 (the table's probe)", most, wave)
	}
	if n := v.queuedCustomers(t, "reason = 'owner'"); n != len(ids)-1 {
		t.Errorf("%d of %d customers still queued with their reason, want all", n, len(ids)-1)
	}
}
