package proxybench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// LatencyResult is the round-trip latency of one target, in microseconds.
type LatencyResult struct {
	Target string  `json:"target"`
	P10    float64 `json:"p10_us"`
	P50    float64 `json:"p50_us"`
	P90    float64 `json:"p90_us"`
	// Cost is a proxy's cost per transaction (nil for direct).
	Cost *PerTx `json:"cost,omitempty"`
}

// Latency measures single-client transaction latency (pgbench -S -c 1 -t n
// -l, simple protocol) directly and through the proxy (and the Compare
// proxy, the round-trip forwarder and PgBouncer, as opts ask), alternating
// for rounds rounds. Low percentiles say what the path costs when the
// machine lets it run, which TPS on a loaded machine cannot.
func Latency(ctx context.Context, opts Options, n int) ([]LatencyResult, error) {
	if opts.Rounds == 0 {
		opts.Rounds = 5
	}
	targets, stop, err := startTargets(ctx, opts, opts.CompareRoundTrip)
	if err != nil {
		return nil, err
	}
	defer stop()
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	samples := make([][]time.Duration, len(targets))
	cost := make([]counters, len(targets))
	for round := 0; round < opts.Rounds; round++ {
		for k := range targets {
			i := (k + round) % len(targets)
			// pgbench -l logs every transaction's latency (µs, 3rd field).
			cmd := exec.CommandContext(ctx, "pgbench", "-S", "-n", "-M", "simple", "-c", "1", "-t", strconv.Itoa(n), "-l",
				"-h", "127.0.0.1", "-p", strconv.Itoa(targets[i].port), "-U", "postgres", "postgres")
			cmd.Dir = dir
			before := readCounters()
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("pgbench: %v: %s", err, out)
			}
			cost[i].add(before, int64(n))
			logs, _ := filepath.Glob(filepath.Join(dir, "pgbench_log.*"))
			for _, l := range logs {
				b, err := os.ReadFile(l)
				if err != nil {
					return nil, err
				}
				for _, line := range strings.Split(string(b), "\n") {
					f := strings.Fields(line)
					if len(f) >= 3 {
						if us, err := strconv.Atoi(f[2]); err == nil {
							samples[i] = append(samples[i], time.Duration(us)*time.Microsecond)
						}
					}
				}
				os.Remove(l)
			}
		}
	}
	var out []LatencyResult
	for i, s := range samples {
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		pct := func(p float64) float64 { return round1(float64(s[int(p*float64(len(s)-1))].Nanoseconds()) / 1e3) }
		r := LatencyResult{Target: targets[i].name, P10: pct(0.10), P50: pct(0.50), P90: pct(0.90)}
		if targets[i].inProcess {
			r.Cost = cost[i].perTx()
		}
		out = append(out, r)
	}
	return out, nil
}
