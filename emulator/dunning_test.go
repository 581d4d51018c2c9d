package emulator_test

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// retryGapSeconds is the time between two retries of a failed renewal: 8
// retries over 14 days (doc.go).
const retryGapSeconds = 14 * daySeconds / 8

var retryFailedEvents = []string{"charge.failed", "payment_intent.payment_failed", "invoice.payment_failed"}

// subscriptionEventsAll is subscriptionEvents knowing the subscription's
// invoices from every event of evs, not only earlier ones: a retry's
// charge and intent events come before any of its invoice's.
func subscriptionEventsAll(evs []map[string]any, sub string) []string {
	var invs []map[string]any
	for _, ev := range evs {
		if obj := at(ev, "data.object").(map[string]any); obj["object"] == "invoice" && obj["subscription"] == sub {
			invs = append(invs, map[string]any{"type": "", "data": map[string]any{"object": obj}})
		}
	}
	return subscriptionEvents(append(invs, evs...), sub)[len(invs):]
}

// failingSub makes a monthly subscription on k's clock, paid for at
// creation, whose renewals are charged to test payment method pm,
// attached.
func (k *frozenClock) failingSub(pm string) string {
	k.t.Helper()
	sub := k.Subscribe(k.cus, k.price(1000), nil)
	mustOK(k.t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card(pm)}}))
	return sub
}

// dunnedRenewal is a clock on a new emulator whose subscription sub
// (failingSub) failed its renewal at monthStart(1), invoice inv: the
// clock is at the renewal.
func dunnedRenewal(t *testing.T, pm string) (k *frozenClock, sub, inv string) {
	t.Helper()
	_, base := emulatortest.Start(t, emulator.Options{})
	k = newFrozenClock(t, base)
	sub = k.failingSub(pm)
	k.advance(monthStart(1))
	return k, sub, k.cycleInvoices(sub)[0]["id"].(string)
}

// checkDunned fails unless invoice id is open with attempt_count n and its
// next attempt at next (0: none) and auto_advance as given.
func (k *frozenClock) checkDunned(id string, n, next int64, autoAdvance bool) {
	k.t.Helper()
	inv := k.get("/v1/invoices/" + id)
	if inv["status"] != "open" || num(inv["attempt_count"]) != n || inv["attempted"] != true ||
		num(inv["next_payment_attempt"]) != next || inv["auto_advance"] != autoAdvance {
		k.t.Fatalf("invoice %s: status %v attempt_count %v next_payment_attempt %v auto_advance %v, want open %d %d %v",
			id, inv["status"], inv["attempt_count"], inv["next_payment_attempt"], inv["auto_advance"], n, next, autoAdvance)
	}
}

// A renewal charged to a card that fails (pm_card_chargeCustomerFail) is
// retried 8 times, every 14/8 days, each retry with its failed charge,
// payment_intent.payment_failed and invoice.payment_failed, attempt_count
// and next_payment_attempt moving on; the last failure cancels the
// subscription (reason payment_failed), whose invoice stays open with its
// collection stopped; nothing renews afterwards.
func TestDunningEndsCanceled(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	sub := k.failingSub("pm_card_chargeCustomerFail")
	renewal := monthStart(1)
	if got := subscriptionEventsAll(k.advance(renewal), sub); !slices.Equal(got, failedRenewal) {
		t.Fatalf("renewal events:\n got %v\nwant %v", got, failedRenewal)
	}
	inv := k.cycleInvoices(sub)[0]["id"].(string)
	if got := subscriptionEventsAll(k.advance(renewal+retryGapSeconds-1), sub); len(got) != 0 {
		t.Fatalf("events before the first retry: %v", got)
	}
	for n := int64(1); n <= 8; n++ {
		k.checkDunned(inv, n, renewal+n*retryGapSeconds, true)
		want := retryFailedEvents
		if n == 8 {
			want = slices.Concat(retryFailedEvents, []string{"customer.subscription.deleted", "invoice.updated"})
		}
		if got := subscriptionEventsAll(k.advance(renewal+n*retryGapSeconds), sub); !slices.Equal(got, want) {
			t.Fatalf("retry %d events:\n got %v\nwant %v", n, got, want)
		}
	}
	k.checkDunned(inv, 9, 0, false)
	end := renewal + 14*daySeconds
	so := k.get("/v1/subscriptions/" + sub)
	if so["status"] != "canceled" || num(so["ended_at"]) != end || num(so["canceled_at"]) != end ||
		at(so, "cancellation_details.reason") != "payment_failed" || num(so["current_period_end"]) != monthStart(2) {
		t.Errorf("after the last retry: status %v ended_at %v canceled_at %v details %v period end %v, want canceled at %d, payment_failed",
			so["status"], num(so["ended_at"]), num(so["canceled_at"]), so["cancellation_details"], num(so["current_period_end"]), end)
	}
	failed := 0
	for _, ch := range k.get("/v1/charges?limit=100&customer=" + k.cus)["data"].([]any) {
		if c := ch.(map[string]any); c["invoice"] == inv && c["status"] == "failed" {
			failed++
		}
	}
	if failed != 9 {
		t.Errorf("%d failed charges of the renewal invoice, want 9 (the first attempt and 8 retries)", failed)
	}
	if got := subscriptionEventsAll(k.advance(monthStart(2)+daySeconds), sub); len(got) != 0 || len(k.cycleInvoices(sub)) != 1 {
		t.Errorf("after the cancellation, at the next period: events %v, %d renewals", got, len(k.cycleInvoices(sub)))
	}
}

// A retry after the customer's card was replaced pays the invoice and
// makes the subscription active again, and no retry follows. A manual
// payment attempt that fails in between is not one of the schedule's: it
// leaves attempt_count and next_payment_attempt alone (spec,
// invoice.attempt_count).
func TestDunningRecovers(t *testing.T) {
	k, sub, inv := dunnedRenewal(t, "pm_card_chargeCustomerFail")
	renewal := monthStart(1)
	k.checkDunned(inv, 1, renewal+retryGapSeconds, true)
	if r := k.post("/v1/invoices/"+inv+"/pay", url.Values{"payment_method": {"pm_card_chargeDeclined"}}); r.status != 402 {
		t.Fatalf("manual payment with a declining card: %d %s", r.status, r.raw)
	}
	k.checkDunned(inv, 1, renewal+retryGapSeconds, true)
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card("pm_card_visa")}}))

	want := []string{"charge.succeeded", "payment_intent.succeeded", "invoice.paid", "invoice.payment_succeeded", "customer.subscription.updated"}
	if got := subscriptionEventsAll(k.advance(renewal+retryGapSeconds), sub); !slices.Equal(got, want) {
		t.Fatalf("retry events:\n got %v\nwant %v", got, want)
	}
	got := k.get("/v1/invoices/" + inv)
	if got["status"] != "paid" || num(got["attempt_count"]) != 2 || got["next_payment_attempt"] != nil || num(got["amount_paid"]) != 1000 ||
		num(at(got, "status_transitions.paid_at")) != renewal+retryGapSeconds {
		t.Errorf("invoice after the retry: %v attempt_count %v next %v paid %v at %v", got["status"], got["attempt_count"],
			got["next_payment_attempt"], got["amount_paid"], num(at(got, "status_transitions.paid_at")))
	}
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
		t.Errorf("subscription after the paying retry: %v, want active", st)
	}
	if got := subscriptionEventsAll(k.advance(renewal+15*daySeconds), sub); len(got) != 0 {
		t.Errorf("events after the invoice was paid: %v", got)
	}
}

// Canceling a subscription in its dunning stops the collection of its
// open invoice (spec, DELETE /v1/subscriptions: "Stripe will stop
// automatic collection of all finalized invoices for the customer"): no
// next attempt, auto_advance false, invoice.updated, and no retry comes.
func TestCancelStopsRetries(t *testing.T) {
	k, sub, inv := dunnedRenewal(t, "pm_card_chargeCustomerFail")
	renewal := monthStart(1)
	mustOK(t, do(t, "DELETE", k.base+"/v1/subscriptions/"+sub, "sk_test_x", ""))
	k.checkDunned(inv, 1, 0, false)
	var updated int
	for _, ev := range k.get("/v1/events?limit=100&type=invoice.updated")["data"].([]any) {
		d := ev.(map[string]any)["data"].(map[string]any)
		if at(d, "object.id") == inv && at(d, "previous_attributes.auto_advance") == true &&
			num(at(d, "previous_attributes.next_payment_attempt")) == renewal+retryGapSeconds {
			updated++
		}
	}
	if updated != 1 {
		t.Errorf("%d invoice.updated events stopping the collection, want 1", updated)
	}
	if got := subscriptionEventsAll(k.advance(renewal+15*daySeconds), sub); len(got) != 0 {
		t.Errorf("events after the cancellation: %v", got)
	}
	k.checkDunned(inv, 1, 0, false)
}

// A weekly subscription renews again while its first renewal is still
// retried: already past_due, the second failure changes its status no
// more; each invoice keeps its own schedule, and when the first one's
// retries end (at the third renewal's moment, which the retry comes
// before) the subscription is canceled, the second invoice's retries stop
// and no third renewal is billed.
func TestOverlappingDunning(t *testing.T) {
	k, sub, first, second := twoFailedRenewals(t)
	week := func(n int64) int64 { return clockFrozenAt + n*7*daySeconds }
	// The first: its first attempt and 4 retries (the 4th at week 2).
	k.checkDunned(first, 5, week(1)+5*retryGapSeconds, true)
	k.checkDunned(second, 1, week(2)+retryGapSeconds, true)
	k.advance(week(3))
	// The first's 8th retry at week 3 ended it; the second had 3 retries.
	k.checkDunned(first, 9, 0, false)
	k.checkDunned(second, 4, 0, false)
	so := k.get("/v1/subscriptions/" + sub)
	if so["status"] != "canceled" || num(so["ended_at"]) != week(3) || len(k.cycleInvoices(sub)) != 2 {
		t.Errorf("at week 3: status %v ended_at %v, %d renewals; want canceled at %d, 2", so["status"], num(so["ended_at"]), len(k.cycleInvoices(sub)), week(3))
	}
	statusChanges := 0
	for _, ev := range k.get("/v1/events?limit=100&type=customer.subscription.updated")["data"].([]any) {
		d := ev.(map[string]any)["data"].(map[string]any)
		if at(d, "object.id") == sub && at(d, "previous_attributes.status") != nil {
			statusChanges++
		}
	}
	if statusChanges != 1 {
		t.Errorf("%d status changes in customer.subscription.updated, want 1 (active to past_due)", statusChanges)
	}
}

// An incomplete subscription whose first invoice is still unpaid 23 hours
// after its creation becomes incomplete_expired at that moment (spec,
// subscription.status), customer.subscription.updated, and its first
// invoice is voided (its intent canceled); one paid in time is active and
// stays so. Nothing renews an expired one.
func TestIncompleteExpires(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const expiry = clockFrozenAt + 23*3600
	cases := []struct {
		name   string
		params url.Values
		pay    bool // paid with pm_card_visa an hour before the expiry
	}{
		{name: "declined", params: url.Values{"default_payment_method": {"pm_card_chargeCustomerFail"}}},
		{name: "default_incomplete", params: url.Values{"payment_behavior": {"default_incomplete"}}},
		{name: "paid in time", params: url.Values{"payment_behavior": {"default_incomplete"}}, pay: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClock(t, base)
			p := url.Values{"customer": {k.cus}, "items[0][price]": {k.price(1000)}}
			for key, v := range tc.params {
				p[key] = v
			}
			if pm := p.Get("default_payment_method"); pm != "" {
				p.Set("default_payment_method", k.card(pm))
			}
			s := mustOK(t, k.post("/v1/subscriptions", p))
			sub, inv := idOfResp(s), s.body["latest_invoice"].(string)
			if s.body["status"] != "incomplete" {
				t.Fatalf("new subscription %v, want incomplete", s.body["status"])
			}
			if got := subscriptionEventsAll(k.advance(expiry-3600), sub); len(got) != 0 {
				t.Fatalf("events before the expiry: %v", got)
			}
			if tc.pay {
				mustOK(t, k.post("/v1/invoices/"+inv+"/pay", url.Values{"payment_method": {"pm_card_visa"}}))
			}
			want := []string{"customer.subscription.updated", "payment_intent.canceled", "invoice.voided"}
			if tc.pay {
				want = nil
			}
			if got := subscriptionEventsAll(k.advance(expiry), sub); !slices.Equal(got, want) {
				t.Fatalf("events at the expiry:\n got %v\nwant %v", got, want)
			}
			so, io := k.get("/v1/subscriptions/"+sub), k.get("/v1/invoices/"+inv)
			if tc.pay {
				if so["status"] != "active" || io["status"] != "paid" {
					t.Fatalf("paid in time: subscription %v, invoice %v", so["status"], io["status"])
				}
				return
			}
			if so["status"] != "incomplete_expired" || num(so["ended_at"]) != expiry || num(so["canceled_at"]) != expiry {
				t.Errorf("expired subscription: status %v ended_at %v canceled_at %v", so["status"], num(so["ended_at"]), num(so["canceled_at"]))
			}
			if io["status"] != "void" || num(at(io, "status_transitions.voided_at")) != expiry {
				t.Errorf("first invoice: %v voided_at %v", io["status"], at(io, "status_transitions.voided_at"))
			}
			if pi := k.get("/v1/payment_intents/" + io["payment_intent"].(string)); pi["status"] != "canceled" || pi["cancellation_reason"] != "void_invoice" {
				t.Errorf("first invoice's intent: %v (%v)", pi["status"], pi["cancellation_reason"])
			}
			if got := subscriptionEventsAll(k.advance(monthStart(1)+daySeconds), sub); len(got) != 0 || len(k.cycleInvoices(sub)) != 0 {
				t.Errorf("after the expiry: events %v, %d renewals", got, len(k.cycleInvoices(sub)))
			}
		})
	}
}

// A trialing subscription's billing_cycle_anchor is its trial_end (Stripe:
// the anchor's "default value is either the subscription creation date or
// the trial end date"), and its periods keep to the anchor's day of the
// month, the month's last when shorter: a trial ending January 31, 2020
// renews on February 29 and then March 31, not a month after each
// renewal. So does a subscription created on the 31st.
func TestBillingCycleAnchor(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	date := func(m time.Month, d int) int64 { return time.Date(2020, m, d, 0, 0, 0, 0, time.UTC).Unix() }
	cases := []struct {
		name    string
		frozen  int64
		params  url.Values
		anchor  int64
		periods []int64 // boundaries from the first period's end on
	}{
		{name: "trial", frozen: clockFrozenAt, params: url.Values{"trial_period_days": {"30"}}, anchor: date(1, 31),
			periods: []int64{date(1, 31), date(2, 29), date(3, 31), date(4, 30)}},
		{name: "created on the 31st", frozen: date(1, 31), anchor: date(1, 31),
			periods: []int64{date(2, 29), date(3, 31), date(4, 30)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newFrozenClockAt(t, base, tc.frozen)
			p := url.Values{"customer": {k.cus}, "items[0][price]": {k.price(1000)}, "default_payment_method": {k.card("pm_card_visa")}}
			for key, v := range tc.params {
				p[key] = v
			}
			s := mustOK(t, k.post("/v1/subscriptions", p))
			sub := idOfResp(s)
			if num(s.body["billing_cycle_anchor"]) != tc.anchor || num(s.body["current_period_end"]) != tc.periods[0] {
				t.Fatalf("new subscription: billing_cycle_anchor %v current_period_end %v, want %d %d",
					num(s.body["billing_cycle_anchor"]), num(s.body["current_period_end"]), tc.anchor, tc.periods[0])
			}
			for i := 1; i < len(tc.periods); i++ {
				k.advance(tc.periods[i-1])
				so := k.get("/v1/subscriptions/" + sub)
				if num(so["current_period_start"]) != tc.periods[i-1] || num(so["current_period_end"]) != tc.periods[i] ||
					num(so["billing_cycle_anchor"]) != tc.anchor || so["status"] != "active" {
					t.Fatalf("after the renewal at %s: %v period %s–%s anchor %v, want %s–%s",
						time.Unix(tc.periods[i-1], 0).UTC().Format(time.DateOnly), so["status"],
						time.Unix(num(so["current_period_start"]), 0).UTC().Format(time.DateOnly),
						time.Unix(num(so["current_period_end"]), 0).UTC().Format(time.DateOnly), num(so["billing_cycle_anchor"]),
						time.Unix(tc.periods[i-1], 0).UTC().Format(time.DateOnly), time.Unix(tc.periods[i], 0).UTC().Format(time.DateOnly))
				}
				invs := k.cycleInvoices(sub)
				if len(invs) != i || num(at(invs[i-1], "lines.data.0.period.end")) != tc.periods[i] {
					t.Fatalf("renewal %d: %d invoices, last line period end %v", i, len(invs), at(invs[len(invs)-1], "lines.data.0.period.end"))
				}
			}
		})
	}
}

// POST /v1/invoices/{id}/send sends invoice.sent (spec: "Requests made in
// test-mode result in no emails being sent, despite sending an
// invoice.sent event"), finalizing a draft first (invoice.finalized
// before it); again for an open invoice.
func TestInvoiceSent(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	mustOK(t, k.post("/v1/invoiceitems", url.Values{"customer": {k.cus}, "amount": {"500"}, "currency": {"usd"}}))
	inv := idOfResp(mustOK(t, k.post("/v1/invoices", url.Values{"customer": {k.cus}, "collection_method": {"send_invoice"},
		"days_until_due": {"30"}, "pending_invoice_items_behavior": {"include"}})))
	invoiceEvents := func() []string {
		var out []string
		data := k.get("/v1/events?limit=100")["data"].([]any)
		for i := len(data) - 1; i >= 0; i-- {
			ev := data[i].(map[string]any)
			if at(ev, "data.object.id") == inv {
				out = append(out, ev["type"].(string))
			}
		}
		return out
	}
	before := len(invoiceEvents())
	r := mustOK(t, k.post("/v1/invoices/"+inv+"/send", url.Values{}))
	if r.body["status"] != "open" {
		t.Fatalf("sent draft: status %v, want open", r.body["status"])
	}
	mustOK(t, k.post("/v1/invoices/"+inv+"/send", url.Values{}))
	if got, want := invoiceEvents()[before:], []string{"invoice.finalized", "invoice.sent", "invoice.sent"}; !slices.Equal(got, want) {
		t.Errorf("events of the sends:\n got %v\nwant %v", got, want)
	}
}

// TestEndedSubscriptionItemsFinal: the subscription item endpoints can't
// change a canceled subscription either (found by FuzzBilling: an item
// was added to one whose update Stripe refuses).
func TestEndedSubscriptionItemsFinal(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	_, price := catalog(t, base, 1000)
	_, other := catalog(t, base, 2000)
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "")))
	sub := idOfResp(mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&payment_behavior=default_incomplete")))
	item := mustOK(t, do(t, "GET", base+"/v1/subscription_items?subscription="+sub, "sk_test_x", "")).body["data"].([]any)[0].(map[string]any)["id"].(string)
	mustOK(t, do(t, "DELETE", base+"/v1/subscriptions/"+sub, "sk_test_x", ""))
	events := len(e.Objects("events"))
	for _, r := range []apiResp{
		do(t, "POST", base+"/v1/subscription_items", "sk_test_x", "subscription="+sub+"&price="+other),
		do(t, "POST", base+"/v1/subscription_items/"+item, "sk_test_x", "quantity=3"),
		do(t, "DELETE", base+"/v1/subscription_items/"+item, "sk_test_x", ""),
	} {
		if r.status != 400 || errField(r, "type") != "invalid_request_error" {
			t.Errorf("item change on a canceled subscription: %d %s", r.status, r.raw)
		}
	}
	items := mustOK(t, do(t, "GET", base+"/v1/subscription_items?subscription="+sub, "sk_test_x", "")).body["data"].([]any)
	if len(items) != 1 || num(items[0].(map[string]any)["quantity"]) != 1 {
		t.Errorf("items after refused changes: %v", items)
	}
	if n := len(e.Objects("events")); n != events {
		t.Errorf("%d events from refused changes", n-events)
	}
}

// TestWrittenOffInvoiceSettlesPastDue: Stripe determines a
// subscription's status from its most recent invoice that is not void,
// an uncollectible one counting as paid (docs.stripe.com/billing/
// subscriptions/overview). A past_due subscription whose open renewal is
// voided or marked uncollectible is active again when the invoice before
// it was paid, with customer.subscription.updated; voiding an open
// invoice while an older one is still open leaves it past_due.
func TestWrittenOffInvoiceSettlesPastDue(t *testing.T) {
	for _, act := range []string{"void", "mark_uncollectible"} {
		t.Run(act, func(t *testing.T) {
			k, sub, inv := dunnedRenewal(t, "pm_card_chargeCustomerFail")
			if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "past_due" {
				t.Fatalf("after the failed renewal: status %v", st)
			}
			var evs []map[string]any
			evs = k.events(func() { mustOK(t, k.post("/v1/invoices/"+inv+"/"+act, nil)) })
			so := k.get("/v1/subscriptions/" + sub)
			if so["status"] != "active" || so["latest_invoice"] != inv {
				t.Fatalf("after %s of the latest invoice: status %v latest_invoice %v, want active %s", act, so["status"], so["latest_invoice"], inv)
			}
			updated := false
			for _, ev := range evs {
				if ev["type"] == "customer.subscription.updated" && at(ev, "data.object.id") == sub {
					updated = at(ev, "data.object.status") == "active" && at(ev, "data.previous_attributes.status") == "past_due"
				}
			}
			if !updated {
				t.Errorf("no customer.subscription.updated from past_due to active among %v", eventTypesOf(evs))
			}
		})
	}
	t.Run("an older invoice still open", func(t *testing.T) {
		k, sub, renewal := dunnedRenewal(t, "pm_card_chargeCustomerFail")
		item := at(k.get("/v1/subscriptions/"+sub), "items.data").([]any)[0].(map[string]any)["id"].(string)
		// A quantity change billed at once, its charge declined too: the
		// subscription's latest invoice is a second open one.
		r := k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"2"}, "proration_behavior": {"always_invoice"}})
		if r.status != 200 {
			t.Fatalf("always_invoice update: %d %s", r.status, r.raw)
		}
		so := k.get("/v1/subscriptions/" + sub)
		update, _ := so["latest_invoice"].(string)
		if update == renewal || so["status"] != "past_due" || k.get("/v1/invoices/" + update)["status"] != "open" {
			t.Fatalf("after the update: latest_invoice %v (renewal %s) status %v", update, renewal, so["status"])
		}
		mustOK(t, k.post("/v1/invoices/"+update+"/void", nil))
		if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "past_due" {
			t.Fatalf("after voiding the update's invoice with the renewal still open: status %v, want past_due", st)
		}
		mustOK(t, k.post("/v1/invoices/"+renewal+"/void", nil))
		if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
			t.Fatalf("after voiding the renewal too (the first invoice paid): status %v, want active", st)
		}
	})
}

// eventTypesOf lists the types of evs.
func eventTypesOf(evs []map[string]any) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev["type"].(string))
	}
	return out
}

// pastDueOlderOpen is a past_due subscription, billed to the customer's
// default source, whose renewal (renewal) failed and whose latest invoice,
// an always_invoice update's that failed too, was then voided: the older
// renewal, open, is its most recent invoice that is not void.
func pastDueOlderOpen(t *testing.T) (k *frozenClock, sub, renewal string) {
	t.Helper()
	_, base := emulatortest.Start(t, emulator.Options{})
	k = newFrozenClock(t, base)
	mustOK(t, k.post("/v1/customers/"+k.cus+"/sources", url.Values{"source": {"tok_chargeCustomerFail"}}))
	sub = k.Subscribe(k.cus, k.price(1000), nil) // paid with pm_card_visa
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {""}}))
	k.advance(monthStart(1))
	renewal = k.cycleInvoices(sub)[0]["id"].(string)
	so := k.get("/v1/subscriptions/" + sub)
	if so["status"] != "past_due" || so["latest_invoice"] != renewal {
		t.Fatalf("after the renewal charged to the failing card: status %v latest_invoice %v (renewal %s)", so["status"], so["latest_invoice"], renewal)
	}
	item := at(so, "items.data").([]any)[0].(map[string]any)["id"].(string)
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"2"}, "proration_behavior": {"always_invoice"}}))
	update, _ := k.get("/v1/subscriptions/" + sub)["latest_invoice"].(string)
	if update == renewal || k.get("/v1/invoices/" + update)["status"] != "open" {
		t.Fatalf("always_invoice update: latest_invoice %v (renewal %s)", update, renewal)
	}
	mustOK(t, k.post("/v1/invoices/"+update+"/void", nil))
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "past_due" {
		t.Fatalf("after voiding the update's invoice, the renewal open: status %v", st)
	}
	return k, sub, renewal
}

// Once the latest invoice is void, the subscription's status follows the
// most recent invoice that is not (docs.stripe.com/billing/subscriptions/
// overview): paying that older renewal makes it active, as voiding or
// writing it off already does (TestWrittenOffInvoiceSettlesPastDue).
func TestPayingNewestUnvoidedSettlesPastDue(t *testing.T) {
	k, sub, renewal := pastDueOlderOpen(t)
	var evs []map[string]any
	evs = k.events(func() {
		mustOK(t, k.post("/v1/invoices/"+renewal+"/pay", url.Values{"payment_method": {"pm_card_visa"}}))
	})
	if st := k.get("/v1/invoices/" + renewal)["status"]; st != "paid" {
		t.Fatalf("renewal after /pay: %v", st)
	}
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
		t.Errorf("after paying the most recent invoice that is not void: status %v, want active", st)
	}
	updated := false
	for _, ev := range evs {
		if ev["type"] == "customer.subscription.updated" && at(ev, "data.object.id") == sub {
			updated = at(ev, "data.previous_attributes.status") == "past_due" && at(ev, "data.object.status") == "active"
		}
	}
	if !updated {
		t.Errorf("no customer.subscription.updated from past_due to active among %v", eventTypesOf(evs))
	}
}

// A weekly subscription's first renewal is still retried when its second
// one, failed too, is paid by hand: the latest invoice paid makes it
// active, and when the first invoice's last retry fails at week 3 the
// subscription is left as it is (not canceled): "it is specifically the
// latest invoice whose paid status matters" (support.stripe.com/
// questions/retry-schedules-longer-than-a-subscription-s-billing-period).
// The third renewal, at the same moment after that retry, fails and makes
// it past_due, and is dunned in turn. TestOverlappingDunning is the other
// half: the latest invoice unpaid, the same retry cancels it.
func TestDunningEndLeavesSubscriptionWhoseLatestInvoiceIsPaid(t *testing.T) {
	k, sub, first, second := twoFailedRenewals(t)
	week := func(n int64) int64 { return clockFrozenAt + n*7*daySeconds }
	mustOK(t, k.post("/v1/invoices/"+second+"/pay", url.Values{"payment_method": {"pm_card_visa"}}))
	if st := k.get("/v1/subscriptions/" + sub)["status"]; st != "active" {
		t.Fatalf("after paying the latest invoice: %v, want active", st)
	}
	k.checkDunned(first, 5, week(1)+5*retryGapSeconds, true)

	k.advance(week(3) - 1)
	got := subscriptionEventsAll(k.advance(week(3)), sub)
	want := slices.Concat(retryFailedEvents, failedRenewal)
	if !slices.Equal(got, want) {
		t.Fatalf("events at week 3 (the first invoice's last retry, then the third renewal):\n got %v\nwant %v", got, want)
	}
	so := k.get("/v1/subscriptions/" + sub)
	if so["status"] != "past_due" || so["canceled_at"] != nil || so["ended_at"] != nil || at(so, "cancellation_details.reason") != nil {
		t.Errorf("at week 3: status %v canceled_at %v ended_at %v reason %v, want past_due (the third renewal's), not canceled",
			so["status"], so["canceled_at"], so["ended_at"], at(so, "cancellation_details.reason"))
	}
	// The first invoice's retries are over (left open: Stripe's "leave
	// the invoice as-is"); the third is retried on its own schedule.
	k.checkDunned(first, 9, 0, true)
	invs := k.cycleInvoices(sub)
	if len(invs) != 3 {
		t.Fatalf("%d renewals at week 3, want 3", len(invs))
	}
	k.checkDunned(invs[2]["id"].(string), 1, week(3)+retryGapSeconds, true)
}

// twoFailedRenewals is a weekly subscription on a declining card, two
// weeks on: its first two renewals, both failed and dunned.
func twoFailedRenewals(t *testing.T) (k *frozenClock, sub, first, second string) {
	t.Helper()
	_, base := emulatortest.Start(t, emulator.Options{})
	k = newFrozenClock(t, base)
	sub = k.Subscribe(k.cus, k.Price(300, "week"), nil)
	mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card("pm_card_chargeCustomerFail")}}))
	k.advance(clockFrozenAt + 2*7*daySeconds)
	invs := k.cycleInvoices(sub)
	if len(invs) != 2 {
		t.Fatalf("%d renewals after two weeks, want 2", len(invs))
	}
	return k, sub, invs[0]["id"].(string), invs[1]["id"].(string)
}
