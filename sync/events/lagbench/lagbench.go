// Package lagbench measures the events loop end to end: the time from a
// mutation in the (in-process) emulator to the changed row being committed
// in Postgres, at a steady mutation rate, with an optional event
// visibility delay, and optionally the random workload of package
// workload alongside (Options.Workload; not measured, but followed). It
// starts its own emulator and throwaway PostgreSQL (pgcluster), runs
// events.Run as serve would, and verifies at the end that every table
// equals the emulator's objects (verify.Compare).
//
// `pgstripe-bench lag` is a thin wrapper around Run.
package lagbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/verify"
	"github.com/pgstripe/pgstripe/workload"
)

// Options of a run. Zero values take the defaults.
type Options struct {
	Duration        time.Duration // mutating time (default 10 s)
	MutationsPerSec float64       // default 20
	EventDelay      time.Duration // emulator's max visibility delay (default 0)
	Latency         time.Duration // emulator's added latency per request (default 0; the minimum of a range)
	LatencyMax      time.Duration // top of a uniform latency range (≤ Latency: fixed)
	PollInterval    time.Duration // default events.DefaultPollInterval
	Objects         int           // customers and products mutated (default 40)
	// Workload is the rate, in operations/s, of the random workload
	// (package workload: every object type, created, changed and deleted)
	// made alongside the measured mutations while they run; 0: none. Its
	// changes are not measured, but the loop follows them too and the
	// tables must end equal all the same.
	Workload float64
	// RateLimit of the sync's limiter (default 1000/s: above need, so the
	// figure is the loop's, not the limiter's).
	RateLimit float64
	Logger    *slog.Logger // default: discard
	// DatabaseURL of an empty database to use instead of starting a
	// throwaway cluster (tests pass pgtest.NewDB).
	DatabaseURL string
}

// Result is the JSON of `pgstripe-bench lag`.
type Result struct {
	Mutations       int     `json:"mutations"` // measured (after the warm-up creations)
	Events          int     `json:"events"`    // mutations whose event was applied
	P50ms           float64 `json:"p50_ms"`
	P95ms           float64 `json:"p95_ms"`
	P99ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	Missing         int     `json:"missing"` // mutations never applied, plus rows missing at the end
	Stale           int     `json:"stale"`   // rows differing from the emulator at the end
	Extra           int     `json:"extra"`
	MutationsPerSec float64 `json:"mutations_per_sec"` // achieved
	PollIntervalMs  float64 `json:"poll_interval_ms"`
	EventDelayMs    float64 `json:"event_delay_ms"`
	LatencyMs       float64 `json:"latency_ms"`
	LatencyMaxMs    float64 `json:"latency_max_ms,omitempty"` // top of a latency range
	EventRequests   int64   `json:"event_requests"`           // GET /v1/events by the loop
	WorkloadOps     int     `json:"workload_ops"`             // random workload's operations that succeeded
	WorkloadFailed  int     `json:"workload_failed"`          // and that failed (Stripe refused them)
	Seconds         float64 `json:"seconds"`
}

// Failure reports mutations never applied and rows that differ from the
// emulator at the end (nil when there are none).
func (r Result) Failure() error {
	if r.Missing+r.Stale+r.Extra == 0 {
		return nil
	}
	return fmt.Errorf("%d missing (mutations never applied or rows absent), %d stale, %d extra", r.Missing, r.Stale, r.Extra)
}

// Run performs one measurement.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.MutationsPerSec <= 0 {
		o.MutationsPerSec = 20
	}
	if o.PollInterval <= 0 {
		o.PollInterval = events.DefaultPollInterval
	}
	if o.Objects <= 0 {
		o.Objects = 40
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	res := Result{PollIntervalMs: ms(o.PollInterval), EventDelayMs: ms(o.EventDelay), LatencyMs: ms(o.Latency)}
	if o.LatencyMax > o.Latency {
		res.LatencyMaxMs = ms(o.LatencyMax)
	}

	dbURL := o.DatabaseURL
	if dbURL == "" {
		cl, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return res, err
		}
		defer cl.Stop()
		dbURL = cl.URL("postgres")
	}
	// Set up as serve's: its sessions are the writers schema's guard
	// lets pass.
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return res, err
	}
	config.OwnSession(&pcfg.ConnConfig.Config)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	if err := schema.Migrate(ctx, pool); err != nil {
		return res, err
	}

	emu, err := emulator.New(emulator.Options{RateLimit: -1, EventDelay: o.EventDelay, Latency: o.Latency, LatencyMax: o.LatencyMax})
	if err != nil {
		return res, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	srv := &http.Server{Handler: emu}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	syncClient, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_lagbench", BaseURL: base, RateLimit: o.RateLimit, Logger: o.Logger})
	if err != nil {
		return res, err
	}
	// The mutator has its own limiter: its calls are the workload, not
	// part of the sync's budget.
	mut, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_lagbench", BaseURL: base, RateLimit: 10000})
	if err != nil {
		return res, err
	}
	if _, _, err := events.EnsureCursor(ctx, pool, syncClient, 0); err != nil {
		return res, err
	}

	m := &meter{sent: map[int]time.Time{}, applied: map[int]time.Time{}}
	loopCtx, stopLoop := context.WithCancel(ctx)
	loopDone := make(chan error, 1)
	go func() {
		loopDone <- events.Run(loopCtx, events.Config{Pool: pool, Client: syncClient, PollInterval: o.PollInterval,
			Logger: o.Logger, OnApplied: m.onApplied})
	}()
	defer func() { stopLoop(); <-loopDone }()

	// Objects to mutate: created first (their creations are measured too).
	w := &mutator{c: mut, m: m}
	mctx := stripeapi.WithPriority(ctx, stripeapi.Interactive)
	for i := 0; i < o.Objects; i++ {
		kind := "customers"
		if i%2 == 1 {
			kind = "products"
		}
		if err := w.create(mctx, kind); err != nil {
			return res, err
		}
	}
	// Warm-up: the creations are applied (cold statement caches, first
	// connections) before the measured phase starts; they must all arrive
	// but are not part of the figures.
	for end := time.Now().Add(o.EventDelay + 30*time.Second); m.pending() > 0 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := m.pending(); n > 0 {
		return res, fmt.Errorf("warm-up: %d creations never applied", n)
	}
	m.reset()
	var bg *workload.Workload
	bgDone := make(chan struct{})
	bgCtx, stopBG := context.WithCancel(ctx)
	defer stopBG()
	if o.Workload > 0 {
		bg = workload.New(mut, uint64(time.Now().UnixNano()))
		if err := bg.Seed(ctx); err != nil {
			return res, err
		}
		go func() { defer close(bgDone); bg.Run(bgCtx, workload.Ops, o.Workload) }()
	} else {
		close(bgDone)
	}
	// Steady rate: a tick per mutation, served by a pool of workers so the
	// emulator's latency doesn't slow the rate; the mutator's calls go
	// through their own limiter, unmetered by the sync's.
	ticks := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mutErr error
	var errMu sync.Mutex
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ticks {
				if err := w.update(mctx); err != nil {
					errMu.Lock()
					mutErr = errors.Join(mutErr, err)
					errMu.Unlock()
				}
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / o.MutationsPerSec)
	mutStart := time.Now()
	next := mutStart
	for time.Since(mutStart) < o.Duration && ctx.Err() == nil {
		select {
		case ticks <- struct{}{}:
		default: // workers saturated: the achieved rate will show it
		}
		// Poisson arrivals: a fixed period would lock the mutations to a
		// phase of the poll cycle and bias the percentiles.
		next = next.Add(time.Duration(rand.ExpFloat64() * float64(interval)))
		time.Sleep(time.Until(next))
	}
	close(ticks)
	wg.Wait()
	stopBG()
	<-bgDone
	if bg != nil {
		res.WorkloadOps, res.WorkloadFailed = bg.Totals()
		if f := bg.Failures(); f != "" {
			o.Logger.Warn("lagbench: workload operations failed", "detail", f)
		}
	}
	mutSeconds := time.Since(mutStart).Seconds()
	if mutErr != nil {
		return res, fmt.Errorf("mutations failed: %w", mutErr)
	}

	// Drain: every mutation's event should arrive within the visibility
	// delay plus a few polls; wait longer before calling one missing.
	deadline := time.Now().Add(o.EventDelay + 20*o.PollInterval + 10*time.Second)
	for time.Now().Before(deadline) && m.pending() > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	lags, missing, total := m.lags()
	res.Mutations = total
	res.Events = len(lags)
	res.Missing = missing
	res.MutationsPerSec = float64(total) / mutSeconds
	if len(lags) > 0 {
		res.P50ms, res.P95ms, res.P99ms, res.MaxMs = pct(lags, 50), pct(lags, 95), pct(lags, 99), lags[len(lags)-1]
	}
	// Tables must end exact; give re-fetches a moment to land.
	var d verify.Diff
	for end := time.Now().Add(10 * time.Second); ; {
		d, err = verify.Compare(ctx, pool, emu)
		if err != nil {
			return res, err
		}
		if d.Total() == 0 || time.Now().After(end) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.Missing += d.Missing
	res.Stale, res.Extra = d.Stale, d.Extra
	for _, s := range d.Details {
		o.Logger.Warn("lagbench: table differs from the emulator", "detail", s)
	}
	res.EventRequests = emu.Stats().ByRoute["GET /v1/events"]
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the p-th percentile of sorted xs (nearest rank).
func pct(xs []float64, p float64) float64 {
	i := int(float64(len(xs))*p/100+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// meter pairs mutations (by the sequence number they write into
// metadata[lagbench_seq]) with the commit of their event.
type meter struct {
	mu      sync.Mutex
	seq     int
	sent    map[int]time.Time
	applied map[int]time.Time
}

func (m *meter) next() (int, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	now := time.Now()
	m.sent[m.seq] = now
	return m.seq, now
}

func (m *meter) onApplied(evs []events.Event, committed time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range evs {
		var o struct {
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(e.Data.Object, &o) != nil {
			continue
		}
		s, err := strconv.Atoi(o.Metadata["lagbench_seq"])
		if err != nil {
			continue
		}
		if _, ok := m.applied[s]; !ok {
			if _, sent := m.sent[s]; sent {
				m.applied[s] = committed
			}
		}
	}
}

// reset forgets what was measured so far (seq numbers go on).
func (m *meter) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = map[int]time.Time{}
	m.applied = map[int]time.Time{}
}

func (m *meter) pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sent) - len(m.applied)
}

// lags returns the sorted lags in ms, the mutations never applied, and the
// total of mutations.
func (m *meter) lags() ([]float64, int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []float64
	missing := 0
	for s, sent := range m.sent {
		a, ok := m.applied[s]
		if !ok {
			missing++
			continue
		}
		out = append(out, max(ms(a.Sub(sent)), 0))
	}
	sort.Float64s(out)
	return out, missing, len(m.sent)
}

// mutator creates customers and products and updates them at random.
type mutator struct {
	c  *stripeapi.Client
	m  *meter
	mu sync.Mutex
	// ids by table
	ids map[string][]string
}

func (w *mutator) create(ctx context.Context, table string) error {
	seq, _ := w.m.next()
	q := url.Values{}
	q.Set("metadata[lagbench_seq]", strconv.Itoa(seq))
	path := "/v1/" + table
	q.Set("name", fmt.Sprintf("lagbench %d", seq))
	resp, err := w.c.Post(ctx, path, q, "")
	if err != nil {
		return fmt.Errorf("create %s: %w", table, err)
	}
	id, err := stripeapi.ObjectID(resp.Body)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.ids == nil {
		w.ids = map[string][]string{}
	}
	w.ids[table] = append(w.ids[table], id)
	w.mu.Unlock()
	return nil
}

func (w *mutator) update(ctx context.Context) error {
	w.mu.Lock()
	table := "customers"
	if rand.IntN(2) == 1 {
		table = "products"
	}
	ids := w.ids[table]
	if len(ids) == 0 {
		w.mu.Unlock()
		return nil
	}
	id := ids[rand.IntN(len(ids))]
	w.mu.Unlock()
	seq, _ := w.m.next()
	q := url.Values{}
	q.Set("metadata[lagbench_seq]", strconv.Itoa(seq))
	if _, err := w.c.Post(ctx, "/v1/"+table+"/"+id, q, ""); err != nil {
		return fmt.Errorf("update %s %s: %w", table, id, err)
	}
	return nil
}
