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
	"github.com/pgstripe/pgstripe/stripeapi"
)

// HeldRow is an object left queued because another transaction held one
// of its rows (DrainHeld): held still, or, when Err is set, free at the
// last look but not re-fetched.
type HeldRow struct {
	Table, ID string
	// Pids are the backends holding it, when they could be found.
	Pids []int32
	// Err is why Stripe did not give its state: the answer refusing its
	// last re-fetch, or the lack of one (a timeout, a network error).
	// nil: its rows were held at the last look.
	Err error
	// errAt is when Err came, for FailedSummary's last error.
	errAt time.Time
}

// fetchFailure is an object's last failed re-fetch (DrainHeld).
type fetchFailure struct {
	look uint64 // the look (poller.look) of the drain that tried it
	at   time.Time
	err  error
}

// heldProgressEvery is how often DrainHeld logs what it still waits for.
const heldProgressEvery = 5 * time.Second

// DrainHeld stores, as Run's re-fetcher does, the objects queued because
// another transaction held their rows (reason 'locked', left by a
// backfill's pages or sweep), until none is left or wait has passed, and
// returns those still queued, with the backends holding them, or, for
// those whose rows were free when last looked at, the error of Stripe's
// that kept them (HeldRow.Err): Run stores them once their rows are free
// and Stripe answers. A one-shot backfill calls it after its
// pages, so that it finishes the job or says what it leaves. Every 5 s it
// logs how many objects of which tables are held, and by which backends
// (pg_blocking_pids; never row data), and apart how many Stripe did not
// answer or refused, with the last error. Only those entries are drained; the
// rest of the queue is Run's. cfg.Epoch fences the writes as in Run.
// Stripe's requests are bounded by the wait too: a Stripe that does not
// answer in time ends it with an error naming what stays queued.
//
// Only the tables of objects are drained and reported (nil: all): a
// one-shot backfill of some tables answers for those, not for entries an
// earlier serve left on others.
func DrainHeld(ctx context.Context, cfg Config, objects []string, wait time.Duration) ([]HeldRow, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	p := newPoller(cfg)
	p.fetchFailed, p.drainOnly = map[refetchKey]fetchFailure{}, objects
	only := reasonLocked
	p.onlyReason = &only
	left, unresolved, err := p.heldLeft(ctx)
	if err != nil || len(left) == 0 {
		return nil, err
	}
	if len(unresolved) == len(left) {
		// Stripe refused them already, and waiting changes nothing.
		return p.heldBy(ctx, left, unresolved), nil
	}
	// Stripe's calls get the wait too: the client retries an unreachable
	// or hanging Stripe for minutes (80 s an attempt), which would keep a
	// one-shot backfill far past the wait it promises.
	deadline := time.Now().Add(wait)
	sctx, cancel := context.WithDeadline(ctx, deadline)
	// DrainHeld's drains wait for their fetches (drainRefetch); none
	// outlives the wait anyway.
	defer func() { cancel(); p.fetches.wait() }()
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
		if left, unresolved, err = p.heldLeft(ctx); err != nil {
			return nil, err
		}
		if len(left) == 0 {
			if !lastLog.IsZero() {
				p.log.Info("rows no longer held; their objects are synced")
			}
			return nil, nil
		}
		over := !time.Now().Before(deadline) || len(unresolved) == len(left)
		if over || time.Since(lastLog) >= heldProgressEvery {
			rows := p.heldBy(ctx, left, unresolved)
			if over {
				return rows, nil
			}
			lastLog = time.Now()
			held, failed := SplitHeld(rows)
			gives := time.Until(deadline).Round(time.Second).String()
			if len(held) > 0 {
				p.log.Info("rows held by other transactions; waiting for them to be released",
					"objects", len(held), "tables", heldTables(held), "blocking_pids", heldPids(held), "gives_up_in", gives)
			}
			if len(failed) > 0 {
				// Their rows are free: saying they are held would send the
				// user looking for a transaction that isn't there.
				last := lastFailure(failed)
				p.log.Warn(stripeFailure(last.Err)+" of objects left by rows other transactions held; retrying",
					"objects", len(failed), "tables", heldTables(failed), "err", last.Err, "gives_up_in", gives)
			}
		}
		t.Reset(p.cfg.PollInterval)
	}
}

// heldLeft are the objects still queued for a held row (reason 'locked',
// or a held state merged into an entry of another reason), and which of
// them are unresolved (keepUnresolved: Stripe refused their re-fetch).
func (p *poller) heldLeft(ctx context.Context) ([]refetchKey, map[refetchKey]bool, error) {
	rows, err := p.cfg.Pool.Query(ctx, `SELECT object, id, reason = $2 FROM stripe_sync.events_refetch
WHERE (reason = $1 OR held IS NOT NULL) AND ($3::text[] IS NULL OR object = ANY($3)) ORDER BY object, id`,
		reasonLocked, reasonUnresolved, p.drainOnly)
	if err != nil {
		return nil, nil, fmt.Errorf("events: read re-fetch queue: %w", err)
	}
	var keys []refetchKey
	var unresolved map[refetchKey]bool
	var k refetchKey
	var u bool
	if _, err := pgx.ForEachRow(rows, []any{&k.Table, &k.ID, &u}, func() error {
		keys = append(keys, k)
		if u {
			if unresolved == nil {
				unresolved = map[refetchKey]bool{}
			}
			unresolved[k] = true
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("events: read re-fetch queue: %w", err)
	}
	return keys, unresolved, nil
}

// heldBy tells, for each of keys, what stopped it last: its rows, held
// by another transaction at the re-fetcher's last look at them (with the
// backends holding them, for at most 20: each look queues for the row),
// or Stripe, which did not answer or refused its re-fetch (Err). An
// object never tried while Stripe failed the others (a batch's worth of
// failing entries stays first in the queue) gets the last of their
// errors; one neither found held nor failed stays reported as held. An
// unresolved one (Stripe refused its re-fetch before, its held state can't
// be written exactly) not tried by this drain says so.
func (p *poller) heldBy(ctx context.Context, keys []refetchKey, unresolved map[refetchKey]bool) []HeldRow {
	out := make([]HeldRow, len(keys))
	var last fetchFailure
	for _, f := range p.fetchFailed {
		if f.at.After(last.at) {
			last = f
		}
	}
	looked := 0
	for i, k := range keys {
		out[i] = HeldRow{Table: k.Table, ID: k.ID}
		w := p.locked[k]
		f, failed := p.fetchFailed[k]
		switch {
		case failed && (w == nil || f.look > w.look):
			out[i].Err, out[i].errAt = f.err, f.at
			continue
		case unresolved[k]:
			out[i].Err = &unresolvedError{Why: "Stripe refused its re-fetch before, and the state left out of its held row can't be written exactly (see stripe_sync.status)"}
			continue
		case w == nil && last.err != nil:
			out[i].Err, out[i].errAt = last.err, last.at
			continue
		}
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

// noteFetches records, for DrainHeld, which of due Stripe did not answer
// or refused (errs[i], nil for a fetch that succeeded).
func (p *poller) noteFetches(ctx context.Context, due []refetch, errs []error) {
	if p.fetchFailed == nil {
		return
	}
	now := time.Now()
	for i, r := range due {
		err := errs[i]
		if err == nil {
			delete(p.fetchFailed, r.refetchKey)
			continue
		}
		if prev, ok := p.fetchFailed[r.refetchKey]; ok && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Cut by the end of the wait: Stripe's own earlier answer
			// (a 500, a 401) says more than the deadline.
			err = prev.err
		}
		p.fetchFailed[r.refetchKey] = fetchFailure{look: p.look, at: now, err: err}
	}
}

// SplitHeld separates the rows other transactions hold from those whose
// re-fetch Stripe did not answer or refused (Err set).
func SplitHeld(rows []HeldRow) (held, failed []HeldRow) {
	for _, r := range rows {
		if r.Err != nil {
			failed = append(failed, r)
		} else {
			held = append(held, r)
		}
	}
	return held, failed
}

// lastFailure is the row of failed (not empty) whose error came last.
func lastFailure(failed []HeldRow) HeldRow {
	last := failed[0]
	for _, r := range failed[1:] {
		if r.errAt.After(last.errAt) {
			last = r
		}
	}
	return last
}

// stripeFailure words what Stripe did with a re-fetch that failed with
// err: refused it (a 4xx), failed it (a 5xx), or did not answer.
func stripeFailure(err error) string {
	var se *stripeapi.Error
	var ue *unresolvedError
	switch {
	case errors.As(err, &ue), errors.As(err, &se) && se.HTTPStatus < 500:
		return "Stripe refused the re-fetch"
	case errors.As(err, &se):
		return "Stripe failed the re-fetch"
	}
	return "Stripe did not answer the re-fetch"
}

// FailedSummary describes rows whose re-fetch Stripe did not answer or
// refused (SplitHeld's failed, not empty) for a message: what Stripe did,
// the objects (HeldSummary) and the last error.
func FailedSummary(rows []HeldRow) string {
	last := lastFailure(rows)
	return fmt.Sprintf("%s of %s, left by rows other transactions held (last error: %v)",
		stripeFailure(last.Err), HeldSummary(rows), last.Err)
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
