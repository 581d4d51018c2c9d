// Command pgstripe-bench runs pgstripe's benchmark scenarios (CONTRACT §7).
// Each starts its own emulator and throwaway Postgres, runs, verifies the
// result, and prints exactly one JSON object as its last line.
//
//	go run ./cmd/pgstripe-bench backfill --objects 20000 --distribution uniform --rate 20 --latency 250ms
//	go run ./cmd/pgstripe-bench lag --duration 30s --mutations 10/s --event-delay 0
//	go run ./cmd/pgstripe-bench proxy --clients 1,8 --seconds 10
//	go run ./cmd/pgstripe-bench write --n 200
//	go run ./cmd/pgstripe-bench chaos --kills 20 --faults 0.05
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

type scenario struct {
	summary string
	run     func(ctx context.Context, args []string, log io.Writer) (any, error)
}

var scenarios = map[string]scenario{}

func register(name, summary string, run func(ctx context.Context, args []string, log io.Writer) (any, error)) {
	scenarios[name] = scenario{summary, run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: pgstripe-bench <scenario> [flags]   (each prints one JSON line last)")
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, scenarios[n].summary)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// verified is implemented by results that compare the tables with the
// emulator: Failure is nil when they matched.
type verified interface{ Failure() error }

// run runs one scenario and returns the exit status. Acceptance checks read
// the last line of stdout and the status, so a run whose verification
// failed still prints its figures but exits 1: wrong rows are a failed
// benchmark, not a slow one.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		return 2
	}
	sc, ok := scenarios[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "pgstripe-bench: unknown scenario %q\n", args[0])
		usage(stderr)
		return 2
	}
	res, err := sc.run(ctx, args[1:], stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "pgstripe-bench %s: %v\n", args[0], err)
		return 1
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(stderr, "pgstripe-bench %s: result: %v\n", args[0], err)
		return 1
	}
	fmt.Fprintln(stdout, string(b))
	if v, ok := res.(verified); ok {
		if err := v.Failure(); err != nil {
			fmt.Fprintf(stderr, "pgstripe-bench %s: verification failed: %v\n", args[0], err)
			return 1
		}
	}
	return 0
}

// quietLogger sends warnings and errors to w (progress goes there too).
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// perSecond parses "10/s" or "10".
func perSecond(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a positive rate (e.g. 10/s)", s)
	}
	return v, nil
}

// parseFlags parses a scenario's flags. A bad value is returned as the
// one-line error main prints (the flag package would print it and the whole
// usage first); -h prints the usage on log.
func parseFlags(fs *flag.FlagSet, args []string, log io.Writer) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(log)
			fs.Usage()
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
