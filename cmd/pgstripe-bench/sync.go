package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	latency := fs.Duration("latency", 250*time.Millisecond, "emulated Stripe latency per request")
	seqBudget := fs.Duration("seq-budget", 2*time.Minute, "time bound of the sequential baseline (extrapolated beyond)")
	noSeq := fs.Bool("no-sequential", false, "skip the sequential baseline")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	last := time.Time{}
	return backfillbench.Run(ctx, backfillbench.Options{
		Objects: *objects, Distribution: *dist, Rate: *rate, Latency: *latency,
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
	latency := fs.Duration("latency", 0, "emulated Stripe latency per request")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	rate, err := perSecond(*mutations)
	if err != nil {
		return nil, fmt.Errorf("--mutations: %v", err)
	}
	return lagbench.Run(ctx, lagbench.Options{Duration: *duration, MutationsPerSec: rate, EventDelay: *delay, Latency: *latency, PollInterval: *poll, Logger: quietLogger(log)})
}
