package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
)

const (
	// refetchBatch bounds the re-fetches applied in one transaction.
	refetchBatch = 100
	// refetchParallel bounds the re-fetches in flight: enough to cover
	// Stripe's latency (Little's law: 20/s × 0.3 s = 6), while the shared
	// limiter keeps the rate.
	refetchParallel = 8
	// stopWriteGrace bounds the write, at the loop's end, of re-fetches
	// finished but not written yet (writeAtStop): fleet's last write at
	// shutdown has as long, so a Postgres gone (a partition answers
	// nothing, fails nothing) holds up no shutdown longer than it
	// already is.
	stopWriteGrace = 2 * time.Second
)

// refetchLoop drains the re-fetch queue until ctx ends, a drain every
// PollInterval (from the start of the last: a drain may wait half of it
// for its fetches) or at once while there is more due. Stripe and
// database errors are logged and retried; only a lost leadership ends
// it. What its fetches brought and no drain wrote is written at its end
// (writeAtStop).
func (p *poller) refetchLoop(ctx context.Context) error {
	// Fetches outlive their drain (drainRefetch); none outlives the loop.
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); p.fetches.wait(); p.writeAtStop(ctx) }()
	t := time.NewTimer(p.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		started := time.Now()
		more, err := p.drainRefetch(ctx)
		p.forgetLocks()
		p.warnHeld(ctx)
		wait := p.cfg.PollInterval - time.Since(started)
		switch {
		case errors.Is(err, leader.ErrDeposed):
			return err
		case err != nil && ctx.Err() == nil:
			p.log.Warn("re-fetch failed; retrying", "err", err)
			wait = max(wait, time.Second)
		case more:
			wait = 0
		}
		t.Reset(wait)
	}
}

// writeAtStop writes, once the loop has ended (ctx), what its fetches
// brought that no drain wrote. Dropped, it would be fetched again at the
// next start; written now, it is as good as at the drain: the entries
// are dequeued in the transaction that writes their rows (not one queued
// again since its fetch began), and a fetched state is as of its response
// Date, so the ordering guard keeps any newer state stored meanwhile.
// Fetches the end cut off stay queued. The write is fenced as any (a
// deposed leader writes nothing) and gets stopWriteGrace: past it, or
// without Postgres, the entries stay queued for the next start.
func (p *poller) writeAtStop(ctx context.Context) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopWriteGrace)
	defer cancel()
	if err := p.writeFetched(wctx); err != nil {
		p.log.Info("re-fetches not written at the loop's end; they stay queued for the next start", "err", err)
	}
}

// fetched is the outcome of one re-fetch.
type fetched struct {
	refetch
	obj    *store.Object // nil: gone (404)
	goneAt time.Time     // when the 404 said so
	drop   bool          // nothing to do (no retrieve endpoint, bad request)
	// useHeld: Stripe refused the re-fetch for good (or the table has
	// no retrieve endpoint); the state left out of the held row
	// (refetch.held) is written instead.
	useHeld bool
	// refusal is Stripe's answer refusing the re-fetch (with useHeld or
	// unresolved; nil when the table has no retrieve endpoint).
	refusal error
	// unresolved says why the state left out of the held row can't be
	// written exactly where Stripe refused the re-fetch: the entry stays
	// queued (keepUnresolved). Set by fromHeld, or by the drain when the
	// state ties with the stored one.
	unresolved string
	// gated: refusal is the table's (tableGate), no request was made.
	gated bool
	// listed are objects fetched along with it (see listedWith), to
	// upsert but not dequeued: they were never queued.
	listed []fetched
	// started is when its fetch began (writeFetched).
	started time.Time
}

// drainRefetch fetches the queued objects whose time has come and upserts
// them; a fetched state is current as of its response Date, so it orders
// after every event applied so far. more: a whole batch was due and all
// of it was answered, so more may be due now. An entry left due (Stripe
// failed it, or its table's probe) would be read again by a drain
// started at once: with a failure Stripe answers at once (a 401), a loop
// of queue reads and requests without pause.
//
// Fetches outlive their drain: it waits for its own for half a poll
// interval at most, then writes what has come (its own and earlier
// drains'), and the next drain writes the rest. DrainHeld's drains wait
// for all of theirs: it reports after each what stopped every object,
// and one under way has no answer yet. A table whose fetches
// Stripe answers slowly (a 5xx the client retries for up to a minute)
// so holds up no other; its entries are read by no drain while they are
// under way (readDue).
func (p *poller) drainRefetch(ctx context.Context) (more bool, err error) {
	// What finished since the last drain first: until written, its
	// entries are claimed, and the batch would miss them (one table's
	// probes would then alternate between two sets of its entries).
	if err := p.writeFetched(ctx); err != nil {
		return false, err
	}
	more, err = p.startDrain(ctx)
	if werr := p.writeFetched(ctx); err == nil {
		err = werr
	}
	return more, err
}

// startDrain reads the due entries no fetch is under way for, starts
// their fetches (probeOnly) and waits for them (fetches.await).
func (p *poller) startDrain(ctx context.Context) (more bool, err error) {
	now := p.clock.get()
	if now.IsZero() {
		return false, nil
	}
	due, err := p.readDue(ctx, now)
	if err != nil || len(due) == 0 {
		return false, err
	}
	full := len(due) >= refetchBatch
	if due, err = p.skipHeld(ctx, due); err != nil || len(due) == 0 {
		return full, err
	}
	planned, later := p.probeOnly(due)
	jobs := p.fetches.start(ctx, p, planned, later)
	var deadline time.Time
	if p.fetchFailed == nil {
		deadline = time.Now().Add(p.cfg.PollInterval / 2)
	}
	if !p.fetches.await(ctx, jobs, deadline) {
		return false, nil
	}
	for _, j := range jobs {
		if j.undecided || j.err != nil {
			return false, nil
		}
	}
	return full, nil
}

// readDue reads the due entries, refetchBatch at most: not those whose
// fetch is under way or waits for a slot, nor any of a table that is busy
// (fetches.claims). The batch takes each table's first entry, then
// each one's second…: a table with more than a batch due (Stripe fails
// those objects, or answers slowly) takes no other table's place. In a
// table, the entries whose last re-fetch Stripe did not answer
// (poller.failing) come last, the longest failed first, and while it has
// such entries, the newest entry Stripe has not failed comes first: the
// table's next probe (probeOnly) is then an object queued after those
// Stripe keeps failing, not the next of them (one per drain, however
// many), and its answer lets the table's others go. Orderings first (a
// row may be wrong until then), upcoming invoices last (a preview).
func (p *poller) readDue(ctx context.Context, now time.Time) ([]refetch, error) {
	claimedObjs, claimedIDs, busy := p.fetches.claims(p)
	failObjs, failIDs, failAt := []string{}, []string{}, []time.Time{}
	for k, at := range p.failing {
		if time.Since(at) > unresolvedRetry {
			// Left the queue some other way, most likely: the entry
			// takes its place again if not.
			delete(p.failing, k)
			continue
		}
		failObjs, failIDs, failAt = append(failObjs, k.Table), append(failIDs, k.ID), append(failAt, at)
	}
	// The batch holds a prefix of each table's order (share), so each
	// table's candidates are its first refetchBatch entries not failing
	// and its failing ones (p.failing, in memory), read by table through
	// events_refetch_due_idx (its expression spelled as there: a
	// parameter would not match it), and its newest not failing one in
	// each reason group (share 0). Sorting every due entry instead took
	// seconds per drain with 100k queued. The tables come from a skip
	// scan of the primary key.
	rows, err := p.cfg.Pool.Query(ctx, `WITH RECURSIVE tables AS (
    SELECT min(object) AS object FROM stripe_sync.events_refetch
    UNION ALL
    SELECT (SELECT min(q.object) FROM stripe_sync.events_refetch q WHERE q.object > t.object) FROM tables t WHERE t.object IS NOT NULL
), failing AS (
    SELECT * FROM unnest($5::text[], $6::text[], $7::timestamptz[]) AS f(object, id, at)
), claimed AS (
    SELECT * FROM unnest($9::text[], $10::text[]) AS c(object, id)
), cand AS (
    SELECT x.object, x.id FROM tables t, LATERAL (
        SELECT q.object, q.id FROM stripe_sync.events_refetch q
        WHERE q.object = t.object AND q.not_before <= $1 AND ($4::text IS NULL OR q.reason = $4 OR q.held IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM failing f WHERE f.object = q.object AND f.id = q.id)
            AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.object = q.object AND c.id = q.id)
        ORDER BY (q.reason = '`+reasonUpcoming+`'), q.not_before LIMIT $2) x
    WHERE t.object IS NOT NULL AND t.object <> ALL ($8::text[])
    UNION
    SELECT x.object, x.id FROM tables t, (VALUES (false), (true)) AS g(upcoming), LATERAL (
        SELECT q.object, q.id FROM stripe_sync.events_refetch q
        WHERE q.object = t.object AND (q.reason = '`+reasonUpcoming+`') = g.upcoming AND q.not_before <= $1 AND ($4::text IS NULL OR q.reason = $4 OR q.held IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM failing f WHERE f.object = q.object AND f.id = q.id)
            AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.object = q.object AND c.id = q.id)
        ORDER BY q.not_before DESC LIMIT 1) x
    WHERE t.object IS NOT NULL AND t.object = ANY ($5::text[]) AND t.object <> ALL ($8::text[])
    UNION
    SELECT f.object, f.id FROM failing f
    WHERE f.object <> ALL ($8::text[]) AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.object = f.object AND c.id = f.id)
)
SELECT object, id, not_before, reason, queued_at, held, held_as_of FROM (
    SELECT q.*, f.at AS failed_at,
        CASE WHEN f.at IS NULL AND q.object = ANY ($5::text[])
            AND row_number() OVER (PARTITION BY q.object ORDER BY f.at IS NULL DESC, q.not_before DESC) = 1 THEN 0
        ELSE row_number() OVER (PARTITION BY q.object ORDER BY q.reason = $3, f.at NULLS FIRST, q.not_before) END AS share
    FROM cand JOIN stripe_sync.events_refetch q USING (object, id)
    LEFT JOIN failing f ON f.object = q.object AND f.id = q.id
    WHERE q.not_before <= $1 AND ($4::text IS NULL OR q.reason = $4 OR q.held IS NOT NULL)
) d
ORDER BY reason = $3, share, failed_at NULLS FIRST, not_before LIMIT $2`,
		now, refetchBatch, reasonUpcoming, p.onlyReason, failObjs, failIDs, failAt, busy, claimedObjs, claimedIDs)
	if err != nil {
		return nil, fmt.Errorf("events: read re-fetch queue: %w", err)
	}
	due, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (refetch, error) {
		var x refetch
		var held []byte
		var heldAt *time.Time
		if err := r.Scan(&x.Table, &x.ID, &x.NotBefore, &x.Reason, &x.queuedAt, &held, &heldAt); err != nil {
			return x, err
		}
		if heldAt != nil {
			h, err := store.DecodeHeld(held, *heldAt)
			if err != nil {
				// Not fatal: the entry is re-fetched as any, and only a
				// refusal would have needed the state.
				p.log.Warn("re-fetch queue entry with an unreadable held state; ignored", "table", x.Table, "id", x.ID, "err", err)
			}
			x.held = h
		}
		return x, nil
	})
	if err != nil {
		return nil, fmt.Errorf("events: read re-fetch queue: %w", err)
	}
	return due, nil
}

// writeFetched writes what the fetches finished since the last call
// brought, in one transaction. The entries tried (fetched or failed)
// come with their outcomes, and so do those left by their table's failed
// probe, with its error (no result): Stripe did not answer for them
// either, and DrainHeld must not report them as held (noteFetches), nor
// may the next drain read them before the others (poller.failing).
func (p *poller) writeFetched(ctx context.Context) error {
	jobs := p.fetches.takeDone()
	if len(jobs) == 0 {
		return nil
	}
	if p.beforeWrite != nil {
		p.beforeWrite(jobs)
	}
	tried := make([]refetch, len(jobs))
	errs := make([]error, len(jobs))
	var out []fetched
	failedAt := time.Now()
	for i, j := range jobs {
		tried[i], errs[i] = j.refetch, j.err
		if j.err != nil {
			p.failing[j.refetchKey] = failedAt
		} else {
			delete(p.failing, j.refetchKey)
		}
		if j.res != nil {
			f := *j.res
			f.started = j.started
			out = append(out, f)
			for _, l := range f.listed {
				l.started = j.started
				out = append(out, l)
			}
		}
	}
	p.noteFetches(ctx, tried, errs)
	if len(out) == 0 {
		return nil
	}
	w := store.WriteSet{}
	for _, f := range out {
		switch {
		case f.unresolved != "":
			// Nothing written.
		case f.useHeld:
			w.Add(f.Table, f.ID, f.held.Deletes())
		case !f.drop:
			w.Add(f.Table, f.ID, f.obj == nil || deletedStub(f.obj.Raw))
		}
	}
	// The order every writer locks in (store.LockOrder), by id within a
	// table.
	sort.Slice(out, func(i, j int) bool {
		if c := store.LockCompare(out[i].Table, out[j].Table); c != 0 {
			return c < 0
		}
		return out[i].ID < out[j].ID
	})
	oldest := p.fetches.oldestStart()
	for _, f := range out {
		if f.started.Before(oldest) {
			oldest = f.started
		}
	}
	var written []refetchKey
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		// Held by another transaction since the check (skipHeld), or
		// listed along: left queued, or queued, for later.
		busy, err := lockRows(ctx, tx, w)
		if err != nil {
			return err
		}
		written = written[:0]
		var again []refetch
		var unresolved []fetched
		var taxIDCustomers, drafts []string
		owned := map[string][]store.Object{}
		heldQueued := map[refetchKey]lockSite{}
		for _, f := range out {
			if f.unresolved != "" {
				settled, err := writtenSince(ctx, tx, f)
				if err != nil {
					return err
				}
				if !settled {
					unresolved = append(unresolved, f)
					continue
				}
				// A newer state took the row (or the object is gone)
				// since it was queued: what the refused re-fetch was to
				// settle is settled.
				written = append(written, f.refetchKey)
				if _, err := tx.Exec(ctx, `DELETE FROM stripe_sync.events_refetch WHERE object = $1 AND id = $2 AND queued_at = $3`,
					f.Table, f.ID, f.queuedAt); err != nil {
					return fmt.Errorf("events: dequeue re-fetch: %w", err)
				}
				continue
			}
			if site, held := busy[f.refetchKey]; held && !f.drop {
				if f.queuedAt.IsZero() {
					again = append(again, refetch{refetchKey: f.refetchKey, NotBefore: f.obj.AsOf, Reason: reasonLocked,
						held: &store.Held{Object: f.obj, AsOf: f.obj.AsOf}})
				} else {
					heldQueued[f.refetchKey] = site
				}
				continue
			}
			if f.Table == "invoices" && f.obj != nil && p.taxIDsChanged[invoiceCustomer(f.obj.Raw)].After(f.started) {
				// Fetched, maybe, before a change of its customer's tax
				// ids that an apply has compared with the stored drafts
				// since, without this one. Only that customer's: a draft
				// that never matches (tax ids the key can't read) must
				// not be fetched again for every other customer's change.
				drafts = append(drafts, f.ID)
			}
			if f.Table == "tax_ids" && !f.drop && !f.useHeld {
				// A tax id fetched in place of its event (another API
				// version, a same-second state) changes what its
				// customer's drafts show, as its event would.
				cus, err := taxIDCustomer(ctx, tx, f)
				if err != nil {
					return err
				}
				if cus != "" {
					taxIDCustomers = append(taxIDCustomers, cus)
				}
			}
			// A row a backfill's sweep left here, held then: its removal
			// now is the sweep's, counted as the sweep would have
			// (sweptRemoved).
			swept := f.held != nil && f.held.Swept && !f.drop
			var existed bool
			if swept {
				var err error
				if existed, err = rowExists(ctx, tx, f.Table, f.ID); err != nil {
					return err
				}
			}
			switch {
			case f.useHeld:
				// What the sync would have written without the lock:
				// nothing newer can be had from Stripe.
				res, err := f.held.Apply(ctx, tx, f.Table, f.ID)
				if err != nil {
					return err
				}
				if len(res.Ambiguous) > 0 {
					// Of the stored state's second, and other: the guard
					// can't order them (created has whole seconds, events
					// of one second have no documented order, and neither
					// state says what it followed), and the re-fetch that
					// orders such a tie without the lock is what Stripe
					// refused. Neither is taken for the newer: the stored
					// state stays, the entry too, and the status says so.
					f.unresolved = "the state left out of its held row is of the stored state's second and differs from it, so their order can't be told"
					unresolved = append(unresolved, f)
					continue
				}
			case f.drop:
			case f.obj == nil:
				// Gone, as a deletion event says (with the deleted
				// object's created time when its held event carried it).
				var created time.Time
				if f.held != nil && f.held.Deleted {
					created = f.held.Created
				}
				if err := store.DeleteCreated(ctx, tx, f.Table, f.ID, f.goneAt, created); err != nil {
					return err
				}
			default:
				res, err := store.Upsert(ctx, tx, f.Table, []store.Object{*f.obj})
				if err != nil {
					return err
				}
				if f.Table == "invoices" && len(res.Applied) > 0 {
					links := invoiceLinks(f.ID, f.obj.Raw, f.obj.Children["lines"], f.obj.AsOf)
					if err := queueInvoiceItems(ctx, tx, links, nil); err != nil {
						return err
					}
				}
				if f.Table == "payment_methods" || f.Table == "tax_ids" {
					owned[f.Table] = append(owned[f.Table], *f.obj)
				}
				if len(res.Ambiguous) > 0 {
					// An event of the very second of the fetch was applied
					// with another state: try once more after that second.
					again = append(again, refetch{refetchKey: f.refetchKey, NotBefore: f.obj.AsOf.Add(time.Second), Reason: reasonAmbiguous})
				}
			}
			if existed {
				if err := sweptRemoved(ctx, tx, f); err != nil {
					return err
				}
			}
			written = append(written, f.refetchKey)
			if f.queuedAt.IsZero() {
				continue // listed along with another object
			}
			// Queued again meanwhile (queued_at moved, even within the
			// same second): this fetch may predate that change, so the
			// entry stays for another round.
			if _, err := tx.Exec(ctx, `DELETE FROM stripe_sync.events_refetch WHERE object = $1 AND id = $2 AND queued_at = $3`,
				f.Table, f.ID, f.queuedAt); err != nil {
				return fmt.Errorf("events: dequeue re-fetch: %w", err)
			}
		}
		if err := queueStaleDrafts(ctx, tx, taxIDCustomers, drafts); err != nil {
			return err
		}
		// A re-fetch stands in for an event (another API version, a
		// same-second state): its object, naming a customer whose
		// tombstone was pruned, must queue that customer as the event's
		// apply would.
		if err := queueOwners(ctx, tx, owned); err != nil {
			return err
		}
		// A change before every fetch not yet written began concerns none
		// to come (this batch's: store.Retry may run this again).
		for cus, at := range p.taxIDsChanged {
			if !at.After(oldest) {
				delete(p.taxIDsChanged, cus)
			}
		}
		p.noteTaxIDChanges(taxIDCustomers)
		if err := p.postponeHeld(ctx, tx, heldQueued); err != nil {
			return err
		}
		if err := p.keepUnresolved(ctx, tx, unresolved); err != nil {
			return err
		}
		if err := clearResolved(ctx, tx, written); err != nil {
			return err
		}
		return queueRefetch(ctx, tx, again)
	})
	if err != nil {
		if ctx.Err() != nil {
			// Cut off by the loop's end, the results are still good:
			// writeAtStop writes them.
			p.fetches.putBack(jobs)
		}
		return err
	}
	for _, k := range written {
		p.released(k)
	}
	return nil
}

// skipHeld takes out of due the objects whose rows another transaction
// holds, and postpones their entries: no Stripe request is spent on an
// object that can't be stored yet, and the entries leave their places
// among the oldest due ones to the others.
func (p *poller) skipHeld(ctx context.Context, due []refetch) ([]refetch, error) {
	p.look++ // the drain's look at the held rows: here, then in its transaction
	w := store.WriteSet{}
	for _, r := range due {
		w.Add(r.Table, r.ID, false)
	}
	// Outside a transaction block: the batch runs as one implicit
	// transaction, so the rows it locks are free again at once. Held for
	// a transaction of the loop's, they would make a write-through's
	// apply of those very rows (a re-fetch is due mostly for objects just
	// written) wait, and past its 250 ms inside a client's transaction,
	// leave its own write unread.
	busy, err := lockRows(ctx, p.cfg.Pool, w)
	if err != nil || len(busy) == 0 {
		return due, err
	}
	if err := p.inTx(ctx, func(tx pgx.Tx) error { return p.postponeHeld(ctx, tx, busy) }); err != nil {
		return due, err
	}
	kept := due[:0]
	for _, r := range due {
		if _, held := busy[r.refetchKey]; !held {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// postponeHeld moves the queued re-fetches of held objects back by their
// backoff (heldAgain), leaving queued_at alone: it is no new reason to
// fetch.
func (p *poller) postponeHeld(ctx context.Context, tx pgx.Tx, held map[refetchKey]lockSite) error {
	if len(held) == 0 {
		return nil
	}
	now := p.clock.get()
	var objs, ids []string
	var nbs []time.Time
	for k, site := range held {
		objs, ids, nbs = append(objs, k.Table), append(ids, k.ID), append(nbs, now.Add(p.heldAgain(k, site)))
	}
	if _, err := tx.Exec(ctx, `UPDATE stripe_sync.events_refetch q SET not_before = GREATEST(q.not_before, x.nb)
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS x(object, id, nb)
WHERE q.object = x.object AND q.id = x.id`, objs, ids, nbs); err != nil {
		return fmt.Errorf("events: postpone re-fetches of held rows: %w", err)
	}
	return nil
}

// deletedStub reports whether raw is a deleted object's stub ({"id", "object",
// "deleted": true}), which store.Upsert turns into a deletion.
func deletedStub(raw json.RawMessage) bool {
	var o struct {
		Deleted bool `json:"deleted"`
	}
	return json.Unmarshal(raw, &o) == nil && o.Deleted
}

// invoiceCustomer is the id of an invoice's customer ("" if none).
func invoiceCustomer(raw json.RawMessage) string {
	var o struct{ Customer json.RawMessage }
	if json.Unmarshal(raw, &o) != nil {
		return ""
	}
	return schema.RefID(o.Customer)
}

// noteTaxIDChanges records that the tax ids of customers changed now
// (inside a transaction, under txMu).
func (p *poller) noteTaxIDChanges(customers []string) {
	if len(customers) == 0 {
		return
	}
	if p.taxIDsChanged == nil {
		p.taxIDsChanged = map[string]time.Time{}
	}
	now := time.Now()
	for _, c := range customers {
		p.taxIDsChanged[c] = now
	}
}

// taxIDCustomer is the customer of a re-fetched tax id: the fetched
// object's, or, when it is gone, the stored row's (read before its
// deletion).
func taxIDCustomer(ctx context.Context, tx pgx.Tx, f fetched) (string, error) {
	if f.obj != nil {
		var o struct{ Customer, Owner json.RawMessage }
		if json.Unmarshal(f.obj.Raw, &o) != nil {
			return "", nil
		}
		return taxIDOwner(o.Customer, o.Owner), nil
	}
	var cus *string
	err := tx.QueryRow(ctx, `SELECT customer FROM stripe.tax_ids WHERE id = $1`, f.ID).Scan(&cus)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("events: customer of tax id %s: %w", f.ID, err)
	}
	if cus == nil {
		return "", nil
	}
	return *cus, nil
}

// fetch retrieves one queued object, with its nested lists complete
// (probe: its table's probe, tableGate).
func (p *poller) fetch(ctx context.Context, r refetch, probe bool) (fetched, error) {
	f := fetched{refetch: r}
	t, ok := schema.Lookup(r.Table)
	if !ok || t.RetrievePath == "" {
		if ok && r.held != nil {
			return p.fromHeld(ctx, f, t, nil)
		}
		f.drop = true
		return f, nil
	}
	var resp *stripeapi.Response
	// While Stripe refuses the key the whole table, its answer stands in
	// for a request (tableGate).
	err, gated := p.tableGate(r.Table, probe)
	switch {
	case errors.Is(err, errUndecided):
		return f, err
	case gated:
	case t.Virtual:
		// upcoming_invoices: the only virtual table, keyed by customer.
		q := url.Values{}
		q.Set("customer", r.ID)
		resp, err = p.cfg.Client.Get(ctx, t.RetrievePath, q)
	default:
		resp, err = p.cfg.Client.Get(ctx, strings.ReplaceAll(t.RetrievePath, "{id}", url.PathEscape(r.ID)), stripeapi.ExpandIncluded(nil, t, false))
	}
	if !gated {
		p.noteAnswer(r.Table, r.ID, err)
	}
	if stripeapi.IsNotFound(err) {
		// Gone: deleted in Stripe (an id used again would have answered
		// with the new object), or no upcoming invoice any more.
		f.goneAt = p.clock.get()
		return f, nil
	}
	if err != nil {
		var se *stripeapi.Error
		if errors.As(err, &se) && se.HTTPStatus == 400 && t.Virtual {
			// Stripe answers 400 for a customer without anything upcoming
			// in some cases (e.g. deleted customer): nothing to show.
			f.goneAt = p.clock.get()
			return f, nil
		}
		if refused(err) {
			// Refused for good (a restricted key without access to the
			// type, a malformed id, an object our API version can't
			// render): a retry now can't succeed, and an entry left due
			// would keep its slot among the oldest due ones, so enough of
			// them would starve every other re-fetch. An object left out
			// of a held row gets the state the sync had then, as it
			// would have without the lock. Any other stays queued,
			// unresolved: what queued it (a same-second tie, a cut
			// list, an event in another API version…) means the row may
			// be stale, and dropping the entry would hide that.
			if r.held != nil {
				return p.fromHeld(ctx, f, t, err)
			}
			return p.unresolvedRefusal(f, err, gated), nil
		}
		return f, err
	}
	p.observeDate(resp.AsOf)
	obj := &store.Object{Raw: resp.Body, AsOf: resp.AsOf}
	if t.Virtual {
		// Key the virtual row by the customer asked for, whatever the
		// response carries.
		f.obj = obj
		return f, nil
	}
	if obj.Raw, _, err = p.cfg.Client.CompleteIncluded(ctx, t, obj.Raw); err != nil {
		return p.restRefused(f, err)
	}
	kids, err := completeNested(ctx, p.cfg.Client, t, resp.Body, nil)
	if err != nil {
		return p.restRefused(f, err)
	}
	obj.Children = kids
	f.obj = obj
	if l, ok := listedWith[r.Table]; ok && (l.only == nil || l.only(resp.Body)) {
		if f.listed, err = p.listWith(ctx, l, r.ID); err != nil {
			f.obj = nil
			return p.restRefused(f, err)
		}
	}
	return f, nil
}

// restRefused is f, whose object Stripe gave but not what comes with it
// (an included or nested list, the objects listed along: err), as a
// failed fetch (retried at the next drain), or, when Stripe refused it for
// good (a restricted key without access to refunds, say), kept queued,
// unresolved: retried at every drain, it would spend the rate limit on
// an answer that can't change.
func (p *poller) restRefused(f fetched, err error) (fetched, error) {
	if !refused(err) {
		return f, err
	}
	f.obj = nil
	return p.unresolvedRefusal(f, err, false), nil
}

// listedWith are the objects listed along with every re-fetch of another,
// because they change with it and have no event of their own, so that
// whichever reason queued it last, none is missed:
//   - a charge's refunds: under API 2023-10-16 Stripe sends refund.created
//     only for refunds without a charge; a charge's refund shows in
//     charge.refunded, whose charge no longer embeds its refunds (since
//     2022-11-15);
//   - a coupon's promotion codes: "a promotion code is only active if the
//     coupon is also valid", so a redemption that uses the coupon up (a
//     customer.discount.* event, which re-fetches the coupon) deactivates
//     all of them, with no promotion code event. Only then: every
//     redemption re-fetches the coupon, and a campaign's coupon may have
//     thousands of codes, a list request per 100.
var listedWith = map[string]listed{
	"charges": {path: "/v1/refunds", param: "charge", table: "refunds"},
	"coupons": {path: "/v1/promotion_codes", param: "coupon", table: "promotion_codes", only: invalidCoupon},
}

// listed says what listedWith lists for an object: path?param=id, stored
// in table; with only, just when only(the object) holds.
type listed struct {
	path, param, table string
	only               func(obj json.RawMessage) bool
}

func invalidCoupon(obj json.RawMessage) bool {
	var c struct {
		Valid *bool `json:"valid"`
	}
	// Undecodable, or without valid: list, as for any coupon.
	return json.Unmarshal(obj, &c) != nil || c.Valid == nil || !*c.Valid
}

// listWith lists the objects of l that belong to the object id.
func (p *poller) listWith(ctx context.Context, l listed, id string) ([]fetched, error) {
	q := url.Values{}
	q.Set(l.param, id)
	var out []fetched
	err := p.cfg.Client.ListAll(ctx, l.path, q, func(pg *stripeapi.Page) error {
		p.observeDate(pg.AsOf)
		for _, d := range pg.Data {
			oid, err := stripeapi.ObjectID(d)
			if err != nil {
				return err
			}
			out = append(out, fetched{refetch: refetch{refetchKey: refetchKey{l.table, oid}}, obj: &store.Object{Raw: d, AsOf: pg.AsOf}})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events: list %s of %s %s: %w", l.table, l.param, id, err)
	}
	return out, nil
}

// refused: a 4xx that repeating the request won't change. 401 (the key
// may be fixed), 404 (handled as gone), 409 and 429 are not.
func refused(err error) bool {
	var se *stripeapi.Error
	if !errors.As(err, &se) || se.HTTPStatus < 400 || se.HTTPStatus >= 500 {
		return false
	}
	switch se.HTTPStatus {
	case http.StatusUnauthorized, http.StatusNotFound, http.StatusConflict, http.StatusTooManyRequests:
		return false
	}
	return se.ShouldRetry != "true"
}

// fromHeld is f, whose re-fetch Stripe refused for good (refusal; nil: the
// table has no retrieve endpoint), to be settled with the state left out
// of its held row (f.held) instead, as that state's writer would have
// written it. An event carries a nested list's first page only, and the
// contract wants nested lists whole (CONTRACT §3): the rest is paged from
// the list's own endpoint, which may answer a key that may not retrieve
// the object (or the object's id, refused as malformed, is not the list's
// parameter). The children paged are Stripe's current ones, at least as
// new as the held state, as a re-fetch's would be. Refused those too,
// writing the state would store a cut list (the items beyond its first
// page stale, or missing): it is not written, and the entry stays queued,
// unresolved (keepUnresolved).
func (p *poller) fromHeld(ctx context.Context, f fetched, t *schema.Table, refusal error) (fetched, error) {
	f.refusal = refusal
	if h := f.held; h.Object != nil {
		kids, err := completeNested(ctx, p.cfg.Client, t, h.Object.Raw, h.Object.Children)
		switch {
		case err == nil && len(kids) > 0:
			// A copy: the entry's state stays as queued.
			obj := *h.Object
			obj.Children = make(map[string][]json.RawMessage, len(kids)+len(h.Object.Children))
			for field, list := range h.Object.Children {
				obj.Children[field] = list
			}
			for field, list := range kids {
				obj.Children[field] = list
			}
			held := *h
			held.Object = &obj
			f.held = &held
		case err != nil && (refused(err) || stripeapi.IsNotFound(err)):
			f.unresolved = "the state left out of its held row has a nested list cut at has_more, and Stripe refused the rest of the list"
			f.refusal = err
			return f, nil
		case err != nil:
			return f, err // retried, as a failed fetch
		}
	}
	f.useHeld = true
	// "Under the guard": a tie with the stored state is not written
	// (keepUnresolved says so).
	p.log.Warn("re-fetch refused by Stripe; storing, under the ordering guard, the state the sync had when another transaction held the row",
		"table", f.Table, "id", f.ID, "err", refusal)
	return f, nil
}

// completeNested pages the nested lists of obj that were cut at has_more
// (CONTRACT §3: nested lists are always complete) and returns them whole;
// the fields of have (complete lists already) are left out.
func completeNested(ctx context.Context, c *stripeapi.Client, t *schema.Table, raw json.RawMessage, have map[string][]json.RawMessage) (map[string][]json.RawMessage, error) {
	if len(t.Nested) == 0 {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("events: %s object: %w", t.Name, err)
	}
	var id string
	_ = json.Unmarshal(fields["id"], &id)
	var out map[string][]json.RawMessage
	for _, n := range t.Nested {
		v, ok := fields[n.Field]
		if _, done := have[n.Field]; !ok || done {
			continue
		}
		var l struct {
			Data    []json.RawMessage `json:"data"`
			HasMore bool              `json:"has_more"`
			URL     string            `json:"url"`
		}
		if json.Unmarshal(v, &l) != nil || !l.HasMore {
			continue
		}
		path, q, err := nestedListURL(n, l.URL, id)
		if err != nil {
			return nil, err
		}
		var all []json.RawMessage
		if err := c.ListAll(ctx, path, q, func(pg *stripeapi.Page) error {
			all = append(all, pg.Data...)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("events: page %s of %s %s: %w", n.Field, t.Name, id, err)
		}
		if out == nil {
			out = map[string][]json.RawMessage{}
		}
		out[n.Field] = all
	}
	return out, nil
}

// nestedListURL is where the rest of a nested list is: the list's own url
// ("/v1/invoices/in_1/lines", "/v1/subscription_items?subscription=sub_1"),
// else the schema's list path.
func nestedListURL(n schema.NestedList, listURL, parentID string) (string, url.Values, error) {
	if listURL != "" {
		u, err := url.Parse(listURL)
		if err != nil || !strings.HasPrefix(u.Path, "/v1/") {
			return "", nil, fmt.Errorf("events: nested list url %q", listURL)
		}
		return u.Path, u.Query(), nil
	}
	if parentID == "" {
		return "", nil, fmt.Errorf("events: nested list %s without url or parent id", n.Field)
	}
	q := url.Values{}
	path := n.ListPath
	if strings.Contains(path, "{id}") {
		path = strings.ReplaceAll(path, "{id}", url.PathEscape(parentID))
	} else if ct, ok := schema.Lookup(n.Table); ok && ct.Parent != nil {
		q.Set(ct.Parent.Column, parentID)
	}
	return path, q, nil
}

// listedByCreated are the tables whose new objects have no event of their
// own, so pollBalance lists them by created.
var listedByCreated = []struct{ Table, Path string }{
	{"balance_transactions", "/v1/balance_transactions"},
	// Stripe has no checkout.session.created (not among 2023-10-16's event
	// types): an open session reaches no event until it completes or
	// expires, up to 24 h later.
	{"checkout_sessions", "/v1/checkout/sessions"},
}

// pollBalance lists balance transactions and checkout sessions created
// since the last check (minus LookBack, for late visibility): they have no
// creation events. Pending balance transactions past their available_on
// are re-fetched (hourly at most) to see them turn available.
func (p *poller) pollBalance(ctx context.Context) error {
	since := p.cur.BalanceCheckedThrough
	if since.IsZero() {
		since = p.cur.CheckedThrough
	}
	q := url.Values{}
	q.Set("created[gte]", strconv.FormatInt(since.Add(-p.cfg.LookBack).Unix(), 10))
	objs := map[string][]store.Object{}
	var checked time.Time
	for _, l := range listedByCreated {
		t, ok := schema.Lookup(l.Table)
		if !ok {
			return fmt.Errorf("list %s: unknown table", l.Table)
		}
		var first time.Time
		err := p.cfg.Client.ListAll(ctx, l.Path, stripeapi.ExpandIncluded(q, t, true), func(pg *stripeapi.Page) error {
			if first.IsZero() {
				first = pg.AsOf
			}
			p.observeDate(pg.AsOf)
			for _, d := range pg.Data {
				d, _, err := p.cfg.Client.CompleteIncluded(ctx, t, d)
				if err != nil {
					return err
				}
				objs[l.Table] = append(objs[l.Table], store.Object{Raw: d, AsOf: pg.AsOf})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", l.Table, err)
		}
		if first.IsZero() {
			return nil
		}
		// Checked through the oldest of the lists' first pages.
		if checked.IsZero() || first.Before(checked) {
			checked = first
		}
	}
	next := p.cur
	next.BalanceCheckedThrough = checked
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		var again []refetch
		w := store.WriteSet{}
		for _, l := range listedByCreated {
			ids, _ := objectIDs(objs[l.Table])
			for _, id := range ids {
				w.Add(l.Table, id, false)
			}
		}
		busy, err := lockRows(ctx, tx, w)
		if err != nil {
			return err
		}
		for _, l := range listedByCreated {
			list := objs[l.Table]
			if len(busy) > 0 {
				// Held by another transaction: fetched again later.
				list = nil
				for _, o := range objs[l.Table] {
					id, _ := stripeapi.ObjectID(o.Raw)
					if _, held := busy[refetchKey{l.Table, id}]; held {
						again = append(again, refetch{refetchKey: refetchKey{l.Table, id}, NotBefore: o.AsOf, Reason: reasonLocked,
							held: &store.Held{Object: &o, AsOf: o.AsOf}})
						continue
					}
					list = append(list, o)
				}
			}
			if len(list) == 0 {
				continue
			}
			res, err := store.Upsert(ctx, tx, l.Table, list)
			if err != nil {
				return err
			}
			// A listed state of the second of an applied event that
			// differs from it (a session completed as it was listed):
			// fetch after that second, as for events.
			last := objs[l.Table][len(objs[l.Table])-1].AsOf // the newest page's Date
			for _, id := range res.Ambiguous {
				again = append(again, refetch{refetchKey: refetchKey{l.Table, id}, NotBefore: last.Add(time.Second), Reason: reasonAmbiguous})
			}
			for _, id := range res.Incomplete {
				again = append(again, refetch{refetchKey: refetchKey{l.Table, id}, NotBefore: last, Reason: reasonIncomplete})
			}
		}
		if err := queueRefetch(ctx, tx, again); err != nil {
			return err
		}
		// A pending transaction turns available around available_on
		// without any event: re-fetch the due ones, each at most hourly.
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
SELECT 'balance_transactions', id, $1::timestamptz, $2 FROM stripe.balance_transactions
WHERE status = 'pending' AND available_on <= $1 AND "_synced_at" < now() - interval '1 hour'
ON CONFLICT (object, id) DO NOTHING`, checked, reasonDue); err != nil {
			return fmt.Errorf("events: queue due balance transactions: %w", err)
		}
		return saveCursor(ctx, tx, next)
	})
	if err != nil {
		return err
	}
	p.cur = next
	return nil
}
