package events_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// explainMissing logs, for the first differing rows of a failed
// comparison, the cursor and every emulator event mentioning the object
// (and whether it was applied): enough to tell a missed event from an
// object that never had one.
func explainMissing(t *testing.T, v *env, details []string) {
	evs := v.e.Objects("events")
	var cur struct{ ct, bc string }
	v.pool.QueryRow(context.Background(), `SELECT checked_through::text, coalesce((SELECT event_created::text FROM stripe_sync.cursor),'') FROM stripe_sync.events_cursor`).Scan(&cur.ct, &cur.bc)
	t.Logf("cursor: %+v, events in emulator: %d", cur, len(evs))
	for _, d := range details[:min(3, len(details))] {
		f := strings.Fields(d)
		if len(f) < 2 {
			continue
		}
		id := strings.TrimSuffix(f[1], ":")
		obj := v.e.Objects(f[0])[id]
		var o struct{ Created int64 }
		json.Unmarshal(obj, &o)
		t.Logf("%s created %d", id, o.Created)
		if f[0] == "subscription_items" {
			explainItem(t, v, obj)
		}
		for eid, raw := range evs {
			if strings.Contains(string(raw), id) {
				var e struct {
					Type    string
					Created int64
				}
				json.Unmarshal(raw, &e)
				var applied bool
				v.pool.QueryRow(context.Background(), `SELECT EXISTS(SELECT 1 FROM stripe_sync.applied_events WHERE id=$1)`, eid).Scan(&applied)
				t.Logf("  event %s %s created %d applied %v", eid, e.Type, e.Created, applied)
			}
		}
	}
}

// explainItem logs what the events loop knew of a missing subscription
// item's subscription: an item past the first 10 is on no event's page and
// arrives only through a re-fetch of the subscription.
func explainItem(t *testing.T, v *env, obj json.RawMessage) {
	var it struct{ Subscription string }
	json.Unmarshal(obj, &it)
	n := 0
	for _, raw := range v.e.Objects("subscription_items") {
		var o struct{ Subscription string }
		if json.Unmarshal(raw, &o) == nil && o.Subscription == it.Subscription {
			n++
		}
	}
	var sub struct{ Status string }
	json.Unmarshal(v.e.Objects("subscriptions")[it.Subscription], &sub)
	var asOf, queued string
	v.pool.QueryRow(context.Background(), `SELECT coalesce((SELECT "_as_of"::text FROM stripe.subscriptions WHERE id=$1),'not stored'),
  coalesce((SELECT reason||' not before '||not_before::text FROM stripe_sync.events_refetch WHERE object='subscriptions' AND id=$1),'none')`, it.Subscription).Scan(&asOf, &queued)
	t.Logf("  subscription %s: %s in the emulator with %d items (events embed 10); stored as of %s; re-fetch queued: %s", it.Subscription, sub.Status, n, asOf, queued)
}
