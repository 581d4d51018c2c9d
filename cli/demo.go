package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/server"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// runDemo is `pgstripe demo`: a throwaway Postgres, a seeded emulator with
// realistic latency, and serve on the default ports, until Ctrl-C.
func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := flagSet(env, "demo")
	customers := fs.Int("customers", 300, "customers in the seeded Stripe account")
	listen := fs.String("listen", config.DefaultListen, "proxy listen address")
	metricsListen := fs.String("metrics-listen", config.DefaultMetricsListen, "metrics listen address")
	latency := fs.String("latency", "30ms-120ms", "emulated Stripe latency (fixed or MIN-MAX)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *customers < 0 {
		// The emulator would seed nothing and the demo would announce
		// "-5 customers".
		return fmt.Errorf("--customers must not be negative, got %d", *customers)
	}
	lmin, lmax, err := emulator.ParseLatency(*latency)
	if err != nil {
		return fmt.Errorf("--latency: %v", err)
	}
	if err := demoPortsFree(*listen, *metricsListen); err != nil {
		return err
	}
	out := env.Stdout
	if err := ensurePostgres(ctx, env); err != nil {
		return err
	}
	fmt.Fprintln(out, "pgstripe demo: starting a throwaway PostgreSQL cluster …")
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "PostgreSQL %s on %s, files in %s\n", filepathBase(cluster.BinDir), cluster.Addr(), cluster.Dir)
	defer func() {
		cluster.Stop()
		fmt.Fprintf(out, "removed the throwaway cluster and %s\n", cluster.Dir)
	}()

	fmt.Fprintf(out, "seeding the Stripe emulator with %d customers and their subscriptions, invoices, payments …\n", *customers)
	emu, err := emulator.New(emulator.Options{Seed: *customers, Distribution: "uniform", Latency: lmin, LatencyMax: lmax})
	if err != nil {
		return err
	}
	emuLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	emuSrv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	go emuSrv.Serve(emuLn)
	defer emuSrv.Close()

	const demoKey = "sk_test_pgstripe_demo"
	cfg := &config.Config{
		DatabaseURL:   cluster.URL("postgres"),
		StripeAPIKey:  demoKey,
		StripeAPIBase: "http://" + emuLn.Addr().String(),
		Listen:        *listen,
		MetricsListen: *metricsListen,
		RateLimit:     stripeapi.DefaultRate(demoKey),
		PollInterval:  config.DefaultPollInterval,
	}
	// Logs would garble the progress display: only warnings and errors.
	tty, logw := ttyProgress(out, env.Stderr)
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var once sync.Once
	var proxyAddr string
	show := progressPrinter(out, tty, nil)
	progress := func(p backfill.Progress) {
		show(p)
		if p.Done && !p.Stopped {
			once.Do(func() { printDemoHelp(out, proxyAddr, *metricsListen, cfg.DatabaseURL, selfCommand()) })
		}
	}
	// The limit the progress table shows is pgstripe's own (80% of
	// Stripe's, less the share kept for writes), not the emulator's.
	fmt.Fprintf(out, "emulated Stripe at %s (latency %s; it allows 25 requests/s, as Stripe's test mode does, and pgstripe stays under %.0f/s)\n", cfg.StripeAPIBase, *latency, cfg.RateLimit)
	err = server.Run(ctx, server.Options{Config: cfg, Logger: log, Progress: progress,
		Ready: func(p, m string) {
			proxyAddr = p
			fmt.Fprintf(out, "proxy on %s, metrics on http://%s/metrics — backfilling:\n", p, m)
		}})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	fmt.Fprintln(out, "\nstopped.")
	return nil
}

// demoPortsFree checks the demo's addresses before the cluster and the
// seeding, which take seconds to minutes: a taken port (another pgstripe,
// a PgBouncer on 6543) is the likely failure, and serve would report it
// only after them, naming PGSTRIPE_LISTEN, which the demo doesn't read.
func demoPortsFree(listen, metricsListen string) error {
	// Port 0 (any free port) twice is fine.
	if listen == metricsListen && !strings.HasSuffix(listen, ":0") {
		return fmt.Errorf("--listen and --metrics-listen are both %q: they need different ports", listen)
	}
	// The first stays open while the second is tried, so that two
	// spellings of one address ("localhost:6543", "127.0.0.1:6543") are
	// caught too.
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for _, a := range []struct{ flag, addr string }{{"--listen", listen}, {"--metrics-listen", metricsListen}} {
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Err != nil {
				err = oe.Err
			}
			return fmt.Errorf("%s %s is not available (%v): give the demo another address with %s ADDR", a.flag, a.addr, err, a.flag)
		}
		held = append(held, ln)
	}
	return nil
}

func printDemoHelp(w io.Writer, proxyAddr, metricsAddr, directURL, self string) {
	host, port, _ := net.SplitHostPort(proxyAddr)
	url := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", net.JoinHostPort(host, port))
	fmt.Fprintf(w, `
Ready. Connect through the pgstripe proxy:

    psql '%s'

Try:

    -- the biggest customers by amount paid
    SELECT c.email, round(sum(i.amount_paid) / 100.0, 2) AS paid
    FROM stripe.invoices i JOIN stripe.customers c ON c.id = i.customer
    GROUP BY c.email ORDER BY paid DESC LIMIT 5;

    -- subscriptions by status
    SELECT status, count(*) FROM stripe.subscriptions GROUP BY status;

    -- sync state of every object type
    SELECT object, phase, rows, lag_seconds FROM stripe_sync.status;

    -- a write: goes to Stripe, then lands locally before the reply
    INSERT INTO stripe.customers (email, metadata)
    VALUES ('a@b.co', '{"tier":"gold"}') RETURNING id, email, created;

Metrics: curl http://%s/metrics    Stop: Ctrl-C (removes everything).
Sync state from another terminal (Postgres directly, not the proxy):

    DATABASE_URL='%s' %s status
`, url, metricsAddr, directURL, self)
}

// selfCommand is how to run this pgstripe again from another terminal, for
// the demo's help: "go run ./cmd/pgstripe" only works in a checkout, so a
// built binary (run from anywhere, or in a container) names itself.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "go run ./cmd/pgstripe"
	}
	return selfCommandFor(exe)
}

// selfCommandFor is selfCommand for the executable at exe. go run builds
// into a temporary go-build directory that is gone once the demo ends.
func selfCommandFor(exe string) string {
	if strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/pgstripe"
	}
	if strings.ContainsAny(exe, " '\"$`\\") {
		return "'" + strings.ReplaceAll(exe, "'", `'\''`) + "'"
	}
	return exe
}

// filepathBase names the server version from its bin directory
// (/usr/lib/postgresql/15/bin → 15).
func filepathBase(binDir string) string {
	return filepath.Base(filepath.Dir(binDir))
}

// ensurePostgres installs the PostgreSQL server with apt-get when its
// binaries are missing and this user may (root, or sudo without a
// password); otherwise the error names the one command to run.
func ensurePostgres(ctx context.Context, env *Env) error {
	if _, err := pgcluster.BinDir(); err == nil {
		return nil
	}
	var prefix []string
	switch {
	case os.Geteuid() == 0:
	case exec.Command("sudo", "-n", "true").Run() == nil:
		prefix = []string{"sudo", "-n"}
	default:
		_, err := pgcluster.BinDir()
		return err
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		_, err := pgcluster.BinDir()
		return err
	}
	fmt.Fprintln(env.Stdout, "PostgreSQL is not installed; installing it: apt-get install -y postgresql …")
	for _, args := range [][]string{{"apt-get", "update", "-qq"}, {"apt-get", "install", "-y", "-qq", "postgresql"}} {
		cmd := exec.CommandContext(ctx, append(prefix, args...)[0], append(prefix, args...)[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = env.Stderr, env.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s failed (%v); install PostgreSQL as root with: %s", strings.Join(args, " "), err, pgcluster.InstallHint)
		}
	}
	_, err := pgcluster.BinDir()
	return err
}
