package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pgstripe/pgstripe/chaos"
	"github.com/pgstripe/pgstripe/proxy/proxybench"
)

func init() {
	register("proxy", "pgbench -S direct vs through the proxy, per mode and client count, alternating", runProxy)
	register("chaos", "SIGKILLs of serve, Postgres restarts and Stripe faults under load; tables must end exact (--kills K --faults F)", chaos.Command)
}

func runProxy(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	clients := fs.String("clients", "1,8", "comma-separated pgbench client counts")
	modes := fs.String("modes", "simple,extended,prepared", "comma-separated pgbench -M modes")
	seconds := fs.Int("seconds", 10, "seconds per pgbench run")
	rounds := fs.Int("rounds", 3, "alternating direct/proxy rounds per case")
	pgbouncer := fs.Bool("pgbouncer", false, "also measure PgBouncer (session mode, must be installed) in the same rounds")
	if err := parseFlags(fs, args, log); err != nil {
		return nil, err
	}
	// proxybench takes zero values as defaults: refuse them (and
	// negatives) here rather than run something other than what was asked.
	if *seconds <= 0 {
		return nil, fmt.Errorf("--seconds: %d is not a positive number of seconds", *seconds)
	}
	if *rounds <= 0 {
		return nil, fmt.Errorf("--rounds: %d is not a positive number of rounds", *rounds)
	}
	opts := proxybench.Options{Seconds: *seconds, Rounds: *rounds, Log: log, PgBouncer: *pgbouncer}
	for _, m := range strings.Split(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "simple", "extended", "prepared":
			opts.Modes = append(opts.Modes, m)
		default:
			return nil, fmt.Errorf("--modes: %q is not a pgbench mode (simple, extended, prepared)", m)
		}
	}
	for _, c := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--clients: %q is not a client count", c)
		}
		opts.Clients = append(opts.Clients, n)
	}
	return proxybench.Run(ctx, opts)
}
