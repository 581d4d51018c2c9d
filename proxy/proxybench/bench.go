// Package proxybench measures the proxy's overhead: pgbench -S (select-only)
// directly against Postgres and through the proxy, alternating in one run so
// that machine noise hits both alike, and reports TPS ratios.
package proxybench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgstripe/pgstripe/pgcluster"
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
	// Log receives one line per pgbench run; nil discards.
	Log io.Writer
}

// Case is one (mode, clients) measurement.
type Case struct {
	Mode      string    `json:"mode"`
	Clients   int       `json:"clients"`
	DirectTPS float64   `json:"direct_tps"`
	ProxyTPS  float64   `json:"proxy_tps"`
	Ratio     float64   `json:"ratio"`
	Ratios    []float64 `json:"round_ratios"`
}

// Result is the whole run.
type Result struct {
	Cases   []Case `json:"cases"`
	Command string `json:"command"`
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

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
	if _, err := exec.LookPath("pgbench"); err != nil {
		return nil, fmt.Errorf("pgbench not found (install postgresql-contrib or the postgresql client package)")
	}
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	defer c.Stop()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := opts.Proxy
	cfg.Upstream = c.Addr()
	p := proxy.New(cfg)
	pctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- p.Serve(pctx, ln) }()
	defer func() { cancel(); <-served }()

	_, port, _ := net.SplitHostPort(ln.Addr().String())
	proxyPort, _ := strconv.Atoi(port)
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-s", "1", "-q", "-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	run := func(port, clients int, mode string) (float64, error) {
		args := []string{"-S", "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
			"-T", strconv.Itoa(opts.Seconds), "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "postgres"}
		out, err := exec.CommandContext(ctx, "pgbench", args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("pgbench %s: %v: %s", strings.Join(args, " "), err, out)
		}
		m := tpsRe.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("pgbench: no tps in output: %s", out)
		}
		return strconv.ParseFloat(string(m[1]), 64)
	}
	res := &Result{Command: fmt.Sprintf("pgbench -S -n -M <mode> -c <clients> -j min(clients,2) -T %d (scale 1), %d alternating rounds", opts.Seconds, opts.Rounds)}
	for _, mode := range opts.Modes {
		for _, clients := range opts.Clients {
			cs := Case{Mode: mode, Clients: clients}
			var dsum, psum float64
			for round := 0; round < opts.Rounds; round++ {
				var d, pr float64
				var err error
				// Alternate which goes first, so warm-up and drift even out.
				if round%2 == 0 {
					if d, err = run(c.Port, clients, mode); err == nil {
						pr, err = run(proxyPort, clients, mode)
					}
				} else {
					if pr, err = run(proxyPort, clients, mode); err == nil {
						d, err = run(c.Port, clients, mode)
					}
				}
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(opts.Log, "%-8s clients=%d round=%d direct=%.0f proxy=%.0f ratio=%.3f\n", mode, clients, round, d, pr, pr/d)
				dsum += d
				psum += pr
				cs.Ratios = append(cs.Ratios, round3(pr/d))
			}
			cs.DirectTPS = round1(dsum / float64(opts.Rounds))
			cs.ProxyTPS = round1(psum / float64(opts.Rounds))
			cs.Ratio = round3(median(cs.Ratios))
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

var _ = time.Second
