package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/chaos"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/verify"
)

func init() {
	register("memory", "peak RSS of `pgstripe backfill` over a large flat account (default 1M customers)", runMemory)
}

type memoryResult struct {
	Customers  int     `json:"customers"`
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_sec"`
	MaxRSSMB   float64 `json:"max_rss_mb"`
	Requests   int64   `json:"requests"`
	Missing    int     `json:"missing"`
	Extra      int     `json:"extra"`
	Stale      int     `json:"stale"`
}

// runMemory measures the backfill process alone: the emulator runs in this
// process, `pgstripe backfill --objects customers` in its own, and its peak
// RSS comes from the kernel's accounting (rusage ru_maxrss).
func runMemory(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	n := fs.Int("customers", 1_000_000, "customers in the account")
	rate := fs.Float64("rate", 5000, "pgstripe's rate limit (requests/s)")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgstripe-memory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := chaos.Build(ctx, dir)
	if err != nil {
		return nil, err
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	fmt.Fprintf(log, "seeding %d customers …\n", *n)
	emu, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		return nil, err
	}
	if err := emu.SeedCustomers(*n, emulator.DistUniform); err != nil {
		return nil, err
	}
	srv := httptest.NewServer(emu)
	defer srv.Close()

	fmt.Fprintln(log, "pgstripe backfill --objects customers …")
	cmd := exec.CommandContext(ctx, bin, "backfill", "--objects", "customers")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+cluster.URL("postgres"), "STRIPE_API_KEY=sk_test_memory",
		"STRIPE_API_BASE="+srv.URL, fmt.Sprintf("PGSTRIPE_RATE_LIMIT=%g", *rate), "PGSTRIPE_LOG_FORMAT=json")
	cmd.Stderr = log
	before := emu.Stats().Total
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pgstripe backfill: %w", err)
	}
	secs := time.Since(start).Seconds()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)

	pool, err := pgxpool.New(ctx, cluster.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	d, err := verify.CompareTables(ctx, pool, emu, []string{"customers"})
	if err != nil {
		return nil, err
	}
	return memoryResult{
		Customers: *n, Seconds: secs, RowsPerSec: float64(*n) / secs, MaxRSSMB: float64(ru.Maxrss) / 1024,
		Requests: emu.Stats().Total - before, Missing: d.Missing, Extra: d.Extra, Stale: d.Stale,
	}, nil
}
