package emulator

import (
	"strings"
)

// declineCard is one of Stripe's test cards whose payments fail, with
// what a failed payment says about it: the card error, the charge's
// failure_code, failure_message and outcome, and the payment intent's
// last_payment_error.
type declineCard struct {
	number string   // card number (card[number] of a payment method)
	ids    []string // its test PaymentMethods and tokens (pm_card_…, tok_…)
	code   string   // error code, and the charge's failure_code
	// decline is the error's decline_code; "" where Stripe's table says
	// n/a (the error code is the reason). docs.stripe.com/declines/codes
	// lists expired_card, incorrect_cvc and processing_error among the
	// decline codes an issuer may give, but for these test cards the
	// testing table, the one source specific to them, says n/a, and
	// errors recorded from Stripe for them carry none either (test-mode
	// responses of April 2021 with their ch_/pi_ ids, error and
	// last_payment_error: code, doc_url, message, param, no
	// decline_code; docs.stripe.com/declines, "Invalid API calls", the
	// same for incorrect_cvc).
	decline string
	message string
	// param is the error's param, the card field the error blames:
	// exp_month for expired_card, cvc for incorrect_cvc, none for the
	// others. Stripe's responses to these test cards, recorded by an
	// integration in 2021 (the payment intent's error and its
	// last_payment_error alike; docs.stripe.com/declines shows the same
	// for pm_card_chargeDeclinedIncorrectCvc), carry it and no
	// decline_code.
	param string
	// attaches: attaching the card to a customer succeeds and only its
	// charges fail; the other declining cards "can't be attached to a
	// Customer object" (Stripe's testing docs).
	attaches bool
	// blocked: Radar blocks the payment before it reaches the network,
	// instead of the issuer declining it.
	blocked bool
}

// declineCards is Stripe's list of test cards that decline, from
// docs.stripe.com/testing:
//
//   - "Declined payments": "Using one of these cards results in a card
//     error with the given error code and decline code" — generic decline
//     4000000000000002 card_declined/generic_decline, insufficient funds
//     4000000000009995 card_declined/insufficient_funds, lost card
//     4000000000009987 card_declined/lost_card, stolen card
//     4000000000009979 card_declined/stolen_card, expired card
//     4000000000000069 expired_card (decline code n/a), incorrect CVC
//     4000000000000127 incorrect_cvc (n/a), processing error
//     4000000000000119 processing_error (n/a), incorrect number
//     4242424242424241 incorrect_number (n/a; it fails the Luhn check, so
//     no payment method is ever made of it: luhnValid), exceeding
//     velocity limit 4000000000006975 card_declined/card_velocity_exceeded.
//     "The cards in the previous table can't be attached to a Customer
//     object. To simulate a declined payment with a successfully attached
//     card": 4000000000000341, "Attaching this card to a Customer object
//     succeeds, but attempts to charge the customer fail" (a generic
//     decline, as its older table said).
//   - "Fraud prevention": 4100000000000019 "Always blocked … Radar always
//     blocks it" (pm_card_radarBlock; the older docs' pm_card_
//     chargeDeclinedFraudulent, "blocked as it's considered fraudulent",
//     card_declined/fraudulent).
//
// PaymentMethod and token ids are those tabs of the same tables (the
// pm_card_visa_… spelling of today's docs and the pm_card_… of earlier
// ones are both accepted by Stripe). Messages are Stripe's error messages
// for those codes, as integrations record them.
var declineCards = []declineCard{
	{number: "4000000000000002", ids: []string{"pm_card_visa_chargeDeclined", "pm_card_chargeDeclined", "tok_visa_chargeDeclined", "tok_chargeDeclined"},
		code: "card_declined", decline: "generic_decline", message: "Your card was declined."},
	{number: "4000000000009995", ids: []string{"pm_card_visa_chargeDeclinedInsufficientFunds", "pm_card_chargeDeclinedInsufficientFunds", "tok_visa_chargeDeclinedInsufficientFunds", "tok_chargeDeclinedInsufficientFunds"},
		code: "card_declined", decline: "insufficient_funds", message: "Your card has insufficient funds."},
	{number: "4000000000009987", ids: []string{"pm_card_visa_chargeDeclinedLostCard", "pm_card_chargeDeclinedLostCard", "tok_visa_chargeDeclinedLostCard", "tok_chargeDeclinedLostCard"},
		code: "card_declined", decline: "lost_card", message: "Your card was declined."},
	{number: "4000000000009979", ids: []string{"pm_card_visa_chargeDeclinedStolenCard", "pm_card_chargeDeclinedStolenCard", "tok_visa_chargeDeclinedStolenCard", "tok_chargeDeclinedStolenCard"},
		code: "card_declined", decline: "stolen_card", message: "Your card was declined."},
	{number: "4000000000000069", ids: []string{"pm_card_chargeDeclinedExpiredCard", "tok_chargeDeclinedExpiredCard"},
		code: "expired_card", message: "Your card has expired.", param: "exp_month"},
	{number: "4000000000000127", ids: []string{"pm_card_chargeDeclinedIncorrectCvc", "tok_chargeDeclinedIncorrectCvc"},
		code: "incorrect_cvc", message: "Your card's security code is incorrect.", param: "cvc"},
	{number: "4000000000000119", ids: []string{"pm_card_chargeDeclinedProcessingError", "tok_chargeDeclinedProcessingError"},
		code: "processing_error", message: "An error occurred while processing your card. Try again in a little bit."},
	{number: "4000000000006975", ids: []string{"pm_card_visa_chargeDeclinedVelocityLimitExceeded", "pm_card_chargeDeclinedVelocityLimitExceeded", "tok_visa_chargeDeclinedVelocityLimitExceeded", "tok_chargeDeclinedVelocityLimitExceeded"},
		code: "card_declined", decline: "card_velocity_exceeded", message: "Your card was declined for making repeated attempts too frequently or exceeding its amount limit."},
	{number: "4000000000000341", ids: []string{"pm_card_chargeCustomerFail", "tok_chargeCustomerFail"},
		code: "card_declined", decline: "generic_decline", message: "Your card was declined.", attaches: true},
	{number: "4100000000000019", ids: []string{"pm_card_radarBlock", "tok_radarBlock", "pm_card_chargeDeclinedFraudulent", "tok_chargeDeclinedFraudulent"},
		code: "card_declined", decline: "fraudulent", message: "Your card was declined.", blocked: true},
}

var (
	declineByID     = map[string]*declineCard{}
	declineByNumber = map[string]*declineCard{}
	// genericDecline is what a payment method or source that only looks
	// like a declining one ("…chargeDeclined…") gets: the emulator
	// answered a generic decline to those before it knew the others.
	genericDecline = &declineCards[0]
)

func init() {
	for i := range declineCards {
		d := &declineCards[i]
		declineByNumber[d.number] = d
		for _, id := range d.ids {
			declineByID[id] = d
		}
	}
}

// declineOf is how a payment charged to pm (a payment method or source
// id) fails, or nil if it succeeds: one of the test ids, a payment method
// made of a test card number or token (e.pmCards), or any other id
// containing chargeDeclined or chargeCustomerFail (a generic decline).
func (e *Emulator) declineOf(pm string) *declineCard {
	if d := declineByID[pm]; d != nil {
		return d
	}
	if d := e.pmCards[pm]; d != nil {
		return d
	}
	if strings.Contains(pm, "chargeDeclined") || strings.Contains(pm, "chargeCustomerFail") {
		return genericDecline
	}
	return nil
}

// attachDecline is how saving pm (a payment method or token id) for a
// customer fails, or nil if it is saved: one of the declining test cards
// other than the one made to fail only once attached ("The cards in the
// previous table can't be attached to a Customer object", docs.stripe.com/
// testing, "Declined payments"). Saving a card checks it with its issuer,
// which answers as it would a payment, so the error is the card error of
// a payment, without a charge. It is the same check for every way of
// saving one: POST /v1/payment_methods/{id}/attach, a customer created
// with payment_method or source, a customer updated with source, and a
// setup intent confirmed with a customer or without (a SetupIntent
// "set[s] up a payment method for future payments" and checks it alike).
func (e *Emulator) attachDecline(pm string) *declineCard {
	if d := e.declineOf(pm); d != nil && !d.attaches {
		return d
	}
	return nil
}

// lastSetupError is a setup intent's last_setup_error after d refused its
// payment method pm (the stored payment method embedded, as Stripe's
// api_errors.payment_method is the object; none when pm is one of the
// test ids, which are not stored here).
func (e *Emulator) lastSetupError(d *declineCard, pm string) map[string]any {
	ae := d.err("")
	lse := map[string]any{"code": ae.Code, "doc_url": docURL(ae.Code), "message": ae.Message, "type": ae.Type}
	if ae.DeclineCode != "" {
		lse["decline_code"] = ae.DeclineCode
	}
	if ae.Param != "" {
		lse["param"] = ae.Param
	}
	if obj := e.load(kPM, pm); obj != nil {
		lse["payment_method"] = obj
	}
	return lse
}

// err is the card error of a payment that d declined (charge: the failed
// charge, "" if none was made).
func (d *declineCard) err(charge string) *apiError {
	return &apiError{status: 402, Type: "card_error", Code: d.code, DeclineCode: d.decline, Param: d.param, Message: d.message, Charge: charge}
}

// reason is the charge outcome's reason: the decline code, or the error
// code where the decline has none; a Radar block's is "highest_risk_level"
// (spec, charge.outcome.reason: "Charges blocked by Radar's default block
// rule have the value `highest_risk_level`").
func (d *declineCard) reason() string {
	switch {
	case d.blocked:
		return "highest_risk_level"
	case d.decline != "":
		return d.decline
	}
	return d.code
}

// outcome is the failed charge's outcome, as Stripe's charges show it:
// an issuer decline is declined_by_network, "The bank returned the
// decline code `…`." ("The bank did not return any further details with
// this decline." for generic_decline); a Radar block (docs.stripe.com/
// radar/risk-evaluation, "High risk payments") is not_sent_to_network,
// risk_level highest, "Stripe blocked this payment as too risky.".
// risk_score is left out: "only available with Radar for Fraud Teams".
func (d *declineCard) outcome() map[string]any {
	if d.blocked {
		return map[string]any{"network_status": "not_sent_to_network", "reason": d.reason(), "risk_level": "highest",
			"seller_message": "Stripe blocked this payment as too risky.", "type": "blocked"}
	}
	msg := "The bank returned the decline code `" + d.reason() + "`."
	if d.reason() == "generic_decline" {
		msg = "The bank did not return any further details with this decline."
	}
	return map[string]any{"network_status": "declined_by_network", "reason": d.reason(), "risk_level": "normal",
		"seller_message": msg, "type": "issuer_declined"}
}

// authorizedOutcome is a succeeded card charge's outcome.
func authorizedOutcome() map[string]any {
	return map[string]any{"network_status": "approved_by_network", "reason": nil, "risk_level": "normal",
		"seller_message": "Payment complete.", "type": "authorized"}
}

// failCharge turns ch, filled as a succeeded charge, into the failed
// charge of d: nothing captured, no balance transaction, the failure and
// its outcome recorded (a Radar block also in fraud_details, as Stripe
// reports it: stripe_report fraudulent).
func (e *Emulator) failCharge(ch map[string]any, d *declineCard) {
	e.tables["balance_transactions"].remove(getStr(ch, "balance_transaction"))
	ch["status"], ch["paid"], ch["captured"], ch["amount_captured"] = "failed", false, false, int64(0)
	ch["balance_transaction"] = nil
	ch["failure_code"], ch["failure_message"] = d.code, d.message
	ch["outcome"] = d.outcome()
	ch["receipt_url"] = nil
	if d.blocked {
		ch["fraud_details"] = map[string]any{"stripe_report": "fraudulent"}
	}
}

// lastPaymentError is a payment intent's last_payment_error after d
// declined its charge.
func lastPaymentError(d *declineCard, charge string) map[string]any {
	ae := d.err(charge)
	lpe := map[string]any{"charge": charge, "code": ae.Code, "doc_url": docURL(ae.Code), "message": ae.Message, "type": ae.Type}
	if ae.DeclineCode != "" {
		lpe["decline_code"] = ae.DeclineCode
	}
	if ae.Param != "" {
		lpe["param"] = ae.Param
	}
	return lpe
}

// docURL is the page of Stripe's error-codes reference an error code
// links to.
func docURL(code string) string {
	return "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(code, "_", "-")
}

// nonRetryable are the failures after which Stripe's automatic retries
// don't charge the same payment method again (docs.stripe.com/billing/
// revenue-recovery/smart-retries, "Non-retryable decline codes": "If the
// card issuer returns the payment with a subset of decline codes
// considered as non-retryable, then Stripe can't automatically retry the
// payment … incorrect_number, lost_card, pickup_card, stolen_card,
// revocation_of_authorization, revocation_of_all_authorizations,
// authentication_required, highest_risk_level"). They are matched against
// the failed charge's outcome.reason, where highest_risk_level (a Radar
// block) appears.
var nonRetryable = map[string]bool{
	"incorrect_number": true, "lost_card": true, "pickup_card": true, "stolen_card": true,
	"revocation_of_authorization": true, "revocation_of_all_authorizations": true,
	"authentication_required": true, "highest_risk_level": true,
}

// hardDeclined says whether the last attempt to pay inv failed with a
// non-retryable decline of pm: then a retry with pm isn't executed. The
// same page: "Retries continue to be scheduled, and attempt_count
// continues to increment, but retries only execute after detecting a new
// payment method. Unexecuted retries don't create a new Charge."
func (e *Emulator) hardDeclined(inv map[string]any, pm string) bool {
	pi := e.load(kPI, getStr(inv, "payment_intent"))
	if pi == nil {
		return false
	}
	ch := e.load(kCharge, getStr(pi, "latest_charge"))
	if ch == nil || getStr(ch, "status") != "failed" || getStr(ch, "payment_method") != pm {
		return false
	}
	out, _ := ch["outcome"].(map[string]any)
	return nonRetryable[getStr(out, "reason")]
}

// luhnValid says whether a card number passes the Luhn check; Stripe
// refuses one that fails with incorrect_number (docs.stripe.com/testing,
// "Invalid data": "Use a card number that fails the Luhn check, such as
// 4242424242424241").
func luhnValid(number string) bool {
	if len(number) < 12 || len(number) > 19 {
		return false
	}
	sum := 0
	for i := 0; i < len(number); i++ {
		c := number[len(number)-1-i]
		if c < '0' || c > '9' {
			return false
		}
		n := int(c - '0')
		if i%2 == 1 {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

// incorrectNumber is Stripe's refusal of a card number that fails the
// Luhn check.
func incorrectNumber() *apiError {
	return &apiError{status: 402, Type: "card_error", Code: "incorrect_number", Param: "number", Message: "Your card number is incorrect."}
}

// testCard gives a card payment method made of card[number] or
// card[token] what it is made of: the number's last four digits, and, for
// a declining test card (or token), how its payments fail (e.pmCards).
// A number that fails the Luhn check makes no payment method.
func (e *Emulator) testCard(c *reqCtx, pm map[string]any, param any) *apiError {
	p, _ := param.(map[string]any)
	number, _ := p["number"].(string)
	tok, _ := p["token"].(string)
	fromToken := number == "" && tok != ""
	var d *declineCard
	switch {
	case number != "":
		if !luhnValid(number) {
			return incorrectNumber()
		}
		d = declineByNumber[number]
	case tok != "":
		if d = declineByID[tok]; d != nil {
			number = d.number
		} else {
			number = testTokens[tok].number
		}
	}
	if card, ok := pm["card"].(map[string]any); ok && len(number) >= 4 {
		// The card it is made of, not the fixture's Visa: what a charge
		// of it describes (payment_method_details.card).
		f := numberFacts(c, number)
		card["last4"], card["fingerprint"], card["funding"] = f["last4"], f["fingerprint"], f["funding"]
		b := pmBrands[f["brand"].(string)]
		card["brand"], card["display_brand"] = b, displayBrands[b]
		card["networks"] = map[string]any{"available": []any{b}, "preferred": nil}
		if fromToken {
			// A token's card carries a future expiry, as a charge of the
			// token describes it (numberCard); card[number] comes with
			// its own.
			card["exp_month"], card["exp_year"] = f["exp_month"], f["exp_year"]
		}
	}
	if d != nil {
		e.pmCards[idOf(pm)] = d
	}
	return nil
}
