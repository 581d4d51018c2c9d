package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/sync/events"
)

// checkoutSession creates a checkout session with n line items (Stripe
// includes them only when expanded, the first 10 of them).
func checkoutSession(t *testing.T, v *env, n int) string {
	t.Helper()
	prod := v.post(t, "/v1/products", url.Values{"name": {"Thing"}})
	price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "unit_amount": {"300"}, "currency": {"usd"}})
	q := url.Values{"mode": {"payment"}, "success_url": {"https://example.com/ok"}}
	for i := range n {
		q.Set(fmt.Sprintf("line_items[%d][price]", i), price)
		q.Set(fmt.Sprintf("line_items[%d][quantity]", i), fmt.Sprint(i+1))
	}
	return v.post(t, "/v1/checkout/sessions", q)
}

func (v *env) lineItems(t *testing.T, cs string) string {
	t.Helper()
	var got string
	if err := v.pool.QueryRow(context.Background(), `SELECT coalesce(jsonb_array_length(line_items->'data')::text || ' ' || (line_items->>'has_more'), 'NULL')
FROM stripe.checkout_sessions WHERE id = $1`, cs).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestCheckoutLineItemsListed: a session created while the loop
// runs (listed by created: Stripe has no checkout.session.created) gets
// all its line items, and keeps them through its expiry's event.
func TestCheckoutLineItemsListed(t *testing.T) {
	v, _ := opsEnv(t)
	cs := checkoutSession(t, v, 23)
	v.converge(t, 10*time.Second)
	if got := v.lineItems(t, cs); got != "23 false" {
		t.Fatalf("line_items %q, want 23 false", got)
	}
	v.post(t, "/v1/checkout/sessions/"+cs+"/expire", nil)
	v.converge(t, 10*time.Second)
	if got := v.lineItems(t, cs); got != "23 false" {
		t.Fatalf("after expiry: line_items %q, want 23 false", got)
	}
}

// TestCheckoutLineItemsFromEvent: a session the loop first sees
// through an event (its object has no line items) is fetched with them;
// its event replayed later leaves them.
func TestCheckoutLineItemsFromEvent(t *testing.T) {
	v := setup(t, emulator.Options{})
	if _, _, err := events.EnsureCursor(context.Background(), v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	// No listing by created: only events bring sessions.
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond, BalanceEvery: -1})
	cs := checkoutSession(t, v, 23)
	v.post(t, "/v1/checkout/sessions/"+cs+"/expire", nil)
	v.converge(t, 10*time.Second)
	if got := v.lineItems(t, cs); got != "23 false" {
		t.Fatalf("line_items %q, want 23 false", got)
	}

	// The expiry's event again, as a replay or a late copy would bring it.
	page, err := v.client.List(context.Background(), "/v1/events", url.Values{"type": {"checkout.session.expired"}})
	if err != nil || len(page.Data) != 1 {
		t.Fatalf("expired events: %v, %v", page, err)
	}
	var ev struct {
		Created int64 `json:"created"`
		Data    struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(page.Data[0], &ev); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{time.Unix(ev.Created, 0), time.Now().Add(time.Minute)} {
		if err := pgx.BeginFunc(context.Background(), v.pool, func(tx pgx.Tx) error {
			_, err := store.Upsert(context.Background(), tx, "checkout_sessions", []store.Object{{Raw: ev.Data.Object, AsOf: at}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := v.lineItems(t, cs); got != "23 false" {
			t.Fatalf("event replayed as of %s: line_items %q, want 23 false", at, got)
		}
	}
	v.converge(t, 10*time.Second)
}
