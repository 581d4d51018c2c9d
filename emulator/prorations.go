package emulator

import (
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Prorations of subscription changes (Stripe's docs, "Prorations",
// docs.stripe.com/billing/subscriptions/prorations): changing an item's
// price or quantity, adding or removing an item mid-period credits the
// unused time on what the item billed and debits the remaining time on
// what it bills now, as pending invoice items with proration true that
// the next invoice of the subscription picks up. "Stripe calculates
// proration down to the second based on the starting timestamp of the
// billing period and the timestamp of the proration's triggering event"
// (docs.stripe.com/billing/scripts/prorations); the trigger is the
// request's time, or proration_date when given (spec, POST
// /v1/subscriptions/{id}: "the proration will be calculated as though the
// subscription was updated at the given time").
//
// proration_behavior (spec): create_prorations (the default) leaves the
// items pending; always_invoice "Always invoice immediately for
// prorations": a subscription_update invoice of them, finalized and paid
// at once as a first invoice is; none creates nothing.

// itemChange is one subscription item as it billed before a change and as
// it bills after it: before is nil for an added item, after for a
// removed one.
type itemChange struct {
	before, after map[string]any
}

// proration is what a request asks for: how, and at what time.
type proration struct {
	behavior string
	at       int64
	ctx      *reqCtx // on the subscription's clock, if it has one
	// anchor is the request's billing_cycle_anchor ("now", "unchanged",
	// or "" when not sent); reset is set by checkReset when the change
	// resets the billing cycle.
	anchor string
	reset  bool
}

// prorationOf reads proration_behavior and proration_date for a change of
// sub, refusing (before anything is stored) a proration_date outside the
// current period, which could prorate no time of it. Stripe documents no
// such answer; the message is the emulator's.
func (e *Emulator) prorationOf(c *reqCtx, sub map[string]any) (proration, *apiError) {
	sc := *c
	sc.now, sc.wall = e.scheduleNow(c, sub), c.wallTime()
	p := proration{behavior: strOr(c.params["proration_behavior"], "create_prorations"), at: sc.now, ctx: &sc,
		anchor: strOr(c.params["billing_cycle_anchor"], "")}
	if v, ok := c.params["proration_date"]; ok {
		at, _ := toInt(v)
		start, end := getInt(sub, "current_period_start"), getInt(sub, "current_period_end")
		if at < start || at > end {
			return p, invalid("", "proration_date", "The proration date must be within the subscription's current period (%d to %d).", start, end)
		}
		p.at = at
	}
	return p, nil
}

// Resetting the billing cycle (Stripe's docs, "Change the price of
// existing subscriptions", docs.stripe.com/billing/subscriptions/change-price,
// "Billing periods": "If both prices have the same billing periods
// (combination of interval and interval_count), the subscription retains
// the same billing dates. If the prices have different billing periods,
// the new price is billed at the new interval, starting on the day of the
// change"; "Handle zero-amount prices and quantities": "changing the price
// to a non-zero amount generates an invoice and resets the billing period
// to the date of the change", and "If all prices are zero-amount, adding
// one or more paid prices immediately resets the billing period",
// docs.stripe.com/billing/subscriptions/billing-cycle; "Immediate
// payment": "Stripe immediately attempts payment when a subscription's
// billing cycle anchor is reset [...] When billing is performed
// immediately, but the required payment fails, the subscription change
// request succeeds and the subscription transitions to past_due"). An
// update with billing_cycle_anchor=now does the same ("This sets the
// billing cycle anchor to the time of the update request. After you reset
// the billing cycle anchor, Stripe immediately sends an invoice. Enable
// proration to credit the customer for any days already paid in the
// previous period", billing-cycle, "Reset the billing period to the
// current time"); billing_cycle_anchor=unchanged keeps the cycle of a
// free subscription becoming paid ("unchanged will force the anchor to
// not change when it otherwise would, like if you go from an unpaid
// subscription to a paid one", a Stripe engineer quoted in
// stripe/stripe-dotnet#351).
//
// The subscription's billing period is its first item's price's, as
// everywhere in the emulator (subscriptionPrice). A reset credits the
// unused time of every item as it billed before (proration items, unless
// proration_behavior=none), starts a period at the change on the new
// billing cycle, and bills it at once: a subscription_update invoice of
// the items in full for the new period and the pending invoice items (the
// credits among them), finalized and charged as a first invoice is; a
// charge that fails leaves the subscription past_due, and so does
// payment_behavior=default_incomplete ("transition the subscription to
// status=past_due when payment is required and await explicit
// confirmation", spec). A subscription that bills nothing now (trialing,
// incomplete) keeps its cycle, as it makes no prorations. Not modelled,
// and refused with 400 rather than guessed, Stripe's docs being silent:
// billing_cycle_anchor=now on such a subscription, and
// billing_cycle_anchor=unchanged with a change of billing period.

// billingPeriod names the billing period of price: its interval and
// interval_count.
func billingPeriod(price map[string]any) string {
	rec, _ := price["recurring"].(map[string]any)
	return fmt.Sprintf("%s/%d", strOr(rec["interval"], "month"), intOr(rec["interval_count"], 1))
}

// itemPrice is the price of subscription item it.
func itemPrice(it map[string]any) map[string]any {
	p, _ := it["price"].(map[string]any)
	return p
}

// allFree says whether every one of items has a zero-amount price (a
// zero quantity of a paid price does not make it free: "changing the
// quantity to a non-zero amount doesn't generate an invoice or reset the
// billing period", change-price).
func allFree(items []map[string]any) bool {
	for _, it := range items {
		if priceUnit(itemPrice(it)).Sign() != 0 {
			return false
		}
	}
	return true
}

// subItems lists subscription sid's items in their order.
func (e *Emulator) subItems(sid string) []map[string]any {
	var out []map[string]any
	for _, r := range e.tables["subscription_items"].children[sid] {
		if it, err := decodeObject(r.raw); err == nil {
			out = append(out, it)
		}
	}
	return out
}

// itemsAfter lists the items subscription sid will have once put (new
// or updated items) are stored and del removed, in the order they will
// be in: nothing is stored yet.
func (e *Emulator) itemsAfter(sid string, put []map[string]any, del []string) []map[string]any {
	byID := map[string]map[string]any{}
	for _, it := range put {
		byID[idOf(it)] = it
	}
	var out []map[string]any
	for _, it := range e.subItems(sid) {
		if slices.Contains(del, idOf(it)) {
			continue
		}
		if u := byID[idOf(it)]; u != nil {
			it = u
			delete(byID, idOf(it))
		}
		out = append(out, it)
	}
	for _, it := range put {
		if byID[idOf(it)] != nil {
			out = append(out, it) // a new item, stored after the others
		}
	}
	return out
}

// checkReset decides, before anything is stored, whether changing sub's
// items from before to after (and the request's billing_cycle_anchor)
// resets its billing cycle, and refuses what is not modelled.
func (p *proration) checkReset(sub map[string]any, before, after []map[string]any) *apiError {
	billing := false
	switch getStr(sub, "status") {
	case "active", "past_due", "unpaid":
		billing = true
	}
	newPeriod := len(before) > 0 && len(after) > 0 && billingPeriod(itemPrice(before[0])) != billingPeriod(itemPrice(after[0]))
	// "The subscription moves from free to paid, or paid to free" (spec,
	// POST /v1/subscriptions/{id}).
	paidNow := len(before) > 0 && len(after) > 0 && allFree(before) != allFree(after)
	switch {
	case len(after) == 0:
		// A subscription without items has no price to renew on: its
		// period would end and never move on. Stripe's docs don't say
		// what removing the last item answers ("Removing a subscription
		// item from a subscription will not cancel the subscription",
		// DELETE /v1/subscription_items/{item}).
		return invalid("", "", "The emulator does not model a subscription without items: removing its last item is refused rather than guessed (cancel the subscription instead).")
	case p.anchor == "now" && !billing:
		return invalid("", "billing_cycle_anchor", "The emulator does not model billing_cycle_anchor=now on a %s subscription: it is refused rather than guessed.", getStr(sub, "status"))
	case p.anchor == "unchanged" && billing && newPeriod:
		return invalid("", "billing_cycle_anchor", "The emulator does not model billing_cycle_anchor=unchanged with a change of billing period (%s to %s): it is refused rather than guessed.",
			billingPeriod(itemPrice(before[0])), billingPeriod(itemPrice(after[0])))
	}
	// A change at the period's end (a schedule's phase entered at a
	// renewal) leaves the new period to the renewal of that moment, on
	// the new price.
	inPeriod := p.at < getInt(sub, "current_period_end")
	p.reset = billing && len(after) > 0 && (p.anchor == "now" || p.anchor != "unchanged" && inPeriod && (newPeriod || paidNow))
	return nil
}

// billChange bills a change of sub's items, stored already (before: the
// items as they were; changes: what changed): a reset of the billing
// cycle when checkReset found one, else prorations. It returns the
// invoice made at once, or nil.
func (e *Emulator) billChange(p proration, sub map[string]any, before []map[string]any, changes []itemChange) map[string]any {
	if p.reset {
		return e.resetCycle(p, sub, before)
	}
	return e.prorate(p, sub, changes)
}

// resetCycle starts a new period of sub now (on its clock) and bills it
// at once (see "Resetting the billing cycle" above); before are the items
// as they billed in the period that ends early. The invoice is charged
// at once (billUpdateNow); the caller stores sub again with its event.
func (e *Emulator) resetCycle(p proration, sub map[string]any, before []map[string]any) map[string]any {
	c := p.ctx
	start, end := getInt(sub, "current_period_start"), getInt(sub, "current_period_end")
	if p.behavior != "none" && p.at < end && start < end {
		for _, it := range before {
			e.prorationItem(p, sub, it, true, start, end)
		}
	}
	sid := idOf(sub)
	sub["billing_cycle_anchor"], sub["current_period_start"] = c.now, c.now
	sub["current_period_end"] = periodEnd(c.now, e.subscriptionPrice(sid))
	if getBool(sub, "cancel_at_period_end") {
		sub["cancel_at"] = sub["current_period_end"]
	}
	inv := e.draftSubscriptionInvoice(c, sub, "subscription_update", c.now, c.now, true)
	return e.billUpdateNow(c, sub, inv)
}

// billUpdateNow finalizes inv, the draft subscription_update invoice of
// a change of sub made by a request, and charges it at once, as a reset
// of the billing cycle and always_invoice do. sub is stored, with inv
// as its latest_invoice, before inv is finalized and paid, which may end
// a once coupon of sub (consumeDiscount reads the stored subscription:
// a coupon it ended would otherwise come back when the caller stores sub)
// or activate it; discount and status are read back after, and the
// caller stores sub again with its event. A charge that fails leaves
// sub past_due, and so does payment_behavior=default_incomplete (spec,
// POST /v1/subscriptions/{id} payment_behavior: allow_incomplete, the
// default, and default_incomplete "transition the subscription to
// status=past_due" when a payment is required and not made); the
// invoice is then retried as a renewal is (dunned).
func (e *Emulator) billUpdateNow(c *reqCtx, sub, inv map[string]any) map[string]any {
	sub["latest_invoice"] = idOf(inv)
	// Stored with its items as they are now: paying the invoice may send
	// an event of it (activated) before the caller's, whose object must
	// not list an item the change removed (the subscription item
	// endpoints embed the items only after billing).
	sid := idOf(sub)
	sub["items"] = e.childList(kSubItem, sid, "/v1/subscription_items?subscription="+sid)
	e.store(kSub, sub)
	inv, _ = e.finalizeInvoice(c, inv)
	charged := getStr(inv, "status") == "open" && inv["collection_method"] == "charge_automatically"
	if charged && c.params["payment_behavior"] != "default_incomplete" {
		if pm := e.subscriptionPaymentMethod(sub); pm != "" {
			inv, _ = e.payInvoice(c, inv, pm)
		} else {
			// No payment method: a failed attempt, as at a renewal
			// (renewSubscription), which starts the retries.
			e.invoicePaymentFailed(c, inv, deepCopy(inv).(map[string]any))
		}
	}
	if cur := e.load(kSub, idOf(sub)); cur != nil {
		sub["discount"], sub["status"] = cur["discount"], cur["status"]
	}
	switch {
	case getStr(inv, "status") == "paid" && getStr(sub, "status") != "active":
		// Its latest invoice paid, as paying a past_due subscription's
		// latest invoice does (payInvoice).
		sub["status"] = "active"
	case getStr(inv, "status") == "open" && inv["collection_method"] == "charge_automatically":
		sub["status"] = "past_due"
	}
	return inv
}

// prorate creates the proration invoice items of changes to sub's items
// (already stored) and, with always_invoice, bills them at once
// (billUpdateNow). It returns that invoice, or nil. A subscription that
// bills nothing now (trialing: the trial is free; incomplete or
// canceled) gets no prorations, nor does a change of tax rates or
// metadata only.
func (e *Emulator) prorate(p proration, sub map[string]any, changes []itemChange) map[string]any {
	if p.behavior == "none" {
		return nil
	}
	switch getStr(sub, "status") {
	case "active", "past_due", "unpaid":
	default:
		return nil
	}
	start, end := getInt(sub, "current_period_start"), getInt(sub, "current_period_end")
	if p.at >= end || end <= start {
		return nil
	}
	made := 0
	for _, ch := range changes {
		if ch.before != nil && ch.after != nil && idOfAny(ch.before["price"]) == idOfAny(ch.after["price"]) &&
			intOr(ch.before["quantity"], 1) == intOr(ch.after["quantity"], 1) {
			continue
		}
		if ch.before != nil {
			e.prorationItem(p, sub, ch.before, true, start, end)
			made++
		}
		if ch.after != nil {
			e.prorationItem(p, sub, ch.after, false, start, end)
			made++
		}
	}
	if made == 0 || p.behavior != "always_invoice" {
		return nil
	}
	inv := e.draftSubscriptionInvoice(p.ctx, sub, "subscription_update", p.at, p.at, false)
	return e.billUpdateNow(p.ctx, sub, inv)
}

// prorateItems is billChange for the subscription item endpoints, which
// answer the item: the invoice made at once becomes sub's latest_invoice
// (sub is stored by the caller).
func (e *Emulator) prorateItems(p proration, sub map[string]any, before []map[string]any, ch itemChange) {
	if inv := e.billChange(p, sub, before, []itemChange{ch}); inv != nil {
		sub["latest_invoice"] = idOf(inv)
	}
}

// prorationItem creates the pending invoice item that credits (the
// unused time on it) or debits (the remaining time on it) item it of sub
// from p.at to the period's end, with invoiceitem.created.
//
// The amount is net of sub's discount (its own, else its customer's) as
// it stands after the request: "Any discounts previously applied to the
// subscription and affecting the amount of the proration are reflected in
// the proration invoice item's amount", "Stripe computes the proration
// amounts using the subscription's current pricing and discounting state
// at the time the proration is calculated. If you modify discounts as
// part of the same API call that also triggers prorations [...] the
// proration debit or credit is calculated using the modified discounts"
// (docs.stripe.com/billing/subscriptions/prorations, "Prorations and
// discounts"); the invoice then discounts only the lines that aren't
// prorations (applyDiscount skips lines not discountable). The discount
// is taken from the item's own amount as an invoice of that item alone
// would take it, then prorated: for API 2023-10-16, whose subscriptions
// are all billing_mode classic, the docs' example credits half a period
// of a 10 item under a 5-off coupon as "-0.5 x (10 USD price - 5 USD
// coupon) = -2.50 USD" ("Calculation logic for coupons applied to
// multiple subscription items", classic). The docs name no rounding of a
// percent_off share; it is rounded as an invoice's (applyDiscount) before
// the proration is. The item's discounts and its line's discount_amounts
// stay empty: the docs show them (with amount 0) only for API versions
// from 2025-09-30 (changelog, "Adds the ability to itemize proration
// discount amounts").
func (e *Emulator) prorationItem(p proration, sub, it map[string]any, credit bool, start, end int64) {
	c := p.ctx
	price, _ := it["price"].(map[string]any)
	qty := intOr(it["quantity"], 1)
	// A decimal price's period amount is prorated before it is rounded
	// (once, as Stripe rounds a line); its discount is what an invoice
	// line of it would get, from the rounded amount.
	full := new(big.Rat).Mul(priceUnit(price), new(big.Rat).SetInt64(qty))
	base := new(big.Rat).Sub(full, new(big.Rat).SetInt64(prorationDiscount(e.invoiceDiscount(getStr(sub, "customer"), sub, c.now), price, roundRat(full))))
	amt := prorated(base, end-p.at, end-start)
	what := "Remaining"
	if credit {
		amt, what = -amt, "Unused"
	}
	ii := e.newObject(kInvoiceItem, c.now, c.live)
	ii["customer"] = getStr(sub, "customer")
	ii["currency"] = price["currency"]
	ii["amount"] = amt
	ii["quantity"] = qty
	// The unit amount of the prorated time, which is no whole number of
	// cents in general: the decimal is exact, the integer rounded.
	unit := new(big.Rat).SetFrac64(amt, max(qty, 1))
	ii["unit_amount_decimal"] = formatDecimal(unit)
	ii["unit_amount"] = roundRat(unit)
	ii["price"] = price
	ii["date"] = c.now
	ii["period"] = map[string]any{"start": p.at, "end": end}
	// Stripe's wording, e.g. "Unused time on monthly widgets after 03 Mar
	// 2017", with the emulator's "quantity × product" of subscription
	// lines.
	ii["description"] = fmt.Sprintf("%s time on %d × %s after %s", what, qty, getStr(price, "product"),
		time.Unix(p.at, 0).UTC().Format("02 Jan 2006"))
	// Spec, invoiceitem.discountable: "Always false for prorations."
	ii["proration"], ii["discountable"] = true, false
	ii["subscription"], ii["subscription_item"] = idOf(sub), idOf(it)
	ii["invoice"] = nil
	ii["metadata"] = map[string]any{}
	ii["tax_rates"] = orEmpty(it["tax_rates"])
	e.store(kInvoiceItem, ii)
	e.emit(c, "invoiceitem.created", ii, nil)
}

// prorationDiscount is what discount d (nil: none) takes off amount, the
// undiscounted amount of an item of price, on an invoice of that item
// alone.
func prorationDiscount(d, price map[string]any, amount int64) int64 {
	if d == nil || amount <= 0 {
		return 0
	}
	line := map[string]any{"amount": amount, "discountable": true, "currency": price["currency"], "price": price}
	return applyDiscount(map[string]any{"currency": price["currency"]}, []map[string]any{line}, d)
}

// prorated is amount × part ÷ whole, rounded to the nearest unit, halves
// away from zero (Stripe documents no rounding for prorations; this is
// the rule of its fees, support.stripe.com "What rules do you use for
// rounding Stripe fees?"). Exact: amount × part can pass int64, and a
// decimal price's amount has a fraction.
func prorated(amount *big.Rat, part, whole int64) int64 {
	return roundRat(new(big.Rat).Mul(amount, new(big.Rat).SetFrac64(part, whole)))
}

// roundRat rounds r to the nearest integer, halves away from zero.
func roundRat(r *big.Rat) int64 {
	num, den := new(big.Int).Abs(r.Num()), r.Denom()
	q := new(big.Int).Div(new(big.Int).Add(new(big.Int).Mul(num, big.NewInt(2)), den), new(big.Int).Mul(den, big.NewInt(2)))
	if r.Sign() < 0 {
		q.Neg(q)
	}
	return q.Int64()
}

// addPendingItems moves the customer's pending invoice items that belong
// on sub's next invoice onto inv, a draft of sub (its first invoice, a
// renewal or a subscription_update): those of sub and those of no
// subscription (spec, POST /v1/invoiceitems subscription: "When left
// blank, the invoice item will be be added to the next upcoming scheduled
// invoice. When set, scheduled invoices for subscriptions other than the
// specified subscription will ignore the invoice item."; "These one-off
// items are added to the next invoice created for this customer",
// docs.stripe.com/billing/invoices/subscription, which a new
// subscription's first invoice is). Stripe has no invoiceitem.updated
// event.
func (e *Emulator) addPendingItems(c *reqCtx, inv, sub map[string]any) {
	t := e.tables["invoiceitems"]
	for _, r := range append([]*record(nil), t.byCustomer[getStr(sub, "customer")]...) {
		if v, _ := t.keyOf(r, "invoice"); v != "" {
			continue
		}
		ii, _ := decodeObject(r.raw)
		if !pendingFor(ii, idOf(sub)) {
			continue
		}
		ii["invoice"] = idOf(inv)
		e.store(kInvoiceItem, ii)
		e.addItemLine(c, inv, ii)
	}
}

// pendingFor says whether pending invoice item ii goes on the next
// invoice of subscription sid (addPendingItems).
func pendingFor(ii map[string]any, sid string) bool {
	s := getStr(ii, "subscription")
	return s == "" || s == sid
}
