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
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(os.Stderr)
		os.Exit(2)
	}
	sc, ok := scenarios[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "pgstripe-bench: unknown scenario %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := sc.run(ctx, os.Args[2:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "pgstripe-bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
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

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
