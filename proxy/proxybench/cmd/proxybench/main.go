// Command proxybench runs the proxy benchmark (package proxybench) and
// prints one JSON object as its last line.
//
//	go run ./proxy/proxybench/cmd/proxybench -seconds 5 -rounds 3 -pgbouncer
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/pgstripe/pgstripe/proxy/proxybench"
)

func main() {
	clients := flag.String("clients", "1,8", "comma-separated pgbench client counts")
	modes := flag.String("modes", "simple,extended,prepared", "comma-separated pgbench -M modes")
	seconds := flag.Int("seconds", 5, "seconds per pgbench run")
	rounds := flag.Int("rounds", 3, "alternating rounds per case")
	latency := flag.Int("latency", 0, "instead of pgbench: measure N single-connection round trips per target and round, print percentiles")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (proxy included) to this file")
	unix := flag.Bool("unix", false, "the proxy (and PgBouncer) connect to Postgres through its Unix socket")
	cmpUnix := flag.Bool("compare-unix", false, "also measure the proxy with the other upstream transport (-unix toggled)")
	cmpRT := flag.Bool("compare-roundtrip", false, "with -latency: also measure a minimal one-goroutine round-trip forwarder (an experiment)")
	pgbouncer := flag.Bool("pgbouncer", false, "also measure PgBouncer (session mode) in the same rounds")
	flag.Parse()
	opts := proxybench.Options{Seconds: *seconds, Rounds: *rounds, Log: os.Stderr, Modes: strings.Split(*modes, ",")}
	for _, c := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxybench: bad -clients:", c)
			os.Exit(2)
		}
		opts.Clients = append(opts.Clients, n)
	}
	opts.ProxyUnix = *unix
	opts.CompareRoundTrip = *cmpRT
	opts.PgBouncer = *pgbouncer
	if *cmpUnix {
		cfg := opts.Proxy
		opts.Compare, opts.CompareUnix = &cfg, !*unix
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxybench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *latency > 0 {
		res, err := proxybench.Latency(ctx, opts, *latency)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxybench:", err)
			return
		}
		for _, r := range res {
			fmt.Fprintf(os.Stderr, "%-8s p10=%.1fµs p50=%.1fµs p90=%.1fµs", r.Target, r.P10, r.P50, r.P90)
			if r.Cost != nil {
				fmt.Fprintf(os.Stderr, " cpu=%.1fµs/tx rw_syscalls=%.1f/tx ctxsw=%.1f/tx", r.Cost.CPUMicros, r.Cost.Syscalls, r.Cost.CtxSw)
			}
			fmt.Fprintln(os.Stderr)
		}
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
		return
	}
	res, err := proxybench.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		return
	}
	for _, c := range res.Cases {
		fmt.Fprintf(os.Stderr, "%-8s clients=%d direct=%.0f proxy=%.0f ratio=%.3f (median of rounds %.3f)%s", c.Mode, c.Clients, c.DirectTPS, c.ProxyTPS, c.Ratio, c.MedianRatio, costString(c.ProxyCost))
		if opts.Compare != nil {
			fmt.Fprintf(os.Stderr, " | compare=%.0f ratio=%.3f%s", c.CompareTPS, c.CompareRatio, costString(c.CompareCost))
		}
		if opts.PgBouncer {
			fmt.Fprintf(os.Stderr, " | pgbouncer=%.0f ratio=%.3f proxy/pgbouncer=%.3f", c.PgBouncerTPS, c.PgBouncerRatio, c.ProxyVsPgBouncer)
		}
		fmt.Fprintln(os.Stderr)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

func costString(c *proxybench.PerTx) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf(" cpu=%.1fµs/tx rw_syscalls=%.1f/tx ctxsw=%.1f/tx", c.CPUMicros, c.Syscalls, c.CtxSw)
}
