package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// Rows held by other transactions (a user's SELECT … FOR UPDATE left idle
// in a psql session, a long UPDATE) must not stall the loop: its
// transactions run one at a time (txMu), so one wait on a row would hold
// up every other object. Before writing, a transaction locks the rows it
// will write without waiting (SKIP LOCKED); an object with a row held
// elsewhere is not written but queued for re-fetch (reasonLocked) in the
// same transaction, so its event still counts as applied and the cursor
// moves on: the queue is durable, and the re-fetch reads Stripe's state
// after the lock is gone, which is at least as new as the event's.
const (
	// reasonLocked: another transaction held the object's row (or one of
	// its children's) when it was to be written.
	reasonLocked = "locked"
	// loopLockTimeout bounds any lock wait the pre-lock can't foresee
	// (LOCK TABLE, a row inserted by a transaction not yet committed), as
	// the write-through's apply does; store.Retry runs the transaction
	// again after such a timeout, and past its attempts the poll fails
	// and shows the error in stripe_sync.status.
	loopLockTimeout = 2 * time.Second
	// lockWarnAfter is how long a row stays held before a warning names
	// the backend holding it (once per row and lock).
	lockWarnAfter = 3 * time.Second
	// lockRetryMax caps the backoff between checks of a held row: it is
	// how late, at most, a row is synced after its lock is released.
	lockRetryMax = 5 * time.Second
	// lockForget: a row not found held for this long starts over (a new
	// lock warns again).
	lockForget = time.Minute
	// reasonUnresolved: Stripe refused the re-fetch of a held row's
	// object for good, and the state left out of the row can't be
	// written exactly (fetched.unresolved). The entry keeps that state.
	reasonUnresolved = "unresolved"
	// unresolvedRetry is how long an unresolved entry waits for its next
	// re-fetch: a key given the rights, or a newer state (an event the row
	// takes, a queued state strictly newer), settles it then. Rarely
	// enough that many such objects cost little of the rate limit.
	unresolvedRetry = 10 * time.Minute
	// unresolvedPrefix starts the last_error of stripe_sync.status that
	// names an unresolved object of the table (keepUnresolved), until
	// none is left (clearResolved).
	unresolvedPrefix = "re-fetch: "
)

// unresolvedError is why an object left out of a held row stays queued,
// unresolved: Stripe's refusal of its re-fetch (Err) and what keeps its
// held state from being written (Why).
type unresolvedError struct {
	Why string
	Err error // nil: the table has no retrieve endpoint
}

func (e *unresolvedError) Error() string {
	if e.Err == nil {
		return e.Why
	}
	return e.Why + "; Stripe refused the re-fetch that would settle it: " + e.Err.Error()
}

func (e *unresolvedError) Unwrap() error { return e.Err }

// keepUnresolved leaves queued the objects whose re-fetch Stripe refused
// for good and that nothing else settles (fetched.unresolved): a held
// state that can't be written exactly, or any entry without one, whose
// row may be stale for the reason it was queued. They are due again after
// unresolvedRetry, and it says so: a warning naming each object (the
// first time), and the last_error of its table in stripe_sync.status
// (how many of its objects are unresolved, what to do), which the next
// write of the table's last unresolved object clears. Before, the entry
// was dropped (a held state written as it stood: a nested list cut, a
// tie the guard left to the stored state): a change lost without a word.
func (p *poller) keepUnresolved(ctx context.Context, tx pgx.Tx, fs []fetched) error {
	if len(fs) == 0 {
		return nil
	}
	nb := p.clock.get().Add(unresolvedRetry)
	last := map[string]fetched{} // per table, the object its status names
	var tables []string
	for _, f := range fs {
		// An entry queued again while its fetch was in flight (queued_at
		// moved) has a new reason to be fetched: left as it is.
		tag, err := tx.Exec(ctx, `UPDATE stripe_sync.events_refetch SET reason = $4, not_before = GREATEST(not_before, $5)
WHERE object = $1 AND id = $2 AND queued_at = $3`, f.Table, f.ID, f.queuedAt, reasonUnresolved, nb)
		if err != nil {
			return fmt.Errorf("events: keep unresolved re-fetch queued: %w", err)
		}
		if tag.RowsAffected() == 0 {
			continue // queued again: not unresolved, and the status must not say so
		}
		if _, ok := last[f.Table]; !ok {
			tables = append(tables, f.Table)
		}
		last[f.Table] = f
		lvl := slog.LevelWarn
		if f.Reason == reasonUnresolved || f.gated {
			lvl = slog.LevelDebug // said already (the table's refusal, for gated ones)
		}
		msg := "re-fetch refused by Stripe; the object stays queued (its row may be stale) and is tried again later"
		if f.held != nil {
			msg = "held row's object not stored: its state can't be written exactly and Stripe refused its re-fetch; kept queued"
		}
		p.log.Log(ctx, lvl, msg, "table", f.Table, "id", f.ID, "why", f.unresolved, "err", f.refusal, "retry_in", unresolvedRetry)
		if p.fetchFailed != nil {
			p.fetchFailed[f.refetchKey] = fetchFailure{look: p.look, at: time.Now(), err: unresolvedErr(f)}
		}
	}
	for _, table := range tables {
		f := last[table]
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch WHERE object = $1 AND reason = $2`, table, reasonUnresolved).Scan(&n); err != nil {
			return fmt.Errorf("events: count unresolved re-fetches: %w", err)
		}
		who := f.ID
		if n > 1 {
			who = fmt.Sprintf("%s and %d more of the table", f.ID, n-1)
		}
		// What to do first: a long refusal may be cut.
		msg := fmt.Sprintf("%s%s %s kept queued, unresolved: %s; %s, tried again every %s. %v",
			unresolvedPrefix, table, who, f.unresolved, refusalAdvice(f.refusal), unresolvedRetry, refusalText(f.refusal))
		if len(msg) > 500 {
			// On a rune's boundary: Postgres refuses broken UTF-8.
			msg = strings.ToValidUTF8(msg[:500], "") + "…"
		}
		// A backfill's own error (phase error) stays.
		if _, err := tx.Exec(ctx, `UPDATE stripe_sync.objects SET last_error = $2
WHERE object = $1 AND (last_error IS NULL OR last_error LIKE 'events: %' OR last_error LIKE $3 || '%')`, table, msg, unresolvedPrefix); err != nil {
			return fmt.Errorf("events: status of unresolved re-fetch: %w", err)
		}
	}
	return nil
}

// unresolvedErr is why f stays queued, unresolved.
func unresolvedErr(f fetched) *unresolvedError {
	e := &unresolvedError{Why: f.unresolved, Err: f.refusal}
	if f.refusal == nil {
		e.Why += "; the table has no retrieve endpoint to settle it"
	}
	return e
}

// refusalText is Stripe's refusal for the status.
func refusalText(err error) string {
	if err == nil {
		return "The table has no retrieve endpoint to settle it."
	}
	return "Stripe refused the re-fetch: " + err.Error()
}

// clearResolved clears the last_error keepUnresolved set on the tables of
// written, once none of their objects is left unresolved.
func clearResolved(ctx context.Context, tx pgx.Tx, written []refetchKey) error {
	if len(written) == 0 {
		return nil
	}
	tables := make([]string, 0, len(written))
	for _, k := range written {
		tables = append(tables, k.Table)
	}
	if _, err := tx.Exec(ctx, `UPDATE stripe_sync.objects o SET last_error = NULL
WHERE o.object = ANY($1::text[]) AND o.last_error LIKE $2 || '%'
  AND NOT EXISTS (SELECT 1 FROM stripe_sync.events_refetch q WHERE q.object = o.object AND q.reason = $3)`,
		tables, unresolvedPrefix, reasonUnresolved); err != nil {
		return fmt.Errorf("events: clear status of resolved re-fetches: %w", err)
	}
	return nil
}

// beginLoopTx begins the loop's transactions: lock_timeout is
// loopLockTimeout, unless the role or database sets a shorter one. One
// round trip, as BEGIN alone.
var beginLoopTx = fmt.Sprintf(`BEGIN; SELECT pg_catalog.set_config('lock_timeout', CASE
    WHEN pg_catalog.current_setting('lock_timeout')::interval = interval '0'
      OR pg_catalog.current_setting('lock_timeout')::interval > interval '%[1]d ms' THEN '%[1]dms'
    ELSE pg_catalog.current_setting('lock_timeout') END, true)`, loopLockTimeout.Milliseconds())

// lockSite is where an object's held row was found (lockRows).
type lockSite = store.LockSite

// lockRows locks, without waiting, the rows that writing w changes and
// returns the objects held by another transaction (store.LockRows).
func lockRows(ctx context.Context, tx store.BatchSender, w store.WriteSet) (map[refetchKey]lockSite, error) {
	busy, err := store.LockRows(ctx, tx, w)
	if err != nil || len(busy) == 0 {
		return nil, err
	}
	out := make(map[refetchKey]lockSite, len(busy))
	for k, s := range busy {
		out[refetchKey(k)] = s
	}
	return out, nil
}

// lockWait tracks, in the re-fetcher, an object found held.
type lockWait struct {
	site     lockSite
	since    time.Time // first found held
	lastSeen time.Time // last found held
	backoff  time.Duration
	warned   bool
	look     uint64 // the look (poller.look) that last found it held
}

// heldAgain records that the re-fetcher found k held (again) and returns
// how long to wait before looking again: doubling from the poll interval
// up to lockRetryMax, once per look (a transaction store.Retry runs
// again calls it again for the same finding). warnHeld warns about the
// rows held long.
func (p *poller) heldAgain(k refetchKey, site lockSite) time.Duration {
	now := time.Now()
	w := p.locked[k]
	switch {
	case w == nil || now.Sub(w.lastSeen) > lockForget:
		if p.locked == nil {
			p.locked = map[refetchKey]*lockWait{}
		}
		w = &lockWait{since: now, backoff: p.cfg.PollInterval}
		p.locked[k] = w
	case w.look != p.look:
		w.backoff = min(2*w.backoff, lockRetryMax)
	}
	w.site, w.lastSeen, w.look = site, now, p.look
	return w.backoff
}

// warnHeld warns once about each object held for lockWarnAfter, naming
// the backends holding its row (pg_blocking_pids), not the row's data.
// Outside the loop's transactions: finding the backends takes a wait.
func (p *poller) warnHeld(ctx context.Context) {
	now := time.Now()
	for k, w := range p.locked {
		if w.warned || now.Sub(w.since) < lockWarnAfter || now.Sub(w.lastSeen) > lockRetryMax+p.cfg.PollInterval {
			continue
		}
		w.warned = true
		pids, err := p.blockers(ctx, k.ID, w.site)
		if err != nil && ctx.Err() == nil {
			p.log.Debug("could not find the backend holding a row", "table", w.site.Table, "err", err)
		}
		p.log.Warn("stripe row locked by another transaction; its object is synced once the lock is released, the rest of the sync goes on",
			"table", k.Table, "id", k.ID, "locked_table", w.site.Table, "held_for", now.Sub(w.since).Round(time.Second),
			"blocking_pids", pids)
	}
}

// released forgets k, written at last; a warning about it is followed
// by an info line.
func (p *poller) released(k refetchKey) {
	w := p.locked[k]
	if w == nil {
		return
	}
	delete(p.locked, k)
	if w.warned {
		p.log.Info("stripe row no longer locked; its object is synced", "table", k.Table, "id", k.ID, "held_for", time.Since(w.since).Round(time.Second))
	}
}

// forgetLocks drops objects not found held for lockForget (their queue
// entries went some other way).
func (p *poller) forgetLocks() {
	for k, w := range p.locked {
		if time.Since(w.lastSeen) > lockForget {
			delete(p.locked, k)
		}
	}
}

// blockers are the backends holding the row of site whose key column is
// id. Row locks show in no view, so a connection of its own queues for
// the row (at most blockerWait, then gives up) while pg_blocking_pids of
// that connection is read.
func (p *poller) blockers(ctx context.Context, id string, site lockSite) ([]int32, error) {
	t, ok := schema.Lookup(site.Table)
	if !ok {
		return nil, fmt.Errorf("unknown table %q", site.Table)
	}
	conn, err := p.cfg.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var pid int32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = %d", blockerWait.Milliseconds())})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Ends with a lock timeout, or at once when the row is free.
		tx.Exec(ctx, fmt.Sprintf(`SELECT 1 FROM %s WHERE %s = $1 FOR %s`, t.QualifiedName(), schema.Ident(site.Col), site.Strength), id)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var pids []int32
		if err := p.cfg.Pool.QueryRow(ctx, `SELECT pg_blocking_pids($1)`, pid).Scan(&pids); err != nil {
			<-done
			return nil, err
		}
		if len(pids) > 0 {
			<-done
			return pids, nil
		}
		select {
		case <-done:
			return nil, errors.New("the row was not held long enough to see by whom")
		case <-tick.C:
		}
	}
}

// blockerWait bounds how long blockers queues for a held row (another
// writer of the row may queue behind it meanwhile).
const blockerWait = 500 * time.Millisecond
