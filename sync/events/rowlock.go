package events

import (
	"context"
	"errors"
	"fmt"
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
)

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
