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

// pageWrites are the objects of a page its transaction writes, and the
// objects left out because another transaction holds one of their rows.
type pageWrites struct {
	objs     []store.Object
	included map[string][]store.Object
	held     []store.RowKey
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
			continue
		}
		pw.objs = append(pw.objs, o)
	}
	for table, list := range included {
		for i, o := range list {
			k := store.RowKey{Table: table, ID: incIDs[table][i]}
			if _, ok := busy[k]; ok {
				pw.held = append(pw.held, k)
				continue
			}
			pw.included[table] = append(pw.included[table], o)
		}
	}
	return pw, nil
}

// queueLocked queues keys in the events loop's re-fetch queue, due from
// asOf: a fetch then shows a state at least as new as the one left out.
// An entry already queued keeps the later due time, as the loop's own
// queueing does.
func queueLocked(ctx context.Context, tx pgx.Tx, keys []store.RowKey, asOf time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	objects, ids := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		objects[i], ids[i] = k.Table, k.ID
	}
	_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch AS q (object, id, not_before, reason)
SELECT DISTINCT o, i, $3::timestamptz, $4 FROM unnest($1::text[], $2::text[]) AS x(o, i)
ON CONFLICT (object, id) DO UPDATE SET
    reason = CASE WHEN excluded.not_before > q.not_before THEN excluded.reason ELSE q.reason END,
    not_before = GREATEST(q.not_before, excluded.not_before), queued_at = clock_timestamp()`, objects, ids, asOf, reasonLocked)
	if err != nil {
		return fmt.Errorf("backfill: queue re-fetch of held rows: %w", err)
	}
	return nil
}
