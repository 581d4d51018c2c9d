package emulator_test

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// trialSub is a subscription of k's customer to a 1000 a month
// price with a ten-day trial from clockFrozenAt, charged to a copy of test card pm once the
// trial is over, and the clock moved two days into the trial.
func trialSub(k *frozenClock, pm string) string {
	k.t.Helper()
	sub := k.Subscribe(k.cus, k.price(1000), url.Values{"trial_period_days": {"10"}, "default_payment_method": {k.card(pm)}})
	k.advance(clockFrozenAt + 2*daySeconds)
	return sub
}

// reviewMonthAfter is a month after ts (UTC), a monthly period's end.
func reviewMonthAfter(ts int64) int64 {
	return time.Unix(ts, 0).UTC().AddDate(0, 1, 0).Unix()
}

// trial_end=now on a trialing subscription ends the trial at the request
// (on its clock), as Stripe's trials guide and the spec say: active, the
// trial, anchor and a new period starting then, and an invoice of the new
// period charged at once (subscription_update), with
// customer.subscription.trial_will_end and customer.subscription.updated
// carrying what changed. The next renewal is a month after the request,
// and nothing happens at the old trial end. Before, trial_end=now was
// dropped: the subscription stayed trialing and nothing was billed.
func TestTrialEndNow(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub := trialSub(k, "pm_card_visa")
	now := int64(clockFrozenAt + 2*daySeconds)
	before := k.get("/v1/subscriptions/" + sub)

	var r apiResp
	evs := k.events(func() { r = mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"trial_end": {"now"}})) })
	s := r.body
	if s["status"] != "active" || num(s["trial_end"]) != now || num(s["billing_cycle_anchor"]) != now ||
		num(s["current_period_start"]) != now || num(s["current_period_end"]) != reviewMonthAfter(now) {
		t.Fatalf("after trial_end=now: status %v trial_end %v anchor %v period %v-%v, want active %d %d %d-%d",
			s["status"], s["trial_end"], s["billing_cycle_anchor"], s["current_period_start"], s["current_period_end"],
			now, now, now, reviewMonthAfter(now))
	}
	if s["latest_invoice"] == before["latest_invoice"] {
		t.Fatal("no new invoice for the trial ended")
	}
	inv := k.get("/v1/invoices/" + s["latest_invoice"].(string))
	if inv["billing_reason"] != "subscription_update" || inv["status"] != "paid" || num(inv["amount_paid"]) != 1000 {
		t.Errorf("trial end invoice: %v %v paid %v, want subscription_update paid 1000", inv["billing_reason"], inv["status"], inv["amount_paid"])
	}
	line := inv["lines"].(map[string]any)["data"].([]any)[0].(map[string]any)
	if p := line["period"].(map[string]any); num(p["start"]) != now || num(p["end"]) != reviewMonthAfter(now) {
		t.Errorf("line period %v, want the new period", p)
	}
	want := []string{"invoice.created", "payment_intent.created", "invoice.finalized", "charge.succeeded", "payment_intent.succeeded",
		"invoice.paid", "invoice.payment_succeeded", "customer.subscription.trial_will_end", "customer.subscription.updated"}
	if got := subscriptionEvents(evs, sub); !reflect.DeepEqual(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	upd := evs[len(evs)-1]
	prev := upd["data"].(map[string]any)["previous_attributes"].(map[string]any)
	if prev["status"] != "trialing" || num(prev["trial_end"]) != num(before["trial_end"]) ||
		num(prev["current_period_end"]) != num(before["current_period_end"]) || prev["latest_invoice"] != before["latest_invoice"] {
		t.Errorf("previous_attributes %v", prev)
	}

	// The old trial end passes without a renewal; the new period's end
	// renews.
	if evs := k.advance(clockFrozenAt + 11*daySeconds); len(subscriptionEvents(evs, sub)) != 0 {
		t.Errorf("events at the old trial end: %v", subscriptionEvents(evs, sub))
	}
	k.advance(reviewMonthAfter(now))
	cyc := k.cycleInvoices(sub)
	if len(cyc) != 1 || num(cyc[0]["period_start"]) != now || num(cyc[0]["period_end"]) != reviewMonthAfter(now) || cyc[0]["status"] != "paid" {
		t.Errorf("renewals after the trial ended early: %v", cyc)
	}
}

// A trial ended with trial_end=now and a declining card: the default
// allow_incomplete leaves it past_due with the invoice open and dunned,
// as at a natural trial end; error_if_incomplete answers the card error
// and changes nothing; pending_if_incomplete keeps it trialing with the
// end waiting in pending_update (trial_end and billing_cycle_anchor the
// request's time) until its invoice is paid, which ends the trial then.
func TestTrialEndNowDeclined(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	now := int64(clockFrozenAt + 2*daySeconds)

	allow := k.Subscribe(k.cus, k.price(1000), url.Values{"trial_period_days": {"10"}, "default_payment_method": {k.card("pm_card_chargeCustomerFail")}})
	errSub := k.Subscribe(k.cus, k.price(1000), url.Values{"trial_period_days": {"10"}, "default_payment_method": {k.card("pm_card_chargeCustomerFail")}})
	pend := k.Subscribe(k.cus, k.price(1000), url.Values{"trial_period_days": {"10"}, "default_payment_method": {k.card("pm_card_chargeCustomerFail")}})
	k.advance(now)

	s := mustOK(t, k.post("/v1/subscriptions/"+allow, url.Values{"trial_end": {"now"}})).body
	if s["status"] != "past_due" || num(s["current_period_start"]) != now {
		t.Errorf("declined trial end: status %v period start %v, want past_due %d", s["status"], s["current_period_start"], now)
	}
	inv := k.get("/v1/invoices/" + s["latest_invoice"].(string))
	if inv["status"] != "open" || num(inv["attempt_count"]) != 1 || num(inv["next_payment_attempt"]) <= now {
		t.Errorf("declined trial end invoice: %v attempt_count %v next_payment_attempt %v", inv["status"], inv["attempt_count"], inv["next_payment_attempt"])
	}

	before := k.get("/v1/subscriptions/" + errSub)
	r := k.post("/v1/subscriptions/"+errSub, url.Values{"trial_end": {"now"}, "payment_behavior": {"error_if_incomplete"}})
	if r.status != 402 {
		t.Errorf("error_if_incomplete: %d %s, want 402", r.status, r.raw)
	}
	if after := k.get("/v1/subscriptions/" + errSub); !reflect.DeepEqual(after, before) {
		t.Errorf("error_if_incomplete changed the subscription:\n%v\n%v", before, after)
	}

	s = mustOK(t, k.post("/v1/subscriptions/"+pend, url.Values{"trial_end": {"now"}, "payment_behavior": {"pending_if_incomplete"}})).body
	pu, _ := s["pending_update"].(map[string]any)
	if s["status"] != "trialing" || pu == nil || num(pu["trial_end"]) != now || num(pu["billing_cycle_anchor"]) != now ||
		num(s["trial_end"]) != clockFrozenAt+10*daySeconds {
		t.Fatalf("pending trial end: status %v trial_end %v pending_update %v", s["status"], s["trial_end"], pu)
	}
	mustOK(t, k.post("/v1/invoices/"+s["latest_invoice"].(string)+"/pay", url.Values{"payment_method": {"pm_card_visa"}}))
	s = k.get("/v1/subscriptions/" + pend)
	if s["status"] != "active" || s["pending_update"] != nil || num(s["trial_end"]) != now ||
		num(s["current_period_start"]) != now || num(s["current_period_end"]) != reviewMonthAfter(now) {
		t.Errorf("pending trial end paid: status %v pending_update %v trial_end %v period %v-%v",
			s["status"], s["pending_update"], s["trial_end"], s["current_period_start"], s["current_period_end"])
	}
}

// trial_end=<later> on a trialing subscription moves the trial's end:
// trial_end, billing_cycle_anchor and current_period_end follow it, no
// invoice is made, the old end passes with nothing and the trial ends
// (trial_will_end three days before, then the first charge) at the new
// one. Before, only trial_end moved: the subscription went active at the
// old end, while trial_end still said later.
func TestTrialExtended(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub := trialSub(k, "pm_card_visa")
	newEnd := int64(clockFrozenAt + 15*daySeconds)
	before := k.get("/v1/subscriptions/" + sub)

	s := mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"trial_end": {fmt.Sprint(newEnd)}})).body
	if s["status"] != "trialing" || num(s["trial_end"]) != newEnd || num(s["billing_cycle_anchor"]) != newEnd ||
		num(s["current_period_end"]) != newEnd || s["latest_invoice"] != before["latest_invoice"] {
		t.Fatalf("extended: status %v trial_end %v anchor %v period end %v latest_invoice %v",
			s["status"], s["trial_end"], s["billing_cycle_anchor"], s["current_period_end"], s["latest_invoice"])
	}
	k.advance(clockFrozenAt + 11*daySeconds)
	if s := k.get("/v1/subscriptions/" + sub); s["status"] != "trialing" || len(k.cycleInvoices(sub)) != 0 {
		t.Errorf("after the old trial end: %v, %d renewals", s["status"], len(k.cycleInvoices(sub)))
	}
	evs := k.advance(newEnd)
	types := subscriptionEvents(evs, sub)
	if !slices.Contains(types, "customer.subscription.trial_will_end") || !slices.Contains(types, "invoice.paid") {
		t.Errorf("events up to the new trial end: %v", types)
	}
	s = k.get("/v1/subscriptions/" + sub)
	if s["status"] != "active" || num(s["current_period_start"]) != newEnd || num(s["current_period_end"]) != reviewMonthAfter(newEnd) {
		t.Errorf("after the new trial end: %v %v-%v", s["status"], s["current_period_start"], s["current_period_end"])
	}
}

// What Stripe refuses (a trial_end not in the future: stripe/stripe-go#93;
// more than 730 days ahead: stripe/stripe-ruby#804) and what is not
// modelled (a trial added to an active subscription, trial_end=now with
// no trial, trial_end with billing_cycle_anchor) is a 400 on trial_end
// that changes nothing and sends no event; the current trial_end again
// is taken. Before, each was a 200 that stored trial_end as a plain field.
func TestTrialEndRefused(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	trialEnd := clockFrozenAt + 10*daySeconds
	trialing := k.Subscribe(k.cus, k.price(1000), url.Values{"trial_period_days": {"10"}})
	active := k.Subscribe(k.cus, k.price(1000), nil)
	now := int64(clockFrozenAt + 2*daySeconds)
	k.advance(now)
	before := map[string]map[string]any{trialing: k.get("/v1/subscriptions/" + trialing), active: k.get("/v1/subscriptions/" + active)}
	events := len(k.get("/v1/events?limit=100")["data"].([]any))

	for _, c := range []struct {
		sub    string
		params url.Values
		msg    string
	}{
		{trialing, url.Values{"trial_end": {fmt.Sprint(now - 1)}}, "Invalid timestamp: must be an integer Unix timestamp in the future."},
		{trialing, url.Values{"trial_end": {fmt.Sprint(now)}}, "Invalid timestamp: must be an integer Unix timestamp in the future."},
		{trialing, url.Values{"trial_end": {fmt.Sprint(now + 731*daySeconds)}}, "The maximum number of trial period days is 730 (2 years)."},
		{trialing, url.Values{"trial_end": {"now"}, "billing_cycle_anchor": {"now"}}, ""},
		{active, url.Values{"trial_end": {fmt.Sprint(clockFrozenAt + 20*daySeconds)}}, ""},
		{active, url.Values{"trial_end": {fmt.Sprint(clockFrozenAt + 20*daySeconds)}, "payment_behavior": {"pending_if_incomplete"}}, ""},
	} {
		r := k.post("/v1/subscriptions/"+c.sub, c.params)
		if r.status != 400 || at(r.body, "error.param") != "trial_end" || c.msg != "" && at(r.body, "error.message") != c.msg {
			t.Errorf("%s %v: %d %s, want 400 on trial_end %q", c.sub, c.params, r.status, r.raw, c.msg)
		}
	}
	// With no trial to end, now is taken and changes nothing (Laravel
	// Cashier sends it with every resume and swap).
	mustOK(t, k.post("/v1/subscriptions/"+active, url.Values{"trial_end": {"now"}}))
	for id, b := range before {
		got := k.get("/v1/subscriptions/" + id)
		for _, f := range []string{"status", "trial_end", "current_period_end", "billing_cycle_anchor", "latest_invoice", "pending_update"} {
			if !reflect.DeepEqual(got[f], b[f]) {
				t.Errorf("%s after refused trial changes: %s %v, was %v", id, f, got[f], b[f])
			}
		}
	}
	if n := len(k.get("/v1/events?limit=100")["data"].([]any)); n != events {
		t.Errorf("%d events after refused trial changes, want %d", n, events)
	}
	mustOK(t, k.post("/v1/subscriptions/"+trialing, url.Values{"trial_end": {fmt.Sprint(trialEnd)}}))
}
