package events

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// head asks Stripe for its newest event and current time (the response
// Date): the handoff point of a backfill.
func head(ctx context.Context, c *stripeapi.Client) (Cursor, error) {
	q := url.Values{}
	q.Set("limit", "1")
	pg, err := c.List(ctx, "/v1/events", q)
	if err != nil {
		return Cursor{}, fmt.Errorf("events: newest event: %w", err)
	}
	cur := Cursor{CheckedThrough: pg.AsOf, BalanceCheckedThrough: pg.AsOf}
	evs, err := parseEvents(pg.Data)
	if err != nil {
		return Cursor{}, err
	}
	if len(evs) > 0 {
		cur.LastEventID, cur.LastEventAt = evs[0].ID, evs[0].At()
	}
	return cur, nil
}

// EnsureCursor records the handoff cursor before a backfill starts: Stripe's
// current time and newest event. Events from there on (and a look-back
// before it) are replayed by Run after the backfill, so nothing that
// changes during the backfill is lost. If a cursor exists already (a
// backfill being resumed, or a synced database), it is kept and returned
// with created false: a resumed backfill needs the events since its first
// start. epoch fences the write (0: none).
func EnsureCursor(ctx context.Context, pool *pgxpool.Pool, c *stripeapi.Client, epoch int64) (cur Cursor, created bool, err error) {
	cur, err = LoadCursor(ctx, pool)
	if err == nil {
		return cur, false, nil
	}
	if !errors.Is(err, ErrNoCursor) {
		return Cursor{}, false, err
	}
	cur, err = ResetCursor(ctx, pool, c, epoch)
	return cur, err == nil, err
}

// ResetCursor records a new handoff cursor, replacing any: call it before a
// fresh, complete backfill.
func ResetCursor(ctx context.Context, pool *pgxpool.Pool, c *stripeapi.Client, epoch int64) (Cursor, error) {
	cur, err := head(stripeapi.WithPriority(ctx, stripeapi.Background), c)
	if err != nil {
		return Cursor{}, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if epoch != 0 {
			if err := leader.Fence(ctx, tx, epoch); err != nil {
				return err
			}
		}
		if err := saveCursor(ctx, tx, cur); err != nil {
			return err
		}
		return logEntry(ctx, tx, "events_cursor_set", map[string]any{
			"checked_through": cur.CheckedThrough, "last_event_id": cur.LastEventID})
	})
	if err != nil {
		return Cursor{}, err
	}
	return cur, nil
}

// adoptBackfillCursor reads the cursor the backfill recorded before it
// started (stripe_sync.cursor, row 'events': Stripe's time then and the
// newest event; older versions stored that event's created instead, which
// is only more conservative). ErrNoCursor when there is none.
func adoptBackfillCursor(ctx context.Context, pool *pgxpool.Pool) (Cursor, error) {
	var id *string
	var created *time.Time
	err := pool.QueryRow(ctx, `SELECT event_id, event_created FROM stripe_sync.cursor
WHERE name = 'events'`).Scan(&id, &created)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && created == nil) {
		return Cursor{}, ErrNoCursor
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // no backfill state table
			return Cursor{}, ErrNoCursor
		}
		return Cursor{}, fmt.Errorf("events: read backfill cursor: %w", err)
	}
	c := Cursor{CheckedThrough: created.UTC(), BalanceCheckedThrough: created.UTC()}
	if id != nil {
		c.LastEventID, c.LastEventAt = *id, created.UTC()
	}
	return c, nil
}

// logEntry appends to stripe_sync.log.
func logEntry(ctx context.Context, tx pgx.Tx, kind string, detail map[string]any) error {
	if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ($1, $2)`, kind, detail); err != nil {
		return fmt.Errorf("events: log %s: %w", kind, err)
	}
	return nil
}

// rebackfill brings the tables back to exact after the cursor fell out of
// Stripe's retention (pgstripe was down for a month): the events that
// would have done it are gone.
//
//  1. T := Stripe's current time; the cursor is marked "re-backfill since
//     T" (durable, so a crash resumes the re-backfill with the same T,
//     never the polling).
//  2. Config.Backfill(T) backfills every table completely: every object
//     that exists is written with _as_of ≥ T.
//  3. Rows still older than that belong to objects that no longer exist:
//     the backfill deletes and tombstones them as each table completes
//     (so no replayed event brings them back; a table that failed keeps
//     its rows), and logs how many, which rebackfill_complete sums. A
//     row another transaction held then is left to the re-fetcher
//     (store.Held Swept), which logs its removal (swept_removed) once
//     the lock is gone: rebackfill waits up to sweptWait for those, sums
//     them too, and names those still held ("held").
//  4. The cursor restarts at T; events since then are replayed as after
//     any backfill. Customers with subscriptions get their upcoming
//     invoice refreshed.
func (p *poller) rebackfill(ctx context.Context, reason string) error {
	if p.cfg.Backfill == nil {
		err := p.inTx(ctx, func(tx pgx.Tx) error {
			return logEntry(ctx, tx, "events_cursor_expired", map[string]any{
				"checked_through": p.cur.CheckedThrough, "stripe_now": p.clock.get(), "action": "returned to caller"})
		})
		if err != nil {
			return err
		}
		return ErrCursorExpired
	}
	start, err := head(ctx, p.cfg.Client)
	if err != nil {
		return err
	}
	p.observeDate(start.CheckedThrough)
	// A re-backfill resumed after a crash keeps its start: rows the first
	// attempt wrote are as new as that, and the events since then must be
	// replayed.
	T := p.cur.RebackfillSince
	if T.IsZero() {
		T = start.CheckedThrough
		p.log.Warn("events cursor is older than Stripe's event retention: re-backfilling every table",
			"checked_through", p.cur.CheckedThrough, "stripe_now", T, "reason", reason)
		marked := p.cur
		marked.RebackfillSince = T
		err = p.inTx(ctx, func(tx pgx.Tx) error {
			if err := saveCursor(ctx, tx, marked); err != nil {
				return err
			}
			return logEntry(ctx, tx, "rebackfill_started", map[string]any{
				"reason": reason, "checked_through": p.cur.CheckedThrough, "stripe_now": T})
		})
		if err != nil {
			return err
		}
		p.cur = marked
	} else {
		p.log.Warn("resuming the re-backfill", "since", T)
	}
	// A backfill that completed some tables and failed others for good
	// (backfill.PartialError, e.g. a restricted key without access to one
	// type): the failed tables are not swept (their rows are all the data
	// there is) and stay in phase error; the others go on.
	failed := map[string]bool{}
	if err := p.cfg.Backfill(ctx, T); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var partial *backfill.PartialError
		if !errors.As(err, &partial) {
			return fmt.Errorf("%w: %v", errBackfill, err)
		}
		for _, f := range partial.Failed {
			failed[f.Object] = true
		}
		p.log.Error("re-backfill incomplete; the failed tables keep their rows", "err", err)
	}
	held, err := p.awaitSwept(ctx, T)
	if err != nil {
		return err
	}
	swept := map[string]int{}
	next := Cursor{CheckedThrough: T, BalanceCheckedThrough: T, LastEventID: start.LastEventID, LastEventAt: start.LastEventAt}
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		// Each table's backfill removed, at its completion, the rows of
		// objects that are gone (also in an attempt before a restart),
		// and the re-fetcher those its sweep found held (the sweep's
		// bound is this re-backfill's, not an earlier backfill's): what
		// they logged is the re-backfill's count.
		rows, err := tx.Query(ctx, `SELECT detail->>'object', sum((detail->>'removed')::int)::int FROM stripe_sync.log
WHERE (kind = 'backfill_object_complete' OR (kind = '`+logSweptRemoved+`' AND (detail->>'bound')::timestamptz >= $1))
  AND (detail->>'removed')::int > 0
  AND id > (SELECT coalesce(max(id), 0) FROM stripe_sync.log WHERE kind = 'rebackfill_started')
GROUP BY 1`, T)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		var object string
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&object, &n}, func() error {
			swept[object] = n
			return nil
		}); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM stripe_sync.applied_events`); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT DISTINCT 'upcoming_invoices', customer, $1::timestamptz, 'upcoming' FROM stripe.subscriptions
WHERE customer IS NOT NULL AND status NOT IN ('canceled', 'incomplete_expired')
ON CONFLICT (object, id) DO NOTHING`, T); err != nil {
			return fmt.Errorf("events: queue upcoming invoices: %w", err)
		}
		if err := saveCursor(ctx, tx, next); err != nil {
			return err
		}
		detail := map[string]any{"since": T, "removed": swept, "failed": keys(failed)}
		if len(held) > 0 {
			detail["held"] = held
		}
		return logEntry(ctx, tx, "rebackfill_complete", detail)
	})
	if err != nil {
		return err
	}
	p.cur = next
	p.seen = seenSet{}
	p.lastSweep, p.overlap, p.sweep, p.anchor, p.overlapBase = time.Time{}, nil, nil, "", time.Time{}
	if len(held) > 0 {
		p.log.Warn("re-backfill complete with rows of objects that may no longer exist still held by another transaction; they are removed once the lock is released (logged as "+logSweptRemoved+")",
			"held", held)
	}
	p.log.Info("re-backfill complete; following events again", "since", T, "removed", swept)
	return nil
}

// logSweptRemoved is the stripe_sync.log kind of a row that a backfill's
// sweep found held by another transaction and the re-fetcher removed
// later, as the sweep would have: {object, id, removed: 1, bound: the
// sweep's}.
const logSweptRemoved = "swept_removed"

// sweptWait bounds how long rebackfill waits for the rows its sweeps left
// to the re-fetcher: long enough for a lock released at once to be seen
// (the re-fetcher looks at a held row at least every lockRetryMax), short
// enough that a user's transaction left open holds up the polls no
// longer than that.
const sweptWait = 2*lockRetryMax + time.Second

// awaitSwept waits, up to sweptWait, until the rows this re-backfill's
// sweeps (bound since or later) left to the re-fetcher are settled, and
// returns how many per table are still queued. The re-fetcher (its own
// goroutine) settles them; this only reads the queue, every poll interval.
//
// The entries come due on Stripe's clock, which Run's polls move and
// none runs until this returns: the re-fetcher would see it stand where
// the re-backfill began, and an entry its look at a held row postponed
// (or the sweep queued at a bound past it) would never come due in the
// wait. It moves the clock as DrainHeld does: one Date, then the time
// elapsed since.
func (p *poller) awaitSwept(ctx context.Context, since time.Time) (map[string]int, error) {
	end := time.Now().Add(sweptWait)
	var base, started time.Time
	for {
		if !base.IsZero() {
			p.observeDate(base.Add(time.Since(started)))
		}
		left := map[string]int{}
		rows, err := p.cfg.Pool.Query(ctx, `SELECT object, count(*)::int FROM stripe_sync.events_refetch
WHERE held ? 'swept' AND held_as_of >= $1 AND reason <> $2 GROUP BY 1`, since, reasonUnresolved)
		if err != nil {
			return nil, fmt.Errorf("events: swept rows held: %w", err)
		}
		var object string
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&object, &n}, func() error {
			left[object] = n
			return nil
		}); err != nil {
			return nil, fmt.Errorf("events: swept rows held: %w", err)
		}
		if len(left) == 0 || !time.Now().Before(end) {
			return left, nil
		}
		if base.IsZero() {
			// Within the wait (the client retries a Stripe that does not
			// answer for minutes); without an answer, the last Date seen,
			// behind Stripe's time, never ahead of it.
			base, started = p.clock.get(), time.Now()
			hctx, cancel := context.WithDeadline(ctx, end)
			now, err := head(hctx, p.cfg.Client)
			cancel()
			if err == nil {
				base, started = now.CheckedThrough, time.Now()
			} else if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			p.observeDate(base)
		}
		t := time.NewTimer(p.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// rowExists reports whether table has the row id.
func rowExists(ctx context.Context, tx pgx.Tx, table, id string) (bool, error) {
	t, ok := schema.Lookup(table)
	if !ok {
		return false, fmt.Errorf("events: unknown table %q", table)
	}
	var exists bool
	if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1)`,
		t.QualifiedName(), schema.Ident(t.Key[len(t.Key)-1])), id).Scan(&exists); err != nil {
		return false, fmt.Errorf("events: row of %s %s: %w", table, id, err)
	}
	return exists, nil
}

// sweptRemoved logs (logSweptRemoved) the removal of f's row, which a
// backfill's sweep left held (its held state Swept) and which existed
// before f was written, if the write removed it: the sweep's count, late.
// A re-fetch that found the object alive leaves the row, and nothing is
// logged.
func sweptRemoved(ctx context.Context, tx pgx.Tx, f fetched) error {
	still, err := rowExists(ctx, tx, f.Table, f.ID)
	if err != nil || still {
		return err
	}
	return logEntry(ctx, tx, logSweptRemoved, map[string]any{"object": f.Table, "id": f.ID, "removed": 1, "bound": f.held.AsOf})
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
