package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// --objects with only separators names no table: one line, before any
// connection (it used to say "unknown table(s)  (known: …)", naming an
// empty one).
func TestBackfillObjectsNamesNoTable(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "STRIPE_API_KEY": "sk_test_x"}
	code, _, errs := run(t, env, "backfill", "--objects", ", ")
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "names no table") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	code, _, errs = run(t, env, "backfill", "--objects", "customers,nosuch,")
	if code != 1 || !strings.Contains(errs, "unknown table(s) nosuch (known:") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

// A backfill of a table completed earlier fetches nothing, and says so:
// it used to end with the table "done" at 0 rows and no word about the
// earlier run, which reads as an empty Stripe account. --restart still
// fetches it, without the note.
func TestBackfillSaysWhatItSkipped(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 3, RateLimit: -1})
	env := map[string]string{"DATABASE_URL": dbURL, "STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": base}
	const note = "completed in an earlier run; add --restart"

	code, _, errs := run(t, env, "backfill", "--objects", "customers,products")
	if code != 0 || strings.Contains(errs, note) {
		t.Fatalf("first backfill: exit %d, stderr:\n%s", code, errs)
	}
	code, _, errs = run(t, env, "backfill", "--objects", "customers,products")
	if code != 0 || !strings.Contains(errs, note) || !strings.Contains(errs, `"objects":["customers","products"]`) {
		t.Fatalf("second backfill: exit %d, want exit 0 and a note naming customers and products; stderr:\n%s", code, errs)
	}
	code, _, errs = run(t, env, "backfill", "--objects", "customers", "--restart")
	if code != 0 || strings.Contains(errs, note) || !strings.Contains(errs, `"object":"customers","rows":3`) {
		t.Fatalf("backfill --restart: exit %d, want customers fetched again and no note; stderr:\n%s", code, errs)
	}
}

// The progress table tells a table skipped as done earlier apart from one
// this run completed.
func TestProgressTableShowsSkipped(t *testing.T) {
	var b strings.Builder
	renderProgress(&b, backfill.Progress{Done: true, Objects: []backfill.ObjectProgress{
		{Object: "customers", Phase: "live", Skipped: true},
		{Object: "products", Phase: "live", Rows: 10},
	}})
	lines := strings.Split(b.String(), "\n")
	if len(lines) < 3 || !strings.Contains(lines[1], "customers") || !strings.HasSuffix(lines[1], "done earlier (--restart to redo)") ||
		!strings.HasSuffix(lines[2], " done") {
		t.Errorf("table:\n%s", b.String())
	}
}

// An emulator whose port is taken fails at once, in one line naming its
// --listen flag, before seeding (seeding 5,000 customers takes about 8 s
// here; it used to run first, then fail with "listen: listen tcp …").
func TestEmulatorTakenPortFailsBeforeSeeding(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	start := time.Now()
	code, out, errs := run(t, nil, "emulator", "--listen", addr, "--seed", "5000")
	took := time.Since(start)
	want := "pgstripe emulator: --listen " + addr + " is not available (bind: address already in use): give another address with --listen ADDR\n"
	if code != 1 || errs != want || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errs, want)
	}
	if took > 3*time.Second {
		t.Errorf("failed after %v: the emulator seeded before taking its port", took.Round(time.Millisecond))
	}
}

// serve with a taken port says which setting to change, flag included,
// in one line (it printed Go's "PGSTRIPE_LISTEN: listen tcp …: bind:
// address already in use").
func TestServeTakenPortNamesSetting(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x?connect_timeout=1", "STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": "http://127.0.0.1:1"}
	for _, tc := range []struct{ env, flag, other string }{
		{"PGSTRIPE_LISTEN", "--listen", "PGSTRIPE_METRICS_LISTEN"},
		{"PGSTRIPE_METRICS_LISTEN", "--metrics-listen", "PGSTRIPE_LISTEN"},
	} {
		t.Setenv(tc.env, addr)
		t.Setenv(tc.other, "127.0.0.1:0")
		code, _, errs := run(t, env, "serve")
		want := "pgstripe serve: " + tc.env + ": " + addr + " is not available (bind: address already in use): give a free address with " + tc.env + " or " + tc.flag + "\n"
		if code != 1 || errs != want {
			t.Errorf("%s taken: exit %d, stderr %q; want exit 1 and %q", tc.env, code, errs, want)
		}
	}
}

// TestBackfillInterruptedWhileWaiting: a backfill interrupted while
// it waits for the serve that leads sync said "progress is saved, run the
// same command to resume", though it had not started. It says it fetched
// nothing, with the same exit code (130); once it ran, the old line stays.
func TestBackfillInterruptedWhileWaiting(t *testing.T) {
	pool, dbURL := pgtest.NewMigratedDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 2, RateLimit: -1})
	for _, k := range []string{"PGSTRIPE_RATE_LIMIT", "PGSTRIPE_LOG_FORMAT"} {
		t.Setenv(k, "")
	}
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("STRIPE_API_KEY", "sk_test_x")
	t.Setenv("STRIPE_API_BASE", base)

	// Another instance leads sync until the test ends.
	leadCtx, stopLead := context.WithCancel(context.Background())
	elected := make(chan struct{})
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		e := &leader.Elector{ConnConfig: pool.Config().ConnConfig, Info: leader.Info{Instance: "review-serve", Host: "h"}, Poll: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
		e.Run(leadCtx, func(ctx context.Context, _ int64) error {
			close(elected)
			<-ctx.Done()
			return nil
		})
	}()
	t.Cleanup(func() { stopLead(); <-leaderDone })
	select {
	case <-elected:
	case <-time.After(20 * time.Second):
		t.Fatal("the other instance was not elected")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	errs := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- runBackfill(ctx, &Env{Stdout: &out, Stderr: errs}, []string{"--objects", "customers"}) }()
	errs.WaitLine(t, "waiting for it to stop", 20*time.Second)
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the interrupted backfill did not return")
	}
	if ec, ok := err.(exitCode); !ok || ec != 130 {
		t.Errorf("err %v, want exit code 130", err)
	}
	if s := errs.String(); !strings.Contains(s, "pgstripe backfill: interrupted before it fetched anything") || strings.Contains(s, "progress is saved") {
		t.Errorf("stderr:\n%s\nwant the interruption said to come before anything was fetched", s)
	}
}
