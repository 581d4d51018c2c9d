package emulator

import (
	"fmt"
	"math/big"
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
}

// prorationOf reads proration_behavior and proration_date for a change of
// sub, refusing (before anything is stored) a proration_date outside the
// current period, which could prorate no time of it. Stripe documents no
// such answer; the message is the emulator's.
func (e *Emulator) prorationOf(c *reqCtx, sub map[string]any) (proration, *apiError) {
	sc := *c
	sc.now, sc.wall = e.scheduleNow(c, sub), c.wallTime()
	p := proration{behavior: strOr(c.params["proration_behavior"], "create_prorations"), at: sc.now, ctx: &sc}
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

// prorate creates the proration invoice items of changes to sub's items
// (already stored) and, with always_invoice, bills them at once. It
// returns that invoice, or nil. A subscription that bills nothing now
// (trialing: the trial is free; incomplete or canceled) gets no
// prorations, nor does a change of tax rates or metadata only.
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
	c := p.ctx
	inv := e.draftSubscriptionInvoice(c, sub, "subscription_update", p.at, p.at)
	inv, _ = e.finalizeInvoice(c, inv)
	if getInt(inv, "amount_due") > 0 && inv["collection_method"] == "charge_automatically" && c.params["payment_behavior"] != "default_incomplete" {
		if pm := e.subscriptionPaymentMethod(sub); pm != "" {
			inv, _ = e.payInvoice(c, inv, pm)
		}
	}
	return inv
}

// prorateItems is prorate for the subscription item endpoints, which
// answer the item: the invoice of always_invoice becomes sub's
// latest_invoice (sub is stored by the caller).
func (e *Emulator) prorateItems(p proration, sub map[string]any, ch itemChange) {
	if inv := e.prorate(p, sub, []itemChange{ch}); inv != nil {
		sub["latest_invoice"] = idOf(inv)
	}
}

// prorationItem creates the pending invoice item that credits (the
// unused time on it) or debits (the remaining time on it) item it of sub
// from p.at to the period's end, with invoiceitem.created.
func (e *Emulator) prorationItem(p proration, sub, it map[string]any, credit bool, start, end int64) {
	c := p.ctx
	price, _ := it["price"].(map[string]any)
	qty := intOr(it["quantity"], 1)
	amt := prorated(intOr(price["unit_amount"], 0)*qty, end-p.at, end-start)
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
	ii["unit_amount_decimal"] = unit.FloatString(12)
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

// prorated is amount × part ÷ whole, rounded to the nearest unit, halves
// away from zero (Stripe documents no rounding for prorations; this is
// the rule of its fees, support.stripe.com "What rules do you use for
// rounding Stripe fees?"). Exact: amount × part can pass int64.
func prorated(amount, part, whole int64) int64 {
	return roundRat(new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(amount), big.NewInt(part)), big.NewInt(whole)))
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
