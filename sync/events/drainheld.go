package events

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/leader"
)

// HeldRow is an object left queued because another transaction holds one
// of its rows (DrainHeld).
type HeldRow struct {
	Table, ID string
	// Pids are the backends holding it, when they could be found.
	Pids []int32
}

// heldProgressEvery is how often DrainHeld logs what it still waits for.
const heldProgressEvery = 5 * time.Second

// DrainHeld stores, as Run's re-fetcher does, the objects queued because
// another transaction held their rows (reason 'locked', left by a
// backfill's pages or sweep), until none is left or wait has passed, and
// returns those still queued, with the backends holding them: Run stores
// them once their rows are free. A one-shot backfill calls it after its
// pages, so that it finishes the job or says what it leaves. Every 5 s it
// logs how many objects of which tables are held, and by which backends
// (pg_blocking_pids; never row data). Only those entries are drained; the
// rest of the queue is Run's. cfg.Epoch fences the writes as in Run.
// Stripe's requests are bounded by the wait too: a Stripe that does not
// answer in time ends it with an error naming what stays queued.
func DrainHeld(ctx context.Context, cfg Config, wait time.Duration) ([]HeldRow, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	p := &poller{cfg: cfg, log: cfg.Logger.With("component", "events"), seen: seenSet{}}
	only := reasonLocked
	p.onlyReason = &only
	left, err := p.heldLeft(ctx)
	if err != nil || len(left) == 0 {
		return nil, err
	}
	// Stripe's calls get the wait too: the client retries an unreachable
	// or hanging Stripe for minutes (80 s an attempt), which would keep a
	// one-shot backfill far past the wait it promises.
	deadline := time.Now().Add(wait)
	sctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// The entries are due on Stripe's clock, which Run's polls keep
	// moving: here one Date, then the time elapsed since (the fetches'
	// own Dates move it too).
	page, err := cfg.Client.List(sctx, "/v1/events", url.Values{"limit": {"1"}})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rows := make([]HeldRow, len(left))
		for i, k := range left {
			rows[i] = HeldRow{Table: k.Table, ID: k.ID}
		}
		return nil, fmt.Errorf("events: Stripe did not answer, so %s left by rows other transactions held stay queued for the next `pgstripe serve`: %w",
			HeldSummary(rows), err)
	}
	base, started := page.AsOf, time.Now()
	var lastLog time.Time
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		p.observeDate(base.Add(time.Since(started)))
		if _, err := p.drainRefetch(sctx); err != nil {
			if errors.Is(err, leader.ErrDeposed) || ctx.Err() != nil {
				return nil, err
			}
			if sctx.Err() == nil {
				p.log.Warn("re-fetch of held rows failed; retrying", "err", err)
			}
		}
		if left, err = p.heldLeft(ctx); err != nil {
			return nil, err
		}
		if len(left) == 0 {
			if !lastLog.IsZero() {
				p.log.Info("rows no longer held; their objects are synced")
			}
			return nil, nil
		}
		over := !time.Now().Before(deadline)
		if over || time.Since(lastLog) >= heldProgressEvery {
			rows := p.heldBy(ctx, left)
			if over {
				return rows, nil
			}
			lastLog = time.Now()
			p.log.Info("rows held by other transactions; waiting for them to be released",
				"objects", len(rows), "tables", heldTables(rows), "blocking_pids", heldPids(rows),
				"gives_up_in", time.Until(deadline).Round(time.Second).String())
		}
		t.Reset(p.cfg.PollInterval)
	}
}

// heldLeft are the objects still queued for a held row (reason 'locked',
// or a held state merged into an entry of another reason).
func (p *poller) heldLeft(ctx context.Context) ([]refetchKey, error) {
	rows, err := p.cfg.Pool.Query(ctx, `SELECT object, id FROM stripe_sync.events_refetch WHERE reason = $1 OR held IS NOT NULL ORDER BY object, id`, reasonLocked)
	if err != nil {
		return nil, fmt.Errorf("events: read re-fetch queue: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (refetchKey, error) {
		var k refetchKey
		err := r.Scan(&k.Table, &k.ID)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("events: read re-fetch queue: %w", err)
	}
	return keys, nil
}

// heldBy finds the backends holding keys' rows (those the re-fetcher
// found held, at most 20: each look queues for the row).
func (p *poller) heldBy(ctx context.Context, keys []refetchKey) []HeldRow {
	out := make([]HeldRow, len(keys))
	looked := 0
	for i, k := range keys {
		out[i] = HeldRow{Table: k.Table, ID: k.ID}
		w := p.locked[k]
		if w == nil || looked >= 20 {
			continue
		}
		looked++
		pids, err := p.blockers(ctx, k.ID, w.site)
		if err != nil && ctx.Err() == nil {
			p.log.Debug("could not find the backend holding a row", "table", w.site.Table, "err", err)
		}
		out[i].Pids = pids
	}
	return out
}

// heldTables counts rows by table: "customers=2, invoices=1".
func heldTables(rows []HeldRow) string {
	n := map[string]int{}
	for _, r := range rows {
		n[r.Table]++
	}
	tables := make([]string, 0, len(n))
	for t := range n {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = fmt.Sprintf("%s=%d", t, n[t])
	}
	return strings.Join(parts, ", ")
}

// heldPids are the distinct backends holding rows, in order.
func heldPids(rows []HeldRow) []int32 {
	var pids []int32
	for _, r := range rows {
		pids = append(pids, r.Pids...)
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// HeldSummary describes rows for a message: their count by table, their
// ids (the first few) and the backends holding them.
func HeldSummary(rows []HeldRow) string {
	const show = 10
	ids := make([]string, 0, min(len(rows), show))
	for _, r := range rows[:min(len(rows), show)] {
		ids = append(ids, r.Table+" "+r.ID)
	}
	s := fmt.Sprintf("%d object(s) (%s): %s", len(rows), heldTables(rows), strings.Join(ids, ", "))
	if len(rows) > show {
		s += fmt.Sprintf(" and %d more", len(rows)-show)
	}
	if pids := heldPids(rows); len(pids) > 0 {
		s += fmt.Sprintf("; held by backend pid(s) %v", pids)
	}
	return s
}
