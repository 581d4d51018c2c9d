package main

import (
	"context"
	"flag"
	"io"
	"net/http/httptest"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/writethrough"
)

func init() {
	register("write", "write-through overhead: INSERT … RETURNING through the proxy vs the bare Stripe call", runWrite)
}

func runWrite(ctx context.Context, args []string, log io.Writer) (any, error) {
	fs := flag.NewFlagSet("write", flag.ContinueOnError)
	n := fs.Int("n", 200, "writes (each also measured as a direct Stripe call)")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
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
	return writethrough.BenchWrite(ctx, writethrough.WriteBench{DatabaseURL: cluster.URL("postgres"), Stripe: client, N: *n})
}
