package proxybench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/proxy"
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
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	targets := []string{c.Addr()}
	names := []string{"direct"}
	for k, cfg := range []*proxy.Config{&opts.Proxy, opts.Compare} {
		if cfg == nil {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		pc := *cfg
		pc.Upstream = upstreamAddr(c, []bool{opts.ProxyUnix, opts.CompareUnix}[k])
		p := proxy.New(pc)
		pctx, cancel := context.WithCancel(ctx)
		served := make(chan error, 1)
		go func() { served <- p.Serve(pctx, ln) }()
		defer func() { cancel(); <-served }()
		targets = append(targets, ln.Addr().String())
		names = append(names, []string{"proxy", "compare"}[k])
	}
	if opts.CompareRoundTrip {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go serveRoundTrip(rctx, ln, c.Addr())
		targets = append(targets, ln.Addr().String())
		names = append(names, "roundtrip")
	}
	if opts.PgBouncer {
		port, stop, err := startPgBouncer(ctx, c, opts.ProxyUnix)
		if err != nil {
			return nil, err
		}
		defer stop()
		targets = append(targets, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		names = append(names, "pgbouncer")
	}
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-s", "1", "-q", "-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
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
			host, port, _ := net.SplitHostPort(targets[i])
			// pgbench -l logs every transaction's latency (µs, 3rd field).
			cmd := exec.CommandContext(ctx, "pgbench", "-S", "-n", "-M", "simple", "-c", "1", "-t", strconv.Itoa(n), "-l",
				"-h", host, "-p", port, "-U", "postgres", "postgres")
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
		r := LatencyResult{Target: names[i], P10: pct(0.10), P50: pct(0.50), P90: pct(0.90)}
		if i > 0 && names[i] != "pgbouncer" {
			r.Cost = cost[i].perTx() // the proxies run in this process
		}
		out = append(out, r)
	}
	return out, nil
}
