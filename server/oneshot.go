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
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
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
		if result == nil && lctx.Err() == nil {
			// Objects whose rows users' transactions held were left to
			// the events loop's queue: store them here once free, or say
			// that the next serve will, rather than end as if complete.
			result = drainHeld(lctx, opts, objects, pool, client, epoch, log)
		}
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

// defaultHeldWait is how long a one-shot backfill waits for held rows.
const defaultHeldWait = 30 * time.Second

// HeldError is a one-shot backfill's end with objects still queued
// because other transactions held their rows: held still, or free but
// not re-fetched because Stripe did not answer or refused (HeldRow.Err).
type HeldError struct{ Rows []events.HeldRow }

func (e *HeldError) Error() string {
	held, failed := events.SplitHeld(e.Rows)
	var parts []string
	if len(held) > 0 {
		parts = append(parts, "rows held by other transactions kept "+events.HeldSummary(held)+
			" from being written; they stay queued for the next `pgstripe serve`, which stores them once the transactions end"+
			" (or end those transactions and run the backfill again)")
	}
	if len(failed) > 0 {
		// Named apart: their rows were free when last looked at, so
		// ending a transaction would not help.
		parts = append(parts, events.FailedSummary(failed)+
			"; they stay queued for the next `pgstripe serve`, which fetches them again (or run the backfill again once Stripe answers)")
	}
	return "the backfill completed, but " + strings.Join(parts, "; and ")
}

// drainHeld stores the objects the backfill of objects (all when empty)
// left queued because other transactions held their rows
// (events.DrainHeld), waiting for them at most opts.HeldWait; a
// *HeldError names those that stay queued.
func drainHeld(ctx context.Context, opts Options, objects []string, pool *pgxpool.Pool, client *stripeapi.Client, epoch int64, log *slog.Logger) error {
	if len(objects) == 0 {
		objects = nil // all
	}
	wait := opts.HeldWait
	if wait <= 0 {
		wait = defaultHeldWait
	}
	rows, err := events.DrainHeld(ctx, events.Config{Pool: pool, Client: client, Epoch: epoch, Logger: log,
		PollInterval: 250 * time.Millisecond}, objects, wait)
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		return &HeldError{Rows: rows}
	}
	return nil
}

// restartBefore turns --restart into "refetch whatever completed before now".
func restartBefore(restart bool) time.Time {
	if restart {
		return time.Now()
	}
	return time.Time{}
}
