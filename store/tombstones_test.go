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
	c := newCoupons(t, "SAVE10")
	conn, coupon, del, pct := c.conn, c.obj, func(at int64) { c.del(at, 0) }, c.pct
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

// TestCouponAgainInDeletionSecond: a coupon deleted and created again
// with its id in the same second (DELETE then INSERT in one script, the
// way to change a coupon's discount) is stored, whichever report of the
// deletion comes next; the deleted coupon's states stay out, and the new
// one's deletion is final.
func TestCouponAgainInDeletionSecond(t *testing.T) {
	c := newCoupons(t, "SUMMER")
	conn, coupon, del, pct := c.conn, c.obj, c.del, c.pct
	upsert(t, conn, "coupons", store.Object{Raw: coupon(1000, 10), AsOf: time.Unix(1000, 0)})
	// The write-through's DELETE (Stripe's stub: no created), at 1010.
	del(1010, 0)
	// Its INSERT, in the same second.
	if res := upsert(t, conn, "coupons", store.Object{Raw: coupon(1010, 20), AsOf: time.Unix(1010, 0)}); !slices.Equal(res.Applied, []string{"SUMMER"}) {
		t.Fatalf("coupon created again in its deletion's second: %+v", res)
	}
	// The deletion's event (it carries the deleted coupon), and a report
	// without created: the new coupon stays.
	del(1010, 1000)
	del(1010, 0)
	if got := pct(); got != 20 {
		t.Fatalf("a report of the first deletion removed the new coupon (percent_off %d)", got)
	}
	if res := upsert(t, conn, "coupons", store.Object{Raw: coupon(1000, 10), AsOf: time.Unix(1020, 0)}); !slices.Equal(res.Tombstoned, []string{"SUMMER"}) || pct() != 20 {
		t.Fatalf("replay of the deleted coupon: %+v, percent_off %d", res, pct())
	}
	// The new coupon deleted in turn: final.
	del(1030, 0)
	if res := upsert(t, conn, "coupons", store.Object{Raw: coupon(1010, 20), AsOf: time.Unix(1040, 0)}); !slices.Equal(res.Tombstoned, []string{"SUMMER"}) || pct() != -1 {
		t.Fatalf("replay of the second deleted coupon: %+v, percent_off %d", res, pct())
	}
}

// coupons is a coupon id in a fresh database, with what the tombstone tests
// do to it.
type coupons struct {
	t    *testing.T
	conn *pgx.Conn
	id   string
}

func newCoupons(t *testing.T, id string) coupons {
	return coupons{t: t, conn: setup(t), id: id}
}

// obj is a coupon with the id, created at created.
func (c coupons) obj(created int64, pct int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"id": %q, "object": "coupon", "created": %d, "percent_off": %d, "valid": true}`, c.id, created, pct))
}

// del deletes the id at at; created, when not 0, is the deleted coupon's.
func (c coupons) del(at, created int64) {
	c.t.Helper()
	ct := time.Time{}
	if created != 0 {
		ct = time.Unix(created, 0)
	}
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, c.conn, func(tx pgx.Tx) error {
		return store.DeleteCreated(ctx, tx, "coupons", c.id, time.Unix(at, 0), ct)
	}); err != nil {
		c.t.Fatal(err)
	}
}

// pct is the stored coupon's percent_off, -1 without a row.
func (c coupons) pct() int {
	c.t.Helper()
	var p *int
	err := c.conn.QueryRow(context.Background(), `SELECT percent_off FROM stripe.coupons WHERE id = $1`, c.id).Scan(&p)
	if err == pgx.ErrNoRows {
		return -1
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return *p
}
