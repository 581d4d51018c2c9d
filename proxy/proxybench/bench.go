// Package proxybench measures the proxy's overhead: pgbench -S (select-only)
// directly against Postgres and through the proxy, alternating in one run so
// that machine noise hits both alike, and reports TPS ratios.
package proxybench

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pgstripe/pgstripe/proxy"
)

// Options configure a run.
type Options struct {
	Clients []int    // pgbench -c values (default 1 and 8)
	Modes   []string // pgbench -M values (default simple, extended, prepared)
	Seconds int      // duration of each pgbench run (default 5)
	Rounds  int      // alternating direct/proxy rounds per case (default 3)
	// Proxy tunes the proxy under test (Upstream and Listen are set here).
	Proxy proxy.Config
	// Compare, when set, is a second proxy configuration measured in the
	// same rounds (e.g. the other upstream transport); its figures are
	// reported as CompareTPS / CompareRatio.
	Compare *proxy.Config
	// ProxyUnix and CompareUnix make the proxy (resp. the Compare proxy)
	// connect to Postgres through its Unix socket instead of loopback TCP.
	ProxyUnix, CompareUnix bool
	// CompareRoundTrip, in latency runs, adds a minimal one-goroutine
	// round-trip forwarder as a target (an experiment: see roundtrip.go).
	CompareRoundTrip bool
	// PgBouncer adds PgBouncer (session mode, reaching Postgres the way
	// the proxy does) as a target in the same rounds: the reference for
	// what a proxy costs on this machine.
	PgBouncer bool
	// Log receives one line per pgbench run; nil discards.
	Log io.Writer
}

// Case is one (mode, clients) measurement.
type Case struct {
	Mode      string  `json:"mode"`
	Clients   int     `json:"clients"`
	DirectTPS float64 `json:"direct_tps"`
	ProxyTPS  float64 `json:"proxy_tps"`
	// Ratio is ProxyTPS ÷ DirectTPS (the means over the rounds), so that
	// the three figures agree; MedianRatio, the median of the per-round
	// ratios, is less sensitive to one noisy round.
	Ratio       float64   `json:"ratio"`
	MedianRatio float64   `json:"median_round_ratio"`
	Ratios      []float64 `json:"round_ratios"`

	// ProxyCPUMicros is the proxy's CPU time (user+system, whole process
	// minus pgbench, which runs as a child) per transaction: a figure that
	// holds when other work shares the machine, unlike TPS.
	ProxyCPUMicros float64 `json:"proxy_cpu_us_per_tx"`
	// ProxyCost and CompareCost break the proxies' costs per transaction
	// down (CPU, read/write system calls, context switches).
	ProxyCost *PerTx `json:"proxy_cost,omitempty"`

	CompareTPS   float64 `json:"compare_tps,omitempty"`
	CompareRatio float64 `json:"compare_ratio,omitempty"`
	CompareCost  *PerTx  `json:"compare_cost,omitempty"`

	PgBouncerTPS   float64 `json:"pgbouncer_tps,omitempty"`
	PgBouncerRatio float64 `json:"pgbouncer_ratio,omitempty"`
	// ProxyVsPgBouncer is the median per-round proxy TPS ÷ PgBouncer TPS.
	ProxyVsPgBouncer float64 `json:"proxy_vs_pgbouncer,omitempty"`
}

// Result is the whole run.
type Result struct {
	Cases   []Case `json:"cases"`
	Command string `json:"command"`
}

var (
	tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	txRe  = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
)

// Run starts a throwaway cluster and a proxy in front of it, initializes
// pgbench tables (scale 1) and measures every case.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if len(opts.Clients) == 0 {
		opts.Clients = []int{1, 8}
	}
	if len(opts.Modes) == 0 {
		opts.Modes = []string{"simple", "extended", "prepared"}
	}
	if opts.Seconds == 0 {
		opts.Seconds = 5
	}
	if opts.Rounds == 0 {
		opts.Rounds = 3
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Rounds < 0 || opts.Seconds < 0 {
		return nil, fmt.Errorf("proxybench: %d rounds of %d s: both must be positive", opts.Rounds, opts.Seconds)
	}
	if _, err := exec.LookPath("pgbench"); err != nil {
		return nil, fmt.Errorf("pgbench not found (install postgresql-contrib or the postgresql client package)")
	}
	targets, stop, err := startTargets(ctx, opts, false)
	if err != nil {
		return nil, err
	}
	defer stop()
	cmpIdx, bouncerIdx := index(targets, "compare"), index(targets, "pgbouncer")
	var cost []counters
	run := func(i, clients int, mode string) (float64, error) {
		before := readCounters()
		args := []string{"-S", "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
			"-T", strconv.Itoa(opts.Seconds), "-h", "127.0.0.1", "-p", strconv.Itoa(targets[i].port), "-U", "postgres", "postgres"}
		out, err := exec.CommandContext(ctx, "pgbench", args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("pgbench %s: %v: %s", strings.Join(args, " "), err, out)
		}
		m := tpsRe.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("pgbench: no tps in output: %s", out)
		}
		if targets[i].inProcess {
			if n := txRe.FindSubmatch(out); n != nil {
				k, _ := strconv.ParseInt(string(n[1]), 10, 64)
				cost[i].add(before, k)
			}
		}
		return strconv.ParseFloat(string(m[1]), 64)
	}
	res := &Result{Command: fmt.Sprintf("pgbench -S -n -M <mode> -c <clients> -j min(clients,2) -T %d (scale 1), %d alternating rounds", opts.Seconds, opts.Rounds)}
	for _, mode := range opts.Modes {
		for _, clients := range opts.Clients {
			cs := Case{Mode: mode, Clients: clients}
			cost = make([]counters, len(targets))
			sums := make([]float64, len(targets))
			var cmpRatios, bouncerRatios, vsBouncer []float64
			for round := 0; round < opts.Rounds; round++ {
				// Rotate the order each round, so warm-up and drift even out.
				tps := make([]float64, len(targets))
				for k := range targets {
					i := (k + round) % len(targets)
					v, err := run(i, clients, mode)
					if err != nil {
						return nil, err
					}
					tps[i] = v
					sums[i] += v
				}
				line := fmt.Sprintf("%-8s clients=%d round=%d direct=%.0f proxy=%.0f ratio=%.3f", mode, clients, round, tps[0], tps[1], tps[1]/tps[0])
				cs.Ratios = append(cs.Ratios, round3(tps[1]/tps[0]))
				if cmpIdx > 0 {
					line += fmt.Sprintf(" compare=%.0f ratio=%.3f", tps[cmpIdx], tps[cmpIdx]/tps[0])
					cmpRatios = append(cmpRatios, tps[cmpIdx]/tps[0])
				}
				if bouncerIdx > 0 {
					line += fmt.Sprintf(" pgbouncer=%.0f ratio=%.3f proxy/pgbouncer=%.3f", tps[bouncerIdx], tps[bouncerIdx]/tps[0], tps[1]/tps[bouncerIdx])
					bouncerRatios = append(bouncerRatios, tps[bouncerIdx]/tps[0])
					vsBouncer = append(vsBouncer, tps[1]/tps[bouncerIdx])
				}
				fmt.Fprintln(opts.Log, line)
			}
			n := float64(opts.Rounds)
			cs.DirectTPS = round1(sums[0] / n)
			cs.ProxyTPS = round1(sums[1] / n)
			cs.Ratio = round3(cs.ProxyTPS / cs.DirectTPS)
			cs.MedianRatio = round3(median(cs.Ratios))
			if cs.ProxyCost = cost[1].perTx(); cs.ProxyCost != nil {
				cs.ProxyCPUMicros = cs.ProxyCost.CPUMicros
			}
			if cmpIdx > 0 {
				cs.CompareTPS = round1(sums[cmpIdx] / n)
				cs.CompareRatio = round3(median(cmpRatios))
				cs.CompareCost = cost[cmpIdx].perTx()
			}
			if bouncerIdx > 0 {
				cs.PgBouncerTPS = round1(sums[bouncerIdx] / n)
				cs.PgBouncerRatio = round3(median(bouncerRatios))
				cs.ProxyVsPgBouncer = round3(median(vsBouncer))
			}
			res.Cases = append(res.Cases, cs)
		}
	}
	return res, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }
func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
