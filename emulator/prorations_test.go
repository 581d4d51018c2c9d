package emulator_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// januarySeconds is the length of January 2020, the first period of a monthly
// subscription created at clockFrozenAt.
const januarySeconds = 31 * daySeconds

// wantProration is a proration invoice item as a test expects it.
type wantProration struct {
	amount, qty int64
	credit      bool // on the old price (else the new one)
}

// items lists the customer's invoice items, oldest first.
func (k *frozenClock) items() []map[string]any {
	k.t.Helper()
	return oldestFirst(k.get("/v1/invoiceitems?limit=100&customer=" + k.cus)["data"].([]any))
}

// A change of a subscription's items mid-period prorates it as Stripe
// does: with create_prorations (the default) one pending invoice item
// crediting the unused time on what a changed item billed and one
// debiting the remaining time on what it bills now, computed on the
// seconds left of the period (or from proration_date), proration true,
// not discountable, period from the change to the period's end, of the
// subscription and its item, each with invoiceitem.created; none makes
// nothing, nor does a trialing subscription or a tax-rate-only change;
// always_invoice bills them at once on a paid subscription_update
// invoice that becomes the subscription's latest_invoice.
func TestProrations(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	// Ten days and an hour into January: 1810800 of 2678400 seconds left.
	const at = clockFrozenAt + 10*daySeconds + 3600
	const half = clockFrozenAt + januarySeconds/2 // exactly half of January left
	type env struct {
		k                *frozenClock
		sub, item, price string
		newPrice         string // of 2500
		second           string // a second item (price 400), when asked for
	}
	cases := []struct {
		name    string
		unit    int // of the subscription's price
		trial   bool
		twoItem bool
		change  func(e env) apiResp
		want    []wantProration
		invoice bool // always_invoice: an invoice of the prorations
	}{
		{name: "quantity up, default behavior", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][quantity]": {"3"}})
		}, want: []wantProration{{-676, 1, true}, {2028, 3, false}}},
		{name: "price change on the item endpoint at proration_date", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscription_items/"+e.item, url.Values{"price": {e.newPrice}, "proration_date": {fmt.Sprint(half)}})
		}, want: []wantProration{{-500, 1, true}, {1250, 1, false}}},
		{name: "half a cent rounds away from zero", unit: 1001, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][quantity]": {"2"},
				"proration_date": {fmt.Sprint(half)}})
		}, want: []wantProration{{-501, 1, true}, {1001, 2, false}}},
		{name: "none", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][quantity]": {"3"},
				"proration_behavior": {"none"}})
		}},
		{name: "tax rates only", unit: 1000, change: func(e env) apiResp {
			txr := idOfResp(mustOK(t, e.k.post("/v1/tax_rates", url.Values{"display_name": {"VAT"}, "percentage": {"20"}, "inclusive": {"false"}})))
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][tax_rates][0]": {txr}})
		}},
		{name: "trialing", unit: 1000, trial: true, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][quantity]": {"3"}})
		}},
		{name: "item added", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscription_items", url.Values{"subscription": {e.sub}, "price": {e.newPrice}, "quantity": {"2"}})
		}, want: []wantProration{{3380, 2, false}}},
		{name: "item deleted", unit: 1000, twoItem: true, change: func(e env) apiResp {
			return do(t, "DELETE", base+"/v1/subscription_items/"+e.second, "sk_test_x", "")
		}, want: []wantProration{{-270, 1, true}}},
		{name: "item deleted through the subscription", unit: 1000, twoItem: true, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.second}, "items[0][deleted]": {"true"}})
		}, want: []wantProration{{-270, 1, true}}},
		{name: "always_invoice", unit: 1000, invoice: true, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][quantity]": {"3"},
				"proration_behavior": {"always_invoice"}})
		}, want: []wantProration{{-676, 1, true}, {2028, 3, false}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			e := env{k: k, price: k.price(tc.unit), newPrice: k.price(2500)}
			p := url.Values{"customer": {k.cus}, "items[0][price]": {e.price}, "default_payment_method": {k.card("pm_card_visa")}}
			if tc.trial {
				p["trial_period_days"] = []string{"30"}
			}
			if tc.twoItem {
				p["items[1][price]"] = []string{k.price(400)}
			}
			s := mustOK(t, k.post("/v1/subscriptions", p))
			e.sub = idOfResp(s)
			for _, x := range s.body["items"].(map[string]any)["data"].([]any) {
				it := x.(map[string]any)
				if it["price"].(map[string]any)["id"] == e.price {
					e.item = it["id"].(string)
				} else {
					e.second = it["id"].(string)
				}
			}
			k.advance(at)
			evs := k.events(func() { mustOK(t, tc.change(e)) })

			got := k.items()
			if len(got) != len(tc.want) {
				t.Fatalf("%d invoice items, want %d: %v", len(got), len(tc.want), got)
			}
			var created []string
			for _, ev := range evs {
				if ev["type"] == "invoiceitem.created" {
					created = append(created, ev["data"].(map[string]any)["object"].(map[string]any)["id"].(string))
				}
			}
			var ids []string
			for i, w := range tc.want {
				ii := got[i]
				ids = append(ids, ii["id"].(string))
				price := e.newPrice
				if w.credit || tc.name == "half a cent rounds away from zero" || tc.name == "quantity up, default behavior" || tc.name == "always_invoice" {
					price = e.price
				}
				if tc.name == "item deleted" || tc.name == "item deleted through the subscription" {
					price = ii["price"].(map[string]any)["id"].(string) // the second item's
				}
				from := int64(at)
				if tc.name == "price change on the item endpoint at proration_date" || tc.name == "half a cent rounds away from zero" {
					from = half
				}
				period := ii["period"].(map[string]any)
				if num(ii["amount"]) != w.amount || num(ii["quantity"]) != w.qty || ii["proration"] != true || ii["discountable"] != false ||
					ii["subscription"] != e.sub || ii["subscription_item"] == nil || ii["price"].(map[string]any)["id"] != price ||
					num(period["start"]) != from || num(period["end"]) != monthStart(1) || num(ii["date"]) != at || ii["test_clock"] != k.ID {
					t.Errorf("invoice item %d: %v, want amount %d quantity %d of %s from %d", i, ii, w.amount, w.qty, price, from)
				}
				if (tc.name == "quantity up, default behavior" || tc.name == "always_invoice") && ii["subscription_item"] != e.item {
					t.Errorf("invoice item %d of item %v, want %s", i, ii["subscription_item"], e.item)
				}
				if pending := ii["invoice"] == nil; pending == tc.invoice {
					t.Errorf("invoice item %d: invoice %v", i, ii["invoice"])
				}
			}
			slices.Sort(ids)
			slices.Sort(created)
			if !slices.Equal(ids, created) {
				t.Errorf("invoiceitem.created for %v, want %v", created, ids)
			}
			sub := k.get("/v1/subscriptions/" + e.sub)
			if !tc.invoice {
				if sub["latest_invoice"] != s.body["latest_invoice"] {
					t.Errorf("latest_invoice %v, want the first invoice %v", sub["latest_invoice"], s.body["latest_invoice"])
				}
				return
			}
			inv := k.get("/v1/invoices/" + sub["latest_invoice"].(string))
			if inv["billing_reason"] != "subscription_update" || inv["status"] != "paid" || num(inv["amount_paid"]) != 2028-676 ||
				inv["subscription"] != e.sub || len(inv["lines"].(map[string]any)["data"].([]any)) != 2 {
				t.Errorf("always_invoice invoice: %v", inv)
			}
			for _, l := range inv["lines"].(map[string]any)["data"].([]any) {
				line := l.(map[string]any)
				if line["proration"] != true || line["type"] != "invoiceitem" || line["subscription"] != e.sub || line["subscription_item"] != e.item {
					t.Errorf("always_invoice line: %v", line)
				}
			}
			if n := len(k.get("/v1/invoiceitems?pending=true&customer=" + k.cus)["data"].([]any)); n != 0 {
				t.Errorf("%d invoice items still pending", n)
			}
		})
	}
}

// events runs f and returns the events it caused, oldest first.
func (k *frozenClock) events(f func()) []map[string]any {
	k.t.Helper()
	before := k.get("/v1/events?limit=1")["data"].([]any)
	q := "/v1/events?limit=100"
	if len(before) > 0 {
		q += "&ending_before=" + before[0].(map[string]any)["id"].(string)
	}
	f()
	return oldestFirst(k.get(q)["data"].([]any))
}

// A proration_date outside the current period is refused and changes
// nothing.
func TestProrationDateOutsidePeriod(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(1000)}, "default_payment_method": {k.card("pm_card_visa")}}))
	item := s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
	r := k.post("/v1/subscriptions/"+idOfResp(s), url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
		"proration_date": {fmt.Sprint(clockFrozenAt - 1)}})
	if r.status != 400 || r.body["error"].(map[string]any)["param"] != "proration_date" {
		t.Fatalf("proration_date before the period: %d %s", r.status, r.raw)
	}
	if q := num(k.get("/v1/subscription_items/" + item)["quantity"]); q != 1 {
		t.Errorf("quantity %d after a refused update", q)
	}
	if n := len(k.items()); n != 0 {
		t.Errorf("%d invoice items after a refused update", n)
	}
}

// Pending prorations are in the upcoming invoice (lines with proration
// true, of the subscription and its item), and the renewal invoice bills
// them with the new period, after which they are no longer pending nor
// upcoming. A pending item of another subscription of the customer stays
// out of both.
func TestProrationsRenewal(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	price := k.price(1000)
	s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {price}, "default_payment_method": {k.card("pm_card_visa")}}))
	sub := idOfResp(s)
	item := s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
	other := k.Subscribe(k.cus, k.price(300), nil)
	otherItem := k.get("/v1/subscriptions/" + other)["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
	k.advance(clockFrozenAt + 10*daySeconds + 3600)
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"}}))
	// Another subscription's prorations: never on sub's invoices.
	mustOK(t, k.post("/v1/subscriptions/"+other, url.Values{"items[0][id]": {otherItem}, "items[0][quantity]": {"2"}}))

	up := k.get("/v1/invoices/upcoming?subscription=" + sub)
	var prorations []int64
	for _, l := range up["lines"].(map[string]any)["data"].([]any) {
		line := l.(map[string]any)
		if line["proration"] == true {
			if line["subscription"] != sub || line["subscription_item"] != item || line["type"] != "invoiceitem" {
				t.Errorf("upcoming proration line: %v", line)
			}
			prorations = append(prorations, num(line["amount"]))
		}
	}
	slices.Sort(prorations)
	if !slices.Equal(prorations, []int64{-676, 2028}) || num(up["amount_due"]) != 3000+2028-676 {
		t.Errorf("upcoming: prorations %v, amount_due %v; want [-676 2028], %d", prorations, up["amount_due"], 3000+2028-676)
	}

	k.advance(monthStart(1) + daySeconds)
	cycles := k.cycleInvoices(sub)
	if len(cycles) != 1 {
		t.Fatalf("%d renewal invoices", len(cycles))
	}
	inv := cycles[0]
	if num(inv["amount_paid"]) != 3000+2028-676 || inv["status"] != "paid" || len(inv["lines"].(map[string]any)["data"].([]any)) != 3 {
		t.Errorf("renewal invoice: amount_paid %v status %v lines %v, want %d paid, 3 lines", inv["amount_paid"], inv["status"],
			len(inv["lines"].(map[string]any)["data"].([]any)), 3000+2028-676)
	}
	for _, ii := range k.items() {
		sid := ii["subscription"]
		if onInv := ii["invoice"]; sid == sub && onInv != inv["id"] || sid == other && onInv == inv["id"] {
			t.Errorf("invoice item %v of %v on invoice %v", ii["id"], sid, onInv)
		}
	}
	for _, l := range k.get("/v1/invoices/upcoming?subscription=" + sub)["lines"].(map[string]any)["data"].([]any) {
		if l.(map[string]any)["proration"] == true {
			t.Errorf("a proration still upcoming after the renewal: %v", l)
		}
	}
}

// A schedule entering a phase that changes the subscription's items
// mid-period prorates the change as the phase's proration_behavior says
// (create_prorations by default, none, always_invoice), at the phase's
// start.
func TestSchedulePhaseProrations(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const boundary = clockFrozenAt + 10*daySeconds // 21 of January's 31 days left
	for _, tc := range []struct {
		behavior string
		want     []int64 // amounts, oldest first
		invoice  bool
	}{
		{"", []int64{-677, 2032}, false},
		{"none", nil, false},
		{"always_invoice", []int64{-677, 2032}, true},
	} {
		t.Run("behavior "+tc.behavior, func(t *testing.T) {
			k := newFrozenClock(t, base)
			// A default payment method: the schedule's subscription is
			// active (paid), not incomplete, which prorates nothing.
			pm := idOfResp(mustOK(t, k.post("/v1/payment_methods", url.Values{"type": {"card"}})))
			mustOK(t, k.post("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {k.cus}}))
			mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"invoice_settings[default_payment_method]": {pm}}))
			price := k.price(1000)
			p := url.Values{"customer": {k.cus}, "start_date": {"now"},
				"phases[0][items][0][price]": {price}, "phases[0][end_date]": {fmt.Sprint(boundary)},
				"phases[1][items][0][price]": {price}, "phases[1][items][0][quantity]": {"3"}, "phases[1][end_date]": {fmt.Sprint(monthStart(3))}}
			if tc.behavior != "" {
				p["phases[1][proration_behavior]"] = []string{tc.behavior}
			}
			sched := mustOK(t, k.post("/v1/subscription_schedules", p))
			sub := sched.body["subscription"].(string)
			k.advance(boundary + 3600)
			var got []int64
			for _, ii := range k.items() {
				got = append(got, num(ii["amount"]))
				if ii["proration"] != true || ii["subscription"] != sub || num(ii["period"].(map[string]any)["start"]) != boundary ||
					(ii["invoice"] != nil) != tc.invoice {
					t.Errorf("invoice item %v", ii)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("prorations %v, want %v", got, tc.want)
			}
			inv := k.get("/v1/invoices/" + k.get("/v1/subscriptions/" + sub)["latest_invoice"].(string))
			if isUpdate := inv["billing_reason"] == "subscription_update"; isUpdate != tc.invoice || tc.invoice && (num(inv["amount_paid"]) != 2032-677 || inv["status"] != "paid") {
				t.Errorf("latest invoice %v %v paid %v", inv["billing_reason"], inv["status"], inv["amount_paid"])
			}
		})
	}
}

// TestProrationDowngrade: a downgrade mid-period credits more than
// it debits. Stripe never asks for a negative amount: an invoice whose
// total is below zero is due 0 and paid at finalization (the credit goes
// to the customer's balance, docs.stripe.com/billing/invoices/overview,
// "amount_due ... If the total is negative, amount_due is 0").
func TestProrationDowngrade(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, behavior := range []string{"always_invoice", "create_prorations"} {
		t.Run(behavior, func(t *testing.T) {
			k := newFrozenClock(t, base)
			price := k.price(1000)
			s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {price},
				"items[0][quantity]": {"3"}, "default_payment_method": {k.card("pm_card_visa")}}))
			sub := idOfResp(s)
			item := s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
			k.advance(clockFrozenAt + daySeconds)
			mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"1"},
				"proration_behavior": {behavior}}))
			var invs []map[string]any
			if behavior == "always_invoice" {
				invs = append(invs, k.get("/v1/invoices/"+k.get("/v1/subscriptions/" + sub)["latest_invoice"].(string)))
			} else {
				up := k.get("/v1/invoices/upcoming?subscription=" + sub)
				if num(up["amount_due"]) < 0 {
					t.Errorf("upcoming invoice: total %v amount_due %v", up["total"], up["amount_due"])
				}
				k.advance(monthStart(1) + daySeconds)
				invs = k.cycleInvoices(sub)
			}
			for _, inv := range invs {
				if num(inv["amount_due"]) < 0 || num(inv["amount_remaining"]) < 0 || inv["status"] != "paid" {
					t.Errorf("invoice %v (%v): total %v amount_due %v amount_remaining %v status %v", inv["id"], inv["billing_reason"],
						inv["total"], inv["amount_due"], inv["amount_remaining"], inv["status"])
				}
			}
			if len(invs) == 0 {
				t.Fatal("no invoice")
			}
		})
	}
}

// An invoice created for a subscription with pending_invoice_items_behavior
// include takes only that subscription's pending items (spec, invoice
// create, subscription: "If set, the created invoice will only include
// pending invoice items for that subscription"): not another
// subscription's prorations, nor the customer's items of no subscription.
func TestInvoiceForSubscriptionTakesOnlyItsPendingItems(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	subWith := func(amount int) (string, string) {
		s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {k.price(amount)}, "default_payment_method": {k.card("pm_card_visa")}}))
		return idOfResp(s), s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
	}
	sub, item := subWith(1000)
	other, otherItem := subWith(300)
	k.advance(clockFrozenAt + 10*daySeconds + 3600)
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"}}))
	mustOK(t, k.post("/v1/subscriptions/"+other, url.Values{"items[0][id]": {otherItem}, "items[0][quantity]": {"2"}}))
	loose := idOfResp(mustOK(t, k.post("/v1/invoiceitems", url.Values{"customer": {k.cus}, "amount": {"500"}, "currency": {"usd"}})))

	inv := mustOK(t, k.post("/v1/invoices", url.Values{"customer": {k.cus}, "subscription": {sub}, "pending_invoice_items_behavior": {"include"}}))
	var amounts []int64
	for _, l := range inv.body["lines"].(map[string]any)["data"].([]any) {
		line := l.(map[string]any)
		if line["subscription"] != sub {
			t.Errorf("line of %v on the invoice for %s: %v", line["subscription"], sub, line)
		}
		amounts = append(amounts, num(line["amount"]))
	}
	slices.Sort(amounts)
	if !slices.Equal(amounts, []int64{-676, 2028}) {
		t.Errorf("invoice lines %v, want sub's prorations [-676 2028]", amounts)
	}
	for _, ii := range k.items() {
		if s := ii["subscription"]; (s == other || ii["id"] == loose) && ii["invoice"] != nil {
			t.Errorf("invoice item %v (subscription %v) taken by the invoice for %s", ii["id"], s, sub)
		}
	}
}
