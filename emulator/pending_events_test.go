package emulator

import (
	"testing"
)

// subItemQuantities lists the quantities of the items a subscription
// object embeds.
func subItemQuantities(sub map[string]any) []int64 {
	var out []int64
	items, _ := sub["items"].(map[string]any)
	data, _ := items["data"].([]any)
	for _, it := range data {
		out = append(out, getInt(it.(map[string]any), "quantity"))
	}
	return out
}

// TestPendingUpdateEventsShowNoPendingItems: an update with
// payment_behavior=pending_if_incomplete whose invoice declines leaves the
// subscription as it was ("The subscription will continue to cycle as if
// no update request was made", pending updates reference). With a once
// coupon on the subscription, finalizing that invoice used the coupon up
// and sent customer.subscription.updated for the discount it removed —
// read from the subscription billUpdateNow had stored with the update
// applied: the new quantity, and on a cycle reset the new period, a state
// the subscription never has while the update is pending. A consumer of
// the events saw the change applied, then taken back.
func TestPendingUpdateEventsShowNoPendingItems(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(item string, r *billingChecker) string
	}{
		{"always_invoice", func(item string, r *billingChecker) string {
			return "items[0][id]=" + item + "&items[0][quantity]=3&proration_behavior=always_invoice"
		}},
		{"cycle reset to yearly", func(item string, r *billingChecker) string {
			return "items[0][id]=" + item + "&items[0][price]=" + r.prices[2]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFrozenClock(t)
			_, s := r.do("POST", "/v1/subscriptions", "customer="+r.cus[0]+"&items[0][price]="+r.prices[0])
			sid := s["id"].(string)
			item := r.items(sid)[0]
			r.do("POST", "/v1/subscriptions/"+sid, "default_payment_method="+r.card(r.cus[0], "pm_card_chargeCustomerFail")+"&coupon="+r.coupons[0])
			r.advanceTo(r.now + 86400)
			before := r.get("subscriptions", sid)
			n := len(r.e.tables["events"].ordered)
			code, v := r.do("POST", "/v1/subscriptions/"+sid, tc.change(item, r)+"&payment_behavior=pending_if_incomplete")
			if code != 200 || v["pending_update"] == nil {
				r.fatalf("pending update: %d %v", code, v)
			}
			seen := 0
			var last map[string]any
			for _, ev := range r.eventsSince(n) {
				obj, _ := ev["data"].(map[string]any)["object"].(map[string]any)
				if getStr(obj, "object") != "subscription" {
					continue
				}
				seen, last = seen+1, ev
				if q := subItemQuantities(obj); len(q) != 1 || q[0] != 1 || getInt(obj, "current_period_start") != getInt(before, "current_period_start") ||
					getInt(obj, "current_period_end") != getInt(before, "current_period_end") {
					r.fatalf("%s shows the pending update applied: quantities %v, period %d to %d (was %d to %d)", getStr(ev, "type"), q,
						getInt(obj, "current_period_start"), getInt(obj, "current_period_end"), getInt(before, "current_period_start"), getInt(before, "current_period_end"))
				}
			}
			// The once coupon was used by the invoice: the subscription's
			// last event says so.
			data, _ := last["data"].(map[string]any)
			prev, _ := data["previous_attributes"].(map[string]any)
			if cur := r.get("subscriptions", sid); seen == 0 || cur["discount"] != nil || prev["discount"] == nil {
				r.fatalf("%d subscription events, the last's previous_attributes %v; discount now %v", seen, prev, cur["discount"])
			}
		})
	}
}

// TestPendingItemMixedRefusal: an item added with
// payment_behavior=pending_if_incomplete that would mix billing periods
// gets Stripe's refusal of mixed periods, not the emulator's "not
// modelled" one, and changes nothing (FuzzBilling's driver checks both;
// the input is the one it found).
func TestPendingItemMixedRefusal(t *testing.T) {
	e, err := New(Options{RateLimit: -1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ops := []byte("\x02\x00\x00\x02\x02C80000")
	r := &billingChecker{fuzzSession: fuzzSession{t: t, e: e}, subSeen: map[string]map[string]any{}}
	r.setup(ops[0], ops[1])
	r.snapshot()
	r.check()
	for i := 2; i+2 < len(ops); i += 3 {
		r.snapshot()
		r.step(ops[i], ops[i+1], ops[i+2])
		r.check()
	}
}
