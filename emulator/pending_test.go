package emulator_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// stateOf is what a refused request must leave as it was: the
// subscription, the customer's invoices, invoice items and charges, and
// the newest event.
func (k *frozenClock) stateOf(sub string) []string {
	k.t.Helper()
	var out []string
	for _, p := range []string{"/v1/subscriptions/" + sub, "/v1/subscription_items?subscription=" + sub,
		"/v1/invoices?limit=100&customer=" + k.cus, "/v1/invoiceitems?limit=100&customer=" + k.cus,
		"/v1/charges?limit=100&customer=" + k.cus, "/v1/events?limit=1"} {
		out = append(out, mustOK(k.t, do(k.t, "GET", k.base+p, "sk_test_x", "")).raw)
	}
	return out
}

// payment_behavior=error_if_incomplete on a change that bills at once
// (always_invoice, a cycle reset by a new period, billing_cycle_anchor=now
// or free to paid, by either endpoint): when the invoice can't be paid
// the request gets the card error (402) and nothing of the change stays —
// the subscription, its items, invoices, invoice items, charges and
// events are as before the request.
func TestErrorIfIncompleteUpdate(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	type env struct {
		k                 *frozenClock
		sub, item, yearly string
		other             string // a monthly price of 2500, made before the change
	}
	cases := []struct {
		name   string
		unit   int
		pm     string // the card the update is charged to ("": none)
		change func(e env) apiResp
		code   string
	}{
		{name: "always_invoice", unit: 1000, pm: "pm_card_chargeCustomerFail", code: "card_declined", change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][quantity]": {"3"},
				"proration_behavior": {"always_invoice"}, "payment_behavior": {"error_if_incomplete"}})
		}},
		{name: "monthly to yearly", unit: 1000, pm: "pm_card_chargeCustomerFail", code: "card_declined", change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.yearly},
				"payment_behavior": {"error_if_incomplete"}})
		}},
		{name: "billing_cycle_anchor=now", unit: 1000, pm: "pm_card_chargeCustomerFail", code: "card_declined", change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"billing_cycle_anchor": {"now"}, "payment_behavior": {"error_if_incomplete"}})
		}},
		{name: "free to paid without a payment method", unit: 0, code: "invoice_payment_intent_requires_action", change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.other},
				"payment_behavior": {"error_if_incomplete"}})
		}},
		{name: "item endpoint, always_invoice", unit: 1000, pm: "pm_card_chargeCustomerFail", code: "card_declined", change: func(e env) apiResp {
			return e.k.post("/v1/subscription_items/"+e.item, url.Values{"quantity": {"2"}, "proration_behavior": {"always_invoice"},
				"payment_behavior": {"error_if_incomplete"}})
		}},
		{name: "item added, always_invoice", unit: 1000, pm: "pm_card_chargeCustomerFail", code: "card_declined", change: func(e env) apiResp {
			return e.k.post("/v1/subscription_items", url.Values{"subscription": {e.sub}, "price": {e.other},
				"proration_behavior": {"always_invoice"}, "payment_behavior": {"error_if_incomplete"}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			e := env{k: k, yearly: k.Price(12000, "year"), other: k.price(2500)}
			price := k.price(tc.unit)
			if tc.unit == 0 {
				s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {price}}))
				e.sub, e.item = idOfResp(s), s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
			} else {
				e.sub, e.item = k.subscribeCharged(price, nil)
				mustOK(t, k.post("/v1/subscriptions/"+e.sub, url.Values{"default_payment_method": {k.card(tc.pm)}}))
			}
			k.advance(changeAt)
			before := k.stateOf(e.sub)
			r := tc.change(e)
			if r.status != 402 || at(r.body, "error.type") != "card_error" || at(r.body, "error.code") != tc.code {
				t.Fatalf("got %d %s, want 402 card_error %s", r.status, r.raw, tc.code)
			}
			after := k.stateOf(e.sub)
			for i := range before {
				if before[i] != after[i] {
					t.Errorf("refused update changed state %d:\nbefore %s\nafter  %s", i, before[i], after[i])
				}
			}
		})
	}
}

// pendingSub makes a monthly subscription of 1000 on k's clock, paid at
// creation, whose later charges decline, and moves the clock to changeAt.
func (k *frozenClock) pendingSub() (sub, item string) {
	k.t.Helper()
	sub, item = k.subscribeCharged(k.price(1000), nil)
	mustOK(k.t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card("pm_card_chargeCustomerFail")}}))
	k.advance(changeAt)
	return sub, item
}

// itemQuantity is the quantity of sub's item id as its items list says.
func (k *frozenClock) itemQuantity(sub, id string) int64 {
	k.t.Helper()
	for _, it := range k.get("/v1/subscription_items?subscription=" + sub)["data"].([]any) {
		if m := it.(map[string]any); m["id"] == id {
			return num(m["quantity"])
		}
	}
	k.t.Fatalf("subscription %s has no item %s", sub, id)
	return 0
}

// payment_behavior=pending_if_incomplete: an always_invoice change whose
// invoice is declined leaves the items and status as they were, the
// invoice open as latest_invoice, and the change in pending_update
// (expires_at 23 hours on, the item with its new quantity); paying the
// invoice later applies it (customer.subscription.pending_update_applied,
// pending_update cleared). A declined retry keeps it pending.
func TestPendingUpdateApplied(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub, item := k.pendingSub()
	r := mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
		"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
	pu, _ := r.body["pending_update"].(map[string]any)
	if pu == nil || num(pu["expires_at"]) != changeAt+23*3600 || pu["billing_cycle_anchor"] != nil || r.body["status"] != "active" {
		t.Fatalf("pending update %v, status %v; want one expiring at %d, active", pu, r.body["status"], changeAt+23*3600)
	}
	its, _ := pu["subscription_items"].([]any)
	if len(its) != 1 || its[0].(map[string]any)["id"] != item || num(its[0].(map[string]any)["quantity"]) != 3 {
		t.Fatalf("pending subscription_items %v, want %s with quantity 3", its, item)
	}
	if q := k.itemQuantity(sub, item); q != 1 {
		t.Fatalf("item quantity %d while the update is pending, want 1", q)
	}
	inv := r.body["latest_invoice"].(string)
	if got := k.get("/v1/invoices/" + inv); got["status"] != "open" || got["billing_reason"] != "subscription_update" ||
		num(got["amount_due"]) != 2*unusedAtChange(1000) {
		t.Fatalf("latest invoice %s: %v %v due %v, want open subscription_update due %d", inv, got["status"], got["billing_reason"], got["amount_due"], 2*unusedAtChange(1000))
	}
	// A retry that declines again: still pending, same expiry.
	if r := k.post("/v1/invoices/"+inv+"/pay", url.Values{"payment_method": {"pm_card_chargeDeclined"}}); r.status != 402 {
		t.Fatalf("pay with a declining card: %d %s", r.status, r.raw)
	}
	if s := k.get("/v1/subscriptions/" + sub); at(s, "pending_update.expires_at") != float64(changeAt+23*3600) {
		t.Fatalf("after a declined retry: pending_update %v", s["pending_update"])
	}
	mustOK(t, k.post("/v1/invoices/"+inv+"/pay", url.Values{"payment_method": {"pm_card_visa"}}))
	s := k.get("/v1/subscriptions/" + sub)
	if s["pending_update"] != nil || s["latest_invoice"] != inv || s["status"] != "active" {
		t.Fatalf("after paying: pending_update %v, latest_invoice %v, %v", s["pending_update"], s["latest_invoice"], s["status"])
	}
	if q := k.itemQuantity(sub, item); q != 3 {
		t.Fatalf("item quantity %d after the invoice was paid, want 3", q)
	}
	types := eventTypes(t, base, sub)
	if !slices.Contains(types, "customer.subscription.pending_update_applied") {
		t.Errorf("subscription events %v: no pending_update_applied", types)
	}
}

// A pending cycle reset (monthly to yearly) records the anchor it
// resets to; paying applies it: the yearly item, the anchor and a
// year's period from the change.
func TestPendingUpdateReset(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	yearly := k.Price(12000, "year")
	sub, item := k.pendingSub()
	r := mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][price]": {yearly},
		"payment_behavior": {"pending_if_incomplete"}}))
	if at(r.body, "pending_update.billing_cycle_anchor") != float64(changeAt) || num(r.body["current_period_end"]) != monthStart(1) ||
		num(r.body["billing_cycle_anchor"]) != clockFrozenAt {
		t.Fatalf("pending reset: %s", r.raw)
	}
	mustOK(t, k.post("/v1/invoices/"+r.body["latest_invoice"].(string)+"/pay", url.Values{"payment_method": {"pm_card_visa"}}))
	s := k.get("/v1/subscriptions/" + sub)
	yearEnd := time.Unix(changeAt, 0).UTC().AddDate(1, 0, 0).Unix()
	price := at(s, "items.data").([]any)[0].(map[string]any)["price"].(map[string]any)["id"]
	if num(s["billing_cycle_anchor"]) != changeAt || num(s["current_period_start"]) != changeAt || num(s["current_period_end"]) != yearEnd || price != yearly {
		t.Fatalf("after paying: anchor %v period %v-%v price %v; want %d, %d-%d, %s", s["billing_cycle_anchor"],
			s["current_period_start"], s["current_period_end"], price, changeAt, changeAt, yearEnd, yearly)
	}
}

// Left unpaid, a pending update expires 23 hours after the request on
// the test clock: its invoice voided, pending_update cleared with
// customer.subscription.pending_update_expired, the items as they were;
// the subscription renews at its old period's end as before.
func TestPendingUpdateExpires(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub, item := k.pendingSub()
	r := mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
		"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
	inv := r.body["latest_invoice"].(string)
	k.advance(changeAt + 23*3600 - 1)
	if s := k.get("/v1/subscriptions/" + sub); s["pending_update"] == nil {
		t.Fatal("pending update gone a second before it expires")
	}
	evs := k.advance(changeAt + 23*3600)
	var types []string
	for _, ev := range evs {
		types = append(types, ev["type"].(string))
	}
	if !slices.Contains(types, "invoice.voided") || !slices.Contains(types, "customer.subscription.pending_update_expired") {
		t.Fatalf("expiry events %v", types)
	}
	s := k.get("/v1/subscriptions/" + sub)
	if s["pending_update"] != nil || k.get("/v1/invoices/" + inv)["status"] != "void" || k.itemQuantity(sub, item) != 1 || s["status"] != "active" {
		t.Fatalf("after expiry: pending_update %v, invoice %v, quantity %d, %v", s["pending_update"], k.get("/v1/invoices/" + inv)["status"], k.itemQuantity(sub, item), s["status"])
	}
}

// A pending update of a subscription off test clocks expires on the
// emulator's clock, at the first request after its expires_at.
func TestPendingUpdateExpiresOffClock(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", v.Encode())
	}
	prod := idOfResp(mustOK(t, post("/v1/products", url.Values{"name": {"p"}})))
	price := idOfResp(mustOK(t, post("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"1000"}, "recurring[interval]": {"month"}})))
	cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"name": {"c"}})))
	s := mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "default_payment_method": {attachCard(t, base, cus, "pm_card_visa")}}))
	sub, item := idOfResp(s), at(s.body, "items.data").([]any)[0].(map[string]any)["id"].(string)
	mustOK(t, post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {attachCard(t, base, cus, "pm_card_chargeCustomerFail")}}))
	r := mustOK(t, post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"2"},
		"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
	if r.body["pending_update"] == nil {
		t.Fatalf("no pending update: %s", r.raw)
	}
	e.SetClockOffset(23*time.Hour + time.Minute)
	got := getObj(t, base, "/v1/subscriptions/"+sub)
	if got["pending_update"] != nil || getObj(t, base, "/v1/invoices/"+r.body["latest_invoice"].(string))["status"] != "void" {
		t.Fatalf("23 hours on: pending_update %v", got["pending_update"])
	}
	if types := eventTypes(t, base, sub); !slices.Contains(types, "customer.subscription.pending_update_expired") {
		t.Errorf("events %v: no pending_update_expired", types)
	}
}

// A second pending update replaces the first, whose invoice is voided;
// voiding the latest one cancels the pending update.
func TestPendingUpdateReplacedAndCanceled(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub, item := k.pendingSub()
	change := func(q int) apiResp {
		return mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {fmt.Sprint(q)},
			"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
	}
	first := change(3).body["latest_invoice"].(string)
	r := change(4)
	second := r.body["latest_invoice"].(string)
	if second == first || k.get("/v1/invoices/" + first)["status"] != "void" ||
		num(at(r.body, "pending_update.subscription_items").([]any)[0].(map[string]any)["quantity"]) != 4 {
		t.Fatalf("replacing: first invoice %s %v, second %s, pending %v", first, k.get("/v1/invoices/" + first)["status"], second, r.body["pending_update"])
	}
	mustOK(t, k.post("/v1/invoices/"+second+"/void", nil))
	if s := k.get("/v1/subscriptions/" + sub); s["pending_update"] != nil || k.itemQuantity(sub, item) != 1 {
		t.Fatalf("after voiding its invoice: pending_update %v, quantity %d", s["pending_update"], k.itemQuantity(sub, item))
	}
}

// pending_if_incomplete takes only the parameters pending updates support
// (400 naming the first other one, nothing changed); not on a
// send_invoice subscription, nor on create; and while an update is
// pending, another change of the items without it is refused.
func TestPendingUpdateRefusals(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub, item := k.pendingSub()
	pending := url.Values{"payment_behavior": {"pending_if_incomplete"}, "proration_behavior": {"always_invoice"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for key, x := range pending {
			v[key] = x
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	before := k.stateOf(sub)
	for _, tc := range []struct {
		params url.Values
		param  string
	}{
		{with("items[0][id]", item, "items[0][quantity]", "2", "metadata[a]", "b"), "metadata"},
		{with("items[0][id]", item, "items[0][quantity]", "2", "items[0][metadata][a]", "b"), "items[0][metadata]"},
		{with("items[0][id]", item, "items[0][deleted]", "true"), "items[0][deleted]"},
		{with("cancel_at_period_end", "true"), "cancel_at_period_end"},
	} {
		if r := k.post("/v1/subscriptions/"+sub, tc.params); r.status != 400 || at(r.body, "error.param") != tc.param {
			t.Errorf("%v: %d %s, want 400 naming %s", tc.params, r.status, r.raw, tc.param)
		}
	}
	if after := k.stateOf(sub); !slices.Equal(before, after) {
		t.Errorf("refused requests changed the state:\n%v\n%v", before, after)
	}
	if r := k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(100)}, "payment_behavior": {"pending_if_incomplete"}}); r.status != 400 ||
		at(r.body, "error.param") != "payment_behavior" {
		t.Errorf("create with pending_if_incomplete: %d %s", r.status, r.raw)
	}
	sent := idOfResp(mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(100)},
		"collection_method": {"send_invoice"}, "days_until_due": {"5"}})))
	if r := k.post("/v1/subscriptions/"+sent, with("billing_cycle_anchor", "now")); r.status != 400 || at(r.body, "error.param") != "payment_behavior" {
		t.Errorf("send_invoice with pending_if_incomplete: %d %s", r.status, r.raw)
	}
	mustOK(t, k.post("/v1/subscriptions/"+sub, with("items[0][id]", item, "items[0][quantity]", "2")))
	if r := k.post("/v1/subscription_items/"+item, url.Values{"quantity": {"5"}}); r.status != 400 {
		t.Errorf("item change while pending: %d %s, want 400", r.status, r.raw)
	}
	if r := k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"5"}}); r.status != 400 {
		t.Errorf("subscription items change while pending: %d %s, want 400", r.status, r.raw)
	}
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"metadata[a]": {"b"}})) // unrelated: fine
}

// A second pending update that is refused (a price that doesn't exist)
// leaves the first as it was: its invoice open, its pending_update kept,
// and its expiry still due when the clock passes it. The refused request
// voided the first invoice before it failed, and the undo log took that
// back; the expiry is found from the restored subscription.
func TestPendingUpdateRefusedReplacementKeepsFirst(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub, item := k.pendingSub()
	first := mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
		"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
	inv := first.body["latest_invoice"].(string)
	before := k.stateOf(sub)
	if r := k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][price]": {"price_missing"},
		"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}); r.status != 400 {
		t.Fatalf("a replacement with a missing price: %d %s", r.status, r.raw)
	}
	if after := k.stateOf(sub); !slices.Equal(before, after) {
		t.Fatalf("a refused replacement changed the state:\nbefore %v\nafter  %v", before, after)
	}
	if got := k.get("/v1/invoices/" + inv)["status"]; got != "open" {
		t.Fatalf("the first pending update's invoice is %v after a refused replacement", got)
	}
	k.advance(changeAt + 23*3600)
	s := k.get("/v1/subscriptions/" + sub)
	if s["pending_update"] != nil || k.get("/v1/invoices/" + inv)["status"] != "void" {
		t.Fatalf("the first pending update did not expire: pending_update %v, invoice %v", s["pending_update"], k.get("/v1/invoices/" + inv)["status"])
	}
}

// A past_due subscription whose failed renewal is paid by a retry becomes
// active again, also when a pending update's invoice, voided as the
// update expired, is its latest invoice meanwhile.
func TestPastDueSettledAfterPendingUpdateExpired(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub, item := k.pendingSub()
	s := k.get("/v1/subscriptions/" + sub)
	renewal := num(s["current_period_end"])
	k.advance(renewal + 3600)
	s = k.get("/v1/subscriptions/" + sub)
	renewalInv := s["latest_invoice"].(string)
	if s["status"] != "past_due" {
		t.Fatalf("after a declined renewal: %v", s["status"])
	}
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"2"},
		"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
	k.advance(renewal + 3600 + 23*3600)
	if s = k.get("/v1/subscriptions/" + sub); s["pending_update"] != nil || s["latest_invoice"] == renewalInv {
		t.Fatalf("the pending update did not expire: %v, latest %v", s["pending_update"], s["latest_invoice"])
	}
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card("pm_card_visa")}}))
	next := num(k.get("/v1/invoices/" + renewalInv)["next_payment_attempt"])
	if next == 0 {
		t.Fatal("the declined renewal has no next attempt")
	}
	k.advance(next)
	if got := k.get("/v1/invoices/" + renewalInv)["status"]; got != "paid" {
		t.Fatalf("the renewal's retry with a good card left it %v", got)
	}
	if got := k.get("/v1/subscriptions/" + sub)["status"]; got != "active" {
		t.Fatalf("the subscription is %v after its only unpaid invoice was paid", got)
	}
}
