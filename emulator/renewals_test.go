package emulator_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// The start of the clocks of newFrozenClock, a day, and the period
// boundaries of a monthly subscription created at the start.
const (
	clockFrozenAt = emulatortest.ClockStart
	daySeconds    = emulatortest.Day
)

var monthStart = emulatortest.MonthStart

// frozenClock is a test clock frozen at clockFrozenAt (by
// newFrozenClock) and a customer on it, on the emulator at base.
type frozenClock struct {
	*emulatortest.Clock
	t    *testing.T
	base string
	cus  string
}

func newFrozenClock(t *testing.T, base string) *frozenClock {
	t.Helper()
	return newFrozenClockAt(t, base, clockFrozenAt)
}

// newFrozenClockAt is newFrozenClock with the clock frozen at frozen.
func newFrozenClockAt(t *testing.T, base string, frozen int64) *frozenClock {
	t.Helper()
	k := &frozenClock{t: t, base: base}
	k.Clock = emulatortest.NewClockAt(func(path string, q url.Values) string {
		t.Helper()
		return idOfResp(mustOK(t, k.post(path, q)))
	}, frozen)
	k.cus = k.Customer()
	return k
}

func (k *frozenClock) post(path string, v url.Values) apiResp {
	k.t.Helper()
	return do(k.t, "POST", k.base+path, "sk_test_x", v.Encode())
}

func (k *frozenClock) get(path string) map[string]any {
	k.t.Helper()
	return mustOK(k.t, do(k.t, "GET", k.base+path, "sk_test_x", "")).body
}

// card attaches test payment method testPM (pm_card_visa, ...) to the
// clock's customer and returns the attached copy's id (Clock.Card).
func (k *frozenClock) card(testPM string) string {
	k.t.Helper()
	return k.Card(k.cus, testPM)
}

// price makes a recurring price of amount a month.
func (k *frozenClock) price(amount int) string {
	k.t.Helper()
	return k.Price(amount, "month")
}

// advance moves the clock to ts and returns the events it caused, oldest
// first.
func (k *frozenClock) advance(ts int64) []map[string]any {
	k.t.Helper()
	evs := k.events(func() {
		r := mustOK(k.t, k.post("/v1/test_helpers/test_clocks/"+k.ID+"/advance", url.Values{"frozen_time": {fmt.Sprint(ts)}}))
		if num(r.body["frozen_time"]) != ts || r.body["status"] != "ready" {
			k.t.Fatalf("advance to %d: %s", ts, r.raw)
		}
	})
	if len(evs) == 100 {
		k.t.Fatal("more than 100 events in one advance: the test would miss some")
	}
	return evs
}

// oldestFirst is a list's data, newest first as Stripe lists it, the
// other way round.
func oldestFirst(data []any) []map[string]any {
	out := make([]map[string]any, 0, len(data))
	for i := len(data) - 1; i >= 0; i-- {
		out = append(out, data[i].(map[string]any))
	}
	return out
}

// subscriptionEvents lists "type object" for the events of subscription sub,
// its invoices, and their payment intents and charges, in order.
func subscriptionEvents(evs []map[string]any, sub string) []string {
	mine := map[string]bool{sub: true}
	var out []string
	for _, ev := range evs {
		obj := ev["data"].(map[string]any)["object"].(map[string]any)
		id, _ := obj["id"].(string)
		inv, _ := obj["invoice"].(string)
		if obj["object"] == "invoice" && obj["subscription"] == sub {
			mine[id] = true
		}
		if !mine[id] && !mine[inv] {
			continue
		}
		out = append(out, ev["type"].(string))
	}
	return out
}

// cycleInvoices lists a subscription's subscription_cycle invoices,
// oldest first.
func (k *frozenClock) cycleInvoices(sub string) []map[string]any {
	k.t.Helper()
	var out []map[string]any
	for _, inv := range oldestFirst(k.get("/v1/invoices?limit=100&subscription=" + sub)["data"].([]any)) {
		if inv["billing_reason"] == "subscription_cycle" {
			out = append(out, inv)
		}
	}
	return out
}

var (
	paidRenewal = []string{"invoice.created", "customer.subscription.updated", "payment_intent.created", "invoice.finalized",
		"charge.succeeded", "payment_intent.succeeded", "invoice.paid", "invoice.payment_succeeded"}
	failedRenewal = []string{"invoice.created", "customer.subscription.updated", "payment_intent.created", "invoice.finalized",
		"charge.failed", "payment_intent.payment_failed", "invoice.payment_failed", "customer.subscription.updated"}
	sentRenewal = []string{"invoice.created", "customer.subscription.updated", "payment_intent.created", "invoice.finalized"}
)

// Advancing a test clock past a subscription's current_period_end renews
// it once per period passed, in time order, each renewal at its own
// moment: the period moves on and a subscription_cycle invoice bills the
// new period (price × quantity, the subscription's discount, the items'
// tax rates kept on the lines), finalized at once and paid with the
// default payment method (charge_automatically), failing with a declining
// card (invoice open, subscription past_due), or left open with its due
// date (send_invoice, past_due once the clock passes it unpaid). Events
// in the order of Stripe's renewal (invoice.created, then
// customer.subscription.updated), on the emulator's clock.
func TestRenewalOnClockAdvance(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cases := []struct {
		name   string
		params url.Values
		// after the subscription is created (it is paid for, first)
		then      url.Values
		advanceTo int64
		renewals  int
		status    string // of the subscription after the advance
		invStatus string // of each renewal invoice
		amount    int64  // amount_due of each renewal invoice
		events    []string
	}{
		{name: "paid, discounted, taxed", params: url.Values{"items[0][quantity]": {"2"}, "default_payment_method": {"pm_card_visa"}},
			advanceTo: monthStart(2), renewals: 2, status: "active", invStatus: "paid", amount: 1500,
			events: slices.Concat(paidRenewal, paidRenewal)},
		{name: "declined", params: url.Values{"default_payment_method": {"pm_card_visa"}},
			then:      url.Values{"default_payment_method": {"pm_card_chargeCustomerFail"}},
			advanceTo: monthStart(1) + daySeconds, renewals: 1, status: "past_due", invStatus: "open", amount: 1000,
			events: failedRenewal},
		{name: "send_invoice", params: url.Values{"collection_method": {"send_invoice"}, "days_until_due": {"10"}},
			advanceTo: monthStart(1) + 5*daySeconds, renewals: 1, status: "active", invStatus: "open", amount: 1000,
			events: sentRenewal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			price := k.price(1000)
			p := url.Values{"customer": {k.cus}, "items[0][price]": {price}}
			for key, v := range tc.params {
				p[key] = v
			}
			if pm := p.Get("default_payment_method"); pm != "" {
				p.Set("default_payment_method", k.card(pm))
			}
			var txr, coupon string
			if tc.name == "paid, discounted, taxed" {
				txr = idOfResp(mustOK(t, k.post("/v1/tax_rates", url.Values{"display_name": {"VAT"}, "percentage": {"20"}, "inclusive": {"false"}})))
				coupon = idOfResp(mustOK(t, k.post("/v1/coupons", url.Values{"percent_off": {"25"}, "duration": {"forever"}})))
				p["items[0][tax_rates][0]"], p["coupon"] = []string{txr}, []string{coupon}
			}
			s := mustOK(t, k.post("/v1/subscriptions", p))
			sub := idOfResp(s)
			if want := "active"; s.body["status"] != want {
				t.Fatalf("new subscription %s, want %s", s.body["status"], want)
			}
			if tc.then != nil {
				mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card(tc.then.Get("default_payment_method"))}}))
			}
			if inv := s.body["latest_invoice"].(string); tc.params.Get("collection_method") == "send_invoice" {
				// The first invoice is due days_until_due after it too;
				// paid, so that only the renewal's falls due.
				if due := num(k.get("/v1/invoices/" + inv)["due_date"]); due != clockFrozenAt+10*daySeconds {
					t.Errorf("first invoice due_date %d", due)
				}
				mustOK(t, k.post("/v1/invoices/"+inv+"/pay", url.Values{"paid_out_of_band": {"true"}}))
			}
			evs := k.advance(tc.advanceTo)
			if got := subscriptionEvents(evs, sub); !slices.Equal(got, tc.events) {
				t.Errorf("events:\n got %v\nwant %v", got, tc.events)
			}
			for _, ev := range evs {
				if c := num(ev["created"]); c < time.Now().Add(-time.Hour).Unix() {
					t.Errorf("event %s created %d: not on the emulator's clock", ev["type"], c)
				}
			}
			so := k.get("/v1/subscriptions/" + sub)
			if so["status"] != tc.status || num(so["current_period_start"]) != monthStart(tc.renewals) ||
				num(so["current_period_end"]) != monthStart(tc.renewals+1) {
				t.Errorf("subscription after the advance: status %v period %v–%v, want %s %d–%d", so["status"],
					num(so["current_period_start"]), num(so["current_period_end"]), tc.status, monthStart(tc.renewals), monthStart(tc.renewals+1))
			}
			invs := k.cycleInvoices(sub)
			if len(invs) != tc.renewals {
				t.Fatalf("%d subscription_cycle invoices, want %d", len(invs), tc.renewals)
			}
			if so["latest_invoice"] != invs[len(invs)-1]["id"] {
				t.Errorf("latest_invoice %v, want the last renewal %v", so["latest_invoice"], invs[len(invs)-1]["id"])
			}
			for i, inv := range invs {
				moment := monthStart(i + 1)
				if inv["status"] != tc.invStatus || num(inv["amount_due"]) != tc.amount || num(inv["created"]) != moment ||
					num(inv["period_start"]) != monthStart(i) || num(inv["period_end"]) != moment ||
					num(at(inv, "status_transitions.finalized_at")) != moment || inv["test_clock"] != k.ID {
					t.Errorf("renewal %d: status %v amount_due %v created %v period %v–%v finalized_at %v clock %v, want %s %d at %d",
						i, inv["status"], inv["amount_due"], num(inv["created"]), num(inv["period_start"]), num(inv["period_end"]),
						num(at(inv, "status_transitions.finalized_at")), inv["test_clock"], tc.invStatus, tc.amount, moment)
				}
				lines := inv["lines"].(map[string]any)["data"].([]any)
				if len(lines) != 1 {
					t.Fatalf("renewal %d: %d lines", i, len(lines))
				}
				l := lines[0].(map[string]any)
				if at(l, "price.id") != price || num(at(l, "period.start")) != moment || num(at(l, "period.end")) != monthStart(i+2) {
					t.Errorf("renewal %d line: %v", i, l)
				}
				if txr != "" && (rateIDs(l, "tax_rates") != txr || at(inv, "discount.coupon.id") != coupon || num(inv["subtotal"]) != 2000) {
					t.Errorf("renewal %d: tax rates %q, discount %v, subtotal %v", i, rateIDs(l, "tax_rates"), inv["discount"], inv["subtotal"])
				}
				switch tc.invStatus {
				case "paid":
					if num(inv["amount_paid"]) != tc.amount || num(at(inv, "status_transitions.paid_at")) != moment || inv["charge"] == nil {
						t.Fatalf("renewal %d paid: %v", i, inv)
					}
					// The payment side is on the emulator's clock, as
					// Stripe's (stripe/stripe-python#1183).
					ch := k.get("/v1/charges/" + inv["charge"].(string))
					txn := k.get("/v1/balance_transactions/" + ch["balance_transaction"].(string))
					if recent := time.Now().Add(-time.Hour).Unix(); num(ch["created"]) < recent || num(txn["created"]) < recent {
						t.Errorf("renewal %d: charge created %v, balance transaction %v: on the clock's time", i, ch["created"], txn["created"])
					}
				case "open":
					if tc.params.Get("collection_method") == "send_invoice" {
						if num(inv["due_date"]) != moment+10*daySeconds || inv["attempted"] != false {
							t.Errorf("renewal %d: due_date %v, attempted %v", i, num(inv["due_date"]), inv["attempted"])
						}
					} else if num(inv["attempt_count"]) != 1 {
						t.Errorf("renewal %d: attempt_count %v", i, inv["attempt_count"])
					}
				}
			}
			if tc.params.Get("collection_method") != "send_invoice" {
				return
			}
			// Unpaid past its due date: past_due, at the due date.
			evs = k.advance(monthStart(1) + 11*daySeconds)
			if got := subscriptionEvents(evs, sub); !slices.Equal(got, []string{"customer.subscription.updated"}) {
				t.Errorf("events past the due date: %v", got)
			}
			if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "past_due" {
				t.Errorf("send_invoice unpaid past its due date: %v, want past_due", st)
			}
			// Paying the latest invoice makes it active again.
			mustOK(t, k.post("/v1/invoices/"+invs[0]["id"].(string)+"/pay", url.Values{"paid_out_of_band": {"true"}}))
			if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
				t.Errorf("past_due after paying its latest invoice: %v, want active", st)
			}
		})
	}
}

// Trials (Stripe: trialing "moves to active when the trial period is
// over"; customer.subscription.trial_will_end "Occurs three days before a
// subscription's trial period is scheduled to end"): the warning when an
// advance crosses trial_end minus three days, once; at trial_end the
// subscription is active with its first paid invoice (subscription_cycle),
// or past_due with it open when the card declines.
func TestTrialEnds(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const trialEnd = clockFrozenAt + 14*daySeconds
	cases := []struct {
		name     string
		pm       string
		steps    []int64 // advances
		events   [][]string
		status   string
		invoice  string
		amount   int64
		paidWith bool
	}{
		{name: "warned, then paid", pm: "pm_card_visa", steps: []int64{trialEnd - 3*daySeconds - 1, trialEnd - 2*daySeconds, trialEnd - 1, trialEnd},
			events: [][]string{nil, {"customer.subscription.trial_will_end"}, nil, paidRenewal},
			status: "active", invoice: "paid", amount: 1000},
		{name: "one advance over both", pm: "pm_card_visa", steps: []int64{trialEnd + daySeconds},
			events: [][]string{slices.Concat([]string{"customer.subscription.trial_will_end"}, paidRenewal)},
			status: "active", invoice: "paid", amount: 1000},
		{name: "declined", pm: "pm_card_chargeCustomerFail", steps: []int64{trialEnd},
			events: [][]string{slices.Concat([]string{"customer.subscription.trial_will_end"}, failedRenewal)},
			status: "past_due", invoice: "open", amount: 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			price := k.price(1000)
			s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {price},
				"trial_period_days": {"14"}, "default_payment_method": {k.card(tc.pm)}}))
			sub := idOfResp(s)
			if s.body["status"] != "trialing" || num(s.body["current_period_end"]) != trialEnd {
				t.Fatalf("trialing subscription: %s", s.raw)
			}
			for i, ts := range tc.steps {
				if got := subscriptionEvents(k.advance(ts), sub); !slices.Equal(got, tc.events[i]) {
					t.Errorf("advance %d to %d: events\n got %v\nwant %v", i, ts, got, tc.events[i])
				}
			}
			so := k.get("/v1/subscriptions/" + sub)
			if so["status"] != tc.status || num(so["current_period_start"]) != trialEnd ||
				num(so["current_period_end"]) != time.Unix(trialEnd, 0).UTC().AddDate(0, 1, 0).Unix() || num(so["trial_end"]) != trialEnd {
				t.Errorf("after the trial: status %v period %v–%v trial_end %v", so["status"], num(so["current_period_start"]),
					num(so["current_period_end"]), num(so["trial_end"]))
			}
			invs := k.cycleInvoices(sub)
			if len(invs) != 1 || invs[0]["status"] != tc.invoice || num(invs[0]["amount_due"]) != tc.amount ||
				num(invs[0]["created"]) != trialEnd || so["latest_invoice"] != invs[0]["id"] {
				t.Fatalf("trial end invoices: %v", invs)
			}
			// The trial's end is in the renewal's update, as one change.
			var prev []any
			for _, ev := range k.get("/v1/events?limit=100&type=customer.subscription.updated")["data"].([]any) {
				d := ev.(map[string]any)["data"].(map[string]any)
				if at(d, "object.id") == sub && at(d, "previous_attributes.latest_invoice") != nil {
					prev = append(prev, d["previous_attributes"])
				}
			}
			if len(prev) != 1 || at(prev[0], "status") != "trialing" || num(at(prev[0], "current_period_end")) != trialEnd {
				t.Errorf("trial end updates: previous_attributes %v", prev)
			}
		})
	}
}

// cancel_at_period_end and cancel_at end the subscription at that moment
// (customer.subscription.deleted, ended_at the moment, canceled_at the
// request's time as the spec says for cancel_at_period_end) with no
// renewal invoice; periods before cancel_at still renew.
func TestCancelAt(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	mid := monthStart(1) + 10*daySeconds
	cases := []struct {
		name     string
		update   func(k *frozenClock) url.Values
		to       int64
		endedAt  int64
		renewals int
		events   []string
	}{
		{name: "cancel_at_period_end", update: func(*frozenClock) url.Values { return url.Values{"cancel_at_period_end": {"true"}} },
			to: monthStart(2), endedAt: monthStart(1), events: []string{"customer.subscription.deleted"}},
		{name: "cancel_at in the second period", update: func(*frozenClock) url.Values { return url.Values{"cancel_at": {fmt.Sprint(mid)}} },
			to: monthStart(2), endedAt: mid, renewals: 1, events: slices.Concat(paidRenewal, []string{"customer.subscription.deleted"})},
		{name: "cancel_at ahead of the advance", update: func(*frozenClock) url.Values { return url.Values{"cancel_at": {fmt.Sprint(mid)}} },
			to: mid - 1, renewals: 1, events: paidRenewal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			sub := k.Subscribe(k.cus, k.price(1000), nil)
			k.advance(clockFrozenAt + daySeconds) // the cancellation is asked for a day in
			u := mustOK(t, k.post("/v1/subscriptions/"+sub, tc.update(k)))
			requested := num(u.body["canceled_at"])
			if got := subscriptionEvents(k.advance(tc.to), sub); !slices.Equal(got, tc.events) {
				t.Errorf("events:\n got %v\nwant %v", got, tc.events)
			}
			so := k.get("/v1/subscriptions/" + sub)
			if n := len(k.cycleInvoices(sub)); n != tc.renewals {
				t.Errorf("%d renewal invoices, want %d", n, tc.renewals)
			}
			if tc.endedAt == 0 {
				if so["status"] != "active" {
					t.Errorf("before cancel_at: %v", so["status"])
				}
				return
			}
			if so["status"] != "canceled" || num(so["ended_at"]) != tc.endedAt || at(so, "cancellation_details.reason") != "cancellation_requested" {
				t.Errorf("canceled: status %v ended_at %v details %v", so["status"], num(so["ended_at"]), so["cancellation_details"])
			}
			if want := requested; tc.name == "cancel_at_period_end" && num(so["canceled_at"]) != want {
				t.Errorf("canceled_at %v, want the request's time %v", num(so["canceled_at"]), want)
			}
			if tc.name != "cancel_at_period_end" && num(so["canceled_at"]) == 0 {
				t.Errorf("canceled_at unset: %v", so)
			}
		})
	}
}

// A schedule's phase boundary at a period end is taken before the
// renewal at that moment: the renewal invoice bills the phase just
// entered. A schedule ending with end_behavior=cancel at a period end
// leaves nothing to renew.
func TestPhaseThenRenewal(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, end := range []string{"release", "cancel"} {
		t.Run(end, func(t *testing.T) {
			k := newFrozenClock(t, base)
			p1, p2 := k.price(500), k.price(900)
			pm := idOfResp(mustOK(t, k.post("/v1/payment_methods", url.Values{"type": {"card"}})))
			mustOK(t, k.post("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {k.cus}}))
			mustOK(t, k.post("/v1/customers/"+k.cus, url.Values{"invoice_settings[default_payment_method]": {pm}}))
			sched := mustOK(t, k.post("/v1/subscription_schedules", url.Values{"customer": {k.cus}, "start_date": {"now"}, "end_behavior": {end},
				"phases[0][items][0][price]": {p1}, "phases[0][iterations]": {"1"},
				"phases[1][items][0][price]": {p2}, "phases[1][iterations]": {"1"}}))
			sub := sched.body["subscription"].(string)
			evs := k.advance(monthStart(1) + daySeconds)
			got := subscriptionEvents(evs, sub)
			// The phase's item change comes first, then the renewal.
			if want := slices.Concat([]string{"customer.subscription.updated"}, paidRenewal); !slices.Equal(got, want) {
				t.Errorf("events at the first boundary:\n got %v\nwant %v", got, want)
			}
			invs := k.cycleInvoices(sub)
			if len(invs) != 1 || num(invs[0]["amount_due"]) != 900 || at(invs[0], "lines.data.0.price.id") != p2 {
				t.Fatalf("renewal into phase 2: %v", invs)
			}
			// Past the last phase, at the second period end.
			evs = k.advance(monthStart(2) + daySeconds)
			got = subscriptionEvents(evs, sub)
			so := k.get("/v1/subscriptions/" + sub)
			switch end {
			case "cancel":
				if !slices.Equal(got, []string{"customer.subscription.deleted"}) || so["status"] != "canceled" || len(k.cycleInvoices(sub)) != 1 {
					t.Errorf("end_behavior cancel: events %v, status %v, %d renewals", got, so["status"], len(k.cycleInvoices(sub)))
				}
			case "release":
				// Released (customer.subscription.updated: schedule unset),
				// then renewed on its own, at the phase's price.
				if want := slices.Concat([]string{"customer.subscription.updated"}, paidRenewal); !slices.Equal(got, want) || so["status"] != "active" {
					t.Errorf("end_behavior release: events %v, status %v", got, so["status"])
				}
				if invs := k.cycleInvoices(sub); len(invs) != 2 || num(invs[1]["amount_due"]) != 900 {
					t.Errorf("renewal after the release: %v", invs)
				}
			}
			if st := k.get("/v1/subscription_schedules/" + idOfResp(sched))["status"]; !strings.Contains("released completed", st.(string)) {
				t.Errorf("schedule %v", st)
			}
		})
	}
}

// TestAdvanceLimitedByShortestInterval: a clock with a renewing
// subscription advances at most two intervals of its shortest one at a
// time (spec, advance's frozen_time), so an advance to a far frozen_time
// is refused at once instead of renewing a daily subscription once a day
// of the span (a year of days took 0.7 s; a century, minutes, under the
// emulator's lock). Two intervals exactly is allowed.
func TestAdvanceLimitedByShortestInterval(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	daily := k.Price(100, "day")
	k.Subscribe(k.cus, k.price(1000), nil)
	k.Subscribe(k.cus, daily, nil)

	r := k.post("/v1/test_helpers/test_clocks/"+k.ID+"/advance", url.Values{"frozen_time": {fmt.Sprint(clockFrozenAt + 100*365*daySeconds)}})
	if r.status != 400 || !strings.Contains(r.raw, "frozen_time") || !strings.Contains(r.raw, fmt.Sprint(clockFrozenAt+2*daySeconds)) {
		t.Fatalf("advance by a century: %d %s, want 400 naming frozen_time and its limit", r.status, r.raw)
	}
	if got := k.get("/v1/test_helpers/test_clocks/" + k.ID); num(got["frozen_time"]) != clockFrozenAt || got["status"] != "ready" {
		t.Fatalf("clock after a refused advance: %v", got)
	}
	evs := k.advance(clockFrozenAt + 2*daySeconds)
	renewals := 0
	for _, ev := range evs {
		obj := ev["data"].(map[string]any)["object"].(map[string]any)
		if ev["type"] == "invoice.created" && obj["billing_reason"] == "subscription_cycle" {
			renewals++
		}
	}
	if renewals != 2 {
		t.Errorf("%d renewals over two days, want 2", renewals)
	}
}

// A send_invoice subscription off test clocks falls past_due when the
// emulator's clock passes its latest invoice's due_date unpaid ("If
// subscription collection_method=send_invoice it becomes past_due when
// its invoice is not paid by the due date", spec, subscription.status),
// at the first request or clock move on or after it, with
// customer.subscription.updated (status in previous_attributes) and no
// invoice event (2023-10-16 has no invoice.overdue); paying that invoice
// out of band or with a card makes it active again. The latest invoice
// may be a subscription_update one billed at once (always_invoice) after
// the first was paid. An invoice paid or
// voided before its due date, or the due date not yet come, leaves it
// active, and so does the emulator's clock for a subscription on a test
// clock, which lives on the clock's frozen time.
func TestSendInvoiceOverdueOffClock(t *testing.T) {
	const due = 5 // days_until_due
	cases := []struct {
		name    string
		onClock bool
		before  string // done before the clock moves: pay or void the first invoice, or update (pay it and bill a change at once)
		moveTo  time.Duration
		status  string // after the move
		settle  url.Values
	}{
		{name: "unpaid past its due date", moveTo: (due*24 + 1) * time.Hour, status: "past_due",
			settle: url.Values{"paid_out_of_band": {"true"}}},
		{name: "paid with a card once past_due", moveTo: (due*24 + 1) * time.Hour, status: "past_due",
			settle: url.Values{"payment_method": {"pm_card_visa"}}},
		{name: "an update's invoice unpaid", before: "update", moveTo: (due*24 + 1) * time.Hour, status: "past_due",
			settle: url.Values{"paid_out_of_band": {"true"}}},
		{name: "due date not yet come", moveTo: (due*24 - 1) * time.Hour, status: "active"},
		{name: "paid before its due date", before: "pay", moveTo: 20 * 24 * time.Hour, status: "active"},
		{name: "voided before its due date", before: "void", moveTo: 20 * 24 * time.Hour, status: "active"},
		{name: "on a test clock", onClock: true, moveTo: 20 * 24 * time.Hour, status: "active"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, base := emulatortest.Start(t, emulator.Options{})
			post := func(path string, q url.Values) apiResp {
				t.Helper()
				return mustOK(t, do(t, "POST", base+path, "sk_test_x", q.Encode()))
			}
			get := func(path string) map[string]any {
				t.Helper()
				return mustOK(t, do(t, "GET", base+path, "sk_test_x", "")).body
			}
			cus, price := catalog(t, base, 1000)
			if tc.onClock {
				k := emulatortest.NewClock(func(path string, q url.Values) string { t.Helper(); return idOfResp(post(path, q)) })
				cus = k.Customer()
			}
			s := post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price},
				"collection_method": {"send_invoice"}, "days_until_due": {fmt.Sprint(due)}})
			sub, inv := idOfResp(s), s.body["latest_invoice"].(string)
			if i := get("/v1/invoices/" + inv); i["status"] != "open" || num(i["due_date"]) != num(s.body["created"])+due*daySeconds {
				t.Fatalf("first invoice %v due %v, want open due %d days after %v", i["status"], i["due_date"], due, s.body["created"])
			}
			switch tc.before {
			case "pay":
				post("/v1/invoices/"+inv+"/pay", url.Values{"paid_out_of_band": {"true"}})
			case "void":
				post("/v1/invoices/"+inv+"/void", nil)
			case "update":
				post("/v1/invoices/"+inv+"/pay", url.Values{"paid_out_of_band": {"true"}})
				item := at(s.body, "items.data.0.id").(string)
				u := post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"2"},
					"proration_behavior": {"always_invoice"}})
				inv = u.body["latest_invoice"].(string)
				if i := get("/v1/invoices/" + inv); i["billing_reason"] != "subscription_update" || i["status"] != "open" {
					t.Fatalf("update's invoice: %v %v", i["billing_reason"], i["status"])
				}
			}
			last := get("/v1/events?limit=1")["data"].([]any)[0].(map[string]any)["id"].(string)
			e.SetClockOffset(tc.moveTo)
			evs := oldestFirst(get("/v1/events?limit=100&ending_before=" + last)["data"].([]any))
			if got := get("/v1/subscriptions/" + sub)["status"]; got != tc.status {
				t.Fatalf("after the clock moved %s: %v, want %s", tc.moveTo, got, tc.status)
			}
			var want []string
			if tc.status == "past_due" {
				want = []string{"customer.subscription.updated"}
			}
			if got := subscriptionEvents(evs, sub); !slices.Equal(got, want) {
				t.Fatalf("events: %v, want %v", got, want)
			}
			if tc.status != "past_due" {
				return
			}
			d := evs[len(evs)-1]["data"].(map[string]any)
			if at(d, "object.status") != "past_due" || at(d, "previous_attributes.status") != "active" {
				t.Errorf("event data: status %v, previous %v", at(d, "object.status"), d["previous_attributes"])
			}
			// Once: a later move, or request, changes nothing more.
			e.SetClockOffset(tc.moveTo + 24*time.Hour)
			if got := subscriptionEvents(oldestFirst(get("/v1/events?limit=100&ending_before=" + last)["data"].([]any)), sub); !slices.Equal(got, want) {
				t.Fatalf("events after a second move: %v, want %v", got, want)
			}
			post("/v1/invoices/"+inv+"/pay", tc.settle)
			if got := get("/v1/subscriptions/" + sub)["status"]; got != "active" {
				t.Errorf("past_due after paying its latest invoice: %v, want active", got)
			}
		})
	}
}

// The admin API's clock moves the emulator's clock as SetClockOffset
// does: an overdue send_invoice subscription is past_due by the next
// request, and its event is in the list.
func TestSendInvoiceOverdueAdminClock(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 1000)
	s := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", url.Values{"customer": {cus}, "items[0][price]": {price},
		"collection_method": {"send_invoice"}, "days_until_due": {"1"}}.Encode()))
	mustOK(t, do(t, "POST", base+"/_emulator/clock", "", `{"offset": "25h"}`, "Content-Type", "application/json"))
	if got := mustOK(t, do(t, "GET", base+"/v1/subscriptions/"+idOfResp(s), "sk_test_x", "")).body["status"]; got != "past_due" {
		t.Fatalf("after the admin clock passed the due date: %v, want past_due", got)
	}
	evs := mustOK(t, do(t, "GET", base+"/v1/events?type=customer.subscription.updated", "sk_test_x", "")).body["data"].([]any)
	if len(evs) != 1 || at(evs[0].(map[string]any), "data.object.status") != "past_due" {
		t.Fatalf("customer.subscription.updated events: %v", evs)
	}
}
