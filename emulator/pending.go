package emulator

import (
	"cmp"
	"fmt"
	"iter"
	"math"
	"reflect"
	"slices"
	"strings"
)

// payment_behavior on subscription updates that bill at once (a reset of
// the billing cycle, always_invoice: billUpdateNow). Spec, POST
// /v1/subscriptions/{id} payment_behavior:
//
//   - allow_incomplete (the default) and default_incomplete "transition
//     the subscription to status=past_due" when the invoice isn't paid:
//     billUpdateNow does that.
//   - error_if_incomplete: "if a subscription's invoice cannot be paid
//     [...] this parameter does not update the subscription and returns an
//     error instead" (402): the update runs as any other under an undo log
//     (store.go) and is taken back whole when its invoice is left unpaid —
//     items, prorations, the invoice, its payment attempt and their events
//     — before the card error is answered, as a subscription create with
//     it creates nothing (firstPaymentFails). Stripe's docs don't say
//     what becomes of that invoice and charge; nothing is kept here.
//   - pending_if_incomplete: "update the subscription using pending
//     updates" (docs.stripe.com/billing/subscriptions/pending-updates and
//     its reference page): "If payment fails, the updated values are added
//     to the pending_update hash on the Subscription object. The
//     latest_invoice for the subscription refers to an unpaid invoice in
//     an open status. The subscription will continue to cycle as if no
//     update request was made." Paying that invoice later (POST
//     /v1/invoices/{id}/pay, a retry with a new card) applies the changes
//     (customer.subscription.pending_update_applied); voiding it cancels
//     them; past its expires_at the invoice is voided and the update
//     discarded (customer.subscription.pending_update_expired), and so
//     when a schedule moves the subscription to a new phase. Only the
//     parameters the reference lists are accepted with it.
//
// The refusals below are the emulator's wording: Stripe documents the
// rules, not its answers.

// pendingParams are the parameters of POST /v1/subscriptions/{id} that
// pending updates support ("Supported attributes", pending updates
// reference), and pendingItemParams those of each items[]: a price and a
// quantity of an item named by id, or of a new one.
var (
	pendingParams = []string{"expand", "payment_behavior", "proration_behavior", "proration_date", "billing_cycle_anchor", "items",
		"trial_end", "trial_from_plan", "add_invoice_items"}
	pendingItemParams = []string{"id", "price", "quantity"}
)

// pendingUpdateExpiry is the longest a pending update waits for its
// invoice to be paid: "If these times are greater than 23 hours from the
// time the update is made, the expired_at time is calculated to 23 hours
// after the update call was made" (pending updates reference).
const pendingUpdateExpiry = 23 * 3600

// pendingOnly refuses a parameter that pending updates don't support.
func pendingOnly(params map[string]any) *apiError {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first in order, the same on every run
	refuse := func(param string) *apiError {
		return invalid("", param, "`%s` can't be used with payment_behavior=pending_if_incomplete: pending updates support only %s, and items[][id], [price] and [quantity].",
			param, strings.Join(pendingParams, ", "))
	}
	for _, k := range keys {
		if !slices.Contains(pendingParams, k) {
			return refuse(k)
		}
	}
	items, _ := params["items"].([]any)
	for i, raw := range items {
		it, _ := raw.(map[string]any)
		keys = keys[:0]
		for k := range it {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !slices.Contains(pendingItemParams, k) {
				return refuse(fmt.Sprintf("items[%d][%s]", i, k))
			}
		}
	}
	return nil
}

// pendingOf is sub's pending update, or nil.
func pendingOf(sub map[string]any) map[string]any {
	pu, _ := sub["pending_update"].(map[string]any)
	return pu
}

// whilePending refuses a change of the items or the billing of sub while
// a pending update waits (other than a new pending update, which
// replaces it): which would win once the pending one is paid, Stripe's
// docs don't say.
func whilePending(sub map[string]any) *apiError {
	if pendingOf(sub) == nil {
		return nil
	}
	return invalid("", "", "The emulator does not model changing the items or billing of a subscription with a pending update: it is refused rather than guessed (pay or void its latest invoice %s first, or send the change with payment_behavior=pending_if_incomplete).",
		getStr(sub, "latest_invoice"))
}

// updatePaymentError is the card error of an update's invoice that could
// not be charged to sub's payment method: none, or a declining one. The
// charge was taken back (error_if_incomplete), so the error names none.
func (e *Emulator) updatePaymentError(sub map[string]any) *apiError {
	if ae := e.chargeError(sub); ae != nil {
		return ae
	}
	return genericDecline.err("")
}

// beginUndo starts recording every change to the tables (undoLog).
func (e *Emulator) beginUndo() *undoLog {
	l := &undoLog{seq: e.seq}
	for _, t := range e.tables {
		t.undo = l
	}
	return l
}

// endUndo stops recording.
func (e *Emulator) endUndo() {
	for _, t := range e.tables {
		t.undo = nil
	}
}

// undoAll takes back everything recorded in l.
func (e *Emulator) undoAll(l *undoLog) {
	e.endUndo()
	l.rollback(nil)
	e.seq = l.seq
}

// updateSubscription is POST /v1/subscriptions/{id}: changeSubscription
// under the request's payment_behavior (see above).
func updateSubscription(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
	if ae := e.checkDefaultSource(c, getStr(old, "customer")); ae != nil {
		return ae
	}
	if ae := e.checkParamPM(c, getStr(old, "customer")); ae != nil {
		return ae
	}
	pb, _ := c.params["payment_behavior"].(string)
	if st := getStr(old, "status"); st == "canceled" || st == "incomplete_expired" {
		return changeSubscription(e, c, obj, old)
	}
	if pb == "pending_if_incomplete" {
		if ae := pendingOnly(c.params); ae != nil {
			return ae
		}
		// "Pending updates aren't supported when the subscription's
		// collection_method is send_invoice" (pending updates).
		if getStr(old, "collection_method") == "send_invoice" {
			return invalid("", "payment_behavior", "payment_behavior=pending_if_incomplete can't be used with a subscription whose collection_method is send_invoice.")
		}
	} else if c.params["items"] != nil || c.params["billing_cycle_anchor"] != nil || c.params["trial_end"] != nil {
		if ae := whilePending(old); ae != nil {
			return ae
		}
	}
	if pb != "error_if_incomplete" && pb != "pending_if_incomplete" {
		return changeSubscription(e, c, obj, old)
	}
	sid := idOf(obj)
	l := e.beginUndo()
	defer e.endUndo()
	if pb == "pending_if_incomplete" && pendingOf(old) != nil {
		// "This updates values in the pending_update hash, voids the
		// invoice associated with the previous pending update, and
		// creates a new invoice to reflect the updated values" (pending
		// updates, "Cancel or change pending updates").
		if inv := e.load(kInvoice, getStr(old, "latest_invoice")); inv != nil && payable(inv) {
			e.voidInvoice(c, inv)
		}
		obj["pending_update"] = nil
	}
	if ae := changeSubscription(e, c, obj, old); ae != nil {
		e.undoAll(l) // refused: nothing it did stays
		return ae
	}
	if e.unpaidUpdateInvoice(getStr(old, "latest_invoice"), obj) == nil {
		// Nothing billed, or paid: the update stands (and replaced a
		// pending one, if any).
		return nil
	}
	if pb == "error_if_incomplete" {
		e.undoAll(l)
		return e.updatePaymentError(obj)
	}
	// pending_if_incomplete: the items go back as they were and the
	// subscription keeps its cycle and status; what the update would set
	// waits in pending_update, the invoice (and what it billed) stays.
	// So do the invoice's events, but not those of the subscription sent
	// while it was stored with the update applied (billUpdateNow: the
	// once coupon the invoice used up): they would show the update
	// applied. The request's own event below carries what changed.
	after := e.subItems(sid)
	e.endUndo()
	l.rollback(func(s undoStep) bool {
		return s.t.name == "subscription_items" || s.t.name == "events" && s.prev == nil && e.eventOf(s.t.byID[s.id], sid)
	})
	var changed []any
	for _, it := range after {
		if prev := e.load(kSubItem, idOf(it)); prev == nil || !reflect.DeepEqual(normalize(prev), normalize(it)) {
			changed = append(changed, it)
		}
	}
	pu := map[string]any{"billing_cycle_anchor": nil, "expires_at": pendingExpiry(c.now, old),
		"subscription_items": changed, "trial_end": nil, "trial_from_plan": nil}
	if a := getInt(obj, "billing_cycle_anchor"); a != getInt(old, "billing_cycle_anchor") {
		pu["billing_cycle_anchor"] = a // the cycle the update resets
	}
	if c.params["trial_end"] != nil {
		// As the update set it: trial_end=now is the request's time.
		pu["trial_end"] = obj["trial_end"]
	}
	if tp, ok := c.params["trial_from_plan"].(bool); ok {
		pu["trial_from_plan"] = tp
	}
	latest, discount := obj["latest_invoice"], obj["discount"]
	for k := range obj {
		if _, ok := old[k]; !ok {
			delete(obj, k)
		}
	}
	for k, v := range old {
		obj[k] = deepCopy(v)
	}
	// The discount as billing the invoice left it (a once coupon it used
	// is gone).
	obj["latest_invoice"], obj["discount"], obj["pending_update"] = latest, discount, pu
	if prev := getStr(old, "latest_invoice"); prev != "" {
		// Once voided, the update's invoice stays the latest though it
		// never billed the subscription: paying prev settles it
		// (invoicePaid).
		e.prePending[getStr(obj, "latest_invoice")] = prev
	}
	e.schedulePending(obj)
	return nil
}

// eventOf says whether r, a stored event, is one of object id.
func (e *Emulator) eventOf(r *record, id string) bool {
	if r == nil {
		return false
	}
	ev, err := decodeObject(r.raw)
	if err != nil {
		return false
	}
	data, _ := ev["data"].(map[string]any)
	obj, _ := data["object"].(map[string]any)
	return idOf(obj) == id
}

// pendingExpiry is when a pending update made at now of sub expires: "the
// first occurrence of either the trial end or the earliest items.current
// period end [...] if either time is within 23 hours of the update
// request. Otherwise, the expiration is 23 hours from the update
// request" (pending updates).
func pendingExpiry(now int64, sub map[string]any) int64 {
	at := now + pendingUpdateExpiry
	if end := getInt(sub, "current_period_end"); end > now {
		at = min(at, end)
	}
	if te := getInt(sub, "trial_end"); te > now && getStr(sub, "status") == "trialing" {
		at = min(at, te)
	}
	return at
}

// offClock is the _pending key of a subscription off test clocks.
const offClock = "~"

// pendingExpiries yields the subscriptions of clock (offClock: none) with
// a pending update, and when each expires.
func (e *Emulator) pendingExpiries(clock string) iter.Seq2[string, int64] {
	return e.tables["subscriptions"].timesWithKey("_pending", clock, "_pending_at")
}

// schedulePending makes sure the emulator looks at sub's pending update
// when it expires on the emulator's clock (releaseDue); one on a test
// clock expires when the clock passes it (advanceBilling).
func (e *Emulator) schedulePending(sub map[string]any) {
	pu := pendingOf(sub)
	if pu == nil || getStr(sub, "test_clock") != "" {
		return
	}
	if at := getInt(pu, "expires_at"); at < e.nextHold.Load() {
		e.nextHold.Store(at)
	}
}

// applyPending applies the pending update of sub, whose invoice inv was
// just paid: "A successful payment immediately applies the changes in the
// pending_update hash" (pending updates). Its items are stored as the
// update made them, and a reset cycle starts at the anchor it recorded.
// A subscription that ended meanwhile keeps its update pending until it
// expires.
func (e *Emulator) applyPending(c *reqCtx, inv map[string]any) {
	sub := e.load(kSub, getStr(inv, "subscription"))
	pu := pendingOf(sub)
	if pu == nil || getStr(sub, "latest_invoice") != idOf(inv) {
		return
	}
	switch getStr(sub, "status") {
	case "canceled", "incomplete_expired":
		return
	}
	old := deepCopy(sub).(map[string]any)
	sid := idOf(sub)
	items, _ := pu["subscription_items"].([]any)
	for _, raw := range items {
		if it, ok := raw.(map[string]any); ok {
			e.store(kSubItem, deepCopy(it).(map[string]any))
		}
	}
	sub["items"] = e.childList(kSubItem, sid, "/v1/subscription_items?subscription="+sid)
	if a, ok := toInt(pu["billing_cycle_anchor"]); ok && a > 0 {
		sub["billing_cycle_anchor"], sub["current_period_start"] = a, a
		sub["current_period_end"] = periodEnd(a, e.subscriptionPrice(sid))
		if getBool(sub, "cancel_at_period_end") {
			sub["cancel_at"] = sub["current_period_end"]
		}
	}
	if te, ok := toInt(pu["trial_end"]); ok {
		sub["trial_end"] = te
		// A trial the update ended (trial_end=now, trials.go) is over
		// once its invoice is paid; a trial it moved goes on.
		if te <= getInt(sub, "current_period_start") && getStr(sub, "status") == "trialing" {
			sub["status"] = "active"
		}
	}
	sub["pending_update"] = nil
	e.save(c, kSub, sub, old, "customer.subscription.pending_update_applied")
}

// discardPending ends the pending update of sub: its invoice voided if it
// is still open ("Stripe voids the invoice and discards the update"),
// then the subscription without it, with event typ:
// customer.subscription.pending_update_expired when it expires or a
// schedule's phase change discards it ("Receive notifications when
// pending updates expire or are automatically voided"),
// customer.subscription.updated when its invoice was voided by a
// request ("To cancel a pending update, you need to void the invoice the
// update created").
func (e *Emulator) discardPending(c *reqCtx, sub map[string]any, typ string) {
	if pendingOf(sub) == nil {
		return
	}
	if inv := e.load(kInvoice, getStr(sub, "latest_invoice")); inv != nil && payable(inv) {
		e.voidInvoice(c, inv)
	}
	old := deepCopy(sub).(map[string]any)
	sub["pending_update"] = nil
	// The voided invoice no longer counts as the latest (invoicePaid):
	// when the one before it was paid meanwhile, while the update waited,
	// the subscription is settled now, as it would be had that payment
	// come after the void.
	if getStr(sub, "status") == "past_due" {
		if prev := e.latestBeforeVoidPending(sub); prev != "" {
			if inv := e.load(kInvoice, prev); inv != nil && getStr(inv, "status") == "paid" {
				sub["status"] = "active"
			}
		}
	}
	e.save(c, kSub, sub, old, typ)
}

// voidedPending follows a request's void of inv: when inv was the invoice
// of its subscription's pending update, the update is canceled.
func (e *Emulator) voidedPending(c *reqCtx, inv map[string]any) {
	sub := e.load(kSub, getStr(inv, "subscription"))
	if sub != nil && pendingOf(sub) != nil && getStr(sub, "latest_invoice") == idOf(inv) {
		e.discardPending(c, sub, "customer.subscription.updated")
	}
}

// expirePendingDue expires the pending updates of subscriptions off test
// clocks whose expires_at has come on the emulator's clock (at the first
// API request or clock move on or after it, as authorizations expire:
// releaseDue) and returns the next expiry (MaxInt64: none). Callers hold
// mu.
func (e *Emulator) expirePendingDue(now int64) int64 {
	ids, next := dueBy(e.pendingExpiries(offClock), now)
	for _, id := range ids {
		if sub := e.load(kSub, id); sub != nil {
			e.discardPending(&reqCtx{now: now, live: getBool(sub, "livemode")}, sub, "customer.subscription.pending_update_expired")
		}
	}
	return next
}

// dueBy splits times (id → unix time) at now: the ids due by now, oldest
// first and by id within a second (a run is the same each time), and the
// earliest time still ahead (MaxInt64: none).
func dueBy(times iter.Seq2[string, int64], now int64) (ids []string, next int64) {
	type due struct {
		id string
		at int64
	}
	var ds []due
	next = math.MaxInt64
	for id, at := range times {
		if at <= now {
			ds = append(ds, due{id, at})
		} else {
			next = min(next, at)
		}
	}
	slices.SortFunc(ds, func(a, b due) int { return cmp.Or(cmp.Compare(a.at, b.at), strings.Compare(a.id, b.id)) })
	ids = make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.id
	}
	return ids, next
}

// itemUpdate runs change, a change of sub's items by a subscription item
// endpoint, under the request's payment_behavior: error_if_incomplete
// takes it back whole when the invoice it bills at once is left unpaid
// (as updateSubscription does). pending_if_incomplete is not modelled on
// these endpoints (they answer the item, whose pending state Stripe's
// docs don't show) and is refused, as is any change while a pending
// update waits.
func (e *Emulator) itemUpdate(c *reqCtx, sub map[string]any, change func() (any, *apiError)) (any, *apiError) {
	if ae := whilePending(sub); ae != nil {
		return nil, ae
	}
	switch c.params["payment_behavior"] {
	case "pending_if_incomplete":
		// Stripe's own refusals of the change (mixed billing periods, …)
		// are modelled and come first: only a change Stripe would make is
		// left unguessed. Tried, then taken back whole.
		l := e.beginUndo()
		_, ae := change()
		e.undoAll(l)
		if ae != nil {
			return nil, ae
		}
		return nil, invalid("", "payment_behavior", "The emulator does not model payment_behavior=pending_if_incomplete on the subscription item endpoints: it is refused rather than guessed (send the change to POST /v1/subscriptions/%s with items[]).", idOf(sub))
	case "error_if_incomplete":
	default:
		return change()
	}
	prev := getStr(sub, "latest_invoice")
	l := e.beginUndo()
	defer e.endUndo()
	res, ae := change()
	if ae != nil {
		e.undoAll(l)
		return nil, ae
	}
	cur := e.load(kSub, idOf(sub))
	if e.unpaidUpdateInvoice(prev, cur) != nil {
		e.undoAll(l)
		return nil, e.updatePaymentError(cur)
	}
	return res, nil
}

// unpaidUpdateInvoice is the invoice a change of sub billed at once and
// could not charge: sub's latest invoice when it is not prev (the latest
// before the change) and is still open and charged automatically; else
// nil.
func (e *Emulator) unpaidUpdateInvoice(prev string, sub map[string]any) map[string]any {
	id := getStr(sub, "latest_invoice")
	if id == prev {
		return nil
	}
	if inv := e.load(kInvoice, id); inv != nil && getStr(inv, "status") == "open" && getStr(inv, "collection_method") == "charge_automatically" {
		return inv
	}
	return nil
}
