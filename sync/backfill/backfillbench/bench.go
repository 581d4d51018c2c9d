// Package backfillbench measures the backfill against the emulator: it
// starts a throwaway Postgres and an emulator with the requested latency and
// data distribution, runs backfill.Run at a given rate, verifies every table
// against the emulator, and runs a plain sequential starting_after backfill
// of the same data for comparison. cmd/pgstripe-bench exposes it as the
// "backfill" scenario.
package backfillbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/verify"
)

// Options of one benchmark run.
type Options struct {
	// Objects is the approximate total number of Stripe objects to seed
	// (the emulator seeds around customers; their count is derived).
	Objects      int
	Distribution string        // uniform, spike, same-second
	Rate         float64       // our rate limit, requests/s (default 20)
	Latency      time.Duration // emulator latency per request (the minimum when LatencyMax > Latency)
	LatencyMax   time.Duration // with Latency, a uniform range like the emulator's --latency 50ms-300ms
	// Tables restricts the backfill (default: all).
	Tables []string
	// SkipSequential skips the sequential baseline (it takes
	// requests × latency).
	SkipSequential bool
	// SequentialBudget bounds the sequential baseline (default 2 min):
	// when it runs out, the baseline's time is extrapolated from its
	// seconds per request to the requests a full sequential run needs
	// (counted exactly from the emulator's data).
	SequentialBudget time.Duration
	Logger           *slog.Logger
	// Progress receives the backfill's progress.
	Progress func(backfill.Progress)
}

// Result is printed as the scenario's JSON line.
type Result struct {
	Distribution      string  `json:"distribution"`
	Objects           int     `json:"objects"`
	Requests          int64   `json:"requests"`
	Seconds           float64 `json:"seconds"`
	RateLimit         float64 `json:"rate_limit"`
	AchievedRPS       float64 `json:"achieved_rps"`
	Utilization       float64 `json:"utilization"`
	LimitFraction     float64 `json:"limit_fraction"`
	SequentialSeconds float64 `json:"sequential_seconds"`
	SequentialReqs    int64   `json:"sequential_requests"`
	SequentialExtrap  bool    `json:"sequential_extrapolated"`
	Speedup           float64 `json:"speedup"`
	Missing           int     `json:"missing"`
	Extra             int     `json:"extra"`
	Stale             int     `json:"stale"`
	RSSMB             float64 `json:"rss_mb"`
	// Wrong lists, per table, the tables with missing, extra or stale rows.
	Wrong     map[string][3]int `json:"wrong,omitempty"`
	Customers int               `json:"customers"`
	LatencyMS float64           `json:"latency_ms"`
	// LatencyMaxMS is the top of a latency range (0: fixed latency).
	LatencyMaxMS float64 `json:"latency_max_ms,omitempty"`
}

// Failure reports rows that differ from the emulator (nil when the tables
// are exact).
func (r Result) Failure() error {
	if r.Missing+r.Extra+r.Stale == 0 {
		return nil
	}
	return fmt.Errorf("%d missing, %d extra, %d stale rows (by table: %v)", r.Missing, r.Extra, r.Stale, r.Wrong)
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Objects <= 0 {
		o.Objects = 20000
	}
	if o.Distribution == "" {
		o.Distribution = "uniform"
	}
	if o.Rate <= 0 {
		o.Rate = 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	res := Result{Distribution: o.Distribution, RateLimit: o.Rate, LatencyMS: float64(o.Latency) / float64(time.Millisecond)}
	if o.LatencyMax > o.Latency {
		res.LatencyMaxMS = float64(o.LatencyMax) / float64(time.Millisecond)
	}

	customers, err := customersFor(o.Objects, o.Distribution)
	if err != nil {
		return res, err
	}
	res.Customers = customers
	// Stripe's own limit sits above ours (ours is 80% of it).
	var e *emulator.Emulator
	for attempt := 0; ; attempt++ {
		e, err = emulator.New(emulator.Options{RateLimit: int(math.Ceil(o.Rate / 0.8)), Latency: o.Latency, LatencyMax: o.LatencyMax})
		if err != nil {
			return res, err
		}
		o.Logger.Info("seeding", "customers", customers, "distribution", o.Distribution)
		if err := e.Seed(customers, o.Distribution); err != nil {
			return res, err
		}
		// Objects per customer aren't constant (shared products and
		// prices): correct the count once.
		n := countObjects(e)
		if attempt > 0 || math.Abs(float64(n-o.Objects)) < 0.1*float64(o.Objects) {
			break
		}
		customers = max(1, int(math.Round(float64(customers)*float64(o.Objects)/float64(max(n, 1)))))
	}
	res.Customers = customers
	srv := httptest.NewServer(e)
	defer srv.Close()

	cl, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return res, err
	}
	defer cl.Stop()
	dbURL, err := createDB(ctx, cl, "bench")
	if err != nil {
		return res, err
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

	var reqs atomic.Int64
	client, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_bench", BaseURL: srv.URL, RateLimit: o.Rate,
		Observer: countObserver{&reqs}, Logger: o.Logger})
	if err != nil {
		return res, err
	}
	o.Logger.Info("backfill starting", "rate", o.Rate, "latency", o.Latency)
	start := time.Now()
	err = backfill.Run(ctx, backfill.Config{Pool: pool, Client: client, Objects: o.Tables, Logger: o.Logger, Progress: o.Progress})
	res.Seconds = time.Since(start).Seconds()
	if err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	res.Requests = reqs.Load()
	res.AchievedRPS = float64(res.Requests) / res.Seconds
	res.Utilization = res.AchievedRPS / o.Rate

	tables := benchTables(o.Tables)
	for _, t := range tables {
		if tb, _ := schema.Lookup(t); tb.Virtual {
			continue // upcoming invoices are computed, the emulator stores none
		}
		d, err := verify.CompareTables(ctx, pool, e, []string{t})
		if err != nil {
			return res, err
		}
		m, x, s, n := d.Missing, d.Extra, d.Stale, d.Rows
		res.Missing += m
		res.Extra += x
		res.Stale += s
		if m+x+s > 0 {
			if res.Wrong == nil {
				res.Wrong = map[string][3]int{}
			}
			res.Wrong[t] = [3]int{m, x, s}
		}
		res.Objects += n
	}
	res.LimitFraction = float64(res.Objects) / res.Seconds / (o.Rate * 100)
	res.RSSMB = peakRSSMB()

	if !o.SkipSequential {
		o.Logger.Info("sequential baseline starting")
		var sreqs atomic.Int64
		seqClient, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_bench", BaseURL: srv.URL, RateLimit: o.Rate,
			Observer: countObserver{&sreqs}})
		if err != nil {
			return res, err
		}
		budget := o.SequentialBudget
		if budget <= 0 {
			budget = 2 * time.Minute
		}
		sctx, cancel := context.WithTimeout(ctx, budget)
		start := time.Now()
		err = sequential(sctx, seqClient, tables)
		cancel()
		elapsed := time.Since(start).Seconds()
		res.SequentialReqs = sreqs.Load()
		switch {
		case err == nil:
			res.SequentialSeconds = elapsed
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && res.SequentialReqs > 0:
			needed := sequentialRequests(e, tables)
			res.SequentialSeconds = elapsed / float64(res.SequentialReqs) * float64(needed)
			res.SequentialReqs = needed
			res.SequentialExtrap = true
		default:
			return res, fmt.Errorf("sequential: %w", err)
		}
		res.Speedup = res.SequentialSeconds / res.Seconds
	}
	return res, nil
}

type countObserver struct{ n *atomic.Int64 }

func (c countObserver) Request(string, int, time.Duration)            { c.n.Add(1) }
func (c countObserver) RateLimited(string, string)                    {}
func (c countObserver) LimiterWait(stripeapi.Priority, time.Duration) {}

// customersFor seeds a small emulator to learn how many objects one
// customer brings, and scales.
func customersFor(objects int, dist string) (int, error) {
	e, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		return 0, err
	}
	const probe = 50
	if err := e.Seed(probe, dist); err != nil {
		return 0, err
	}
	total := countObjects(e)
	if total == 0 {
		return 0, errors.New("emulator seed produced no objects")
	}
	return max(1, int(math.Round(float64(objects)*probe/float64(total)))), nil
}

func countObjects(e *emulator.Emulator) int {
	total := 0
	for _, t := range benchTables(nil) {
		total += len(e.Objects(t)) // upcoming_invoices: none stored, not counted
	}
	return total
}

func benchTables(only []string) []string {
	want := map[string]bool{}
	for _, n := range only {
		want[n] = true
		if t, ok := schema.Lookup(n); ok && t.Parent != nil {
			want[t.Parent.Table] = true
		}
	}
	var out []string
	for _, t := range schema.Tables() {
		if len(only) > 0 && !want[t.Name] {
			continue
		}
		out = append(out, t.Name)
	}
	return out
}

func createDB(ctx context.Context, cl *pgcluster.Cluster, name string) (string, error) {
	conn, err := pgx.Connect(ctx, cl.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return cl.URL(name), nil
}

// sequential is the baseline: every list paged one request at a time with
// starting_after, per-parent lists for each customer, nested lists
// followed; pages are fetched only (no database writes, which favours the
// baseline).
func sequential(ctx context.Context, c *stripeapi.Client, tables []string) error {
	var customers, subscribed []string
	seenSub := map[string]bool{}
	perCustomer := map[string]string{
		"payment_methods": "/v1/customers/%s/payment_methods",
		"tax_ids":         "/v1/customers/%s/tax_ids",
	}
	for _, name := range tables {
		t, _ := schema.Lookup(name)
		if t.Parent != nil || t.Virtual || perCustomer[name] != "" {
			continue
		}
		q := url.Values{}
		if name == "subscriptions" {
			q.Set("status", "all")
		}
		err := c.ListAll(ctx, t.ListPath, q, func(p *stripeapi.Page) error {
			for _, raw := range p.Data {
				id, _, err := stripeapi.ObjectHeader(raw)
				if err != nil {
					return err
				}
				if name == "customers" {
					customers = append(customers, id)
				}
				if name == "subscriptions" {
					var sub struct{ Customer, Status string }
					_ = json.Unmarshal(raw, &sub)
					if sub.Status != "canceled" && sub.Status != "incomplete_expired" && !seenSub[sub.Customer] {
						seenSub[sub.Customer] = true
						subscribed = append(subscribed, sub.Customer)
					}
				}
				for _, n := range t.Nested {
					var f map[string]json.RawMessage
					_ = json.Unmarshal(raw, &f)
					var l struct {
						HasMore bool `json:"has_more"`
					}
					_ = json.Unmarshal(f[n.Field], &l)
					if !l.HasMore {
						continue
					}
					path, nq := n.ListPath, url.Values{}
					if strings.Contains(path, "{id}") {
						path = strings.ReplaceAll(path, "{id}", id)
					} else {
						nq.Set("subscription", id)
					}
					if err := c.ListAll(ctx, path, nq, func(*stripeapi.Page) error { return nil }); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if in(tables, "upcoming_invoices") {
		for _, cus := range subscribed {
			if _, err := c.Get(ctx, "/v1/invoices/upcoming", url.Values{"customer": {cus}}); err != nil && !stripeapi.IsNotFound(err) {
				return fmt.Errorf("upcoming invoice of %s: %w", cus, err)
			}
		}
	}
	for _, name := range tables {
		tmpl := perCustomer[name]
		if tmpl == "" {
			continue
		}
		for _, cus := range customers {
			err := c.ListAll(ctx, fmt.Sprintf(tmpl, cus), nil, func(*stripeapi.Page) error { return nil })
			if err != nil && !stripeapi.IsNotFound(err) {
				return fmt.Errorf("%s of %s: %w", name, cus, err)
			}
		}
	}
	return nil
}

func in(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sequentialRequests counts the requests sequential needs for the
// emulator's data: one per page of each list (at least one), per customer
// for the per-customer lists, and the pages of nested lists longer than the
// embedded 10.
func sequentialRequests(e *emulator.Emulator, tables []string) int64 {
	pages := func(n int) int64 { return int64(max(1, (n+99)/100)) }
	var total int64
	customers := len(e.Objects("customers"))
	if in(tables, "upcoming_invoices") {
		live := map[string]bool{}
		for _, raw := range e.Objects("subscriptions") {
			var sub struct{ Customer, Status string }
			_ = json.Unmarshal(raw, &sub)
			if sub.Status != "canceled" && sub.Status != "incomplete_expired" {
				live[sub.Customer] = true
			}
		}
		total += int64(len(live))
	}
	for _, name := range tables {
		if name == "upcoming_invoices" {
			continue
		}
		t, _ := schema.Lookup(name)
		switch {
		case name == "payment_methods" || name == "tax_ids":
			per := map[string]int{}
			for _, raw := range e.Objects(name) {
				var o struct {
					Customer json.RawMessage `json:"customer"`
				}
				_ = json.Unmarshal(raw, &o)
				var id string
				_ = json.Unmarshal(o.Customer, &id)
				per[id]++
			}
			total += int64(customers)
			for _, n := range per {
				total += pages(n) - 1
			}
		case t.Parent != nil:
			per := map[string]int{}
			for _, raw := range e.Objects(name) {
				var f map[string]json.RawMessage
				_ = json.Unmarshal(raw, &f)
				var id string
				_ = json.Unmarshal(f[t.Parent.Column], &id)
				per[id]++
			}
			for _, n := range per {
				if n > 10 {
					total += pages(n)
				}
			}
		default:
			total += pages(len(e.Objects(name)))
		}
	}
	return total
}

// peakRSSMB is the process's peak resident set (VmHWM), in MB.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return math.Round(kb/1024*10) / 10
			}
		}
	}
	return 0
}
