package backfill

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// reasonLocked is sync/events' reason for a re-fetch of an object whose
// row another transaction held (see doc.go, "Rows held by other
// transactions").
const reasonLocked = "locked"

// reasonUnresolved is sync/events' reason for an entry whose object Stripe
// refused to re-fetch and whose held state could not be written exactly:
// a new held state supersedes it, as the events loop's own queueing does.
const reasonUnresolved = "unresolved"

// pageWrites are the objects of a page its transaction writes, and the
// objects left out because another transaction holds one of their rows
// (held, with the states left out in heldStates).
type pageWrites struct {
	objs       []store.Object
	included   map[string][]store.Object
	held       []store.RowKey
	heldStates []*store.Held
}

// withoutHeld locks the rows a page writes (its objects of table t, keyed
// by ids, or by parent for a virtual table, and the included lists of per
// customer tables) and leaves out the objects another transaction holds.
func withoutHeld(ctx context.Context, tx pgx.Tx, t *schema.Table, parent string, objs []store.Object, ids []string, included map[string][]store.Object) (pageWrites, error) {
	key := func(i int) string {
		if t.Virtual {
			return parent // upcoming_invoices: keyed by customer, one per request
		}
		return ids[i]
	}
	w := store.WriteSet{}
	for i := range objs {
		if k := key(i); k != "" {
			w.Add(t.Name, k, false)
		}
	}
	incIDs := map[string][]string{}
	for table, list := range included {
		for _, o := range list {
			id, err := stripeapi.ObjectID(o.Raw)
			if err != nil {
				return pageWrites{}, err
			}
			incIDs[table] = append(incIDs[table], id)
			w.Add(table, id, false)
		}
	}
	busy, err := store.LockRows(ctx, tx, w)
	if err != nil || len(busy) == 0 {
		return pageWrites{objs: objs, included: included}, err
	}
	pw := pageWrites{included: map[string][]store.Object{}}
	for i, o := range objs {
		k := store.RowKey{Table: t.Name, ID: key(i)}
		if _, ok := busy[k]; ok {
			pw.held = append(pw.held, k)
			pw.heldStates = append(pw.heldStates, &store.Held{Object: &o, AsOf: o.AsOf})
			continue
		}
		pw.objs = append(pw.objs, o)
	}
	for table, list := range included {
		for i, o := range list {
			k := store.RowKey{Table: table, ID: incIDs[table][i]}
			if _, ok := busy[k]; ok {
				pw.held = append(pw.held, k)
				pw.heldStates = append(pw.heldStates, &store.Held{Object: &o, AsOf: o.AsOf})
				continue
			}
			pw.included[table] = append(pw.included[table], o)
		}
	}
	return pw, nil
}

// queueLocked queues keys in the events loop's re-fetch queue, due from
// asOf: a fetch then shows a state at least as new as the one left out.
// states[i] is what was left out of keys[i] (store.Held), written if
// Stripe refuses the re-fetch for good: for a page's object, the page's
// state, which also keeps the sweep from taking a row the page could not
// rewrite for a gone object. An entry already queued keeps the later due
// time and the newer held state, as the loop's own queueing does.
func queueLocked(ctx context.Context, tx pgx.Tx, keys []store.RowKey, states []*store.Held, asOf time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	// One row per key (ON CONFLICT can't touch a row twice): the newer
	// state.
	type entry struct {
		k store.RowKey
		h *store.Held
	}
	byKey := map[store.RowKey]int{}
	var es []entry
	for i, k := range keys {
		j, ok := byKey[k]
		if !ok {
			byKey[k] = len(es)
			es = append(es, entry{k, states[i]})
			continue
		}
		if states[i].Newer(es[j].h, k.Table) {
			es[j].h = states[i]
		}
	}
	objects, ids := make([]string, len(es)), make([]string, len(es))
	helds, heldAt := make([]string, len(es)), make([]time.Time, len(es))
	for i, e := range es {
		objects[i], ids[i] = e.k.Table, e.k.ID
		h, err := e.h.Encode()
		if err != nil {
			return err
		}
		helds[i], heldAt[i] = h, e.h.AsOf
	}
	// As sync/events' queueRefetch keeps the newer held state.
	_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason, held, held_as_of)
SELECT o, i, $3::timestamptz, $4, h::jsonb, ha FROM unnest($1::text[], $2::text[], $5::text[], $6::timestamptz[]) AS x(o, i, h, ha)
ON CONFLICT (object, id) DO UPDATE SET
    reason = CASE WHEN excluded.not_before > q.not_before OR q.reason = '`+reasonUnresolved+`' THEN excluded.reason ELSE q.reason END,
    not_before = CASE WHEN q.reason = '`+reasonUnresolved+`' THEN excluded.not_before ELSE GREATEST(q.not_before, excluded.not_before) END,
    queued_at = clock_timestamp(),
    `+store.HeldMergeSQL,
		objects, ids, asOf, reasonLocked, helds, heldAt)
	if err != nil {
		return fmt.Errorf("backfill: queue re-fetch of held rows: %w", err)
	}
	return nil
}
