package backfill

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
)

// A sweep of payment methods by a run whose key was refused the test
// clocks list finds a stale payment method held; its customer is not
// stored, so nothing says it is on a clock. The verdict queued with the
// re-fetch must carry the run's test clock rule: once the customer is
// stored, on a clock, a refused re-fetch applies the verdict as Sweep
// would now, and keeps the payment method (its customer's list was never
// read). Before, the verdict kept only the bound, and removed it.
func TestSweepVerdictCarriesClockRule(t *testing.T) {
	ctx := context.Background()
	pool, db := pgtest.NewMigratedDB(t)
	before := time.Now().UTC().Truncate(time.Second)
	old := before.Add(-time.Hour)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := store.Upsert(ctx, tx, "payment_methods", []store.Object{{
			Raw: []byte(`{"id":"pm_clock","object":"payment_method","created":1700000000,"type":"card","customer":"cus_clock"}`), AsOf: old}}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.backfill_objects (object, upper_bound, planned_at) VALUES ('payment_methods', $1, now() - interval '1 minute')`, before.Unix()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ('backfill_test_clocks_refused', '{"object": "customers"}')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	holder, _ := pgtest.HoldRows(t, db, "payment_methods", "pm_clock")
	var held []string
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		_, held, err = sweep(ctx, tx, "payment_methods")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(held) != 1 || held[0] != "pm_clock" {
		t.Fatalf("sweep left held %v, want [pm_clock]", held)
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The customer's event comes: it is on a test clock.
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := store.Upsert(ctx, tx, "customers", []store.Object{{
			Raw: []byte(`{"id":"cus_clock","object":"customer","created":1700000000,"test_clock":"clock_1"}`), AsOf: before.Add(time.Minute)}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// What sync/events' re-fetcher does when Stripe refuses the re-fetch.
	var raw []byte
	var at time.Time
	if err := pool.QueryRow(ctx, `SELECT held, held_as_of FROM stripe_sync.events_refetch WHERE object = 'payment_methods' AND id = 'pm_clock'`).Scan(&raw, &at); err != nil {
		t.Fatal(err)
	}
	h, err := store.DecodeHeld(raw, at)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Swept || !h.KeepClocks {
		t.Errorf("queued verdict %s: want swept with the run's test clock rule (keep_clocks)", raw)
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := h.Apply(ctx, tx, "payment_methods", "pm_clock")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM stripe.payment_methods WHERE id = 'pm_clock'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Error("the payment method of a customer on a test clock, which the run could not list, was removed by the queued verdict")
	}
}

// A row the backfill could not write (another transaction held it: its
// page's state queued instead) whose re-fetch Stripe then refused for good
// (reason unresolved) is spared by the sweep: the held state, as of the
// sweep's bound or later, says the object existed after the list began.
// Before, the sweep removed (and tombstoned) a live object's row, for as
// long as Stripe refused the re-fetch. An unresolved entry whose held state
// predates the bound spares nothing: the list is the newer word.
func TestSweepSparesUnresolvedHeldNewerThanBound(t *testing.T) {
	ctx := context.Background()
	bound := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		heldAt time.Time
		kept   bool
	}{
		{name: "held state after the bound", heldAt: bound.Add(time.Minute), kept: true},
		{name: "held state before the bound", heldAt: bound.Add(-time.Minute), kept: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, _ := pgtest.NewMigratedDB(t)
			raw := []byte(`{"id":"cus_held","object":"customer","created":1700000000}`)
			if _, err := pool.Exec(ctx, `INSERT INTO stripe_sync.backfill_objects (object, planned_at, upper_bound) VALUES ('customers', $1, $2)`,
				bound, bound.Unix()); err != nil {
				t.Fatal(err)
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			// Stored before the backfill: its page found the row held.
			if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: raw, AsOf: bound.Add(-24 * time.Hour)}}); err != nil {
				t.Fatal(err)
			}
			held, err := (&store.Held{Object: &store.Object{Raw: raw, AsOf: tc.heldAt}, AsOf: tc.heldAt}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason, held, held_as_of)
VALUES ('customers', 'cus_held', now() + interval '10 minutes', 'unresolved', $1, $2)`, held, tc.heldAt); err != nil {
				t.Fatal(err)
			}
			if _, _, err := sweep(ctx, tx, "customers"); err != nil {
				t.Fatal(err)
			}
			var kept bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe.customers WHERE id = 'cus_held')`).Scan(&kept); err != nil {
				t.Fatal(err)
			}
			if kept != tc.kept {
				t.Errorf("row kept by the sweep: %v, want %v", kept, tc.kept)
			}
		})
	}
}
