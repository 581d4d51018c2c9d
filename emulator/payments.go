package emulator

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Payment objects: payment and setup intents, payment methods, charges,
// refunds, disputes, payouts, balance transactions, checkout sessions, tax
// ids and credit notes.

var (
	kPI = addKind(&kind{table: "payment_intents", schema: "payment_intent", prefix: "pi_", base: "/v1/payment_intents", idParam: "intent",
		keys: []string{"customer"}, events: "payment_intent", what: "payment_intent"})
	kSI = addKind(&kind{table: "setup_intents", schema: "setup_intent", prefix: "seti_", base: "/v1/setup_intents", idParam: "intent",
		keys: []string{"customer", "payment_method"}, events: "setup_intent", what: "setupintent"})
	kPM = addKind(&kind{table: "payment_methods", schema: "payment_method", prefix: "pm_", base: "/v1/payment_methods", idParam: "payment_method",
		keys: []string{"customer", "type"}, events: "payment_method", what: "PaymentMethod"})
	kCharge = addKind(&kind{table: "charges", schema: "charge", prefix: "ch_", base: "/v1/charges", idParam: "charge",
		keys: []string{"customer", "payment_intent", "transfer_group"}, events: "charge", skip: []string{"source"}})
	kRefund = addKind(&kind{table: "refunds", schema: "refund", prefix: "re_", base: "/v1/refunds", idParam: "refund",
		// Under API 2023-10-16 refund.created/updated are sent only for
		// refunds without a charge (customer cash balance, not modelled);
		// a charge's refund sends charge.refunded (the charge) when made
		// and charge.refund.updated (the refund) when changed. Stripe
		// changed this in 2024-10-28.acacia.
		keys: []string{"charge", "payment_intent"}, events: "charge.refund", skip: []string{"charge", "payment_intent"}})
	kDispute = addKind(&kind{table: "disputes", schema: "dispute", prefix: "dp_", base: "/v1/disputes", idParam: "dispute",
		keys: []string{"charge", "payment_intent"}, events: "charge.dispute", skip: []string{"evidence"}})
	kPayout = addKind(&kind{table: "payouts", schema: "payout", prefix: "po_", base: "/v1/payouts", idParam: "payout",
		keys: []string{"status", "destination"}, events: "payout"})
	kTxn = addKind(&kind{table: "balance_transactions", schema: "balance_transaction", prefix: "txn_", base: "/v1/balance_transactions", idParam: "id",
		keys: []string{"type", "source", "currency"}, what: "balance transaction"})
	kCS = addKind(&kind{table: "checkout_sessions", schema: "checkout.session", prefix: "cs_test_", base: "/v1/checkout/sessions", idParam: "session",
		keys: []string{"customer", "payment_intent", "payment_link", "status", "subscription"}, events: "checkout.session",
		skip: []string{"line_items", "customer_details", "discounts", "payment_method_options", "subscription_data", "payment_intent_data", "invoice_creation", "tax_id_collection", "custom_fields", "custom_text", "shipping_options", "consent_collection", "phone_number_collection", "shipping_address_collection", "automatic_tax", "after_expiration"},
		// "If set, Checkout displays a back button" (spec): null unless
		// given, not the fixture's https://example.com/cancel.
		blank: []string{"cancel_url", "success_url"},
		what:  "checkout.session"})
	kTaxID = addKind(&kind{table: "tax_ids", schema: "tax_id", prefix: "txi_", base: "/v1/tax_ids", idParam: "id",
		keys: []string{"customer"}, events: "customer.tax_id", skip: []string{"owner"}, what: "tax_id"})
	kCN = addKind(&kind{table: "credit_notes", schema: "credit_note", prefix: "cn_", base: "/v1/credit_notes", idParam: "id",
		keys: []string{"customer", "invoice"}, events: "credit_note", skip: []string{"lines", "invoice", "refund"}, what: "credit note"})
)

func init() {
	// payment intents
	kPI.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		if ae := chargeableAmount(obj); ae != nil {
			return ae
		}
		if cus := getStr(obj, "customer"); cus != "" {
			if ae := e.mustExist("customers", "customer", cus); ae != nil {
				return ae
			}
		}
		obj["invoice"] = nil
		if ae := e.intentPM(c, obj); ae != nil {
			return ae
		}
		e.initPI(obj)
		if getBool(c.params, "confirm") {
			// The intent exists before it is paid: Stripe sends
			// payment_intent.created, then the charge's event, then the
			// outcome (all in one second: the list's order is all a
			// reader has), so the intent is stored and announced before
			// confirmPI makes its charge.
			if ae := e.confirmable(obj); ae != nil {
				return ae
			}
			e.store(kPI, obj)
			e.emit(c, "payment_intent.created", obj, nil)
			c.createdEmitted = true
			if ae := e.confirmPI(c, obj); ae != nil {
				// Stripe keeps the intent and its failed charge, and
				// answers the card error with the intent in it.
				ae.PaymentIntent = e.store(kPI, obj).raw
				e.emit(c, "payment_intent.payment_failed", obj, nil)
				return ae
			}
		}
		return nil
	}
	// An update's payment_method is held to the create's rules: Stripe
	// refuses an unknown or another customer's one there too.
	kPI.update = func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
		if pm, _ := c.params["payment_method"].(string); pm == "" {
			return nil
		}
		return e.intentPM(c, obj)
	}
	kPI.after = func(e *Emulator, c *reqCtx, obj map[string]any) {
		if ev := confirmedEvent(obj); ev != "" {
			e.emit(c, ev, obj, nil)
		}
		c.result = obj
	}
	crud(kPI, "crul")
	handle("POST", "/v1/payment_intents/{intent}/confirm", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kPI, c.path["intent"])
		if obj == nil {
			return nil, notFound("intent", "payment_intent", c.path["intent"])
		}
		old := deepCopy(obj).(map[string]any)
		if pm, ok := c.params["payment_method"].(string); ok {
			obj["payment_method"] = pm // a test card's copy is made once it is charged (confirmPI)
		}
		if cm, ok := c.params["capture_method"].(string); ok {
			obj["capture_method"] = cm
		}
		if sfu, ok := c.params["setup_future_usage"].(string); ok {
			obj["setup_future_usage"] = nil
			if sfu != "" {
				obj["setup_future_usage"] = sfu
			}
		}
		// An invoice's intent pays (or fails to pay) the invoice.
		inv := e.load(kInvoice, getStr(obj, "invoice"))
		if inv != nil && !payable(inv) {
			inv = nil
		}
		if ae := e.confirmPI(c, obj); ae != nil {
			if ae.Type == "card_error" {
				ae.PaymentIntent = e.save(c, kPI, obj, old, "payment_intent.payment_failed").raw
				if inv != nil {
					e.invoicePaymentFailed(c, inv, deepCopy(inv).(map[string]any))
				}
			}
			return nil, ae
		}
		r := e.save(c, kPI, obj, old, confirmedEvent(obj))
		if inv != nil {
			e.invoicePaid(c, inv, deepCopy(inv).(map[string]any))
		}
		return e.render(kPI, r.raw, c)
	})
	handle("POST", "/v1/payment_intents/{intent}/capture", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kPI, c.path["intent"])
		if obj == nil {
			return nil, notFound("intent", "payment_intent", c.path["intent"])
		}
		if st := getStr(obj, "status"); st != "requires_capture" {
			return nil, invalid("payment_intent_unexpected_state", "", "This PaymentIntent could not be captured because it has a status of %s. Only a PaymentIntent with one of the following statuses may be captured: requires_capture.", st)
		}
		capturable := getInt(obj, "amount_capturable")
		amt := intOr(c.params["amount_to_capture"], capturable)
		if amt < 1 || amt > capturable {
			return nil, invalid("amount_too_large", "amount_to_capture", "The amount to capture (%d) must be greater than 0 and at most the PaymentIntent's amount_capturable (%d).", amt, capturable)
		}
		ch := e.load(kCharge, getStr(obj, "latest_charge"))
		if ch == nil {
			return nil, invalid("", "", "This PaymentIntent has no charge to capture.")
		}
		if getBool(ch, "refunded") {
			// A refund released the authorization (the intent stays
			// requires_capture here). Spec, charge capture: expired
			// authorizations "are marked as refunded and capture
			// attempts will fail".
			return nil, invalid("charge_already_refunded", "", "Charge %s has already been refunded.", idOf(ch))
		}
		// The metadata is merged first: a 51st key refuses the capture
		// before the charge is captured.
		if md, ok := c.params["metadata"]; ok {
			e.applyParams(kPI.schema, obj, map[string]any{"metadata": md})
			if ae := checkMetadataCount(obj); ae != nil {
				return nil, ae
			}
		}
		e.captureCharge(c, ch, amt)
		return e.render(kPI, e.capturedPI(c, obj, amt).raw, c)
	})
	handle("POST", "/v1/payment_intents/{intent}/cancel", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kPI, c.path["intent"])
		if obj == nil {
			return nil, notFound("intent", "payment_intent", c.path["intent"])
		}
		if getStr(obj, "invoice") != "" {
			return nil, invalid("", "", "You cannot cancel this PaymentIntent because it was created by an invoice.")
		}
		switch getStr(obj, "status") {
		case "succeeded", "canceled":
			return nil, invalid("payment_intent_unexpected_state", "", "You cannot cancel this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.", getStr(obj, "status"))
		}
		old := deepCopy(obj).(map[string]any)
		if getStr(obj, "status") == "requires_capture" {
			// The held amount goes back to the cardholder: Stripe counts
			// it as refunded on the uncaptured charge.
			if ch := e.load(kCharge, getStr(obj, "latest_charge")); ch != nil {
				cho := deepCopy(ch).(map[string]any)
				ch["amount_refunded"], ch["refunded"] = ch["amount"], true
				e.save(c, kCharge, ch, cho, "charge.refunded")
			}
			obj["amount_capturable"] = int64(0)
		}
		obj["status"], obj["canceled_at"] = "canceled", c.now
		obj["cancellation_reason"] = strOr(c.params["cancellation_reason"], "requested_by_customer")
		r := e.save(c, kPI, obj, old, "payment_intent.canceled")
		return e.render(kPI, r.raw, c)
	})

	// setup intents
	kSI.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		obj["client_secret"] = idOf(obj) + "_secret_" + randAlnum(e.idRand, 25)
		obj["status"] = "requires_payment_method"
		obj["latest_attempt"], obj["mandate"], obj["single_use_mandate"] = nil, nil, nil
		obj["payment_method"] = e.savedTestPM(c, getStr(obj, "payment_method"))
		if pm := getStr(obj, "payment_method"); pm != "" {
			obj["status"] = "requires_confirmation"
			if !getBool(c.params, "confirm") {
				return nil
			}
			if ae := e.setupRefusal(pm, getStr(obj, "customer")); ae != nil {
				return ae // before the intent is made, as confirmable
			}
			if d := e.attachDecline(pm); d != nil {
				// As a payment intent created with confirm=true: the
				// intent is kept, announced, then failed, and the card
				// error carries it.
				e.store(kSI, obj)
				e.emit(c, "setup_intent.created", obj, nil)
				c.createdEmitted = true
				return e.setupFailed(c, obj, d, pm)
			}
			obj["status"] = "succeeded"
		}
		return nil
	}
	kSI.after = func(e *Emulator, c *reqCtx, obj map[string]any) {
		if getStr(obj, "status") == "succeeded" {
			if cus := getStr(obj, "customer"); cus != "" {
				e.attachPM(c, getStr(obj, "payment_method"), cus)
			}
			e.emit(c, "setup_intent.succeeded", obj, nil)
		}
		c.result = obj
	}
	crud(kSI, "crul")
	for _, act := range []string{"confirm", "cancel"} {
		act := act
		handle("POST", "/v1/setup_intents/{intent}/"+act, func(e *Emulator, c *reqCtx) (any, *apiError) {
			obj := e.load(kSI, c.path["intent"])
			if obj == nil {
				return nil, notFound("intent", "setupintent", c.path["intent"])
			}
			st := getStr(obj, "status")
			if st == "succeeded" || st == "canceled" {
				return nil, invalid("setup_intent_unexpected_state", "", "You cannot %s this SetupIntent because it has a status of %s.", act, st)
			}
			old := deepCopy(obj).(map[string]any)
			ev := "setup_intent.canceled"
			if act == "cancel" {
				obj["status"] = "canceled"
				obj["cancellation_reason"] = strOr(c.params["cancellation_reason"], "requested_by_customer")
			} else {
				if pm, ok := c.params["payment_method"].(string); ok {
					obj["payment_method"] = e.savedTestPM(c, pm)
				}
				pm := getStr(obj, "payment_method")
				if pm == "" {
					return nil, invalid("", "payment_method", "You must provide a payment_method to confirm this SetupIntent.")
				}
				if ae := e.setupRefusal(pm, getStr(obj, "customer")); ae != nil {
					return nil, ae
				}
				if d := e.attachDecline(pm); d != nil {
					return nil, e.setupFailed(c, obj, d, pm)
				}
				obj["status"], obj["last_setup_error"] = "succeeded", nil
				ev = "setup_intent.succeeded"
				if cus := getStr(obj, "customer"); cus != "" {
					e.attachPM(c, getStr(obj, "payment_method"), cus)
				}
			}
			r := e.save(c, kSI, obj, old, ev)
			return e.render(kSI, r.raw, c)
		})
	}

	// payment methods (no payment_method.created in Stripe)
	kPM.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		obj["customer"] = nil
		// Only what the request gives: the fixture's are stripe-mock's
		// example person (jenny@example.com, 1234 Fake Street).
		bd := noBillingDetails()
		if p, ok := c.params["billing_details"].(map[string]any); ok {
			for _, f := range []string{"email", "name", "phone"} {
				if v, ok := p[f].(string); ok && v != "" {
					bd[f] = v
				}
			}
			if a, ok := p["address"].(map[string]any); ok {
				addr := bd["address"].(map[string]any)
				for f := range addr {
					if v, ok := a[f].(string); ok && v != "" {
						addr[f] = v
					}
				}
			}
		}
		obj["billing_details"] = bd
		if t, ok := c.params["type"].(string); ok && t != "card" {
			obj["type"] = t
			delete(obj, "card")
			obj[t] = map[string]any{}
			return nil
		}
		return e.testCard(c, obj, c.params["card"])
	}
	// Spec (POST /v1/payment_methods/{payment_method}): "A PaymentMethod
	// must be attached a customer to be updated."
	kPM.update = func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
		if getStr(old, "customer") == "" {
			return invalid("", "", "You must save this PaymentMethod to a customer before you can update it.")
		}
		return nil
	}
	crud(kPM, "c")
	// Retrieves and lists show a customer's saved cards too (cardpm.go).
	handle("GET", "/v1/payment_methods/{payment_method}", retrievePM)
	handle("POST", "/v1/payment_methods/{payment_method}", cardPMWrites(genericUpdate(kPM), updateCardPM))
	handle("GET", "/v1/payment_methods", listPMs)
	handle("GET", "/v1/customers/{customer}/payment_methods", func(e *Emulator, c *reqCtx) (any, *apiError) {
		if e.tables["customers"].byID[c.path["customer"]] == nil {
			return nil, notFound("customer", "customer", c.path["customer"])
		}
		c.params["customer"] = c.path["customer"]
		return listPMs(e, c)
	})
	handle("GET", "/v1/customers/{customer}/payment_methods/{payment_method}", retrievePM)
	handle("POST", "/v1/payment_methods/{payment_method}/attach", cardPMWrites(func(e *Emulator, c *reqCtx) (any, *apiError) {
		cus, _ := c.params["customer"].(string)
		if ae := e.mustExist("customers", "customer", cus); ae != nil {
			return nil, ae
		}
		if pm := c.path["payment_method"]; e.isTestPM(pm) {
			// Attaching a test payment method attaches a new copy of it,
			// which the answer is (testPMClone).
			if d := e.attachDecline(pm); d != nil {
				return nil, d.err("")
			}
			clone := e.testPMClone(c, pm, "")
			e.store(kPM, clone)
			e.attachPM(c, idOf(clone), cus)
			return e.render(kPM, e.tables["payment_methods"].byID[idOf(clone)].raw, c)
		}
		if e.tables["payment_methods"].byID[c.path["payment_method"]] == nil {
			return nil, notFound("payment_method", "PaymentMethod", c.path["payment_method"])
		}
		if ae := e.attachable(c.path["payment_method"], cus); ae != nil {
			return nil, ae
		}
		if d := e.attachDecline(c.path["payment_method"]); d != nil {
			return nil, d.err("")
		}
		e.attachPM(c, c.path["payment_method"], cus)
		return e.render(kPM, e.tables["payment_methods"].byID[c.path["payment_method"]].raw, c)
	}, attachCardPM))
	handle("POST", "/v1/payment_methods/{payment_method}/detach", cardPMWrites(func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kPM, c.path["payment_method"])
		if obj == nil {
			return nil, notFound("payment_method", "PaymentMethod", c.path["payment_method"])
		}
		if getStr(obj, "customer") == "" {
			return nil, invalid("", "", "The payment method you provided is not attached to a customer so detachment is impossible.")
		}
		old := deepCopy(obj).(map[string]any)
		cus := e.load(kCustomer, getStr(obj, "customer"))
		obj["customer"] = nil
		e.detached[idOf(obj)] = true
		r := e.save(c, kPM, obj, old, "payment_method.detached")
		if cus != nil {
			e.handOverDefault(c, cus, idOf(obj))
		}
		return e.render(kPM, r.raw, c)
	}, detachCardPM))

	// charges
	kCharge.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		if _, ok := c.params["amount"]; !ok {
			return missing("amount")
		}
		if _, ok := c.params["currency"]; !ok {
			return missing("currency")
		}
		if ae := chargeableAmount(obj); ae != nil {
			return ae
		}
		cus := getStr(obj, "customer")
		src, _ := c.params["source"].(string)
		if cus != "" {
			if ae := e.mustExist("customers", "customer", cus); ae != nil {
				return ae
			}
			if src == "" {
				// "pass only a customer ID in the customer parameter and
				// omit the source parameter. In this case, the customer's
				// default source will be used for the charge"
				// (stripe/stripe-go#490): the Charges API predates
				// payment methods and doesn't take invoice_settings'.
				if src = e.customerDefaultSource(cus); src == "" {
					return noActiveCard()
				}
			}
		}
		if src == "" {
			return invalid("", "source", "You must supply either a source or a customer id")
		}
		var card map[string]any // a token's card, made for this charge
		switch {
		case strings.HasPrefix(src, "tok_") && cus != "":
			return notLinked(cus, src, "source")
		case strings.HasPrefix(src, "tok_"):
			var ae *apiError
			if card, ae = e.tokenCard(c, src); ae != nil {
				return ae
			}
			src = idOf(card)
		case strings.HasPrefix(src, "card_") && cus == "":
			// Spec, POST /v1/charges source: "For certain
			// sources---namely, cards, bank accounts, and attached
			// sources---you must also pass the ID of the associated
			// customer". Without one Stripe looks for a token of that id
			// (stripe/stripe-dotnet#331: "There is no token with ID
			// card_…", today's wording of it below).
			return invalid("resource_missing", "source", "No such token: '%s'", src)
		}
		if ae := e.sourceOf(cus, src, "source"); card == nil && ae != nil {
			return ae
		}
		e.fillCharge(c, obj, cus, src, getInt(obj, "amount"), getStr(obj, "currency"), "", "")
		if card != nil {
			obj["source"] = card
			e.describeCard(obj, card)
		}
		if d := e.declineOf(src); d != nil {
			// Stripe keeps the failed charge and names it in the card
			// error.
			e.failCharge(obj, d)
			e.store(kCharge, obj)
			e.emit(c, "charge.failed", obj, nil)
			e.forgetTokenCard(obj)
			return d.err(idOf(obj))
		}
		if capture, ok := c.params["capture"].(bool); ok && !capture {
			e.holdCharge(obj)
		}
		return nil
	}
	kCharge.after = func(e *Emulator, c *reqCtx, obj map[string]any) {
		e.emit(c, "charge.succeeded", obj, nil)
		if getBool(obj, "captured") {
			if e.disputing(getStr(obj, "payment_method")) {
				e.makeDispute(c, obj)
			}
			e.forgetTokenCard(obj)
		}
	}
	crud(kCharge, "crul")
	handle("POST", "/v1/charges/{charge}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kCharge, c.path["charge"])
		if obj == nil {
			return nil, notFound("charge", "charge", c.path["charge"])
		}
		old := deepCopy(obj).(map[string]any)
		e.applyParams(kCharge.schema, obj, c.params)
		if ae := checkMetadataCount(obj); ae != nil {
			return nil, ae
		}
		r := e.save(c, kCharge, obj, old, "charge.updated")
		return e.render(kCharge, r.raw, c)
	})
	handle("POST", "/v1/charges/{charge}/capture", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kCharge, c.path["charge"])
		if obj == nil {
			return nil, notFound("charge", "charge", c.path["charge"])
		}
		if getBool(obj, "captured") {
			return nil, invalid("charge_already_captured", "", "Charge %s has already been captured.", idOf(obj))
		}
		if st := getStr(obj, "status"); st != "succeeded" {
			// A declined charge authorized nothing: captured, it made
			// money out of a failed payment.
			return nil, invalid("", "", "Charge %s cannot be captured because it has a status of %s.", idOf(obj), st)
		}
		if getBool(obj, "refunded") {
			return nil, invalid("charge_already_refunded", "", "Charge %s has already been refunded.", idOf(obj))
		}
		amt := intOr(c.params["amount"], getInt(obj, "amount"))
		if amt < 1 || amt > getInt(obj, "amount") {
			return nil, invalid("amount_too_large", "amount", "The amount to capture (%d) must be greater than 0 and at most the charge's amount (%d).", amt, getInt(obj, "amount"))
		}
		r := e.captureCharge(c, obj, amt)
		// Stripe's docs send a PaymentIntent's charge to the intent's
		// capture; if it is captured here anyway, the intent follows.
		if pi := e.load(kPI, getStr(obj, "payment_intent")); pi != nil && getStr(pi, "status") == "requires_capture" {
			e.capturedPI(c, pi, amt)
		}
		return e.render(kCharge, r.raw, c)
	})
	handle("GET", "/v1/charges/{charge}/refunds", func(e *Emulator, c *reqCtx) (any, *apiError) {
		if e.tables["charges"].byID[c.path["charge"]] == nil {
			return nil, notFound("charge", "charge", c.path["charge"])
		}
		c.params["charge"] = c.path["charge"]
		return genericList(kRefund, nil)(e, c)
	})

	// refunds
	kRefund.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		chID, _ := c.params["charge"].(string)
		if piID, ok := c.params["payment_intent"].(string); ok && chID == "" {
			pi := e.load(kPI, piID)
			if pi == nil {
				return e.mustExist("payment_intents", "payment_intent", piID)
			}
			chID = getStr(pi, "latest_charge")
			if chID == "" {
				return invalid("", "payment_intent", "This PaymentIntent does not have a successful charge to refund.")
			}
		}
		if chID == "" {
			return invalid("parameter_missing", "charge", "One of the following params should be provided for this request: payment_intent or charge.")
		}
		ch := e.load(kCharge, chID)
		if ch == nil {
			return e.mustExist("charges", "charge", chID)
		}
		if st := getStr(ch, "status"); st != "succeeded" {
			return invalid("", "charge", "Charge %s cannot be refunded because it has a status of %s.", chID, st)
		}
		if getBool(ch, "disputed") && e.openDispute(chID) != nil {
			// The disputed amount went back to the bank already: a
			// refund would pay it back a second time (the dispute says
			// so: is_charge_refundable false).
			return invalid("charge_disputed", "charge", "Charge %s has been charged back.", chID)
		}
		left := getInt(ch, "amount") - getInt(ch, "amount_refunded")
		if left == 0 {
			return invalid("charge_already_refunded", "", "Charge %s has already been refunded.", chID)
		}
		amt := intOr(c.params["amount"], left)
		if amt <= 0 || amt > left {
			return invalid("amount_too_large", "amount", "Refund amount (%d) is greater than unrefunded amount on charge (%d)", amt, left)
		}
		if !getBool(ch, "captured") && amt != getInt(ch, "amount") {
			// A refund of an authorization releases all of it; a part
			// is released by capturing less. Released in part, the
			// charge could still be captured whole.
			return invalid("", "amount", "You cannot partially refund an uncaptured charge. Instead, capture the charge for an amount less than the original amount")
		}
		obj["amount"], obj["currency"] = amt, ch["currency"]
		obj["charge"], obj["payment_intent"] = chID, ch["payment_intent"]
		obj["status"] = "succeeded"
		obj["reason"] = c.params["reason"]
		obj["failure_balance_transaction"], obj["failure_reason"] = nil, nil
		obj["balance_transaction"] = nil
		if getBool(ch, "captured") {
			// Releasing an uncaptured charge moves no money.
			obj["balance_transaction"] = e.makeTxn(c, -amt, getStr(ch, "currency"), idOf(obj), "refund", 0)
		}
		// The charge reflects the refund.
		old := deepCopy(ch).(map[string]any)
		ch["amount_refunded"] = getInt(ch, "amount_refunded") + amt
		ch["refunded"] = getInt(ch, "amount_refunded") == getInt(ch, "amount")
		e.save(c, kCharge, ch, old, "charge.refunded")
		return nil
	}
	crud(kRefund, "crul")
	handle("POST", "/v1/charges/{charge}/refunds", func(e *Emulator, c *reqCtx) (any, *apiError) {
		c.params["charge"] = c.path["charge"]
		return genericCreate(kRefund)(e, c)
	})
	handle("POST", "/v1/refunds/{refund}/cancel", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kRefund, c.path["refund"])
		if obj == nil {
			return nil, notFound("refund", "refund", c.path["refund"])
		}
		return nil, invalid("", "", "You can't cancel a refund that has status %s.", getStr(obj, "status"))
	})

	// disputes: created by charging the test source tok_createDispute /
	// pm_card_createDispute, as in Stripe test mode.
	kDispute.update = func(e *Emulator, c *reqCtx, obj, old map[string]any) *apiError {
		ev, hasEvidence := c.params["evidence"].(map[string]any)
		if hasEvidence {
			cur, _ := obj["evidence"].(map[string]any)
			if cur == nil {
				cur = map[string]any{}
			}
			for k, v := range ev {
				cur[k] = v
			}
			obj["evidence"] = cur
		}
		details, _ := obj["evidence_details"].(map[string]any)
		if details == nil {
			details = map[string]any{}
			obj["evidence_details"] = details
		}
		if hasEvidence {
			details["has_evidence"] = true
		}
		// submit (default true) sends the evidence to the bank; false
		// only stages it, and the dispute still needs a response.
		if submit, ok := c.params["submit"].(bool); getStr(obj, "status") == "needs_response" && (!ok || submit) {
			obj["status"] = "under_review"
			details["submission_count"] = getInt(details, "submission_count") + 1
		}
		return nil
	}
	crud(kDispute, "rl")
	handle("POST", "/v1/disputes/{dispute}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kDispute, c.path["dispute"])
		if obj == nil {
			return nil, notFound("dispute", "dispute", c.path["dispute"])
		}
		submitting := getStr(obj, "status") == "needs_response"
		res, ae := e.updateObject(kDispute, c, obj)
		if ae != nil || !submitting || getStr(obj, "status") != "under_review" {
			return res, ae
		}
		// Stripe's test evidence (docs.stripe.com/testing#disputes,
		// "Evidence"): uncategorized_text winning_evidence closes the
		// dispute as won, losing_evidence as lost. Stripe decides it
		// moments later; here at once, after the update's own event.
		ev, _ := obj["evidence"].(map[string]any)
		switch getStr(ev, "uncategorized_text") {
		case "winning_evidence":
			return e.render(kDispute, e.closeDispute(c, obj, "won").raw, c)
		case "losing_evidence":
			return e.render(kDispute, e.closeDispute(c, obj, "lost").raw, c)
		}
		return res, nil
	})
	handle("POST", "/v1/disputes/{dispute}/close", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kDispute, c.path["dispute"])
		if obj == nil {
			return nil, notFound("dispute", "dispute", c.path["dispute"])
		}
		if st := getStr(obj, "status"); st == "lost" || st == "won" {
			return nil, invalid("", "", "This dispute is already closed")
		}
		return e.render(kDispute, e.closeDispute(c, obj, "lost").raw, c)
	})

	// payouts
	kPayout.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		obj["status"] = "pending"
		obj["arrival_date"] = c.now + 2*86400
		obj["failure_balance_transaction"], obj["failure_code"], obj["failure_message"] = nil, nil, nil
		obj["original_payout"], obj["reversed_by"] = nil, nil
		obj["balance_transaction"] = e.makeTxn(c, -getInt(obj, "amount"), getStr(obj, "currency"), idOf(obj), "payout", 0)
		return nil
	}
	crud(kPayout, "crul")
	handle("POST", "/v1/payouts/{payout}/cancel", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kPayout, c.path["payout"])
		if obj == nil {
			return nil, notFound("payout", "payout", c.path["payout"])
		}
		if getStr(obj, "status") != "pending" {
			return nil, invalid("", "", "Payouts can only be canceled while they are pending.")
		}
		old := deepCopy(obj).(map[string]any)
		obj["status"] = "canceled"
		r := e.save(c, kPayout, obj, old, "payout.canceled")
		return e.render(kPayout, r.raw, c)
	})

	// balance transactions (read only; no events of their own)
	crud(kTxn, "rl")

	// checkout sessions
	kCS.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		mode := strOr(c.params["mode"], "")
		if mode == "" {
			return missing("mode")
		}
		obj["id"] = "cs_test_" + randAlnum(e.idRand, 58)
		if c.live {
			obj["id"] = "cs_live_" + randAlnum(e.idRand, 58)
		}
		if cus := getStr(obj, "customer"); cus != "" {
			if ae := e.mustExist("customers", "customer", cus); ae != nil {
				return ae
			}
		}
		if li, ok := c.params["line_items"].([]any); ok {
			var total int64
			var items []json.RawMessage
			for i, x := range li {
				m, _ := x.(map[string]any)
				pid, _ := m["price"].(string)
				if pid != "" {
					p := e.load(kPrice, pid)
					if p == nil {
						return e.mustExist("prices", fmt.Sprintf("line_items[%d][price]", i), pid)
					}
					qty := intOr(m["quantity"], 1)
					amt := lineAmount(priceUnit(p), qty)
					total += amt
					obj["currency"] = p["currency"]
					it := e.api.fixture("item")
					it["id"] = "li_" + randAlnum(e.idRand, 24)
					it["price"], it["quantity"], it["currency"] = p, qty, p["currency"]
					it["amount_subtotal"], it["amount_total"], it["amount_discount"], it["amount_tax"] = amt, amt, int64(0), int64(0)
					it["description"] = getStr(p, "nickname")
					if prod := e.load(kProduct, getStr(p, "product")); prod != nil {
						it["description"] = prod["name"]
					}
					b, _ := marshal(it)
					items = append(items, b)
				}
			}
			e.csItems[idOf(obj)] = items
			obj["amount_subtotal"], obj["amount_total"] = total, total
		} else if mode != "setup" {
			return invalid("parameter_missing", "line_items", "You must specify either `line_items` or `prices` in `payment` or `subscription` mode.")
		}

		obj["status"], obj["payment_status"] = "open", "unpaid"
		obj["expires_at"] = c.now + 24*3600
		obj["url"] = "https://checkout.stripe.com/c/pay/" + idOf(obj)
		obj["payment_intent"], obj["subscription"], obj["invoice"], obj["setup_intent"] = nil, nil, nil, nil
		obj["customer_details"] = nil
		obj["total_details"] = map[string]any{"amount_discount": int64(0), "amount_shipping": int64(0), "amount_tax": int64(0)}
		obj["client_reference_id"] = c.params["client_reference_id"]
		return nil
	}
	crud(kCS, "crl")
	handle("POST", "/v1/checkout/sessions/{session}/expire", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kCS, c.path["session"])
		if obj == nil {
			return nil, notFound("session", "checkout.session", c.path["session"])
		}
		if getStr(obj, "status") != "open" {
			return nil, invalid("", "", "Only Checkout Sessions with a status in [\"open\"] can be expired.")
		}
		old := deepCopy(obj).(map[string]any)
		obj["status"] = "expired"
		r := e.save(c, kCS, obj, old, "checkout.session.expired")
		return e.render(kCS, r.raw, c)
	})
	handle("GET", "/v1/checkout/sessions/{session}/line_items", func(e *Emulator, c *reqCtx) (any, *apiError) {
		if e.tables["checkout_sessions"].byID[c.path["session"]] == nil {
			return nil, notFound("session", "checkout.session", c.path["session"])
		}
		lt := newTable("checkout_items", nil)
		for i, raw := range e.csItems[c.path["session"]] {
			id, _ := decodeObject(raw)
			lt.put(&record{id: idOf(id), seq: uint64(i + 1), raw: raw, parent: "x"})
		}
		q, ae := e.parseList(c, lt, "line item")
		if ae != nil {
			return nil, ae
		}
		recs, more := page(lt.children["x"], q, true)
		return e.renderList(recs, more, "/v1/checkout/sessions/"+c.path["session"]+"/line_items", "item", c)
	})

	// tax ids, nested under customers and top-level
	kTaxID.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		cus := getStr(obj, "customer")
		if cus == "" {
			if o, ok := c.params["owner"].(map[string]any); ok {
				cus, _ = o["customer"].(string)
			}
		}
		if cus != "" {
			if ae := e.mustExist("customers", "customer", cus); ae != nil {
				return ae
			}
			obj["owner"] = map[string]any{"type": "customer", "customer": cus, "account": nil, "application": nil}
		} else {
			obj["owner"] = map[string]any{"type": "self", "customer": nil, "account": nil, "application": nil}
		}
		obj["customer"] = nil
		if cus != "" {
			obj["customer"] = cus
		}
		t := getStr(obj, "type")
		country := strings.ToUpper(strings.SplitN(t, "_", 2)[0])
		if v := getStr(obj, "value"); strings.HasPrefix(t, "eu_") && len(v) >= 2 {
			country = strings.ToUpper(v[:2])
		}
		obj["country"] = country
		obj["verification"] = map[string]any{"status": "pending", "verified_address": nil, "verified_name": nil}
		return nil
	}
	kTaxID.after = func(e *Emulator, c *reqCtx, obj map[string]any) {
		e.followTaxIDs(getStr(obj, "customer"))
		c.result = obj
	}
	kTaxID.del = func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kTaxID, c.path["id"])
		if obj == nil {
			return nil, notFound("id", "tax_id", c.path["id"])
		}
		return e.deleteTaxID(c, obj), nil
	}
	crud(kTaxID, "crdl")
	handle("GET", "/v1/customers/{customer}/tax_ids", func(e *Emulator, c *reqCtx) (any, *apiError) {
		if e.tables["customers"].byID[c.path["customer"]] == nil {
			return nil, notFound("customer", "customer", c.path["customer"])
		}
		c.params["customer"] = c.path["customer"]
		return genericList(kTaxID, nil)(e, c)
	})
	handle("POST", "/v1/customers/{customer}/tax_ids", func(e *Emulator, c *reqCtx) (any, *apiError) {
		if e.tables["customers"].byID[c.path["customer"]] == nil {
			return nil, notFound("customer", "customer", c.path["customer"])
		}
		c.params["customer"] = c.path["customer"]
		return genericCreate(kTaxID)(e, c)
	})
	handle("GET", "/v1/customers/{customer}/tax_ids/{id}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		r := e.tables["tax_ids"].byID[c.path["id"]]
		if r == nil || r.keys[0] != c.path["customer"] {
			return nil, notFound("id", "tax_id", c.path["id"])
		}
		return e.render(kTaxID, r.raw, c)
	})
	handle("DELETE", "/v1/customers/{customer}/tax_ids/{id}", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kTaxID, c.path["id"])
		if obj == nil || getStr(obj, "customer") != c.path["customer"] {
			return nil, notFound("id", "tax_id", c.path["id"])
		}
		return e.deleteTaxID(c, obj), nil
	})

	// credit notes
	kCN.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		iid, _ := c.params["invoice"].(string)
		inv := e.load(kInvoice, iid)
		if inv == nil {
			return e.mustExist("invoices", "invoice", iid)
		}
		st := getStr(inv, "status")
		if st != "open" && st != "paid" {
			return invalid("", "invoice", "You can only create credit notes for open or paid invoices.")
		}
		credited := getInt(inv, "pre_payment_credit_notes_amount") + getInt(inv, "post_payment_credit_notes_amount")
		amt := intOr(c.params["amount"], getInt(inv, "total")-credited)
		// Stripe's docs (billing/invoices/credit-notes): "The sum of all
		// credit notes cannot exceed the invoice's total amount." (The
		// wording of this answer is the emulator's.)
		if amt <= 0 || amt > getInt(inv, "total")-credited {
			return invalid("", "amount", "The credit note amount (%d) must be positive and at most the invoice's total less its other credit notes (%d).", amt, getInt(inv, "total")-credited)
		}
		e.creditInvoice(c, inv, amt, st == "paid")
		obj["invoice"], obj["customer"], obj["currency"] = iid, inv["customer"], inv["currency"]
		obj["amount"], obj["subtotal"], obj["total"] = amt, amt, amt
		obj["subtotal_excluding_tax"], obj["total_excluding_tax"] = amt, amt
		obj["amount_shipping"] = int64(0)
		obj["status"] = "issued"
		obj["type"] = "pre_payment"
		if st == "paid" {
			obj["type"] = "post_payment"
		}
		obj["number"] = fmt.Sprintf("%s-CN-%02d", strings.ToUpper(idOf(obj)[3:11]), 1)
		obj["refund"], obj["customer_balance_transaction"], obj["voided_at"] = nil, nil, nil
		// No tax is computed (doc.go): not the fixture's 190 of a tax
		// rate that doesn't exist here.
		obj["tax_amounts"] = []any{}
		obj["effective_at"] = c.now
		obj["pdf"] = "https://pay.stripe.com/credit_notes/" + idOf(obj) + "/pdf"
		return nil
	}
	crud(kCN, "crul")
	handle("POST", "/v1/credit_notes/{id}/void", func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := e.load(kCN, c.path["id"])
		if obj == nil {
			return nil, notFound("id", "credit note", c.path["id"])
		}
		if getStr(obj, "status") == "void" {
			return nil, invalid("", "", "This credit note has already been voided.")
		}
		if inv := e.load(kInvoice, getStr(obj, "invoice")); inv != nil {
			e.creditInvoice(c, inv, -getInt(obj, "amount"), getStr(obj, "type") == "post_payment")
		}
		old := deepCopy(obj).(map[string]any)
		obj["status"], obj["voided_at"] = "void", c.now
		r := e.save(c, kCN, obj, old, "credit_note.voided")
		return e.render(kCN, r.raw, c)
	})
	handle("GET", "/v1/credit_notes/{credit_note}/lines", func(e *Emulator, c *reqCtx) (any, *apiError) {
		if e.tables["credit_notes"].byID[c.path["credit_note"]] == nil {
			return nil, notFound("credit_note", "credit note", c.path["credit_note"])
		}
		return []byte(`{"object":"list","data":[],"has_more":false,"url":"/v1/credit_notes/` + c.path["credit_note"] + `/lines"}`), nil
	})
}

// customerDefaultSource is what a payment of customer cus that names no
// payment method is charged to, outside invoices: its default_source
// only. Spec, POST /v1/payment_intents payment_method: "If you omit this
// parameter with confirm=true, customer.default_source attaches as this
// PaymentIntent's payment instrument to improve migration for users of
// the Charges API"; the Charges API: stripe/stripe-go#490 (customer.go's
// charge create). invoice_settings.default_payment_method is "to be used
// as the customer's default payment method for subscriptions and
// invoices" (spec), not for these.
func (e *Emulator) customerDefaultSource(cus string) string {
	return getStr(e.load(kCustomer, cus), "default_source")
}

// noActiveCard is Stripe's answer to a charge of a customer with no
// default source: a card error, code missing, param card ("Cannot charge
// a customer that has no active card", as clients' tests and logs record
// it, e.g. a stripe-python test asserting CardError, code "missing").
func noActiveCard() *apiError {
	return &apiError{status: 402, Type: "card_error", Code: "missing", Param: "card", Message: "Cannot charge a customer that has no active card"}
}

// invoicePaymentMethod is what an invoice is charged to when its payment
// names none: its own default_payment_method, then default_source, then
// its subscription's and its customer's as subscriptionPaymentMethod
// has them. Spec, invoice.default_payment_method: "If not set, defaults
// to the subscription's default payment method, if any, or to the
// default payment method in the customer's invoice settings";
// default_source: "If not set, defaults to the subscription's default
// source, if any, or to the customer's default source". Which of the
// invoice's source and the subscription's payment method comes first the
// spec doesn't say; the invoice's own settings are taken first.
func (e *Emulator) invoicePaymentMethod(inv map[string]any) string {
	for _, f := range []string{"default_payment_method", "default_source"} {
		if pm := getStr(inv, f); pm != "" {
			return pm
		}
	}
	if sub := e.load(kSub, getStr(inv, "subscription")); sub != nil {
		return e.subscriptionPaymentMethod(sub)
	}
	return e.defaultPaymentMethod(getStr(inv, "customer"))
}

// defaultPaymentMethod is the customer's invoice default payment method, or
// its default source (a card, sources.go): what its invoices and
// subscriptions are charged to (spec, subscription.default_payment_method:
// "If neither are set, invoices will use the customer's
// invoice_settings.default_payment_method or default_source").
func (e *Emulator) defaultPaymentMethod(cus string) string {
	cu := e.load(kCustomer, cus)
	if cu == nil {
		return ""
	}
	if is, ok := cu["invoice_settings"].(map[string]any); ok {
		if pm := getStr(is, "default_payment_method"); pm != "" {
			return pm
		}
	}
	if ds := getStr(cu, "default_source"); ds != "" {
		return ds
	}
	return ""
}

// initPI gives a new payment intent what Stripe sets on creation: its
// client secret, nothing received or charged yet, and the status its
// payment method allows.
func (e *Emulator) initPI(pi map[string]any) {
	pi["client_secret"] = idOf(pi) + "_secret_" + randAlnum(e.idRand, 25)
	pi["status"] = "requires_payment_method"
	if getStr(pi, "payment_method") != "" {
		pi["status"] = "requires_confirmation"
	}
	pi["amount_received"], pi["amount_capturable"] = int64(0), int64(0)
	pi["latest_charge"] = nil
}

// setupFailed fails setup intent si, whose payment method pm d refused
// (attachDecline): spec, POST /v1/setup_intents/{intent}/confirm, "If
// setup fails, the SetupIntent will transition to the
// requires_payment_method status"; the payment method is taken off it
// as a failed payment intent's is, the error kept in last_setup_error,
// nothing attached; setup_intent.setup_failed at every failed attempt.
// The card error for the caller carries the intent
// (api_errors.setup_intent).
func (e *Emulator) setupFailed(c *reqCtx, si map[string]any, d *declineCard, pm string) *apiError {
	si["status"], si["payment_method"] = "requires_payment_method", nil
	si["last_setup_error"] = e.lastSetupError(d, pm)
	ae := d.err("")
	ae.SetupIntent = e.store(kSI, si).raw
	e.emit(c, "setup_intent.setup_failed", si, nil)
	return ae
}

// setupRefusal refuses, before its card is checked, a setup intent of
// customer cus (or none) confirmed with pm, which would save pm for cus:
// what attaching refuses (attachable), and without a customer a detached
// payment method, which "may not be used again" either way. Otherwise
// attachPM would move another customer's payment method to cus, or give
// a detached one a customer again (e.detached).
func (e *Emulator) setupRefusal(pm, cus string) *apiError {
	if cus != "" {
		return e.attachable(pm, cus)
	}
	if e.detached[pm] {
		return detachedPM()
	}
	return nil
}

// attachable refuses a payment method attached to another customer, as
// Stripe does (detach it first), and one that was detached (spec, POST
// /v1/payment_methods/{payment_method}/detach: "it can no longer be used
// for a payment or re-attached to a Customer").
func (e *Emulator) attachable(pmID, cus string) *apiError {
	if e.detached[pmID] {
		return detachedPM()
	}
	if pm := e.load(kPM, pmID); pm != nil {
		if cur := getStr(pm, "customer"); cur != "" && cur != cus {
			return invalid("", "", "The payment method you provided has already been attached to a customer.")
		}
	}
	return nil
}

// detachedPM is Stripe's refusal of a detached payment method.
func detachedPM() *apiError {
	return invalid("", "", "This PaymentMethod was previously used without being attached to a Customer or was detached from a Customer, and may not be used again.")
}

// testPMClone is the new payment method Stripe makes of one of its test
// payment methods (pm_card_visa, pm_card_chargeCustomerFail, ...) where
// one is saved: "pm_card_visa" names a test card, not a payment method,
// and attaching it (POST /v1/payment_methods/pm_card_visa/attach, a
// customer created with payment_method=pm_card_visa) attaches a new pm_
// of that card, whose id the answer and invoice_settings carry. The
// copy is made as POST /v1/payment_methods with card[token] makes one
// (testCard: the card's details, how its payments fail) and pays,
// declines or disputes as the test card does. id is the id it takes
// ("" for a new one); it is returned unstored and unattached.
func (e *Emulator) testPMClone(c *reqCtx, pm, id string) map[string]any {
	obj := e.newObject(kPM, c.now, c.live)
	if id != "" {
		obj["id"] = id
	}
	obj["customer"], obj["type"], obj["metadata"] = nil, "card", map[string]any{}
	obj["billing_details"] = noBillingDetails()
	tok := pm
	if declineByID[pm] == nil {
		tok = "tok_" + strings.TrimPrefix(pm, "pm_card_")
	}
	e.testCard(c, obj, map[string]any{"token": tok})
	if e.disputing(pm) {
		e.disputers[idOf(obj)] = true
	}
	e.unlisted[idOf(obj)] = true // until attached (attachPM)
	return obj
}

// savedTestPM is the payment method a setup or payment intent given pm
// uses: for one of Stripe's test payment methods (pm_card_visa, ...) a
// new, stored copy of its card (testPMClone), as Stripe makes a new
// PaymentMethod of a test one at each use, so that the intent's
// payment_method is an id the customer's defaults and lists take once
// it is attached (customersPM refuses the test id itself); any other pm
// as it is ("" is none: nil).
func (e *Emulator) savedTestPM(c *reqCtx, pm string) any {
	if pm == "" {
		return nil
	}
	if !e.isTestPM(pm) {
		return pm
	}
	clone := e.testPMClone(c, pm, "")
	e.store(kPM, clone)
	return idOf(clone)
}

func (e *Emulator) attachPM(c *reqCtx, pmID, cus string) {
	pm := e.load(kPM, pmID)
	if pm == nil || getStr(pm, "customer") == cus {
		return // attaching again to the same customer changes nothing
	}
	old := deepCopy(pm).(map[string]any)
	pm["customer"] = cus
	delete(e.unlisted, pmID)
	e.save(c, kPM, pm, old, "payment_method.attached")
}

// confirmable refuses, before anything is created, a confirmation that
// can't be attempted.
func (e *Emulator) confirmable(pi map[string]any) *apiError {
	_, ae := e.confirmMethod(pi)
	return ae
}

// confirmMethod is the payment method a confirmation of pi charges, or
// why it can't be attempted.
func (e *Emulator) confirmMethod(pi map[string]any) (string, *apiError) {
	switch getStr(pi, "status") {
	case "succeeded", "canceled", "requires_capture":
		return "", invalid("payment_intent_unexpected_state", "", "You cannot confirm this PaymentIntent because it has a status of %s.", getStr(pi, "status"))
	}
	pm := getStr(pi, "payment_method")
	if pm == "" && getStr(pi, "invoice") == "" {
		pm = e.customerDefaultSource(getStr(pi, "customer"))
	}
	if pm == "" {
		return "", invalid("payment_intent_unexpected_state", "payment_method", "You cannot confirm this PaymentIntent because it's missing a payment method.")
	}
	if e.detached[pm] {
		return "", detachedPM()
	}
	// Stripe takes a customer's card as payment_method ("a PaymentMethod,
	// Card, or compatible Source object", spec).
	if ae := e.sourceOf(getStr(pi, "customer"), pm, "payment_method"); ae != nil {
		return "", ae
	}
	if ae := e.knownPM(pm); ae != nil {
		return "", ae
	}
	if ae := e.intentPMRefusal(getStr(pi, "customer"), pm); ae != nil {
		return "", ae
	}
	return pm, nil
}

// knownPM refuses a pm_ id that names no payment method, as Stripe does
// (400 resource_missing, "No such PaymentMethod: 'pm_…'", param
// payment_method); Stripe's test payment methods (pm_card_visa, ...)
// name a card and are known. Other ids (a saved card's card_) are
// checked where they are charged (sourceOf).
func (e *Emulator) knownPM(pm string) *apiError {
	if !strings.HasPrefix(pm, kPM.prefix) || e.isTestPM(pm) {
		return nil
	}
	return e.mustExist("payment_methods", "payment_method", pm)
}

// intentPM checks the payment_method a create or update gives intent obj
// (unknown, another customer's) and, for a test payment method, names the
// new payment method Stripe makes of it (testPMClone).
func (e *Emulator) intentPM(c *reqCtx, obj map[string]any) *apiError {
	pm := getStr(obj, "payment_method")
	if pm == "" {
		return nil
	}
	if ae := e.knownPM(pm); ae != nil {
		return ae
	}
	if ae := e.intentPMRefusal(getStr(obj, "customer"), pm); ae != nil {
		return ae
	}
	obj["payment_method"] = e.savedTestPM(c, pm)
	return nil
}

// intentPMRefusal refuses, before anything is charged, an intent of
// customer cus (or none) paid with payment method pm attached to another
// customer: spec, POST /v1/payment_intents customer, "Payment methods
// attached to other Customers cannot be used with this PaymentIntent".
// Stripe's wordings, as recorded from its API and quoted by
// integrations that met them: with another customer "The PaymentMethod
// pm_… does not belong to the Customer you supplied cus_…. Please use
// this PaymentMethod with the Customer that it belongs to instead."
// (no code, param payment_method); with none "The `payment_method`
// parameter supplied pm_… belongs to the Customer cus_…. Please include
// the Customer in the `customer` parameter on the PaymentIntent."
// (parameter_missing, param source, as recorded; ezet/stripe-sdk#49).
// An unattached payment method pays for any intent.
func (e *Emulator) intentPMRefusal(cus, pm string) *apiError {
	obj := e.load(kPM, pm)
	if obj == nil {
		return nil
	}
	owner := getStr(obj, "customer")
	switch {
	case owner == "" || owner == cus:
		return nil
	case cus == "":
		return invalid("parameter_missing", "source", "The `payment_method` parameter supplied %s belongs to the Customer %s. Please include the Customer in the `customer` parameter on the PaymentIntent.", pm, owner)
	}
	return invalid("", "payment_method", "The PaymentMethod %s does not belong to the Customer you supplied %s. Please use this PaymentMethod with the Customer that it belongs to instead.", pm, cus)
}

// confirmPI succeeds a payment intent, creating its charge.
func (e *Emulator) confirmPI(c *reqCtx, pi map[string]any) *apiError {
	pm, ae := e.confirmMethod(pi)
	if ae != nil {
		return ae
	}
	// A test payment method (pm_card_visa, ...) names a card: the intent
	// and its charge name the new payment method Stripe makes of it at
	// each use, which pays, declines or disputes as the card does
	// (testPMClone). Made once nothing can refuse the confirmation.
	pm = e.savedTestPM(c, pm).(string)
	ch := e.newObject(kCharge, c.now, c.live)
	e.fillCharge(c, ch, getStr(pi, "customer"), pm, getInt(pi, "amount"), getStr(pi, "currency"), idOf(pi), getStr(pi, "invoice"))
	if d := e.declineOf(pm); d != nil {
		// A failed charge, the intent back to requires_payment_method with
		// its last_payment_error, and the card error for the caller.
		e.failCharge(ch, d)
		e.store(kCharge, ch)
		e.emit(c, "charge.failed", ch, nil)
		pi["payment_method"], pi["status"], pi["latest_charge"] = nil, "requires_payment_method", idOf(ch)
		pi["last_payment_error"] = lastPaymentError(d, idOf(ch))
		return d.err(idOf(ch))
	}
	pi["last_payment_error"] = nil
	pi["payment_method"] = pm
	pi["latest_charge"] = idOf(ch)
	if getStr(pi, "capture_method") == "manual" {
		// Authorized only: the charge succeeds uncaptured and the
		// intent waits for /capture (or /cancel, which releases it).
		e.holdCharge(ch)
		pi["status"], pi["amount_capturable"] = "requires_capture", pi["amount"]
	} else {
		pi["status"], pi["amount_received"] = "succeeded", pi["amount"]
	}
	e.store(kCharge, ch)
	e.emit(c, "charge.succeeded", ch, nil)
	if getBool(ch, "captured") && e.disputing(pm) {
		e.makeDispute(c, ch)
	}
	// Spec, setup_future_usage: "Providing this parameter will attach the
	// payment method to the PaymentIntent's Customer, if present, after
	// the PaymentIntent is confirmed".
	if cus := getStr(pi, "customer"); cus != "" && getStr(pi, "setup_future_usage") != "" {
		e.attachPM(c, pm, cus)
	}
	return nil
}

// noBillingDetails is the billing_details of a payment method or charge
// that has none: every field null.
func noBillingDetails() map[string]any {
	return map[string]any{
		"address": map[string]any{"city": nil, "country": nil, "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
		"email":   nil, "name": nil, "phone": nil,
	}
}

// billingDetailsOf is a charge's billing_details, "Billing information
// associated with the payment method at the time of the transaction"
// (spec): a stored payment method's, a saved card's name and address
// (card, or nil), else none (test payment methods and tokens carry none).
func (e *Emulator) billingDetailsOf(pm string, card map[string]any) map[string]any {
	if card != nil {
		return e.cardPMView(card)["billing_details"].(map[string]any)
	}
	if obj := e.load(kPM, pm); obj != nil {
		if bd, ok := obj["billing_details"].(map[string]any); ok {
			return bd
		}
	}
	return noBillingDetails()
}

// fillCharge turns obj into a succeeded, captured charge with its balance
// transaction.
func (e *Emulator) fillCharge(c *reqCtx, obj map[string]any, cus, pm string, amt int64, cur, pi, inv string) {
	obj["amount"], obj["currency"] = amt, cur
	obj["amount_captured"], obj["amount_refunded"] = amt, int64(0)
	obj["captured"], obj["paid"], obj["refunded"], obj["disputed"] = true, true, false, false
	obj["status"] = "succeeded"
	obj["customer"] = nil
	if cus != "" {
		obj["customer"] = cus
	}
	obj["payment_method"] = pm
	obj["payment_intent"], obj["invoice"] = nil, nil
	if pi != "" {
		obj["payment_intent"] = pi
	}
	if inv != "" {
		obj["invoice"] = inv
	}
	obj["failure_code"], obj["failure_message"], obj["failure_balance_transaction"] = nil, nil, nil
	obj["outcome"], obj["fraud_details"] = authorizedOutcome(), map[string]any{}
	obj["receipt_url"] = "https://pay.stripe.com/receipts/" + idOf(obj)
	obj["description"] = nil
	if d, ok := c.params["description"].(string); ok && c.route != nil && strings.HasPrefix(c.route.path, "/v1/charges") {
		obj["description"] = d
	}
	obj["refunds"] = map[string]any{"object": "list", "data": []any{}, "has_more": false, "url": "/v1/charges/" + idOf(obj) + "/refunds"}
	delete(obj, "refunds") // not included by default since 2022-11-15; expand[]=refunds renders it
	obj["balance_transaction"] = e.makeTxn(c, amt, cur, idOf(obj), "charge", cardFee(amt))
	// source is the legacy field "It contains the Source, Card, or
	// BankAccount object used for the charge" (stripe-go v76 Charge.Source,
	// and charge.source in the SDK spec stripe-mock embeds as
	// spec3.beta.sdk.json; the public spec3.json leaves it out): the card
	// object when a saved card paid, null for a payment method.
	obj["source"] = nil
	card := e.load(kCard, pm)
	if card != nil {
		obj["source"] = card
	}
	obj["billing_details"] = e.billingDetailsOf(pm, card)
	e.describeCard(obj, card)
	if card == nil {
		e.describeCard(obj, e.cardFacts(c, pm))
	}
	if pmd, ok := obj["payment_method_details"].(map[string]any); ok {
		if pc, ok := pmd["card"].(map[string]any); ok {
			if oc, ok := pc["overcapture"].(map[string]any); ok {
				oc["maximum_amount_capturable"] = amt
			}
		}
	}
}

// pmBrands maps a card object's brand to the spelling of a payment
// method's and a charge's payment_method_details.card.brand (spec: card
// "Can be American Express, Diners Club, Discover, Eftpos Australia, JCB,
// MasterCard, UnionPay, Visa, or Unknown"; payment_method_details_card
// "Can be amex, diners, discover, eftpos_au, jcb, mastercard, unionpay,
// visa, or unknown").
var pmBrands = map[string]string{"American Express": "amex", "Diners Club": "diners", "Discover": "discover",
	"Eftpos Australia": "eftpos_au", "JCB": "jcb", "MasterCard": "mastercard", "UnionPay": "unionpay", "Visa": "visa", "Unknown": "unknown"}

// displayBrands maps a payment method's card.brand to its
// card.display_brand, which spells brands its own way (spec: "Can be
// american_express, cartes_bancaires, diners_club, discover,
// eftpos_australia, interac, jcb, mastercard, union_pay, visa, or
// other").
var displayBrands = map[string]string{"amex": "american_express", "diners": "diners_club", "discover": "discover",
	"eftpos_au": "eftpos_australia", "jcb": "jcb", "mastercard": "mastercard", "unionpay": "union_pay", "visa": "visa", "unknown": "other"}

// cardFacts is the card object (unstored, card-object spelling) standing
// for pm when pm is not a stored card: a stored card payment method's
// card, one of Stripe's test payment methods (pm_card_visa, pm_card_amex
// and the rest: the card of tok_visa, tok_amex, ...) or tokens, or a
// declining test card's; nil when unknown (the fixture's Visa stays).
func (e *Emulator) cardFacts(c *reqCtx, pm string) map[string]any {
	if obj := e.load(kPM, pm); obj != nil {
		pc, _ := obj["card"].(map[string]any)
		if pc == nil {
			return nil
		}
		card := map[string]any{"last4": pc["last4"], "exp_month": pc["exp_month"], "exp_year": pc["exp_year"],
			"fingerprint": pc["fingerprint"], "funding": pc["funding"], "country": pc["country"], "brand": pc["brand"]}
		if ch, ok := pc["checks"].(map[string]any); ok {
			card["cvc_check"], card["address_line1_check"], card["address_zip_check"] = ch["cvc_check"], ch["address_line1_check"], ch["address_postal_code_check"]
		}
		return card
	}
	tok := pm
	if rest, ok := strings.CutPrefix(pm, "pm_card_"); ok {
		tok = "tok_" + rest
	}
	if tt, ok := testTokens[tok]; ok {
		return numberFacts(c, tt.number)
	}
	if d := declineByID[pm]; d != nil {
		return numberFacts(c, d.number)
	}
	return nil
}

// describeCard fills charge ch's payment_method_details.card from card
// (a card object, or cardFacts'; nil leaves them): the brand, last four
// digits, expiry, fingerprint, funding, country and checks of the card
// actually charged ("Details about the payment method at the time of the
// transaction", spec).
func (e *Emulator) describeCard(ch, card map[string]any) {
	if card == nil {
		return
	}
	pmd, _ := ch["payment_method_details"].(map[string]any)
	if pmd == nil {
		return
	}
	pc, _ := pmd["card"].(map[string]any)
	if pc == nil {
		return
	}
	brand := getStr(card, "brand")
	if b, ok := pmBrands[brand]; ok {
		brand = b
	}
	pc["brand"], pc["network"] = brand, brand
	for _, f := range []string{"last4", "exp_month", "exp_year", "fingerprint", "funding", "country"} {
		if v, ok := card[f]; ok {
			pc[f] = v
		}
	}
	checks := map[string]any{"address_line1_check": card["address_line1_check"], "address_postal_code_check": card["address_zip_check"], "cvc_check": card["cvc_check"]}
	pc["checks"] = checks
}

// disputeFee is Stripe's fee per dispute (US pricing, in cents).
const disputeFee = 1500

// disputePricing2025 is when Stripe's US dispute pricing changed (June
// 17, 2025, 00:00 UTC): Stripe used to give the dispute fee back with a
// won dispute ("In the event that a dispute is ruled in your favor, the
// card network returns the dispute amount to Stripe, which we pass on to
// you. Stripe will also refund the network dispute fee", the dispute fees
// FAQ at support.stripe.com before); for disputes since, "For businesses
// outside Mexico, the fee for receiving a dispute is non-refundable [...]
// Unless otherwise stated in your Stripe contract, we never return the
// dispute received fee" (docs.stripe.com/disputes/how-disputes-work,
// "Dispute fees"), and a new "dispute counter fee will apply when you
// counter disputes initiated after June 17, 2025 [...] This fee will be
// returned if you win" (support.stripe.com/questions/
// june-2025-pricing-updates-for-disputes). The fee follows the dispute's
// date, not the API version. The counter fee is not modelled: Stripe
// applies it "directly to your account balance via a balance transfer.
// The fee is not shown in the balance_transactions field of the Dispute
// API object" (support.stripe.com/questions/
// calculate-dispute-countered-fees), in a shape its docs don't give, and
// a won dispute's balance is the same with it or without it (charged,
// then returned).
const disputePricing2025 = 1750118400

// disputeFeeRefunded says whether winning dispute d gives its dispute fee
// back: only for a dispute opened before disputePricing2025 (a seeded
// one, or one on a clock set back).
func disputeFeeRefunded(d map[string]any) bool { return getInt(d, "created") < disputePricing2025 }

// cardFee is Stripe's standard card pricing (2.9% + 30¢).
func cardFee(amt int64) int64 { return 30 + amt*29/1000 }

// holdCharge leaves a new charge authorized but not captured
// (capture_method=manual, or capture=false on a charge): no money has
// moved, so it has no balance transaction until it is captured. The
// authorization expires after authorizationDays (expireHolds).
func (e *Emulator) holdCharge(ch map[string]any) {
	e.tables["balance_transactions"].remove(getStr(ch, "balance_transaction"))
	ch["captured"], ch["amount_captured"], ch["balance_transaction"] = false, int64(0), nil
	due := getInt(ch, "created") + authorizationDays*86400
	if pmd, ok := ch["payment_method_details"].(map[string]any); ok {
		if card, ok := pmd["card"].(map[string]any); ok {
			card["capture_before"] = due
		}
	}
	e.holds[idOf(ch)] = due
	if due < e.nextHold.Load() {
		e.nextHold.Store(due)
	}
}

// captureCharge captures amt of an authorized charge. Its balance
// transaction is recorded now, for the captured amount; the rest of the
// authorization is released, which Stripe counts as refunded ("Any
// additional amount is automatically refunded"). A dispute test card's
// dispute comes now, for the captured amount: an authorization holds no
// funds to withdraw, and a cardholder disputes a payment, not a hold.
func (e *Emulator) captureCharge(c *reqCtx, ch map[string]any, amt int64) *record {
	old := deepCopy(ch).(map[string]any)
	ch["captured"], ch["amount_captured"] = true, amt
	ch["amount_refunded"] = getInt(ch, "amount") - amt
	ch["balance_transaction"] = e.makeTxn(c, amt, getStr(ch, "currency"), idOf(ch), "charge", cardFee(amt))
	delete(e.holds, idOf(ch))
	r := e.save(c, kCharge, ch, old, "charge.captured")
	if e.disputing(getStr(ch, "payment_method")) {
		e.makeDispute(c, ch)
		r = e.tables["charges"].byID[r.id]
	}
	e.forgetTokenCard(ch)
	return r
}

// authorizationDays is how long an uncaptured payment stays capturable
// (spec, POST /v1/charges/{charge}/capture: "Uncaptured payments expire a
// set number of days after they are created (7 by default)").
const authorizationDays = 7

// releaseDue expires the authorizations, and the pending updates of
// subscriptions off test clocks (expirePendingDue), and makes past_due
// the send_invoice subscriptions off test clocks whose invoice is unpaid
// past its due date (overdueDue), whose time has come on the emulator's
// clock. It runs before each API request and when the
// clock is moved, so an authorization expires at the first look at or
// after its capture_before; its events and timestamps are of that moment.
// A single atomic load when nothing is due keeps reads off the write
// lock.
func (e *Emulator) releaseDue() {
	now := e.Now().Unix()
	if now < e.nextHold.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextHold.Store(min(e.expireHolds(now), e.expirePendingDue(now), e.overdueDue(now)))
}

// expireHolds does what Stripe does to a payment left uncaptured past
// its capture_before: the charge is "marked as refunded and capture
// attempts will fail" (spec, charge capture), with charge.expired ("Occurs
// whenever an uncaptured charge expires"), and its intent is canceled
// with cancellation_reason automatic (spec: a reason "generated by Stripe
// internally"), with payment_intent.canceled. Holds captured or released
// meanwhile are dropped unchanged. It returns the next hold's time
// (MaxInt64: none). Callers hold mu.
func (e *Emulator) expireHolds(now int64) int64 {
	var due []string
	next := int64(math.MaxInt64)
	for id, at := range e.holds {
		if at <= now {
			due = append(due, id)
		} else if at < next {
			next = at
		}
	}
	// Oldest first (ids break ties): events in the order Stripe would
	// have sent them, the same on every run.
	slices.SortFunc(due, func(a, b string) int {
		return cmp.Or(cmp.Compare(e.holds[a], e.holds[b]), strings.Compare(a, b))
	})
	for _, id := range due {
		delete(e.holds, id)
		ch := e.load(kCharge, id)
		if ch == nil || getBool(ch, "captured") || getStr(ch, "status") != "succeeded" {
			continue
		}
		e.forgetTokenCard(ch) // it can no longer be captured
		c := &reqCtx{now: now, live: getBool(ch, "livemode")}
		if !getBool(ch, "refunded") {
			old := deepCopy(ch).(map[string]any)
			ch["amount_refunded"], ch["refunded"] = ch["amount"], true
			e.save(c, kCharge, ch, old, "charge.expired")
		}
		// A refund of the charge released the funds but left its
		// intent waiting for a capture that can no longer come.
		pi := e.load(kPI, getStr(ch, "payment_intent"))
		if pi == nil || getStr(pi, "status") != "requires_capture" {
			continue
		}
		pio := deepCopy(pi).(map[string]any)
		pi["status"], pi["canceled_at"], pi["cancellation_reason"] = "canceled", now, "automatic"
		pi["amount_capturable"] = int64(0)
		e.save(c, kPI, pi, pio, "payment_intent.canceled")
	}
	return next
}

// capturedPI records that amt of an intent's authorization was captured
// (its charge already says so).
func (e *Emulator) capturedPI(c *reqCtx, pi map[string]any, amt int64) *record {
	old := deepCopy(pi).(map[string]any)
	pi["status"], pi["amount_received"], pi["amount_capturable"] = "succeeded", amt, int64(0)
	return e.save(c, kPI, pi, old, "payment_intent.succeeded")
}

// confirmedEvent is the event of an intent that a confirmation left in
// its status: paid, or authorized and waiting for capture.
func confirmedEvent(pi map[string]any) string {
	switch getStr(pi, "status") {
	case "succeeded":
		return "payment_intent.succeeded"
	case "requires_capture":
		return "payment_intent.amount_capturable_updated"
	}
	return ""
}

// makeTxn records a balance transaction and returns its id.
func (e *Emulator) makeTxn(c *reqCtx, amt int64, cur, source, typ string, fee int64) string {
	t := e.newObject(kTxn, c.now, c.live)
	t["amount"], t["currency"], t["source"], t["type"] = amt, cur, source, typ
	t["reporting_category"] = typ
	t["fee"], t["net"] = fee, amt-fee
	t["fee_details"] = []any{}
	if fee > 0 {
		t["fee_details"] = []any{map[string]any{"amount": fee, "application": nil, "currency": cur, "description": "Stripe processing fees", "type": "stripe_fee"}}
	}
	t["status"] = "pending"
	t["available_on"] = c.now + 2*86400
	t["description"] = nil
	t["exchange_rate"] = nil
	e.store(kTxn, t)
	return idOf(t)
}

// makeDispute disputes the captured amount of ch.
func (e *Emulator) makeDispute(c *reqCtx, ch map[string]any) {
	d := e.newObject(kDispute, c.now, c.live)
	amt := getInt(ch, "amount_captured")
	d["amount"], d["currency"], d["charge"], d["payment_intent"] = amt, ch["currency"], idOf(ch), ch["payment_intent"]
	d["status"], d["reason"] = "needs_response", "fraudulent"
	d["is_charge_refundable"] = false
	// The bank takes the disputed amount back at once, and Stripe its
	// dispute fee ($15): one adjustment, embedded in the dispute, with
	// charge.dispute.funds_withdrawn.
	t := e.load(kTxn, e.makeTxn(c, -amt, getStr(ch, "currency"), idOf(d), "adjustment", disputeFee))
	t["reporting_category"] = "dispute"
	t["description"] = "Chargeback withdrawal for " + idOf(ch)
	t["fee_details"] = []any{map[string]any{"amount": disputeFee, "application": nil, "currency": getStr(ch, "currency"), "description": "Dispute fee", "type": "stripe_fee"}}
	e.store(kTxn, t)
	d["balance_transactions"] = []any{t}
	e.store(kDispute, d)
	e.emit(c, "charge.dispute.created", d, nil)
	e.emit(c, "charge.dispute.funds_withdrawn", d, nil)
	// The charge turns disputed without an event of its own: Stripe
	// documents charge.updated only for description, metadata and
	// asynchronous capture.
	ch["disputed"] = true
	e.store(kCharge, ch)
}

// openDispute is a dispute of the charge that was not won (Stripe's
// test disputes are not refundable), or nil. It scans the disputes: only
// a disputed charge's refund asks.
func (e *Emulator) openDispute(charge string) map[string]any {
	for _, r := range e.tables["disputes"].ordered {
		if r.keys[0] != charge {
			continue
		}
		if d := e.load(kDispute, r.id); d != nil && getStr(d, "status") != "won" && !getBool(d, "is_charge_refundable") {
			return d
		}
	}
	return nil
}

// closeDispute closes d as won or lost (charge.dispute.closed). Winning
// gives back the disputed amount as the dispute's second balance
// transaction (spec: "zero, one, or two balance transactions that show
// funds withdrawn and reinstated"), with charge.dispute.funds_reinstated
// ("Occurs when funds are reinstated to your account after a dispute is
// closed"), and the dispute fee only for a dispute opened before the
// change of Stripe's dispute pricing (disputeFeeRefunded). The charge
// stays disputed.
func (e *Emulator) closeDispute(c *reqCtx, d map[string]any, status string) *record {
	old := deepCopy(d).(map[string]any)
	d["status"] = status
	if status == "won" {
		cur := getStr(d, "currency")
		fee := int64(0)
		if disputeFeeRefunded(d) {
			fee = -disputeFee
		}
		t := e.load(kTxn, e.makeTxn(c, getInt(d, "amount"), cur, idOf(d), "adjustment", fee))
		t["reporting_category"] = "dispute_reversal"
		t["description"] = "Chargeback reversal for " + getStr(d, "charge")
		if fee != 0 {
			t["fee_details"] = []any{map[string]any{"amount": fee, "application": nil, "currency": cur, "description": "Dispute fee refund", "type": "stripe_fee"}}
		}
		e.store(kTxn, t)
		txns, _ := d["balance_transactions"].([]any)
		d["balance_transactions"] = append(slices.Clip(txns), t)
	}
	r := e.save(c, kDispute, d, old, "charge.dispute.closed")
	if status == "won" {
		e.emit(c, "charge.dispute.funds_reinstated", d, nil)
	}
	return r
}

// minimumCharge is Stripe's smallest amount to charge, per currency, in
// the currencies whose minimum its docs state ("Minimum and maximum charge
// amounts"); others need at least 1.
var minimumCharge = map[string]int64{"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50}

// chargeableAmount refuses a payment intent's or charge's amount below
// what Stripe charges.
func chargeableAmount(obj map[string]any) *apiError {
	amt, cur := getInt(obj, "amount"), getStr(obj, "currency")
	if amt < 1 {
		return invalid("", "amount", "This value must be greater than or equal to 1.")
	}
	if min, ok := minimumCharge[cur]; ok && amt < min {
		return invalid("amount_too_small", "amount", "Amount must be at least %s %s", formatAmount(min, cur), cur)
	}
	return nil
}

// formatAmount writes an amount in a currency's main unit, as Stripe's
// messages do ($0.50).
func formatAmount(amt int64, cur string) string {
	switch cur {
	case "jpy":
		return fmt.Sprintf("¥%d", amt)
	case "eur":
		return fmt.Sprintf("€%d.%02d", amt/100, amt%100)
	case "gbp":
		return fmt.Sprintf("£%d.%02d", amt/100, amt%100)
	}
	return fmt.Sprintf("$%d.%02d", amt/100, amt%100)
}

// deleteTaxID deletes a tax id; a customer's drafts stop showing it.
func (e *Emulator) deleteTaxID(c *reqCtx, obj map[string]any) map[string]any {
	stub := e.deleteObject(c, kTaxID, obj)
	e.followTaxIDs(getStr(obj, "customer"))
	return stub
}

// followTaxIDs shows a customer's current tax ids on its draft invoices
// (customer_tax_ids follows customer.tax_ids until finalization), with
// no invoice event, as for the customer's other details.
func (e *Emulator) followTaxIDs(cus string) {
	if cus == "" {
		return
	}
	if cu := e.load(kCustomer, cus); cu != nil {
		e.followCustomer(cu)
	}
}

// creditInvoice books a credit note of amt (negative: one voided) on its
// invoice, with invoice.updated. Spec (POST /v1/credit_notes): "For a
// status=open invoice, a credit note reduces its amount_due. For a
// status=paid invoice, a credit note does not affect its amount_due
// [...] Each credit note will increment the invoice's
// pre_payment_credit_notes_amount or post_payment_credit_notes_amount
// depending on its status at the time of credit note creation." Not
// modelled: an open invoice credited to 0 being marked paid, and the
// refund, customer balance credit or out-of-band split of a post-payment
// one (refund_amount, credit_amount, out_of_band_amount are kept, not
// acted on).
func (e *Emulator) creditInvoice(c *reqCtx, inv map[string]any, amt int64, post bool) {
	old := deepCopy(inv).(map[string]any)
	if post {
		inv["post_payment_credit_notes_amount"] = getInt(inv, "post_payment_credit_notes_amount") + amt
	} else {
		inv["pre_payment_credit_notes_amount"] = getInt(inv, "pre_payment_credit_notes_amount") + amt
		if payable(inv) {
			e.setCreditedDue(inv)
		}
	}
	e.save(c, kInvoice, inv, old, "invoice.updated")
}

// setCreditedDue sets what is due on inv, a finalized invoice still to be
// paid, from its total, starting_balance and pre-payment credit notes.
// Worked out afresh rather than by subtracting: what a credit note took
// may have been cut at 0 (a customer's credit balance left less due than
// its amount), and its void must give back only that. The invoice's
// payment intent asks for what is due, so that paying the invoice charges
// its amount_paid; Stripe has no event for a payment intent's amount
// (there is no payment_intent.updated). A credit note leaving nothing
// due leaves the intent as it is (doc.go: not modelled).
func (e *Emulator) setCreditedDue(inv map[string]any) {
	due := max(max(getInt(inv, "total")+getInt(inv, "starting_balance"), 0)-getInt(inv, "pre_payment_credit_notes_amount"), 0)
	inv["amount_due"] = due
	inv["amount_remaining"] = max(due-getInt(inv, "amount_paid"), 0)
	pi := e.load(kPI, getStr(inv, "payment_intent"))
	if pi == nil || due == 0 || getInt(pi, "amount") == due {
		return
	}
	switch getStr(pi, "status") {
	case "requires_payment_method", "requires_confirmation", "requires_action":
		pi["amount"] = due
		e.store(kPI, pi)
	}
}
