package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/chaos"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill/backfillbench"
	"github.com/pgstripe/pgstripe/sync/events/lagbench"
	"github.com/pgstripe/pgstripe/writethrough"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// runBench runs the command as main would and returns its exit status,
// stdout and stderr. Whatever the code writes to os.Stdout or os.Stderr
// directly is captured too: the acceptance checks see the process's streams.
func runBench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	capture := func(f **os.File) func() string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := *f
		*f = w
		var buf bytes.Buffer
		done := make(chan struct{})
		go func() { io.Copy(&buf, r); close(done) }()
		return func() string {
			*f = old
			w.Close()
			<-done
			r.Close()
			return buf.String()
		}
	}
	stdoutDirect, stderrDirect := capture(&os.Stdout), capture(&os.Stderr)
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, stdoutDirect() + out.String(), stderrDirect() + errOut.String()
}

// lastJSON parses the last line of stdout, which must be the only line.
func lastJSON(t *testing.T, stdout string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines, want the JSON alone: %q", len(lines), stdout)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("last line is not a JSON object: %v: %q", err, lines[0])
	}
	return m
}

// numbers returns the named fields, failing unless each is a JSON number.
func numbers(t *testing.T, m map[string]any, fields ...string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, f := range fields {
		v, ok := m[f].(float64)
		if !ok {
			t.Errorf("field %q = %#v, want a number", f, m[f])
			continue
		}
		out[f] = v
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// A bad flag value is one line on stderr and a non-zero status, before
// anything starts: not the flag package's usage dump, not a panic, not a
// silent fallback to a default.
func TestBadFlagValues(t *testing.T) {
	for _, args := range [][]string{
		{"backfill", "--rate", "abc"},
		{"backfill", "--latency", "300ms-50ms"},
		{"backfill", "--objects", "-5"},
		{"backfill", "--distribution", "bogus"},
		{"lag", "--event-delay", "xyz"},
		{"lag", "--duration", "-1s"},
		{"lag", "--mutations", "0/s"},
		{"proxy", "--rounds", "-1"}, // used to panic in median()
		{"proxy", "--seconds", "0"},
		{"proxy", "--modes", "bogus"},
		{"write", "--n", "0"},
		{"write", "--n", "x"},
		{"chaos", "--faults", "abc"},
		{"chaos", "--faults", "2"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runBench(t, args...)
			if code == 0 {
				t.Errorf("exit status 0")
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if n := strings.Count(stderr, "\n"); n != 1 || !strings.HasPrefix(stderr, "pgstripe-bench "+args[0]+": ") {
				t.Errorf("stderr has %d lines, want one naming the scenario:\n%s", n, stderr)
			}
		})
	}
	// -h is not an error: usage on stderr, status 0.
	code, stdout, stderr := runBench(t, "backfill", "-h")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "-latency") {
		t.Errorf("backfill -h: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// A run whose verification found wrong rows prints its figures as the last
// line of stdout and exits non-zero, whatever the scenario.
func TestVerificationFailureExitsNonZero(t *testing.T) {
	cases := map[string]struct {
		res   any
		field string
	}{
		"backfill": {backfillbench.Result{Missing: 2, Wrong: map[string][3]int{"customers": {2, 0, 0}}}, "missing"},
		"lag":      {lagbench.Result{Stale: 1}, "stale"},
		"write":    {writeResult{Extra: 1}, "extra"},
		"chaos":    {chaos.Result{DuplicatesCreated: 1, CleanShutdown: true}, "duplicates_created"},
		"memory":   {memoryResult{Stale: 3}, "stale"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			sc := "review-" + name
			register(sc, "test", func(context.Context, []string, io.Writer) (any, error) { return c.res, nil })
			defer delete(scenarios, sc)
			code, stdout, stderr := runBench(t, sc)
			if code == 0 {
				t.Errorf("exit status 0 for a result with wrong rows")
			}
			m := lastJSON(t, stdout)
			if v, _ := m[c.field].(float64); v == 0 {
				t.Errorf("JSON %s = %v, want the failure reported", c.field, m[c.field])
			}
			if !strings.Contains(stderr, "verification failed") {
				t.Errorf("stderr %q does not say why", stderr)
			}
		})
	}
	// And a clean result exits 0.
	register("review-ok", "test", func(context.Context, []string, io.Writer) (any, error) { return backfillbench.Result{}, nil })
	defer delete(scenarios, "review-ok")
	if code, stdout, _ := runBench(t, "review-ok"); code != 0 {
		t.Errorf("clean result: exit status %d", code)
	} else {
		lastJSON(t, stdout)
	}
}

// backfill takes the contract's --latency MIN-MAX, and its JSON holds every
// field of CONTRACT §7 as numbers that agree with each other.
func TestBackfillLatencyRangeAndFields(t *testing.T) {
	code, stdout, stderr := runBench(t, "backfill", "--objects", "150", "--distribution", "same-second",
		"--rate", "400", "--latency", "1ms-3ms", "--seq-budget", "1s")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	m := lastJSON(t, stdout)
	if m["distribution"] != "same-second" {
		t.Errorf("distribution %v", m["distribution"])
	}
	v := numbers(t, m, "objects", "requests", "seconds", "rate_limit", "achieved_rps", "utilization", "limit_fraction",
		"sequential_seconds", "speedup", "missing", "extra", "stale", "rss_mb", "latency_ms", "latency_max_ms")
	if t.Failed() {
		return
	}
	if v["latency_ms"] != 1 || v["latency_max_ms"] != 3 {
		t.Errorf("latency %v-%v ms, want 1-3", v["latency_ms"], v["latency_max_ms"])
	}
	if v["missing"]+v["extra"]+v["stale"] != 0 || v["objects"] < 50 || v["requests"] <= 0 || v["rss_mb"] <= 0 {
		t.Errorf("implausible: %v", v)
	}
	if !near(v["achieved_rps"], v["requests"]/v["seconds"]) || !near(v["utilization"], v["achieved_rps"]/v["rate_limit"]) ||
		!near(v["limit_fraction"], v["objects"]/v["seconds"]/(v["rate_limit"]*100)) || !near(v["speedup"], v["sequential_seconds"]/v["seconds"]) {
		t.Errorf("figures disagree: %v", v)
	}
}

// lag takes --latency MIN-MAX too, and reports the contract's fields.
func TestLagLatencyRangeAndFields(t *testing.T) {
	code, stdout, stderr := runBench(t, "lag", "--duration", "1s", "--mutations", "10/s", "--event-delay", "200ms", "--latency", "1ms-2ms")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	m := lastJSON(t, stdout)
	v := numbers(t, m, "events", "p50_ms", "p95_ms", "p99_ms", "missing", "stale", "latency_max_ms")
	if t.Failed() {
		return
	}
	if v["events"] <= 0 || v["missing"]+v["stale"] != 0 || !(v["p50_ms"] <= v["p95_ms"] && v["p95_ms"] <= v["p99_ms"]) || v["latency_max_ms"] != 2 {
		t.Errorf("implausible: %v", v)
	}
}

// write checks its rows against the emulator: the JSON has missing, extra
// and stale, and all are zero after an honest run.
func TestWriteVerified(t *testing.T) {
	code, stdout, stderr := runBench(t, "write", "--n", "5")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	v := numbers(t, lastJSON(t, stdout), "n", "p50_ms", "p99_ms", "stripe_p50_ms", "overhead_p50_ms", "missing", "extra", "stale")
	if v["missing"]+v["extra"]+v["stale"] != 0 || v["n"] != 5 {
		t.Errorf("implausible: %v", v)
	}
}

// compareWrites counts what it finds, not a constant: a deleted row is
// missing, an altered one stale, a row Stripe doesn't have extra.
func TestCompareWritesCountsDifferences(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDB(t)
	conn := pgtest.Connect(t, url)
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	emu, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	defer srv.Close()
	client, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_review", BaseURL: srv.URL, RateLimit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writethrough.BenchWrite(ctx, writethrough.WriteBench{DatabaseURL: url, Stripe: client, N: 4}); err != nil {
		t.Fatal(err)
	}
	check := func(wantM, wantX, wantS int) {
		t.Helper()
		m, x, s, err := compareWrites(ctx, conn, emu)
		if err != nil {
			t.Fatal(err)
		}
		if m != wantM || x != wantX || s != wantS {
			t.Errorf("missing/extra/stale %d/%d/%d, want %d/%d/%d", m, x, s, wantM, wantX, wantS)
		}
	}
	check(0, 0, 0)
	var ids []string
	rows, _ := conn.Query(ctx, `SELECT id FROM stripe.customers ORDER BY id`)
	ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(ids) != 5 { // 4 writes and the warm-up
		t.Fatalf("ids %v, %v", ids, err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`DELETE FROM stripe.customers WHERE id = $1`, ids[0])
	exec(`UPDATE stripe.customers SET _raw = jsonb_set(_raw, '{email}', '"changed@x.test"') WHERE id = $1`, ids[1])
	exec(`UPDATE stripe.customers SET id = 'cus_notinstripe' WHERE id = $1`, ids[3])
	// ids[3] moved: it is missing under its own id and extra under the new one.
	check(2, 1, 1)
}

// TestLagWorkloadFlag: lag runs the random workload alongside when
// asked (--workload 5/s) and says how much of it ran; by default it runs
// none, and a bad value is one line naming the flag.
func TestLagWorkloadFlag(t *testing.T) {
	code, stdout, stderr := runBench(t, "lag", "--duration", "1s", "--mutations", "5/s", "--workload", "5/s")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	if v := numbers(t, lastJSON(t, stdout), "workload_ops", "workload_failed"); v["workload_ops"] <= 0 || v["workload_failed"] != 0 {
		t.Errorf("--workload 5/s: %v", v)
	}
	code, stdout, stderr = runBench(t, "lag", "--duration", "1s", "--mutations", "5/s")
	if code != 0 {
		t.Fatalf("default --workload: exit status %d: %s", code, stderr)
	}
	if v := numbers(t, lastJSON(t, stdout), "workload_ops"); v["workload_ops"] != 0 {
		t.Errorf("default --workload: %v", v)
	}
	code, stdout, stderr = runBench(t, "lag", "--workload", "lots")
	if code == 0 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--workload") {
		t.Errorf("--workload lots: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
