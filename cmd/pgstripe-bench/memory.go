package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
// process, `pgstripe backfill --objects customers` in its own, whose peak
// RSS the kernel reports (VmHWM).
func runMemory(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	n := fs.Int("customers", 1_000_000, "customers in the account")
	rate := fs.Float64("rate", 5000, "pgstripe's rate limit (requests/s)")
	if err := parseFlags(fs, args, log); err != nil {
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
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Peak RSS from /proc/PID/status VmHWM, sampled until exit. (rusage's
	// ru_maxrss would count this process's memory: the child shares it
	// between fork and exec.)
	var hwmKB int64
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var runErr error
	for done := false; !done; {
		if kb := vmHWM(cmd.Process.Pid); kb > hwmKB {
			hwmKB = kb
		}
		select {
		case runErr = <-exited:
			done = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	if runErr != nil {
		return nil, fmt.Errorf("pgstripe backfill: %w", runErr)
	}
	secs := time.Since(start).Seconds()

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
		Customers: *n, Seconds: secs, RowsPerSec: float64(*n) / secs, MaxRSSMB: float64(hwmKB) / 1024,
		Requests: emu.Stats().Total - before, Missing: d.Missing, Extra: d.Extra, Stale: d.Stale,
	}, nil
}

// vmHWM reads a process's peak resident set size in kB (0 when gone).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb
		}
	}
	return 0
}

// Failure reports rows that differ from the emulator.
func (r memoryResult) Failure() error {
	if r.Missing+r.Extra+r.Stale == 0 {
		return nil
	}
	return fmt.Errorf("%d missing, %d extra, %d stale rows", r.Missing, r.Extra, r.Stale)
}
