package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// A draft invoice shows its customer's current email, name, address…, and
// Stripe documents no invoice event when they change: a customer's update
// re-fetches its draft invoices.
func TestDraftInvoiceFollowsCustomer(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	cus := v.post(t, "/v1/customers", url.Values{"email": {"old@x.co"}})
	v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	v.converge(t, 10*time.Second)
	v.post(t, "/v1/customers/"+cus, url.Values{"email": {"new@x.co"}})
	v.converge(t, 10*time.Second)
}
