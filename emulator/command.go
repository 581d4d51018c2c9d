package emulator

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// ErrUsage marks Command's errors about its arguments (for a bad flag, the
// flag package has printed its message and the usage already).
var ErrUsage = errors.New("usage")

// Command runs `pgstripe emulator [flags]` until ctx is done; it prints its
// address to stdout, its usage and flag errors to stderr. --help is
// flag.ErrHelp, not ErrUsage.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pgstripe emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:12111", "listen address")
	seed := fs.Int("seed", 0, "build a connected dataset around N customers (deterministic)")
	dist := fs.String("distribution", DistUniform, "created spread of seeded objects: uniform, spike, same-second")
	latency := fs.String("latency", "0", "added latency per request, e.g. 250ms or 50ms-300ms")
	rateLimit := fs.Int("rate-limit", DefaultRateLimit, fmt.Sprintf("test-mode requests/s before 429; live-mode keys get 4× (Stripe: 25 and 100), and N per endpoint; 0 = the default, %d; negative = unlimited", DefaultRateLimit))
	faults := fs.Float64("faults", 0, "share of requests answered with 500/503/429, a dropped connection, a timeout, or a response lost after the request took effect")
	eventDelay := fs.Duration("event-delay", 0, "events become visible after a random delay up to this")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: emulator: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	lo, hi, err := ParseLatency(*latency)
	if err != nil {
		return fmt.Errorf("%w: emulator: --latency: %w", ErrUsage, err)
	}
	if *faults < 0 || *faults > 1 {
		return fmt.Errorf("%w: emulator: --faults must be between 0 and 1, got %v", ErrUsage, *faults)
	}
	if *seed < 0 {
		return fmt.Errorf("%w: emulator: --seed must not be negative", ErrUsage)
	}
	// Checked here, not only by seeding: with --seed 0 a misspelt
	// distribution would otherwise be accepted without a word.
	switch *dist {
	case DistUniform, DistSpike, DistSameSecond:
	default:
		return fmt.Errorf("%w: emulator: --distribution must be uniform, spike or same-second, got %q", ErrUsage, *dist)
	}
	if *eventDelay < 0 {
		return fmt.Errorf("%w: emulator: --event-delay must not be negative, got %v", ErrUsage, *eventDelay)
	}
	// The port before the seeding, which takes a while for a big --seed:
	// a taken port (another emulator) is the likely failure.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err
		}
		return fmt.Errorf("emulator: --listen %s is not available (%v): give another address with --listen ADDR", *listen, err)
	}
	defer ln.Close()
	start := time.Now()
	e, err := New(Options{RateLimit: *rateLimit, Latency: lo, LatencyMax: hi, Faults: *faults, EventDelay: *eventDelay, Seed: *seed, Distribution: *dist})
	if err != nil {
		return err
	}
	st := e.Stats()
	total := 0
	for _, n := range st.Objects {
		total += n
	}
	fmt.Fprintf(stdout, "stripe emulator listening on http://%s (%d objects seeded in %s)\n", ln.Addr(), total, time.Since(start).Round(time.Millisecond))
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		e.Close() // release requests held by latency or injected timeouts
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
