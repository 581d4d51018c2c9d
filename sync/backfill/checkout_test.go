package backfill_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/verify"
)

// TestCheckoutLineItems: the backfill stores checkout sessions with
// their line items (Stripe includes them only when expanded), all of them
// (the expanded list stops at 10), at one request more per session with
// more than 10 and none for the others.
func TestCheckoutLineItems(t *testing.T) {
	v := setup(t, emulator.Options{})
	post := v.poster(t)
	prod := post("/v1/products", url.Values{"name": {"Thing"}})
	price := post("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"300"}, "currency": {"usd"}})
	session := func(n int) string {
		q := url.Values{"mode": {"payment"}, "success_url": {"https://example.com/ok"}}
		for i := range n {
			q.Set(fmt.Sprintf("line_items[%d][price]", i), price)
			q.Set(fmt.Sprintf("line_items[%d][quantity]", i), fmt.Sprint(i+1))
		}
		return post("/v1/checkout/sessions", q)
	}
	big, small := session(23), session(2)
	setupMode := post("/v1/checkout/sessions", url.Values{"mode": {"setup"}, "success_url": {"https://example.com/ok"}, "currency": {"usd"}})

	before := len(v.rec.requests())
	if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: v.client(t, 500), Objects: []string{"checkout_sessions"}}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int{big: 23, small: 2, setupMode: 0} {
		var got string
		if err := v.pool.QueryRow(context.Background(), `SELECT coalesce(jsonb_array_length(line_items->'data')::text || ' ' || (line_items->>'has_more'), 'NULL')
FROM stripe.checkout_sessions WHERE id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != fmt.Sprintf("%d false", want) {
			t.Errorf("session %s: line_items holds %q (elements, has_more), want %d false", id, got, want)
		}
	}
	d, err := verify.CompareTables(context.Background(), v.pool, v.e, []string{"checkout_sessions"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Total() != 0 {
		t.Errorf("checkout_sessions differ from the emulator: %s", strings.Join(d.Details, "\n"))
	}
	paged := 0
	for _, r := range v.rec.requests()[before:] {
		if strings.HasSuffix(strings.SplitN(r, "?", 2)[0], "/line_items") {
			paged++
			if !strings.Contains(r, "starting_after=") {
				t.Errorf("line items paged from the start again: %s", r)
			}
		}
	}
	if paged != 1 {
		t.Errorf("%d requests for line items, want 1 (the session with more than 10)", paged)
	}
}
