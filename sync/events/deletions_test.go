package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/events"
)

// TestRecreatedIDAfterDelete: coupons and plans take ids of the
// user's choice, and Stripe lets a deleted one's id be used again (a
// Stripe engineer on api-discuss, 2017: delete `awesome-plan`, create it
// again with the same id; new subscribers get the new one). The new object
// must get a row although the old one left a tombstone.
func TestRecreatedIDAfterDelete(t *testing.T) {
	v, call := opsEnv(t)
	del := func(path string) { t.Helper(); v.deleteOp(t, path) }
	prod := call("/v1/products", url.Values{"name": {"Plan"}})
	call("/v1/coupons", url.Values{"id": {"REVIEW10"}, "percent_off": {"10"}})
	call("/v1/plans", url.Values{"id": {"review-monthly"}, "product": {prod}, "amount": {"900"}, "currency": {"usd"}, "interval": {"month"}})
	v.converge(t, 10*time.Second)
	del("/v1/coupons/REVIEW10")
	del("/v1/plans/review-monthly")
	v.converge(t, 10*time.Second)
	// A later second than the deletion, as a user re-creating them would.
	time.Sleep(1100 * time.Millisecond)
	call("/v1/coupons", url.Values{"id": {"REVIEW10"}, "percent_off": {"20"}})
	call("/v1/plans", url.Values{"id": {"review-monthly"}, "product": {prod}, "amount": {"1200"}, "currency": {"usd"}, "interval": {"month"}})
	v.converge(t, 10*time.Second)
}

// TestRecreatedIDInOneBatch: the deletion and the re-creation reach
// the loop in one batch (it was stopped meanwhile).
func TestRecreatedIDInOneBatch(t *testing.T) {
	v := setup(t, emulator.Options{})
	if _, _, err := events.EnsureCursor(context.Background(), v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	cfg := events.Config{PollInterval: 50 * time.Millisecond}
	stop := v.loop(t, cfg)
	v.post(t, "/v1/coupons", url.Values{"id": {"REVIEW10"}, "percent_off": {"10"}})
	v.converge(t, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.mut.Delete(context.Background(), "/v1/coupons/REVIEW10", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	v.post(t, "/v1/coupons", url.Values{"id": {"REVIEW10"}, "percent_off": {"20"}})
	v.loop(t, cfg)
	v.converge(t, 10*time.Second)
}

// TestDeletionLikeEvents runs the events that end or detach an
// object without deleting it, and the removals of children from parents
// whose nested lists are longer than an event embeds, checking after each
// step that every table equals the emulator.
func TestDeletionLikeEvents(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	ctx := stripeapi.WithPriority(context.Background(), stripeapi.Interactive)
	del := func(path string) { t.Helper(); v.deleteOp(t, path) }
	step := func(name string, f func()) {
		t.Helper()
		f()
		t.Logf("step %s", name)
		v.converge(t, 15*time.Second)
	}
	var cus, prod, pm, sub, inv string
	var prices, subItems, invItems []string
	step("setup", func() {
		cus = call("/v1/customers", url.Values{"name": {"Review"}})
		prod = call("/v1/products", url.Values{"name": {"Seat"}})
		for i := range 12 {
			prices = append(prices, call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(100 + i)}, "currency": {"usd"}, "recurring[interval]": {"month"}}))
		}
		pm = call("/v1/payment_methods", url.Values{"type": {"card"}})
		call("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {cus}})
	})
	step("payment method detached", func() { call("/v1/payment_methods/"+pm+"/detach", nil) })
	step("customer discount deleted", func() {
		cp := call("/v1/coupons", url.Values{"percent_off": {"10"}, "duration": {"forever"}})
		call("/v1/customers/"+cus, url.Values{"coupon": {cp}})
		v.converge(t, 15*time.Second)
		del("/v1/customers/" + cus + "/discount")
	})
	step("subscription with 12 items", func() {
		q := url.Values{"customer": {cus}, "collection_method": {"send_invoice"}, "days_until_due": {"30"}}
		for i, p := range prices {
			q.Set(fmt.Sprintf("items[%d][price]", i), p)
		}
		sub = call("/v1/subscriptions", q)
		resp, err := v.mut.Get(ctx, "/v1/subscription_items", url.Values{"subscription": {sub}, "limit": {"100"}})
		if err != nil {
			t.Fatal(err)
		}
		var l struct{ Data []struct{ ID string } }
		json.Unmarshal(resp.Body, &l)
		for _, it := range l.Data {
			subItems = append(subItems, it.ID)
		}
		if len(subItems) != 12 {
			t.Fatalf("%d items", len(subItems))
		}
	})
	// Each end of the list: one is on the page an event embeds, the other
	// isn't.
	step("subscription item deleted (first)", func() { del("/v1/subscription_items/" + subItems[0]) })
	step("subscription item deleted (last)", func() { del("/v1/subscription_items/" + subItems[11]) })
	step("subscription item removed by subscription update", func() {
		call("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {subItems[5]}, "items[0][deleted]": {"true"}})
	})
	step("draft invoice with 12 lines", func() {
		inv = call("/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"exclude"}})
		for i := range 12 {
			p := call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {fmt.Sprint(300 + i)}, "currency": {"usd"}})
			invItems = append(invItems, call("/v1/invoiceitems", url.Values{"customer": {cus}, "invoice": {inv}, "price": {p}}))
		}
	})
	step("invoice item deleted from draft (first)", func() { del("/v1/invoiceitems/" + invItems[0]) })
	step("invoice item deleted from draft (last)", func() { del("/v1/invoiceitems/" + invItems[11]) })
	step("draft invoice deleted", func() { del("/v1/invoices/" + inv) })
	step("pending invoice item deleted", func() { del("/v1/invoiceitems/" + invItems[3]) })
	step("subscription schedules released and canceled", func() {
		for _, act := range []string{"release", "cancel"} {
			s := call("/v1/subscription_schedules", url.Values{"customer": {cus}, "start_date": {"now"},
				"phases[0][items][0][price]": {prices[1]}, "phases[0][iterations]": {"2"},
				"default_settings[collection_method]": {"send_invoice"}, "default_settings[invoice_settings][days_until_due]": {"5"}})
			v.converge(t, 15*time.Second)
			call("/v1/subscription_schedules/"+s+"/"+act, nil)
		}
	})
	step("checkout session expired", func() {
		p := call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"500"}, "currency": {"usd"}})
		cs := call("/v1/checkout/sessions", url.Values{"mode": {"payment"}, "success_url": {"https://example.com/ok"},
			"line_items[0][price]": {p}, "line_items[0][quantity]": {"1"}})
		v.converge(t, 15*time.Second)
		call("/v1/checkout/sessions/"+cs+"/expire", nil)
	})
	step("tax id deleted", func() {
		tx := call("/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
		v.converge(t, 15*time.Second)
		del("/v1/customers/" + cus + "/tax_ids/" + tx)
	})
	step("subscription canceled", func() { del("/v1/subscriptions/" + sub) })
	step("customer deleted with an active subscription", func() {
		call("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {prices[2]}, "collection_method": {"send_invoice"}, "days_until_due": {"3"}})
		call("/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE987654321"}})
		v.converge(t, 15*time.Second)
		del("/v1/customers/" + cus)
	})
	if n := v.rows(t, "subscriptions"); n != 4 {
		t.Errorf("%d subscriptions stored, want 4 (canceled ones stay)", n)
	}
}

// TestUnknownEventTypes: Stripe adds event types and lists events of
// objects pgstripe doesn't store (test clocks, sources, meters…). The loop
// records them as applied, changes nothing for them, reports no error and
// goes on with the events after them.
func TestUnknownEventTypes(t *testing.T) {
	v := setup(t, emulator.Options{})
	var injected sync.Once
	var fakes []string
	// Events the emulator doesn't make, added to the end (the oldest
	// place) of the first page of events that has real ones.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" || r.Method != "GET" || !strings.HasSuffix(r.Header.Get("Authorization"), "sk_test_events") {
			v.e.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		v.e.ServeHTTP(rec, r)
		var page struct {
			Object  string            `json:"object"`
			URL     string            `json:"url"`
			HasMore bool              `json:"has_more"`
			Data    []json.RawMessage `json:"data"`
		}
		body := rec.Body.Bytes()
		if rec.Code == 200 && json.Unmarshal(body, &page) == nil && len(page.Data) > 0 && !page.HasMore {
			injected.Do(func() {
				var last struct{ Created int64 }
				json.Unmarshal(page.Data[len(page.Data)-1], &last)
				for i, f := range []struct{ typ, obj string }{
					{"billing.meter.created", `{"id":"mtr_1","object":"billing.meter","status":"active"}`},
					{"customer.source.created", `{"id":"card_1","object":"card","customer":"cus_nope","last4":"4242"}`},
					{"radar.value_list.deleted", `{"id":"rsl_1","object":"radar.value_list","deleted":true}`},
					{"test_helpers.test_clock.deleted", `{"id":"clock_1","object":"test_helpers.test_clock","status":"ready"}`},
					{"some_new.thing.updated", `{"id":"thing_1","object":"some_new.thing"}`},
				} {
					id := fmt.Sprintf("evt_reviewfake%d", i)
					fakes = append(fakes, id)
					page.Data = append(page.Data, json.RawMessage(fmt.Sprintf(
						`{"id":%q,"object":"event","api_version":"2023-10-16","created":%d,"livemode":false,"pending_webhooks":0,"request":{"id":null,"idempotency_key":null},"type":%q,"data":{"object":%s}}`,
						id, last.Created, f.typ, f.obj)))
				}
			})
			body, _ = json.Marshal(page)
		}
		for k, vs := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = vs
			}
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_events", BaseURL: srv.URL, RateLimit: 500, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	v.client = c
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	cus := v.post(t, "/v1/customers", url.Values{"name": {"Before"}})
	v.converge(t, 10*time.Second)
	var n int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.applied_events WHERE id = ANY($1)`, fakes).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if len(fakes) == 0 || n != len(fakes) {
		t.Fatalf("%d of %d unknown events recorded as applied", n, len(fakes))
	}
	// And the loop goes on.
	v.post(t, "/v1/customers/"+cus, url.Values{"name": {"After"}})
	v.converge(t, 10*time.Second)
	var errs int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE last_error IS NOT NULL OR phase <> 'live'`).Scan(&errs); err != nil {
		t.Fatal(err)
	}
	if errs != 0 {
		t.Fatalf("%d tables in error or not live after unknown events", errs)
	}
}
