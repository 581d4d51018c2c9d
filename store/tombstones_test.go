package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/store"
)

// TestTombstoneSparesLaterObjectWithSameID: a coupon id (the user's
// choice) deleted and then used again names a new coupon. Its states are
// stored whatever order the deletion arrives in, while the deleted coupon's
// states stay out, and a second deletion is final again.
func TestTombstoneSparesLaterObjectWithSameID(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	coupon := func(created int64, pct int) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"id": "SAVE10", "object": "coupon", "created": %d, "percent_off": %d, "valid": true}`, created, pct))
	}
	del := func(at int64) {
		t.Helper()
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			return store.Delete(ctx, tx, "coupons", "SAVE10", time.Unix(at, 0))
		}); err != nil {
			t.Fatal(err)
		}
	}
	pct := func() int {
		t.Helper()
		var p *int
		err := conn.QueryRow(ctx, `SELECT percent_off FROM stripe.coupons WHERE id = 'SAVE10'`).Scan(&p)
		if err == pgx.ErrNoRows {
			return -1
		}
		if err != nil {
			t.Fatal(err)
		}
		return *p
	}
	// The first coupon, created at 1000, deleted at 1010.
	upsert(t, conn, "coupons", store.Object{Raw: coupon(1000, 10), AsOf: time.Unix(1000, 0)})
	del(1010)
	if got := pct(); got != -1 {
		t.Fatalf("deleted coupon still stored (percent_off %d)", got)
	}
	// The new coupon, created at 1020: stored.
	res := upsert(t, conn, "coupons", store.Object{Raw: coupon(1020, 20), AsOf: time.Unix(1020, 0)})
	if !slices.Equal(res.Applied, []string{"SAVE10"}) || pct() != 20 {
		t.Fatalf("new coupon with a deleted one's id: %+v, percent_off %d", res, pct())
	}
	// Replays of the first coupon: its deletion leaves the new row, its
	// states stay out.
	del(1010)
	res = upsert(t, conn, "coupons", store.Object{Raw: coupon(1000, 10), AsOf: time.Unix(1030, 0)})
	if !slices.Equal(res.Tombstoned, []string{"SAVE10"}) || pct() != 20 {
		t.Fatalf("replay of the deleted coupon: %+v, percent_off %d", res, pct())
	}
	// The new coupon deleted (at 1040): its own late states stay out too.
	del(1040)
	res = upsert(t, conn, "coupons", store.Object{Raw: coupon(1020, 20), AsOf: time.Unix(1050, 0)})
	if !slices.Equal(res.Tombstoned, []string{"SAVE10"}) || pct() != -1 {
		t.Fatalf("replay of the second deleted coupon: %+v, percent_off %d", res, pct())
	}
	// The first deletion arriving late doesn't reopen what the second closed.
	del(1010)
	res = upsert(t, conn, "coupons", store.Object{Raw: coupon(1020, 20), AsOf: time.Unix(1060, 0)})
	if !slices.Equal(res.Tombstoned, []string{"SAVE10"}) || pct() != -1 {
		t.Fatalf("replay after a late first deletion: %+v, percent_off %d", res, pct())
	}
}

// TestTombstoneNewObjectOrderUnknown: the new coupon arrives first
// (its creation event listed before the old one's deletion), then the
// deletion of the old one: the new row stays.
func TestTombstoneNewObjectOrderUnknown(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	upsert(t, conn, "coupons", store.Object{Raw: json.RawMessage(`{"id": "SAVE10", "object": "coupon", "created": 1020, "percent_off": 20}`), AsOf: time.Unix(1020, 0)})
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		return store.Delete(ctx, tx, "coupons", "SAVE10", time.Unix(1010, 0))
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM stripe.coupons WHERE id = 'SAVE10'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatal("a late deletion of an earlier coupon removed the new one with its id")
	}
}

// TestTombstoneFinalForGeneratedIDs: ids Stripe generates are never given
// again, so a customer's tombstone blocks every state of it, even one whose
// created is later than the deletion's time (a deletion timed by a clock
// behind Stripe's must not let the deleted customer back).
func TestTombstoneFinalForGeneratedIDs(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		return store.Delete(ctx, tx, "customers", "cus_skew", time.Unix(1000, 0))
	}); err != nil {
		t.Fatal(err)
	}
	res := upsert(t, conn, "customers", store.Object{Raw: json.RawMessage(`{"id": "cus_skew", "object": "customer", "created": 1005}`), AsOf: time.Unix(1005, 0)})
	if !slices.Equal(res.Tombstoned, []string{"cus_skew"}) {
		t.Fatalf("deleted customer stored again: %+v", res)
	}
}
