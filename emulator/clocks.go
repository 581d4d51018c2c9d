package emulator

import (
	"iter"
	"net/http"
	"slices"
	"strconv"
)

// Test clocks (test mode only). A customer created with test_clock belongs
// to that clock for good; its subscriptions, invoices, invoice items and
// subscription schedules carry the clock too. Stripe's lists leave such
// customers and subscriptions out unless asked for the clock (spec:
// GET /v1/customers "The response will not include customers with test
// clocks if this parameter is not set"; GET /v1/subscriptions the same
// unless test_clock or customer is given). Other lists (invoices, invoice
// items, schedules, …) have no such parameter and include them.
//
// Objects created for a clock's customer, and the changes requests make
// to them (a cancel, a payment, a void, an item changed: clockNow), take
// the clock's frozen_time as "now" (created, period starts, canceled_at,
// status_transitions), while their events, the payment side of
// their invoices (paymentCtx) and the response Date stay on the
// emulator's clock. Advancing a clock moves frozen_time
// and does, in time order, what falls due over the advanced time
// (advanceBilling): schedules' phase boundaries (billing.go,
// advanceSchedule), trial_will_end, cancel_at, overdue send_invoice
// invoices, incomplete subscriptions expiring, failed renewals' payment
// retries and renewals. An update of a schedule on a clock reads its
// phases on the clock's time too.

var kClock = addKind(&kind{table: "test_clocks", schema: "test_helpers.test_clock", prefix: "clock_", base: "/v1/test_helpers/test_clocks",
	idParam: "test_clock", events: "test_helpers.test_clock", what: "test clock"})

// clockedTables carry their customer's clock in their test_clock field.
var clockedTables = []string{"subscriptions", "invoices", "invoiceitems", "subscription_schedules"}

// maxAdvance: "If there are no subscriptions in this test clock, it cannot
// be more than two years in the future" (spec, advance's frozen_time).
const maxAdvance = 2 * 365 * 86400

func init() {
	for _, t := range []string{"test_helpers.test_clock.created", "test_helpers.test_clock.advancing",
		"test_helpers.test_clock.ready", "test_helpers.test_clock.deleted"} {
		validEvents[t] = true
	}
	kClock.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		obj["status"] = "ready"
		// Stripe deletes a clock seven days after its creation.
		obj["deletes_after"] = c.now + 7*86400
		return nil
	}
	kClock.del = deleteClock
	crud(kClock, "crdl")
	handle("POST", "/v1/test_helpers/test_clocks/{test_clock}/advance", advanceClock)
	for _, key := range []string{"POST /v1/test_helpers/test_clocks", "GET /v1/test_helpers/test_clocks",
		"GET /v1/test_helpers/test_clocks/{test_clock}", "DELETE /v1/test_helpers/test_clocks/{test_clock}",
		"POST /v1/test_helpers/test_clocks/{test_clock}/advance"} {
		handlers[key] = testModeOnly(handlers[key])
	}
}

// testModeOnly refuses a live-mode key: test clocks exist in test mode only.
func testModeOnly(h handlerFunc) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		if c.live {
			return nil, invalid("", "", "Test clocks are only available in test mode.")
		}
		return h(e, c)
	}
}

// clockNow moves the "now" of a request that creates an object for a
// customer on a test clock (or a customer on one), or changes one of
// such a customer's objects (a cancel, a payment, a void, an item
// changed), to the clock's frozen time: "Time at which all objects
// belonging to this clock are frozen" (spec, test_clock.frozen_time), so
// a subscription canceled on a clock frozen in 2020 is canceled_at then,
// not at the emulator's time. The wall time is kept for events, the
// payment side (paymentCtx) and the Date header.
func (e *Emulator) clockNow(c *reqCtx) {
	c.wall = c.now
	if c.r == nil || c.r.Method != http.MethodPost && c.r.Method != http.MethodDelete || c.route == nil {
		return
	}
	var clock string
	switch c.route.path {
	case "/v1/customers":
		clock, _ = c.params["test_clock"].(string)
	case "/v1/subscriptions", "/v1/invoices", "/v1/invoiceitems", "/v1/subscription_schedules":
		cus, _ := c.params["customer"].(string)
		clock = e.customerClock(cus)
	case "/v1/subscription_items":
		sid, _ := c.params["subscription"].(string)
		clock = e.objectClock(sid)
	default:
		for _, id := range c.path {
			if clock = e.objectClock(id); clock != "" {
				break
			}
		}
	}
	if clock == "" {
		return
	}
	if ck := e.load(kClock, clock); ck != nil {
		c.now = getInt(ck, "frozen_time")
	}
}

// objectClock is the test clock of the customer that object id (a
// customer, or one of its subscriptions, subscription items, invoices,
// invoice items or schedules) belongs to, or "".
func (e *Emulator) objectClock(id string) string {
	if ck := e.customerClock(id); ck != "" {
		return ck
	}
	for _, tn := range []string{"subscriptions", "invoices", "invoiceitems", "subscription_schedules"} {
		t := e.tables[tn]
		if r := t.byID[id]; r != nil {
			cus, _ := t.keyOf(r, "customer")
			return e.customerClock(cus)
		}
	}
	if r := e.tables["subscription_items"].byID[id]; r != nil {
		return e.objectClock(r.parent)
	}
	return ""
}

// customerClock is the test clock a customer belongs to, or "".
func (e *Emulator) customerClock(cus string) string {
	t := e.tables["customers"]
	r := t.byID[cus]
	if r == nil {
		return ""
	}
	v, _ := t.keyOf(r, "test_clock")
	return v
}

// stampClock gives an object of a clocked table its customer's clock. A
// clock is never removed from a customer, so a set value stays.
func (e *Emulator) stampClock(k *kind, obj map[string]any) {
	if !slices.Contains(clockedTables, k.table) || getStr(obj, "test_clock") != "" {
		return
	}
	if ck := e.customerClock(getStr(obj, "customer")); ck != "" {
		obj["test_clock"] = ck
	}
}

// checkCustomerClock validates a new customer's test_clock.
func (e *Emulator) checkCustomerClock(c *reqCtx) *apiError {
	ck, ok := c.params["test_clock"].(string)
	if !ok || ck == "" {
		return nil
	}
	if c.live {
		return invalid("", "test_clock", "Test clocks are only available in test mode.")
	}
	return e.mustExist("test_clocks", "test_clock", ck)
}

// withoutClocks leaves out records on a test clock unless the request
// names a clock or one of params.
func withoutClocks(c *reqCtx, t *table, unless ...string) func(*record) bool {
	for _, p := range append([]string{"test_clock"}, unless...) {
		if _, ok := c.params[p]; ok {
			return nil
		}
	}
	return func(r *record) bool {
		v, _ := t.keyOf(r, "test_clock")
		return v == ""
	}
}

// withListClock refuses a list's test_clock= naming no clock.
func withListClock(h handlerFunc) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		if ck, ok := c.params["test_clock"].(string); ok {
			if ae := e.mustExist("test_clocks", "test_clock", ck); ae != nil {
				return nil, ae
			}
		}
		return h(e, c)
	}
}

func advanceClock(e *Emulator, c *reqCtx) (any, *apiError) {
	id := c.path["test_clock"]
	obj := e.load(kClock, id)
	if obj == nil {
		return nil, notFound("test_clock", "test clock", id)
	}
	cur := getInt(obj, "frozen_time")
	to, _ := toInt(c.params["frozen_time"])
	if to <= cur {
		return nil, invalid("", "frozen_time", "The frozen time must be after the test clock's current frozen time (%d).", cur)
	}
	if to-cur > maxAdvance && !e.clockHasSubscriptions(id) {
		return nil, invalid("", "frozen_time", "A test clock without subscriptions cannot be advanced more than two years at a time.")
	}
	if limit, ok := e.advanceLimit(id, cur); ok && to > limit {
		return nil, invalid("", "frozen_time", "The frozen time cannot be more than two intervals of the shortest subscription on this test clock in the future (at most %d).", limit)
	}
	obj["status"] = "advancing"
	e.store(kClock, obj)
	e.emit(c, "test_helpers.test_clock.advancing", obj, nil)
	// Everything due over the advanced time happens now, in time order,
	// so the clock is ready at once.
	e.advanceBilling(c, id, cur, to)
	obj["frozen_time"], obj["status"] = to, "ready"
	r := e.store(kClock, obj)
	e.emit(c, "test_helpers.test_clock.ready", obj, nil)
	c.result = obj
	return e.render(kClock, r.raw, c)
}

func (e *Emulator) clockHasSubscriptions(clock string) bool {
	return len(e.tables["subscriptions"].withKey("test_clock", clock)) > 0
}

// advanceLimit is the latest time clock may be advanced to from cur: "Cannot
// be more than two intervals in the future from the shortest subscription
// in this test clock" (spec, advance's frozen_time). Only subscriptions
// that still renew count (advanceBilling): without the limit, an advance
// of a clock with a daily price to a far frozen_time would renew it once
// a day of the span, under the emulator's lock, for minutes or hours.
// false when no such subscription is on the clock.
func (e *Emulator) advanceLimit(clock string, cur int64) (int64, bool) {
	var limit int64
	found := false
	for id := range e.billedOnClock(clock) {
		price := e.subscriptionPrice(id)
		if price == nil {
			continue
		}
		if l := periodEnd(periodEnd(cur, price), price); !found || l < limit {
			limit, found = l, true
		}
	}
	return limit, found
}

// billedOnClock yields the subscriptions on clock that an advance still
// bills (active, trialing, past_due, unpaid), by id, in creation order:
// canceled and incomplete_expired are over, and an incomplete one does
// not renew (it expires: expireIncomplete).
func (e *Emulator) billedOnClock(clock string) iter.Seq2[string, *record] {
	return e.subsOnClock(clock, "active", "trialing", "past_due", "unpaid")
}

// subsOnClock yields the records of the subscriptions on clock in one of
// statuses, by id, in creation order. Their keys hold what a step reads
// (kSub.keyFunc): an advance asks at each step for every subscription on
// the clock, and decoding them all made most of its work.
func (e *Emulator) subsOnClock(clock string, statuses ...string) iter.Seq2[string, *record] {
	return func(yield func(string, *record) bool) {
		t := e.tables["subscriptions"]
		for _, r := range t.withKey("test_clock", clock) {
			if st, _ := t.keyOf(r, "_status"); !slices.Contains(statuses, st) {
				continue
			}
			if !yield(r.id, r) {
				return
			}
		}
	}
}

// dunnedInvoices yields the open invoices of subscription sid that are
// retried on a schedule, with their next attempt: the index of the
// invoices' _dunning key holds those and no other, so none is decoded.
func (e *Emulator) dunnedInvoices(sid string) iter.Seq2[string, int64] {
	return e.tables["invoices"].timesWithKey("_dunning", sid, "_next_attempt")
}

// deleteClock deletes the clock and its customers ("Finishing a simulation
// deletes all objects associated with it, including the customer and
// subscription", Stripe's docs). Here a customer goes as with
// DELETE /v1/customers/{id}: its subscriptions are canceled, with their
// events.
func deleteClock(e *Emulator, c *reqCtx) (any, *apiError) {
	id := c.path["test_clock"]
	obj := e.load(kClock, id)
	if obj == nil {
		return nil, notFound("test_clock", "test clock", id)
	}
	t := e.tables["customers"]
	var custs []string
	for _, r := range t.ordered {
		if v, _ := t.keyOf(r, "test_clock"); v == id {
			custs = append(custs, r.id)
		}
	}
	for _, cus := range custs {
		if co := e.load(kCustomer, cus); co != nil {
			e.removeCustomer(c, co)
		}
	}
	return e.deleteObject(c, kClock, obj), nil
}

// Steps of an advance, in the order they are taken at one moment: a
// pending update expiring first (pending.go); then a schedule's phase
// boundary, so that a renewal at the same moment
// bills the phase just entered (and a schedule ending with end_behavior
// cancel leaves nothing to renew); then trial_will_end; then cancel_at,
// which wins over a renewal at the same moment (cancel_at_period_end
// ends the period, no renewal invoice); then a send_invoice invoice
// falling overdue; then an incomplete subscription expiring; then a
// failed renewal's retry, before a renewal at the same moment bills the
// next period (a retry's id is the invoice's); then the renewal.
const (
	// A pending update expires first: before a schedule's phase change
	// would discard it, and at its subscription's period end (its latest
	// expires_at), before the renewal.
	stepPendingExpire = iota
	stepPhase
	stepTrialWillEnd
	stepCancel
	stepOverdue
	stepExpire
	stepRetry
	stepRenew
)

// trialWarning is how long before trial_end Stripe sends
// customer.subscription.trial_will_end ("Occurs three days before a
// subscription's trial period is scheduled to end", spec, event types).
const trialWarning = 3 * 86400

// billingStep is one thing due at a moment on a clock: a schedule's phase
// boundary or something of a subscription.
type billingStep struct {
	at   int64
	kind int
	id   string
}

// advanceBilling does, in time order, what falls due on clock's objects
// over (from, to]: each step at its own moment (objects it creates or
// changes take that time), as Stripe's test clocks do ("When the test
// clock runs, the Subscription and Invoice objects will behave as if time
// has actually passed, changing states and triggering webhooks", Stripe's
// blog, "Test clocks: How we made it easier to test Stripe Billing
// integrations"). The steps' events carry no request: no API request
// made them, as with Stripe's automatic events. They are dated on the
// emulator's clock, like every event of a clock's objects: on the clock's
// time, an advance of a clock frozen in the past would emit events
// already past the events list's 30-day retention, and one in the future
// would sort ahead of every event made after it.
func (e *Emulator) advanceBilling(c *reqCtx, clock string, from, to int64) {
	var schedules []string
	for _, r := range e.tables["subscription_schedules"].ordered {
		if obj, err := decodeObject(r.raw); err == nil && getStr(obj, "test_clock") == clock {
			schedules = append(schedules, r.id)
		}
	}
	// A step that changed nothing would be found again: taken once only,
	// whatever it did.
	done := map[billingStep]bool{}
	for {
		st, ok := e.nextBillingStep(clock, schedules, from, to, done)
		if !ok {
			return
		}
		done[st] = true
		sc := *c
		sc.now, sc.wall = st.at, c.wallTime()
		sc.requestID, sc.idemKey, sc.params = "", "", map[string]any{}
		sc.automatic = true
		switch st.kind {
		case stepPhase:
			e.advanceSchedule(&sc, st.id, st.at)
			continue
		case stepRetry:
			if inv := e.load(kInvoice, st.id); inv != nil {
				e.retryInvoice(&sc, inv)
			}
			continue
		}
		sub := e.load(kSub, st.id)
		switch st.kind {
		case stepTrialWillEnd:
			e.emit(&sc, "customer.subscription.trial_will_end", sub, nil)
		case stepCancel:
			e.endAtCancelAt(&sc, sub)
		case stepOverdue:
			e.fallOverdue(&sc, sub)
		case stepExpire:
			e.expireIncomplete(&sc, sub)
		case stepPendingExpire:
			e.discardPending(&sc, sub, "customer.subscription.pending_update_expired")
		case stepRenew:
			e.renewSubscription(&sc, sub)
		}
	}
}

// nextBillingStep is the earliest step due on or before to that has not
// been taken (ties: by kind, then schedules and subscriptions in creation
// order); false when none is left.
func (e *Emulator) nextBillingStep(clock string, schedules []string, from, to int64, done map[billingStep]bool) (billingStep, bool) {
	var best billingStep
	found := false
	consider := func(st billingStep) {
		if st.at > to || done[st] {
			return
		}
		if !found || st.at < best.at || st.at == best.at && st.kind < best.kind {
			best, found = st, true
		}
	}
	for _, id := range schedules {
		if obj := e.load(kSchedule, id); obj != nil {
			if at, ok := scheduleBoundary(obj); ok {
				consider(billingStep{at, stepPhase, id})
			}
		}
	}
	subs := e.tables["subscriptions"]
	for id, r := range e.billedOnClock(clock) {
		// _trial_end is kept while trialing only, _cancel_at when
		// positive only (kSub.keyFunc).
		if te, ok := subs.timeKey(r, "_trial_end"); ok && te-trialWarning > from {
			consider(billingStep{te - trialWarning, stepTrialWillEnd, id})
		}
		if ca, ok := subs.timeKey(r, "_cancel_at"); ok {
			consider(billingStep{ca, stepCancel, id})
		}
		status, _ := subs.keyOf(r, "_status")
		method, _ := subs.keyOf(r, "collection_method")
		latest, _ := subs.keyOf(r, "_latest_invoice")
		if due, ok := e.overdueAt(status, method, latest); ok {
			// Overdue before this advance (a subscription back on
			// send_invoice with its latest invoice already past due):
			// at the advance's first moment, not in the clock's past.
			consider(billingStep{max(due, from), stepOverdue, id})
		}
		for inv, at := range e.dunnedInvoices(id) {
			consider(billingStep{at, stepRetry, inv})
		}
		end, _ := subs.timeKey(r, "_period_end")
		consider(billingStep{end, stepRenew, id})
	}
	// A record's created is its object's, which never changes.
	for id, r := range e.subsOnClock(clock, "incomplete") {
		consider(billingStep{r.created + incompleteExpiry, stepExpire, id})
	}
	// Of any status: an update left pending on a subscription canceled
	// meanwhile still expires, its invoice voided.
	for id, at := range e.pendingExpiries(clock) {
		consider(billingStep{at, stepPendingExpire, id})
	}
	return best, found
}

// scheduleBoundary is when a schedule next moves: a not_started one
// starts at its first phase's start_date, an active one leaves its
// current phase at that phase's end_date (advanceSchedule).
func scheduleBoundary(obj map[string]any) (int64, bool) {
	phases, _ := obj["phases"].([]any)
	if len(phases) == 0 {
		return 0, false
	}
	switch getStr(obj, "status") {
	case "not_started":
		return getInt(phases[0].(map[string]any), "start_date"), true
	case "active":
		cp, _ := obj["current_phase"].(map[string]any)
		if cp == nil {
			return 0, false
		}
		if cur := phaseAt(phases, getInt(cp, "start_date")); cur >= 0 {
			return getInt(phases[cur].(map[string]any), "end_date"), true
		}
	}
	return 0, false
}

// renewSubscription moves sub into its next period at its
// current_period_end (c.now), as Stripe does when a period ends or a trial
// is over (a trialing subscription "moves to active when the trial period
// is over", spec, subscription.status): the draft renewal invoice
// (billing_reason subscription_cycle, the new period's lines with the
// discounts and tax rates of the first invoice's machinery, the invoice's
// own period the one that ended) with invoice.created, then the
// subscription's new period with customer.subscription.updated — the
// order of Stripe's "What events can I see when a subscription is
// renewed?" (support.stripe.com): "We'll then generate an invoice.created
// event [...] there will be a customer.subscription.updated event to
// update the current_period_start and current_period_end values".
//
// Stripe then leaves the invoice a draft "one hour after creation" (spec,
// invoice: "Stripe waits until one hour after the last webhook was
// successfully sent [...] If you [...] have no webhooks configured,
// Stripe waits one hour after creation to finalize the invoice"). Here it
// is finalized at once: the emulator has no webhook endpoints and no
// background time of its own, and a draft left waiting would finalize
// only at some later advance, an hour of clock time that tests would have
// to remember to add. Finalizing is the same step an hour early (the
// invoice's finalized_at is the renewal moment).
//
// charge_automatically: paid with the subscription's payment method; a
// declining one, or none, leaves the invoice open (invoice.payment_failed)
// and the subscription past_due, as the spec's subscription.status says
// ("past_due when payment is required but cannot be paid"), and the
// invoice is retried on the schedule (invoicePaymentFailed, stepRetry)
// until it is paid or the retries end (retriesExhausted). send_invoice:
// open, due days_until_due after the renewal; the subscription turns
// past_due when the clock passes the due date unpaid (stepOverdue).
//
// The new period ends on the billing cycle of the subscription's
// billing_cycle_anchor (cycleEnd), not a month after the renewal: after
// a period ending on February 29 of an anchor on the 31st, March 31.
func (e *Emulator) renewSubscription(c *reqCtx, sub map[string]any) {
	sid := idOf(sub)
	price := e.subscriptionPrice(sid)
	at := getInt(sub, "current_period_end")
	end := cycleEnd(at, anchorOf(sub), price)
	if price == nil || end <= at {
		return // no item, or a period of no length: nothing to renew
	}
	old := deepCopy(sub).(map[string]any)
	prevStart := getInt(sub, "current_period_start")
	sub["current_period_start"], sub["current_period_end"] = at, end
	if getStr(sub, "status") == "trialing" {
		sub["status"] = "active"
	}
	inv := e.draftSubscriptionInvoice(c, sub, "subscription_cycle", prevStart, at, true)
	sub["latest_invoice"] = idOf(inv)
	e.save(c, kSub, sub, old, "customer.subscription.updated")
	inv, _ = e.finalizeInvoice(c, inv)
	if getStr(inv, "status") != "open" || inv["collection_method"] != "charge_automatically" {
		return
	}
	if pm := e.subscriptionPaymentMethod(sub); pm != "" {
		inv, _ = e.payInvoice(c, inv, pm)
	} else {
		// No payment method: the attempt fails as a declined one would,
		// without a charge.
		e.invoicePaymentFailed(c, inv, deepCopy(inv).(map[string]any))
	}
	if getStr(inv, "status") == "paid" {
		return
	}
	// Reloaded: finalizing may have ended a once coupon on it.
	sub = e.load(kSub, sid)
	so := deepCopy(sub).(map[string]any)
	sub["status"] = "past_due"
	e.save(c, kSub, sub, so, "customer.subscription.updated")
}

// anchorOf is sub's billing_cycle_anchor, which its period ends keep to
// (cycleEnd).
func anchorOf(sub map[string]any) int64 {
	if a, ok := toInt(sub["billing_cycle_anchor"]); ok && a > 0 {
		return a
	}
	return getInt(sub, "current_period_start")
}

// subscriptionPrice is the price of a subscription's first item, whose
// interval sets its periods (as at creation), or nil with no item.
func (e *Emulator) subscriptionPrice(sid string) map[string]any {
	for _, r := range e.tables["subscription_items"].children[sid] {
		it, _ := decodeObject(r.raw)
		price, _ := it["price"].(map[string]any)
		return price
	}
	return nil
}

// endAtCancelAt cancels sub at its cancel_at (c.now), with
// customer.subscription.deleted and no invoice. canceled_at stays the
// time of the request that asked for it (spec, subscription.canceled_at:
// with cancel_at_period_end it "will reflect the time of the most recent
// update request, not the end of the subscription period when the
// subscription is automatically moved to a canceled state").
func (e *Emulator) endAtCancelAt(c *reqCtx, sub map[string]any) {
	old := deepCopy(sub).(map[string]any)
	sub["status"], sub["ended_at"] = "canceled", c.now
	if sub["canceled_at"] == nil {
		sub["canceled_at"] = c.now
	}
	cd, _ := sub["cancellation_details"].(map[string]any)
	sub["cancellation_details"] = map[string]any{"comment": cd["comment"], "feedback": cd["feedback"], "reason": "cancellation_requested"}
	e.save(c, kSub, sub, old, "customer.subscription.deleted")
	e.stopCollection(c, getStr(sub, "customer"))
}

// overdueAt is when a subscription of status and collection method
// whose latest invoice is latest falls past_due: an active send_invoice
// subscription whose latest invoice is open with a due_date, at that
// date ("If subscription collection_method=send_invoice it becomes
// past_due when its invoice is not paid by the due date", spec,
// subscription.status). Read from record keys (the subscription's, the
// invoice's _due_at), not decoded objects: a clock's advance asks at
// each step for every subscription it bills. false when it does not
// fall overdue.
func (e *Emulator) overdueAt(status, method, latest string) (int64, bool) {
	if status != "active" || method != "send_invoice" {
		return 0, false
	}
	t := e.tables["invoices"]
	r := t.byID[latest]
	if r == nil {
		return 0, false
	}
	return t.timeKey(r, "_due_at")
}

// fallOverdue makes sub past_due at c.now, its latest invoice unpaid
// past its due date (overdueAt), with customer.subscription.updated
// and no event of the invoice: 2023-10-16 has none for it (invoice.overdue
// came with 2024-09-30.acacia, sent only by custom automations), and the
// invoice itself does not change. What follows is the setting the
// emulator takes for "canceled or unpaid if it is still not paid by an
// additional deadline after that": leave it past_due (doc.go). Paying
// the latest invoice makes it active again (invoicePaid).
func (e *Emulator) fallOverdue(c *reqCtx, sub map[string]any) {
	if due, ok := e.overdueAt(getStr(sub, "status"), getStr(sub, "collection_method"), getStr(sub, "latest_invoice")); !ok || due > c.now {
		return
	}
	old := deepCopy(sub).(map[string]any)
	sub["status"] = "past_due"
	e.save(c, kSub, sub, old, "customer.subscription.updated")
}

// overdueDue makes past_due the send_invoice subscriptions off test
// clocks whose latest invoice's due_date has come on the emulator's clock
// (at the first API request or clock move on or after it, as pending
// updates expire: releaseDue), oldest due first, and returns the next
// due date still ahead (MaxInt64: none). The index holds every open
// send_invoice invoice of a subscription off clocks, so one past its
// due date whose subscription did not fall overdue (already past_due,
// or not its latest invoice) is looked at again at each later wake, but
// never wakes the emulator itself. Callers hold mu.
func (e *Emulator) overdueDue(now int64) int64 {
	t := e.tables["invoices"]
	invs, next := dueBy(t.timesWithKey("_overdue", offClock, "_due_at"), now)
	for _, inv := range invs {
		r := t.byID[inv]
		if r == nil {
			continue
		}
		sid, _ := t.keyOf(r, "subscription")
		// Its record's keys tell, without decoding it, a subscription
		// that can't fall overdue now: already past_due (it stays in the
		// index until the invoice is paid or voided), or billed since.
		if sr := e.tables["subscriptions"].byID[sid]; sr == nil || !e.mayFallOverdue(sr, inv) {
			continue
		}
		sub := e.load(kSub, sid)
		if sub == nil || getStr(sub, "latest_invoice") != inv {
			continue
		}
		e.fallOverdue(&reqCtx{now: now, live: getBool(sub, "livemode")}, sub)
	}
	return next
}

// mayFallOverdue says from subscription record r's keys whether it may
// fall overdue by invoice inv (fallOverdue decides).
func (e *Emulator) mayFallOverdue(r *record, inv string) bool {
	t := e.tables["subscriptions"]
	st, _ := t.keyOf(r, "_status")
	latest, _ := t.keyOf(r, "_latest_invoice")
	return st == "active" && latest == inv
}

// scheduleOverdue makes sure the emulator looks at an open send_invoice
// invoice off test clocks when it falls due on the emulator's clock
// (overdueDue); one on a test clock falls due when the clock passes it
// (advanceBilling).
func (e *Emulator) scheduleOverdue(r *record) {
	t := e.tables["invoices"]
	if k, _ := t.keyOf(r, "_overdue"); k != offClock {
		return
	}
	k, _ := t.keyOf(r, "_due_at")
	if at, err := strconv.ParseInt(k, 10, 64); err == nil && at < e.nextHold.Load() {
		e.nextHold.Store(at)
	}
}
