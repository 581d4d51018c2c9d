package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
)

// hideInvoice hides the events of one invoice.
func hideInvoice(id *string, mu *sync.Mutex) func(map[string]any) bool {
	return func(ev map[string]any) bool {
		mu.Lock()
		defer mu.Unlock()
		typ, obj := eventObject(ev)
		return !strings.HasPrefix(typ, "invoice.") || obj["id"] != *id
	}
}

func (v *env) storedTaxIDs(t *testing.T, inv string) string {
	t.Helper()
	var s string
	if err := v.pool.QueryRow(context.Background(), `SELECT coalesce(customer_tax_ids::text, 'null') FROM stripe.invoices WHERE id = $1`, inv).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// A draft invoice, and the upcoming invoice, show the customer's tax ids
// (customer_tax_ids, "the same tax IDs as customer.tax_ids" until
// finalization); adding or deleting one sends customer.tax_id.* only, no
// invoice event: both are re-fetched.
func TestDraftFollowsTaxIDs(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	cus := v.post(t, "/v1/customers", url.Values{"email": {"a@x.co"}})
	prod := v.post(t, "/v1/products", url.Values{"name": {"p"}})
	price := v.post(t, "/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"500"}, "recurring[interval]": {"month"}})
	v.post(t, "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}})
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client}); err != nil {
		t.Fatal(err)
	}
	v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
	stop := v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	v.converge(t, 10*time.Second)
	v.checkUpcoming(t)
	txi := v.post(t, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
	v.converge(t, 10*time.Second)
	v.waitUpcoming(t)
	if _, err := v.mut.Delete(ctx, "/v1/customers/"+cus+"/tax_ids/"+txi, nil); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 10*time.Second)
	v.waitUpcoming(t)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// waitUpcoming waits for the upcoming invoices' refresh, then checks them.
func (v *env) waitUpcoming(t *testing.T) {
	t.Helper()
	waitFor(t, "the upcoming invoices' refresh", func() bool {
		var n int
		v.pool.QueryRow(context.Background(), `SELECT count(*) FROM stripe_sync.events_refetch`).Scan(&n)
		return n == 0
	})
	v.checkUpcoming(t)
}

// taxedCustomer runs the loop through a gate, with a customer that has
// one tax id, synced, and whose second has passed: a draft made next is
// not in it (the check for drafts older than their customer would
// re-fetch it for that alone).
func taxedCustomer(t *testing.T) (v *env, g *gate, stop func() error, cus, txi string) {
	t.Helper()
	v = setup(t, emulator.Options{})
	g = v.syncThroughGate(t)
	if _, _, err := events.EnsureCursor(context.Background(), v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	stop = v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	cus = v.post(t, "/v1/customers", url.Values{"email": {"a@x.co"}})
	txi = v.post(t, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
	v.converge(t, 10*time.Second)
	time.Sleep(1100 * time.Millisecond)
	return v, g, stop, cus, txi
}

// The other order: the draft's invoice.created, made while the customer
// had a tax id, is listed after that tax id's deletion. The deletion's
// apply found no draft to compare, and the deleted tax id leaves no row
// naming its customer: the draft's own apply must see that it shows a tax
// id its customer no longer has.
func TestDraftListedAfterTaxIDDeletion(t *testing.T) {
	v, g, stop, cus, txi := taxedCustomer(t)
	ctx := context.Background()
	var mu sync.Mutex
	var draft string
	g.set(hideInvoice(&draft, &mu), nil)
	mu.Lock()
	draft = v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
	mu.Unlock()
	if _, err := v.mut.Delete(ctx, "/v1/customers/"+cus+"/tax_ids/"+txi, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tax id's deletion", func() bool { return v.rows(t, "tax_ids") == 0 })
	g.set(nil, nil) // within the loop's look-back: the sweep lists it now
	waitFor(t, "the draft's invoice.created", func() bool { return v.rows(t, "invoices") == 1 })
	v.converge(t, 10*time.Second)
	if got := v.storedTaxIDs(t, draft); got != "[]" {
		t.Errorf("draft shows %s", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A draft being re-fetched (here: queued as if its event were in another
// API version, its events unlisted) while a tax id of its customer is
// deleted: the fetch answers the draft with the tax id, the deletion is
// applied (no draft stored to compare yet), then the fetched draft is
// stored. It must be fetched again.
func TestDraftRefetchRacesTaxIDDeletion(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, g, stop, cus, txi := taxedCustomer(t)
	ctx := context.Background()
	var mu sync.Mutex
	var draft string
	mu.Lock()
	draft = v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
	mu.Unlock()
	var once sync.Once
	deleted := make(chan struct{})
	g.set(hideInvoice(&draft, &mu), func(r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/invoices/"+draft {
			return
		}
		once.Do(func() {
			// The answer holds the tax id; the deletion is applied
			// before it arrives.
			if _, err := v.mut.Delete(ctx, "/v1/customers/"+cus+"/tax_ids/"+txi, nil); err != nil {
				t.Error(err)
			}
			for end := time.Now().Add(10 * time.Second); v.rows(t, "tax_ids") != 0 && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
			close(deleted)
		})
	})
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
VALUES ('invoices', $1, now() - interval '1 hour', 'version')`, draft); err != nil {
		t.Fatal(err)
	}
	select {
	case <-deleted:
	case <-time.After(15 * time.Second):
		t.Fatal("the draft was not re-fetched")
	}
	v.converge(t, 10*time.Second)
	if got := v.storedTaxIDs(t, draft); got != "[]" {
		t.Errorf("draft shows %s", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A backfill lists the draft, then a tax id of its customer is added
// (before the customers, whose pages include their tax ids, are listed or
// after): the events replayed after the backfill must bring the draft
// level with the tax ids, whether the tax id's event applies anything or
// finds the backfill's newer row.
func TestBackfillRacesTaxIDChange(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	for _, del := range []bool{false, true} {
		name := "add"
		if del {
			name = "delete"
		}
		t.Run(name, func(t *testing.T) {
			v := setup(t, emulator.Options{})
			ctx := context.Background()
			g := v.syncThroughGate(t)
			cus := v.post(t, "/v1/customers", url.Values{"email": {"a@x.co"}})
			var txi string
			if del {
				txi = v.post(t, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
			}
			draft := v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
			// Past the loop's first re-read window (LookBack 1 s): the
			// draft's and the customer's events are not replayed, so
			// the check for drafts older than their customer, which a
			// replayed invoice.created runs, doesn't re-fetch it.
			time.Sleep(2100 * time.Millisecond)
			var once sync.Once
			g.set(nil, func(r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v1/invoices" {
					return
				}
				once.Do(func() {
					var err error
					if del {
						_, err = v.mut.Delete(ctx, "/v1/customers/"+cus+"/tax_ids/"+txi, nil)
					} else {
						_, err = v.mut.Post(ctx, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE987654321"}}, "")
					}
					if err != nil {
						t.Error(err)
					}
				})
			})
			if err := backfill.Run(ctx, backfill.Config{Pool: v.pool, Client: v.client}); err != nil {
				t.Fatal(err)
			}
			g.set(nil, nil)
			stop := v.loop(t, events.Config{PollInterval: 50 * time.Millisecond, LookBack: time.Second, SweepEvery: time.Second})
			v.converge(t, 10*time.Second)
			want := `[{"type": "eu_vat", "value": "DE987654321"}]`
			if del {
				want = "[]"
			}
			if got := v.storedTaxIDs(t, draft); got != want {
				t.Errorf("draft shows %s, want %s", got, want)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A tax id's event rendered in another API version is not stored as it
// is: the tax id is fetched instead. Its apply compared the draft with
// tax ids that don't have it yet; the fetch's apply must compare again.
func TestTaxIDFetchedInsteadOfEvent(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	g := v.syncThroughGate(t)
	g.set(func(ev map[string]any) bool {
		if typ, _ := eventObject(ev); strings.HasPrefix(typ, "customer.tax_id.") {
			ev["api_version"] = "2020-08-27"
		}
		return true
	}, nil)
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	cus := v.post(t, "/v1/customers", url.Values{"email": {"a@x.co"}})
	draft := v.post(t, "/v1/invoices", url.Values{"customer": {cus}})
	v.converge(t, 10*time.Second)
	v.post(t, "/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
	v.converge(t, 10*time.Second)
	if got, want := v.storedTaxIDs(t, draft), `[{"type": "eu_vat", "value": "DE123456789"}]`; got != want {
		t.Errorf("draft shows %s, want %s", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A tax id event names the customer whose drafts and upcoming invoice
// show it, from customer or, failing that, owner.customer; a tax id of
// the account itself names none.
func TestRouteTaxID(t *testing.T) {
	for _, c := range []struct{ typ, obj, want string }{
		{"customer.tax_id.deleted", `{"id":"txi_1","object":"tax_id","customer":"cus_1","owner":{"type":"customer","customer":"cus_1"}}`, "cus_1"},
		{"customer.tax_id.created", `{"id":"txi_2","object":"tax_id","customer":null,"owner":{"type":"customer","customer":{"id":"cus_2","object":"customer"}}}`, "cus_2"},
		{"customer.tax_id.updated", `{"id":"txi_3","object":"tax_id","customer":null,"owner":{"type":"self","customer":null}}`, ""},
	} {
		r := events.RouteEvent(c.typ, json.RawMessage(c.obj))
		if r.Table != "tax_ids" || r.Customer != c.want {
			t.Errorf("%s %s: table %q customer %q, want tax_ids %q", c.typ, c.obj, r.Table, r.Customer, c.want)
		}
	}
}

// A draft whose tax ids never match its customer's stored ones (here: the
// customer's tax id events are never listed; in production, say, a key
// that can't read tax ids) is re-fetched once for its event, not again
// each time another customer's tax ids change during its fetch.
func TestDraftRefetchNotRepeatedForOtherCustomers(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	g := v.syncThroughGate(t)
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	a := v.post(t, "/v1/customers", url.Values{"email": {"a@x.co"}})
	b := v.post(t, "/v1/customers", url.Values{"email": {"b@x.co"}})
	g.set(func(ev map[string]any) bool {
		typ, obj := eventObject(ev)
		return !strings.HasPrefix(typ, "customer.tax_id.") || obj["customer"] != a
	}, nil)
	v.post(t, "/v1/customers/"+a+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
	time.Sleep(1100 * time.Millisecond) // not in the customer's second
	var mu sync.Mutex
	fetches := 0
	g.set(g.events, func(r *http.Request) {
		// The draft is the only invoice.
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v1/invoices/in_") {
			return
		}
		mu.Lock()
		fetches++
		n := fetches
		mu.Unlock()
		if n > 5 {
			return
		}
		// While the draft's answer is on its way, another customer's
		// tax id is added and applied.
		if _, err := v.mut.Post(ctx, "/v1/customers/"+b+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {fmt.Sprintf("DE%09d", n)}}, ""); err != nil {
			t.Error(err)
		}
		for end := time.Now().Add(10 * time.Second); v.rows(t, "tax_ids") < n && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
		}
	})
	v.post(t, "/v1/invoices", url.Values{"customer": {a}})
	waitFor(t, "the draft's re-fetch", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fetches > 0
	})
	time.Sleep(3 * time.Second)
	mu.Lock()
	if fetches != 1 {
		t.Errorf("the draft was fetched %d times, want once", fetches)
	}
	mu.Unlock()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
