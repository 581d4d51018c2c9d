package events

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// applyPlan writes pl inside tx.
func (p *poller) applyPlan(ctx context.Context, tx pgx.Tx, pl plan) error {
	refetches := append([]refetch(nil), pl.Refetch...) // a retried transaction starts over
	upserts, deletes, held, err := withoutHeld(ctx, tx, pl)
	if err != nil {
		return err
	}
	if len(held) > 0 {
		p.log.Debug("objects held by another transaction; left to re-fetch", "objects", len(held))
		refetches = append(refetches, held...)
	}
	tables := make([]string, 0, len(upserts))
	for t := range upserts {
		tables = append(tables, t)
	}
	store.LockOrder(tables) // the order every writer locks in
	for _, table := range tables {
		res, err := store.Upsert(ctx, tx, table, upserts[table])
		if err != nil {
			return err
		}
		for _, id := range res.Ambiguous {
			k := refetchKey{table, id}
			refetches = append(refetches, refetch{refetchKey: k, NotBefore: pl.AsOf[k].Add(time.Second), Reason: reasonAmbiguous})
		}
		for _, id := range res.Incomplete {
			// After the second, as in planBatch.
			k := refetchKey{table, id}
			refetches = append(refetches, refetch{refetchKey: k, NotBefore: pl.AsOf[k].Add(time.Second), Reason: reasonIncomplete})
		}
	}
	for _, d := range deletes {
		// A customer's upcoming invoice goes with it (store.Owned).
		if err := store.DeleteCreated(ctx, tx, d.Table, d.ID, d.At, d.Created); err != nil {
			return err
		}
	}
	if err := queueRefetch(ctx, tx, refetches); err != nil {
		return err
	}
	if err := queueOwners(ctx, tx, upserts); err != nil {
		return err
	}
	// The rest compares the events' objects with stored rows, or queues
	// by id: a held object's event still does that, its re-fetch doesn't.
	if err := queueInvoiceItems(ctx, tx, pl.InvoiceLinks, pl.DeletedInvoices); err != nil {
		return err
	}
	// An upcoming invoice, and a draft one, copy the customer's name,
	// email, address… (Stripe documents no invoice event when they
	// change): refresh those of updated customers.
	if objs := pl.Upserts["customers"]; len(objs) > 0 {
		ids, ats := objectIDs(objs)
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason)
SELECT 'upcoming_invoices', c.id, c.at, $3
FROM unnest($1::text[], $2::timestamptz[]) AS c(id, at)
WHERE EXISTS (SELECT 1 FROM stripe.upcoming_invoices u WHERE u.customer = c.id)
UNION ALL
SELECT 'invoices', i.id, c.at, $4
FROM unnest($1::text[], $2::timestamptz[]) AS c(id, at)
JOIN stripe.invoices i ON i.customer = c.id AND i.status = 'draft'
`+requeue, ids, ats, reasonUpcoming, reasonDraft); err != nil {
			return fmt.Errorf("events: queue invoices of updated customers: %w", err)
		}
	}
	// The other way round: a draft's event older than its customer's stored
	// state (its invoice.created listed after the customer.updated, whose
	// batch found no draft to refresh) stored the details the customer no
	// longer has.
	if objs := pl.Upserts["invoices"]; len(objs) > 0 {
		ids, _ := objectIDs(objs)
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason)
SELECT 'invoices', i.id, c."_as_of", $2
FROM stripe.invoices i JOIN stripe.customers c ON c.id = i.customer
WHERE i.id = ANY($1::text[]) AND i.status = 'draft' AND c."_as_of" >= i."_as_of"
`+requeue, ids, reasonDraft); err != nil {
			return fmt.Errorf("events: queue drafts older than their customer: %w", err)
		}
	}
	// Drafts show their customer's tax ids, which change with no invoice
	// event; either may be listed first. A tax id's deletion leaves no row
	// naming its customer and a same-second order can't be told, so states
	// are compared, not times: drafts of customers whose tax ids changed,
	// and drafts just stored.
	var drafts []string
	if objs := pl.Upserts["invoices"]; len(objs) > 0 {
		drafts, _ = objectIDs(objs)
	}
	if err := queueStaleDrafts(ctx, tx, pl.TaxIDCustomers, drafts); err != nil {
		return err
	}
	p.noteTaxIDChanges(pl.TaxIDCustomers)
	if len(pl.Events) > 0 {
		ids := make([]string, len(pl.Events))
		created := make([]time.Time, len(pl.Events))
		for i, e := range pl.Events {
			ids[i], created[i] = e.ID, e.At()
		}
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.applied_events (id, created)
SELECT * FROM unnest($1::text[], $2::timestamptz[]) ON CONFLICT (id) DO NOTHING`, ids, created); err != nil {
			return fmt.Errorf("events: record applied events: %w", err)
		}
	}
	return nil
}

// withoutHeld locks the rows pl writes (lockRows) and takes the objects
// held by other transactions out of its upserts and deletes: they are
// returned as re-fetches, due from their event's second (a fetch then
// shows a state at least as new), to queue in the same transaction.
func withoutHeld(ctx context.Context, tx pgx.Tx, pl plan) (map[string][]store.Object, []deletion, []refetch, error) {
	w := store.WriteSet{}
	for table, objs := range pl.Upserts {
		ids, _ := objectIDs(objs)
		for _, id := range ids {
			w.Add(table, id, false)
		}
	}
	for _, d := range pl.Deletes {
		w.Add(d.Table, d.ID, true)
	}
	busy, err := lockRows(ctx, tx, w)
	if err != nil || len(busy) == 0 {
		return pl.Upserts, pl.Deletes, nil, err
	}
	due := map[refetchKey]time.Time{}
	states := map[refetchKey]*store.Held{} // what the events would have written
	keep := func(k refetchKey, h *store.Held) {
		if h.Newer(states[k], k.Table) {
			states[k] = h
		}
	}
	upserts := map[string][]store.Object{}
	for table, objs := range pl.Upserts {
		for _, o := range objs {
			id, _ := stripeapi.ObjectID(o.Raw)
			k := refetchKey{table, id}
			if _, held := busy[k]; held {
				due[k] = later(due[k], o.AsOf)
				keep(k, &store.Held{Object: &o, AsOf: o.AsOf})
				continue
			}
			upserts[table] = append(upserts[table], o)
		}
	}
	var deletes []deletion
	for _, d := range pl.Deletes {
		k := refetchKey{d.Table, d.ID}
		if _, held := busy[k]; held {
			due[k] = later(due[k], d.At)
			keep(k, &store.Held{Deleted: true, Created: d.Created, AsOf: d.At})
			continue
		}
		deletes = append(deletes, d)
	}
	held := make([]refetch, 0, len(due))
	for k, at := range due {
		held = append(held, refetch{refetchKey: k, NotBefore: at, Reason: reasonLocked, held: states[k]})
	}
	return upserts, deletes, held, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// queueStaleDrafts queues the draft invoices of customers, and the drafts
// among invoices, whose customer_tax_ids differ from their customer's
// stored tax ids (as {type, value} sets: Stripe documents no order). Until
// finalized, a draft shows "the same tax IDs as customer.tax_ids", so one
// that differs is stale, or the tax ids are not all applied yet (their
// events then compare again). A draft whose customer is not stored is
// queued whatever it shows: a deleted customer's drafts keep the tax ids
// and details it had when deleted, while its tax ids leave the table with
// it, so a tax id event applied with or after the deletion, or a draft
// listed after it, has nothing to compare with; its details neither (the
// check for drafts older than their customer needs the customer's row).
// Only event applies and tax id re-fetches call it, never an invoice's
// re-fetch: tax ids that never match (a key that can't read them) must
// not re-fetch a draft over and over.
func queueStaleDrafts(ctx context.Context, tx pgx.Tx, customers, invoices []string) error {
	if len(customers) == 0 && len(invoices) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason)
SELECT 'invoices', i.id, i."_as_of", $3
FROM stripe.invoices i
WHERE (i.customer = ANY($1::text[]) OR i.id = ANY($2::text[])) AND i.status = 'draft' AND i.customer IS NOT NULL
  AND (NOT EXISTS (SELECT 1 FROM stripe.customers c WHERE c.id = i.customer)
   OR (SELECT coalesce(jsonb_agg(jsonb_build_object('type', e->'type', 'value', e->'value') ORDER BY e->>'type', e->>'value'), '[]')
       FROM jsonb_array_elements(CASE jsonb_typeof(i.customer_tax_ids) WHEN 'array' THEN i.customer_tax_ids ELSE '[]' END) e)
  IS DISTINCT FROM
      (SELECT coalesce(jsonb_agg(jsonb_build_object('type', t.type, 'value', t.value) ORDER BY t.type, t.value), '[]')
       FROM stripe.tax_ids t WHERE t.customer = i.customer))
`+requeue, customers, invoices, reasonDraft); err != nil {
		return fmt.Errorf("events: queue drafts showing other tax ids than their customer: %w", err)
	}
	return nil
}

// queueOwners queues the customers of stored payment methods and tax ids
// that are neither stored nor tombstoned. Stripe keeps a deleted
// customer's payment methods and their events (an updated card, months
// later), and the customer's tombstone is pruned after the retention: the
// customer's re-fetch answers deleted, whose removal takes its payment
// methods along (store.Owned). A customer whose own event is merely
// listed later is fetched once, harmlessly. Event applies and re-fetches
// (which stand in for events) call it.
func queueOwners(ctx context.Context, tx pgx.Tx, upserts map[string][]store.Object) error {
	for _, table := range []string{"payment_methods", "tax_ids"} {
		objs := upserts[table]
		if len(objs) == 0 {
			continue
		}
		ids, _ := objectIDs(objs)
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason)
SELECT DISTINCT ON (x.customer) 'customers', x.customer, x."_as_of", $2
FROM stripe.`+table+` x
WHERE x.id = ANY($1::text[]) AND x.customer IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM stripe.customers c WHERE c.id = x.customer)
  AND NOT EXISTS (SELECT 1 FROM stripe_sync.tombstones t WHERE t.object = 'customers' AND t.id = x.customer)
ORDER BY x.customer, x."_as_of" DESC
`+requeue, ids, reasonOwner); err != nil {
			return fmt.Errorf("events: queue customers of %s: %w", table, err)
		}
	}
	return nil
}

// requeue ends the statements that queue re-fetches: an entry already
// queued keeps the later not-before time, and its queued_at moves, so a
// re-fetch that predates this change leaves it queued (see refetch). An
// unresolved entry (keepUnresolved) takes the new reason and time: what
// queues it again may settle it (a newer state), and it should not wait
// for its retry.
const requeue = `ON CONFLICT (object, id) DO UPDATE SET
    reason = CASE WHEN q.reason = '` + reasonUnresolved + `' THEN excluded.reason ELSE q.reason END,
    not_before = CASE WHEN q.reason = '` + reasonUnresolved + `' THEN excluded.not_before ELSE GREATEST(q.not_before, excluded.not_before) END,
    queued_at = clock_timestamp()`

// objectIDs returns the ids of objs, with their AsOf.
func objectIDs(objs []store.Object) ([]string, []time.Time) {
	ids := make([]string, 0, len(objs))
	ats := make([]time.Time, 0, len(objs))
	for _, o := range objs {
		if id, err := stripeapi.ObjectID(o.Raw); err == nil {
			ids, ats = append(ids, id), append(ats, o.AsOf)
		}
	}
	return ids, ats
}

// queueInvoiceItems queues the invoice items whose stored invoice isn't the
// one now billing them, and those of deleted (draft) invoices, which go
// back to pending: Stripe sends no invoice item event for either.
func queueInvoiceItems(ctx context.Context, tx pgx.Tx, links []invoiceLink, deleted []deletion) error {
	if len(links) > 0 {
		items := make([]string, len(links))
		invs := make([]string, len(links))
		ats := make([]time.Time, len(links))
		amts := make([]*int64, len(links))
		qtys := make([]*int64, len(links))
		mirrors := make([]*string, len(links)) // NULL: not compared
		for i, l := range links {
			items[i], invs[i], ats[i], amts[i], qtys[i] = l.Item, l.Invoice, l.At, l.Amount, l.Quantity
			if l.Mirror != nil {
				m := string(l.Mirror)
				mirrors[i] = &m
			}
		}
		// An item whose line shows another amount, quantity, description,
		// price, tax rates… was updated on its draft invoice (through
		// the item or the line): that sends invoice.updated only. A line
		// without amount or quantity (NULL) compares as unchanged there.
		// The other fields are compared on drafts only (nothing else
		// changes), and a line showing its product's name matches an
		// item without a description of its own (Stripe fills a line's
		// description in since API 2017-12-14).
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason)
SELECT DISTINCT ON (l.item) 'invoiceitems', l.item, l.at, $7
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::jsonb[]) AS l(item, invoice, at, amount, quantity, mirror)
WHERE NOT EXISTS (SELECT 1 FROM stripe.invoiceitems ii WHERE ii.id = l.item AND ii.invoice IS NOT DISTINCT FROM l.invoice
    AND (l.amount IS NULL OR ii.amount IS NOT DISTINCT FROM l.amount)
    AND (l.quantity IS NULL OR ii.quantity IS NOT DISTINCT FROM l.quantity)
    AND (l.mirror IS NULL OR l.mirror = jsonb_build_object(
        'description', COALESCE(NULLIF(ii."_raw"->'description', 'null'),
            CASE WHEN l.mirror->'description' = (SELECT to_jsonb(p.name) FROM stripe.products p WHERE p.id = ii."_raw"#>>'{price,product}')
                THEN l.mirror->'description' ELSE 'null' END),
        'discountable', COALESCE(ii."_raw"->'discountable', 'null'),
        'period', COALESCE(ii."_raw"->'period', 'null'),
        'price', COALESCE(CASE jsonb_typeof(ii."_raw"->'price') WHEN 'object' THEN ii."_raw"->'price'->'id' WHEN 'string' THEN ii."_raw"->'price' END, '""'),
        'tax_rates', COALESCE((SELECT jsonb_agg(COALESCE(r->'id', r)) FROM jsonb_array_elements(CASE jsonb_typeof(ii."_raw"->'tax_rates') WHEN 'array' THEN ii."_raw"->'tax_rates' END) AS r), '[]'))))
  AND NOT EXISTS (SELECT 1 FROM stripe_sync.tombstones t WHERE t.object = 'invoiceitems' AND t.id = l.item)
ORDER BY l.item, l.at DESC
`+requeue, items, invs, ats, amts, qtys, mirrors, reasonOwner); err != nil {
			return fmt.Errorf("events: queue invoice items: %w", err)
		}
	}
	if len(deleted) > 0 {
		ids := make([]string, len(deleted))
		ats := make([]time.Time, len(deleted))
		for i, d := range deleted {
			ids[i], ats[i] = d.ID, d.At
		}
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason)
SELECT DISTINCT ON (ii.id) 'invoiceitems', ii.id, d.at, $3
FROM stripe.invoiceitems ii JOIN unnest($1::text[], $2::timestamptz[]) AS d(id, at) ON ii.invoice = d.id
ORDER BY ii.id, d.at DESC
`+requeue, ids, ats, reasonOwner); err != nil {
			return fmt.Errorf("events: queue invoice items of deleted invoices: %w", err)
		}
	}
	return nil
}

// queueRefetch adds re-fetches; an entry already queued keeps the later
// not-before time.
func queueRefetch(ctx context.Context, tx pgx.Tx, rs []refetch) error {
	if len(rs) == 0 {
		return nil
	}
	// One row per key in one statement (ON CONFLICT can't touch a row twice).
	merged := map[refetchKey]refetch{}
	for _, r := range rs {
		m, ok := merged[r.refetchKey]
		held := m.held
		if r.held != nil && r.held.Newer(held, r.Table) {
			held = r.held
		}
		if !ok || r.NotBefore.After(m.NotBefore) {
			m = r
		}
		m.held = held
		merged[r.refetchKey] = m
	}
	var objs, ids, reasons []string
	var nbs []time.Time
	var helds []*string
	var heldAt []*time.Time
	for _, r := range merged {
		objs = append(objs, r.Table)
		ids = append(ids, r.ID)
		nbs = append(nbs, r.NotBefore)
		reasons = append(reasons, r.Reason)
		h, at, err := encodeHeld(r.held)
		if err != nil {
			return err
		}
		helds, heldAt = append(helds, h), append(heldAt, at)
	}
	_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason, held, held_as_of)
SELECT o, i, nb, r, h::jsonb, ha FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::timestamptz[]) AS x(o, i, nb, r, h, ha)
ON CONFLICT (object, id) DO UPDATE SET
    reason = CASE WHEN excluded.not_before > q.not_before OR q.reason = '`+reasonUnresolved+`' THEN excluded.reason ELSE q.reason END,
    not_before = CASE WHEN q.reason = '`+reasonUnresolved+`' THEN excluded.not_before ELSE GREATEST(q.not_before, excluded.not_before) END,
    queued_at = clock_timestamp(),
    `+keepNewerHeld, objs, ids, nbs, reasons, helds, heldAt)
	if err != nil {
		return fmt.Errorf("events: queue re-fetch: %w", err)
	}
	return nil
}

// keepNewerHeld ends the ON CONFLICT of statements that queue a held
// state: an entry keeps the newer one (store.Held.Newer), whatever
// reason or due time it keeps.
var keepNewerHeld = store.HeldMergeSQL

// encodeHeld is h for queueRefetch's arrays (nil, nil: none).
func encodeHeld(h *store.Held) (*string, *time.Time, error) {
	if h == nil {
		return nil, nil, nil
	}
	s, err := h.Encode()
	if err != nil {
		return nil, nil, err
	}
	at := h.AsOf
	return &s, &at, nil
}

// writeStatus updates stripe_sync.objects (behind the stripe_sync.status
// view): last_event_at per table that got events, and lag_seconds for every
// live table: the age of the newest complete look at Stripe's events
// (Stripe's own visibility delay is not included: it can't be seen), and
// updated_at, from which the status view counts the lag on once no poll
// has completed for a while (recordError leaves it alone).
func (p *poller) writeStatus(ctx context.Context, tx pgx.Tx, pl plan, pollStarted time.Time) error {
	lag := time.Since(pollStarted).Seconds()
	var tables []string
	var ats []time.Time
	for t, at := range pl.TableAt {
		tables = append(tables, t)
		ats = append(ats, at)
	}
	_, err := tx.Exec(ctx, `UPDATE stripe_sync.objects o SET
    last_event_at = CASE WHEN v.at IS NULL THEN o.last_event_at ELSE GREATEST(o.last_event_at, v.at) END,
    lag_seconds = $3, updated_at = now(),
    last_error = CASE WHEN o.last_error LIKE 'events: %' THEN NULL ELSE o.last_error END
FROM stripe_sync.objects o2
LEFT JOIN unnest($1::text[], $2::timestamptz[]) AS v(object, at) ON v.object = o2.object
WHERE o.object = o2.object AND o.phase = 'live'`, tables, ats, lag)
	if err != nil {
		return fmt.Errorf("events: status: %w", err)
	}
	return nil
}

// idleStatus refreshes lag_seconds when a poll found nothing, at most every
// two seconds (an idle account shouldn't cost a write per poll).
func (p *poller) idleStatus(ctx context.Context, pollStarted time.Time) error {
	if time.Since(p.lastStatus) < 2*time.Second && !p.errorShown {
		return nil
	}
	if err := p.inTx(ctx, func(tx pgx.Tx) error { return p.writeStatus(ctx, tx, plan{}, pollStarted) }); err != nil {
		return err
	}
	p.lastStatus, p.errorShown = time.Now(), false
	return nil
}

// markLive marks every table live: the loop follows events for all of them.
// A table in phase error (its backfill failed) stays so.
func (p *poller) markLive(ctx context.Context) error {
	return p.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE stripe_sync.objects SET phase = 'live', updated_at = now() WHERE phase <> 'error' AND phase <> 'live'`)
		if err != nil {
			return fmt.Errorf("events: mark live: %w", err)
		}
		return nil
	})
}

// loadSeen reads the applied events of the first window to re-read.
func (p *poller) loadSeen(ctx context.Context) error {
	from := windowStart(p.cur.CheckedThrough, true, p.cfg.LookBack)
	rows, err := p.cfg.Pool.Query(ctx, `SELECT id, created FROM stripe_sync.applied_events WHERE created >= $1`, from)
	if err != nil {
		return fmt.Errorf("events: load applied events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return fmt.Errorf("events: load applied events: %w", err)
		}
		p.seen[id] = at.Unix()
	}
	return rows.Err()
}

// prune forgets applied events that no window re-reads any more, and
// (hourly) tombstones that nothing can bring back. The applied events table
// keeps ten minutes more than memory, so a restart with an older cursor
// than the one saved last still finds them.
func (p *poller) prune(ctx context.Context) error {
	keep := windowStart(p.cur.CheckedThrough, true, p.cfg.LookBack)
	p.seen.prune(keep)
	_, err := p.cfg.Pool.Exec(ctx, `DELETE FROM stripe_sync.applied_events WHERE created < $1`, keep.Add(-10*time.Minute))
	if err != nil {
		return fmt.Errorf("events: prune applied events: %w", err)
	}
	if time.Since(p.lastTombstonePrune) < tombstonePruneEvery {
		return nil
	}
	// A tombstone keeps a late or replayed copy of a deleted object from
	// bringing it back. Copies come from events (none is read from before
	// keep, and Stripe keeps none past its retention), from lists (which
	// leave deleted objects out) and from re-fetches (which answer "deleted"
	// or 404). So a tombstone older than the retention before keep guards
	// against nothing any more; the week beyond covers clock skew and a
	// backfill page in flight. Stripe gives none of its own ids again; an id
	// of the user's choice used again names an object created after the
	// tombstone, which it does not block (store.ChosenIDs).
	if _, err := p.cfg.Pool.Exec(ctx, `DELETE FROM stripe_sync.tombstones WHERE deleted_at < $1`, keep.Add(-tombstoneKeep)); err != nil {
		return fmt.Errorf("events: prune tombstones: %w", err)
	}
	p.lastTombstonePrune = time.Now()
	return nil
}

const (
	// tombstoneKeep is how long before the events window a tombstone is kept.
	tombstoneKeep = Retention + 7*24*time.Hour
	// tombstonePruneEvery: tombstones have no index by deleted_at, and a day
	// more of them costs nothing.
	tombstonePruneEvery = time.Hour
)
