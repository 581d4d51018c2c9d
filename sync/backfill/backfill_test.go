package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/verify"
)

func TestMain(m *testing.M) {
	if os.Getenv("BACKFILL_HELPER") == "1" {
		os.Exit(helperProcess())
	}
	pgtest.Main(m)
}

// helperProcess is the backfill run that TestKillAndResume kills with
// SIGKILL.
func helperProcess() int {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("BACKFILL_DB"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_helper", BaseURL: os.Getenv("BACKFILL_API"), RateLimit: 200})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	err = backfill.Run(ctx, backfill.Config{Pool: pool, Client: c, MaxWorkers: 8})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// recorder wraps the emulator and remembers every request.
type recorder struct {
	h      http.Handler
	mu     sync.Mutex
	seen   []string
	count  atomic.Int64
	onReq  func(n int64)
	reject func(r *http.Request) (int, string) // answer instead of the emulator
}

// hooks sets the callbacks (under the lock: handlers run concurrently).
func (rc *recorder) hooks(onReq func(int64), reject func(*http.Request) (int, string)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.onReq, rc.reject = onReq, reject
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := rc.count.Add(1)
	q := r.URL.Query()
	rc.mu.Lock()
	rc.seen = append(rc.seen, r.Method+" "+r.URL.Path+"?"+q.Encode())
	onReq, reject := rc.onReq, rc.reject
	rc.mu.Unlock()
	if onReq != nil {
		onReq(n)
	}
	if reject != nil {
		if status, body := reject(r); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return
		}
	}
	rc.h.ServeHTTP(w, r)
}

func (rc *recorder) requests() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.seen...)
}

type env struct {
	e    *emulator.Emulator
	rec  *recorder
	base string
	db   string
	pool *pgxpool.Pool
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
	rec := &recorder{h: e}
	srv := httptest.NewServer(rec)
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
	return &env{e: e, rec: rec, base: srv.URL, db: db, pool: pool}
}

// poster returns mustPost on a client of v's emulator, for set-ups that
// make many objects.
func (v *env) poster(t *testing.T) func(path string, q url.Values) string {
	c := v.client(t, 1000)
	return func(path string, q url.Values) string {
		t.Helper()
		return mustPost(t, c, path, q)
	}
}

func (v *env) client(t *testing.T, rate float64) *stripeapi.Client {
	t.Helper()
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_backfill", BaseURL: v.base, RateLimit: rate, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("bad json %s: %v", raw, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// compare checks that table holds exactly the emulator's objects, with
// equal _raw; it returns the row count.
func (v *env) compare(t *testing.T, table string) int {
	t.Helper()
	tb, _ := schema.Lookup(table)
	// As sync stores them: with their included lists whole, and without
	// the payment methods on no list (a test card's unattached copy).
	want, err := verify.Expected(v.e, tb)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := v.pool.Query(context.Background(), fmt.Sprintf(`SELECT %s, _raw::text FROM %s`, schema.Ident(tb.Key[len(tb.Key)-1]), tb.QualifiedName()))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[id]; dup {
			t.Errorf("%s: duplicate row %s", table, id)
		}
		got[id] = raw
	}
	missing, extra, stale := 0, 0, 0
	for id, raw := range want {
		g, ok := got[id]
		switch {
		case !ok:
			missing++
			if missing <= 3 {
				t.Errorf("%s: missing %s", table, id)
			}
		case canonicalJSON(t, []byte(g)) != canonicalJSON(t, raw):
			stale++
			if stale <= 3 {
				t.Errorf("%s %s: _raw differs:\n got  %s\n want %s", table, id, canonicalJSON(t, []byte(g)), canonicalJSON(t, raw))
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			extra++
			if extra <= 3 {
				t.Errorf("%s: extra row %s", table, id)
			}
		}
	}
	if missing+extra+stale > 0 {
		t.Errorf("%s: %d missing, %d extra, %d stale of %d", table, missing, extra, stale, len(want))
	}
	return len(got)
}

func backfilledTables() []string {
	var out []string
	for _, tb := range schema.Tables() {
		if !tb.Virtual {
			out = append(out, tb.Name)
		}
	}
	return out
}

func TestBackfillMatchesEmulator(t *testing.T) {
	v := setup(t, emulator.Options{Latency: 2 * time.Millisecond})
	if err := v.e.Seed(40, "uniform"); err != nil {
		t.Fatal(err)
	}
	var last backfill.Progress
	err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: v.client(t, 500),
		Progress: func(p backfill.Progress) { last = p }, ProgressInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, table := range backfilledTables() {
		total += v.compare(t, table)
	}
	if total < 100 {
		t.Errorf("only %d rows: seed too small to test anything", total)
	}
	// upcoming_invoices: one row per customer whose live subscriptions
	// have something to invoice, as GET /v1/invoices/upcoming answers.
	live := map[string]bool{}
	for _, raw := range v.e.Objects("subscriptions") {
		var sub struct{ Customer, Status string }
		if err := json.Unmarshal(raw, &sub); err != nil {
			t.Fatal(err)
		}
		if sub.Status != "canceled" && sub.Status != "incomplete_expired" {
			live[sub.Customer] = true
		}
	}
	wantUpcoming := 0
	c := v.client(t, 1000)
	for cus := range live {
		if _, err := c.Get(context.Background(), "/v1/invoices/upcoming", url.Values{"customer": {cus}}); err == nil {
			wantUpcoming++
		} else if !stripeapi.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	var gotUpcoming int
	if err := v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe.upcoming_invoices`).Scan(&gotUpcoming); err != nil {
		t.Fatal(err)
	}
	if gotUpcoming != wantUpcoming || wantUpcoming == 0 {
		t.Errorf("upcoming_invoices: %d rows, want %d (of %d customers with live subscriptions)", gotUpcoming, wantUpcoming, len(live))
	}
	if !last.Done || last.Stopped || len(last.Objects) == 0 {
		t.Errorf("final progress %+v", last)
	}
	ctx := context.Background()
	var notLive int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE object <> 'upcoming_invoices' AND (phase <> 'live' OR backfill_completed_at IS NULL)`).Scan(&notLive); err != nil {
		t.Fatal(err)
	}
	if notLive != 0 {
		t.Errorf("%d objects not live after the backfill", notLive)
	}
	var completes int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'backfill_complete'`).Scan(&completes); err != nil {
		t.Fatal(err)
	}
	if completes != 1 {
		t.Errorf("%d backfill_complete log entries", completes)
	}
	if _, ok, err := backfill.LoadCursor(ctx, v.pool); err != nil || !ok {
		t.Errorf("events cursor: ok=%v err=%v", ok, err)
	}
	var left int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.backfill_slices`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d slices left (err %v)", left, err)
	}

	// A second run finds everything complete and makes no list requests.
	before := v.rec.count.Load()
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 500)}); err != nil {
		t.Fatal(err)
	}
	if n := v.rec.count.Load() - before; n != 1 {
		t.Errorf("second run made %d requests, want 1 (the events cursor probe)", n)
	}
}

func TestInvoiceWith250Lines(t *testing.T) {
	v := setup(t, emulator.Options{})
	c := v.client(t, 1000)
	ctx := context.Background()
	post := func(path string, q url.Values) string {
		t.Helper()
		return mustPost(t, c, path, q)
	}
	cus := post("/v1/customers", url.Values{"email": {"lines@example.com"}})
	inv := post("/v1/invoices", url.Values{"customer": {cus}, "auto_advance": {"false"}})
	for i := 0; i < 250; i++ {
		post("/v1/invoiceitems", url.Values{"customer": {cus}, "invoice": {inv}, "amount": {strconv.Itoa(100 + i)}, "currency": {"usd"}})
	}
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c, Objects: []string{"invoice_line_items"}}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.invoice_line_items WHERE invoice = $1`, inv).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 250 {
		t.Errorf("invoice_line_items has %d rows of %s, want 250", n, inv)
	}
	paged := 0
	for _, r := range v.rec.requests() {
		if strings.HasPrefix(r, "GET /v1/invoices/"+inv+"/lines") {
			paged++
		}
	}
	if paged != 3 {
		t.Errorf("%d requests for the lines, want 3 (100+100+50)", paged)
	}
	v.compare(t, "invoices")
	v.compare(t, "invoice_line_items")
}

func TestKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	v := setup(t, emulator.Options{Latency: 5 * time.Millisecond})
	if err := v.e.Seed(150, "spike"); err != nil {
		t.Fatal(err)
	}
	// Kill somewhere in the middle: after a random share of the requests a
	// full run needs (about 2 per customer plus the lists).
	killAt := int64(30 + time.Now().UnixNano()%120)
	killed := make(chan struct{})
	var once sync.Once
	v.rec.hooks(func(n int64) {
		if n >= killAt {
			once.Do(func() { close(killed) })
		}
	}, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BACKFILL_HELPER=1", "BACKFILL_DB="+v.db, "BACKFILL_API="+v.base)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-killed:
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	case err := <-exited:
		t.Fatalf("helper finished before the kill (after %d requests): %v", v.rec.count.Load(), err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("helper hung")
	}
	v.rec.hooks(nil, nil)
	first := v.rec.requests()
	ctx := context.Background()
	var pending int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.backfill_slices WHERE NOT done`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %d requests; %d slices pending", len(first), pending)

	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 500), MaxWorkers: 8}); err != nil {
		t.Fatal(err)
	}
	for _, table := range backfilledTables() {
		v.compare(t, table)
	}
	// Finished slices are not fetched again: a list request of the first
	// run may repeat only if it was in flight (or its transaction not yet
	// committed) at the kill — at most the 8 workers plus their nested
	// fetches.
	again := v.rec.requests()[len(first):]
	seen := map[string]bool{}
	for _, r := range first {
		if strings.HasPrefix(r, "GET ") && !strings.HasPrefix(r, "GET /v1/events") {
			seen[r] = true
		}
	}
	repeated := 0
	for _, r := range again {
		if seen[r] {
			repeated++
		}
	}
	t.Logf("second run: %d requests, %d repeated from the first", len(again), repeated)
	if repeated > 16 {
		t.Errorf("%d requests of the killed run were repeated (finished slices fetched again)", repeated)
	}
}

func TestOneObjectFailsOthersComplete(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(10, "uniform"); err != nil {
		t.Fatal(err)
	}
	var n429 atomic.Int64
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if strings.HasPrefix(r.URL.Path, "/v1/disputes") {
			return 403, `{"error":{"type":"invalid_request_error","code":"secret_key_required","message":"This key can't list disputes."}}`
		}
		// Stripe's rate limit now and then: retried, never fatal.
		if r.URL.Path == "/v1/customers" && n429.Add(1)%3 == 1 {
			return 429, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"}}`
		}
		return 0, ""
	})
	ctx := context.Background()
	err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers", "disputes", "products"}})
	var pe *backfill.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Object != "disputes" {
		t.Fatalf("err = %v, want disputes failed", err)
	}
	var phase, lastErr string
	if err := v.pool.QueryRow(ctx, `SELECT phase, coalesce(last_error, '') FROM stripe_sync.status WHERE object = 'disputes'`).Scan(&phase, &lastErr); err != nil {
		t.Fatal(err)
	}
	if phase != "error" || !strings.Contains(lastErr, "can't list disputes") {
		t.Errorf("disputes: phase %q last_error %q", phase, lastErr)
	}
	v.compare(t, "customers")
	v.compare(t, "products")
	if n429.Load() < 2 {
		t.Errorf("429 path not exercised")
	}
	// Fixed: the next run picks disputes up again.
	v.rec.hooks(nil, nil)
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"disputes"}}); err != nil {
		t.Fatal(err)
	}
	v.compare(t, "disputes")
}

// A cursor object deleted between two pages makes Stripe refuse
// starting_after (resource_missing); the slice continues without it.
func TestCursorObjectGone(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(150, "same-second"); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	v.rec.hooks(nil, func(r *http.Request) (int, string) {
		if r.URL.Path == "/v1/customers" && r.URL.Query().Get("starting_after") != "" && refused.Add(1) == 1 {
			return 400, `{"error":{"type":"invalid_request_error","code":"resource_missing","param":"starting_after","message":"No such customer: 'cus_gone'"}}`
		}
		return 0, ""
	})
	ctx := context.Background()
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 1000), Objects: []string{"customers"}}); err != nil {
		t.Fatal(err)
	}
	if refused.Load() < 2 {
		t.Fatalf("the cursor path was not exercised (%d requests with starting_after)", refused.Load())
	}
	v.compare(t, "customers")
}

// Stripe failing now and then (500, 503, 429, dropped connections,
// timeouts, responses lost) slows the backfill down, never breaks it.
func TestFaultsAreNeverFatal(t *testing.T) {
	v := setup(t, emulator.Options{Faults: 0.15})
	if err := v.e.Seed(30, "spike"); err != nil {
		t.Fatal(err)
	}
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_faults", BaseURL: v.base, RateLimit: 1000, MaxRetries: 2, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: c}); err != nil {
		t.Fatal(err)
	}
	for _, table := range backfilledTables() {
		v.compare(t, table)
	}
	// Five of the six fault kinds show in the statuses (a dropped connection
	// and a timeout as 0): over a hundred requests at 15% all miss about
	// once in a million runs; the three error statuses alone, one in a few
	// thousand.
	st := v.e.Stats()
	faults := st.ByStatus[500] + st.ByStatus[503] + st.ByStatus[429] + st.ByStatus[0]
	t.Logf("%d requests, %d answered 500/503/429 or dropped", st.Total, faults)
	if faults == 0 {
		t.Error("no faults injected")
	}
}

// mustPost makes a change in Stripe through c and returns the object's id.
func mustPost(t *testing.T, c *stripeapi.Client, path string, q url.Values) string {
	t.Helper()
	resp, err := c.Post(context.Background(), path, q, "")
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	id, err := stripeapi.ObjectID(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A backfill cancelled part-way reports a last progress that says it
// stopped, not that it is done (an operator's Ctrl-C showed "done").
func TestCancelledBackfillReportsStopped(t *testing.T) {
	v := setup(t, emulator.Options{Latency: 20 * time.Millisecond})
	if err := v.e.Seed(40, "uniform"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last backfill.Progress
	err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client(t, 50), ProgressInterval: 20 * time.Millisecond,
		Progress: func(p backfill.Progress) {
			last = p
			if p.Requests > 3 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	var b strings.Builder
	last.Render(&b)
	if !last.Done || !last.Stopped || !strings.HasPrefix(b.String(), "backfill stopped") {
		t.Errorf("last progress Done %v Stopped %v, rendered %q", last.Done, last.Stopped, b.String())
	}
}
