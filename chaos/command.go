package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
)

// Command is `pgstripe-bench chaos [flags]`: it parses args, runs Run with
// progress on log, and returns the Result (the caller prints it as the last
// JSON line and fails when Result.Failure is not nil).
func Command(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad value is one line, printed by the caller
	var o Options
	fs.IntVar(&o.Kills, "kills", 20, "SIGKILLs of pgstripe serve")
	fs.IntVar(&o.PGRestarts, "pg-restarts", 2, "Postgres restarts (every second one a crash)")
	fs.Float64Var(&o.Faults, "faults", 0.05, "share of pgstripe's Stripe requests given a fault")
	fs.DurationVar(&o.Duration, "duration", 0, "workload duration after the backfill (default: 4s per kill, at least 20s)")
	fs.IntVar(&o.Seed, "seed", 40, "customers seeded in the emulator")
	fs.Float64Var(&o.WorkloadRate, "workload-rate", 8, "Stripe API operations per second around pgstripe")
	fs.IntVar(&o.Writers, "writers", 2, "clients writing through the proxy")
	fs.IntVar(&o.Instances, "instances", 1, "pgstripe serve processes sharing the database (one sync leader)")
	fs.Float64Var(&o.RateLimit, "rate", 60, "PGSTRIPE_RATE_LIMIT")
	fs.Uint64Var(&o.RandSeed, "rand-seed", 0, "random seed (0: from the clock)")
	fs.IntVar(&o.StripeRateLimit, "stripe-rate-limit", 0, "emulator: requests/s before its own 429s (0: none)")
	fs.DurationVar(&o.EventDelay, "event-delay", 0, "emulator: events become visible after a random delay up to this")
	latency := fs.String("latency", "0", "emulator: added latency per request, e.g. 100ms or 50ms-300ms")
	binary := fs.String("binary", "", "pgstripe binary (default: go build ./cmd/pgstripe)")
	serveLog := fs.String("serve-log", "", "file for pgstripe serve's output")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(log)
			fs.Usage()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	lo, hi, err := emulator.ParseLatency(*latency)
	if err != nil {
		return nil, fmt.Errorf("--latency: %w", err)
	}
	o.Latency, o.LatencyMax = lo, hi
	if o.Kills < 0 || o.Faults < 0 || o.Faults > 1 {
		return nil, fmt.Errorf("--kills must be ≥ 0 and --faults between 0 and 1")
	}
	if o.Kills == 0 {
		o.Kills = -1 // Options' zero means the default
	}
	if o.PGRestarts == 0 {
		o.PGRestarts = -1
	}
	if o.Faults == 0 {
		o.Faults = -1
	}
	if o.Duration == 0 {
		o.Duration = max(20*time.Second, time.Duration(o.Kills)*4*time.Second)
	}
	o.Binary, o.Log = *binary, log
	if *serveLog != "" {
		f, err := os.Create(*serveLog)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		o.ServeLog = f
	}
	// A run that is not OK is returned without an error: pgstripe-bench
	// prints its figures as the last line and exits non-zero (Failure).
	return Run(ctx, o)
}
