package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
)

// A database holds one Stripe mode: the first run records it, and a key of
// the other mode is refused at start-up, by serve and by backfill, before
// anything is fetched or written.
func TestOtherModeKeyRefused(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	run := func(key, cmd string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		opts := Options{Config: keyCheckConfig(dbURL, base, key), Logger: slog.New(slog.NewTextHandler(&logtest.Buffer{}, nil))}
		opts.Instance.Instance, opts.Instance.Host = "mode-"+cmd, "h"
		if cmd == "serve" {
			opts.Ready = func(string, string) { cancel() }
			err := Run(ctx, opts)
			if ctx.Err() != nil && (err == nil || strings.Contains(err.Error(), "context canceled")) {
				return nil // it started serving
			}
			return err
		}
		return Backfill(ctx, opts, []string{"products"}, false)
	}
	if err := run("sk_test_mode", "backfill"); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "backfill"} {
		err := run("sk_live_mode", cmd)
		if err == nil || !strings.Contains(err.Error(), "STRIPE_API_KEY is a live-mode key, but this database holds test-mode data") {
			t.Errorf("%s with a live key on a test-mode database: err = %v", cmd, err)
		}
	}
	if err := run("rk_test_mode", "serve"); err != nil {
		t.Errorf("serve with a test-mode restricted key: %v", err)
	}
}

// A database synced before the mode was recorded gets the mode of its
// rows.
func TestModeOfStoredRows(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewMigratedDB(t)
	raw, _ := json.Marshal(map[string]any{"id": "prod_1", "object": "product", "name": "p", "livemode": true, "created": 1700000000})
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := store.Upsert(ctx, tx, "products", []store.Object{{Raw: raw, AsOf: time.Now()}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := checkMode(ctx, pool, false); err == nil || !strings.Contains(err.Error(), "holds live-mode data") {
		t.Errorf("test key on live rows: err = %v", err)
	}
	if err := checkMode(ctx, pool, true); err != nil {
		t.Errorf("live key on live rows: %v", err)
	}
}
