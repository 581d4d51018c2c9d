package writethrough

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// WriteBench configures BenchWrite.
type WriteBench struct {
	// DatabaseURL is a migrated database (the proxy fronts its server).
	DatabaseURL string
	// Stripe is the client for the API under test (an emulator with no
	// added latency measures pgstripe's own overhead).
	Stripe *stripeapi.Client
	// N is the number of writes (default 200).
	N int
}

// WriteBenchResult is the `pgstripe-bench write` JSON.
type WriteBenchResult struct {
	N             int     `json:"n"`
	P50Ms         float64 `json:"p50_ms"`          // INSERT … RETURNING through the proxy, as the client sees it
	P99Ms         float64 `json:"p99_ms"`          //
	StripeP50Ms   float64 `json:"stripe_p50_ms"`   // the same create called directly
	OverheadP50Ms float64 `json:"overhead_p50_ms"` // p50_ms − stripe_p50_ms
	Missing       int     `json:"missing"`         // writes not found in the local table afterwards
}

// BenchWrite measures what write-through adds to a Stripe call: it serves a
// proxy with a fresh Interceptor on a free port and alternates N single-row
// `INSERT INTO stripe.customers … RETURNING id` through it (pgx, extended
// protocol, one connection) with N direct creates through the same Stripe
// client, so both see the same noise.
func BenchWrite(ctx context.Context, b WriteBench) (WriteBenchResult, error) {
	if b.N <= 0 {
		b.N = 200
	}
	u, err := url.Parse(b.DatabaseURL)
	if err != nil {
		return WriteBenchResult{}, fmt.Errorf("database url: %w", err)
	}
	// pgstripe's own pool, set up as serve's: the apply's sessions are
	// the writers schema's guard lets pass.
	pcfg, err := pgxpool.ParseConfig(b.DatabaseURL)
	if err != nil {
		return WriteBenchResult{}, err
	}
	config.OwnSession(&pcfg.ConnConfig.Config)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return WriteBenchResult{}, err
	}
	defer pool.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return WriteBenchResult{}, err
	}
	p := proxy.New(proxy.Config{Upstream: u.Host, Classify: ProxyClassify, Interceptor: New(Config{Stripe: b.Stripe, Pool: pool})})
	pctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- p.Serve(pctx, ln) }()
	defer func() { stop(); <-served }()

	u.Host = ln.Addr().String()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return WriteBenchResult{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	const insert = `INSERT INTO stripe.customers (email, metadata) VALUES ($1, $2) RETURNING id`
	// Warm up: pgx's statement cache, the pools, the classification.
	var id string
	if err := conn.QueryRow(ctx, insert, "warmup@bench.test", `{"bench":"warmup"}`).Scan(&id); err != nil {
		return WriteBenchResult{}, fmt.Errorf("warm-up write: %w", err)
	}
	through := make([]time.Duration, 0, b.N)
	direct := make([]time.Duration, 0, b.N)
	ids := make([]string, 0, b.N)
	sctx := stripeapi.WithPriority(ctx, stripeapi.Interactive)
	for i := 0; i < b.N; i++ {
		email := fmt.Sprintf("bench%d@bench.test", i)
		t0 := time.Now()
		if err := conn.QueryRow(ctx, insert, email, `{"bench":"proxy"}`).Scan(&id); err != nil {
			return WriteBenchResult{}, fmt.Errorf("write %d: %w", i, err)
		}
		through = append(through, time.Since(t0))
		ids = append(ids, id)

		t0 = time.Now()
		if _, err := b.Stripe.Post(sctx, "/v1/customers", url.Values{"email": {email}, "metadata[bench]": {"direct"}}, ""); err != nil {
			return WriteBenchResult{}, fmt.Errorf("direct create %d: %w", i, err)
		}
		direct = append(direct, time.Since(t0))
	}
	var found int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE id = ANY($1)`, ids).Scan(&found); err != nil {
		return WriteBenchResult{}, err
	}
	res := WriteBenchResult{
		N:           b.N,
		P50Ms:       ms(quantile(through, 0.50)),
		P99Ms:       ms(quantile(through, 0.99)),
		StripeP50Ms: ms(quantile(direct, 0.50)),
		Missing:     b.N - found,
	}
	res.OverheadP50Ms = round3(res.P50Ms - res.StripeP50Ms)
	return res, nil
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
