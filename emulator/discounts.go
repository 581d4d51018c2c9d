package emulator

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Discounts: a coupon applied, directly or through a promotion code, to a
// customer (every invoice of the customer) or to a subscription (its
// invoices, in place of the customer's). Stripe keeps the discount inside
// its owner (customer.discount, subscription.discount) and announces it
// with customer.discount.created / updated / deleted; redeeming changes
// the coupon's and promotion code's times_redeemed without an event of
// their own. Invoices and invoice items with their own discounts are not
// modelled (those parameters stay refused, see unmodelled).

func init() {
	for _, t := range []string{"customer.discount.created", "customer.discount.updated", "customer.discount.deleted"} {
		validEvents[t] = true
	}
	handle("GET", "/v1/customers/{customer}/discount", func(e *Emulator, c *reqCtx) (any, *apiError) {
		cus := e.load(kCustomer, c.path["customer"])
		if cus == nil {
			return nil, notFound("customer", "customer", c.path["customer"])
		}
		d, _ := cus["discount"].(map[string]any)
		if d == nil {
			return nil, noDiscount("customer", c.path["customer"])
		}
		return d, nil
	})
	handle("DELETE", "/v1/customers/{customer}/discount", func(e *Emulator, c *reqCtx) (any, *apiError) {
		cus := e.load(kCustomer, c.path["customer"])
		if cus == nil {
			return nil, notFound("customer", "customer", c.path["customer"])
		}
		return e.removeDiscount(c, kCustomer, cus, "customer.updated")
	})
	handle("DELETE", "/v1/subscriptions/{subscription_exposed_id}/discount", func(e *Emulator, c *reqCtx) (any, *apiError) {
		sub := e.load(kSub, c.path["subscription_exposed_id"])
		if sub == nil {
			return nil, notFound("subscription_exposed_id", "subscription", c.path["subscription_exposed_id"])
		}
		return e.removeDiscount(c, kSub, sub, "customer.subscription.updated")
	})
}

func noDiscount(what, id string) *apiError {
	return &apiError{status: 404, Type: "invalid_request_error", Code: "resource_missing", Message: fmt.Sprintf("The %s %s does not have a discount.", what, id)}
}

// removeDiscount ends the discount of owner (a customer or subscription)
// and answers with the deleted discount.
func (e *Emulator) removeDiscount(c *reqCtx, k *kind, owner map[string]any, ownerEvent string) (any, *apiError) {
	d, _ := owner["discount"].(map[string]any)
	if d == nil {
		return nil, noDiscount(k.what, idOf(owner))
	}
	old := deepCopy(owner).(map[string]any)
	owner["discount"] = nil
	e.emit(c, "customer.discount.deleted", d, nil)
	e.save(c, k, owner, old, ownerEvent)
	gone := deepCopy(d).(map[string]any)
	gone["deleted"] = true
	delete(gone, "end") // deleted_discount has no end
	return gone, nil
}

// discountChange is what a request's coupon or promotion_code does to the
// discount of its owner (a customer or subscription): d nil removes it.
type discountChange struct {
	d, old        map[string]any
	coupon, promo map[string]any
}

// discountParams reads the request's coupon or promotion_code for owner (a
// customer, or a subscription sub of customer cus), with every check and
// no effect: "" removes the discount, an id replaces it. nil: neither was
// sent.
func (e *Emulator) discountParams(c *reqCtx, owner map[string]any, cus, sub string) (*discountChange, *apiError) {
	cp, hasCoupon := c.params["coupon"].(string)
	pc, hasPromo := c.params["promotion_code"].(string)
	if !hasCoupon && !hasPromo {
		return nil, nil
	}
	if cp != "" && pc != "" {
		return nil, invalid("", "coupon", "You may only specify one of these parameters: coupon, promotion_code.")
	}
	ch := &discountChange{}
	ch.old, _ = owner["discount"].(map[string]any)
	if cp == "" && pc == "" {
		return ch, nil
	}
	if pc != "" {
		if ae := e.mustExist("promotion_codes", "promotion_code", pc); ae != nil {
			return nil, ae
		}
		ch.promo = e.load(kPromo, pc)
		if ae := checkPromotionCode(c, ch.promo, cus); ae != nil {
			return nil, ae
		}
		cp = getStr(ch.promo, "coupon")
	}
	if ae := e.mustExist("coupons", "coupon", cp); ae != nil {
		return nil, ae
	}
	ch.coupon = e.load(kCoupon, cp)
	rb, _ := toInt(ch.coupon["redeem_by"])
	if !getBool(ch.coupon, "valid") || rb > 0 && rb <= c.now {
		return nil, invalid("coupon_expired", "coupon", "Coupon expired: %s", cp)
	}
	ch.d = map[string]any{
		"id": "di_" + randAlnum(e.idRand, 24), "object": "discount",
		"checkout_session": nil, "coupon": ch.coupon, "customer": cus,
		"end": nil, "invoice": nil, "invoice_item": nil,
		"promotion_code": nilIfEmpty(pc), "start": c.now, "subscription": nilIfEmpty(sub),
	}
	if getStr(ch.coupon, "duration") == "repeating" {
		months, _ := toInt(ch.coupon["duration_in_months"])
		ch.d["end"] = time.Unix(c.now, 0).UTC().AddDate(0, int(months), 0).Unix()
	}
	return ch, nil
}

// apply makes the change: it redeems the coupon and promotion code and
// sets owner's discount (owner is stored by the caller, with its own
// event). With emit it sends the discount's event; a created owner's
// caller sends customer.discount.created after the owner's own event.
func (ch *discountChange) apply(e *Emulator, c *reqCtx, owner map[string]any, emit bool) {
	if ch == nil {
		return
	}
	if ch.d == nil {
		owner["discount"] = nil
		if ch.old != nil && emit {
			e.emit(c, "customer.discount.deleted", ch.old, nil)
		}
		return
	}
	e.redeem(kCoupon, ch.coupon)
	if ch.promo != nil {
		// A promotion code shows its coupon as it is now; redeem may
		// just have deactivated it with its used-up coupon.
		ch.promo["coupon"] = ch.coupon
		if !getBool(ch.coupon, "valid") {
			ch.promo["active"] = false
		}
		e.redeem(kPromo, ch.promo)
	}
	ch.d["coupon"] = ch.coupon
	owner["discount"] = ch.d
	switch {
	case !emit:
	case ch.old == nil:
		e.emit(c, "customer.discount.created", ch.d, nil)
	default:
		e.emit(c, "customer.discount.updated", ch.d, diff(ch.old, ch.d))
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// checkPromotionCode refuses a promotion code that cannot be redeemed by
// customer cus now. Restrictions that depend on the purchase (a minimum
// amount, first-time customers only) are not modelled and refused rather
// than ignored.
func checkPromotionCode(c *reqCtx, promo map[string]any, cus string) *apiError {
	code := getStr(promo, "code")
	// Before active: a used-up code is also inactive, and Stripe names
	// the reason.
	if max, ok := toInt(promo["max_redemptions"]); ok && max > 0 && getInt(promo, "times_redeemed") >= max {
		return invalid("", "promotion_code", "This promotion code cannot be redeemed because it has been used the maximum number of times.")
	}
	if !getBool(promo, "active") {
		return invalid("", "promotion_code", "This promotion code is inactive: %s", code)
	}
	if exp, ok := toInt(promo["expires_at"]); ok && exp > 0 && exp <= c.now {
		return invalid("", "promotion_code", "This promotion code has expired: %s", code)
	}
	if only := getStr(promo, "customer"); only != "" && only != cus {
		return invalid("", "promotion_code", "This promotion code cannot be redeemed by this customer: %s", code)
	}
	if r, _ := promo["restrictions"].(map[string]any); getBool(r, "first_time_transaction") || r["minimum_amount"] != nil {
		return invalid("", "promotion_code", "The emulator does not model promotion code restrictions (first_time_transaction, minimum_amount): %s is refused rather than applied.", code)
	}
	return nil
}

// redeem counts one redemption of a coupon or promotion code. Stripe sends
// no event for it. A coupon used up becomes invalid, and so do (inactive)
// all its promotion codes: "a promotion code is only active if the coupon
// is also valid"; a promotion code used up becomes inactive.
func (e *Emulator) redeem(k *kind, obj map[string]any) {
	n := getInt(obj, "times_redeemed") + 1
	obj["times_redeemed"] = n
	max, ok := toInt(obj["max_redemptions"])
	usedUp := ok && max > 0 && n >= max
	switch {
	case usedUp && k == kCoupon:
		obj["valid"] = false
		t := e.tables[kPromo.table]
		for _, r := range append([]*record(nil), t.ordered...) {
			if cp, _ := t.keyOf(r, "coupon"); cp != idOf(obj) {
				continue
			}
			if promo, _ := decodeObject(r.raw); promo != nil {
				promo["active"], promo["coupon"] = false, obj
				e.store(kPromo, promo)
			}
		}
	case usedUp && k == kPromo:
		obj["active"] = false
	}
	e.store(k, obj)
}

// invoiceDiscount is the discount a new invoice of customer cus for
// subscription sub (nil: none) takes at now: the subscription's, else the
// customer's; nil if none or it has ended. (Stripe also removes an ended
// discount from its owner, with customer.discount.deleted; not modelled.)
func (e *Emulator) invoiceDiscount(cus string, sub map[string]any, now int64) map[string]any {
	var d map[string]any
	if sub != nil {
		d, _ = sub["discount"].(map[string]any)
	}
	if d == nil {
		if cu := e.load(kCustomer, cus); cu != nil {
			d, _ = cu["discount"].(map[string]any)
		}
	}
	if end, ok := toInt(d["end"]); d == nil || ok && end > 0 && end <= now {
		return nil
	}
	return d
}

// applyDiscount sets the discount fields of an invoice and its lines
// (discount_amounts) for discount d (nil: none) and returns the total
// discount. Like Stripe, the discount is taken from the discountable lines
// in the invoice's currency (an amount_off coupon in its own currency or,
// through its currency_options, in the invoice's; at most their sum) and
// split over the lines in proportion to their amounts, the rounding
// remainder on the last.
func applyDiscount(inv map[string]any, lines []map[string]any, d map[string]any) int64 {
	inv["discount"], inv["discounts"], inv["total_discount_amounts"] = nil, []any{}, []any{}
	for _, l := range lines {
		l["discount_amounts"] = []any{}
	}
	if d == nil {
		return 0
	}
	coupon, _ := d["coupon"].(map[string]any)
	var products map[string]bool
	if at, _ := coupon["applies_to"].(map[string]any); at != nil {
		products = map[string]bool{}
		ps, _ := at["products"].([]any)
		for _, p := range ps {
			products[fmt.Sprint(p)] = true
		}
	}
	var eligible []map[string]any
	var base int64
	for _, l := range lines {
		amt := getInt(l, "amount")
		if !getBool(l, "discountable") || amt <= 0 || getStr(l, "currency") != getStr(inv, "currency") {
			continue
		}
		if products != nil {
			price, _ := l["price"].(map[string]any)
			if !products[getStr(price, "product")] {
				continue
			}
		}
		eligible = append(eligible, l)
		base += amt
	}
	var total int64
	switch {
	case base <= 0:
	case coupon["percent_off"] != nil:
		pct, _ := toFloat(coupon["percent_off"])
		total = int64(math.Round(float64(base) * pct / 100))
	default:
		total = min(amountOff(coupon, getStr(inv, "currency")), base)
	}
	id := getStr(d, "id")
	inv["discount"], inv["discounts"] = d, []any{id}
	inv["total_discount_amounts"] = []any{map[string]any{"amount": total, "discount": id}}
	left := total
	for i, l := range eligible {
		share := total * getInt(l, "amount") / base
		if i == len(eligible)-1 {
			share = left
		}
		left -= share
		l["discount_amounts"] = []any{map[string]any{"amount": share, "discount": id}}
	}
	return total
}

// amountOff is what an amount_off coupon takes off in currency cur: its
// amount_off in its own currency, else the one of its currency_options
// for cur, else nothing.
func amountOff(coupon map[string]any, cur string) int64 {
	if getStr(coupon, "currency") == cur {
		return getInt(coupon, "amount_off")
	}
	opts, _ := coupon["currency_options"].(map[string]any)
	opt, _ := opts[cur].(map[string]any)
	return getInt(opt, "amount_off")
}

// consumeDiscount ends a duration=once discount once an invoice that
// applied it is finalized, as Stripe does. pending is a subscription being
// created (not stored yet), whose discount it may be.
func (e *Emulator) consumeDiscount(c *reqCtx, inv, pending map[string]any) {
	d, _ := inv["discount"].(map[string]any)
	if coupon, _ := d["coupon"].(map[string]any); d == nil || getStr(coupon, "duration") != "once" {
		return
	}
	if cur, _ := pending["discount"].(map[string]any); cur != nil && getStr(cur, "id") == getStr(d, "id") {
		pending["discount"] = nil
		e.emit(c, "customer.discount.deleted", cur, nil)
		return
	}
	k, owner, event := kCustomer, e.load(kCustomer, getStr(d, "customer")), "customer.updated"
	if s := getStr(d, "subscription"); s != "" {
		k, owner, event = kSub, e.load(kSub, s), "customer.subscription.updated"
	}
	if cur, _ := owner["discount"].(map[string]any); cur != nil && getStr(cur, "id") == getStr(d, "id") {
		e.removeDiscount(c, k, owner, event)
	}
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	n, ok := toInt(v)
	return float64(n), ok
}
