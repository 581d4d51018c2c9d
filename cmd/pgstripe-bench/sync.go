package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/backfill/backfillbench"
	"github.com/pgstripe/pgstripe/sync/events/lagbench"
)

func init() {
	register("backfill", "concurrent backfill vs sequential paging: utilization of the rate limit, exactness", runBackfill)
	register("lag", "mutation-to-row lag of the events loop: p50/p95/p99, missing, stale", runLag)
}

func runBackfill(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	objects := fs.Int("objects", 20000, "approximate Stripe objects to seed")
	dist := fs.String("distribution", emulator.DistUniform, "created spread: uniform, spike, same-second")
	rate := fs.Float64("rate", 20, "pgstripe's rate limit, requests/s")
	latency := fs.String("latency", "250ms", "emulated Stripe latency per request, fixed (250ms) or a range (50ms-300ms)")
	seqBudget := fs.Duration("seq-budget", 2*time.Minute, "time bound of the sequential baseline (extrapolated beyond)")
	noSeq := fs.Bool("no-sequential", false, "skip the sequential baseline")
	if err := parseFlags(fs, args, log); err != nil {
		return nil, err
	}
	// backfillbench takes zero values as defaults: refuse them here rather
	// than run something other than what was asked.
	if *objects <= 0 {
		return nil, fmt.Errorf("--objects: %d is not a positive count", *objects)
	}
	if *rate <= 0 {
		return nil, fmt.Errorf("--rate: %v is not a positive rate", *rate)
	}
	if *seqBudget <= 0 {
		return nil, fmt.Errorf("--seq-budget: %v is not a positive duration", *seqBudget)
	}
	if err := validDistribution(*dist); err != nil {
		return nil, err
	}
	lo, hi, err := emulator.ParseLatency(*latency)
	if err != nil {
		return nil, fmt.Errorf("--latency: %v", err)
	}
	last := time.Time{}
	return backfillbench.Run(ctx, backfillbench.Options{
		Objects: *objects, Distribution: *dist, Rate: *rate, Latency: lo, LatencyMax: hi,
		SequentialBudget: *seqBudget, SkipSequential: *noSeq, Logger: quietLogger(log),
		Progress: func(p backfill.Progress) {
			if time.Since(last) > 5*time.Second || p.Done {
				last = time.Now()
				fmt.Fprintf(log, "backfill %s: %d requests, %.1f req/s (limit %.1f)\n", p.Elapsed.Round(time.Second), p.Requests, p.RequestsPerSec, p.Rate)
			}
		},
	})
}

func runLag(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("lag", flag.ContinueOnError)
	duration := fs.Duration("duration", 30*time.Second, "how long to mutate")
	mutations := fs.String("mutations", "10/s", "mutations per second")
	delay := fs.Duration("event-delay", 0, "emulator's max event visibility delay")
	poll := fs.Duration("poll-interval", 500*time.Millisecond, "events poll interval")
	latency := fs.String("latency", "0", "emulated Stripe latency per request, fixed (100ms) or a range (50ms-300ms)")
	work := fs.String("workload", "0", "random operations/s on every object type alongside the measured mutations, e.g. 5/s (0: none)")
	if err := parseFlags(fs, args, log); err != nil {
		return nil, err
	}
	rate, err := perSecond(*mutations)
	if err != nil {
		return nil, fmt.Errorf("--mutations: %v", err)
	}
	var workRate float64
	if s := strings.TrimSuffix(strings.TrimSpace(*work), "/s"); s != "0" {
		if workRate, err = perSecond(*work); err != nil {
			return nil, fmt.Errorf("--workload: %v", err)
		}
	}
	if *duration <= 0 {
		return nil, fmt.Errorf("--duration: %v is not a positive duration", *duration)
	}
	if *delay < 0 {
		return nil, fmt.Errorf("--event-delay: %v is negative", *delay)
	}
	if *poll <= 0 {
		return nil, fmt.Errorf("--poll-interval: %v is not a positive duration", *poll)
	}
	lo, hi, err := emulator.ParseLatency(*latency)
	if err != nil {
		return nil, fmt.Errorf("--latency: %v", err)
	}
	return lagbench.Run(ctx, lagbench.Options{Duration: *duration, MutationsPerSec: rate, EventDelay: *delay, Latency: lo, LatencyMax: hi,
		PollInterval: *poll, Workload: workRate, Logger: quietLogger(log)})
}

// validDistribution checks --distribution before anything starts.
func validDistribution(d string) error {
	switch d {
	case emulator.DistUniform, emulator.DistSpike, emulator.DistSameSecond:
		return nil
	}
	return fmt.Errorf("--distribution: %q is not one of uniform, spike, same-second", d)
}
