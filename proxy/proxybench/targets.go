package proxybench

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"

	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/proxy"
)

// target is what pgbench runs against: Postgres itself, a proxy, PgBouncer.
type target struct {
	name string // direct, proxy, compare, roundtrip or pgbouncer
	port int    // on 127.0.0.1
	// inProcess: it runs in this process, so the process's counters are
	// its cost.
	inProcess bool
}

// startTargets starts a throwaway cluster with pgbench's tables (scale 1)
// and the targets opts ask for, in this order: direct, proxy, compare,
// roundtrip (only when roundTrip), pgbouncer. stop releases them all.
func startTargets(ctx context.Context, opts Options, roundTrip bool) (targets []target, stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() { c.Stop() })
	targets = append(targets, target{name: "direct", port: c.Port})

	listen := func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	portOf := func(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }
	for k, cfg := range []*proxy.Config{&opts.Proxy, opts.Compare} {
		if cfg == nil {
			continue
		}
		ln, err := listen()
		if err != nil {
			return nil, nil, err
		}
		pc := *cfg
		pc.Upstream = upstreamAddr(c, []bool{opts.ProxyUnix, opts.CompareUnix}[k])
		p := proxy.New(pc)
		pctx, cancel := context.WithCancel(ctx)
		served := make(chan error, 1)
		go func() { served <- p.Serve(pctx, ln) }()
		stops = append(stops, func() { cancel(); <-served })
		targets = append(targets, target{name: []string{"proxy", "compare"}[k], port: portOf(ln), inProcess: true})
	}
	if roundTrip {
		ln, err := listen()
		if err != nil {
			return nil, nil, err
		}
		rctx, cancel := context.WithCancel(ctx)
		stops = append(stops, cancel)
		go serveRoundTrip(rctx, ln, c.Addr())
		targets = append(targets, target{name: "roundtrip", port: portOf(ln), inProcess: true})
	}
	if opts.PgBouncer {
		port, stopBouncer, err := pgcluster.StartPgBouncer(ctx, c, pgcluster.PgBouncerOptions{Unix: opts.ProxyUnix})
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, stopBouncer)
		targets = append(targets, target{name: "pgbouncer", port: port})
	}
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-s", "1", "-q", "-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	return targets, stop, nil
}

// index returns the position of the target named name, or -1.
func index(targets []target, name string) int {
	for i, t := range targets {
		if t.name == name {
			return i
		}
	}
	return -1
}
