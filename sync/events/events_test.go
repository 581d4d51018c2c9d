package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	dto "github.com/prometheus/client_model/go"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/metrics"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/verify"
)

func TestMain(m *testing.M) {
	if os.Getenv("EVENTS_HELPER") == "1" {
		os.Exit(helperProcess())
	}
	pgtest.Main(m)
}

type env struct {
	e *emulator.Emulator
	// failing makes every request of the sync's client answer 500 (a
	// Stripe outage that the workload's client doesn't see).
	failing atomic.Bool
	base    string
	db      string
	pool    *pgxpool.Pool
	client  *stripeapi.Client // the sync's
	mut     *stripeapi.Client // the workload's (own limiter)
}

func setup(t *testing.T, opts emulator.Options) *env {
	t.Helper()
	if opts.RateLimit == 0 {
		opts.RateLimit = -1
	}
	e, err := emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	v := &env{e: e}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v.failing.Load() && strings.HasSuffix(r.Header.Get("Authorization"), "sk_test_events") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":{"type":"api_error","message":"outage"}}`))
			return
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	db := pgtest.NewDB(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	v.base, v.db, v.pool = srv.URL, db, pool
	v.client = v.newClient(t, "sk_test_events", 500)
	v.mut = v.newClient(t, "sk_test_workload", 5000)
	return v
}

func (v *env) newClient(t *testing.T, key string, rate float64) *stripeapi.Client {
	t.Helper()
	c, err := stripeapi.New(stripeapi.Config{APIKey: key, BaseURL: v.base, RateLimit: rate, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// loop runs events.Run until the returned stop is called; stop returns
// Run's error (nil when it ended by the cancel).
func (v *env) loop(t *testing.T, cfg events.Config) (stop func() error) {
	t.Helper()
	cfg.Pool, cfg.Client = v.pool, v.client
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.LookBack == 0 {
		cfg.LookBack = 5 * time.Second
		cfg.SweepEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- events.Run(ctx, cfg) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
			if errors.Is(err, context.Canceled) {
				err = nil
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// converge waits until every table equals the emulator's objects.
func (v *env) converge(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	var d verify.Diff
	var err error
	for end := time.Now().Add(timeout); ; {
		d, err = verify.Compare(ctx, v.pool, v.e)
		if err != nil {
			t.Fatal(err)
		}
		if d.Total() == 0 {
			return
		}
		if os.Getenv("EVENTS_DEBUG") != "" {
			var q int
			v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch`).Scan(&q)
			t.Logf("diff %v, refetch queue %d", d.ByTable, q)
		}
		if time.Now().After(end) {
			explainMissing(t, v, d.Details)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("tables differ from the emulator after %s: %d missing, %d extra, %d stale %v:\n%s",
		timeout, d.Missing, d.Extra, d.Stale, d.ByTable, strings.Join(d.Details, "\n"))
}

func (v *env) rows(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := v.pool.QueryRow(context.Background(), "SELECT count(*) FROM stripe."+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHandoffAndSameSecondUpdates(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	w := newWorkload(v.mut, 1)
	for range 3 {
		w.do(ctx, "createCustomer")
	}
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	// Changes after the cursor and before the loop starts: a backfill
	// would have seen some of them; the loop must replay all.
	cus := w.pick("customers")
	// Start at the top of a second, so the burst can't straddle two.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	for i := range 4 { // same second, different states: only a re-fetch orders them
		w.post(ctx, "/v1/customers/"+cus, url.Values{"metadata[n]": {fmt.Sprint(i)}})
	}
	w.do(ctx, "createProduct")
	before := v.e.Stats().ByRoute["GET /v1/customers/{customer}"]
	stop := v.loop(t, events.Config{})
	v.converge(t, 10*time.Second)
	// The re-fetch waits for Stripe's clock to pass the second.
	var queued int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch WHERE object <> 'upcoming_invoices'`).Scan(&queued)
		if queued == 0 {
			break
		}
	}
	if queued != 0 {
		t.Errorf("re-fetch queue not drained: %d", queued)
	}
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if v.rows(t, "customers") != 3 || v.rows(t, "products") != 1 {
		t.Errorf("rows: %d customers, %d products", v.rows(t, "customers"), v.rows(t, "products"))
	}
	if got := v.e.Stats().ByRoute["GET /v1/customers/{customer}"] - before; got < 1 {
		t.Errorf("same-second states of %s were not re-fetched (retrieves: %d)", cus, got)
	}
	var status struct {
		phase string
		last  *time.Time
		lag   *float64
	}
	if err := v.pool.QueryRow(ctx, `SELECT phase, last_event_at, lag_seconds FROM stripe_sync.status WHERE object = 'customers'`).
		Scan(&status.phase, &status.last, &status.lag); err != nil {
		t.Fatal(err)
	}
	if status.phase != "live" || status.last == nil || status.lag == nil || *status.lag < 0 || *status.lag > 5 {
		t.Errorf("status of customers: phase %s, last_event_at %v, lag %v", status.phase, status.last, status.lag)
	}
}

// TestRandomWorkload: random creates, updates and deletes across object
// types, same-second bursts and delayed event visibility, while a backfill
// runs and then while the loop runs; every table must end equal to the
// emulator.
func TestRandomWorkload(t *testing.T) {
	v := setup(t, emulator.Options{EventDelay: 700 * time.Millisecond})
	ctx := context.Background()
	w := newWorkload(v.mut, 42)
	for range 15 {
		w.do(ctx, "createCustomer")
		w.do(ctx, "createProduct")
	}
	for range 10 {
		w.do(ctx, "createPrice")
	}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(wctx, uint64(i))
		}()
	}
	// The backfill runs while the workload changes things: the handoff.
	began := time.Now()
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 8}); err != nil {
		t.Fatal(err)
	}
	t.Logf("backfill took %s", time.Since(began).Round(time.Millisecond))
	stop := v.loop(t, events.Config{BalanceEvery: 500 * time.Millisecond})
	time.Sleep(5 * time.Second)
	stopWork()
	wg.Wait()
	t.Logf("workload: %s", w.summary())
	if w.ok() < 150 {
		t.Fatalf("workload too small to mean anything: %s", w.summary())
	}
	began = time.Now()
	v.converge(t, 20*time.Second)
	t.Logf("converged %s after the workload stopped", time.Since(began).Round(time.Millisecond))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var tomb int
	v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.tombstones`).Scan(&tomb)
	if w.count("delete") > 0 && tomb == 0 {
		t.Errorf("deletes happened but no tombstones were recorded")
	}
	v.checkUpcoming(t)
}

// checkUpcoming compares upcoming_invoices with Stripe's answer for every
// customer: a row exactly when an invoice is upcoming, equal to it.
func (v *env) checkUpcoming(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	got := map[string]string{}
	rows, err := v.pool.Query(ctx, `SELECT customer, _raw::text FROM stripe.upcoming_invoices`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c, raw string
		rows.Scan(&c, &raw)
		got[c] = raw
	}
	rows.Close()
	want := 0
	for cus := range v.e.Objects("customers") {
		resp, err := v.mut.Get(ctx, "/v1/invoices/upcoming", url.Values{"customer": {cus}})
		raw, have := got[cus]
		switch {
		case stripeapi.IsNotFound(err):
			if have {
				t.Errorf("upcoming invoice of %s: stored, but none is upcoming", cus)
			}
		case err != nil:
			t.Fatal(err)
		case !have:
			t.Errorf("upcoming invoice of %s: missing", cus)
		default:
			want++
			if !verify.SameJSON([]byte(raw), resp.Body) {
				t.Errorf("upcoming invoice of %s differs:\n got  %s\n want %s", cus, raw, resp.Body)
			}
		}
	}
	t.Logf("%d upcoming invoices checked", want)
}

func TestCursorExpiredWithoutBackfill(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.e.SetClockOffset(31 * 24 * time.Hour)
	err := events.Run(ctx, events.Config{Pool: v.pool, Client: v.client, Logger: testLogger(t)})
	if !errors.Is(err, events.ErrCursorExpired) {
		t.Fatalf("Run = %v, want ErrCursorExpired", err)
	}
	var n int
	v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'events_cursor_expired'`).Scan(&n)
	if n != 1 {
		t.Errorf("cursor expiry logged %d times, want 1", n)
	}
}

func TestFencedByEpoch(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.leader (epoch, instance, host, pid, since) VALUES (7, 'other', 'h', 1, now())`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- events.Run(ctx, events.Config{Pool: v.pool, Client: v.client, Epoch: 6, Logger: testLogger(t)})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, leader.ErrDeposed) {
			t.Fatalf("Run with a stale epoch = %v, want leader.ErrDeposed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a deposed loop kept running")
	}
	// The current epoch applies.
	w := newWorkload(v.mut, 3)
	w.do(ctx, "createCustomer")
	stop := v.loop(t, events.Config{Epoch: 7})
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestStripeOutage: polls that fail show in stripe_sync.status, the loop
// keeps going, and catches up when Stripe is back.
func TestStripeOutage(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	applied := counterValue(t, "customer.created")
	v.failing.Store(true)
	stop := v.loop(t, events.Config{})
	w := newWorkload(v.mut, 5)
	w.do(ctx, "createCustomer") // during the outage
	if w.ok() != 1 {
		t.Fatalf("workload: %s", w.summary())
	}
	var lastErr *string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		v.pool.QueryRow(ctx, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`).Scan(&lastErr)
		if lastErr != nil {
			break
		}
	}
	if lastErr == nil || !strings.Contains(*lastErr, "outage") {
		t.Fatalf("status last_error during the outage = %v", lastErr)
	}
	v.failing.Store(false)
	v.converge(t, 15*time.Second)
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		v.pool.QueryRow(ctx, `SELECT last_error FROM stripe_sync.status WHERE object = 'customers'`).Scan(&lastErr)
		if lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Errorf("last_error not cleared after the outage: %s", *lastErr)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, "customer.created") - applied; got != 1 {
		t.Errorf("pgstripe_events_applied_total{type=customer.created} grew by %v, want 1", got)
	}
}

func TestNoCursor(t *testing.T) {
	v := setup(t, emulator.Options{})
	err := events.Run(context.Background(), events.Config{Pool: v.pool, Client: v.client})
	if !errors.Is(err, events.ErrNoCursor) {
		t.Fatalf("Run without a cursor = %v, want ErrNoCursor", err)
	}
	if err := events.Run(context.Background(), events.Config{Client: v.client}); err == nil || !strings.Contains(err.Error(), "Pool") {
		t.Fatalf("Run without a pool = %v", err)
	}
}

// TestRebackfillAfterRetention: pgstripe is down for 31 days; objects were
// created, changed and deleted meanwhile and their events are gone. The
// loop re-backfills and the tables end exact.
func TestRebackfillAfterRetention(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	w := newWorkload(v.mut, 7)
	for range 6 {
		w.do(ctx, "createCustomer")
		w.do(ctx, "createProduct")
	}
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{})
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Down: changes the loop never sees as events.
	gone := w.pick("customers")
	w.delete(ctx, "customers", gone)
	w.do(ctx, "updateProduct")
	w.do(ctx, "createCustomer")
	v.e.SetClockOffset(31 * 24 * time.Hour)
	w.do(ctx, "createCustomer")
	w.do(ctx, "updateCustomer")

	var calls int
	stop = v.loop(t, events.Config{Backfill: func(ctx context.Context, since time.Time) error {
		calls++
		return backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4, RestartCompletedBefore: since})
	}})
	v.converge(t, 20*time.Second)
	// Changes after the re-backfill still flow.
	w.do(ctx, "updateCustomer")
	w.do(ctx, "createProduct")
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("Backfill called %d times, want 1", calls)
	}
	kinds := map[string]int{}
	rows, _ := v.pool.Query(ctx, `SELECT kind FROM stripe_sync.log WHERE kind LIKE 'rebackfill%'`)
	for rows.Next() {
		var k string
		rows.Scan(&k)
		kinds[k]++
	}
	rows.Close()
	if kinds["rebackfill_started"] != 1 || kinds["rebackfill_complete"] != 1 {
		t.Errorf("log: %v, want one rebackfill_started and one rebackfill_complete", kinds)
	}
	var tomb bool
	v.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE object = 'customers' AND id = $1)`, gone).Scan(&tomb)
	if !tomb {
		t.Errorf("customer %s deleted during the outage was not tombstoned", gone)
	}
}

// workload issues random mutations through the API, remembering ids.
type workload struct {
	c    *stripeapi.Client
	mu   sync.Mutex
	rng  *rand.Rand
	ids  map[string][]string // live ids by table
	subs map[string]string   // subscription → customer
	// recurring prices (for subscriptions)
	recurring []string
	okN       map[string]int
	failN     map[string]int
	failMsg   map[string]string
}

func newWorkload(c *stripeapi.Client, seed uint64) *workload {
	return &workload{c: c, rng: rand.New(rand.NewPCG(seed, seed)), ids: map[string][]string{}, subs: map[string]string{},
		okN: map[string]int{}, failN: map[string]int{}, failMsg: map[string]string{}}
}

func (w *workload) pick(table string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.ids[table]
	if len(ids) == 0 {
		return ""
	}
	return ids[w.rng.IntN(len(ids))]
}

func (w *workload) add(table, id string) {
	w.mu.Lock()
	w.ids[table] = append(w.ids[table], id)
	w.mu.Unlock()
}

func (w *workload) remove(table, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.ids[table]
	for i, x := range ids {
		if x == id {
			w.ids[table] = append(ids[:i:i], ids[i+1:]...)
			return
		}
	}
}

func (w *workload) post(ctx context.Context, path string, q url.Values) (string, error) {
	resp, err := w.c.Post(stripeapi.WithPriority(ctx, stripeapi.Interactive), path, q, "")
	if err != nil {
		return "", err
	}
	return stripeapi.ObjectID(resp.Body)
}

func (w *workload) delete(ctx context.Context, table, id string) error {
	_, err := w.c.Delete(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/"+table+"/"+id, nil)
	if err == nil {
		w.remove(table, id)
	}
	return err
}

func (w *workload) record(op string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failN[op]++
		w.failMsg[op] = err.Error()
		return
	}
	w.okN[op]++
}

func (w *workload) ok() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.okN {
		n += c
	}
	return n
}

func (w *workload) count(prefix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for op, c := range w.okN {
		if strings.HasPrefix(op, prefix) {
			n += c
		}
	}
	return n
}

func (w *workload) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "ok %v", w.okN)
	for op, n := range w.failN {
		fmt.Fprintf(&b, "; %s failed %d× (%s)", op, n, w.failMsg[op])
	}
	return b.String()
}

func (w *workload) rand(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rng.IntN(n)
}

var ops = []string{
	"createCustomer", "updateCustomer", "updateCustomer", "burstCustomer", "deleteCustomer",
	"createProduct", "updateProduct", "burstProduct", "deleteProduct",
	"createPrice", "updatePrice",
	"createCoupon", "deleteCoupon",
	"createSubscription", "updateSubscription", "cancelSubscription",
	"createInvoiceItem", "deleteInvoiceItem",
	"createTaxID", "deleteTaxID",
	"createPaymentMethod", "detachPaymentMethod", "createPayment", "refund", "dispute",
	"addSubscriptionItem", "finalizeInvoice",
}

func (w *workload) run(ctx context.Context, _ uint64) {
	for ctx.Err() == nil {
		w.do(ctx, ops[w.rand(len(ops))])
		time.Sleep(time.Duration(w.rand(15)) * time.Millisecond)
	}
}

// do runs one named operation; failures (an emulator without the
// endpoint, a constraint) are counted, not fatal: the comparison at the
// end is the assertion.
func (w *workload) do(ctx context.Context, op string) {
	err := w.op(ctx, op)
	if errors.Is(err, errSkip) {
		return
	}
	if ctx.Err() != nil {
		return
	}
	w.record(op, err)
}

var errSkip = errors.New("nothing to do")

func (w *workload) op(ctx context.Context, op string) error {
	n := w.rand(1_000_000)
	meta := url.Values{fmt.Sprintf("metadata[k%d]", n%5): {fmt.Sprint(n)}}
	switch op {
	case "createCustomer":
		id, err := w.post(ctx, "/v1/customers", url.Values{"name": {fmt.Sprintf("Customer %d", n)}, "email": {fmt.Sprintf("c%d@example.com", n)}})
		if err == nil {
			w.add("customers", id)
		}
		return err
	case "updateCustomer", "burstCustomer", "updateProduct", "burstProduct":
		table := "customers"
		if strings.HasSuffix(op, "Product") {
			table = "products"
		}
		id := w.pick(table)
		if id == "" {
			return errSkip
		}
		times := 1
		if strings.HasPrefix(op, "burst") {
			times = 3 // same second: the states can only be ordered by a fetch
		}
		for i := range times {
			q := url.Values{fmt.Sprintf("metadata[b%d]", i): {fmt.Sprint(n + i)}}
			if _, err := w.post(ctx, "/v1/"+table+"/"+id, q); err != nil {
				return err
			}
		}
		return nil
	case "deleteCustomer":
		id := w.pick("customers")
		if id == "" || w.rand(3) > 0 { // keep most customers around
			return errSkip
		}
		return w.delete(ctx, "customers", id)
	case "createProduct":
		id, err := w.post(ctx, "/v1/products", url.Values{"name": {fmt.Sprintf("Product %d", n)}})
		if err == nil {
			w.add("products_free", id)
			w.add("products", id)
		}
		return err
	case "deleteProduct":
		id := w.pick("products_free") // only products without prices can be deleted
		if id == "" {
			return errSkip
		}
		err := w.delete(ctx, "products", id)
		if err == nil {
			w.remove("products_free", id)
		}
		return err
	case "createPrice":
		prod := w.pick("products")
		if prod == "" {
			return errSkip
		}
		q := url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(100 + n%900)}, "currency": {"usd"}}
		recurring := n%2 == 0
		if recurring {
			q.Set("recurring[interval]", "month")
		}
		id, err := w.post(ctx, "/v1/prices", q)
		if err == nil {
			w.add("prices", id)
			w.remove("products_free", prod)
			if recurring {
				w.add("prices_recurring", id)
			} else {
				w.add("prices_once", id)
			}
		}
		return err
	case "updatePrice":
		id := w.pick("prices")
		if id == "" {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/prices/"+id, meta)
		return err
	case "createCoupon":
		id, err := w.post(ctx, "/v1/coupons", url.Values{"percent_off": {fmt.Sprint(5 + n%50)}, "duration": {"once"}})
		if err == nil {
			w.add("coupons", id)
		}
		return err
	case "deleteCoupon":
		id := w.pick("coupons")
		if id == "" {
			return errSkip
		}
		return w.delete(ctx, "coupons", id)
	case "createSubscription":
		cus, price := w.pick("customers"), w.pick("prices_recurring")
		if cus == "" || price == "" {
			return errSkip
		}
		q := url.Values{"customer": {cus}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}}
		if n%2 == 0 {
			q.Set("trial_period_days", "30") // trialing: an upcoming invoice exists
		}
		id, err := w.post(ctx, "/v1/subscriptions", q)
		if err == nil {
			w.add("subscriptions", id)
		}
		return err
	case "updateSubscription":
		id := w.pick("subscriptions")
		if id == "" {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/subscriptions/"+id, meta)
		return err
	case "cancelSubscription":
		id := w.pick("subscriptions")
		if id == "" {
			return errSkip
		}
		_, err := w.c.Delete(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/subscriptions/"+id, nil)
		if err == nil {
			w.remove("subscriptions", id)
		}
		return err
	case "createInvoiceItem":
		// With an existing price: given an amount, the emulator makes a
		// product and price without events (see the report).
		cus, price := w.pick("customers"), w.pick("prices_once")
		if cus == "" || price == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/invoiceitems", url.Values{"customer": {cus}, "price": {price}})
		if err == nil {
			w.add("invoiceitems", id)
		}
		return err
	case "deleteInvoiceItem":
		id := w.pick("invoiceitems")
		if id == "" {
			return errSkip
		}
		return w.delete(ctx, "invoiceitems", id)
	case "createTaxID":
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {fmt.Sprintf("DE%09d", n)}})
		if err == nil {
			w.add("tax_ids", cus+"/"+id)
		}
		return err
	case "deleteTaxID":
		k := w.pick("tax_ids")
		if k == "" {
			return errSkip
		}
		cus, id, _ := strings.Cut(k, "/")
		_, err := w.c.Delete(stripeapi.WithPriority(ctx, stripeapi.Interactive), "/v1/customers/"+cus+"/tax_ids/"+id, nil)
		if err == nil || stripeapi.IsNotFound(err) {
			w.remove("tax_ids", k)
		}
		return err
	case "createPaymentMethod":
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})
		if err != nil {
			return err
		}
		// A payment method left unattached (its customer deleted
		// meanwhile by another worker) has no event and no list that
		// shows it: no consumer of Stripe could know it, so attach it to
		// another customer rather than leave it for the comparison.
		for try := 0; ; try++ {
			_, err = w.post(ctx, "/v1/payment_methods/"+id+"/attach", url.Values{"customer": {cus}})
			var se *stripeapi.Error
			if err == nil || try == 10 || !errors.As(err, &se) || se.Param != "customer" {
				break
			}
			if cus = w.pick("customers"); cus == "" {
				break
			}
		}
		if err != nil {
			return err
		}
		w.add("payment_methods", cus+"/"+id)
		return nil
	case "detachPaymentMethod":
		k := w.pick("payment_methods")
		if k == "" {
			return errSkip
		}
		_, id, _ := strings.Cut(k, "/")
		w.remove("payment_methods", k)
		_, err := w.post(ctx, "/v1/payment_methods/"+id+"/detach", nil)
		return err
	case "createPayment":
		k := w.pick("payment_methods")
		if k == "" {
			return errSkip
		}
		cus, pm, _ := strings.Cut(k, "/")
		id, err := w.post(ctx, "/v1/payment_intents", url.Values{"amount": {fmt.Sprint(500 + n%1000)}, "currency": {"usd"},
			"customer": {cus}, "payment_method": {pm}, "confirm": {"true"}, "payment_method_types[]": {"card"}})
		if err == nil {
			w.add("payment_intents", id)
		}
		return err
	case "refund":
		pi := w.pick("payment_intents")
		if pi == "" {
			return errSkip
		}
		w.remove("payment_intents", pi)
		_, err := w.post(ctx, "/v1/refunds", url.Values{"payment_intent": {pi}, "amount": {"100"}})
		return err
	case "dispute":
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/charges", url.Values{"amount": {"2000"}, "currency": {"usd"}, "source": {"tok_createDispute"}})
		return err
	case "addSubscriptionItem":
		sub, price := w.pick("subscriptions"), w.pick("prices_recurring")
		if sub == "" || price == "" {
			return errSkip
		}
		_, err := w.post(ctx, "/v1/subscription_items", url.Values{"subscription": {sub}, "price": {price}})
		return err
	case "finalizeInvoice":
		// A draft invoice with the customer's pending items.
		cus := w.pick("customers")
		if cus == "" {
			return errSkip
		}
		id, err := w.post(ctx, "/v1/invoices", url.Values{"customer": {cus}, "collection_method": {"send_invoice"}, "days_until_due": {"7"}, "pending_invoice_items_behavior": {"include"}})
		if err != nil {
			return err
		}
		if n%2 == 0 {
			_, err = w.post(ctx, "/v1/invoices/"+id+"/finalize", nil)
		}
		return err
	}
	return fmt.Errorf("unknown op %s", op)
}

func counterValue(t *testing.T, typ string) float64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.EventsApplied.WithLabelValues(typ).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestDueBalanceTransactionsRefetched: a pending balance transaction past
// its available_on has no event when it turns available; the loop
// re-fetches it (at most hourly).
func TestDueBalanceTransactionsRefetched(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	w := newWorkload(v.mut, 11)
	w.do(ctx, "createCustomer")
	w.do(ctx, "createPaymentMethod")
	w.do(ctx, "createPayment")
	if w.ok() != 3 {
		t.Fatalf("workload: %s", w.summary())
	}
	stop := v.loop(t, events.Config{BalanceEvery: 200 * time.Millisecond})
	v.converge(t, 10*time.Second)
	if v.rows(t, "balance_transactions") != 1 {
		t.Fatalf("balance transactions: %d", v.rows(t, "balance_transactions"))
	}
	route := "GET /v1/balance_transactions/{id}"
	before := v.e.Stats().ByRoute[route]
	// Two days on (available_on passed), last synced two hours ago.
	v.e.SetClockOffset(3 * 24 * time.Hour)
	time.Sleep(time.Second) // the balance list has moved past the transaction
	if _, err := v.pool.Exec(ctx, `UPDATE stripe.balance_transactions SET _synced_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && v.e.Stats().ByRoute[route] == before; {
		time.Sleep(100 * time.Millisecond)
	}
	if got := v.e.Stats().ByRoute[route] - before; got != 1 {
		t.Fatalf("due balance transaction re-fetched %d times, want 1", got)
	}
	// Synced again now: not re-fetched again within the hour.
	time.Sleep(time.Second)
	if got := v.e.Stats().ByRoute[route] - before; got != 1 {
		t.Errorf("re-fetched %d times within the hour, want 1", got)
	}
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
