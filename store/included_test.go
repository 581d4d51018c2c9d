package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/store"
)

// TestIncludedListKept: a checkout session's line_items come only
// with a fetch that expands them; an event's object lacks them. A newer
// state without them keeps the stored list (they can't change), a tie
// that differs only by the list is not ambiguous, an older one is stale,
// and a state without them for a session stored without them is reported
// incomplete, so the caller fetches it.
func TestIncludedListKept(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	t0 := time.Unix(1700000000, 0)
	const items = `"line_items":{"object":"list","data":[{"id":"li_1","object":"item","quantity":2}],"has_more":false,"url":"/v1/checkout/sessions/cs_1/line_items"}`
	session := func(status string, withItems bool) []byte {
		s := `{"id":"cs_1","object":"checkout.session","created":1700000000,"status":"` + status + `"`
		if withItems {
			s += "," + items
		}
		return []byte(s + "}")
	}
	read := func() (status, qty string) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT status, coalesce(line_items->'data'->0->>'quantity', 'NULL') FROM stripe.checkout_sessions WHERE id = 'cs_1'`).Scan(&status, &qty); err != nil {
			t.Fatal(err)
		}
		var raw string
		if err := conn.QueryRow(ctx, `SELECT coalesce(_raw->'line_items'->'data'->0->>'quantity', 'NULL') FROM stripe.checkout_sessions WHERE id = 'cs_1'`).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if raw != qty {
			t.Fatalf("_raw's line_items (%s) differ from the column (%s)", raw, qty)
		}
		return status, qty
	}

	// Seen first through an event: stored, and reported incomplete.
	res := upsert(t, conn, "checkout_sessions", store.Object{Raw: session("open", false), AsOf: t0})
	if !slices.Contains(res.Applied, "cs_1") || !slices.Contains(res.Incomplete, "cs_1") {
		t.Fatalf("event state of an unknown session: %+v, want applied and incomplete", res)
	}
	// The fetch with the list completes it.
	res = upsert(t, conn, "checkout_sessions", store.Object{Raw: session("open", true), AsOf: t0.Add(time.Second)})
	if !slices.Contains(res.Applied, "cs_1") || len(res.Incomplete) != 0 {
		t.Fatalf("fetched state: %+v", res)
	}
	// A tie that differs only by the list: the same state.
	res = upsert(t, conn, "checkout_sessions", store.Object{Raw: session("open", false), AsOf: t0.Add(time.Second)})
	if len(res.Ambiguous) != 0 || !slices.Contains(res.Stale, "cs_1") {
		t.Fatalf("same state without the list, same second: %+v, want stale", res)
	}
	// A newer event (expired) keeps the list.
	res = upsert(t, conn, "checkout_sessions", store.Object{Raw: session("expired", false), AsOf: t0.Add(5 * time.Second)})
	if !slices.Contains(res.Applied, "cs_1") || len(res.Incomplete) != 0 {
		t.Fatalf("newer event state: %+v, want applied and complete", res)
	}
	if st, q := read(); st != "expired" || q != "2" {
		t.Fatalf("after the newer event: status %s, line item quantity %s; want expired, 2", st, q)
	}
	// An older event replayed: stale, nothing changes.
	res = upsert(t, conn, "checkout_sessions", store.Object{Raw: session("open", false), AsOf: t0.Add(2 * time.Second)})
	if !slices.Contains(res.Stale, "cs_1") {
		t.Fatalf("replayed older event: %+v, want stale", res)
	}
	if st, q := read(); st != "expired" || q != "2" {
		t.Fatalf("after the replay: status %s, line item quantity %s; want expired, 2", st, q)
	}
	// A list still cut (has_more) is incomplete too.
	cut := []byte(`{"id":"cs_2","object":"checkout.session","created":1700000000,"line_items":{"object":"list","data":[],"has_more":true,"url":"/v1/checkout/sessions/cs_2/line_items"}}`)
	if res = upsert(t, conn, "checkout_sessions", store.Object{Raw: cut, AsOf: t0}); !slices.Contains(res.Incomplete, "cs_2") {
		t.Fatalf("cut list: %+v, want incomplete", res)
	}
}
