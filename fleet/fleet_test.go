package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestSplit(t *testing.T) {
	cases := []struct {
		total, others float64
		leader        bool
		want          float64
	}{
		{20, 0, true, 18},   // alone: the leader keeps 10% for followers' writes
		{20, 0, false, 20},  // a follower alone may use everything
		{20, 5, true, 13},   // followers use 5/s: the leader yields it
		{20, 18, false, 2},  // the leader uses 18/s: a follower still gets its floor
		{20, 30, true, 2},   // over budget: floor, never zero or negative
		{80, 10, false, 70}, // live-mode budget
		{20, 1.5, false, 18.5},
	}
	for _, c := range cases {
		if got := Split(c.total, c.others, c.leader); got != c.want {
			t.Errorf("Split(%v, %v, leader=%v) = %v, want %v", c.total, c.others, c.leader, got, c.want)
		}
	}
}

// Two members on one database: the leader's limit drops by what the
// follower uses, and a 429 seen by the follower slows the leader.
func TestMembersShareTheBudget(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := migratedPool(t, ctx)
	mk := func(name string, isLeader bool) *Member {
		return &Member{Pool: pool, Info: leader.Info{Instance: name, Host: "h"}, Limiter: stripeapi.NewLimiter(20),
			Counter: &Counter{}, Total: 20, IsLeader: func() bool { return isLeader }, Interval: 50 * time.Millisecond}
	}
	lead, follower := mk("leader", true), mk("follower", false)
	go lead.Run(ctx)
	go follower.Run(ctx)

	// The follower sends ~8 requests/s.
	stop := make(chan struct{})
	go func() {
		tk := time.NewTicker(125 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				follower.Counter.Request("POST /v1/customers", 200, 0)
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for lead.Limiter.Rate() > 12 {
		if time.Now().After(deadline) {
			t.Fatalf("leader's limit stayed at %v while the follower used ~8/s (want ≤ 12)", lead.Limiter.Rate())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer close(stop)

	before := lead.Limiter.Effective()
	follower.Counter.RateLimited("POST /v1/customers", "global-rate")
	deadline = time.Now().Add(5 * time.Second)
	for lead.Limiter.Effective() >= before {
		if time.Now().After(deadline) {
			t.Fatalf("leader's effective rate stayed %v (configured %v, before %v) after the follower's 429", lead.Limiter.Effective(), lead.Limiter.Rate(), before)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM stripe_sync.instances WHERE heartbeat_at > now() - interval '5 seconds'").Scan(&n); err != nil || n != 2 {
		t.Fatalf("instances = %d, %v; want 2", n, err)
	}
}

// With the database refusing connections, the heartbeat's warning is one
// log line carrying pgx's error once, not its "\n\t"-separated attempts.
func TestHeartbeatErrorOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pool, err := pgxpool.New(context.Background(), fmt.Sprintf("postgres://app@127.0.0.1:%d/app?sslmode=prefer&connect_timeout=5", port))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var buf logtest.Buffer
	m := &Member{Pool: pool, Info: leader.Info{Instance: "a", Host: "h"}, Limiter: stripeapi.NewLimiter(10),
		Counter: &Counter{}, Total: 10, IsLeader: func() bool { return false }, Interval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	line := buf.WaitLine(t, "fleet heartbeat failed", 10*time.Second)
	cancel()
	<-done
	// slog's text handler escapes a newline as \n in the quoted value.
	if strings.Contains(line, `\n`) || strings.Contains(line, `\t`) {
		t.Errorf("multi-line error: %s", line)
	}
	if n := strings.Count(line, "connection refused"); n != 1 {
		t.Errorf("connection refused %d times: %s", n, line)
	}
}

// TestFleetEndpointRates: with live keys each instance limits every
// endpoint too; its endpoint rate follows its share of the fleet's rate
// (so the instances together stay under Stripe's 25/s per endpoint), and
// a 429 of one endpoint's limit seen by one instance is not the account's:
// the others keep their rate.
func TestFleetEndpointRates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := migratedPool(t, ctx)
	mk := func(name string, isLeader bool) *Member {
		lim := stripeapi.NewLimiter(80)
		lim.SetEndpointRate(20)
		return &Member{Pool: pool, Info: leader.Info{Instance: name, Host: "h"}, Limiter: lim,
			Counter: &Counter{}, Total: 80, IsLeader: func() bool { return isLeader }, Interval: 50 * time.Millisecond}
	}
	lead, follower := mk("leader", true), mk("follower", false)
	go lead.Run(ctx)
	go follower.Run(ctx)

	// Alone with an idle follower, the leader keeps 10% for the
	// follower's writes: 72/s, so its endpoints get 20 × 72/80 = 18/s.
	// (The follower sends nothing: a measured rate that wobbles would
	// re-split the budget, and a re-split restores the effective rate,
	// hiding the cut this test looks for.)
	deadline := time.Now().Add(10 * time.Second)
	for lead.Limiter.Rate() != 72 {
		if time.Now().After(deadline) {
			t.Fatalf("leader's limit is %v, want 72", lead.Limiter.Rate())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ep := lead.Limiter.EndpointRate(); math.Abs(ep-18) > 1e-9 || lead.Limiter.Endpoint("GET /v1/customers").Rate() != ep {
		t.Fatalf("leader at 72/s has endpoints at %v/s, want 18", ep)
	}
	if ep := follower.Limiter.EndpointRate(); ep != 20 {
		t.Fatalf("follower at %v/s has endpoints at %v/s, want 20", follower.Limiter.Rate(), ep)
	}

	// A 429 passed on would cut the leader's effective rate to 70% of its
	// configured one.
	follower.Counter.RateLimited("GET /v1/customers", "endpoint-rate")
	time.Sleep(500 * time.Millisecond) // ten heartbeats
	if eff, r := lead.Limiter.Effective(), lead.Limiter.Rate(); eff < 0.95*r {
		t.Fatalf("leader's effective rate %v (configured %v) after the follower's endpoint 429: cut", eff, r)
	}
	follower.Counter.RateLimited("GET /v1/customers", "global-rate")
	deadline = time.Now().Add(5 * time.Second)
	for lead.Limiter.Effective() >= 0.95*lead.Limiter.Rate() {
		if time.Now().After(deadline) {
			t.Fatal("the follower's global 429 never slowed the leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// migratedPool is a pool on a new database with pgstripe's schemas.
func migratedPool(t *testing.T, ctx context.Context) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}
