package events_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// TestItemBeyondFirstPage adds items to a subscription that already has
// more than the 10 an event embeds: the new item is on no event's page and
// arrives only through the re-fetch of the subscription, which must be
// applied even when Stripe's clock still reads the event's second.
func TestItemBeyondFirstPage(t *testing.T) {
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
