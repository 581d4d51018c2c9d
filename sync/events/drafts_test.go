package events_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
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

// A customer's deletion freezes its drafts as they were: Stripe (and the
// emulator) no longer follow its tax ids or details on them, and the sync
// removes its tax ids with it, so comparing such a draft with the stored
// tax ids (none) or the stored customer (none) says nothing. Here the
// draft's stored state is from before its customer gained a tax id (or
// changed its email), and the events that would show it are applied only
// once the customer is gone: the draft must still end as Stripe shows it.
func TestDraftOfDeletedCustomer(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	for _, c := range []struct {
		name string
		// hide decides which events stay unlisted until the customer's
		// deletion is applied.
		hide   func(typ string, obj map[string]any, cus, draft string) bool
		change func(t *testing.T, v *env, cus string)
		// batch: the customer's deletion is hidden too, so that both are
		// listed (and applied) together.
		batch bool
		// draftHidden: the draft's own events are hidden.
		draftHidden bool
	}{
		{
			// The tax id's event is listed after the deletion (or in its
			// batch): the customer's tax ids are gone by the comparison.
			name: "tax id event after the deletion",
			hide: func(typ string, obj map[string]any, cus, _ string) bool {
				return strings.HasPrefix(typ, "customer.tax_id.") && obj["customer"] == cus
			},
			change: func(t *testing.T, v *env, cus string) {
				v.post(t, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE111111111"}})
			},
		},
		{
			// In order, in one batch (a poll that fell behind): the batch's
			// upserts come before its deletions.
			name: "tax id event in the deletion's batch",
			hide: func(typ string, obj map[string]any, cus, _ string) bool {
				return (strings.HasPrefix(typ, "customer.tax_id.") && obj["customer"] == cus) ||
					(typ == "customer.deleted" && obj["id"] == cus)
			},
			change: func(t *testing.T, v *env, cus string) {
				v.post(t, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE333333333"}})
			},
			batch: true,
		},
		{
			// The draft's own invoice.created (from before the tax id) is
			// listed once the customer and its tax ids are gone.
			name: "draft listed after the deletion",
			hide: func(typ string, obj map[string]any, _, draft string) bool {
				return strings.HasPrefix(typ, "invoice.") && obj["id"] == draft
			},
			change: func(t *testing.T, v *env, cus string) {
				v.post(t, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE222222222"}})
			},
			draftHidden: true,
		},
		{
			// The same for the customer's details: no stored customer to
			// find the draft older than.
			name: "draft listed after the customer's update and deletion",
			hide: func(typ string, obj map[string]any, _, draft string) bool {
				return strings.HasPrefix(typ, "invoice.") && obj["id"] == draft
			},
			change: func(t *testing.T, v *env, cus string) {
				v.post(t, "/v1/customers/"+cus, url.Values{"email": {"new@x.co"}})
			},
			draftHidden: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A customer without tax ids: its draft shows none, as many
			// as the sync has for a deleted customer.
			v := setup(t, emulator.Options{})
			g := v.syncThroughGate(t)
			ctx := context.Background()
			if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
				t.Fatal(err)
			}
			stop := v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
			cus := v.post(t, "/v1/customers", url.Values{"email": {"a@x.co"}})
			v.converge(t, 10*time.Second)
			time.Sleep(1100 * time.Millisecond) // a draft made next is not in the customer's second
			var mu sync.Mutex
			var draft string
			hiding := true
			g.set(func(ev map[string]any) bool {
				mu.Lock()
				defer mu.Unlock()
				typ, obj := eventObject(ev)
				return !hiding || !c.hide(typ, obj, cus, draft)
			}, nil)
			mu.Lock()
			draft = v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
			mu.Unlock()
			if !c.draftHidden {
				waitFor(t, "the draft", func() bool { return v.rows(t, "invoices") == 1 })
			}
			c.change(t, v, cus)
			if _, err := v.mut.Delete(ctx, "/v1/customers/"+cus, nil); err != nil {
				t.Fatal(err)
			}
			if c.batch {
				time.Sleep(300 * time.Millisecond) // polls that list neither
			} else {
				waitFor(t, "the customer's deletion", func() bool { return v.rows(t, "customers") == 0 })
			}
			mu.Lock()
			hiding = false // within the loop's look-back: a re-read lists them now
			mu.Unlock()
			waitFor(t, "every event applied", func() bool {
				var n int
				v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.applied_events`).Scan(&n)
				return n == len(v.e.Objects("events"))
			})
			v.converge(t, 10*time.Second)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
