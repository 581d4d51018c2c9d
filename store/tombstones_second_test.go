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

// TestCouponAgainInDeletionSecond: a coupon deleted and created again
// with its id in the same second (DELETE then INSERT in one script, the
// way to change a coupon's discount) is stored, whichever report of the
// deletion comes next; the deleted coupon's states stay out, and the new
// one's deletion is final.
func TestCouponAgainInDeletionSecond(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	coupon := func(created int64, pct int) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"id": "SUMMER", "object": "coupon", "created": %d, "percent_off": %d}`, created, pct))
	}
	del := func(at, created int64) {
		t.Helper()
		c := time.Time{}
		if created != 0 {
			c = time.Unix(created, 0)
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			return store.DeleteCreated(ctx, tx, "coupons", "SUMMER", time.Unix(at, 0), c)
		}); err != nil {
			t.Fatal(err)
		}
	}
	pct := func() int {
		t.Helper()
		var p int
		err := conn.QueryRow(ctx, `SELECT percent_off FROM stripe.coupons WHERE id = 'SUMMER'`).Scan(&p)
		if err == pgx.ErrNoRows {
			return -1
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
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
