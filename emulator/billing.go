package emulator

import (
	"cmp"
	"fmt"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Billing objects: customers, catalog (products, prices, plans, coupons,
// promotion codes, tax rates), subscriptions and their items, invoices and
// their lines, invoice items, and the events list.

var (
	kCustomer = addKind(&kind{table: "customers", schema: "customer", prefix: "cus_", base: "/v1/customers", idParam: "customer",
		keys: []string{"email", "test_clock"}, events: "customer", blank: []string{"currency"}})
	kProduct = addKind(&kind{table: "products", schema: "product", prefix: "prod_", base: "/v1/products", idParam: "id",
		keys: []string{"active", "shippable", "url"}, events: "product", blank: []string{"description"}})
	kPrice = addKind(&kind{table: "prices", schema: "price", prefix: "price_", base: "/v1/prices", idParam: "price",
		keys: []string{"active", "currency", "product", "type", "lookup_key"}, events: "price", skip: []string{"product", "recurring"},
		blank: []string{"unit_amount", "unit_amount_decimal"}})
	kPlan = addKind(&kind{table: "plans", schema: "plan", prefix: "plan_", base: "/v1/plans", idParam: "plan",
		keys: []string{"active", "product"}, events: "plan", skip: []string{"product"},
		blank: []string{"amount", "amount_decimal"}})
	kCoupon = addKind(&kind{table: "coupons", schema: "coupon", prefix: "", base: "/v1/coupons", idParam: "coupon", events: "coupon",
		blank: []string{"amount_off", "currency", "duration_in_months", "max_redemptions", "name", "percent_off", "redeem_by"}})
	kPromo = addKind(&kind{table: "promotion_codes", schema: "promotion_code", prefix: "promo_", base: "/v1/promotion_codes", idParam: "promotion_code",
		keys: []string{"active", "code", "coupon", "customer"}, events: "promotion_code", skip: []string{"coupon"}, what: "promotion code"})
	kTaxRate = addKind(&kind{table: "tax_rates", schema: "tax_rate", prefix: "txr_", base: "/v1/tax_rates", idParam: "tax_rate",
		keys: []string{"active", "inclusive"}, events: "tax_rate", what: "tax rate",
		blank: []string{"country", "description", "jurisdiction", "state", "tax_type"}})
	kSub = addKind(&kind{table: "subscriptions", schema: "subscription", prefix: "sub_", base: "/v1/subscriptions", idParam: "subscription_exposed_id",
		keys: []string{"customer", "_status", "_price", "collection_method", "test_clock", "_pending", "_pending_at",
			"_latest_invoice", "_trial_end", "_cancel_at", "_period_end"}, indexed: []string{"test_clock", "_pending"},
		events: "customer.subscription", skip: []string{"items"},
		listHandled: []string{"status", "price"}})
	kSubItem = addKind(&kind{table: "subscription_items", schema: "subscription_item", prefix: "si_", base: "/v1/subscription_items", idParam: "item",
		keys: []string{"subscription"}, parent: "subscription", skip: []string{"price"}, what: "subscription item"})
	kSchedule = addKind(&kind{table: "subscription_schedules", schema: "subscription_schedule", prefix: "sub_sched_", base: "/v1/subscription_schedules", idParam: "schedule",
		keys: []string{"customer"}, events: "subscription_schedule", skip: []string{"phases", "default_settings"}, what: "subscription schedule"})
	kInvoice = addKind(&kind{table: "invoices", schema: "invoice", prefix: "in_", base: "/v1/invoices", idParam: "invoice",
		keys:    []string{"customer", "status", "subscription", "collection_method", "_dunning", "_next_attempt", "_overdue", "_due_at"},
		indexed: []string{"_dunning", "_overdue"}, events: "invoice"})
	kLine        = addKind(&kind{table: "invoice_line_items", schema: "line_item", prefix: "il_", keys: []string{"invoice", "amount"}, parent: "invoice", what: "invoice line item"})
	kInvoiceItem = addKind(&kind{table: "invoiceitems", schema: "invoiceitem", prefix: "ii_", base: "/v1/invoiceitems", idParam: "invoiceitem",
		keys: []string{"customer", "invoice"}, events: "invoiceitem", skip: []string{"price", "invoice"}, what: "invoice item",
		blank: []string{"description"}})
	kEvent = addKind(&kind{table: "events", schema: "event", prefix: "evt_", keys: []string{"type"}})
)

func init() {
	for _, t := range []string{"balance.available", "charge.captured", "charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_reinstated", "charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.expired",
		"charge.refund.updated", "charge.refunded", "charge.succeeded", "charge.updated", "checkout.session.completed", "checkout.session.expired",
		"coupon.created", "coupon.deleted", "coupon.updated", "credit_note.created", "credit_note.updated", "credit_note.voided",
		"customer.created", "customer.deleted", "customer.updated", "customer.subscription.created", "customer.subscription.deleted",
		"customer.subscription.updated", "customer.subscription.resumed", "customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired", "customer.subscription.trial_will_end", "customer.tax_id.created", "customer.tax_id.deleted", "customer.tax_id.updated",
		"invoice.created", "invoice.deleted", "invoice.finalized", "invoice.marked_uncollectible", "invoice.paid", "invoice.payment_succeeded",
		"invoice.updated", "invoice.voided", "invoice.payment_failed", "invoice.sent", "charge.failed", "payment_intent.payment_failed", "invoiceitem.created", "invoiceitem.deleted", "payment_intent.canceled", "payment_intent.created",
		"payment_intent.succeeded", "payment_intent.amount_capturable_updated", "payment_method.attached", "payment_method.detached", "payment_method.updated", "payout.canceled",
		"payout.created", "payout.paid", "payout.updated", "plan.created", "plan.deleted", "plan.updated", "price.created", "price.deleted",
		"price.updated", "product.created", "product.deleted", "product.updated", "promotion_code.created", "promotion_code.updated",
		"refund.created", "refund.updated", "setup_intent.canceled", "setup_intent.created", "setup_intent.setup_failed", "setup_intent.succeeded",
		"subscription_schedule.canceled", "subscription_schedule.completed", "subscription_schedule.created", "subscription_schedule.released", "subscription_schedule.updated",
		"tax_rate.created", "tax_rate.updated"} {
		validEvents[t] = true
	}

	kSub.keyFunc = func(obj map[string]any) []string {
		var prices []string
		if items, ok := obj["items"].(map[string]any); ok {
			data, _ := items["data"].([]any)
			for _, it := range data {
				if m, ok := it.(map[string]any); ok {
					prices = append(prices, getStr(m, "price"))
				}
			}
		}
		k := []string{getStr(obj, "customer"), getStr(obj, "status"), " " + strings.Join(prices, " ") + " ", getStr(obj, "collection_method"), getStr(obj, "test_clock"), "", "",
			getStr(obj, "latest_invoice"), "", "", strconv.FormatInt(getInt(obj, "current_period_end"), 10)}
		// A subscription with a pending update keeps its clock (offClock
		// for none) as _pending, indexed, and the update's expiry as
		// _pending_at: expiries are found without decoding every
		// subscription, and an undone request (undoLog) takes them back
		// with the object.
		if pu := pendingOf(obj); pu != nil {
			k[5], k[6] = cmp.Or(k[4], offClock), strconv.FormatInt(getInt(pu, "expires_at"), 10)
		}
		// What a clock's step reads of every subscription it bills
		// (nextBillingStep), kept as keys so that finding the next step
		// decodes none: latest_invoice (whose _due_at says when it falls
		// overdue), trial_end while trialing (trial_will_end), cancel_at
		// when set, and current_period_end (the renewal). test_clock is
		// indexed, so a step looks at the subscriptions of its clock only.
		if te, ok := toInt(obj["trial_end"]); ok && k[1] == "trialing" {
			k[8] = strconv.FormatInt(te, 10)
		}
		if ca, ok := toInt(obj["cancel_at"]); ok && ca > 0 {
			k[9] = strconv.FormatInt(ca, 10)
		}
		return k
	}
	// An invoice on the retry schedule (dunned) keeps its subscription as
	// _dunning, indexed, and its next attempt as _next_attempt; any other
	// has neither. An advance then finds the retries due at each step
	// without decoding the open invoices of every subscription it bills
	// (dunnedInvoices), and its work does not grow with a customer's
	// other subscriptions and their invoices.
	//
	// An open send_invoice invoice of a subscription with a due date
	// keeps its clock (offClock for none) as _overdue, indexed, and the
	// due date as _due_at: a clock's step reads when a subscription's
	// latest invoice falls overdue from its record (overdueAt), and the
	// emulator's clock finds those off test clocks (overdueDue), without
	// decoding invoices.
	kInvoice.keyFunc = func(obj map[string]any) []string {
		k := fieldKeys(kInvoice.keys, obj) // customer, status, subscription, collection_method, "", "", "", ""
		if at, ok := toInt(obj["next_payment_attempt"]); ok && at > 0 && dunned(obj) {
			k[4], k[5] = k[2], strconv.FormatInt(at, 10)
		}
		if due, ok := toInt(obj["due_date"]); ok && due > 0 && k[1] == "open" && k[2] != "" && k[3] == "send_invoice" {
			k[6], k[7] = cmp.Or(getStr(obj, "test_clock"), offClock), strconv.FormatInt(due, 10)
		}
		return k
	}

	// customers
	kCustomer.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		if ae := e.checkCustomerClock(c); ae != nil {
			return ae
		}
		if pm, ok := c.params["payment_method"].(string); ok && pm != "" && !e.isTestPM(pm) {
			if e.tables["payment_methods"].byID[pm] == nil {
				return e.mustExist("payment_methods", "payment_method", pm)
			}
			if ae := e.attachable(pm, ""); ae != nil {
				return ae
			}
		}
		// The payment method is attached once the customer is stored
		// (after), so a card that can't be attached is refused here:
		// the request creates no customer.
		if ae := e.refusedCard(c, "payment_method"); ae != nil {
			return ae
		}
		if ae := e.refusedCard(c, "source"); ae != nil {
			return ae
		}
		// Each customer has its own invoice prefix (the fixture's is one
		// constant).
		obj["invoice_prefix"] = strings.ToUpper(fmt.Sprintf("%08x", e.idRand.Uint32()))
		pm, _ := c.params["payment_method"].(string)
		if ae := e.checkDefaultPM(obj, pm); ae != nil {
			return ae
		}
		ch, ae := e.discountParams(c, obj, idOf(obj), "")
		if ae != nil {
			return ae
		}
		// Before the coupon is redeemed: a source refused here (an
		// unknown token) leaves nothing behind.
		if ae := e.customerSourceCreate(c, obj); ae != nil {
			return ae
		}
		if e.isTestPM(pm) {
			// A test payment method is attached as a new copy (after).
			// invoice_settings naming the test one as well names the
			// copy: the payment method this request attaches may be its
			// default (checkDefaultPM), and the copy is what it
			// attaches. Taken so, not confirmed from Stripe's answers.
			c.pmClone = e.newID(kPM.prefix)
			if is, _ := obj["invoice_settings"].(map[string]any); is != nil && getStr(is, "default_payment_method") == pm {
				is["default_payment_method"] = c.pmClone
			}
		}
		ch.apply(e, c, obj, false)
		return nil
	}
	kCustomer.update = func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
		if ae := e.refusedCard(c, "source"); ae != nil {
			return ae
		}
		// Checked only when this request sets it.
		if is, ok := c.params["invoice_settings"].(map[string]any); ok && is["default_payment_method"] != nil {
			if ae := e.checkDefaultPM(obj, ""); ae != nil {
				return ae
			}
		}
		ch, ae := e.discountParams(c, obj, idOf(obj), "")
		if ae != nil {
			return ae
		}
		// The last check, before anything is stored (the coupon's
		// redemption, the balance's ledger, the drafts): a refused source
		// or default_source changes nothing.
		card, ae := e.customerSourceCheck(c, obj, old)
		if ae != nil {
			return ae
		}
		ch.apply(e, c, obj, true)
		// balance= sets the balance; the ledger takes the difference
		// (balance.go).
		if d := getInt(obj, "balance") - getInt(old, "balance"); d != 0 {
			e.recordBalance(c, obj, d, "adjustment", "")
		}
		e.followCustomer(obj)
		e.customerSourceUpdate(c, obj, old, card)
		return nil
	}
	kCustomer.after = func(e *Emulator, c *reqCtx, obj map[string]any) {
		if b := getInt(obj, "balance"); b != 0 {
			e.recordBalance(c, obj, b, "initial", "")
		}
		if d, _ := obj["discount"].(map[string]any); d != nil {
			e.emit(c, "customer.discount.created", d, nil)
		}
		// payment_method on create attaches it.
		if pm, ok := c.params["payment_method"].(string); ok && pm != "" {
			if c.pmClone != "" {
				e.store(kPM, e.testPMClone(c, pm, c.pmClone))
				pm = c.pmClone
			}
			e.attachPM(c, pm, idOf(obj))
		}
		// source on create saves its card, the customer's default_source.
		if c.card != nil {
			e.saveCard(c, c.card)
		}
		c.result = obj
	}
	kCustomer.del = deleteCustomer
	crud(kCustomer, "crud")
	update := genericUpdate(kCustomer)
	handle("POST", "/v1/customers/{customer}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		res, ae := update(e, c)
		if ae == nil && c.card != nil {
			// Once the customer is stored with its new default_source,
			// which the retry charges.
			e.retryPastDue(c, c.path["customer"])
		}
		return res, ae
	})
	handle("GET", "/v1/customers", withListClock(genericList(kCustomer, func(c *reqCtx, t *table) (func(*record) bool, *apiError) {
		return withoutClocks(c, t), nil
	})))

	// products
	kProduct.del = func(e *Emulator, c *reqCtx) (any, *apiError) {
		id := c.path["id"]
		obj := e.load(kProduct, id)
		if obj == nil {
			return nil, notFound("id", "product", id)
		}
		// Plans are prices in Stripe (kept in their own table here), so
		// they block the delete too.
		for _, tn := range []string{"prices", "plans"} {
			for _, r := range e.tables[tn].ordered {
				if v, _ := e.tables[tn].keyOf(r, "product"); v == id {
					return nil, invalid("", "", "This product cannot be deleted because it has one or more user-created prices.")
				}
			}
		}
		return e.deleteObject(c, kProduct, obj), nil
	}
	crud(kProduct, "crud")
	handle("GET", "/v1/products", genericList(kProduct, func(c *reqCtx, t *table) (func(*record) bool, *apiError) {
		return inSet(c.params["ids"], func(r *record) string { return r.id }), nil
	}))

	// prices
	kPrice.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		// Before setProduct, which may create the product inline: a
		// refused price creates nothing.
		if ae := exclusiveAmount(c.params, "unit_amount", "unit_amount_decimal", ""); ae != nil {
			return ae
		}
		if getInt(obj, "unit_amount") < 0 {
			// "A positive integer in cents (or 0 for a free price)".
			return invalid("", "unit_amount", "This value must be greater than or equal to 0.")
		}
		if u := unitOf(obj, "unit_amount", "unit_amount_decimal"); u != nil && u.Sign() < 0 {
			return invalid("", "unit_amount_decimal", "This value must be greater than or equal to 0.")
		}
		if ae := e.setProduct(c, obj); ae != nil {
			return ae
		}
		obj["type"] = "one_time"
		obj["recurring"] = nil
		if rec, ok := c.params["recurring"].(map[string]any); ok {
			obj["type"] = "recurring"
			obj["recurring"] = map[string]any{"aggregate_usage": rec["aggregate_usage"], "interval": rec["interval"],
				"interval_count": intOr(rec["interval_count"], 1), "trial_period_days": nil, "usage_type": strOr(rec["usage_type"], "licensed")}
		}
		fillAmountDecimal(obj, "unit_amount", "unit_amount_decimal")
		return nil
	}
	crud(kPrice, "cru")
	handle("GET", "/v1/prices", genericList(kPrice, func(c *reqCtx, t *table) (func(*record) bool, *apiError) {
		lookup := inSet(c.params["lookup_keys"], func(r *record) string { v, _ := t.keyOf(r, "lookup_key"); return v })
		// Stripe (spec, API 2023-10-16): "Returns a list of your active
		// prices, excluding inline prices. For the list of inactive
		// prices, set active to false." Inline prices are left out of
		// both lists.
		_, anyActive := c.params["active"]
		return func(r *record) bool {
			if r.unlisted {
				return false
			}
			if v, _ := t.keyOf(r, "active"); !anyActive && v != "true" {
				return false
			}
			return lookup == nil || lookup(r)
		}, nil
	}))

	// plans
	kPlan.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		if ae := exclusiveAmount(c.params, "amount", "amount_decimal", ""); ae != nil {
			return ae
		}
		if getInt(obj, "amount") < 0 { // before the inline product, as for prices
			return invalid("", "amount", "This value must be greater than or equal to 0.")
		}
		if u := unitOf(obj, "amount", "amount_decimal"); u != nil && u.Sign() < 0 {
			return invalid("", "amount_decimal", "This value must be greater than or equal to 0.")
		}
		if ae := e.setProduct(c, obj); ae != nil {
			return ae
		}
		if _, ok := c.params["interval_count"]; !ok {
			obj["interval_count"] = int64(1)
		}
		fillAmountDecimal(obj, "amount", "amount_decimal")
		return nil
	}
	crud(kPlan, "crudl")

	// coupons
	kCoupon.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		if _, ok := c.params["id"]; !ok {
			obj["id"] = strings.ToUpper(randAlnum(e.idRand, 8))
		}
		// Stripe's rules for what a coupon needs; duration defaults to once.
		switch {
		case c.params["percent_off"] == nil && c.params["amount_off"] == nil:
			return invalid("", "", "You must pass either amount_off or percent_off.")
		case c.params["percent_off"] != nil && c.params["amount_off"] != nil:
			return invalid("", "amount_off", "You may only pass one of amount_off and percent_off.")
		case c.params["amount_off"] != nil && c.params["currency"] == nil:
			return invalid("", "currency", "You must pass currency when passing amount_off.")
		}
		if c.params["duration"] == nil {
			obj["duration"] = "once"
		}
		if obj["duration"] == "repeating" && c.params["duration_in_months"] == nil {
			return invalid("", "duration_in_months", "You must pass duration_in_months when duration is repeating.")
		}
		obj["times_redeemed"] = int64(0)
		obj["valid"] = true
		return nil
	}
	crud(kCoupon, "crudl")

	// promotion codes
	kPromo.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		cid, _ := c.params["coupon"].(string)
		if ae := e.mustExist("coupons", "coupon", cid); ae != nil {
			return ae
		}
		obj["coupon"] = e.load(kCoupon, cid)
		if _, ok := c.params["code"]; !ok {
			obj["code"] = strings.ToUpper(randAlnum(e.idRand, 8))
		}
		obj["active"] = true
		if v, ok := c.params["active"].(bool); ok {
			obj["active"] = v
		}
		obj["times_redeemed"] = int64(0)
		return nil
	}
	crud(kPromo, "crul")

	// tax rates
	crud(kTaxRate, "crul")

	// subscriptions
	kSub.create = createSubscription
	kSub.update = updateSubscription
	kSub.del = cancelSubscription
	crud(kSub, "crud")
	handle("GET", "/v1/subscriptions", withListClock(genericList(kSub, subscriptionFilter)))
	handle("GET", "/v1/customers/{customer}/subscriptions", func(e *Emulator, c *reqCtx) (any, *apiError) {
		c.params["customer"] = c.path["customer"]
		return genericList(kSub, subscriptionFilter)(e, c)
	})
	handle("POST", "/v1/subscriptions/{subscription}/resume", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kSub, c.path["subscription"])
		if obj == nil {
			return nil, notFound("subscription", "subscription", c.path["subscription"])
		}
		old := deepCopy(obj).(map[string]any)
		obj["status"], obj["pause_collection"] = "active", nil
		r := e.save(c, kSub, obj, old, "customer.subscription.resumed")
		return e.render(kSub, r.raw, c)
	})

	// subscription items
	handle("GET", "/v1/subscription_items", func(e *Emulator, c *reqCtx) (any, *apiError) {
		sid, _ := c.params["subscription"].(string)
		return e.listChildren(c, kSubItem, sid, "/v1/subscription_items")
	})
	handle("GET", "/v1/subscription_items/{item}", genericRetrieve(kSubItem))
	handle("POST", "/v1/subscription_items", func(e *Emulator, c *reqCtx) (any, *apiError) {
		sid, _ := c.params["subscription"].(string)
		sub := e.load(kSub, sid)
		if sub == nil {
			return nil, &apiError{status: 400, Type: "invalid_request_error", Code: "resource_missing", Param: "subscription", Message: fmt.Sprintf("No such subscription: '%s'", sid)}
		}
		if ae := endedSubscription(sub); ae != nil {
			return nil, ae
		}
		return e.itemUpdate(c, sub, func() (any, *apiError) {
			old := deepCopy(sub).(map[string]any)
			pr, ae := e.prorationOf(c, sub)
			if ae != nil {
				return nil, ae
			}
			it, ae := e.newSubItem(c, sid, c.params, "")
			if ae != nil {
				return nil, ae
			}
			before := e.subItems(sid)
			after := e.itemsAfter(sid, []map[string]any{it}, nil)
			if ae := mixedItems(after, "price"); ae != nil {
				return nil, ae
			}
			if ae := pr.checkReset(sub, before, after); ae != nil {
				return nil, ae
			}
			r := e.store(kSubItem, it)
			e.prorateItems(pr, sub, before, itemChange{after: it})
			e.afterItemsChange(c, sub, old)
			return e.render(kSubItem, r.raw, c)
		})
	})
	handle("POST", "/v1/subscription_items/{item}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		it := e.load(kSubItem, c.path["item"])
		if it == nil {
			return nil, notFound("id", "subscription item", c.path["item"])
		}
		sub := e.load(kSub, getStr(it, "subscription"))
		if ae := endedSubscription(sub); ae != nil {
			return nil, ae
		}
		return e.itemUpdate(c, sub, func() (any, *apiError) { return e.updateSubItem(c, sub, it) })
	})
	handle("DELETE", "/v1/subscription_items/{item}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		it := e.load(kSubItem, c.path["item"])
		if it == nil {
			return nil, notFound("id", "subscription item", c.path["item"])
		}
		sub := e.load(kSub, getStr(it, "subscription"))
		if ae := endedSubscription(sub); ae != nil {
			return nil, ae
		}
		if ae := whilePending(sub); ae != nil {
			return nil, ae
		}
		old := deepCopy(sub).(map[string]any)
		pr, ae := e.prorationOf(c, sub)
		if ae != nil {
			return nil, ae
		}
		items := e.subItems(idOf(sub))
		if ae := pr.checkReset(sub, items, e.itemsAfter(idOf(sub), nil, []string{idOf(it)})); ae != nil {
			return nil, ae
		}
		e.tables["subscription_items"].remove(idOf(it))
		e.prorateItems(pr, sub, items, itemChange{before: it})
		e.afterItemsChange(c, sub, old)
		return map[string]any{"id": idOf(it), "object": "subscription_item", "deleted": true}, nil
	})

	// subscription schedules
	kSchedule.create = createSchedule
	kSchedule.update = func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
		if st := getStr(old, "status"); st != "not_started" && st != "active" {
			return invalid("", "", "You cannot update a subscription schedule that is %s.", st)
		}
		if ae := e.checkSchedulePMs(c, getStr(old, "customer")); ae != nil {
			return ae
		}
		ph, ok := c.params["phases"].([]any)
		if !ok {
			return nil
		}
		// A schedule on a test clock lives on the clock's time.
		sc := *c
		sc.now, sc.wall = e.scheduleNow(c, obj), c.wallTime()
		now := sc.now
		phases, ae := e.schedulePhases(&sc, ph, now)
		if ae != nil {
			return ae
		}
		obj["phases"] = phases
		setCurrentPhase(obj, now)
		i := phaseAt(phases, now)
		switch {
		case i < 0:
		case getStr(old, "status") == "not_started":
			return e.startSchedule(&sc, obj)
		default:
			// Stripe (proration_behavior of this endpoint): "If the update
			// changes the current phase, [...]": the subscription follows
			// the current phase at once; an update that leaves it as it
			// was leaves the subscription alone.
			oldPhases, _ := old["phases"].([]any)
			if j := phaseAt(oldPhases, now); j >= 0 && reflect.DeepEqual(normalize(oldPhases[j]), normalize(phases[i])) {
				return nil
			}
			if sub := e.load(kSub, getStr(obj, "subscription")); sub != nil && getStr(sub, "status") != "canceled" {
				return e.applyPhase(&sc, sub, phases, i, strOr(c.params["proration_behavior"], "create_prorations"))
			}
		}
		return nil
	}
	crud(kSchedule, "crul")
	handle("GET", "/v1/subscription_schedules", genericList(kSchedule, nil))
	for _, act := range []string{"cancel", "release"} {
		act := act
		handle("POST", "/v1/subscription_schedules/{schedule}/"+act, func(e *Emulator, c *reqCtx) (any, *apiError) {
			obj := e.load(kSchedule, c.path["schedule"])
			if obj == nil {
				return nil, notFound("schedule", "subscription schedule", c.path["schedule"])
			}
			if st := getStr(obj, "status"); st != "not_started" && st != "active" {
				return nil, invalid("", "", "You cannot %s a subscription schedule that is %s.", act, st)
			}
			old := deepCopy(obj).(map[string]any)
			// Canceling a schedule cancels its subscription; releasing
			// leaves the subscription running on its own.
			r := e.save(c, kSchedule, obj, old, e.endSchedule(c, obj, act))
			return e.render(kSchedule, r.raw, c)
		})
	}

	// invoices
	kInvoice.create = createInvoice
	kInvoice.update = func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
		if ae := e.checkParamPM(c, getStr(old, "customer")); ae != nil {
			return ae
		}
		obj["default_tax_rates"] = old["default_tax_rates"]
		return e.setTaxRates(obj, "default_tax_rates", c.params, "default_tax_rates")
	}
	kInvoice.del = func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kInvoice, c.path["invoice"])
		if obj == nil {
			return nil, notFound("invoice", "invoice", c.path["invoice"])
		}
		if getStr(obj, "status") != "draft" {
			return nil, invalid("", "", "You can only delete draft invoices.")
		}
		// Spec (DELETE /v1/invoices/{invoice}): "Permanently deletes a
		// one-off invoice draft. [...] if an invoice is for a subscription,
		// it must be voided" (the wording of this answer is the emulator's).
		if getStr(obj, "subscription") != "" {
			return nil, invalid("", "", "You can't delete an invoice that belongs to a subscription; finalize and void it instead.")
		}
		for _, r := range append([]*record(nil), e.tables["invoice_line_items"].children[idOf(obj)]...) {
			e.tables["invoice_line_items"].remove(r.id)
		}
		// Its invoice items go back to pending.
		it := e.tables["invoiceitems"]
		for _, r := range append([]*record(nil), it.byCustomer[getStr(obj, "customer")]...) {
			if v, _ := it.keyOf(r, "invoice"); v == idOf(obj) {
				ii, _ := decodeObject(r.raw)
				ii["invoice"] = nil
				e.store(kInvoiceItem, ii)
			}
		}
		return e.deleteObject(c, kInvoice, obj), nil
	}
	crud(kInvoice, "crudl")
	handle("GET", "/v1/invoices/{invoice}/lines", func(e *Emulator, c *reqCtx) (any, *apiError) {
		id := c.path["invoice"]
		if e.tables["invoices"].byID[id] == nil {
			return nil, notFound("invoice", "invoice", id)
		}
		return e.listChildren(c, kLine, id, "/v1/invoices/"+id+"/lines")
	})
	handle("POST", "/v1/invoices/{invoice}/lines/{line_item_id}", updateLine)
	handle("POST", "/v1/invoices/{invoice}/finalize", invoiceAction("finalize"))
	handle("POST", "/v1/invoices/{invoice}/pay", invoiceAction("pay"))
	handle("POST", "/v1/invoices/{invoice}/void", invoiceAction("void"))
	handle("POST", "/v1/invoices/{invoice}/mark_uncollectible", invoiceAction("mark_uncollectible"))
	handle("POST", "/v1/invoices/{invoice}/send", invoiceAction("send"))
	handle("GET", "/v1/invoices/upcoming", upcomingInvoice(false))
	handle("GET", "/v1/invoices/upcoming/lines", upcomingInvoice(true))

	// invoice items
	kInvoiceItem.create = createInvoiceItem
	kInvoiceItem.del = func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kInvoiceItem, c.path["invoiceitem"])
		if obj == nil {
			return nil, notFound("invoiceitem", "invoiceitem", c.path["invoiceitem"])
		}
		if inv := getStr(obj, "invoice"); inv != "" {
			io := e.load(kInvoice, inv)
			if io != nil && getStr(io, "status") != "draft" {
				return nil, invalid("", "", "You cannot delete an invoice item that is attached to a finalized invoice.")
			}
			if io != nil {
				for _, r := range e.tables["invoice_line_items"].children[inv] {
					if m, _ := decodeObject(r.raw); m != nil && getStr(m, "invoice_item") == idOf(obj) {
						e.tables["invoice_line_items"].remove(r.id)
						break
					}
				}
				e.recalcInvoice(c, io, true)
			}
		}
		return e.deleteObject(c, kInvoiceItem, obj), nil
	}
	kInvoiceItem.update = func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
		inv := getStr(obj, "invoice")
		var io map[string]any
		if inv != "" {
			if io = e.load(kInvoice, inv); io != nil && getStr(io, "status") != "draft" {
				return invalid("invoice_not_editable", "", "You can only update invoice items on draft invoices.")
			}
		}
		obj["tax_rates"] = old["tax_rates"] // applyParams may have nulled it ("")
		if ae := e.setTaxRates(obj, "tax_rates", c.params, "tax_rates"); ae != nil {
			return ae
		}
		if ae := exclusiveAmount(c.params, "unit_amount", "unit_amount_decimal", ""); ae != nil {
			return ae
		}
		// applyParams left the param's field new and its twin old.
		unit := unitOf(old, "unit_amount", "unit_amount_decimal")
		_, newUnit := c.params["unit_amount"]
		if newUnit {
			unit = unitOf(obj, "unit_amount", "")
		} else if d, _ := c.params["unit_amount_decimal"].(string); d != "" {
			unit, newUnit = unitOf(obj, "", "unit_amount_decimal"), true
		}
		if unit == nil {
			unit = new(big.Rat)
		}
		if newUnit {
			setUnit(obj, "unit_amount", "unit_amount_decimal", unit)
		}
		if _, ok := c.params["amount"]; !ok {
			if _, q := c.params["quantity"]; q || newUnit {
				obj["amount"] = lineAmount(unit, getInt(obj, "quantity"))
			}
		}
		if io == nil {
			return nil
		}
		// The draft invoice's line follows its item.
		for _, r := range e.tables["invoice_line_items"].children[inv] {
			line, _ := decodeObject(r.raw)
			if getStr(line, "invoice_item") != idOf(obj) {
				continue
			}
			line["amount"], line["amount_excluding_tax"] = obj["amount"], obj["amount"]
			line["quantity"], line["description"] = obj["quantity"], obj["description"]
			line["discountable"] = obj["discountable"] != false
			line["unit_amount_excluding_tax"] = itemUnitString(obj)
			line["tax_rates"] = orEmpty(obj["tax_rates"])
			e.store(kLine, line)
			break
		}
		e.recalcInvoice(c, io, true)
		return nil
	}
	crud(kInvoiceItem, "crud")
	handle("GET", "/v1/invoiceitems", genericList(kInvoiceItem, func(c *reqCtx, t *table) (func(*record) bool, *apiError) {
		p, ok := c.params["pending"].(bool)
		if !ok {
			return nil, nil
		}
		return func(r *record) bool { v, _ := t.keyOf(r, "invoice"); return (v == "") == p }, nil
	}))

	// events
	handle("GET", "/v1/events", listEvents)
	handle("GET", "/v1/events/{id}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		r := e.tables["events"].byID[c.path["id"]]
		if r == nil || !e.eventListed(r) {
			return nil, notFound("id", "event", c.path["id"])
		}
		return e.render(kEvent, r.raw, c)
	})
}

func intOr(v any, d int64) int64 {
	if n, ok := toInt(v); ok {
		return n
	}
	return d
}

func strOr(v any, d string) string {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	return d
}

// fillAmountDecimal sets the integer field and its decimal twin from
// whichever the request gave (a price's unit_amount or
// unit_amount_decimal, a plan's amount or amount_decimal): "12.50" is
// kept as 12.5 with no integer, "1500" or 1500 as both.
func fillAmountDecimal(obj map[string]any, intField, decField string) {
	if _, ok := toInt(obj[intField]); ok {
		obj[decField] = nil // the integer wins: unitOf reads the decimal first
	}
	if u := unitOf(obj, intField, decField); u != nil {
		setUnit(obj, intField, decField, u)
	} else {
		obj[intField], obj[decField] = nil, nil
	}
}

// inSet filters by membership in an array param (ids[], lookup_keys[]).
func inSet(v any, key func(*record) string) func(*record) bool {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil
	}
	set := map[string]bool{}
	for _, x := range arr {
		set[fmt.Sprint(x)] = true
	}
	return func(r *record) bool { return set[key(r)] }
}

// setProduct resolves `product` (an id) or `product_data` / `product[...]`
// (an inline product, created on the fly like Stripe does).
func (e *Emulator) setProduct(c *reqCtx, obj map[string]any) *apiError {
	switch p := c.params["product"].(type) {
	case string:
		if ae := e.mustExist("products", "product", p); ae != nil {
			return ae
		}
		obj["product"] = p
		return nil
	case map[string]any:
		return e.inlineProduct(c, obj, p)
	}
	if pd, ok := c.params["product_data"].(map[string]any); ok {
		return e.inlineProduct(c, obj, pd)
	}
	return missing("product")
}

func (e *Emulator) inlineProduct(c *reqCtx, obj map[string]any, data map[string]any) *apiError {
	prod := e.newObject(kProduct, c.now, c.live)
	e.applyParams("product", prod, data)
	if id, ok := data["id"].(string); ok && id != "" {
		prod["id"] = id
	}
	e.store(kProduct, prod)
	e.emit(c, "product.created", prod, nil)
	obj["product"] = idOf(prod)
	return nil
}

// refusedCard is the card error of a customer request whose param
// (payment_method, source) saves a card that can't be attached to a
// customer (attachDecline). A source that saves is a card (sources.go).
func (e *Emulator) refusedCard(c *reqCtx, param string) *apiError {
	if id, _ := c.params[param].(string); id != "" {
		if d := e.attachDecline(id); d != nil {
			return d.err("")
		}
	}
	return nil
}

// checkDefaultPM refuses an invoice_settings.default_payment_method that
// isn't attached to the customer, as Stripe does. attaching is a payment
// method the same create request attaches. A card the customer saved is
// one of its payment methods (cardpm.go), so it may be the default.
func (e *Emulator) checkDefaultPM(cus map[string]any, attaching string) *apiError {
	is, _ := cus["invoice_settings"].(map[string]any)
	pm := getStr(is, "default_payment_method")
	if pm == "" || pm == attaching {
		return nil
	}
	return e.customersPM(idOf(cus), pm, "invoice_settings[default_payment_method]")
}

// customersPM refuses payment method pm, given as param, unless it is
// attached to customer cus: a subscription's or invoice's
// default_payment_method "must belong to the customer associated with"
// it (spec, POST /v1/subscriptions and /v1/invoices), and Stripe answers
// an unknown id and another customer's (or nobody's) alike as for the
// customer's own default. A card the customer saved is one of its
// payment methods (cardpm.go).
//
// One of Stripe's test payment methods (pm_card_visa, ...) is refused
// too: Stripe makes a new PaymentMethod of it at each use, attached to
// no one, and names that one ("The customer does not have a payment
// method with the ID pm_1…", as integrations that set a pm_card_ id
// where an attached one is needed record it). The new one is not kept
// here: nothing can use or list it. A test card is attached first
// (POST /v1/payment_methods/pm_card_visa/attach, or a customer created
// with payment_method), and the attached copy's id used (testPMClone).
func (e *Emulator) customersPM(cus, pm, param string) *apiError {
	if e.isTestPM(pm) {
		return notCustomersPM(e.newID(kPM.prefix), param)
	}
	obj := e.load(kPM, pm)
	if obj == nil && strings.HasPrefix(pm, kCard.prefix) {
		obj = e.load(kCard, pm)
	}
	if obj == nil {
		return e.mustExist("payment_methods", param, pm)
	}
	if getStr(obj, "customer") != cus {
		return notCustomersPM(pm, param)
	}
	return nil
}

// notCustomersPM is Stripe's refusal of a payment method that is not
// attached to the customer it is to be a default of.
func notCustomersPM(pm, param string) *apiError {
	return invalid("resource_missing", param, "The customer does not have a payment method with the ID %s. The payment method must be attached to the customer.", pm)
}

// isTestPM says whether pm is one of Stripe's test payment methods, not
// stored (cardFacts): pm_card_ followed by a test token's name, or a
// declining test card's id.
func (e *Emulator) isTestPM(pm string) bool {
	rest, ok := strings.CutPrefix(pm, "pm_card_")
	if !ok || e.tables["payment_methods"].byID[pm] != nil {
		return false
	}
	_, tok := testTokens["tok_"+rest]
	return tok || declineByID[pm] != nil
}

// checkParamPM is customersPM for the default_payment_method a
// subscription or invoice request sets (not one it unsets with "").
func (e *Emulator) checkParamPM(c *reqCtx, cus string) *apiError {
	pm, _ := c.params["default_payment_method"].(string)
	if pm == "" {
		return nil
	}
	return e.customersPM(cus, pm, "default_payment_method")
}

// checkSchedulePMs is checkParamPM for a subscription schedule of
// customer cus: default_settings[default_payment_method] and each
// phases[i][default_payment_method] become its subscription's
// default_payment_method, so they are held to the same rule (spec,
// subscription_schedule_phase_configuration.default_payment_method: "It
// must belong to the customer associated with the subscription
// schedule"; default_settings' is the same default one level up).
func (e *Emulator) checkSchedulePMs(c *reqCtx, cus string) *apiError {
	if ds, ok := c.params["default_settings"].(map[string]any); ok {
		if pm, _ := ds["default_payment_method"].(string); pm != "" {
			if ae := e.customersPM(cus, pm, "default_settings[default_payment_method]"); ae != nil {
				return ae
			}
		}
	}
	phases, _ := c.params["phases"].([]any)
	for i, raw := range phases {
		p, _ := raw.(map[string]any)
		if pm, _ := p["default_payment_method"].(string); pm != "" {
			if ae := e.customersPM(cus, pm, fmt.Sprintf("phases[%d][default_payment_method]", i)); ae != nil {
				return ae
			}
		}
	}
	return nil
}

// setCustomerCurrency gives a customer its billing currency when its first
// subscription or invoice item sets one (a new customer's is null).
func (e *Emulator) setCustomerCurrency(c *reqCtx, cus, cur string) {
	obj := e.load(kCustomer, cus)
	if obj == nil || cur == "" || getStr(obj, "currency") != "" {
		return
	}
	old := deepCopy(obj).(map[string]any)
	obj["currency"] = cur
	e.save(c, kCustomer, obj, old, "customer.updated")
}

func deleteCustomer(e *Emulator, c *reqCtx) (any, *apiError) {
	id := c.path["customer"]
	obj := e.load(kCustomer, id)
	if obj == nil {
		return nil, notFound("id", "customer", id)
	}
	return e.removeCustomer(c, obj), nil
}

// removeCustomer deletes a customer; its subscriptions are canceled at
// once. Its tax ids go with it: in 2023-10-16 only a customer owns them,
// and they are read only through /v1/customers/{customer}/tax_ids, which
// answers 404 for a deleted customer. Stripe documents no
// customer.tax_id.deleted for this, so none is sent. Its payment methods
// stay, still attached (retrievable by id, with their events), but are on
// no list any more.
func (e *Emulator) removeCustomer(c *reqCtx, obj map[string]any) map[string]any {
	id := idOf(obj)
	tx := e.tables["tax_ids"]
	for _, r := range append([]*record(nil), tx.byCustomer[id]...) {
		tx.remove(r.id)
		e.tombstones[r.id], _ = marshal(map[string]any{"id": r.id, "object": kTaxID.object, "deleted": true})
	}
	t := e.tables["subscriptions"]
	var subs []string
	for _, r := range t.byCustomer[id] {
		if st, _ := t.keyOf(r, "_status"); st != "canceled" && st != "incomplete_expired" {
			subs = append(subs, r.id)
		}
	}
	for _, sid := range subs {
		sub := e.load(kSub, sid)
		old := deepCopy(sub).(map[string]any)
		sub["status"], sub["canceled_at"], sub["ended_at"] = "canceled", c.now, c.now
		e.save(c, kSub, sub, nil, "")
		e.emit(c, "customer.subscription.deleted", sub, diff(old, sub))
	}
	if len(subs) > 0 {
		e.stopCollection(c, id)
	}
	e.removeCustomerCards(c, id)
	return e.deleteObject(c, kCustomer, obj)
}

// --- subscription schedules ---

func createSchedule(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
	obj["end_behavior"] = strOr(c.params["end_behavior"], "release")
	obj["phases"] = []any{}
	obj["current_phase"] = nil
	obj["subscription"], obj["released_subscription"] = nil, nil
	if from, ok := c.params["from_subscription"].(string); ok {
		sub := e.load(kSub, from)
		if sub == nil {
			return e.mustExist("subscriptions", "from_subscription", from)
		}
		if _, ok := c.params["phases"]; ok {
			return invalid("", "phases", "You cannot set `phases` if `from_subscription` is set.")
		}
		// One phase: the subscription's current period and items.
		var items []any
		for _, r := range e.tables["subscription_items"].children[from] {
			it, _ := decodeObject(r.raw)
			items = append(items, map[string]any{"price": getStr(it, "price"), "quantity": it["quantity"], "tax_rates": taxRateIDs(it["tax_rates"])})
		}
		phases, ae := e.schedulePhases(c, []any{map[string]any{"items": items, "end_date": getInt(sub, "current_period_end"),
			"default_tax_rates": taxRateIDs(sub["default_tax_rates"])}}, getInt(sub, "current_period_start"))
		if ae != nil {
			return ae
		}
		if ae := e.checkSchedulePMs(c, getStr(sub, "customer")); ae != nil {
			return ae
		}
		obj["customer"] = sub["customer"]
		obj["phases"] = phases
		obj["subscription"] = from
		obj["status"] = "active"
		setCurrentPhase(obj, c.now)
		old := deepCopy(sub).(map[string]any)
		sub["schedule"] = idOf(obj)
		e.save(c, kSub, sub, old, "customer.subscription.updated")
		return nil
	}
	cus := getStr(obj, "customer")
	if cus == "" {
		return missing("customer")
	}
	if ae := e.mustExist("customers", "customer", cus); ae != nil {
		return ae
	}
	if ae := e.checkSchedulePMs(c, cus); ae != nil {
		return ae
	}
	start := c.now
	switch v := c.params["start_date"].(type) {
	case string:
		if v != "now" {
			return invalid("parameter_invalid_integer", "start_date", "Invalid start_date: must be an integer or `now`")
		}
	case nil:
	default:
		if n, ok := toInt(v); ok {
			start = n
		}
	}
	ph, _ := c.params["phases"].([]any)
	if len(ph) == 0 {
		return missing("phases")
	}
	phases, ae := e.schedulePhases(c, ph, start)
	if ae != nil {
		return ae
	}
	obj["phases"] = phases
	obj["status"] = "not_started"
	if start <= c.now {
		// The schedule starts at once: it creates its subscription.
		return e.startSchedule(c, obj)
	}
	return nil
}

// startSchedule creates the subscription of a schedule that starts at
// c.now and makes the schedule active. The subscription follows the phase
// current at c.now, which is not the first one when the phases were laid
// out from a date in the past.
func (e *Emulator) startSchedule(c *reqCtx, obj map[string]any) *apiError {
	phases, _ := obj["phases"].([]any)
	first := phases[max(phaseAt(phases, c.now), 0)].(map[string]any)
	var items []any
	for _, it := range first["items"].([]any) {
		m := it.(map[string]any)
		items = append(items, map[string]any{"price": m["price"], "quantity": m["quantity"], "tax_rates": taxRateIDs(m["tax_rates"]),
			"metadata": m["metadata"]})
	}
	params := map[string]any{"customer": getStr(obj, "customer"), "items": items, "default_tax_rates": taxRateIDs(first["default_tax_rates"])}
	for k, v := range phaseSettings(first) {
		params[k] = v
	}
	if md, _ := first["metadata"].(map[string]any); len(md) > 0 {
		params["metadata"] = md
	}
	sc := &reqCtx{r: c.r, route: &route{verb: "POST", path: "/v1/subscriptions"}, live: c.live, now: c.now, wall: c.wallTime(), requestID: c.requestID,
		schedule: idOf(obj), params: params}
	if _, ae := genericCreate(kSub)(e, sc); ae != nil {
		return ae
	}
	obj["subscription"] = idOf(sc.result)
	obj["status"] = "active"
	setCurrentPhase(obj, c.now)
	return nil
}

// phaseSettings are the subscription fields a phase sets beyond items,
// tax rates and metadata; a phase that leaves one unset leaves the
// subscription's as it is (the schedule's default_settings are not
// modelled).
func phaseSettings(ph map[string]any) map[string]any {
	out := map[string]any{}
	if cm := getStr(ph, "collection_method"); cm != "" {
		out["collection_method"] = cm
	}
	if d := getStr(ph, "description"); d != "" {
		out["description"] = d
	}
	if is, _ := ph["invoice_settings"].(map[string]any); is != nil && is["days_until_due"] != nil {
		out["days_until_due"] = is["days_until_due"]
	}
	return out
}

// applyPhase makes a schedule's subscription what phase ph says, as
// Stripe does when the phase is entered or the current phase is updated:
// an item whose price the phase keeps keeps its id and takes the phase's
// quantity, tax rates and metadata; items of prices the phase drops are
// deleted and those it adds created, as a subscription update with
// items[] would; then default tax rates, metadata (spec, phases[].metadata:
// "Metadata on a schedule's phase will update the underlying
// subscription's metadata when the phase is entered") and the phase's
// collection settings. Item changes are prorated at c.now as behavior
// (a proration_behavior) says (prorate); always_invoice's invoice becomes
// the subscription's latest_invoice. Everything is checked before
// anything is stored; customer.subscription.updated follows when
// anything changed.
func (e *Emulator) applyPhase(c *reqCtx, sub map[string]any, phases []any, idx int, behavior string) *apiError {
	ph := phases[idx].(map[string]any)
	sid := idOf(sub)
	old := deepCopy(sub).(map[string]any)
	var existing []map[string]any
	for _, r := range e.tables["subscription_items"].children[sid] {
		it, _ := decodeObject(r.raw)
		existing = append(existing, it)
	}
	kept := make([]bool, len(existing))
	var put []map[string]any
	var changes []itemChange
	phItems, _ := ph["items"].([]any)
	for i, x := range phItems {
		m, _ := x.(map[string]any)
		pid := getStr(m, "price")
		var it map[string]any
		for j, ex := range existing {
			if !kept[j] && idOfAny(ex["price"]) == pid {
				kept[j], it = true, ex
				break
			}
		}
		changed := it == nil
		if it == nil {
			n, ae := e.newSubItem(c, sid, map[string]any{"price": pid}, fmt.Sprintf("phases[%d][items][%d]", idx, i))
			if ae != nil {
				return ae
			}
			it = n
		}
		before := normalize(it)
		var was map[string]any
		if !changed {
			was = deepCopy(it).(map[string]any)
		}
		it["quantity"] = intOr(m["quantity"], 1)
		it["tax_rates"] = orEmpty(m["tax_rates"])
		it["metadata"] = mergeMetadata(deepCopy(it["metadata"]), m["metadata"])
		if changed || !reflect.DeepEqual(before, normalize(it)) {
			put = append(put, it)
			changes = append(changes, itemChange{before: was, after: it})
		}
	}
	var del []string
	for j, ex := range existing {
		if !kept[j] {
			del = append(del, idOf(ex))
			changes = append(changes, itemChange{before: ex})
		}
	}
	// A phase of another billing period resets the cycle as an update
	// would (a phase's billing_cycle_anchor=automatic; phase_start is not
	// modelled).
	pr := proration{behavior: behavior, at: c.now, ctx: c}
	if ae := pr.checkReset(sub, existing, e.itemsAfter(sid, put, del)); ae != nil {
		return ae
	}
	// "A schedule phase change discards a pending update and voids the
	// associated invoice" (pending updates), before the phase applies.
	if pendingOf(sub) != nil {
		e.discardPending(c, sub, "customer.subscription.pending_update_expired")
		old["pending_update"] = nil
	}
	for _, it := range put {
		e.store(kSubItem, it)
	}
	for _, id := range del {
		e.tables["subscription_items"].remove(id)
	}
	sub["default_tax_rates"] = orEmpty(ph["default_tax_rates"])
	sub["metadata"] = mergeMetadata(deepCopy(sub["metadata"]), ph["metadata"])
	for k, v := range phaseSettings(ph) {
		sub[k] = v
	}
	sub["items"] = e.childList(kSubItem, sid, "/v1/subscription_items?subscription="+sid)
	if inv := e.billChange(pr, sub, existing, changes); inv != nil {
		sub["latest_invoice"] = idOf(inv)
	}
	prev := diff(old, sub)
	if len(prev) == 0 && len(put)+len(del) > 0 {
		// An item change past the embedded first page: as afterItemsChange.
		prev = map[string]any{"items": old["items"]}
	}
	e.store(kSub, sub)
	if len(prev) > 0 {
		e.emit(c, "customer.subscription.updated", sub, prev)
	}
	return nil
}

// phaseAt is the index of the phase under way at t, or -1.
func phaseAt(phases []any, t int64) int {
	for i, p := range phases {
		ph, _ := p.(map[string]any)
		if getInt(ph, "start_date") <= t && t < getInt(ph, "end_date") {
			return i
		}
	}
	return -1
}

// scheduleNow is "now" for a schedule: its test clock's frozen time if it
// has one (its phases are laid out on that time), else c.now.
func (e *Emulator) scheduleNow(c *reqCtx, obj map[string]any) int64 {
	if ck := getStr(obj, "test_clock"); ck != "" {
		if clock := e.load(kClock, ck); clock != nil {
			return getInt(clock, "frozen_time")
		}
	}
	return c.now
}

// endSchedule ends a schedule at c.now: act "release" leaves its
// subscription running on its own, "cancel" cancels it with the schedule,
// and "complete" is the last phase ending with end_behavior=cancel: the
// subscription is canceled and the schedule completed. Returns the
// schedule's event type.
func (e *Emulator) endSchedule(c *reqCtx, obj map[string]any, act string) string {
	if sid := getStr(obj, "subscription"); sid != "" {
		if sub := e.load(kSub, sid); sub != nil && getStr(sub, "status") != "canceled" {
			so := deepCopy(sub).(map[string]any)
			sub["schedule"] = nil
			ev := "customer.subscription.updated"
			if act != "release" {
				sub["status"], sub["canceled_at"], sub["ended_at"] = "canceled", c.now, c.now
				ev = "customer.subscription.deleted"
			}
			e.save(c, kSub, sub, so, ev)
			if act != "release" {
				e.stopCollection(c, getStr(sub, "customer"))
			}
		}
	}
	obj["current_phase"] = nil
	switch act {
	case "cancel":
		obj["status"], obj["canceled_at"] = "canceled", c.now
		return "subscription_schedule.canceled"
	case "complete":
		obj["status"], obj["completed_at"] = "completed", c.now
		return "subscription_schedule.completed"
	}
	obj["status"], obj["released_at"] = "released", c.now
	obj["released_subscription"] = obj["subscription"]
	obj["subscription"] = nil
	return "subscription_schedule.released"
}

// advanceSchedule takes schedule id over its next boundary if that is at
// or before to (advanceBilling, clocks.go, calls it in time order with
// the other steps of a clock): a schedule starts at its first phase's
// start_date, enters the next phase at a phase's end_date (the phase is
// applied to the subscription, subscription_schedule.updated), and past
// its last phase ends as end_behavior says (release: released; cancel:
// the subscription is canceled and the schedule completed). False when
// there is no boundary to take.
func (e *Emulator) advanceSchedule(c *reqCtx, id string, to int64) bool {
	obj := e.load(kSchedule, id)
	if obj == nil {
		return false
	}
	phases, _ := obj["phases"].([]any)
	if len(phases) == 0 {
		return false
	}
	old := deepCopy(obj).(map[string]any)
	at := func(ts int64) *reqCtx {
		sc := *c
		sc.now, sc.wall = ts, c.wallTime()
		return &sc
	}
	switch getStr(obj, "status") {
	case "not_started":
		start := getInt(phases[0].(map[string]any), "start_date")
		if start > to {
			return false
		}
		sc := at(start)
		if ae := e.startSchedule(sc, obj); ae != nil {
			return false
		}
		e.save(sc, kSchedule, obj, old, "subscription_schedule.updated")
		return true
	case "active":
		cp, _ := obj["current_phase"].(map[string]any)
		if cp == nil {
			return false
		}
		cur := phaseAt(phases, getInt(cp, "start_date"))
		if cur < 0 {
			return false
		}
		end := getInt(phases[cur].(map[string]any), "end_date")
		if end > to {
			return false
		}
		sc := at(end)
		if cur+1 == len(phases) {
			act := "release"
			if getStr(obj, "end_behavior") == "cancel" {
				act = "complete"
			}
			e.save(sc, kSchedule, obj, old, e.endSchedule(sc, obj, act))
			return false
		}
		setCurrentPhase(obj, end)
		if sub := e.load(kSub, getStr(obj, "subscription")); sub != nil && getStr(sub, "status") != "canceled" {
			// Checked when the phases were set (schedulePhases), so
			// entering one can't be refused.
			// Spec, phases[].proration_behavior: "Whether the
			// subscription schedule will create prorations when
			// transitioning to this phase. The default value is
			// `create_prorations`."
			e.applyPhase(sc, sub, phases, cur+1, strOr(phases[cur+1].(map[string]any)["proration_behavior"], "create_prorations"))
		}
		e.save(sc, kSchedule, obj, old, "subscription_schedule.updated")
		return true
	}
	return false
}

// schedulePhases turns phase params into phase objects laid end to end
// from start.
func (e *Emulator) schedulePhases(c *reqCtx, params []any, start int64) ([]any, *apiError) {
	tmpl, _ := e.api.fixture("subscription_schedule")["phases"].([]any)
	var out []any
	for i, raw := range params {
		p, _ := raw.(map[string]any)
		ph := map[string]any{}
		if len(tmpl) > 0 {
			ph = deepCopy(tmpl[0]).(map[string]any)
		}
		itemsIn, _ := p["items"].([]any)
		if len(itemsIn) == 0 {
			return nil, missing(fmt.Sprintf("phases[%d][items]", i))
		}
		var items []any
		var prices []map[string]any
		for j, x := range itemsIn {
			m, _ := x.(map[string]any)
			pid, _ := m["price"].(string)
			price := e.load(kPrice, pid)
			if price == nil {
				return nil, e.mustExist("prices", fmt.Sprintf("phases[%d][items][%d][price]", i, j), pid)
			}
			// Checked here, not when the phase is entered: a phase's
			// items become subscription items, which take recurring
			// prices only (one-time ones go in add_invoice_items).
			if ae := recurringOnly(price, fmt.Sprintf("phases[%d][items][%d][price]", i, j)); ae != nil {
				return nil, ae
			}
			prices = append(prices, price)
			rates, ae := e.taxRates(m["tax_rates"], fmt.Sprintf("phases[%d][items][%d][tax_rates]", i, j))
			if ae != nil {
				return nil, ae
			}
			items = append(items, map[string]any{"billing_thresholds": nil, "metadata": mergeMetadata(nil, m["metadata"]), "price": pid,
				"quantity": intOr(m["quantity"], 1), "tax_rates": rates})
		}
		if mismatchedPrices(prices) != "" {
			return nil, invalid("", fmt.Sprintf("phases[%d][items]", i), "For a particular phase, all of its `plans` must have the same `interval`, `interval_count`, and `currency`.")
		}
		first := prices[0]
		defaults, ae := e.taxRates(p["default_tax_rates"], fmt.Sprintf("phases[%d][default_tax_rates]", i))
		if ae != nil {
			return nil, ae
		}
		if v, ok := p["start_date"]; ok && i == 0 {
			if n, ok := toInt(v); ok {
				start = n
			}
		}
		end := start
		if n, ok := toInt(p["end_date"]); ok {
			end = n
		} else {
			for k := int64(0); k < intOr(p["iterations"], 1); k++ {
				end = cycleEnd(end, start, first)
			}
		}
		if end <= start {
			return nil, invalid("", fmt.Sprintf("phases[%d][end_date]", i), "The end_date of a phase must be after its start date.")
		}
		ph["items"] = items
		ph["default_tax_rates"] = defaults
		ph["start_date"], ph["end_date"] = start, end
		ph["currency"] = first["currency"]
		ph["metadata"] = mergeMetadata(nil, p["metadata"])
		ph["trial_end"] = nil
		if n, ok := toInt(p["trial_end"]); ok {
			ph["trial_end"] = n
		}
		if pb, ok := p["proration_behavior"].(string); ok {
			ph["proration_behavior"] = pb
		}
		// The collection settings a phase hands to its subscription.
		if cm, ok := p["collection_method"].(string); ok && cm != "" {
			ph["collection_method"] = cm
		}
		if d, ok := p["description"].(string); ok && d != "" {
			ph["description"] = d
		}
		if is, ok := p["invoice_settings"].(map[string]any); ok {
			if n, ok := toInt(is["days_until_due"]); ok {
				ph["invoice_settings"] = map[string]any{"account_tax_ids": nil, "days_until_due": n, "issuer": map[string]any{"type": "self"}}
			}
		}
		out = append(out, ph)
		start = end
	}
	return out, nil
}

func setCurrentPhase(obj map[string]any, now int64) {
	obj["current_phase"] = nil
	phases, _ := obj["phases"].([]any)
	for _, p := range phases {
		ph, _ := p.(map[string]any)
		if getInt(ph, "start_date") <= now && now < getInt(ph, "end_date") {
			obj["current_phase"] = map[string]any{"start_date": ph["start_date"], "end_date": ph["end_date"]}
		}
	}
}

// --- subscriptions ---

func subscriptionFilter(c *reqCtx, t *table) (func(*record) bool, *apiError) {
	status, _ := c.params["status"].(string)
	price, _ := c.params["price"].(string)
	clocks := withoutClocks(c, t, "customer")
	return func(r *record) bool {
		if clocks != nil && !clocks(r) {
			return false
		}
		st := r.keys[1]
		switch status {
		case "":
			if st == "canceled" {
				return false
			}
		case "all":
		case "ended":
			if st != "canceled" && st != "incomplete_expired" {
				return false
			}
		default:
			if st != status {
				return false
			}
		}
		if price != "" && !strings.Contains(r.keys[2], " "+price+" ") {
			return false
		}
		return true
	}, nil
}

// periodEnd is the end of a period of price that starts at start, on
// the billing cycle anchored at start.
func periodEnd(start int64, price map[string]any) int64 {
	return cycleEnd(start, start, price)
}

// cycleEnd is the end of a period of price that starts at start, on the
// billing cycle of anchor: for month and year intervals on the anchor's
// day of the month, or the month's last day when it has fewer ("A monthly
// subscription with a billing cycle anchor date of January 31 bills the
// last day of the month closest to the anchor date, so February 28 (or
// February 29 in a leap year), then March 31, April 30, and so on",
// Stripe's docs, "Setting the subscription billing cycle date"). A chain
// of periods must pass the anchor on: from February 29 alone, March 29
// would be next. Go's AddDate would normalize January 31 plus a month to
// March 2.
func cycleEnd(start, anchor int64, price map[string]any) int64 {
	rec, _ := price["recurring"].(map[string]any)
	interval := "month"
	n := int64(1)
	if rec != nil {
		interval = strOr(rec["interval"], "month")
		n = intOr(rec["interval_count"], 1)
	}
	t := time.Unix(start, 0).UTC()
	months := int(n)
	switch interval {
	case "day":
		return t.AddDate(0, 0, int(n)).Unix()
	case "week":
		return t.AddDate(0, 0, 7*int(n)).Unix()
	case "year":
		months = 12 * int(n)
	}
	a := time.Unix(anchor, 0).UTC()
	first := time.Date(t.Year(), t.Month()+time.Month(months), 1, a.Hour(), a.Minute(), a.Second(), 0, time.UTC)
	last := first.AddDate(0, 1, -1).Day()
	return first.AddDate(0, 0, min(a.Day(), last)-1).Unix()
}

// newSubItem builds a subscription item from its params; prefix is where
// they sit in the request ("items[0]", or "" for POST
// /v1/subscription_items), for the param of an error.
func (e *Emulator) newSubItem(c *reqCtx, subID string, p map[string]any, prefix string) (map[string]any, *apiError) {
	it := e.newObject(kSubItem, c.now, c.live)
	e.applyParams(kSubItem.schema, it, p, "price", "subscription", "tax_rates")
	pid, _ := p["price"].(string)
	if pid == "" {
		pid, _ = p["plan"].(string)
	}
	if pid == "" {
		return nil, missing(subParam(prefix, "price"))
	}
	price := e.load(kPrice, pid)
	if price == nil {
		return nil, e.mustExist("prices", subParam(prefix, "price"), pid)
	}
	if ae := recurringOnly(price, subParam(prefix, "price")); ae != nil {
		return nil, ae
	}
	it["price"] = price
	it["subscription"] = subID
	it["quantity"] = intOr(p["quantity"], 1)
	it["tax_rates"] = []any{}
	if ae := e.setTaxRates(it, "tax_rates", p, subParam(prefix, "tax_rates")); ae != nil {
		return nil, ae
	}
	return it, nil
}

// orEmpty is v, or an empty list for none (Stripe answers [] where an
// object has no tax rates).
func orEmpty(v any) any {
	if v == nil {
		return []any{}
	}
	return v
}

// subParam names a request parameter nested under prefix, Stripe's way
// (items[0][price]).
func subParam(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "[" + name + "]"
}

// setTaxRates sets obj[field] to the tax rate objects whose ids the request
// gives in p[field] (param names that field in the request, for errors),
// as Stripe embeds them; "" clears them. An id that is not a tax rate is
// Stripe's resource_missing, and obj is left as it was. Tax itself is not
// computed (see doc.go): the rates are stored and returned only.
func (e *Emulator) setTaxRates(obj map[string]any, field string, p map[string]any, param string) *apiError {
	v, ok := p[field]
	if !ok {
		return nil
	}
	rates, ae := e.taxRates(v, param)
	if ae != nil {
		return ae
	}
	obj[field] = rates
	return nil
}

// taxRates resolves a tax rates param (ids, or "" for none) to the tax
// rate objects.
func (e *Emulator) taxRates(v any, param string) ([]any, *apiError) {
	rates := []any{}
	ids, _ := v.([]any)
	for i, x := range ids {
		id, _ := x.(string)
		txr := e.load(kTaxRate, id)
		if txr == nil {
			return nil, e.mustExist("tax_rates", fmt.Sprintf("%s[%d]", param, i), id)
		}
		rates = append(rates, txr)
	}
	return rates, nil
}

// taxRateIDs turns embedded tax rates back into the ids a request takes.
func taxRateIDs(v any) []any {
	ids := []any{}
	arr, _ := v.([]any)
	for _, x := range arr {
		if id := idOfAny(x); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// idOfAny is v if it is a string, else the id of the object v ("" for
// neither): a reference as stored, expanded or not.
func idOfAny(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		s, _ := x["id"].(string)
		return s
	}
	return ""
}

// recurringOnly refuses a one-time price where a subscription needs a
// recurring one, with Stripe's message.
func recurringOnly(price map[string]any, param string) *apiError {
	if getStr(price, "type") == "one_time" {
		return invalid("", param, "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.")
	}
	return nil
}

// Before flexible billing mode (API 2025-07-30: "Previously, all items on
// the same subscription needed to have the same interval", Stripe's
// changelog "Adds support for mixed intervals on the same subscription"),
// a subscription's recurring prices share one currency and one billing
// period, and Stripe refuses a request that would leave them mixed with
// "Currency and interval fields must match across all plans on this
// subscription. Found mismatch in interval field." (as reported in
// stripe/stripe-node#682, a monthly item updated to a yearly price; the
// "currency field" variant as others quote it). A schedule's phase is
// refused alike, with "For a particular phase, all of its `plans` must
// have the same `interval`, `interval_count`, and `currency`." (reported
// in YumaInaura/YumaInaura#2903). The sources found quote only the
// message: the param is the emulator's (the request's list of items, as
// the message is about all of them, not one), and so are the
// interval_count variant (taking "Found mismatch in <field> field" at its
// word) and the currency being checked first. A one-time price never
// gets here (recurringOnly), and usage_type is no part of it: a metered
// and a licensed price of one period mix.

// mismatchedPrices names the first field ("currency", "interval" or
// "interval_count") in which one of prices differs from the first, or "".
func mismatchedPrices(prices []map[string]any) string {
	if len(prices) == 0 {
		return ""
	}
	first, _ := prices[0]["recurring"].(map[string]any)
	for _, p := range prices[1:] {
		rec, _ := p["recurring"].(map[string]any)
		switch {
		case getStr(p, "currency") != getStr(prices[0], "currency"):
			return "currency"
		case strOr(rec["interval"], "month") != strOr(first["interval"], "month"):
			return "interval"
		case intOr(rec["interval_count"], 1) != intOr(first["interval_count"], 1):
			return "interval_count"
		}
	}
	return ""
}

// mixedItems refuses subscription items (as they will be once the request
// is applied) whose prices don't share a currency and billing period.
func mixedItems(items []map[string]any, param string) *apiError {
	prices := make([]map[string]any, 0, len(items))
	for _, it := range items {
		prices = append(prices, itemPrice(it))
	}
	if f := mismatchedPrices(prices); f != "" {
		return invalid("", param, "Currency and interval fields must match across all plans on this subscription. Found mismatch in %s field.", f)
	}
	return nil
}

func createSubscription(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
	cus := getStr(obj, "customer")
	customer := e.load(kCustomer, cus)
	if customer == nil {
		return &apiError{status: 400, Type: "invalid_request_error", Code: "resource_missing", Param: "customer", Message: fmt.Sprintf("No such customer: '%s'", cus)}
	}
	if ae := e.checkDefaultSource(c, cus); ae != nil {
		return ae
	}
	if ae := e.checkParamPM(c, cus); ae != nil {
		return ae
	}
	if c.params["payment_behavior"] == "pending_if_incomplete" {
		// "pending_if_incomplete is only used with updates and cannot be
		// passed when creating a Subscription" (Stripe's API reference).
		return invalid("", "payment_behavior", "payment_behavior=pending_if_incomplete is only used with updates and cannot be passed when creating a subscription.")
	}
	items, _ := c.params["items"].([]any)
	if len(items) == 0 {
		return missing("items")
	}
	sid := idOf(obj)
	var made []map[string]any
	for i, raw := range items {
		p, _ := raw.(map[string]any)
		it, ae := e.newSubItem(c, sid, p, fmt.Sprintf("items[%d]", i))
		if ae != nil {
			return ae
		}
		made = append(made, it)
	}
	if ae := mixedItems(made, "items"); ae != nil {
		return ae
	}
	obj["default_tax_rates"] = []any{}
	if ae := e.setTaxRates(obj, "default_tax_rates", c.params, "default_tax_rates"); ae != nil {
		return ae
	}
	first := made[0]["price"].(map[string]any)
	obj["currency"] = first["currency"]
	obj["start_date"], obj["billing_cycle_anchor"] = c.now, c.now
	obj["current_period_start"] = c.now
	obj["current_period_end"] = periodEnd(c.now, first)
	obj["status"] = "active"
	obj["cancel_at_period_end"] = false
	obj["cancellation_details"] = map[string]any{"comment": nil, "feedback": nil, "reason": nil}
	if c.schedule != "" {
		obj["schedule"] = c.schedule
	}
	if days, ok := toInt(c.params["trial_period_days"]); ok && days > 0 {
		obj["status"] = "trialing"
		obj["trial_start"], obj["trial_end"] = c.now, c.now+days*86400
	} else if te, ok := toInt(c.params["trial_end"]); ok && te > c.now {
		obj["status"] = "trialing"
		obj["trial_start"], obj["trial_end"] = c.now, te
	}
	if obj["status"] == "trialing" {
		// The anchor's "default value is either the subscription
		// creation date or the trial end date (if you're using a trial
		// period)" (Stripe's docs, "Setting the subscription billing
		// cycle date"): the periods after the trial fall on its day of
		// the month.
		obj["billing_cycle_anchor"] = obj["trial_end"]
		obj["current_period_end"] = obj["trial_end"]
	}
	ch, ae := e.discountParams(c, obj, cus, sid)
	if ae != nil {
		return ae
	}
	if ch != nil {
		obj["discount"] = ch.d
	}
	if c.params["payment_behavior"] == "error_if_incomplete" {
		if ae := e.firstPaymentFails(obj, made); ae != nil {
			return ae
		}
	}
	ch.apply(e, c, obj, true)
	e.setCustomerCurrency(c, cus, getStr(first, "currency"))
	for _, it := range made {
		e.store(kSubItem, it)
	}
	obj["items"] = e.childList(kSubItem, sid, "/v1/subscription_items?subscription="+sid)
	// The first invoice: created, finalized and (with a default payment
	// method) paid, as Stripe does for charge_automatically subscriptions.
	inv := e.subscriptionInvoice(c, obj, "subscription_create")
	e.consumeDiscount(c, inv, obj) // not stored yet: finalizing could not
	obj["latest_invoice"] = idOf(inv)
	// An unpaid first invoice leaves the subscription incomplete, except
	// for send_invoice, which Stripe activates regardless.
	if getStr(inv, "status") == "open" && getStr(obj, "status") == "active" && getInt(inv, "amount_due") > 0 && getStr(obj, "collection_method") != "send_invoice" {
		obj["status"] = "incomplete"
	}
	return nil
}

// firstPaymentFails answers what Stripe answers for
// payment_behavior=error_if_incomplete when the first invoice can't be
// paid (HTTP 402, and no subscription is created), before anything is
// stored: a charged first invoice (charge_automatically, an amount due
// after the customer's pending invoice items, discount and balance; a
// trial bills its items at 0 but not the pending items) with no payment
// method or a declining one.
func (e *Emulator) firstPaymentFails(sub map[string]any, items []map[string]any) *apiError {
	if strOr(sub["collection_method"], "charge_automatically") != "charge_automatically" {
		return nil
	}
	var amt int64
	var lines []map[string]any
	if getStr(sub, "status") != "trialing" {
		for _, it := range items {
			price, _ := it["price"].(map[string]any)
			lines = append(lines, map[string]any{"amount": lineAmount(priceUnit(price), intOr(it["quantity"], 1)),
				"currency": price["currency"], "price": price, "discountable": true})
		}
	}
	cus := getStr(sub, "customer")
	t := e.tables["invoiceitems"]
	for _, r := range t.byCustomer[cus] {
		if v, _ := t.keyOf(r, "invoice"); v != "" {
			continue
		}
		if ii, _ := decodeObject(r.raw); ii != nil && pendingFor(ii, idOf(sub)) {
			lines = append(lines, map[string]any{"amount": ii["amount"], "currency": ii["currency"], "price": ii["price"],
				"discountable": ii["discountable"] != false})
		}
	}
	for _, l := range lines {
		amt += getInt(l, "amount")
	}
	amt -= applyDiscount(map[string]any{"currency": sub["currency"]}, lines, e.invoiceDiscount(cus, sub, 0))
	if cu := e.load(kCustomer, cus); cu != nil && strOr(cu["currency"], "usd") == getStr(sub, "currency") {
		amt += getInt(cu, "balance")
	}
	if amt <= 0 {
		return nil
	}
	return e.chargeError(sub)
}

// chargeError is the card error a charge to sub's payment method gets:
// none to charge, or one that declines; nil when it would pay.
func (e *Emulator) chargeError(sub map[string]any) *apiError {
	pm := e.subscriptionPaymentMethod(sub)
	if pm == "" {
		return noPaymentMethodError()
	}
	if d := e.declineOf(pm); d != nil {
		return d.err("")
	}
	return nil
}

// subscriptionInvoice bills a subscription's items for its current period:
// its first invoice, created, finalized and (charge_automatically with a
// payment method) paid.
func (e *Emulator) subscriptionInvoice(c *reqCtx, sub map[string]any, reason string) map[string]any {
	start := getInt(sub, "current_period_start")
	inv := e.draftSubscriptionInvoice(c, sub, reason, start, start, true)
	inv, _ = e.finalizeInvoice(c, inv)
	// payment_behavior=default_incomplete leaves the first invoice open
	// for the client to confirm.
	if getInt(inv, "amount_due") > 0 && inv["collection_method"] == "charge_automatically" && c.params["payment_behavior"] != "default_incomplete" {
		if pm := e.subscriptionPaymentMethod(sub); pm != "" {
			inv, _ = e.payInvoice(c, inv, pm)
		}
	}
	return inv
}

// draftSubscriptionInvoice makes the draft invoice of a subscription's
// items for its current period (invoice.created): with items, a line per
// item, price × quantity (nothing while trialing), then the pending
// invoice items, with the subscription's or customer's discount and the
// tax rates as they are. periodStart and periodEnd are the invoice's own
// period: Stripe's "usage period during which invoice items were added",
// the period that just ended for a renewal, a point for a first invoice
// or a subscription_update one.
func (e *Emulator) draftSubscriptionInvoice(c *reqCtx, sub map[string]any, reason string, periodStart, periodEnd int64, items bool) map[string]any {
	inv := e.newObject(kInvoice, c.now, c.live)
	iid := idOf(inv)
	cus := getStr(sub, "customer")
	e.initInvoice(inv, cus, c.now)
	inv["subscription"] = idOf(sub)
	inv["billing_reason"] = reason
	inv["collection_method"] = strOr(sub["collection_method"], "charge_automatically")
	// Stripe collects a subscription's invoices itself (automatic
	// collection, retries): until that stops (stopCollection).
	inv["auto_advance"] = true
	if inv["collection_method"] == "send_invoice" {
		// Spec, subscription.days_until_due: "Number of days a customer
		// has to pay invoices generated by this subscription"; 30 as for
		// an invoice created without one.
		inv["due_date"] = c.now + intOr(sub["days_until_due"], 30)*86400
	}
	inv["period_start"], inv["period_end"] = periodStart, periodEnd
	inv["discount"] = e.invoiceDiscount(cus, sub, c.now)
	inv["default_tax_rates"] = orEmpty(sub["default_tax_rates"])
	trial := getStr(sub, "status") == "trialing"
	for _, r := range e.tables["subscription_items"].children[idOf(sub)] {
		if !items {
			break // prorations only (prorate)
		}
		it, _ := decodeObject(r.raw)
		price, _ := it["price"].(map[string]any)
		qty := intOr(it["quantity"], 1)
		amt := lineAmount(priceUnit(price), qty)
		if trial {
			amt = 0
		}
		line := e.newObject(kLine, c.now, c.live)
		line["invoice"] = iid
		line["type"] = "subscription"
		line["subscription"] = idOf(sub)
		line["subscription_item"] = r.id
		line["invoice_item"] = nil
		line["price"] = price
		line["quantity"] = qty
		line["amount"], line["amount_excluding_tax"] = amt, amt
		line["unit_amount_excluding_tax"] = formatDecimal(priceUnit(price))
		line["currency"] = price["currency"]
		line["description"] = fmt.Sprintf("%d × %s", qty, getStr(price, "product"))
		line["period"] = map[string]any{"start": sub["current_period_start"], "end": sub["current_period_end"]}
		line["discountable"], line["proration"] = true, false
		line["metadata"] = map[string]any{}
		line["tax_rates"] = orEmpty(it["tax_rates"])
		delete(line, "created")
		e.store(kLine, line)
	}
	// Prorations and other pending items go on the next invoice of the
	// subscription, its first one too (addPendingItems).
	e.addPendingItems(c, inv, sub)
	e.recalcInvoice(c, inv, false)
	e.store(kInvoice, inv)
	e.emit(c, "invoice.created", inv, nil)
	return inv
}

// subscriptionPaymentMethod is what a subscription's invoices are charged
// to: "the first available payment method in this list":
// subscription.default_payment_method, subscription.default_source,
// then the customer's (retryInvoice); "" if none.
func (e *Emulator) subscriptionPaymentMethod(sub map[string]any) string {
	if pm := getStr(sub, "default_payment_method"); pm != "" {
		return pm
	}
	if src := getStr(sub, "default_source"); src != "" {
		return src
	}
	return e.defaultPaymentMethod(getStr(sub, "customer"))
}

// noPaymentMethodError is Stripe's answer to charging a customer with no
// payment method to charge.
func noPaymentMethodError() *apiError {
	return &apiError{status: 402, Type: "card_error", Code: "invoice_payment_intent_requires_action",
		Message: "This customer has no attached payment source or default payment method."}
}

// endedSubscription refuses a change of the items of sub once it is over
// (canceled or incomplete_expired), as updateSubscription refuses one of
// the subscription: the item endpoints are another way to the same
// change ("You cannot update a subscription that is `canceled` or
// `incomplete_expired`.", as reported from Stripe's answers).
func endedSubscription(sub map[string]any) *apiError {
	if st := getStr(sub, "status"); st == "canceled" || st == "incomplete_expired" {
		return invalid("", "", "You cannot update a subscription that is `%s`: its items can't change.", st)
	}
	return nil
}

// updateSubItem is POST /v1/subscription_items/{item} on item it of sub.
func (e *Emulator) updateSubItem(c *reqCtx, sub, it map[string]any) (any, *apiError) {
	old := deepCopy(sub).(map[string]any)
	pr, ae := e.prorationOf(c, sub)
	if ae != nil {
		return nil, ae
	}
	before := deepCopy(it).(map[string]any)
	e.applyParams(kSubItem.schema, it, c.params, append(kSubItem.skip, "tax_rates")...)
	if ae := checkMetadataCount(it); ae != nil {
		return nil, ae
	}
	if ae := e.setTaxRates(it, "tax_rates", c.params, "tax_rates"); ae != nil {
		return nil, ae
	}
	if pid, ok := c.params["price"].(string); ok {
		p := e.load(kPrice, pid)
		if p == nil {
			return nil, e.mustExist("prices", "price", pid)
		}
		if ae := recurringOnly(p, "price"); ae != nil {
			return nil, ae
		}
		it["price"] = p
	}
	items := e.subItems(idOf(sub))
	after := e.itemsAfter(idOf(sub), []map[string]any{it}, nil)
	if ae := mixedItems(after, "price"); ae != nil {
		return nil, ae
	}
	if ae := pr.checkReset(sub, items, after); ae != nil {
		return nil, ae
	}
	r := e.store(kSubItem, it)
	e.prorateItems(pr, sub, items, itemChange{before: before, after: it})
	e.afterItemsChange(c, sub, old)
	return e.render(kSubItem, r.raw, c)
}

// changeSubscription applies an update of a subscription (its items,
// discount, tax rates, cycle) and bills it as the request says
// (billChange).
func changeSubscription(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
	// incomplete_expired is as final as canceled ("This is a terminal
	// state", spec, subscription.status), and Stripe refuses changes to
	// both alike ("You cannot update a subscription that is `canceled` or
	// `incomplete_expired`.", as reported from Stripe's answers).
	if st := getStr(old, "status"); st == "canceled" || st == "incomplete_expired" {
		// Stripe still accepts these two on a canceled subscription.
		for k := range c.params {
			if k != "metadata" && k != "cancellation_details" && k != "expand" {
				return invalid("", "", "A canceled subscription can only update its cancellation_details and metadata.")
			}
		}
		return nil
	}
	sid := idOf(obj)
	ch, ae := e.discountParams(c, obj, getStr(obj, "customer"), sid)
	if ae != nil {
		return ae
	}
	if ae := e.setTaxRates(obj, "default_tax_rates", c.params, "default_tax_rates"); ae != nil {
		return ae
	}
	pr, ae := e.prorationOf(c, obj)
	if ae != nil {
		return ae
	}
	tc, ae := trialChangeOf(c, old, pr.ctx.now)
	if ae != nil {
		return ae
	}
	items, _ := c.params["items"].([]any)
	// Every item is checked before any is stored: a request Stripe refuses
	// changes nothing, so a bad items[1] must not leave items[0] applied.
	var put []map[string]any
	var del []string
	var changes []itemChange
	for i, raw := range items {
		p, _ := raw.(map[string]any)
		id, _ := p["id"].(string)
		if id == "" {
			it, ae := e.newSubItem(c, sid, p, fmt.Sprintf("items[%d]", i))
			if ae != nil {
				return ae
			}
			put = append(put, it)
			changes = append(changes, itemChange{after: it})
			continue
		}
		it := e.load(kSubItem, id)
		if it == nil || getStr(it, "subscription") != sid {
			return &apiError{status: 400, Type: "invalid_request_error", Code: "resource_missing", Param: fmt.Sprintf("items[%d][id]", i), Message: fmt.Sprintf("No such subscription item: '%s'", id)}
		}
		if d, _ := p["deleted"].(bool); d {
			del = append(del, id)
			changes = append(changes, itemChange{before: it})
			continue
		}
		changes = append(changes, itemChange{before: deepCopy(it).(map[string]any), after: it})
		e.applyParams(kSubItem.schema, it, p, "price", "id", "subscription", "tax_rates")
		// An item's metadata is merged as the object's is, and held to
		// the same 50 keys.
		if md, _ := it["metadata"].(map[string]any); len(md) > maxMetadataKeys {
			return tooManyMetadataKeys(fmt.Sprintf("items[%d][metadata]", i), len(md))
		}
		if ae := e.setTaxRates(it, "tax_rates", p, fmt.Sprintf("items[%d][tax_rates]", i)); ae != nil {
			return ae
		}
		if pid, ok := p["price"].(string); ok {
			price := e.load(kPrice, pid)
			if price == nil {
				return e.mustExist("prices", fmt.Sprintf("items[%d][price]", i), pid)
			}
			if ae := recurringOnly(price, fmt.Sprintf("items[%d][price]", i)); ae != nil {
				return ae
			}
			it["price"] = price
		}
		put = append(put, it)
	}
	before := e.subItems(sid)
	after := e.itemsAfter(sid, put, del)
	if len(items) > 0 {
		if ae := mixedItems(after, "items"); ae != nil {
			return ae
		}
	}
	if ae := pr.checkReset(obj, before, after); ae != nil {
		return ae
	}
	for _, it := range put {
		e.store(kSubItem, it)
	}
	for _, id := range del {
		e.tables["subscription_items"].remove(id)
	}
	obj["items"] = e.childList(kSubItem, sid, "/v1/subscription_items?subscription="+sid)
	// The discount first: nothing below can refuse the update, and
	// prorations and a reset's invoice take the discount as this request
	// leaves it (prorationItem).
	ch.apply(e, c, obj, true)
	if inv := e.billChange(pr, obj, before, changes); inv != nil {
		obj["latest_invoice"] = idOf(inv)
	}
	// After the items: a trial ended now bills them as this request
	// leaves them (a trialing subscription's item change bills nothing).
	if inv := e.applyTrialChange(pr.ctx, obj, tc); inv != nil {
		obj["latest_invoice"] = idOf(inv)
	}
	if v, ok := c.params["cancel_at_period_end"].(bool); ok {
		if v {
			obj["cancel_at"] = obj["current_period_end"]
			obj["canceled_at"] = c.now
		} else {
			obj["cancel_at"], obj["canceled_at"] = nil, nil
		}
	}
	return nil
}

// afterItemsChange re-embeds a subscription's items and emits the
// subscription update that Stripe sends for item changes.
func (e *Emulator) afterItemsChange(c *reqCtx, sub, old map[string]any) {
	sid := idOf(sub)
	sub["items"] = e.childList(kSubItem, sid, "/v1/subscription_items?subscription="+sid)
	// Stripe sends the update for every item change, also one past the
	// embedded first page, where nothing embedded differs: without it
	// such an item would reach no event consumer.
	prev := diff(old, sub)
	if len(prev) == 0 {
		prev = map[string]any{"items": old["items"]}
	}
	e.store(kSub, sub)
	e.emit(c, "customer.subscription.updated", sub, prev)
}

func cancelSubscription(e *Emulator, c *reqCtx) (any, *apiError) {
	id := c.path["subscription_exposed_id"]
	obj := e.load(kSub, id)
	if obj == nil {
		return nil, notFound("subscription_exposed_id", "subscription", id)
	}
	if st := getStr(obj, "status"); st == "canceled" || st == "incomplete_expired" {
		// An expired one ended as a canceled one did (updateSubscription).
		return nil, invalid("", "", "This subscription has already been canceled.")
	}
	old := deepCopy(obj).(map[string]any)
	obj["status"], obj["canceled_at"], obj["ended_at"] = "canceled", c.now, c.now
	if cd, ok := c.params["cancellation_details"].(map[string]any); ok {
		obj["cancellation_details"] = map[string]any{"comment": cd["comment"], "feedback": cd["feedback"], "reason": "cancellation_requested"}
	} else {
		obj["cancellation_details"] = map[string]any{"comment": nil, "feedback": nil, "reason": "cancellation_requested"}
	}
	e.save(c, kSub, obj, old, "customer.subscription.deleted")
	e.stopCollection(c, getStr(obj, "customer"))
	return e.render(kSub, e.tables["subscriptions"].byID[id].raw, c)
}

// --- invoices ---

func (e *Emulator) initInvoice(inv map[string]any, cus string, now int64) {
	iid := idOf(inv)
	inv["customer"] = cus
	if cu := e.load(kCustomer, cus); cu != nil {
		e.copyCustomer(inv, cu)
		inv["currency"] = strOr(cu["currency"], "usd")
	}
	inv["status"] = "draft"
	inv["number"] = nil
	inv["paid"], inv["attempted"], inv["attempt_count"] = false, false, int64(0)
	inv["amount_paid"] = int64(0)
	inv["period_start"], inv["period_end"] = now, now
	inv["status_transitions"] = map[string]any{"finalized_at": nil, "marked_uncollectible_at": nil, "paid_at": nil, "voided_at": nil}
	inv["subscription"] = nil
	inv["subscription_details"] = map[string]any{"metadata": nil}
	inv["billing_reason"] = "manual"
	inv["auto_advance"] = false
	inv["hosted_invoice_url"], inv["invoice_pdf"] = nil, nil
	inv["lines"] = map[string]any{"object": "list", "data": []any{}, "has_more": false, "url": "/v1/invoices/" + iid + "/lines"}
}

// copyCustomer copies the customer's details an invoice shows. Stripe's
// spec: "Until the invoice is finalized, this field will equal
// customer.email. Once the invoice is finalized, this field will no
// longer be updated" (the same for customer_tax_exempt), and of
// customer_tax_ids: "Until the invoice is finalized, this field will
// contain the same tax IDs as customer.tax_ids", each as {type, value}
// (invoices_resource_invoice_tax_id).
func (e *Emulator) copyCustomer(inv, cu map[string]any) {
	inv["customer_email"], inv["customer_name"], inv["customer_phone"] = cu["email"], cu["name"], cu["phone"]
	inv["customer_address"], inv["customer_shipping"] = cu["address"], cu["shipping"]
	inv["customer_tax_exempt"] = cu["tax_exempt"]
	inv["customer_tax_ids"] = e.customerTaxIDs(idOf(cu))
	// Spec, starting_balance: "If the invoice has not been finalized yet,
	// this will be the current customer balance" (balance.go).
	inv["starting_balance"] = getInt(cu, "balance")
}

// customerTaxIDs lists a customer's tax ids as an invoice shows them, in
// the order of the customer's tax id list (newest first; Stripe documents
// no order for the invoice's copy). Sorted here, as byCustomer is not
// while seeding.
func (e *Emulator) customerTaxIDs(cus string) []any {
	rs := append([]*record(nil), e.tables["tax_ids"].byCustomer[cus]...)
	sort.Slice(rs, func(i, j int) bool { return less(rs[j], rs[i]) })
	out := make([]any, 0, len(rs))
	for _, r := range rs {
		if tx, err := decodeObject(r.raw); err == nil {
			out = append(out, map[string]any{"type": tx["type"], "value": tx["value"]})
		}
	}
	return out
}

// followCustomer updates the customer's details on its draft invoices, as
// Stripe does, without an invoice event (none is documented): after the
// customer changes, or one of its tax ids is added or deleted.
func (e *Emulator) followCustomer(cu map[string]any) {
	t := e.tables["invoices"]
	for _, r := range append([]*record(nil), t.byCustomer[idOf(cu)]...) {
		if st, _ := t.keyOf(r, "status"); st != "draft" {
			continue
		}
		inv, _ := decodeObject(r.raw)
		e.copyCustomer(inv, cu)
		setDue(inv)
		e.store(kInvoice, inv)
	}
}

func createInvoice(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
	cus, _ := c.params["customer"].(string)
	if cus == "" {
		return missing("customer")
	}
	if ae := e.mustExist("customers", "customer", cus); ae != nil {
		return ae
	}
	if ae := e.checkParamPM(c, cus); ae != nil {
		return ae
	}
	e.initInvoice(obj, cus, c.now)
	e.applyParams(kInvoice.schema, obj, c.params) // again: initInvoice reset what the params may set
	obj["default_tax_rates"] = []any{}
	if ae := e.setTaxRates(obj, "default_tax_rates", c.params, "default_tax_rates"); ae != nil {
		return ae
	}
	var sub map[string]any
	if s, ok := c.params["subscription"].(string); ok {
		if ae := e.mustExist("subscriptions", "subscription", s); ae != nil {
			return ae
		}
		sub = e.load(kSub, s)
	}
	if _, ok := c.params["default_tax_rates"]; !ok && sub != nil {
		// Stripe (spec, subscription.default_tax_rates): "Invoices created
		// will have their default_tax_rates populated from the
		// subscription."
		obj["default_tax_rates"] = orEmpty(sub["default_tax_rates"])
	}
	obj["discount"] = e.invoiceDiscount(cus, sub, c.now)
	obj["auto_advance"] = getBool(c.params, "auto_advance")
	if getStr(obj, "collection_method") == "send_invoice" && obj["due_date"] == nil {
		obj["due_date"] = c.now + 30*86400
	}
	if strOr(c.params["pending_invoice_items_behavior"], "exclude") == "include" {
		t := e.tables["invoiceitems"]
		for _, r := range append([]*record(nil), t.byCustomer[cus]...) {
			if v, _ := t.keyOf(r, "invoice"); v != "" {
				continue
			}
			ii, _ := decodeObject(r.raw)
			if sub != nil && getStr(ii, "subscription") != idOf(sub) {
				// Spec, subscription: "If set, the created invoice will
				// only include pending invoice items for that
				// subscription."
				continue
			}
			ii["invoice"] = idOf(obj)
			e.store(kInvoiceItem, ii)
			e.addItemLine(c, obj, ii)
		}
	}
	e.recalcInvoice(c, obj, false)
	return nil
}

// updateLine is POST /v1/invoices/{invoice}/lines/{line_item_id}. Stripe:
// "Updating an invoice's line item is only possible before the invoice is
// finalized", and fields that live on the invoice item too (amount,
// quantity, price, …) propagate to it. tax_amounts and discounts are not
// modelled (refused with 400, see unmodelled).
func updateLine(e *Emulator, c *reqCtx) (any, *apiError) {
	iid, lid := c.path["invoice"], c.path["line_item_id"]
	inv := e.load(kInvoice, iid)
	if inv == nil {
		return nil, notFound("invoice", "invoice", iid)
	}
	var line map[string]any
	for _, r := range e.tables["invoice_line_items"].children[iid] {
		if r.id == lid {
			line, _ = decodeObject(r.raw)
			break
		}
	}
	if line == nil {
		return nil, notFound("line_item_id", "invoice line item", lid)
	}
	if st := getStr(inv, "status"); st != "draft" {
		return nil, invalid("invoice_not_editable", "", "You can only update line items of draft invoices (this invoice is %s).", st)
	}
	e.applyParams(kLine.schema, line, c.params, "price", "tax_rates", "discounts", "tax_amounts", "amount")
	if ae := checkMetadataCount(line); ae != nil {
		return nil, ae
	}
	// Before price_data stores its price: a refused request makes nothing.
	if ae := e.setTaxRates(line, "tax_rates", c.params, "tax_rates"); ae != nil {
		return nil, ae
	}
	price, _ := line["price"].(map[string]any)
	if pid, ok := c.params["price"].(string); ok {
		if price = e.load(kPrice, pid); price == nil {
			return nil, e.mustExist("prices", "price", pid)
		}
		line["price"] = price
	} else if pd, ok := c.params["price_data"].(map[string]any); ok {
		if ae := exclusiveAmount(pd, "unit_amount", "unit_amount_decimal", "price_data"); ae != nil {
			return nil, ae
		}
		price = e.newObject(kPrice, c.now, c.live)
		e.applyParams("price", price, pd, "product")
		prod, _ := pd["product"].(string)
		if ae := e.mustExist("products", "price_data[product]", prod); ae != nil {
			return nil, ae
		}
		price["product"], price["type"], price["recurring"], price["active"] = prod, "one_time", nil, false
		fillAmountDecimal(price, "unit_amount", "unit_amount_decimal")
		e.store(kPrice, price).unlisted = true
		line["price"] = price
	}
	qty := intOr(line["quantity"], 1)
	unit := priceUnit(price)
	if a, ok := toInt(c.params["amount"]); ok {
		line["amount"] = a
		if qty > 0 {
			unit = new(big.Rat).SetInt64(a / qty)
		}
	} else if _, ok := c.params["quantity"]; ok || c.params["price"] != nil || c.params["price_data"] != nil {
		line["amount"] = lineAmount(unit, qty)
	}
	line["amount_excluding_tax"] = line["amount"]
	line["unit_amount_excluding_tax"] = formatDecimal(unit)
	e.store(kLine, line)
	// The invoice item behind the line follows it (Stripe: such updates
	// "propagate to the invoice item as well"). Stripe has no
	// invoiceitem.updated event.
	if ii := e.load(kInvoiceItem, getStr(line, "invoice_item")); ii != nil {
		ii["amount"], ii["quantity"] = line["amount"], line["quantity"]
		setUnit(ii, "unit_amount", "unit_amount_decimal", unit)
		ii["description"], ii["discountable"], ii["period"] = line["description"], line["discountable"], line["period"]
		ii["price"], ii["tax_rates"] = line["price"], line["tax_rates"]
		e.store(kInvoiceItem, ii)
	}
	e.recalcInvoice(c, inv, true)
	// recalcInvoice may have stored the line again (its discount share).
	r := e.tables["invoice_line_items"].byID[lid]
	c.result, _ = decodeObject(r.raw)
	return e.render(kLine, r.raw, c)
}

// addItemLine adds the line of an invoice item to a draft invoice.
func (e *Emulator) addItemLine(c *reqCtx, inv, ii map[string]any) {
	line := e.newObject(kLine, c.now, c.live)
	delete(line, "created")
	line["invoice"] = idOf(inv)
	line["type"] = "invoiceitem"
	line["invoice_item"] = idOf(ii)
	// A proration's line is of its subscription and item too.
	line["subscription"], line["subscription_item"] = ii["subscription"], ii["subscription_item"]
	line["price"] = ii["price"]
	line["quantity"] = ii["quantity"]
	line["amount"], line["amount_excluding_tax"] = ii["amount"], ii["amount"]
	line["unit_amount_excluding_tax"] = itemUnitString(ii)
	line["currency"] = ii["currency"]
	line["description"] = ii["description"]
	line["period"] = ii["period"]
	line["discountable"], line["proration"] = ii["discountable"] != false, ii["proration"] == true
	line["metadata"] = map[string]any{}
	line["tax_rates"] = orEmpty(ii["tax_rates"])
	e.store(kLine, line)
}

// recalcInvoice re-embeds lines and recomputes totals; with save it stores
// the invoice and emits invoice.updated.
func (e *Emulator) recalcInvoice(c *reqCtx, inv map[string]any, save bool) {
	var old map[string]any
	if save {
		old = deepCopy(inv).(map[string]any)
	}
	iid := idOf(inv)
	var sum, off int64
	children := e.tables["invoice_line_items"].children[iid]
	for _, r := range children {
		n, _ := toInt(r.keys[1])
		sum += n
	}
	if d, _ := inv["discount"].(map[string]any); d != nil {
		// Only then: decoding every line of a 250-line invoice at each
		// change would cost the seeding dearly.
		lines := make([]map[string]any, len(children))
		for i, r := range children {
			lines[i], _ = decodeObject(r.raw)
		}
		off = applyDiscount(inv, lines, d)
		for _, l := range lines {
			e.store(kLine, l)
		}
	}
	inv["lines"] = e.childList(kLine, iid, "/v1/invoices/"+iid+"/lines")
	setTotals(inv, sum, off)
	if save {
		e.save(c, kInvoice, inv, old, "invoice.updated")
	}
}

// setTotals sets an invoice's amounts from the sum of its lines and its
// discount (no tax is modelled), and what is due after the customer's
// balance (setDue): a total below zero (a downgrade's prorations, a
// negative invoice item) is due as 0, its credit going to the customer's
// balance at finalization, and an invoice due 0 is paid then.
func setTotals(inv map[string]any, sum, off int64) {
	inv["subtotal"], inv["subtotal_excluding_tax"] = sum, sum
	inv["total"], inv["total_excluding_tax"] = sum-off, sum-off
	setDue(inv)
}

func (e *Emulator) finalizeInvoice(c *reqCtx, inv map[string]any) (map[string]any, *apiError) {
	if getStr(inv, "status") != "draft" {
		return nil, invalid("invoice_not_editable", "", "This invoice is already finalized, you can't re-finalize a non-draft invoice.")
	}
	old := deepCopy(inv).(map[string]any)
	e.seq++
	inv["number"] = fmt.Sprintf("%s-%04d", strings.ToUpper(idOf(inv)[3:11]), e.seq%10000)
	inv["status"] = "open"
	inv["effective_at"] = c.now
	st, _ := inv["status_transitions"].(map[string]any)
	if st == nil {
		st = map[string]any{}
	}
	st["finalized_at"] = c.now
	inv["status_transitions"] = st
	inv["hosted_invoice_url"] = "https://invoice.stripe.com/i/" + idOf(inv)
	inv["invoice_pdf"] = "https://pay.stripe.com/invoice/" + idOf(inv) + "/pdf"
	applied := e.applyBalance(inv)
	// Finalizing creates the invoice's payment intent, which a client can
	// confirm itself (latest_invoice.payment_intent.client_secret).
	if amt := getInt(inv, "amount_due"); amt > 0 {
		pi := e.newObject(kPI, c.wallTime(), c.live)
		pi["amount"], pi["currency"], pi["customer"], pi["invoice"] = amt, getStr(inv, "currency"), getStr(inv, "customer"), idOf(inv)
		pi["payment_method"], pi["description"] = nil, nil
		e.initPI(pi)
		e.store(kPI, pi)
		e.emit(c, "payment_intent.created", pi, nil)
		inv["payment_intent"] = idOf(pi)
	}
	e.save(c, kInvoice, inv, old, "invoice.finalized")
	e.moveBalance(c, getStr(inv, "customer"), applied, "applied_to_invoice", idOf(inv))
	e.consumeDiscount(c, inv, nil)
	if getInt(inv, "amount_due") == 0 {
		return e.payInvoice(c, inv, "")
	}
	return inv, nil
}

// paymentCtx is c for the payment side of an invoice (its payment
// intent, charge, balance transaction, dispute): on the emulator's clock
// even for a customer on a test clock, whose invoice is on the clock's
// time. Stripe confirms that a subscription's payment intents on a test
// clock are created at the real time, "expected behaviour today. The
// TestClocks feature was built specifically for Subscriptions"
// (stripe/stripe-python#1183).
func paymentCtx(c *reqCtx) *reqCtx {
	pc := *c
	pc.now = c.wallTime()
	return &pc
}

func (e *Emulator) payInvoice(c *reqCtx, inv map[string]any, pm string) (map[string]any, *apiError) {
	if !payable(inv) {
		return nil, invalid("invoice_not_open", "", "Invoice is already %s.", getStr(inv, "status"))
	}
	old := deepCopy(inv).(map[string]any)
	amt := getInt(inv, "amount_due")
	if amt > 0 && pm != "oob" {
		if pm == "" {
			pm = e.invoicePaymentMethod(inv)
		}
		if pm == "" {
			return nil, noPaymentMethodError()
		}
		pi := e.load(kPI, getStr(inv, "payment_intent"))
		if pi == nil {
			return nil, invalid("", "", "This invoice has no payment intent to pay with.")
		}
		pio := deepCopy(pi).(map[string]any)
		pi["payment_method"] = pm
		pc := paymentCtx(c)
		if ae := e.confirmPI(pc, pi); ae != nil {
			e.save(pc, kPI, pi, pio, "payment_intent.payment_failed")
			e.invoicePaymentFailed(c, inv, old)
			return inv, ae
		}
		e.save(pc, kPI, pi, pio, "payment_intent.succeeded")
		return e.invoicePaid(c, inv, old), nil
	}
	if pm == "oob" {
		inv["paid_out_of_band"] = true
		// The intent can no longer be used to pay.
		e.cancelInvoicePI(c, inv, nil)
	}
	return e.invoicePaid(c, inv, old), nil
}

// payable says whether inv can still be paid. Stripe's invoice workflow
// (docs.stripe.com/invoicing/integration/workflow-transitions) pays open
// and uncollectible invoices alike: marking one uncollectible only writes
// it off in the books, and a later payment still moves it to paid.
func payable(inv map[string]any) bool {
	st := getStr(inv, "status")
	return st == "open" || st == "uncollectible"
}

// invoicePaymentFailed records a failed attempt to pay inv (old is its
// state before the attempt). Only an attempt that counts moves
// attempt_count, "from the perspective of the payment retry schedule.
// Any payment attempt counts as the first attempt, and subsequently only
// automatic retries increment the attempt count" (spec,
// invoice.attempt_count); on an invoice retried on a schedule (dunned)
// it also moves the retry schedule (dunning): the next attempt, or past
// the last one the end of the dunning (retriesExhausted), after
// invoice.payment_failed.
func (e *Emulator) invoicePaymentFailed(c *reqCtx, inv, old map[string]any) {
	inv["attempted"] = true
	counts := countsAsAttempt(c, inv)
	exhausted := false
	if counts {
		n := getInt(inv, "attempt_count") + 1
		inv["attempt_count"] = n
		if dunned(inv) {
			if n <= smartRetries {
				inv["next_payment_attempt"] = finalizedAt(inv) + n*retryGap
			} else {
				inv["next_payment_attempt"], exhausted = nil, true
			}
		}
	}
	e.save(c, kInvoice, inv, old, "invoice.payment_failed")
	if exhausted {
		e.retriesExhausted(c, inv)
	}
}

// countsAsAttempt says whether a payment attempt on inv counts in its
// attempt_count: its first, or one of the retry schedule's (c.automatic).
func countsAsAttempt(c *reqCtx, inv map[string]any) bool {
	return c.automatic || getInt(inv, "attempt_count") == 0
}

// The retry schedule of a failed renewal. Stripe enables Smart Retries
// "by default for new Stripe accounts" and "The recommended default is 8
// tries within 2 weeks" (Stripe's docs, "Automate payment retries" and
// "Smart Retries on Off-Session Payments"). Smart Retries times each try
// by machine learning; the emulator spreads the 8 retries evenly over the
// 2 weeks after the first attempt, the last at 14 days, so a test knows
// when each comes.
const (
	smartRetries = 8
	retryWindow  = 14 * 86400
	retryGap     = retryWindow / smartRetries
)

// dunned says whether inv is retried on the schedule when a payment
// fails: an open renewal or subscription_update invoice (a reset of the
// billing cycle, always_invoice) of charge_automatically still collected
// automatically. Stripe retries "failed subscription and invoice
// payments", subscriptions' under the subscription retry settings
// (docs.stripe.com/billing/revenue-recovery/smart-retries); without
// retries a subscription left past_due by an update's failed charge
// would stay so, its retries never ending it (retriesExhausted). A first
// invoice is not (its subscription stays incomplete and expires,
// expireIncomplete), nor are one-off invoices (Stripe's retries of those
// are a setting of their own).
func dunned(inv map[string]any) bool {
	switch getStr(inv, "billing_reason") {
	case "subscription_cycle", "subscription_update":
	default:
		return false
	}
	return getStr(inv, "status") == "open" && getStr(inv, "collection_method") == "charge_automatically" && getBool(inv, "auto_advance")
}

func finalizedAt(inv map[string]any) int64 {
	st, _ := inv["status_transitions"].(map[string]any)
	return getInt(st, "finalized_at")
}

// retryInvoice is the automatic payment attempt due at inv's
// next_payment_attempt (c.now): with the payment method Stripe retries
// with, "the first available payment method in this list":
// subscription.default_payment_method, subscription.default_source,
// customer.invoice_settings.default_payment_method, customer.default_source
// (Stripe's docs, "Automate payment retries"), so a card changed between
// attempts is the one tried. With none, the attempt fails as a renewal's
// does, without a charge, and the schedule goes on.
func (e *Emulator) retryInvoice(c *reqCtx, inv map[string]any) {
	if !dunned(inv) || getInt(inv, "next_payment_attempt") != c.now {
		return
	}
	sub := e.load(kSub, getStr(inv, "subscription"))
	if sub == nil {
		return
	}
	if pm := e.subscriptionPaymentMethod(sub); pm != "" && !e.hardDeclined(inv, pm) {
		e.payInvoice(c, inv, pm)
		return
	}
	// No payment method, or the one whose last charge failed with a
	// non-retryable decline (hardDeclined): the attempt counts, without a
	// charge.
	e.invoicePaymentFailed(c, inv, deepCopy(inv).(map[string]any))
}

// retriesExhausted ends the dunning of inv, whose last retry failed:
// "Once Stripe has exhausted all payment retry attempts, the subscription
// will become canceled or unpaid (depending on your subscriptions
// settings)" (spec, subscription.status). The emulator has no settings
// and takes cancel (doc.go says why): the subscription is canceled at
// once, cancellation_details.reason payment_failed, with
// customer.subscription.deleted; its invoice stays open, no longer
// collected (stopCollection). Only while the subscription's latest
// invoice is unpaid, though: when retries outlast a billing period and a
// later invoice was paid, "the subscription is left as-is and is not
// cancelled or marked as unpaid [...] it is specifically the latest
// invoice whose paid status matters" (support.stripe.com/questions/
// retry-schedules-longer-than-a-subscription-s-billing-period). Latest
// as settleWrittenOff reads it: the most recent invoice not void or
// draft, an uncollectible one counting as paid.
func (e *Emulator) retriesExhausted(c *reqCtx, inv map[string]any) {
	sub := e.load(kSub, getStr(inv, "subscription"))
	if sub == nil {
		return
	}
	switch getStr(sub, "status") {
	case "canceled", "incomplete_expired":
		return
	}
	latest := e.subscriptionInvoices(sub, func(st string) bool { return st != "void" && st != "draft" })
	if len(latest) > 0 {
		if st, _ := e.tables["invoices"].keyOf(latest[0], "status"); st == "paid" || st == "uncollectible" {
			return
		}
	}
	old := deepCopy(sub).(map[string]any)
	sub["status"], sub["canceled_at"], sub["ended_at"] = "canceled", c.now, c.now
	sub["cancellation_details"] = map[string]any{"comment": nil, "feedback": nil, "reason": "payment_failed"}
	e.save(c, kSub, sub, old, "customer.subscription.deleted")
	e.stopCollection(c, getStr(sub, "customer"))
}

// stopCollection stops the automatic collection of cus's finalized
// invoices when one of its subscriptions is canceled: "By default, upon
// subscription cancellation, Stripe will stop automatic collection of
// all finalized invoices for the customer. This is intended to prevent
// unexpected payment attempts after the customer has canceled a
// subscription" (spec, DELETE /v1/subscriptions/{id}). Each open invoice
// still collected gets auto_advance false and no next_payment_attempt,
// with invoice.updated.
func (e *Emulator) stopCollection(c *reqCtx, cus string) {
	if cus == "" {
		return
	}
	t := e.tables["invoices"]
	var open []string
	for _, r := range t.byCustomer[cus] {
		if st, _ := t.keyOf(r, "status"); st == "open" {
			open = append(open, r.id)
		}
	}
	for _, id := range open {
		inv := e.load(kInvoice, id)
		if !getBool(inv, "auto_advance") && inv["next_payment_attempt"] == nil {
			continue
		}
		old := deepCopy(inv).(map[string]any)
		inv["auto_advance"], inv["next_payment_attempt"] = false, nil
		e.save(c, kInvoice, inv, old, "invoice.updated")
	}
}

// voidInvoice voids an open or uncollectible invoice: its payment intent
// canceled (void_invoice), invoice.voided, the customer balance it applied
// given back.
func (e *Emulator) voidInvoice(c *reqCtx, inv map[string]any) {
	old := deepCopy(inv).(map[string]any)
	inv["status"] = "void"
	inv["next_payment_attempt"] = nil
	if trans, _ := inv["status_transitions"].(map[string]any); trans != nil {
		trans["voided_at"] = c.now
	}
	e.cancelInvoicePI(c, inv, "void_invoice")
	e.save(c, kInvoice, inv, old, "invoice.voided")
	// What finalizing applied goes back (balance.go).
	e.moveBalance(c, getStr(inv, "customer"), -appliedBalance(inv), "unapplied_from_invoice", idOf(inv))
}

// incompleteExpiry is how long an incomplete subscription waits for its
// first invoice to be paid: "If the first invoice is not paid within 23
// hours, the subscription transitions to incomplete_expired" (spec,
// subscription.status).
const incompleteExpiry = 23 * 3600

// expireIncomplete ends sub, still incomplete 23 hours after its creation
// (c.now): "This is a terminal state, the open invoice will be voided and
// no further invoices will be generated" (spec, subscription.status).
// The subscription changes first (customer.subscription.updated, with
// canceled_at and ended_at the moment, as Stripe's incomplete_expired
// subscriptions carry a canceled_at: pay-rails/pay#91), then its first
// invoice is voided (invoice.voided, its intent canceled); Stripe
// documents no order of the two.
func (e *Emulator) expireIncomplete(c *reqCtx, sub map[string]any) {
	if getStr(sub, "status") != "incomplete" {
		return
	}
	old := deepCopy(sub).(map[string]any)
	sub["status"], sub["canceled_at"], sub["ended_at"] = "incomplete_expired", c.now, c.now
	e.save(c, kSub, sub, old, "customer.subscription.updated")
	if inv := e.load(kInvoice, getStr(sub, "latest_invoice")); inv != nil && payable(inv) {
		e.voidInvoice(c, inv)
	}
}

// cancelInvoicePI cancels the open payment intent of inv, if any.
func (e *Emulator) cancelInvoicePI(c *reqCtx, inv map[string]any, reason any) {
	pi := e.load(kPI, getStr(inv, "payment_intent"))
	if pi == nil || getStr(pi, "status") == "succeeded" || getStr(pi, "status") == "canceled" {
		return
	}
	pio := deepCopy(pi).(map[string]any)
	pi["status"], pi["canceled_at"], pi["cancellation_reason"] = "canceled", c.wallTime(), reason
	e.save(c, kPI, pi, pio, "payment_intent.canceled")
}

// invoicePaid marks inv paid (old is its state before the payment), with
// its events, and activates the incomplete subscription it started.
func (e *Emulator) invoicePaid(c *reqCtx, inv, old map[string]any) map[string]any {
	amt := getInt(inv, "amount_due")
	if pi := e.load(kPI, getStr(inv, "payment_intent")); pi != nil && getStr(pi, "status") == "succeeded" {
		inv["charge"] = pi["latest_charge"]
	}
	if countsAsAttempt(c, inv) {
		inv["attempt_count"] = getInt(inv, "attempt_count") + 1
	}
	inv["status"] = "paid"
	inv["paid"], inv["attempted"] = true, true
	inv["next_payment_attempt"] = nil
	inv["amount_paid"], inv["amount_remaining"] = amt, int64(0)
	st, _ := inv["status_transitions"].(map[string]any)
	if st != nil {
		st["paid_at"] = c.now
	}
	e.save(c, kInvoice, inv, old, "invoice.paid")
	e.emit(c, "invoice.payment_succeeded", inv, nil)
	// Paying the first invoice of an incomplete subscription activates it,
	// and so does paying the latest invoice of a past_due one, which was
	// past_due only because that payment "is required but cannot be paid"
	// (spec, subscription.status; docs.stripe.com/billing/subscriptions/
	// overview: "pay the most recent invoice before its due date to update
	// the subscription's status to active", and Stripe's support says
	// older invoices paid leave it past_due). A pending update's
	// invoice, voided when the update expired (or was otherwise
	// discarded), stays the latest (pending.go) though it never billed
	// the subscription: then the latest is the one before it.
	if sid := getStr(inv, "subscription"); sid != "" {
		sub := e.load(kSub, sid)
		switch {
		case sub == nil:
		case getStr(sub, "status") == "incomplete" ||
			getStr(sub, "status") == "past_due" && (getStr(sub, "latest_invoice") == idOf(inv) || e.latestBeforeVoidPending(sub) == idOf(inv)):
			so := deepCopy(sub).(map[string]any)
			sub["status"] = "active"
			e.save(c, kSub, sub, so, "customer.subscription.updated")
		case getStr(sub, "status") == "past_due":
			// The latest invoice was voided while this older one was
			// open: this one, the most recent not void, decides.
			e.settleWrittenOff(c, sid)
		}
		e.applyPending(c, inv)
	}
	return inv
}

// latestBeforeVoidPending is past_due sub's latest invoice before the
// voided invoices of its discarded pending updates that followed it
// (e.prePending, through a chain of them: a pending update replacing
// another voids the first's invoice), or "" when its latest invoice is
// not one of those.
func (e *Emulator) latestBeforeVoidPending(sub map[string]any) string {
	id := getStr(sub, "latest_invoice")
	for {
		prev, ok := e.prePending[id]
		if !ok {
			return ""
		}
		if inv := e.load(kInvoice, id); inv == nil || getStr(inv, "status") != "void" {
			return ""
		}
		if inv := e.load(kInvoice, prev); inv != nil && getStr(inv, "status") != "void" {
			return prev
		}
		id = prev
	}
}

// settleWrittenOff makes past_due subscription sid active again when,
// after one of its invoices was voided, marked uncollectible or paid, the
// most recent of its invoices that is not void is paid or uncollectible.
// Stripe's docs (docs.stripe.com/billing/subscriptions/overview): "For
// past_due subscriptions, paying the latest associated invoice or
// marking it uncollectible transitions the subscription to active", and
// "Voided invoices don't affect subscription status. Stripe determines
// the status from the most recent non-voided invoice" (the page's
// earlier wording: "Invoices marked as uncollectable are treated as paid
// when determining subscription status [...] Stripe ignores voided
// invoices when determining subscription status; the most recent
// non-voided invoice is used instead"). So voiding the open latest
// invoice hands the status to the invoice before it: active if that one
// was paid, still past_due if it is open too, until it is paid or
// written off in turn. A subscription with no finalized invoice left
// that is not void keeps its status. Drafts don't count: they were never
// due.
func (e *Emulator) settleWrittenOff(c *reqCtx, sid string) {
	sub := e.load(kSub, sid)
	if sub == nil || getStr(sub, "status") != "past_due" {
		return
	}
	latest := e.subscriptionInvoices(sub, func(st string) bool { return st != "void" && st != "draft" })
	if len(latest) == 0 {
		return
	}
	if st, _ := e.tables["invoices"].keyOf(latest[0], "status"); st == "paid" || st == "uncollectible" {
		old := deepCopy(sub).(map[string]any)
		sub["status"] = "active"
		e.save(c, kSub, sub, old, "customer.subscription.updated")
	}
}

// subscriptionInvoices are the invoices of subscription sub whose status
// keep takes, newest first by (created, sequence), found by a scan of
// its customer's invoices: their index is unordered while seeding.
func (e *Emulator) subscriptionInvoices(sub map[string]any, keep func(status string) bool) []*record {
	t := e.tables["invoices"]
	var out []*record
	for _, r := range t.byCustomer[getStr(sub, "customer")] {
		s, _ := t.keyOf(r, "subscription")
		st, _ := t.keyOf(r, "status")
		if s == idOf(sub) && keep(st) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return less(out[j], out[i]) })
	return out
}

func invoiceAction(act string) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		inv := e.load(kInvoice, c.path["invoice"])
		if inv == nil {
			return nil, notFound("invoice", "invoice", c.path["invoice"])
		}
		var ae *apiError
		switch act {
		case "finalize":
			inv, ae = e.finalizeInvoice(c, inv)
		case "pay":
			// Spec, payment_method: "The PaymentMethod must be the ID of a
			// PaymentMethod belonging to the customer associated with the
			// invoice being paid": refused before a draft is finalized, as
			// a default_payment_method that isn't the customer's is. A
			// detached one keeps its own refusal (confirmMethod); Stripe's
			// test payment methods are charged as the card they name.
			if pm, _ := c.params["payment_method"].(string); pm != "" && !e.isTestPM(pm) && !e.detached[pm] && getStr(inv, "status") != "paid" {
				if ae = e.customersPM(getStr(inv, "customer"), pm, "payment_method"); ae != nil {
					break
				}
			}
			if getStr(inv, "status") == "draft" {
				if inv, ae = e.finalizeInvoice(c, inv); ae != nil {
					break
				}
			}
			if getStr(inv, "status") == "paid" {
				break
			}
			pm, _ := c.params["payment_method"].(string)
			if src, _ := c.params["source"].(string); pm == "" && src != "" {
				// "A payment source to be charged" (spec): a card of the
				// customer's.
				if ae = e.sourceOf(getStr(inv, "customer"), src, "source"); ae != nil {
					break
				}
				pm = src
			}
			if oob, _ := c.params["paid_out_of_band"].(bool); oob {
				pm = "oob"
			}
			inv, ae = e.payInvoice(c, inv, pm)
		case "void", "mark_uncollectible":
			// Stripe voids open and uncollectible invoices; only open ones
			// can be marked uncollectible.
			st := getStr(inv, "status")
			if act == "void" && st != "open" && st != "uncollectible" {
				// Stripe's answer for a draft or paid invoice, as observed
				// (dev.classmethod.jp, "stripe-void-invoice-with-any-status",
				// 2023): no code and no param.
				return nil, invalid("", "", "You can only pass in open invoices. This invoice isn't open.")
			}
			if act == "mark_uncollectible" && st != "open" {
				return nil, invalid("invoice_not_open", "", "You can only mark uncollectible open invoices (this one is %s).", st)
			}
			if act == "void" {
				e.voidInvoice(c, inv)
				e.voidedPending(c, inv)
				e.settleWrittenOff(c, getStr(inv, "subscription"))
				break
			}
			old := deepCopy(inv).(map[string]any)
			inv["status"] = "uncollectible"
			// Written off: no more automatic attempts.
			inv["next_payment_attempt"] = nil
			if trans, _ := inv["status_transitions"].(map[string]any); trans != nil {
				trans["marked_uncollectible_at"] = c.now
			}
			e.save(c, kInvoice, inv, old, "invoice.marked_uncollectible")
			e.settleWrittenOff(c, getStr(inv, "subscription"))
		case "send":
			if getStr(inv, "collection_method") != "send_invoice" {
				return nil, invalid("", "", "You can only manually send an invoice if its collection method is 'send_invoice'.")
			}
			// "Stripe automatically finalizes drafts before sending"
			// (spec, POST /v1/invoices/{invoice}/finalize), and "Requests
			// made in test-mode result in no emails being sent, despite
			// sending an invoice.sent event" (spec, POST
			// /v1/invoices/{invoice}/send).
			if getStr(inv, "status") == "draft" {
				if inv, ae = e.finalizeInvoice(c, inv); ae != nil {
					break
				}
			}
			e.emit(c, "invoice.sent", inv, nil)
		}
		if ae != nil {
			return nil, ae
		}
		return e.render(kInvoice, e.tables["invoices"].byID[idOf(inv)].raw, c)
	}
}

// upcomingInvoice previews the next invoice of a customer's subscriptions
// (Stripe's virtual invoice without an id).
func upcomingInvoice(linesOnly bool) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		cus, _ := c.params["customer"].(string)
		subID, _ := c.params["subscription"].(string)
		if cus == "" && subID == "" {
			return nil, missing("customer")
		}
		inv, lines := e.upcoming(c.now, cus, subID)
		if inv == nil {
			return nil, &apiError{status: 404, Type: "invalid_request_error", Code: "invoice_upcoming_none",
				Message: fmt.Sprintf("No upcoming invoices for customer: %s", cus)}
		}
		url := "/v1/invoices/upcoming/lines?customer=" + getStr(inv, "customer")
		if linesOnly {
			lt := newTable("upcoming_lines", nil)
			for i, l := range lines {
				b := e.encodeResult(l)
				lt.put(&record{id: idOf(l), seq: uint64(i + 1), raw: b, parent: "x"})
			}
			q, ae := e.parseList(c, lt, "line item")
			if ae != nil {
				return nil, ae
			}
			recs, more := page(lt.children["x"], q, true)
			return e.renderList(recs, more, url, "line_item", c)
		}
		if ex := expandsOf(c.params); len(ex) > 0 {
			if ae := e.expandObject(inv, ex, "invoice", true); ae != nil {
				return nil, ae
			}
		}
		return inv, nil
	}
}

// upcoming builds the upcoming invoice of a customer (or of one
// subscription), or nil when nothing is upcoming.
func (e *Emulator) upcoming(now int64, cus, subID string) (map[string]any, []map[string]any) {
	st := e.tables["subscriptions"]
	var subs []map[string]any
	if subID != "" {
		if s := e.load(kSub, subID); s != nil {
			subs = append(subs, s)
			cus = getStr(s, "customer")
		}
	} else {
		mine := st.byCustomer[cus]
		for i := len(mine) - 1; i >= 0; i-- {
			r := mine[i]
			if r.keys[1] == "active" || r.keys[1] == "trialing" || r.keys[1] == "past_due" {
				s, _ := decodeObject(r.raw)
				subs = append(subs, s)
			}
		}
	}
	var live []map[string]any
	for _, s := range subs {
		if st := getStr(s, "status"); st == "canceled" || st == "incomplete_expired" || getBool(s, "cancel_at_period_end") {
			continue
		}
		live = append(live, s)
	}
	if len(live) == 0 {
		return nil, nil
	}
	sub := live[0]
	inv := e.api.fixture("invoice")
	e.initInvoice(inv, cus, now)
	delete(inv, "id")
	inv["livemode"] = sub["livemode"]
	inv["created"] = sub["current_period_end"]
	inv["subscription"] = idOf(sub)
	inv["billing_reason"] = "upcoming"
	inv["collection_method"] = sub["collection_method"]
	for _, f := range []string{"due_date", "effective_at", "next_payment_attempt", "webhooks_delivered_at", "charge", "payment_intent", "discount", "default_payment_method", "default_source", "account_tax_ids", "latest_revision", "from_invoice", "last_finalization_error", "quote", "rendering", "shipping_cost", "shipping_details", "test_clock", "transfer_data", "on_behalf_of"} {
		inv[f] = nil
	}
	inv["metadata"] = map[string]any{}
	inv["default_tax_rates"] = orEmpty(sub["default_tax_rates"])
	start := getInt(sub, "current_period_end")
	var lines []map[string]any
	var sum int64
	for _, r := range e.tables["subscription_items"].children[idOf(sub)] {
		it, _ := decodeObject(r.raw)
		price, _ := it["price"].(map[string]any)
		qty := intOr(it["quantity"], 1)
		amt := lineAmount(priceUnit(price), qty)
		line := e.api.fixture("line_item")
		line["id"] = "il_tmp_" + r.id[3:]
		line["invoice"] = nil
		line["livemode"] = sub["livemode"]
		line["type"], line["subscription"], line["subscription_item"], line["invoice_item"] = "subscription", idOf(sub), r.id, nil
		line["price"], line["quantity"], line["amount"], line["amount_excluding_tax"] = price, qty, amt, amt
		line["unit_amount_excluding_tax"] = formatDecimal(priceUnit(price))
		line["currency"] = price["currency"]
		line["description"] = fmt.Sprintf("%d × %s", qty, getStr(price, "product"))
		line["period"] = map[string]any{"start": start, "end": cycleEnd(start, anchorOf(sub), price)}
		line["metadata"] = map[string]any{}
		line["tax_rates"] = orEmpty(it["tax_rates"])
		e.clean("line_item", line)
		lines = append(lines, line)
		sum += amt
	}
	it := e.tables["invoiceitems"]
	for _, r := range it.byCustomer[cus] {
		if r.keys[1] == "" {
			ii, _ := decodeObject(r.raw)
			if !pendingFor(ii, idOf(sub)) {
				continue
			}
			line := e.api.fixture("line_item")
			line["id"] = "il_tmp_" + r.id[3:]
			line["invoice"] = nil
			line["livemode"] = ii["livemode"]
			line["type"], line["invoice_item"], line["subscription"], line["subscription_item"] = "invoiceitem", r.id, ii["subscription"], ii["subscription_item"]
			line["proration"] = ii["proration"] == true
			line["unit_amount_excluding_tax"] = itemUnitString(ii)
			line["price"], line["quantity"], line["amount"], line["amount_excluding_tax"] = ii["price"], ii["quantity"], ii["amount"], ii["amount"]
			line["currency"], line["description"], line["period"] = ii["currency"], ii["description"], ii["period"]
			line["discountable"] = ii["discountable"] != false
			line["metadata"] = map[string]any{}
			line["tax_rates"] = orEmpty(ii["tax_rates"])
			e.clean("line_item", line)
			lines = append(lines, line)
			sum += getInt(ii, "amount")
		}
	}
	n := min(len(lines), 10)
	data := make([]any, n)
	for i := 0; i < n; i++ {
		data[i] = lines[i]
	}
	inv["lines"] = map[string]any{"object": "list", "data": data, "has_more": len(lines) > 10, "url": "/v1/invoices/upcoming/lines?customer=" + cus}
	inv["period_start"], inv["period_end"] = sub["current_period_start"], sub["current_period_end"]
	setTotals(inv, sum, applyDiscount(inv, lines, e.invoiceDiscount(cus, sub, start)))
	inv["next_payment_attempt"] = start
	e.clean("invoice", inv)
	return inv, lines
}

// --- invoice items ---

func createInvoiceItem(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
	cus := getStr(obj, "customer")
	if ae := e.mustExist("customers", "customer", cus); ae != nil {
		return ae
	}
	// Spec, subscription: "When set, scheduled invoices for subscriptions
	// other than the specified subscription will ignore the invoice item"
	// (addPendingItems). Checked before anything is stored.
	sid, _ := c.params["subscription"].(string)
	if sid != "" {
		sub := e.load(kSub, sid)
		if sub == nil {
			return e.mustExist("subscriptions", "subscription", sid)
		}
		if getStr(sub, "customer") != cus {
			// Stripe documents no answer for this; the message is the
			// emulator's.
			return invalid("", "subscription", "The subscription %s does not belong to the customer %s.", sid, cus)
		}
	}
	qty := intOr(c.params["quantity"], 1)
	obj["quantity"] = qty
	var price map[string]any
	if pid, ok := c.params["price"].(string); ok {
		price = e.load(kPrice, pid)
		if price == nil {
			return e.mustExist("prices", "price", pid)
		}
	} else if pd, ok := c.params["price_data"].(map[string]any); ok {
		if ae := exclusiveAmount(pd, "unit_amount", "unit_amount_decimal", "price_data"); ae != nil {
			return ae
		}
		price = e.newObject(kPrice, c.now, c.live)
		e.applyParams("price", price, pd, "product")
		prod, _ := pd["product"].(string)
		if ae := e.mustExist("products", "price_data[product]", prod); ae != nil {
			return ae
		}
		price["product"], price["type"], price["recurring"], price["active"] = prod, "one_time", nil, false
		fillAmountDecimal(price, "unit_amount", "unit_amount_decimal")
		e.store(kPrice, price).unlisted = true
	} else {
		if ae := exclusiveAmount(c.params, "unit_amount", "unit_amount_decimal", ""); ae != nil {
			return ae
		}
		var unit *big.Rat
		if amt, ok := toInt(c.params["amount"]); ok {
			unit = big.NewRat(amt/max(qty, 1), 1)
		} else {
			unit = unitOf(c.params, "unit_amount", "unit_amount_decimal")
		}
		if unit == nil {
			return missing("amount")
		}
		if _, ok := c.params["currency"]; !ok {
			return missing("currency")
		}
		price = e.newObject(kPrice, c.now, c.live)
		price["currency"] = c.params["currency"]
		setUnit(price, "unit_amount", "unit_amount_decimal", unit)
		price["type"], price["recurring"], price["active"] = "one_time", nil, false
		prod := e.newObject(kProduct, c.now, c.live)
		prod["name"] = strOr(c.params["description"], "Invoice item")
		e.store(kProduct, prod)
		price["product"] = idOf(prod)
		e.store(kPrice, price).unlisted = true
	}
	obj["tax_rates"] = []any{}
	if ae := e.setTaxRates(obj, "tax_rates", c.params, "tax_rates"); ae != nil {
		return ae
	}
	obj["price"] = price
	obj["currency"] = price["currency"]
	e.setCustomerCurrency(c, cus, getStr(price, "currency"))
	unit := priceUnit(price)
	setUnit(obj, "unit_amount", "unit_amount_decimal", unit)
	if a, ok := toInt(c.params["amount"]); ok {
		obj["amount"] = a
	} else {
		obj["amount"] = lineAmount(unit, qty)
	}
	obj["date"] = c.now
	obj["period"] = map[string]any{"start": c.now, "end": c.now}
	// Stripe: discountable "defaults to false for prorations or negative
	// invoice items, and true for all other invoice items".
	obj["proration"], obj["discountable"] = false, getInt(obj, "amount") >= 0
	if v, ok := c.params["discountable"].(bool); ok {
		obj["discountable"] = v
	}
	obj["subscription"], obj["subscription_item"] = nil, nil
	if sid != "" {
		obj["subscription"] = sid
	}
	obj["invoice"] = nil
	if iid, ok := c.params["invoice"].(string); ok && iid != "" {
		inv := e.load(kInvoice, iid)
		if inv == nil {
			return e.mustExist("invoices", "invoice", iid)
		}
		if getStr(inv, "status") != "draft" {
			return invalid("invoice_not_editable", "invoice", "You can only add invoice items to draft invoices.")
		}
		obj["invoice"] = iid
		e.addItemLine(c, inv, obj)
		e.recalcInvoice(c, inv, true)
	}
	return nil
}

// --- events ---

const retention = 30 * 24 * time.Hour

// eventListed says whether an event is visible (its random delay has
// passed) and not past retention.
func (e *Emulator) eventListed(r *record) bool {
	if r.visible != 0 && r.visible > e.wallNow() {
		return false
	}
	return r.created >= e.Now().Add(-retention).Unix()
}

func listEvents(e *Emulator, c *reqCtx) (any, *apiError) {
	t := e.tables["events"]
	for _, p := range []string{"starting_after", "ending_before"} {
		if id, ok := c.params[p].(string); ok {
			if r := t.byID[id]; r != nil && r.created < e.Now().Add(-retention).Unix() {
				return nil, &apiError{status: 400, Type: "invalid_request_error", Code: "resource_missing", Param: p,
					Message: fmt.Sprintf("No such event: '%s'; events are only retained for 30 days.", id)}
			}
		}
	}
	q, ae := e.parseList(c, t, "event")
	if ae != nil {
		return nil, ae
	}
	q.createdLo = max(q.createdLo, e.Now().Add(-retention).Unix())
	var types []string
	if s, ok := c.params["type"].(string); ok && s != "" {
		types = append(types, s)
	}
	if arr, ok := c.params["types"].([]any); ok {
		// The spec's own words: "You may pass either `type` or `types`,
		// but not both."
		if len(types) > 0 {
			return nil, invalid("", "types", "You may pass either `type` or `types`, but not both.")
		}
		if len(arr) > 20 {
			return nil, invalid("", "types", "You may pass at most 20 types.")
		}
		for _, x := range arr {
			types = append(types, fmt.Sprint(x))
		}
	}
	now := e.wallNow()
	q.match = func(r *record) bool {
		if r.visible != 0 && r.visible > now {
			return false
		}
		if len(types) == 0 {
			return true
		}
		for _, t := range types {
			if t == r.keys[0] || (strings.HasSuffix(t, ".*") && strings.HasPrefix(r.keys[0], strings.TrimSuffix(t, "*"))) {
				return true
			}
		}
		return false
	}
	recs, more := page(t.ordered, q, false)
	return e.renderList(recs, more, "/v1/events", "event", c)
}
