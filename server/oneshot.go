package server

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

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
	pool, err := openDatabase(ctx, cfg.DatabaseURL, "pgstripe backfill", log)
	if err != nil {
		return err
	}
	defer pool.Close()
	pgcfg := pool.Config()
	client, err := stripeapi.New(stripeapi.Config{
		APIKey: cfg.StripeAPIKey, BaseURL: cfg.StripeAPIBase, RateLimit: cfg.RateLimit,
		Observer: stripeapi.PrometheusObserver{}, Logger: log.With("component", "stripe"),
	})
	if err != nil {
		return err
	}
	if err := checkMode(ctx, pool, client.Live()); err != nil {
		return err
	}
	// Checked before waiting for leadership: a refused key would otherwise
	// show only once the running serve stops.
	checkCtx, stopCheck := context.WithCancel(ctx)
	defer stopCheck()
	lateKeyErr, err := startKeyCheck(checkCtx, client, cfg.StripeAPIBase)
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
	var keyErr atomic.Pointer[error]
	if lateKeyErr != nil {
		go func() {
			if err := <-lateKeyErr; err != nil {
				keyErr.Store(&err)
				cancel()
			}
		}()
	}
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
	if err := keyErr.Load(); err != nil {
		return *err
	}
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
