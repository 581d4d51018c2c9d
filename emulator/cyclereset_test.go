package emulator_test

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// changeAt is ten days and an hour into January 2020, the first period of
// a monthly subscription created at clockFrozenAt: 1810800 of its
// 2678400 seconds are left.
const changeAt = clockFrozenAt + 10*daySeconds + 3600

// unusedAtChange is the part of January left at changeAt of amount, rounded
// to the nearest cent, halves away from zero (prorations.go).
func unusedAtChange(amount int64) int64 {
	const left, whole = monthSecondsLeft, januarySeconds
	return int64(math.Round(float64(amount) * left / whole))
}

const monthSecondsLeft = clockFrozenAt + januarySeconds - changeAt

// subscribeCharged subscribes the clock's customer to price (charged to a card)
// and returns the subscription and its item.
func (k *frozenClock) subscribeCharged(price string, extra url.Values) (sub, item string) {
	k.t.Helper()
	p := url.Values{"customer": {k.cus}, "items[0][price]": {price}, "default_payment_method": {k.card("pm_card_visa")}}
	for key, v := range extra {
		p[key] = v
	}
	s := mustOK(k.t, k.post("/v1/subscriptions", p))
	return idOfResp(s), s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
}

// A subscription change that moves it to another billing period (monthly
// to yearly, by either endpoint), makes a free subscription paid, or asks
// for billing_cycle_anchor=now resets its billing cycle as Stripe does:
// the anchor and a new period start at the change (on the clock), the
// unused time of what it billed is credited (unless proration_behavior is
// none) and a subscription_update invoice of the new period in full, the
// credit and any discount is billed and charged at once; a declined card
// leaves it past_due. A same-period change, or a free one becoming paid
// with billing_cycle_anchor=unchanged, keeps the cycle and prorates.
func TestCycleReset(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	yearEnd := time.Unix(changeAt, 0).UTC().AddDate(1, 0, 0).Unix()
	monthEnd := time.Unix(changeAt, 0).UTC().AddDate(0, 1, 0).Unix()
	type env struct {
		k                   *frozenClock
		sub, item           string
		yearly, monthly2500 string
	}
	cases := []struct {
		name    string
		unit    int        // of the subscription's monthly price
		extra   url.Values // at creation
		change  func(e env) apiResp
		reset   bool
		end     int64 // the period's end after the change
		credit  int64 // the credit proration (0: none made)
		lines   int64 // the new period's subscription lines, before discount
		off     int64 // the invoice's discount
		status  string
		pending []int64 // pending proration amounts when the cycle is kept
	}{
		{name: "monthly to yearly", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.yearly}})
		}, reset: true, end: yearEnd, credit: -unusedAtChange(1000), lines: 12000, status: "active"},
		{name: "monthly to yearly on the item endpoint", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscription_items/"+e.item, url.Values{"price": {e.yearly}})
		}, reset: true, end: yearEnd, credit: -unusedAtChange(1000), lines: 12000, status: "active"},
		{name: "monthly to yearly without prorations", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.yearly},
				"proration_behavior": {"none"}})
		}, reset: true, end: yearEnd, lines: 12000, status: "active"},
		{name: "monthly to yearly with a 20% coupon", unit: 1000, extra: url.Values{"coupon": {"REVIEW20"}}, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.yearly}})
		}, reset: true, end: yearEnd, credit: -unusedAtChange(800), lines: 12000, off: 2400, status: "active"},
		{name: "monthly to yearly, card declines", unit: 1000, change: func(e env) apiResp {
			mustOK(t, e.k.post("/v1/subscriptions/"+e.sub, url.Values{"default_payment_method": {e.k.card("pm_card_chargeCustomerFail")}}))
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.yearly}})
		}, reset: true, end: yearEnd, credit: -unusedAtChange(1000), lines: 12000, status: "past_due"},
		{name: "billing_cycle_anchor=now", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"billing_cycle_anchor": {"now"}})
		}, reset: true, end: monthEnd, credit: -unusedAtChange(1000), lines: 1000, status: "active"},
		{name: "free to paid", unit: 0, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.monthly2500}})
		}, reset: true, end: monthEnd, credit: 0, lines: 2500, status: "active"},
		{name: "paid to free", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.k.price(0)}})
		}, reset: true, end: monthEnd, credit: -unusedAtChange(1000), lines: 0, status: "active"},
		{name: "free to paid, billing_cycle_anchor=unchanged", unit: 0, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.monthly2500},
				"billing_cycle_anchor": {"unchanged"}})
		}, end: monthStart(1), status: "active", pending: []int64{0, unusedAtChange(2500)}},
		{name: "same period", unit: 1000, change: func(e env) apiResp {
			return e.k.post("/v1/subscriptions/"+e.sub, url.Values{"items[0][id]": {e.item}, "items[0][price]": {e.monthly2500}})
		}, end: monthStart(1), status: "active", pending: []int64{-unusedAtChange(1000), unusedAtChange(2500)}},
	}
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", url.Values{"id": {"REVIEW20"}, "percent_off": {"20"}, "duration": {"forever"}}.Encode()))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			e := env{k: k, yearly: k.Price(12000, "year"), monthly2500: k.price(2500)}
			e.sub, e.item = k.subscribeCharged(k.price(tc.unit), tc.extra)
			first := k.get("/v1/subscriptions/" + e.sub)["latest_invoice"]
			k.advance(changeAt)
			var resp apiResp
			evs := k.events(func() { resp = mustOK(t, tc.change(e)) })
			sub := k.get("/v1/subscriptions/" + e.sub)
			if sub["status"] != tc.status || num(sub["current_period_end"]) != tc.end {
				t.Fatalf("subscription %v until %v, want %s until %d", sub["status"], sub["current_period_end"], tc.status, tc.end)
			}
			if resp.body["object"] == "subscription" && num(resp.body["current_period_end"]) != tc.end {
				t.Errorf("the answer's period ends %v, want %d", resp.body["current_period_end"], tc.end)
			}
			if !tc.reset {
				if num(sub["billing_cycle_anchor"]) != clockFrozenAt || num(sub["current_period_start"]) != clockFrozenAt || sub["latest_invoice"] != first {
					t.Errorf("cycle kept: anchor %v, start %v, latest_invoice %v (first %v)", sub["billing_cycle_anchor"], sub["current_period_start"], sub["latest_invoice"], first)
				}
				var got []int64
				for _, ii := range k.items() {
					if ii["invoice"] == nil {
						got = append(got, num(ii["amount"]))
					}
				}
				if !slices.Equal(got, tc.pending) {
					t.Errorf("pending prorations %v, want %v", got, tc.pending)
				}
				return
			}
			if num(sub["billing_cycle_anchor"]) != changeAt || num(sub["current_period_start"]) != changeAt || sub["latest_invoice"] == first {
				t.Errorf("cycle reset: anchor %v, start %v, latest_invoice %v", sub["billing_cycle_anchor"], sub["current_period_start"], sub["latest_invoice"])
			}
			inv := k.get("/v1/invoices/" + sub["latest_invoice"].(string))
			total := tc.lines - tc.off + tc.credit
			wantInv := "paid"
			if tc.status == "past_due" {
				wantInv = "open"
			}
			if inv["billing_reason"] != "subscription_update" || inv["status"] != wantInv || num(inv["total"]) != total ||
				num(inv["subtotal"]) != tc.lines+tc.credit || num(inv["created"]) != changeAt {
				t.Errorf("invoice %v %v: total %v subtotal %v created %v, want %s %d (%d lines, %d off, %d credit)", inv["billing_reason"], inv["status"],
					inv["total"], inv["subtotal"], inv["created"], wantInv, total, tc.lines, tc.off, tc.credit)
			}
			if wantInv == "paid" && num(inv["amount_paid"]) != max(0, total) {
				t.Errorf("amount_paid %v, want %d", inv["amount_paid"], max(0, total))
			}
			if total < 0 && num(inv["ending_balance"]) != total {
				// Paid to free: the unused time is credited to the
				// customer's balance.
				t.Errorf("ending_balance %v, want the credit %d", inv["ending_balance"], total)
			}
			var credits, subLines int
			for _, x := range inv["lines"].(map[string]any)["data"].([]any) {
				l := x.(map[string]any)
				period := l["period"].(map[string]any)
				switch l["type"] {
				case "subscription":
					subLines++
					if num(l["amount"]) != tc.lines || num(period["start"]) != changeAt || num(period["end"]) != tc.end {
						t.Errorf("subscription line %v for %v, want %d for %d to %d", l["amount"], period, tc.lines, changeAt, tc.end)
					}
				case "invoiceitem":
					credits++
					if l["proration"] != true || l["discountable"] != false || num(l["amount"]) != tc.credit ||
						num(period["start"]) != changeAt || num(period["end"]) != monthStart(1) || len(l["discount_amounts"].([]any)) != 0 {
						t.Errorf("credit line %v", l)
					}
				}
			}
			wantCredits := 1
			if tc.name == "monthly to yearly without prorations" {
				wantCredits = 0
			}
			if subLines != 1 || credits != wantCredits {
				t.Errorf("%d subscription lines and %d credits, want 1 and %d", subLines, credits, wantCredits)
			}
			var types []string
			for _, ev := range evs {
				types = append(types, ev["type"].(string))
			}
			for _, want := range []string{"invoice.created", "invoice.finalized", "customer.subscription.updated"} {
				if !slices.Contains(types, want) {
					t.Errorf("no %s in %v", want, types)
				}
			}
			// The next renewal keeps to the new cycle: nothing is due
			// until the new period's end.
			if tc.end == yearEnd {
				if got := k.cycleInvoices(e.sub); len(got) != 0 {
					t.Errorf("%d renewal invoices already", len(got))
				}
				up := k.get("/v1/invoices/upcoming?subscription=" + e.sub)
				if num(up["next_payment_attempt"]) != yearEnd || num(up["subtotal"]) != 12000 {
					t.Errorf("upcoming invoice at %v of %v, want %d of 12000", up["next_payment_attempt"], up["subtotal"], yearEnd)
				}
			}
		})
	}
}

// What Stripe's docs don't say is refused rather than guessed:
// billing_cycle_anchor=unchanged with a change of billing period, and
// billing_cycle_anchor=now on a trialing subscription; nothing changes.
func TestCycleResetRefused(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	monthly := k.price(1000)
	yearly := k.Price(12000, "year")
	sub, item := k.subscribeCharged(monthly, nil)
	trial, _ := k.subscribeCharged(monthly, url.Values{"trial_period_days": {"30"}})
	before := k.get("/v1/subscriptions/" + sub)
	r := k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][price]": {yearly}, "billing_cycle_anchor": {"unchanged"}})
	wantErr(t, r, 400, "", "billing_cycle_anchor")
	after := k.get("/v1/subscriptions/" + sub)
	if after["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["price"].(map[string]any)["id"] != monthly ||
		num(after["current_period_end"]) != num(before["current_period_end"]) || len(k.items()) != 0 {
		t.Errorf("a refused update changed the subscription: %v", after)
	}
	wantErr(t, k.post("/v1/subscriptions/"+trial, url.Values{"billing_cycle_anchor": {"now"}}), 400, "", "billing_cycle_anchor")
	if s := k.get("/v1/subscriptions/" + trial); s["status"] != "trialing" {
		t.Errorf("trial after a refused reset: %v", s["status"])
	}
}

// Prorations are net of the subscription's (else the customer's)
// discount as the request leaves it, each item's discount taken as an
// invoice of that item alone would take it, then prorated (Stripe's
// classic "-0.5 x (10 USD price - 5 USD coupon)"); they stay not
// discountable, so the invoice that bills them discounts only the other
// lines.
func TestProrationDiscounts(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) string {
		return idOfResp(mustOK(t, do(t, "POST", base+path, "sk_test_x", v.Encode())))
	}
	post("/v1/coupons", url.Values{"id": {"PCT20"}, "percent_off": {"20"}, "duration": {"forever"}})
	post("/v1/coupons", url.Values{"id": {"OFF500"}, "amount_off": {"500"}, "currency": {"usd"}, "duration": {"forever"}})
	otherProd := post("/v1/products", url.Values{"name": {"other"}})
	post("/v1/coupons", url.Values{"id": {"ELSEWHERE"}, "percent_off": {"50"}, "duration": {"forever"}, "applies_to[products][0]": {otherProd}})
	// Quantity 1 → 3 of a 1000 price at changeAt.
	cases := []struct {
		name          string
		subCoupon     string // at creation
		cusCoupon     string
		inRequest     url.Values // with the change
		credit, debit int64
		off           int64 // the renewal's discount of its 3000 line
	}{
		{name: "no discount", credit: -unusedAtChange(1000), debit: unusedAtChange(3000)},
		{name: "percent off", subCoupon: "PCT20", credit: -unusedAtChange(800), debit: unusedAtChange(2400), off: 600},
		{name: "amount off, whole per item", subCoupon: "OFF500", credit: -unusedAtChange(500), debit: unusedAtChange(2500), off: 500},
		{name: "the customer's coupon", cusCoupon: "PCT20", credit: -unusedAtChange(800), debit: unusedAtChange(2400), off: 600},
		{name: "coupon added in the same request", inRequest: url.Values{"coupon": {"PCT20"}}, credit: -unusedAtChange(800), debit: unusedAtChange(2400), off: 600},
		{name: "coupon removed in the same request", subCoupon: "PCT20", inRequest: url.Values{"coupon": {""}}, credit: -unusedAtChange(1000), debit: unusedAtChange(3000)},
		{name: "coupon for another product", subCoupon: "ELSEWHERE", credit: -unusedAtChange(1000), debit: unusedAtChange(3000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			if tc.cusCoupon != "" {
				mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"coupon": {tc.cusCoupon}}))
			}
			extra := url.Values{}
			if tc.subCoupon != "" {
				extra.Set("coupon", tc.subCoupon)
			}
			sub, item := k.subscribeCharged(k.price(1000), extra)
			k.advance(changeAt)
			q := url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"}}
			for key, v := range tc.inRequest {
				q[key] = v
			}
			mustOK(t, k.post("/v1/subscriptions/"+sub, q))
			var got []int64
			for _, ii := range k.items() {
				if ii["proration"] == true {
					got = append(got, num(ii["amount"]))
					if ii["discountable"] != false {
						t.Errorf("proration %v discountable", ii["id"])
					}
				}
			}
			if want := []int64{tc.credit, tc.debit}; !slices.Equal(got, want) {
				t.Fatalf("prorations %v, want %v", got, want)
			}
			up := k.get("/v1/invoices/upcoming?subscription=" + sub)
			if num(up["subtotal"]) != 3000+tc.credit+tc.debit || num(up["total"]) != 3000+tc.credit+tc.debit-tc.off {
				t.Errorf("upcoming subtotal %v total %v, want %d and %d", up["subtotal"], up["total"], 3000+tc.credit+tc.debit, 3000+tc.credit+tc.debit-tc.off)
			}
			for _, x := range up["lines"].(map[string]any)["data"].([]any) {
				l := x.(map[string]any)
				var lineOff int64
				for _, da := range l["discount_amounts"].([]any) {
					lineOff += num(da.(map[string]any)["amount"])
				}
				if want := map[bool]int64{true: 0, false: tc.off}[l["proration"] == true]; lineOff != want {
					t.Errorf("upcoming line %v (proration %v) discounted %d, want %d", l["id"], l["proration"], lineOff, want)
				}
			}
			// The renewal bills them as previewed.
			k.advance(monthStart(1) + 3600)
			ren := k.cycleInvoices(sub)
			if len(ren) != 1 || num(ren[0]["total"]) != num(up["total"]) || ren[0]["status"] != "paid" {
				t.Errorf("renewal %v, want one paid of %v", ren, up["total"])
			}
		})
	}
}

// A schedule entering, mid-period, a phase of a yearly price resets the
// cycle at the phase's start as an update would; one entering it at the
// period's end leaves it to that moment's renewal (subscription_cycle),
// as before.
func TestScheduleCycleReset(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		name     string
		boundary int64
		reason   string
		total    int64
	}{
		{name: "mid-period", boundary: clockFrozenAt + 10*daySeconds, reason: "subscription_update",
			total: 12000 - int64(math.Round(1000*21.0/31))},
		{name: "at the renewal", boundary: monthStart(1), reason: "subscription_cycle", total: 12000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			pm := idOfResp(mustOK(t, k.post("/v1/payment_methods", url.Values{"type": {"card"}})))
			mustOK(t, k.post("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {k.cus}}))
			mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"invoice_settings[default_payment_method]": {pm}}))
			monthly, yearly := k.price(1000), k.Price(12000, "year")
			sched := mustOK(t, k.post("/v1/subscription_schedules", url.Values{"customer": {k.cus}, "start_date": {"now"},
				"phases[0][items][0][price]": {monthly}, "phases[0][end_date]": {fmt.Sprint(tc.boundary)},
				"phases[1][items][0][price]": {yearly}, "phases[1][end_date]": {fmt.Sprint(tc.boundary + 400*daySeconds)}}))
			sub := sched.body["subscription"].(string)
			k.advance(tc.boundary + 3600)
			s := k.get("/v1/subscriptions/" + sub)
			yearEnd := time.Unix(tc.boundary, 0).UTC().AddDate(1, 0, 0).Unix()
			if num(s["current_period_start"]) != tc.boundary || num(s["current_period_end"]) != yearEnd || s["status"] != "active" {
				t.Errorf("subscription %v from %v to %v, want active from %d to %d", s["status"], s["current_period_start"], s["current_period_end"], tc.boundary, yearEnd)
			}
			inv := k.get("/v1/invoices/" + s["latest_invoice"].(string))
			if inv["billing_reason"] != tc.reason || num(inv["total"]) != tc.total || inv["status"] != "paid" {
				t.Errorf("latest invoice %v %v of %v, want %s paid of %d", inv["billing_reason"], inv["status"], inv["total"], tc.reason, tc.total)
			}
		})
	}
}

// An update whose invoice is charged at once and fails (a reset of the
// billing cycle, always_invoice) leaves the subscription past_due, and
// that subscription_update invoice is retried on the renewals' schedule:
// a retry that pays makes the subscription active again, the last
// failure cancels it. Before, the invoice was never retried and a
// declined reset left the subscription past_due for good (a whole year
// for a monthly-to-yearly change), and a declined always_invoice left it
// active.
func TestUpdateInvoiceDunned(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		name   string
		change func(k *frozenClock, item, yearly string) url.Values
		fixed  bool // a card that pays is set before the first retry
		want   string
	}{
		{name: "reset, declines throughout", change: func(k *frozenClock, item, yearly string) url.Values {
			return url.Values{"items[0][id]": {item}, "items[0][price]": {yearly}}
		}, want: "canceled"},
		{name: "reset, card replaced", change: func(k *frozenClock, item, yearly string) url.Values {
			return url.Values{"items[0][id]": {item}, "items[0][price]": {yearly}}
		}, fixed: true, want: "active"},
		{name: "always_invoice, declines throughout", change: func(k *frozenClock, item, yearly string) url.Values {
			return url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"}, "proration_behavior": {"always_invoice"}}
		}, want: "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			yearly := k.Price(12000, "year")
			sub, item := k.subscribeCharged(k.price(1000), nil)
			k.advance(changeAt)
			mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card("pm_card_chargeCustomerFail")}}))
			mustOK(t, k.post("/v1/subscriptions/"+sub, tc.change(k, item, yearly)))
			s := k.get("/v1/subscriptions/" + sub)
			inv := s["latest_invoice"].(string)
			if s["status"] != "past_due" {
				t.Fatalf("after the declined charge: %v, want past_due", s["status"])
			}
			k.checkDunned(inv, 1, changeAt+retryGapSeconds, true)
			if tc.fixed {
				mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card("pm_card_visa")}}))
				k.advance(changeAt + retryGapSeconds)
				got, s := k.get("/v1/invoices/"+inv), k.get("/v1/subscriptions/"+sub)
				if got["status"] != "paid" || num(got["attempt_count"]) != 2 || s["status"] != tc.want {
					t.Fatalf("after the retry with a good card: invoice %v (attempt_count %v), subscription %v; want paid (2), %s",
						got["status"], got["attempt_count"], s["status"], tc.want)
				}
				return
			}
			for n := int64(1); n < 8; n++ {
				k.advance(changeAt + n*retryGapSeconds)
				k.checkDunned(inv, n+1, changeAt+(n+1)*retryGapSeconds, true)
				if s := k.get("/v1/subscriptions/" + sub); s["status"] != "past_due" {
					t.Fatalf("after retry %d: %v, want past_due", n, s["status"])
				}
			}
			evs := k.advance(changeAt + 8*retryGapSeconds)
			s = k.get("/v1/subscriptions/" + sub)
			if s["status"] != tc.want || at(s, "cancellation_details.reason") != "payment_failed" ||
				!slices.Contains(subscriptionEventsAll(evs, sub), "customer.subscription.deleted") {
				t.Fatalf("after the last retry: %v (%v), events %v; want %s for payment_failed", s["status"], s["cancellation_details"],
					subscriptionEventsAll(evs, sub), tc.want)
			}
			k.checkDunned(inv, 9, 0, false)
		})
	}
}

// always_invoice on a subscription with a once coupon: finalizing the
// subscription_update invoice ends the coupon (customer.discount.deleted),
// and it stays ended. Before, the invoice ended it on the stored
// subscription and the update then stored its own copy, coupon and all,
// over it: the once coupon, already taken off the prorations, came back
// and discounted the next renewal too.
func TestOnceCouponEndsWithAlwaysInvoice(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", url.Values{"id": {"ONCE20"}, "percent_off": {"20"}, "duration": {"once"}}.Encode()))
	k := newFrozenClock(t, base)
	sub, item := k.subscribeCharged(k.price(1000), nil)
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"coupon": {"ONCE20"}}))
	k.advance(changeAt)
	var resp apiResp
	evs := k.events(func() {
		resp = mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
			"proration_behavior": {"always_invoice"}}))
	})
	var types []string
	for _, ev := range evs {
		types = append(types, ev["type"].(string))
	}
	if !slices.Contains(types, "customer.discount.deleted") {
		t.Fatalf("no customer.discount.deleted in %v", types)
	}
	if s := k.get("/v1/subscriptions/" + sub); s["discount"] != nil || resp.body["discount"] != nil {
		t.Errorf("the once coupon is still on the subscription (answer %v, stored %v)", resp.body["discount"], s["discount"])
	}
	inv := k.get("/v1/invoices/" + resp.body["latest_invoice"].(string))
	if inv["status"] != "paid" || num(inv["total"]) != unusedAtChange(2400)-unusedAtChange(800) {
		t.Errorf("always_invoice invoice %v of %v, want paid of the prorations net of the coupon", inv["status"], inv["total"])
	}
	up := k.get("/v1/invoices/upcoming?subscription=" + sub)
	if num(up["subtotal"]) != 3000 || num(up["total"]) != 3000 {
		t.Errorf("upcoming renewal subtotal %v total %v, want 3000 undiscounted", up["subtotal"], up["total"])
	}
}

// FuzzSubscriptionUpdates drives one subscription on a test clock
// through random updates — price swaps between monthly, yearly, weekly
// and free prices (by either endpoint), quantities, proration_behavior,
// payment_behavior, proration_date, billing_cycle_anchor, coupons of
// every duration, a declining card — and clock advances, and checks
// after each step: no
// 5xx; a refused request changes neither the subscription nor any
// invoice item; an active or past_due subscription's period holds the
// clock's time; active means its latest invoice is paid and past_due
// that it is open (left pending, an update's invoice is open, and
// void once discarded); every invoice's total is its subtotal less its
// discount.
//
// Each step is three bytes: what, a variant, and another.
func FuzzSubscriptionUpdates(f *testing.F) {
	_, base := emulatortest.Start(f, emulator.Options{RateLimit: -1})
	f.Add([]byte{0, 2, 0, 4, 1, 0, 3, 1, 0, 0, 0, 0})
	f.Add([]byte{3, 1, 0, 0, 2, 1, 4, 2, 0, 4, 2, 0})
	f.Add([]byte{5, 1, 0, 2, 0, 0, 1, 2, 2, 6, 3, 1})
	f.Add([]byte{0, 3, 0, 0, 0, 1, 7, 2, 0, 5, 3, 2})
	f.Add([]byte{3, 1, 0, 1, 2, 2, 4, 1, 0})                         // always_invoice declined, then a retry
	f.Add([]byte{3, 1, 0, 1, 2, 0x22, 4, 0, 0})                      // left pending, then expired
	f.Add([]byte{3, 1, 0, 0, 2, 0x12, 3, 0, 0, 1, 2, 0x22, 4, 0, 0}) // taken back, then pending with a good card
	f.Fuzz(func(t *testing.T, ops []byte) {
		// An empty emulator per input, as FuzzBilling's: on a store that
		// kept every earlier input's objects (lists scan them) most inputs
		// looked new to the fuzzer, which spent its time minimizing them,
		// hundreds of runs each, at 0 execs/s (GODEBUG=fuzzdebug=1). A
		// failing input then also fails when replayed alone.
		mustOK(t, do(t, "POST", base+"/_emulator/reset", "sk_test_x", ""))
		for _, c := range []url.Values{
			{"id": {"FPCT20"}, "percent_off": {"20"}, "duration": {"forever"}},
			{"id": {"FONCE"}, "percent_off": {"50"}, "duration": {"once"}},
			{"id": {"FOFF500"}, "amount_off": {"500"}, "currency": {"usd"}, "duration": {"repeating"}, "duration_in_months": {"2"}},
		} {
			mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", c.Encode()))
		}
		k := newFrozenClock(t, base)
		prices := []string{k.price(1000), k.price(2500), k.Price(12000, "year"), k.price(0), k.Price(300, "week")}
		sub, item := k.subscribeCharged(prices[0], nil)
		cards := []string{k.card("pm_card_visa"), k.card("pm_card_chargeCustomerFail")}
		now := int64(clockFrozenAt)
		behaviors := []string{"", "none", "always_invoice", "create_prorations"}
		coupons := []string{"FPCT20", "FONCE", "FOFF500", ""}
		for i := 0; i+2 < len(ops) && i < 3*12; i += 3 {
			op, a, b := ops[i]%8, ops[i+1], ops[i+2]
			var path string
			q := url.Values{}
			if bh := behaviors[int(b)%len(behaviors)]; bh != "" {
				q.Set("proration_behavior", bh)
			}
			// b's bits 4-5: the update's payment_behavior.
			if pb := []string{"", "error_if_incomplete", "pending_if_incomplete", "default_incomplete"}[int(b>>4)%4]; pb != "" {
				q.Set("payment_behavior", pb)
			}
			switch op {
			case 0, 7: // a price swap, on either endpoint
				if op == 7 {
					path = "/v1/subscription_items/" + item
					q.Set("price", prices[int(a)%len(prices)])
				} else {
					path = "/v1/subscriptions/" + sub
					q.Set("items[0][id]", item)
					q.Set("items[0][price]", prices[int(a)%len(prices)])
				}
			case 1:
				path = "/v1/subscriptions/" + sub
				q.Set("items[0][id]", item)
				q.Set("items[0][quantity]", fmt.Sprint(1+int(a)%4))
			case 2:
				path = "/v1/subscriptions/" + sub
				q.Set("billing_cycle_anchor", []string{"now", "unchanged"}[int(a)%2])
				if a&2 != 0 {
					q.Set("items[0][id]", item)
					q.Set("items[0][price]", prices[int(a>>2)%len(prices)])
				}
			case 3:
				path = "/v1/subscriptions/" + sub
				q = url.Values{"default_payment_method": {cards[int(a)%2]}}
			case 4: // the clock moves on
				now += []int64{daySeconds, 10 * daySeconds, 40 * daySeconds, 3 * daySeconds}[int(a)%4]
				r := k.post("/v1/test_helpers/test_clocks/"+k.ID+"/advance", url.Values{"frozen_time": {fmt.Sprint(now)}})
				if r.status >= 500 {
					t.Fatalf("advance: %d %s", r.status, r.raw)
				}
				if r.status != 200 {
					now = num(k.get("/v1/test_helpers/test_clocks/" + k.ID)["frozen_time"])
				}
			case 5:
				path = "/v1/subscriptions/" + sub
				q.Set("coupon", coupons[int(a)%len(coupons)])
				if a&4 != 0 {
					q.Set("items[0][id]", item)
					q.Set("items[0][price]", prices[int(a>>3)%len(prices)])
				}
			case 6:
				path = "/v1/subscriptions/" + sub
				q.Set("items[0][id]", item)
				q.Set("items[0][quantity]", "2")
				s := k.get("/v1/subscriptions/" + sub)
				q.Set("proration_date", fmt.Sprint(num(s["current_period_start"])+int64(a)*3600))
			}
			if path != "" {
				state := func() string {
					return do(t, "GET", base+"/v1/subscriptions/"+sub+"?expand[]=latest_invoice", "sk_test_x", "").raw
				}
				before := state()
				items := len(k.items())
				r := k.post(path, q)
				if r.status >= 500 || r.body == nil {
					t.Fatalf("POST %s %v: %d %s", path, q, r.status, r.raw)
				}
				if r.status >= 400 {
					if after := state(); after != before || len(k.items()) != items {
						t.Fatalf("POST %s %v refused (%s) but changed the subscription or its invoice items:\n%s\n%s", path, q, r.raw, before, after)
					}
				}
			}
			s := k.get("/v1/subscriptions/" + sub + "?expand[]=latest_invoice")
			st := s["status"]
			if st == "canceled" {
				return
			}
			if st == "active" || st == "past_due" {
				if start, end := num(s["current_period_start"]), num(s["current_period_end"]); start > now || end <= now {
					t.Fatalf("step %d: %s subscription's period %d..%d doesn't hold the clock's %d", i/3, st, start, end, now)
				}
				inv, _ := s["latest_invoice"].(map[string]any)
				want := map[any]string{"active": "paid", "past_due": "open"}[st]
				if s["pending_update"] != nil {
					// Left pending, the update's invoice is open whatever
					// the status it keeps.
					want = "open"
				}
				// A pending update discarded voids its invoice, which
				// stays the latest.
				if inv["status"] != want && !(inv["status"] == "void" && inv["billing_reason"] == "subscription_update") {
					t.Fatalf("step %d: %s subscription's latest invoice %v is %v (%v), want %s", i/3, st, inv["id"], inv["status"], inv["billing_reason"], want)
				}
			}
			for _, x := range k.get("/v1/invoices?limit=100&subscription=" + sub)["data"].([]any) {
				inv := x.(map[string]any)
				var off int64
				for _, d := range inv["total_discount_amounts"].([]any) {
					off += num(d.(map[string]any)["amount"])
				}
				if num(inv["total"]) != num(inv["subtotal"])-off || num(inv["amount_due"]) < 0 {
					t.Fatalf("step %d: invoice %v (%v): subtotal %v, discount %d, total %v, amount_due %v", i/3, inv["id"], inv["billing_reason"],
						inv["subtotal"], off, inv["total"], inv["amount_due"])
				}
			}
		}
	})
}
