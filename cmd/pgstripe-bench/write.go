package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/verify"
	"github.com/pgstripe/pgstripe/writethrough"
)

func init() {
	register("write", "write-through overhead: INSERT … RETURNING through the proxy vs the bare Stripe call", runWrite)
}

// writeResult is BenchWrite's figures plus the check of the local table
// against the emulator.
type writeResult struct {
	writethrough.WriteBenchResult
	// Extra rows have no object in the emulator; stale rows differ from it.
	Extra int `json:"extra"`
	Stale int `json:"stale"`
}

// Failure reports writes whose row is absent, extra or differs from Stripe.
func (r writeResult) Failure() error {
	if r.Missing+r.Extra+r.Stale == 0 {
		return nil
	}
	return fmt.Errorf("%d missing, %d extra, %d stale rows", r.Missing, r.Extra, r.Stale)
}

func runWrite(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("write", flag.ContinueOnError)
	n := fs.Int("n", 200, "writes (each also measured as a direct Stripe call)")
	if err := parseFlags(fs, args, log); err != nil {
		return nil, err
	}
	if *n <= 0 {
		return nil, fmt.Errorf("--n: %d is not a positive number of writes", *n)
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	conn, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if err := schema.Migrate(ctx, conn); err != nil {
		return nil, err
	}
	emu, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(emu)
	defer srv.Close()
	client, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_bench", BaseURL: srv.URL, RateLimit: 10000})
	if err != nil {
		return nil, err
	}
	wr, err := writethrough.BenchWrite(ctx, writethrough.WriteBench{DatabaseURL: cluster.URL("postgres"), Stripe: client, N: *n})
	if err != nil {
		return nil, err
	}
	res := writeResult{WriteBenchResult: wr}
	res.Missing, res.Extra, res.Stale, err = compareWrites(ctx, conn, emu)
	return res, err
}

// compareWrites checks stripe.customers against the emulator. Nothing syncs
// in this scenario, so only the customers created through the proxy
// (metadata.bench "proxy" or "warmup") must have a row; the bench's direct
// creates must not. Every row must equal its object.
func compareWrites(ctx context.Context, conn *pgx.Conn, emu *emulator.Emulator) (missing, extra, stale int, err error) {
	want := emu.Objects("customers")
	rows, err := conn.Query(ctx, `SELECT id, _raw::text FROM stripe.customers`)
	if err != nil {
		return 0, 0, 0, err
	}
	got := map[string]string{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			rows.Close()
			return 0, 0, 0, err
		}
		got[id] = raw
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, 0, err
	}
	for id, raw := range got {
		w, ok := want[id]
		switch {
		case !ok:
			extra++
		case !verify.SameJSON([]byte(raw), w):
			stale++
		}
	}
	for id, raw := range want {
		var c struct {
			Metadata map[string]string `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return 0, 0, 0, fmt.Errorf("emulator customer %s: %w", id, err)
		}
		via := c.Metadata["bench"]
		_, have := got[id]
		switch {
		case (via == "proxy" || via == "warmup") && !have:
			missing++
		case via == "direct" && have:
			extra++ // a direct create never goes through the proxy
		}
	}
	return missing, extra, stale, nil
}
