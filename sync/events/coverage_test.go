package events_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/events"
)

// opsEnv starts the events loop on an empty account and returns a
// helper that runs one API call with the workload's client.
func opsEnv(t *testing.T) (*env, func(path string, q url.Values) string) {
	t.Helper()
	v := setup(t, emulator.Options{})
	ctx := stripeapi.WithPriority(context.Background(), stripeapi.Interactive)
	call := func(path string, q url.Values) string {
		t.Helper()
		resp, err := v.mut.Post(ctx, path, q, "")
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		var o struct{ ID string }
		json.Unmarshal(resp.Body, &o)
		return o.ID
	}
	if _, _, err := events.EnsureCursor(context.Background(), v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond, BalanceEvery: 200 * time.Millisecond})
	return v, call
}

// deleteOp is a DELETE through the emulator, as an operation of the
// tests on opsEnv.
func (v *env) deleteOp(t *testing.T, path string) {
	t.Helper()
	if _, err := v.mut.Delete(stripeapi.WithPriority(context.Background(), stripeapi.Interactive), path, nil); err != nil {
		t.Fatalf("DELETE %s: %v", path, err)
	}
}

// TestOperations runs, with the loop following events, each
// operation the emulator supports that the random workload doesn't, and
// checks after each that every table equals the emulator: an operation
// that changes an object without an event the loop applies leaves a
// missing or stale row.
func TestOperations(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	del := func(path string) { t.Helper(); v.deleteOp(t, path) }
	step := func(name string, f func()) {
		t.Helper()
		f()
		t.Logf("step %s", name)
		v.converge(t, 10*time.Second)
	}
	var cus, prod, price, price2, sub, inv, pi, ch, plan, si string
	step("catalog", func() {
		cus = call("/v1/customers", url.Values{"name": {"Review"}, "email": {"r@example.com"}})
		prod = call("/v1/products", url.Values{"name": {"Plan"}})
		price = call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"500"}, "currency": {"usd"}, "recurring[interval]": {"month"}})
		price2 = call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"700"}, "currency": {"usd"}, "recurring[interval]": {"month"}})
		call("/v1/prices/"+price2, url.Values{"nickname": {"big"}})
	})
	step("plans", func() {
		plan = call("/v1/plans", url.Values{"product": {prod}, "amount": {"900"}, "currency": {"usd"}, "interval": {"month"}})
		call("/v1/plans/"+plan, url.Values{"nickname": {"p"}})
		del("/v1/plans/" + plan)
	})
	step("tax rates and promotion codes", func() {
		txr := call("/v1/tax_rates", url.Values{"display_name": {"VAT"}, "percentage": {"20"}, "inclusive": {"false"}})
		call("/v1/tax_rates/"+txr, url.Values{"active": {"false"}})
		cp := call("/v1/coupons", url.Values{"percent_off": {"10"}})
		call("/v1/coupons/"+cp, url.Values{"name": {"Ten"}})
		promo := call("/v1/promotion_codes", url.Values{"coupon": {cp}})
		call("/v1/promotion_codes/"+promo, url.Values{"active": {"false"}})
	})
	step("payment method and setup intents", func() {
		pm := call("/v1/payment_methods", url.Values{"type": {"card"}})
		seti := call("/v1/setup_intents", url.Values{"customer": {cus}, "payment_method": {pm}})
		call("/v1/setup_intents/"+seti+"/confirm", nil)
		call("/v1/customers/"+cus, url.Values{"invoice_settings[default_payment_method]": {pm}})
		seti2 := call("/v1/setup_intents", url.Values{"customer": {cus}})
		call("/v1/setup_intents/"+seti2+"/cancel", nil)
	})
	step("subscription", func() {
		sub = call("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}})
		si = call("/v1/subscription_items", url.Values{"subscription": {sub}, "price": {price2}})
		call("/v1/subscription_items/"+si, url.Values{"quantity": {"3"}})
	})
	step("subscription item delete", func() { del("/v1/subscription_items/" + si) })
	step("subscription cancel at period end", func() {
		call("/v1/subscriptions/"+sub, url.Values{"cancel_at_period_end": {"true"}})
	})
	step("invoices", func() {
		inv = call("/v1/invoices", url.Values{"customer": {cus}})
		call("/v1/invoiceitems", url.Values{"customer": {cus}, "invoice": {inv}, "price": {call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"300"}, "currency": {"usd"}})}})
		call("/v1/invoices/"+inv+"/finalize", nil)
		call("/v1/invoices/"+inv+"/void", nil)
		inv2 := call("/v1/invoices", url.Values{"customer": {cus}})
		del("/v1/invoices/" + inv2)
	})
	step("credit notes", func() {
		inv3 := call("/v1/invoices", url.Values{"customer": {cus}, "collection_method": {"send_invoice"}, "days_until_due": {"5"}})
		call("/v1/invoiceitems", url.Values{"customer": {cus}, "invoice": {inv3}, "price": {call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"400"}, "currency": {"usd"}})}})
		call("/v1/invoices/"+inv3+"/finalize", nil)
		cn := call("/v1/credit_notes", url.Values{"invoice": {inv3}, "amount": {"100"}})
		call("/v1/credit_notes/"+cn, url.Values{"memo": {"m"}})
		call("/v1/credit_notes/"+cn+"/void", nil)
		call("/v1/invoices/"+inv3+"/mark_uncollectible", nil)
	})
	step("payments", func() {
		pm := call("/v1/payment_methods", url.Values{"type": {"card"}})
		call("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {cus}})
		pi = call("/v1/payment_intents", url.Values{"amount": {"1000"}, "currency": {"usd"}, "customer": {cus}, "payment_method": {pm}})
		call("/v1/payment_intents/"+pi+"/confirm", nil)
		pi2 := call("/v1/payment_intents", url.Values{"amount": {"1000"}, "currency": {"usd"}})
		call("/v1/payment_intents/"+pi2+"/cancel", nil)
		call("/v1/refunds", url.Values{"payment_intent": {pi}, "amount": {"200"}})
		ch = call("/v1/charges", url.Values{"amount": {"800"}, "currency": {"usd"}, "source": {"tok_visa"}})
		call("/v1/charges/"+ch, url.Values{"description": {"d"}})
	})
	step("disputes", func() {
		dch := call("/v1/charges", url.Values{"amount": {"800"}, "currency": {"usd"}, "source": {"tok_createDispute"}})
		var dp struct {
			Data []struct{ ID string } `json:"data"`
		}
		resp, err := v.mut.Get(context.Background(), "/v1/disputes", url.Values{"charge": {dch}})
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(resp.Body, &dp)
		if len(dp.Data) != 1 {
			t.Fatalf("%d disputes for %s", len(dp.Data), dch)
		}
		call("/v1/disputes/"+dp.Data[0].ID, url.Values{"evidence[customer_name]": {"x"}})
		call("/v1/disputes/"+dp.Data[0].ID+"/close", nil)
	})
	step("payouts", func() {
		po := call("/v1/payouts", url.Values{"amount": {"100"}, "currency": {"usd"}})
		call("/v1/payouts/"+po, url.Values{"metadata[k]": {"v"}})
		call("/v1/payouts/"+po+"/cancel", nil)
	})
	step("tax ids", func() {
		call("/v1/customers/"+cus+"/tax_ids", url.Values{"type": {"eu_vat"}, "value": {"DE123456789"}})
	})
	step("subscription resume and cancel", func() {
		call("/v1/subscriptions/"+sub, url.Values{"cancel_at_period_end": {"false"}})
		del("/v1/subscriptions/" + sub)
	})
	step("customer delete with subscription", func() {
		c2 := call("/v1/customers", url.Values{"name": {"Gone"}})
		call("/v1/subscriptions", url.Values{"customer": {c2}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"3"}})
		del("/v1/customers/" + c2)
	})
}

// TestCheckoutSessionCreated: Stripe has no checkout.session.created
// event (none in the 2023-10-16 list), so a session created by another
// application reaches no event consumer until it completes or expires
// (24 h later).
func TestCheckoutSessionCreated(t *testing.T) {
	v, call := opsEnv(t)
	prod := call("/v1/products", url.Values{"name": {"Thing"}})
	price := call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"500"}, "currency": {"usd"}})
	v.converge(t, 10*time.Second)
	call("/v1/checkout/sessions", url.Values{"mode": {"payment"}, "success_url": {"https://example.com/ok"},
		"line_items[0][price]": {price}, "line_items[0][quantity]": {"1"}})
	v.converge(t, 10*time.Second)
}

// TestScheduleStartsSubscription: a schedule starting now creates
// its subscription, whose schedule field names it.
func TestScheduleStartsSubscription(t *testing.T) {
	v, call := opsEnv(t)
	cus := call("/v1/customers", url.Values{"name": {"Sched"}})
	prod := call("/v1/products", url.Values{"name": {"Plan"}})
	price := call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"500"}, "currency": {"usd"}, "recurring[interval]": {"month"}})
	v.converge(t, 10*time.Second)
	call("/v1/subscription_schedules", url.Values{"customer": {cus}, "start_date": {"now"},
		"phases[0][items][0][price]": {price}, "phases[0][iterations]": {"2"}})
	v.converge(t, 10*time.Second)
}

// TestDraftInvoiceItemUpdate: updating an invoice item on a draft
// invoice sends no invoice item event (Stripe has no invoiceitem.updated),
// only invoice.updated with the changed line.
func TestDraftInvoiceItemUpdate(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v, call := opsEnv(t)
	cus := call("/v1/customers", url.Values{"name": {"Items"}})
	prod := call("/v1/products", url.Values{"name": {"Thing"}})
	price := call("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"500"}, "currency": {"usd"}})
	inv := call("/v1/invoices", url.Values{"customer": {cus}})
	ii := call("/v1/invoiceitems", url.Values{"customer": {cus}, "invoice": {inv}, "price": {price}})
	v.converge(t, 10*time.Second)
	call("/v1/invoiceitems/"+ii, url.Values{"quantity": {"3"}})
	v.converge(t, 10*time.Second)
	// Only the description: the line's amount and quantity stay.
	call("/v1/invoiceitems/"+ii, url.Values{"description": {"renamed"}})
	v.converge(t, 10*time.Second)
	// The line's own update reaches the item the same way.
	var line string
	for id, raw := range v.e.Objects("invoice_line_items") {
		var l struct {
			InvoiceItem string `json:"invoice_item"`
		}
		if json.Unmarshal(raw, &l) == nil && l.InvoiceItem == ii {
			line = id
		}
	}
	call("/v1/invoices/"+inv+"/lines/"+line, url.Values{"description": {"by line"}, "quantity": {"3"}})
	v.converge(t, 10*time.Second)
}

// TestEventsInOlderAPIVersion: an event's data.object is rendered in
// the account's default API version at the event's time, whatever
// Stripe-Version lists it (an account pinned to 2019-05-16 sends customers
// with account_balance, not balance). Stored as is, such a row has
// another shape than the 2023-10-16 one every other write gives it.
func TestEventsInOlderAPIVersion(t *testing.T) {
	v := setup(t, emulator.Options{})
	// The sync's client reads events through a rewrite into an older
	// version; everything else passes through.
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		v.e.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if r.URL.Path == "/v1/events" && rec.Code == 200 {
			var l map[string]any
			if json.Unmarshal(body, &l) == nil {
				data, _ := l["data"].([]any)
				for _, x := range data {
					ev, _ := x.(map[string]any)
					ev["api_version"] = "2019-05-16"
					d, _ := ev["data"].(map[string]any)
					if o, _ := d["object"].(map[string]any); o != nil && o["object"] == "customer" {
						o["account_balance"] = o["balance"]
						delete(o, "balance")
					}
				}
				body, _ = json.Marshal(l)
			}
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(old.Close)
	direct := v.base
	v.base = old.URL
	v.client = v.newClient(t, "sk_test_events", 500)
	v.base = direct
	ctx := context.Background()
	resp, err := v.mut.Post(ctx, "/v1/customers", url.Values{"name": {"Old"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ ID string }
	json.Unmarshal(resp.Body, &c)
	// One event, alone in its second (two states in one second would be
	// re-fetched anyway).
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	if _, err := v.mut.Post(ctx, "/v1/customers/"+c.ID, url.Values{"name": {"Older"}}, ""); err != nil {
		t.Fatal(err)
	}
	v.converge(t, 10*time.Second)
}

// TestSubscriptionDiscountEvent: customer.discount.* carries a
// discount; one with subscription set is the subscription's discount
// (subscription.discount), not the customer's, so the subscription is
// the stored object that changed.
func TestSubscriptionDiscountEvent(t *testing.T) {
	// An applied discount redeems its coupon (and promotion code):
	// times_redeemed changes, and they are re-fetched too.
	redeemed := [2]events.Ref{{Table: "coupons", ID: "C"}, {Table: "promotion_codes", ID: "promo_1"}}
	for _, tc := range []struct {
		typ  string
		also [2]events.Ref
	}{{"customer.discount.created", redeemed}, {"customer.discount.updated", redeemed}, {"customer.discount.deleted", [2]events.Ref{}}} {
		got := events.RouteEvent(tc.typ, json.RawMessage(`{"id":"di_1","object":"discount","customer":"cus_1","subscription":"sub_1","coupon":{"id":"C","object":"coupon"},"promotion_code":"promo_1"}`))
		want := events.Route{Action: events.Refetch, Table: "subscriptions", ID: "sub_1", Customer: "cus_1", Also: tc.also}
		if got != want {
			t.Errorf("%s of a subscription discount: %+v, want %+v", tc.typ, got, want)
		}
	}
	// A customer's own discount still re-fetches the customer.
	got := events.RouteEvent("customer.discount.created", json.RawMessage(`{"id":"di_1","object":"discount","customer":"cus_1","subscription":null,"coupon":{"id":"C","object":"coupon"},"promotion_code":null}`))
	if want := (events.Route{Action: events.Refetch, Table: "customers", ID: "cus_1", Customer: "cus_1", Also: [2]events.Ref{{Table: "coupons", ID: "C"}}}); got != want {
		t.Errorf("customer discount: %+v, want %+v", got, want)
	}
}
