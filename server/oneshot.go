package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// CheckTables fails with one line naming the unknown tables.
func CheckTables(names []string) error {
	var unknown []string
	for _, n := range names {
		if _, ok := schema.Lookup(n); !ok {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	known := schema.Names()
	sort.Strings(known)
	return fmt.Errorf("--objects: unknown table(s) %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

// Backfill is `pgstripe backfill`: migrate, become the sync leader (waiting
// while another instance leads, so two backfills never race), backfill
// objects (all when empty), and return.
func Backfill(ctx context.Context, opts Options, objects []string, restart bool) error {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	pgcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return errors.New("DATABASE_URL is not a valid Postgres connection string")
	}
	pgcfg.ConnConfig.RuntimeParams["application_name"] = "pgstripe backfill"
	pool, err := pgxpool.NewWithConfig(ctx, pgcfg)
	if err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	defer pool.Close()
	if err := waitForDatabase(ctx, pool, log); err != nil {
		return err
	}
	if err := schema.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	client, err := stripeapi.New(stripeapi.Config{
		APIKey: cfg.StripeAPIKey, BaseURL: cfg.StripeAPIBase, RateLimit: cfg.RateLimit,
		Observer: stripeapi.PrometheusObserver{}, Logger: log.With("component", "stripe"),
	})
	if err != nil {
		return err
	}
	info := opts.Instance
	if info.Instance == "" {
		info = leader.DefaultInfo()
	}
	if cur, ok, err := leader.Lookup(ctx, pool); err == nil && ok && cur.Alive {
		log.Info("another pgstripe instance leads sync; waiting for it to stop", "leader", cur.Instance, "host", cur.Host)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var result error
	elector := &leader.Elector{ConnConfig: pgcfg.ConnConfig, Info: info, Logger: log.With("component", "leader"), Poll: 500 * time.Millisecond}
	elector.Run(runCtx, func(lctx context.Context, epoch int64) error {
		defer cancel()
		result = backfill.Run(lctx, backfill.Config{
			Pool: pool, Client: client, Objects: objects, RestartCompletedBefore: restartBefore(restart), Progress: opts.Progress,
			Logger: log.With("component", "backfill"),
			Fence:  func(ctx context.Context, tx pgx.Tx) error { return leader.Fence(ctx, tx, epoch) },
		})
		if result == nil && lctx.Err() != nil {
			result = lctx.Err()
		}
		return nil
	})
	if result == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return result
}

// restartBefore turns --restart into "refetch whatever completed before now".
func restartBefore(restart bool) time.Time {
	if restart {
		return time.Now()
	}
	return time.Time{}
}
