package events

import "testing"

// TestPlanCouponAgainInDeletionSecond: a batch holding a coupon's
// deletion and the creation of a new coupon with its id, in one second,
// stores the new coupon: the deletion event's object is older.
func TestPlanCouponAgainInDeletionSecond(t *testing.T) {
	del := ev("evt_1", "coupon.deleted", 1010, `{"id": "SUMMER", "object": "coupon", "created": 1000, "percent_off": 10}`)
	add := ev("evt_2", "coupon.created", 1010, `{"id": "SUMMER", "object": "coupon", "created": 1010, "percent_off": 20}`)
	for _, order := range [][]Event{{del, add}, {add, del}} {
		p := planBatch(order)
		if len(p.Upserts["coupons"]) != 1 {
			t.Fatalf("new coupon not upserted: %+v", p.Upserts)
		}
		if len(p.Deletes) != 1 || p.Deletes[0].Created.Unix() != 1000 {
			t.Fatalf("deletion without the deleted coupon's created: %+v", p.Deletes)
		}
	}
}
