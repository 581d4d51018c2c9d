package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/server"
)

func init() {
	register("fleet", "write-through latency through a follower while the leader backfills at full rate vs idle", runFleet)
}

type fleetResult struct {
	Writes          int     `json:"writes"`
	IdleP50ms       float64 `json:"idle_p50_ms"`
	BackfillP50ms   float64 `json:"backfill_p50_ms"`
	AddedP50ms      float64 `json:"added_p50_ms"`
	BackfillP99ms   float64 `json:"backfill_p99_ms"`
	LeaderBusy      bool    `json:"leader_backfilling_throughout"`
	RateLimit       float64 `json:"rate_limit"`
	Emulator429s    int64   `json:"emulator_429s"`
	AchievedRPS     float64 `json:"fleet_rps_during_backfill"`
	LatencyMs       float64 `json:"stripe_latency_ms"`
	WritesPerSecond float64 `json:"writes_per_second"`
}

func runFleet(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	writes := fs.Int("writes", 30, "writes per phase")
	pace := fs.Duration("pace", 500*time.Millisecond, "time between writes")
	latency := fs.Duration("latency", 50*time.Millisecond, "emulated Stripe latency")
	customers := fs.Int("customers", 3000, "seeded customers (the backfill must outlast the writes)")
	rate := fs.Float64("rate", 20, "the fleet's rate limit, requests/s")
	if err := parseFlags(fs, args, log); err != nil {
		return nil, err
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	fmt.Fprintf(log, "seeding %d customers …\n", *customers)
	emu, err := emulator.New(emulator.Options{Seed: *customers, RateLimit: int(*rate * 1.25), Latency: *latency})
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(emu)
	defer srv.Close()
	mk := func() *config.Config {
		return &config.Config{DatabaseURL: cluster.URL("postgres"), StripeAPIKey: "sk_test_bench", StripeAPIBase: srv.URL,
			Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", RateLimit: *rate, PollInterval: 500 * time.Millisecond}
	}
	quiet := quietLogger(log)

	// The follower: proxy and budget only.
	fctx, stopFollower := context.WithCancel(ctx)
	defer stopFollower()
	ready := make(chan string, 1)
	go server.Run(fctx, server.Options{Config: mk(), Logger: quiet, Follower: true,
		Instance: leader.Info{Instance: "follower", Host: "bench"}, Ready: func(p, _ string) { ready <- p }})
	var proxyAddr string
	select {
	case proxyAddr = <-ready:
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("follower did not start")
	}
	conn, err := pgx.Connect(ctx, "postgres://postgres@"+proxyAddr+"/postgres?sslmode=disable")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())

	measure := func(phase string) ([]float64, error) {
		var ms []float64
		for i := range *writes {
			start := time.Now()
			var id string
			if err := conn.QueryRow(ctx, `INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`, fmt.Sprintf("%s%d@bench.example", phase, i)).Scan(&id); err != nil {
				return nil, fmt.Errorf("%s write %d: %w", phase, i, err)
			}
			ms = append(ms, float64(time.Since(start).Microseconds())/1000)
			time.Sleep(*pace)
		}
		sort.Float64s(ms)
		return ms, nil
	}
	fmt.Fprintln(log, "phase 1: writes through the follower, no backfill …")
	idle, err := measure("idle")
	if err != nil {
		return nil, err
	}

	fmt.Fprintln(log, "phase 2: the leader backfills at full rate; writes through the follower …")
	lctx, stopLeader := context.WithCancel(ctx)
	defer stopLeader()
	go server.Run(lctx, server.Options{Config: mk(), Logger: quiet, Instance: leader.Info{Instance: "leader", Host: "bench"}})
	pool, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer pool.Close(context.Background())
	// Wait until the backfill is under way.
	for {
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE phase = 'backfilling'`).Scan(&n)
		if n > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the limiter saturate
	before := emu.Stats().Total
	t0 := time.Now()
	busy, err := measure("busy")
	if err != nil {
		return nil, err
	}
	rps := float64(emu.Stats().Total-before) / time.Since(t0).Seconds()
	var still int
	pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE phase = 'backfilling'`).Scan(&still)
	pct := func(v []float64, p float64) float64 { return v[int(p*float64(len(v)-1))] }
	return fleetResult{
		Writes: *writes, IdleP50ms: pct(idle, 0.5), BackfillP50ms: pct(busy, 0.5), AddedP50ms: pct(busy, 0.5) - pct(idle, 0.5),
		BackfillP99ms: pct(busy, 0.99), LeaderBusy: still > 0, RateLimit: *rate, Emulator429s: emu.Stats().ByStatus[429],
		AchievedRPS: rps, LatencyMs: float64(latency.Milliseconds()), WritesPerSecond: 1 / pace.Seconds(),
	}, nil
}
