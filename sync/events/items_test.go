package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
)

// TestItemBeyondFirstPage adds items to a subscription that already has
// more than the 10 an event embeds: the new item is on no event's page and
// arrives only through the re-fetch of the subscription, which must be
// applied even when Stripe's clock still reads the event's second.
func TestItemBeyondFirstPage(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v := setup(t, emulator.Options{})
	cus := v.post(t, "/v1/customers", url.Values{"name": {"Items"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"Seat"}})
	q := url.Values{"customer": {cus}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}}
	for i := range 11 {
		price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(100 + i)}, "currency": {"usd"}, "recurring[interval]": {"month"}})
		q.Set(fmt.Sprintf("items[%d][price]", i), price)
	}
	sub := v.post(t, "/v1/subscriptions", q)
	if _, _, err := events.EnsureCursor(context.Background(), v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{PollInterval: 30 * time.Millisecond})
	v.converge(t, 10*time.Second)
	// Added one at a time with the loop running, each right after the
	// previous one converged: the event (if any) and its re-fetch tend to
	// fall in the same second.
	for i := range 3 {
		price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(200 + i)}, "currency": {"usd"}, "recurring[interval]": {"month"}})
		v.post(t, "/v1/subscription_items", url.Values{"subscription": {sub}, "price": {price}})
		v.converge(t, 10*time.Second)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := v.rows(t, "subscription_items"); n != 14 {
		t.Fatalf("%d subscription items stored, want 14", n)
	}
}

// TestSubscriptionItemCreated: subscription_items.created holds
// Stripe's created as a time, whether the item came by backfill (the
// subscription's items) or by the events loop (an item added later).
func TestSubscriptionItemCreated(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	cus := v.post(t, "/v1/customers", url.Values{"name": {"Created"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"Seat"}})
	price := func(amount string) string {
		return v.post(t, "/v1/prices", url.Values{"product": {prod}, "unit_amount": {amount}, "currency": {"usd"}, "recurring[interval]": {"month"}})
	}
	sub := v.post(t, "/v1/subscriptions", url.Values{"customer": {cus}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}, "items[0][price]": {price("100")}})
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client, MaxWorkers: 4}); err != nil {
		t.Fatal(err)
	}
	backfilled := v.queryText(t, `SELECT id FROM stripe.subscription_items WHERE subscription = $1`, sub)
	v.e.SetClockOffset(time.Hour) // a created apart from the first one's
	stop := v.loop(t, events.Config{PollInterval: 30 * time.Millisecond})
	added := v.post(t, "/v1/subscription_items", url.Values{"subscription": {sub}, "price": {price("200")}})
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	objs := v.e.Objects("subscription_items")
	var first time.Time
	for _, id := range []string{backfilled, added} {
		var o struct{ Created int64 }
		if err := json.Unmarshal(objs[id], &o); err != nil || o.Created == 0 {
			t.Fatalf("emulator's %s: %s, %v", id, objs[id], err)
		}
		var created time.Time
		if err := v.pool.QueryRow(ctx, `SELECT created FROM stripe.subscription_items WHERE id = $1`, id).Scan(&created); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if !created.Equal(time.Unix(o.Created, 0)) {
			t.Errorf("%s: created %v, want %v", id, created, time.Unix(o.Created, 0).UTC())
		}
		if id == backfilled {
			first = created
		} else if created.Sub(first) < time.Hour {
			t.Errorf("added item created %v, not an hour after the first's %v", created, first)
		}
	}
	// Comparable with the subscription's created, a timestamptz too.
	var same bool
	if err := v.pool.QueryRow(ctx, `SELECT i.created >= s.created FROM stripe.subscription_items i JOIN stripe.subscriptions s ON s.id = i.subscription WHERE i.id = $1`, backfilled).Scan(&same); err != nil || !same {
		t.Errorf("item created >= subscription created: %v, %v", same, err)
	}
}
