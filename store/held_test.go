package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/store"
)

// A held state goes into the re-fetch queue's jsonb column, which refuses
// \u0000 and lone surrogate escapes that Upsert repairs: such a string in
// one held object's metadata (or in one of its nested list's items) must
// neither fail the writer's transaction nor change what is written later
// (U+FFFD, as Upsert stores it).
func TestHeldEncodeStorableAsJSONB(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	at := t0.Add(time.Minute)
	raw := invoice("in_nul", []string{"il_a"}, true)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	fields["description"] = json.RawMessage(`"a\u0000b"`)
	raw, _ = json.Marshal(fields)
	kids := []json.RawMessage{
		json.RawMessage(`{"id": "il_a", "object": "line_item", "amount": 1, "description": "x\ud800y"}`),
		json.RawMessage(`{"id": "il_b", "object": "line_item", "amount": 2}`),
	}
	h := &store.Held{Object: &store.Object{Raw: raw, AsOf: at, Children: map[string][]json.RawMessage{"lines": kids}}, AsOf: at}
	enc, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// As sync/events' queueRefetch and sync/backfill's queueLocked store
	// it (stripe_sync.events_refetch belongs to those packages).
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE queue (held jsonb, held_as_of timestamptz)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO queue (held, held_as_of) SELECT h::jsonb, $1 FROM unnest($2::text[]) AS x(h)`, at, []string{enc}); err != nil {
		t.Fatalf("queueing a held state with \\u0000 and a lone surrogate: %v", err)
	}
	var stored []byte
	var storedAt time.Time
	if err := conn.QueryRow(ctx, `SELECT held, held_as_of FROM queue`).Scan(&stored, &storedAt); err != nil {
		t.Fatal(err)
	}
	back, err := store.DecodeHeld(stored, storedAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := back.Apply(ctx, tx, "invoices", "in_nul")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var desc, line string
	if err := conn.QueryRow(ctx, `SELECT i.description, l.description FROM stripe.invoices i
JOIN stripe.invoice_line_items l ON l.invoice = i.id AND l.id = 'il_a' WHERE i.id = 'in_nul'`).Scan(&desc, &line); err != nil {
		t.Fatal(err)
	}
	if desc != "a\ufffdb" || line != "x\ufffdy" {
		t.Errorf("applied held state: description %q, line description %q; want a\ufffdb, x\ufffdy", desc, line)
	}
	if got := lineIDs(t, conn, "in_nul"); len(got) != 2 {
		t.Errorf("lines %v, want the held state's complete list of 2", got)
	}
}

// heldStates are the states a held row's queue entry can merge: a coupon
// deleted in second 1010 (created 1000), the new coupon created with its
// id in that second, an update of the deleted one in that second, and the
// deletion's report without the deleted object's created.
func heldStates() (del, delNoCreated, again, update *store.Held) {
	at := time.Unix(1010, 0).UTC()
	del = &store.Held{Deleted: true, Created: time.Unix(1000, 0).UTC(), AsOf: at}
	delNoCreated = &store.Held{Deleted: true, AsOf: at}
	again = &store.Held{Object: &store.Object{Raw: json.RawMessage(`{"id":"SUMMER","object":"coupon","created":1010,"percent_off":20}`), AsOf: at}, AsOf: at}
	update = &store.Held{Object: &store.Object{Raw: json.RawMessage(`{"id":"SUMMER","object":"coupon","created":1000,"percent_off":10}`), AsOf: at}, AsOf: at}
	return
}

// A coupon deleted and created again with its id in one second (a batch
// sync/events' plan stores as the new coupon) leaves, held, the new
// coupon's state: a deletion wins a tie only over the deleted object's
// own states. Before, the deletion always won, and a refused re-fetch
// removed the coupon Stripe has.
func TestHeldNewerRecreatedInDeletionSecond(t *testing.T) {
	del, delNoCreated, again, update := heldStates()
	later := &store.Held{Object: update.Object, AsOf: del.AsOf.Add(time.Second)}
	for _, c := range []struct {
		name  string
		h, o  *store.Held
		table string
		want  bool
	}{
		{"deletion over the new coupon", del, again, "coupons", false},
		{"new coupon over the deletion", again, del, "coupons", true},
		{"deletion over an update of the deleted coupon", del, update, "coupons", true},
		{"update of the deleted coupon over the deletion", update, del, "coupons", false},
		{"new coupon over a deletion of unknown created", again, delNoCreated, "coupons", false},
		{"ids Stripe never gives again: the deletion", del, again, "customers", true},
		{"ids Stripe never gives again: not the object", again, del, "customers", false},
		{"a later state", later, del, "coupons", true},
		{"anything over none", update, nil, "coupons", true},
	} {
		if got := c.h.Newer(c.o, c.table); got != c.want {
			t.Errorf("%s: Newer %v, want %v", c.name, got, c.want)
		}
	}
}

// The queue's ON CONFLICT (HeldMergeSQL) keeps what Held.Newer keeps,
// when the two states are queued by different transactions.
func TestHeldMergeSQLAsNewer(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE events_refetch (object text, id text, held jsonb, held_as_of timestamptz, PRIMARY KEY (object, id))`); err != nil {
		t.Fatal(err)
	}
	queue := func(table string, h *store.Held) {
		t.Helper()
		var enc *string
		var at *time.Time
		if h != nil {
			s, err := h.Encode()
			if err != nil {
				t.Fatal(err)
			}
			enc, at = &s, &h.AsOf
		}
		if _, err := conn.Exec(ctx, `INSERT INTO events_refetch AS q (object, id, held, held_as_of) VALUES ($1, 'SUMMER', $2::jsonb, $3)
ON CONFLICT (object, id) DO UPDATE SET `+store.HeldMergeSQL, table, enc, at); err != nil {
			t.Fatal(err)
		}
	}
	kept := func(table string) *store.Held {
		t.Helper()
		var raw []byte
		var at *time.Time
		if err := conn.QueryRow(ctx, `SELECT held, held_as_of FROM events_refetch WHERE object = $1`, table).Scan(&raw, &at); err != nil {
			t.Fatal(err)
		}
		if at == nil {
			return nil
		}
		h, err := store.DecodeHeld(raw, *at)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	del, delNoCreated, again, update := heldStates()
	for _, c := range []struct {
		name        string
		table       string
		first, then *store.Held
		want        *store.Held
	}{
		{"deletion, then the new coupon", "coupons", del, again, again},
		{"new coupon, then the deletion", "coupons", again, del, again},
		{"update of the deleted coupon, then the deletion", "coupons", update, del, del},
		{"deletion, then an update of the deleted coupon", "coupons", del, update, del},
		{"deletion of unknown created, then a coupon of its second", "coupons", delNoCreated, again, delNoCreated},
		{"ids Stripe never gives again", "customers", again, del, del},
		{"no state queued again", "products", update, nil, update},
		{"a state for an entry without one", "plans", nil, update, update},
	} {
		if _, err := conn.Exec(ctx, `DELETE FROM events_refetch`); err != nil {
			t.Fatal(err)
		}
		queue(c.table, c.first)
		queue(c.table, c.then)
		got := kept(c.table)
		if (got == nil) != (c.want == nil) || got != nil && (got.Deletes() != c.want.Deletes() ||
			(got.Object != nil) != (c.want.Object != nil) || got.Object != nil && !jsonEqual(got.Object.Raw, c.want.Object.Raw)) {
			t.Errorf("%s: kept %+v, want %+v", c.name, got, c.want)
		}
		// The Go merge agrees.
		if c.first != nil && c.then != nil {
			goKeeps := c.first
			if c.then.Newer(c.first, c.table) {
				goKeeps = c.then
			}
			if goKeeps != c.want {
				t.Errorf("%s: Held.Newer keeps %+v, want %+v", c.name, goKeeps, c.want)
			}
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// errRollback ends a transaction whose effects a case only looks at.
var errRollback = errors.New("rollback")

// A sweep's verdict on a held row, applied once Stripe refuses the row's
// re-fetch (Held.Apply of a Swept state), removes the row only if Sweep
// would remove it then: a price that a stored invoice item came to embed
// since, or a row on a test clock that the run's refused key could not
// list, is spared, as Sweep spares it. Before, the verdict re-checked only
// _as_of, and removed and tombstoned a price that a stored object still
// uses. Each case runs Sweep itself and the queued verdict (through the
// queue's encoding) on the same rows and wants the same outcome.
func TestSweptVerdictSparesWhatSweepSpares(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	old, before := t0, t0.Add(time.Minute)
	obj := func(raw string) store.Object { return store.Object{Raw: []byte(raw), AsOf: old} }
	upsert(t, conn, "prices",
		obj(`{"id":"price_used","object":"price","created":1700000000,"currency":"usd","unit_amount":100,"product":"prod_1"}`),
		obj(`{"id":"price_unused","object":"price","created":1700000000,"currency":"usd","unit_amount":100,"product":"prod_1"}`))
	upsert(t, conn, "customers",
		obj(`{"id":"cus_clock","object":"customer","created":1700000000,"test_clock":"clock_1"}`),
		obj(`{"id":"cus_plain","object":"customer","created":1700000000}`))
	upsert(t, conn, "payment_methods",
		obj(`{"id":"pm_clock","object":"payment_method","created":1700000000,"type":"card","customer":"cus_clock"}`))
	// Stored after the sweep found the price unused (an event, a
	// write-through): the price is embedded, and Stripe's price list
	// leaves such inline prices out.
	upsert(t, conn, "invoiceitems", store.Object{Raw: []byte(`{"id":"ii_1","object":"invoiceitem","customer":"cus_plain","amount":100,"currency":"usd","date":1700000000,
"price":{"id":"price_used","object":"price","created":1700000000,"currency":"usd","unit_amount":100,"product":"prod_1"}}`), AsOf: before.Add(time.Minute)})

	for _, c := range []struct {
		table, id  string
		keepClocks bool
		removed    bool
	}{
		{"prices", "price_used", false, false},
		{"prices", "price_unused", false, true},
		{"customers", "cus_clock", true, false},
		{"customers", "cus_clock", false, true},
		{"customers", "cus_plain", true, true},
		{"payment_methods", "pm_clock", true, false},
		{"payment_methods", "pm_clock", false, true},
	} {
		exists := func(tx pgx.Tx) bool {
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe.`+pgx.Identifier{c.table}.Sanitize()+` WHERE id = $1)`, c.id).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			return ok
		}
		var bySweep, byVerdict, tombstoned bool
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, _, err := store.Sweep(ctx, tx, c.table, before, c.keepClocks, nil); err != nil {
				return err
			}
			bySweep = !exists(tx)
			return errRollback
		}); !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		enc, err := (&store.Held{Swept: true, KeepClocks: c.keepClocks, AsOf: before}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		h, err := store.DecodeHeld([]byte(enc), before)
		if err != nil {
			t.Fatal(err)
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := h.Apply(ctx, tx, c.table, c.id); err != nil {
				return err
			}
			byVerdict = !exists(tx)
			tombstoned, err = store.Tombstoned(ctx, tx, c.table, c.id)
			if err != nil {
				return err
			}
			return errRollback
		}); !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		if bySweep != c.removed {
			t.Errorf("%s %s, keepClocks %v: Sweep removed it: %v, want %v", c.table, c.id, c.keepClocks, bySweep, c.removed)
		}
		if byVerdict != bySweep {
			t.Errorf("%s %s, keepClocks %v: the queued sweep verdict removed it: %v, Sweep: %v", c.table, c.id, c.keepClocks, byVerdict, bySweep)
		}
		if !byVerdict && tombstoned {
			t.Errorf("%s %s, keepClocks %v: spared, but tombstoned", c.table, c.id, c.keepClocks)
		}
	}
}
