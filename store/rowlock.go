package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
)

// RowKey names an object by table and key (its id; a customer's for
// upcoming_invoices).
type RowKey struct{ Table, ID string }

// WriteSet names the objects a transaction is about to write, by table.
type WriteSet map[string]*tableWrites

type tableWrites struct{ upserts, deletes []string }

// Add records that id of table is to be upserted, or deleted (del).
func (w WriteSet) Add(table, id string, del bool) {
	tw := w[table]
	if tw == nil {
		tw = &tableWrites{}
		w[table] = tw
	}
	if del {
		tw.deletes = append(tw.deletes, id)
	} else {
		tw.upserts = append(tw.upserts, id)
	}
}

// LockSite is where an object's held row was found: the rows of Table
// whose Col is the object's key, locked in Strength.
type LockSite struct{ Table, Col, Strength string }

// BatchSender is a transaction, or a pool, whose batch runs as one
// implicit transaction (its locks go at its end).
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// LockRows locks, inside tx and without waiting, the rows that writing w
// changes: each object's own row (FOR NO KEY UPDATE for an upsert, as
// INSERT … ON CONFLICT DO UPDATE locks it, so a foreign key of the user's
// referencing it is no obstacle; FOR UPDATE for a delete), its children
// (nested lists, replaced or removed) and, for a delete, the rows it owns
// (Owned). It returns the objects of which some row is held by another
// transaction (a user's SELECT … FOR UPDATE left idle in psql, a long
// UPDATE), keyed by the object, not by the child row; the rows it locked
// stay locked until tx ends, so nothing takes them before the writes.
// Sync writers, which must never wait for a user's transaction, leave
// those objects out and fetch them again later.
func LockRows(ctx context.Context, tx BatchSender, w WriteSet) (map[RowKey]LockSite, error) {
	tables := make([]string, 0, len(w))
	for t := range w {
		tables = append(tables, t)
	}
	LockOrder(tables) // never waits, but keeps runs repeatable
	// One round trip for all of them.
	type check struct {
		table string
		site  LockSite
	}
	var checks []check
	batch := &pgx.Batch{}
	for _, name := range tables {
		t, ok := schema.Lookup(name)
		if !ok {
			continue
		}
		tw := w[name]
		for _, op := range []struct {
			ids []string
			del bool
		}{{tw.upserts, false}, {tw.deletes, true}} {
			if len(op.ids) == 0 {
				continue
			}
			strength := "NO KEY UPDATE"
			if op.del {
				strength = "UPDATE"
			}
			sites := []LockSite{{t.Name, t.Key[len(t.Key)-1], strength}}
			for _, n := range t.Nested {
				if ct, ok := schema.Lookup(n.Table); ok && ct.Parent != nil {
					sites = append(sites, LockSite{ct.Name, ct.Parent.Column, "UPDATE"})
				}
			}
			if op.del {
				for _, d := range Owned[t.Name] {
					sites = append(sites, LockSite{d.Table, "customer", "UPDATE"})
				}
			}
			for _, s := range sites {
				q, err := heldRowsSQL(s)
				if err != nil {
					return nil, err
				}
				batch.Queue(q, op.ids)
				checks = append(checks, check{name, s})
			}
		}
	}
	if len(checks) == 0 {
		return nil, nil
	}
	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	var busy map[RowKey]LockSite
	for _, c := range checks {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("store: lock rows of %s: %w", c.site.Table, err)
		}
		held, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("store: lock rows of %s: %w", c.site.Table, err)
		}
		for _, id := range held {
			k := RowKey{c.table, id}
			if _, ok := busy[k]; ok {
				continue
			}
			if busy == nil {
				busy = map[RowKey]LockSite{}
			}
			busy[k] = c.site
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("store: lock rows: %w", err)
	}
	return busy, nil
}

// heldRowsSQL locks the rows of s.Table whose s.Col is among $1, skipping
// those another transaction holds, and returns the values of s.Col with a
// row skipped. One statement, one snapshot: a row it sees but could not
// lock is held.
func heldRowsSQL(s LockSite) (string, error) {
	t, ok := schema.Lookup(s.Table)
	if !ok {
		return "", fmt.Errorf("store: lock rows: unknown table %q", s.Table)
	}
	keys := make([]string, len(t.Key))
	for i, k := range t.Key {
		keys[i] = schema.Ident(k)
	}
	key := strings.Join(keys, ", ")
	return fmt.Sprintf(`WITH mine AS MATERIALIZED (
  SELECT %[1]s FROM %[2]s WHERE %[3]s = ANY($1::text[]) FOR %[4]s SKIP LOCKED
)
SELECT DISTINCT %[3]s FROM %[2]s WHERE %[3]s = ANY($1::text[]) AND (%[1]s) NOT IN (SELECT %[1]s FROM mine)`,
		key, t.QualifiedName(), schema.Ident(s.Col), s.Strength), nil
}

// Held is the state a sync writer left out because another transaction
// held the object's rows: the state it would have written (Object), or
// the deletion it would have applied (Deleted, by an event; Swept, by a
// completed backfill's sweep, which found the object on no list). The
// writer queues it with the object's re-fetch (stripe_sync.events_refetch,
// columns held and held_as_of), so that a re-fetch Stripe refuses for good
// (a restricted key without retrieve rights, a malformed id) still writes
// what the writer saw, as it would have without the lock.
type Held struct {
	Object  *Object
	Deleted bool
	// Created is the deleted object's created time, when its deletion
	// event carried it (DeleteCreated).
	Created time.Time
	Swept   bool
	// KeepClocks is the Swept verdict's Sweep keepClocks: the rows on
	// test clocks were spared, and stay spared when it is applied.
	KeepClocks bool
	// AsOf is the state's time: Object.AsOf, the deletion event's
	// created, or the sweep's bound (the backfill's planning time).
	AsOf time.Time
}

// heldJSON is Held as stored in the queue's held column.
type heldJSON struct {
	Object   json.RawMessage              `json:"object,omitempty"`
	Children map[string][]json.RawMessage `json:"children,omitempty"`
	Deleted  bool                         `json:"deleted,omitempty"`
	Created  int64                        `json:"created,omitempty"`
	Swept    bool                         `json:"swept,omitempty"`
	// KeepClocks: absent from entries queued before it was recorded,
	// which then apply Sweep's verdict without it, as they did.
	KeepClocks bool `json:"keep_clocks,omitempty"`
}

// Deletes reports whether writing h removes the row (WriteSet.Add).
func (h *Held) Deletes() bool { return h.Deleted || h.Swept }

// Newer reports whether h is to be kept over o (nil: anything is), both
// states of an object of table: the later state; on a tie a deletion,
// unless the other is an object created after the deleted one (an id of
// the user's choice taken again in the deletion's second, ChosenIDs),
// which is what Stripe has after both. HeldMergeSQL decides the same.
func (h *Held) Newer(o *Held, table string) bool {
	switch {
	case o == nil:
		return true
	case !h.AsOf.Equal(o.AsOf):
		return h.AsOf.After(o.AsOf)
	case h.Deletes() && !o.Deletes():
		return !o.recreates(h, table)
	case !h.Deletes() && o.Deletes():
		return h.recreates(o, table)
	}
	return h.Deletes()
}

// recreates reports whether h, an object's state, is of an object created
// after the one the deletion d removed (as sync/events' plan and Upsert's
// tombstones tell them apart).
func (h *Held) recreates(d *Held, table string) bool {
	if !ChosenIDs(table) || h.Object == nil {
		return false
	}
	var o struct {
		Created int64 `json:"created"`
	}
	if json.Unmarshal(h.Object.Raw, &o) != nil || o.Created <= 0 {
		return false
	}
	bound := d.Created
	if bound.IsZero() {
		bound = d.AsOf
	}
	return o.Created > bound.Unix()
}

// HeldMergeSQL ends the ON CONFLICT DO UPDATE of a statement queueing
// held states into stripe_sync.events_refetch AS q: the entry keeps the
// one Held.Newer keeps, whatever reason or due time it keeps.
var HeldMergeSQL = func() string {
	del := func(x string) string { return fmt.Sprintf(`(%[1]s.held ? 'deleted' OR %[1]s.held ? 'swept')`, x) }
	recreates := func(x, d string) string {
		return fmt.Sprintf(`(q.object IN ('coupons', 'plans', 'products') AND NOT %[3]s AND %[4]s
        AND COALESCE(CASE WHEN pg_catalog.jsonb_typeof(%[1]s.held->'object'->'created') = 'number'
            THEN (%[1]s.held->'object'->>'created')::numeric > COALESCE((%[2]s.held->>'created')::numeric,
                pg_catalog.floor(pg_catalog.date_part('epoch', %[2]s.held_as_of))::numeric) END, false))`, x, d, del(x), del(d))
	}
	wins := fmt.Sprintf(`excluded.held IS NOT NULL AND (q.held IS NULL OR excluded.held_as_of > q.held_as_of
        OR (excluded.held_as_of = q.held_as_of AND CASE WHEN %s THEN NOT %s ELSE %s END))`,
		del("excluded"), recreates("q", "excluded"), recreates("excluded", "q"))
	return fmt.Sprintf(`held = CASE WHEN %[1]s THEN excluded.held ELSE q.held END,
    held_as_of = CASE WHEN %[1]s THEN excluded.held_as_of ELSE q.held_as_of END`, wins)
}()

// Encode returns h for the queue's held column (text, cast to jsonb).
func (h *Held) Encode() (string, error) {
	j := heldJSON{Deleted: h.Deleted, Swept: h.Swept, KeepClocks: h.KeepClocks}
	if h.Object != nil {
		// The column is jsonb, which refuses what Upsert repairs
		// (\u0000, a lone surrogate escape): one odd metadata string
		// would fail the writer's transaction, and the events loop would
		// retry its batch for as long as the row is held.
		j.Object = jsonbSafe(h.Object.Raw)
		if h.Object.Children != nil {
			j.Children = make(map[string][]json.RawMessage, len(h.Object.Children))
			for f, kids := range h.Object.Children {
				safe := make([]json.RawMessage, len(kids))
				for i, k := range kids {
					safe[i] = jsonbSafe(k)
				}
				j.Children[f] = safe
			}
		}
	}
	if !h.Created.IsZero() {
		j.Created = h.Created.Unix()
	}
	b, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("store: encode held state: %w", err)
	}
	return string(b), nil
}

// jsonbSafe is raw with the escapes jsonb refuses replaced, as Upsert
// stores them.
func jsonbSafe(raw json.RawMessage) json.RawMessage {
	if needsEscapeRepair(raw) {
		return replaceBadEscapes(raw)
	}
	return raw
}

// DecodeHeld reads a queue entry's held state (nil when raw is empty).
func DecodeHeld(raw []byte, asOf time.Time) (*Held, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var j heldJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("store: decode held state: %w", err)
	}
	h := &Held{Deleted: j.Deleted, Swept: j.Swept, KeepClocks: j.KeepClocks, AsOf: asOf}
	if j.Created != 0 {
		h.Created = time.Unix(j.Created, 0).UTC()
	}
	if len(j.Object) > 0 {
		h.Object = &Object{Raw: j.Object, AsOf: asOf, Children: j.Children}
	}
	if h.Object == nil && !h.Deletes() {
		return nil, errors.New("store: held state without object or deletion")
	}
	return h, nil
}

// Apply writes h for the object id of table inside tx, as its writer
// would have: an upsert (ordered by AsOf, as any), a deletion, or a
// sweep's removal, which applies only while the row is still one the
// sweep would take: stale (_as_of before its bound; a state stored since,
// by an event or a write-through, shows the object exists) and not among
// those Sweep spares (a price a carrier stored since embeds, …).
func (h *Held) Apply(ctx context.Context, tx pgx.Tx, table, id string) (Result, error) {
	switch {
	case h.Deleted:
		return Result{}, DeleteCreated(ctx, tx, table, id, h.AsOf, h.Created)
	case h.Swept:
		return Result{}, removeSwept(ctx, tx, table, id, h.AsOf, h.KeepClocks)
	default:
		return Upsert(ctx, tx, table, []Object{*h.Object})
	}
}

// removeSwept removes the row id of table if Sweep(before, keepClocks)
// would: older than before, and not spared.
func removeSwept(ctx context.Context, tx pgx.Tx, table, id string, before time.Time, keepClocks bool) error {
	t, ok := schema.Lookup(table)
	if !ok {
		return fmt.Errorf("store: unknown table %q", table)
	}
	var stale bool
	if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1 AND "_as_of" < $2%s)`,
		t.QualifiedName(), schema.Ident(t.Key[len(t.Key)-1]), sweepSpares(t, keepClocks)), id, before).Scan(&stale); err != nil {
		return fmt.Errorf("store: remove swept %s %s: %w", table, id, err)
	}
	if !stale {
		return nil
	}
	return removeUnlisted(ctx, tx, t, []string{id}, before)
}
