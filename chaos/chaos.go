package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/verify"
	"github.com/pgstripe/pgstripe/workload"
)

// workloadOps are the Stripe operations the chaos run makes around
// pgstripe: all of the workload's, so that every table gets objects
// created, changed and deleted while pgstripe is being killed.
var workloadOps = workload.Ops

// Options shape a chaos run. The zero value (plus Binary) is the short CI
// run: 3 kills, 2 Postgres restarts, 5% faults, 20 s of workload.
type Options struct {
	// Binary is the pgstripe binary to run; empty builds ./cmd/pgstripe.
	Binary string
	// Kills is the number of SIGKILLs of pgstripe serve (default 3; <0 none).
	// The first lands during the backfill, then they alternate between
	// "right after Stripe performed a write-through, before pgstripe heard
	// back" and a random moment of the events loop.
	Kills int
	// PGRestarts is the number of Postgres restarts (default 2; <0 none);
	// every second one is a crash (SIGKILL) instead of a clean shutdown.
	PGRestarts int
	// Faults is the share of pgstripe's Stripe requests that get a fault
	// (429, 500, 503, dropped connection before or after the request is
	// performed, timeout); default 0.05, <0 none.
	Faults float64
	// Duration of the workload after the backfill (default 20 s).
	Duration time.Duration
	// Seed is the number of customers the emulator starts with (default 40).
	Seed int
	// WorkloadRate is Stripe API operations per second made around
	// pgstripe (default 8).
	WorkloadRate float64
	// Writers is the number of clients writing through the proxy (default 2).
	Writers int
	// Instances is the number of pgstripe serve processes sharing the
	// database (default 1); with more, kills hit the sync leader during the
	// backfill, the instance that performed the write, or any.
	Instances int
	// RateLimit is PGSTRIPE_RATE_LIMIT (default 60).
	RateLimit float64
	// Settle bounds the wait for the tables to equal the emulator once the
	// workload stopped (default 120 s).
	Settle time.Duration
	// EventDelay makes the emulator's events list eventually consistent: an
	// event becomes visible after a random delay up to this (default 0).
	EventDelay time.Duration
	// Latency, LatencyMax: added latency per Stripe request (fixed, or a
	// uniform range when LatencyMax > Latency); more calls are in flight
	// when a kill lands.
	Latency, LatencyMax time.Duration
	// StripeRateLimit is the emulator's own rate limit in requests/s (real
	// 429s on top of the injected ones); 0 means none.
	StripeRateLimit int
	// RandSeed makes kill times and faults repeatable (default: time-based).
	RandSeed uint64
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// ServeLog receives pgstripe's own output; nil discards it.
	ServeLog io.Writer
}

// Result is what a run found. Missing, Extra, Stale and DuplicatesCreated
// must be 0 (see OK); the rest describes how hard the run was.
type Result struct {
	Kills               int `json:"kills"`
	KillsDuringBackfill int `json:"kills_during_backfill"`
	KillsDuringWrite    int `json:"kills_during_write"` // after Stripe performed a write-through, before its response
	KillsDuringEvents   int `json:"kills_during_events"`
	PGRestarts          int `json:"pg_restarts"`
	UnexpectedExits     int `json:"unexpected_exits"` // serve exits nobody caused (restarted too)

	// Tables vs the emulator at the end (verify.Compare): a row is missing
	// when Stripe has the object and the table doesn't, extra the other way
	// round, stale when both have it and _raw differs from the object as a
	// GET returns it (compared as JSON values, every field).
	Missing int `json:"missing"`
	Extra   int `json:"extra"`
	Stale   int `json:"stale"`
	// DuplicatesCreated counts Stripe objects beyond the first per
	// write-through marker (every INSERT through the proxy carries a unique
	// metadata.chaos_marker and is never retried by the client).
	DuplicatesCreated int `json:"duplicates_created"`
	// LostWrites are write-through creates the client was told succeeded
	// whose object Stripe doesn't have (and the client didn't delete).
	LostWrites int `json:"lost_writes"`
	// NotLive counts stripe_sync.status rows not in phase 'live' (or with a
	// last_error) once the tables are equal: status must tell the truth.
	NotLive int `json:"status_not_live"`
	// FailedButCreated are INSERTs that got an error (pgstripe killed
	// mid-call) whose object does exist in Stripe: the honest outcome of a
	// crash after the call; sync must still bring them in.
	FailedButCreated int `json:"failed_but_created"`

	WritesOK      int `json:"writes_ok"`
	WritesFailed  int `json:"writes_failed"`
	WriteConnErrs int `json:"write_conn_errors"`
	// WriteErrors counts the other write errors by SQLSTATE: errors a
	// client saw although its connection held (none expected).
	WriteErrors  map[string]int `json:"write_errors_by_sqlstate,omitempty"`
	ReadMisses   int            `json:"read_after_write_misses"`
	UpdateMisses int            `json:"update_misses"`

	WorkloadOps    int              `json:"workload_ops"`
	WorkloadFailed int              `json:"workload_failed"`
	FaultsInjected int64            `json:"faults_injected"`
	FaultsByKind   map[string]int64 `json:"faults_by_kind"`
	StripeRequests int64            `json:"stripe_requests"`
	StripeByStatus map[int]int64    `json:"stripe_by_status"` // as the emulator answered (injected faults apart)
	Objects        int              `json:"objects"`          // in the emulator at the end
	ServeStarts    int              `json:"serve_starts"`
	CleanShutdown  bool             `json:"clean_shutdown"`

	BackfillSeconds float64 `json:"backfill_seconds"`
	SettleSeconds   float64 `json:"settle_seconds"` // workload stop → tables equal
	Seconds         float64 `json:"seconds"`

	Details []string `json:"details,omitempty"` // first differences, errors
}

// OK reports whether the run met the contract: tables exact, no duplicate
// or lost write, no read-your-write miss, a clean final shutdown.
func (r Result) OK() bool {
	return r.Missing == 0 && r.Extra == 0 && r.Stale == 0 && r.DuplicatesCreated == 0 && r.LostWrites == 0 && r.NotLive == 0 &&
		r.ReadMisses == 0 && r.UpdateMisses == 0 && r.CleanShutdown
}

// Failure is nil when the run is OK, else says what went wrong.
func (r Result) Failure() error {
	if r.OK() {
		return nil
	}
	return fmt.Errorf("%d missing, %d extra, %d stale, %d duplicates, %d lost writes, %d read-your-write misses, %d update misses, %d status rows not live, clean shutdown %v; %v",
		r.Missing, r.Extra, r.Stale, r.DuplicatesCreated, r.LostWrites, r.ReadMisses, r.UpdateMisses, r.NotLive, r.CleanShutdown, r.Details)
}

const apiKey = "sk_test_chaosRunKeyDoNotLog4242"

func (o *Options) defaults() {
	if o.Kills == 0 {
		o.Kills = 3
	}
	if o.Kills < 0 {
		o.Kills = 0
	}
	if o.PGRestarts == 0 {
		o.PGRestarts = 2
	}
	if o.PGRestarts < 0 {
		o.PGRestarts = 0
	}
	if o.Faults == 0 {
		o.Faults = 0.05
	}
	if o.Faults < 0 {
		o.Faults = 0
	}
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.Seed <= 0 {
		o.Seed = 40
	}
	if o.WorkloadRate <= 0 {
		o.WorkloadRate = 8
	}
	if o.Writers <= 0 {
		o.Writers = 2
	}
	if o.Instances <= 0 {
		o.Instances = 1
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 60
	}
	if o.Settle <= 0 {
		o.Settle = 120 * time.Second
	}
	if o.RandSeed == 0 {
		o.RandSeed = uint64(time.Now().UnixNano())
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.ServeLog == nil {
		o.ServeLog = io.Discard
	}
}

// Run performs one chaos run: a throwaway Postgres, an in-process emulator
// behind a fault injector, `pgstripe serve` as a subprocess, a random
// workload on the Stripe API and writers through the proxy, SIGKILLs of
// serve and Postgres restarts; then it stops the load, waits for sync to
// catch up and compares. An error means the run could not be carried out;
// a run that found problems returns a Result whose OK is false.
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	began := time.Now()
	var res Result
	logf := func(format string, args ...any) {
		fmt.Fprintf(o.Log, "%s chaos: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	rng := rand.New(rand.NewPCG(o.RandSeed, 7))
	logf("seed %d, %d kills, %d Postgres restarts, faults %.2f, workload %v, event delay %v, latency %v-%v",
		o.RandSeed, o.Kills, o.PGRestarts, o.Faults, o.Duration, o.EventDelay, o.Latency, max(o.Latency, o.LatencyMax))

	if o.Binary == "" {
		dir, err := os.MkdirTemp("", "pgstripe-chaos-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		if o.Binary, err = Build(ctx, dir); err != nil {
			return res, err
		}
	}

	// Postgres. The run crashes it (SIGKILL): with the throwaway
	// cluster's synchronous_commit=off, Postgres itself would forget
	// commits it acknowledged in the last ~200 ms (a write-through's
	// apply the client already read back), which no sync can make right
	// and no production setting does. fsync stays off: the OS survives.
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"synchronous_commit": "on"}})
	if err != nil {
		return res, err
	}
	defer cluster.Stop()
	if err := exec1(ctx, cluster.URL("postgres"), `CREATE DATABASE chaos`); err != nil {
		return res, err
	}
	dbURL := cluster.URL("chaos")

	// Stripe: the emulator, reached by pgstripe through the fault injector
	// and by the workload directly (its faults are not the point).
	emuLimit := -1
	if o.StripeRateLimit > 0 {
		emuLimit = o.StripeRateLimit
	}
	emu, err := emulator.New(emulator.Options{RateLimit: emuLimit, Seed: o.Seed, EventDelay: o.EventDelay, Latency: o.Latency, LatencyMax: o.LatencyMax})
	if err != nil {
		return res, err
	}
	defer emu.Close()
	cleanURL, stopClean, err := serveHTTP(emu)
	if err != nil {
		return res, err
	}
	defer stopClean()
	wclient, err := stripeapi.New(stripeapi.Config{APIKey: apiKey, BaseURL: cleanURL, RateLimit: 1000})
	if err != nil {
		return res, err
	}
	work := workload.New(wclient, o.RandSeed)
	if err := work.Seed(ctx); err != nil {
		return res, err
	}

	// The instances: each reaches Stripe through its own injector (so a
	// performed write tells which instance to kill) and serves its own
	// proxy; one of them is the sync leader at a time.
	serveOut := &lockedWriter{w: o.ServeLog}
	insts := make([]*instance, o.Instances)
	for i := range insts {
		in := &instance{inj: NewInjector(emu, 0, o.RandSeed+uint64(i)*7919)}
		faultyURL, stopFaulty, err := serveHTTP(in.inj)
		if err != nil {
			return res, err
		}
		defer stopFaulty()
		proxyAddr, err := freeAddr()
		if err != nil {
			return res, err
		}
		metricsAddr, err := freeAddr()
		if err != nil {
			return res, err
		}
		in.metrics = "http://" + metricsAddr
		in.sp = &serveProc{
			bin: o.Binary, out: serveOut, healthz: in.metrics + "/healthz", name: fmt.Sprintf("instance %d", i),
			env: []string{"DATABASE_URL=" + dbURL, "STRIPE_API_KEY=" + apiKey, "STRIPE_API_BASE=" + faultyURL,
				"PGSTRIPE_LISTEN=" + proxyAddr, "PGSTRIPE_METRICS_LISTEN=" + metricsAddr,
				fmt.Sprintf("PGSTRIPE_RATE_LIMIT=%g", o.RateLimit), "PGSTRIPE_POLL_INTERVAL=250ms", "PGSTRIPE_LOG_FORMAT=json"},
		}
		pu, _ := url.Parse(dbURL)
		pu.Host = proxyAddr
		in.proxyURL = pu.String()
		in.inj.SetRate(o.Faults)
		if err := in.sp.start(); err != nil {
			return res, err
		}
		defer in.sp.stop()
		insts[i] = in
	}

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return res, err
	}
	defer pool.Close()

	restartServe := func(in *instance) {
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		if err := in.sp.start(); err != nil {
			logf("restart failed: %v", err)
		}
	}
	// The leader is the instance to kill during the backfill (the others
	// don't sync); with one instance, that one.
	leaderOf := func() *instance {
		if len(insts) == 1 {
			return insts[0]
		}
		for _, in := range insts {
			if in.isLeader() {
				return in
			}
		}
		return insts[rng.IntN(len(insts))]
	}

	// The workload runs from the start, so the backfill races it.
	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); work.Run(wctx, workloadOps, o.WorkloadRate) }()

	// The first kills (one in five, at least one) during the backfill, for
	// as long as it lasts: each restart must resume it, not start over.
	kills := 0
	for want := max(1, o.Kills/5); kills < min(want, o.Kills); {
		if err := waitPhase(ctx, pool, "backfilling", 10*time.Second); err != nil {
			if kills > 0 {
				break // the backfill is over; the rest land later
			}
			logf("no backfill phase seen (%v); killing anyway", err)
		}
		time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
		during := backfilling(ctx, pool)
		victim := leaderOf()
		victim.sp.kill()
		kills++
		if during {
			res.KillsDuringBackfill++
		} else {
			res.KillsDuringEvents++
		}
		logf("kill %d of %s (backfill: %v)", kills, victim.sp.name, during)
		restartServe(victim)
	}
	for _, in := range insts {
		if err := in.sp.waitReady(ctx, 60*time.Second); err != nil {
			return res, err
		}
	}
	if err := waitLive(ctx, pool, 120*time.Second); err != nil {
		return res, fmt.Errorf("sync never went live: %w", err)
	}
	res.BackfillSeconds = time.Since(began).Seconds()
	logf("live after %.1fs", res.BackfillSeconds)

	// Writers through the proxy.
	writers := make([]*writer, o.Writers)
	for i := range writers {
		writers[i] = newWriter(insts[i%len(insts)].proxyURL, i)
		wg.Add(1)
		go func(w *writer) { defer wg.Done(); w.run(wctx, 150*time.Millisecond) }(writers[i])
	}

	// The rest: kills and Postgres restarts at random moments of Duration.
	type event struct {
		at   time.Duration
		kind string
	}
	var plan []event
	for range o.Kills - kills {
		plan = append(plan, event{time.Duration(rng.Int64N(int64(o.Duration))), "kill"})
	}
	for i := range o.PGRestarts {
		slot := o.Duration / time.Duration(o.PGRestarts+1)
		plan = append(plan, event{slot*time.Duration(i+1) + time.Duration(rng.Int64N(int64(slot/4)+1)), "pg"})
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].at < plan[j].at })
	start := time.Now()
	pgRestarts := 0
	writeKill := true
	var writeKilled atomic.Bool
	for _, ev := range plan {
		if d := time.Until(start.Add(ev.at)); d > 0 {
			sleep(ctx, d)
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		switch ev.kind {
		case "pg":
			pgRestarts++
			if pgRestarts%2 == 0 {
				logf("Postgres crash (SIGKILL) and restart")
				cluster.Kill()
			} else {
				logf("Postgres restart")
			}
			// After a crash the old backends may hold the shared memory for
			// a moment; a real supervisor retries too.
			for try := 1; ; try++ {
				err := cluster.Restart(ctx)
				if err == nil {
					break
				}
				if try == 20 {
					return res, fmt.Errorf("restart Postgres: %w", err)
				}
				logf("Postgres restart failed, retrying: %.200s", err)
				sleep(ctx, 500*time.Millisecond)
			}
			res.PGRestarts++
		case "kill":
			kills++
			if writeKill {
				// Armed: the next write-through Stripe performs kills serve
				// before the response can reach it.
				writeKilled.Store(false)
				armed := make(chan struct{})
				var once sync.Once
				var victim *instance
				for _, in := range insts {
					in.inj.OnPerformed(func(r Request) {
						if !isWriterRequest(r) {
							return
						}
						once.Do(func() {
							victim = in
							in.sp.kill()
							writeKilled.Store(true)
							close(armed)
						})
					})
				}
				select {
				case <-armed:
				case <-time.After(5 * time.Second):
					once.Do(func() { victim = leaderOf(); victim.sp.kill(); close(armed) })
				}
				for _, in := range insts {
					in.inj.OnPerformed(nil)
				}
				if writeKilled.Load() {
					res.KillsDuringWrite++
				} else {
					res.KillsDuringEvents++
				}
				logf("kill %d of %s (write-through performed, not answered: %v)", kills, victim.sp.name, writeKilled.Load())
				restartServe(victim)
			} else {
				during := backfilling(ctx, pool)
				victim := leaderOf()
				if rng.IntN(2) == 0 {
					victim = insts[rng.IntN(len(insts))]
				}
				victim.sp.kill()
				if during {
					res.KillsDuringBackfill++
				} else {
					res.KillsDuringEvents++
				}
				logf("kill %d of %s (backfill: %v)", kills, victim.sp.name, during)
				restartServe(victim)
			}
			writeKill = !writeKill
		}
	}
	if d := time.Until(start.Add(o.Duration)); d > 0 {
		sleep(ctx, d)
	}
	res.Kills = kills
	stopWork()
	wg.Wait()
	stoppedAt := time.Now()
	logf("workload stopped; waiting for sync to catch up")

	// Settle: the tables must come to equal the emulator.
	for _, in := range insts {
		if err := in.sp.waitReady(ctx, 60*time.Second); err != nil {
			return res, err
		}
	}
	var diff verify.Diff
	zeroes := 0
	for deadline := time.Now().Add(o.Settle); ; {
		diff, err = verify.Compare(ctx, pool, emu)
		if err == nil && diff.Total() == 0 {
			zeroes++
			if zeroes == 1 {
				res.SettleSeconds = time.Since(stoppedAt).Seconds()
			}
			if zeroes == 3 { // and it stays so
				break
			}
		} else {
			zeroes = 0
		}
		if time.Now().After(deadline) {
			break
		}
		sleep(ctx, time.Second)
	}
	if err != nil {
		return res, err
	}
	if zeroes == 0 {
		res.SettleSeconds = time.Since(stoppedAt).Seconds()
	}
	res.Missing, res.Extra, res.Stale = diff.Missing, diff.Extra, diff.Stale
	res.Details = append(res.Details, diff.Details...)
	rows, err := pool.Query(ctx, `SELECT object, phase, coalesce(last_error, '') FROM stripe_sync.status WHERE phase <> 'live' OR coalesce(last_error, '') <> ''`)
	if err != nil {
		return res, err
	}
	for rows.Next() {
		var object, phase, lastErr string
		if err := rows.Scan(&object, &phase, &lastErr); err != nil {
			rows.Close()
			return res, err
		}
		res.NotLive++
		res.Details = append(res.Details, fmt.Sprintf("status: %s is %s (%s)", object, phase, lastErr))
	}
	rows.Close()

	// Duplicates and lost writes, by marker.
	byMarker := map[string][]string{}
	for id, raw := range emu.Objects("customers") {
		var c struct {
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(raw, &c) == nil && c.Metadata[markerKey] != "" {
			byMarker[c.Metadata[markerKey]] = append(byMarker[c.Metadata[markerKey]], id)
		}
	}
	for m, ids := range byMarker {
		if len(ids) > 1 {
			res.DuplicatesCreated += len(ids) - 1
			res.Details = append(res.Details, fmt.Sprintf("duplicate create for marker %s: %s", m, strings.Join(ids, ", ")))
		}
	}
	for _, w := range writers {
		w.mu.Lock()
		for m, id := range w.confirmed {
			if _, ok := byMarker[m]; !ok && !w.deleted[id] {
				res.LostWrites++
				res.Details = append(res.Details, fmt.Sprintf("confirmed create %s (%s) not in Stripe", id, m))
			}
		}
		for m := range w.tried {
			if _, ok := w.confirmed[m]; !ok && len(byMarker[m]) > 0 {
				res.FailedButCreated++
			}
		}
		s := w.stats
		res.WritesOK += s.Inserts + s.Updates + s.Deletes
		res.WritesFailed += s.Failed
		res.WriteConnErrs += s.ConnErrors
		res.ReadMisses += s.ReadMisses
		res.UpdateMisses += s.UpdateMisses
		for code, n := range w.codes {
			if res.WriteErrors == nil {
				res.WriteErrors = map[string]int{}
			}
			res.WriteErrors[code] += n
		}
		for k, v := range w.lastErr {
			if k != "conn" {
				res.Details = append(res.Details, fmt.Sprintf("writer %d: %s: %s", w.id, k, v))
			}
		}
		w.mu.Unlock()
	}
	res.WorkloadOps, res.WorkloadFailed = work.Totals()
	if f := work.Failures(); f != "" {
		res.Details = append(res.Details, "workload: "+f)
	}
	res.FaultsByKind = map[string]int64{}
	for _, in := range insts {
		res.FaultsInjected += in.inj.Total()
		for k, n := range in.inj.Counts() {
			res.FaultsByKind[k] += n
		}
	}
	st := emu.Stats()
	res.StripeRequests, res.StripeByStatus = st.Total, st.ByStatus
	for _, n := range st.Objects {
		res.Objects += n
	}

	res.CleanShutdown = true
	for _, in := range insts {
		if err := in.sp.stop(); err != nil {
			res.CleanShutdown = false
			res.Details = append(res.Details, in.sp.name+": "+err.Error())
		}
		starts, unexpected, last := in.sp.counts()
		res.ServeStarts += starts
		res.UnexpectedExits += unexpected
		if unexpected > 0 {
			res.Details = append(res.Details, in.sp.name+": last unexpected exit: "+last)
		}
	}
	res.Seconds = time.Since(began).Seconds()
	logf("done: %d kills, missing %d, extra %d, stale %d, duplicates %d", res.Kills, res.Missing, res.Extra, res.Stale, res.DuplicatesCreated)
	return res, nil
}

// isWriterRequest: a write-through create of the chaos writers (the case
// where a lost response could turn into a duplicate).
func isWriterRequest(r Request) bool {
	return r.Method == http.MethodPost && r.Path == "/v1/customers" && r.Form.Get("metadata["+markerKey+"]") != ""
}

func backfilling(ctx context.Context, pool *pgxpool.Pool) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE phase IN ('pending', 'backfilling')`).Scan(&n)
	return err == nil && n > 0
}

func waitPhase(ctx context.Context, pool *pgxpool.Pool, phase string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE phase = $1`, phase).Scan(&n)
		if err == nil && n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no object in phase %s after %v (last error: %v)", phase, timeout, err)
		}
		sleep(ctx, 20*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func waitLive(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var notLive, total int
		err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE phase <> 'live'), count(*) FROM stripe_sync.status`).Scan(&notLive, &total)
		if err == nil && total > 0 && notLive == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var which []string
			rows, qerr := pool.Query(ctx, `SELECT object || ' ' || phase || coalesce(': ' || last_error, '') FROM stripe_sync.status WHERE phase <> 'live' ORDER BY object`)
			if qerr == nil {
				which, qerr = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			return fmt.Errorf("not live after %v (%d of %d not live: %s; %v)", timeout, notLive, total, strings.Join(which, ", "), errors.Join(err, qerr))
		}
		sleep(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func exec1(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// serveHTTP serves h on a loopback port.
func serveHTTP(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ErrorLog: nil}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}, nil
}

// instance is one pgstripe serve of the run.
type instance struct {
	sp       *serveProc
	inj      *Injector
	proxyURL string
	metrics  string // http://host:port
}

// isLeader reads pgstripe_sync_leader from the instance's /metrics.
func (in *instance) isLeader() bool {
	c := &http.Client{Timeout: 500 * time.Millisecond}
	res, err := c.Get(in.metrics + "/metrics")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return strings.Contains(string(b), "\npgstripe_sync_leader 1")
}
