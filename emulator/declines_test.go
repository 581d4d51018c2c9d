package emulator_test

import (
	"net/url"
	"slices"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/stripe/stripe-go/v76"
)

// declineRow is one row of Stripe's declining test cards
// (docs.stripe.com/testing, "Declined payments" and "Fraud prevention"):
// the card number, its PaymentMethod and token, and what a payment with
// it answers and leaves on its charge.
type declineRow struct {
	name, number, pm, tok string
	code, decline         string // error code; decline_code ("" where the docs say n/a)
	message               string
	reason, outcomeType   string // charge outcome
	network, seller       string
	attaches              bool
}

var declineRows = []declineRow{
	{"generic", "4000000000000002", "pm_card_visa_chargeDeclined", "tok_visa_chargeDeclined", "card_declined", "generic_decline",
		"Your card was declined.", "generic_decline", "issuer_declined", "declined_by_network",
		"The bank did not return any further details with this decline.", false},
	{"insufficient funds", "4000000000009995", "pm_card_visa_chargeDeclinedInsufficientFunds", "tok_visa_chargeDeclinedInsufficientFunds",
		"card_declined", "insufficient_funds", "Your card has insufficient funds.", "insufficient_funds", "issuer_declined", "declined_by_network",
		"The bank returned the decline code `insufficient_funds`.", false},
	{"lost card", "4000000000009987", "pm_card_visa_chargeDeclinedLostCard", "tok_visa_chargeDeclinedLostCard", "card_declined", "lost_card",
		"Your card was declined.", "lost_card", "issuer_declined", "declined_by_network", "The bank returned the decline code `lost_card`.", false},
	{"stolen card", "4000000000009979", "pm_card_visa_chargeDeclinedStolenCard", "tok_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card",
		"Your card was declined.", "stolen_card", "issuer_declined", "declined_by_network", "The bank returned the decline code `stolen_card`.", false},
	{"expired card", "4000000000000069", "pm_card_chargeDeclinedExpiredCard", "tok_chargeDeclinedExpiredCard", "expired_card", "",
		"Your card has expired.", "expired_card", "issuer_declined", "declined_by_network", "The bank returned the decline code `expired_card`.", false},
	{"incorrect cvc", "4000000000000127", "pm_card_chargeDeclinedIncorrectCvc", "tok_chargeDeclinedIncorrectCvc", "incorrect_cvc", "",
		"Your card's security code is incorrect.", "incorrect_cvc", "issuer_declined", "declined_by_network",
		"The bank returned the decline code `incorrect_cvc`.", false},
	{"processing error", "4000000000000119", "pm_card_chargeDeclinedProcessingError", "tok_chargeDeclinedProcessingError", "processing_error", "",
		"An error occurred while processing your card. Try again in a little bit.", "processing_error", "issuer_declined", "declined_by_network",
		"The bank returned the decline code `processing_error`.", false},
	{"velocity limit", "4000000000006975", "pm_card_visa_chargeDeclinedVelocityLimitExceeded", "tok_visa_chargeDeclinedVelocityLimitExceeded",
		"card_declined", "card_velocity_exceeded", "Your card was declined for making repeated attempts too frequently or exceeding its amount limit.",
		"card_velocity_exceeded", "issuer_declined", "declined_by_network", "The bank returned the decline code `card_velocity_exceeded`.", false},
	{"fails after attaching", "4000000000000341", "pm_card_chargeCustomerFail", "tok_chargeCustomerFail", "card_declined", "generic_decline",
		"Your card was declined.", "generic_decline", "issuer_declined", "declined_by_network",
		"The bank did not return any further details with this decline.", true},
	{"radar block", "4100000000000019", "pm_card_radarBlock", "tok_radarBlock", "card_declined", "fraudulent",
		"Your card was declined.", "highest_risk_level", "blocked", "not_sent_to_network", "Stripe blocked this payment as too risky.", false},
}

// checkCardError fails unless r is d's card error naming a failed charge,
// and returns that charge.
func (d declineRow) checkCardError(t *testing.T, base, how string, r apiResp) map[string]any {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	want := map[string]any{"type": "card_error", "code": d.code, "message": d.message,
		"doc_url": "https://stripe.com/docs/error-codes/" + map[string]string{"card_declined": "card-declined", "expired_card": "expired-card",
			"incorrect_cvc": "incorrect-cvc", "processing_error": "processing-error"}[d.code]}
	if d.decline != "" {
		want["decline_code"] = d.decline
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s: error %s = %v, want %v", how, k, e[k], v)
		}
	}
	if _, ok := e["decline_code"]; ok && d.decline == "" {
		t.Errorf("%s: decline_code %v where Stripe's table has none", how, e["decline_code"])
	}
	if r.status != 402 {
		t.Fatalf("%s: status %d, want 402: %.300s", how, r.status, r.raw)
	}
	ch, _ := e["charge"].(string)
	if ch == "" {
		t.Fatalf("%s: the card error names no charge: %s", how, r.raw)
	}
	return d.checkCharge(t, base, how, ch)
}

// checkCharge fails unless charge id failed as d declines.
func (d declineRow) checkCharge(t *testing.T, base, how, id string) map[string]any {
	t.Helper()
	ch := getObj(t, base, "/v1/charges/"+id)
	if ch["status"] != "failed" || ch["paid"] != false || ch["failure_code"] != d.code || ch["failure_message"] != d.message ||
		ch["balance_transaction"] != nil {
		t.Errorf("%s: charge status %v paid %v failure_code %v failure_message %v balance_transaction %v, want failed false %s %q none",
			how, ch["status"], ch["paid"], ch["failure_code"], ch["failure_message"], ch["balance_transaction"], d.code, d.message)
	}
	out, _ := ch["outcome"].(map[string]any)
	want := map[string]any{"type": d.outcomeType, "reason": d.reason, "network_status": d.network, "seller_message": d.seller,
		"risk_level": map[bool]string{true: "highest", false: "normal"}[d.outcomeType == "blocked"]}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s: charge outcome.%s = %v, want %v", how, k, out[k], v)
		}
	}
	if d.outcomeType == "blocked" && at(ch, "fraud_details.stripe_report") != "fraudulent" {
		t.Errorf("%s: blocked charge's fraud_details %v", how, ch["fraud_details"])
	}
	return ch
}

// TestDeclineCards: each declining test card, by PaymentMethod id,
// by token on /v1/charges and by card number on a payment method of its
// own, answers its own error code, decline code and message, and leaves a
// failed charge with its failure_code, failure_message and outcome, and
// an intent whose last_payment_error says the same. Attaching one to a
// customer fails, except the card made to fail only once attached.
func TestDeclineCards(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path, body string) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", body)
	}
	cus := idOfResp(mustOK(t, post("/v1/customers", "name=Decline")))
	for _, d := range declineRows {
		t.Run(d.name, func(t *testing.T) {
			r := post("/v1/payment_intents", "amount=1200&currency=usd&confirm=true&customer="+cus+"&payment_method="+d.pm)
			ch := d.checkCardError(t, base, d.pm, r)
			lpe, _ := at(r.body, "error.payment_intent").(map[string]any)["last_payment_error"].(map[string]any)
			if lpe["code"] != d.code || lpe["decline_code"] != map[bool]any{true: d.decline, false: nil}[d.decline != ""] ||
				lpe["message"] != d.message || lpe["charge"] != ch["id"] || lpe["type"] != "card_error" {
				t.Errorf("%s: last_payment_error %v", d.pm, lpe)
			}
			if pi := getObj(t, base, "/v1/payment_intents/"+at(r.body, "error.payment_intent.id").(string)); pi["status"] != "requires_payment_method" ||
				at(pi, "last_payment_error.code") != d.code {
				t.Errorf("%s: intent status %v, last_payment_error %v", d.pm, pi["status"], pi["last_payment_error"])
			}

			d.checkCardError(t, base, d.tok, post("/v1/charges", "amount=700&currency=usd&source="+d.tok))

			pm := idOfResp(mustOK(t, post("/v1/payment_methods", "type=card&card[number]="+d.number+"&card[exp_month]=12&card[exp_year]=2034&card[cvc]=123")))
			if last4 := at(getObj(t, base, "/v1/payment_methods/"+pm), "card.last4"); last4 != d.number[12:] {
				t.Errorf("payment method of %s: last4 %v", d.number, last4)
			}
			attach := post("/v1/payment_methods/"+pm+"/attach", "customer="+cus)
			if d.attaches {
				mustOK(t, attach)
			} else if e, _ := attach.body["error"].(map[string]any); attach.status != 402 || e["type"] != "card_error" || e["code"] != d.code ||
				(d.decline != "" && e["decline_code"] != d.decline) || e["charge"] != nil {
				t.Errorf("attaching %s: %d %s, want the card error without a charge", d.number, attach.status, attach.raw)
			} else if c := getObj(t, base, "/v1/payment_methods/"+pm)["customer"]; c != nil {
				t.Errorf("attaching %s failed but the payment method has customer %v", d.number, c)
			}
			// With its customer: an attached payment method pays only for
			// its customer's intents.
			d.checkCardError(t, base, d.number, post("/v1/payment_intents", "amount=1300&currency=usd&confirm=true&customer="+cus+"&payment_method="+pm))
		})
	}
}

// TestIncorrectNumber: a card number failing the Luhn check
// (docs.stripe.com/testing: 4242424242424241, incorrect_number) makes no
// payment method; a valid one makes one that pays, with an authorized
// outcome on its charge.
func TestIncorrectNumber(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	r := do(t, "POST", base+"/v1/payment_methods", "sk_test_x", "type=card&card[number]=4242424242424241&card[exp_month]=12&card[exp_year]=2034")
	if e, _ := r.body["error"].(map[string]any); r.status != 402 || e["type"] != "card_error" || e["code"] != "incorrect_number" ||
		e["message"] != "Your card number is incorrect." || e["param"] != "number" {
		t.Fatalf("incorrect number: %d %s", r.status, r.raw)
	}
	if n := len(getObj(t, base, "/v1/payment_methods?type=card")["data"].([]any)); n != 0 {
		t.Errorf("%d payment methods after the refused number", n)
	}
	pm := idOfResp(mustOK(t, do(t, "POST", base+"/v1/payment_methods", "sk_test_x", "type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2034")))
	pi := mustOK(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x", "amount=1000&currency=usd&confirm=true&payment_method="+pm)).body
	ch := getObj(t, base, "/v1/charges/"+pi["latest_charge"].(string))
	if pi["status"] != "succeeded" || at(ch, "outcome.type") != "authorized" || at(ch, "outcome.network_status") != "approved_by_network" ||
		at(ch, "outcome.seller_message") != "Payment complete." {
		t.Errorf("paid with 4242424242424242: intent %v, charge outcome %v", pi["status"], ch["outcome"])
	}
}

// TestStripeGoDeclineCode: through stripe-go, each declining
// PaymentMethod's typed error carries its code and DeclineCode, the
// intent in the error its LastPaymentError, and the failed charge its
// FailureCode and Outcome.
func TestStripeGoDeclineCode(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	sc := newClient(t, base, "sk_test_declines", 0)
	for _, d := range declineRows {
		_, err := sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(900), Currency: stripe.String("usd"),
			PaymentMethod: stripe.String(d.pm), Confirm: stripe.Bool(true)})
		se := stripeErr(t, err)
		if se.HTTPStatusCode != 402 || se.Type != stripe.ErrorTypeCard || string(se.Code) != d.code ||
			string(se.DeclineCode) != d.decline || se.Msg != d.message {
			t.Errorf("%s: status %d type %s code %s decline %q message %q", d.pm, se.HTTPStatusCode, se.Type, se.Code, se.DeclineCode, se.Msg)
			continue
		}
		if se.PaymentIntent == nil || se.PaymentIntent.LastPaymentError == nil || string(se.PaymentIntent.LastPaymentError.DeclineCode) != d.decline ||
			string(se.PaymentIntent.LastPaymentError.Code) != d.code {
			t.Errorf("%s: intent in the error: %+v", d.pm, se.PaymentIntent)
			continue
		}
		ch := check(sc.Charges.Get(se.ChargeID, nil))
		if string(ch.FailureCode) != d.code || ch.FailureMessage != d.message || ch.Outcome == nil || ch.Outcome.Type != d.outcomeType ||
			ch.Outcome.Reason != d.reason || ch.Outcome.NetworkStatus != d.network {
			t.Errorf("%s: charge failure_code %s message %q outcome %+v", d.pm, ch.FailureCode, ch.FailureMessage, ch.Outcome)
		}
	}
}

// TestHardDeclineNotRetried: Stripe's retries don't charge again a
// payment method whose last charge failed with a non-retryable decline
// (docs.stripe.com/billing/revenue-recovery/smart-retries: lost_card,
// stolen_card, highest_risk_level, …): the retry is still scheduled and
// counted (attempt_count, next_payment_attempt, invoice.payment_failed)
// but makes no charge, until the subscription has another payment
// method. A retryable decline (insufficient_funds) is charged again.
func TestHardDeclineNotRetried(t *testing.T) {
	unexecuted := []string{"invoice.payment_failed"}
	for _, tc := range []struct {
		pm       string
		retried  bool
		declined string
	}{
		{"pm_card_visa_chargeDeclinedLostCard", false, "lost_card"},
		{"pm_card_visa_chargeDeclinedStolenCard", false, "stolen_card"},
		{"pm_card_radarBlock", false, "highest_risk_level"},
		{"pm_card_visa_chargeDeclinedInsufficientFunds", true, "insufficient_funds"},
	} {
		t.Run(tc.pm, func(t *testing.T) {
			// Stripe won't attach these cards: the subscription's card,
			// attached, declines as they do from the renewal on.
			e, base := emulatortest.Start(t, emulator.Options{})
			k := newFrozenClock(t, base)
			sub := k.Subscribe(k.cus, k.price(1000), nil)
			emulator.DeclineLater(e, k.get("/v1/subscriptions/" + sub)["default_payment_method"].(string), tc.pm)
			renewal := monthStart(1)
			k.advance(renewal)
			inv := k.cycleInvoices(sub)[0]["id"].(string)
			failedCharges := func() int {
				n := 0
				for _, ch := range k.get("/v1/charges?limit=100&customer=" + k.cus)["data"].([]any) {
					if c := ch.(map[string]any); c["invoice"] == inv && c["status"] == "failed" {
						if at(c, "outcome.reason") != tc.declined {
							t.Errorf("failed charge's outcome.reason %v, want %s", at(c, "outcome.reason"), tc.declined)
						}
						n++
					}
				}
				return n
			}
			if n := failedCharges(); n != 1 {
				t.Fatalf("%d failed charges after the renewal, want 1", n)
			}
			evs := subscriptionEventsAll(k.advance(renewal+retryGapSeconds), sub)
			k.checkDunned(inv, 2, renewal+2*retryGapSeconds, true)
			want, charges := unexecuted, 1
			if tc.retried {
				want, charges = retryFailedEvents, 2
			}
			if !slices.Equal(evs, want) || failedCharges() != charges {
				t.Fatalf("first retry: events %v and %d failed charges, want %v and %d", evs, failedCharges(), want, charges)
			}
			if tc.retried {
				return
			}
			mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {k.card("pm_card_visa")}}))
			k.advance(renewal + 2*retryGapSeconds)
			if got := k.get("/v1/invoices/" + inv); got["status"] != "paid" || num(got["attempt_count"]) != 3 {
				t.Errorf("retry with a new payment method: invoice %v, attempt_count %v", got["status"], got["attempt_count"])
			}
		})
	}
}

// checkSaveRefused fails unless r is d's card error for a card that
// can't be saved: 402 card_error with d's code, decline_code and message,
// and no charge (nothing was charged).
func (d declineRow) checkSaveRefused(t *testing.T, how string, r apiResp) map[string]any {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	if r.status != 402 || e["type"] != "card_error" || e["code"] != d.code || e["message"] != d.message || e["charge"] != nil {
		t.Fatalf("%s: %d %.400s, want the %s card error without a charge", how, r.status, r.raw, d.code)
	}
	if got, _ := e["decline_code"].(string); got != d.decline {
		t.Errorf("%s: decline_code %q, want %q", how, got, d.decline)
	}
	return e
}

// TestSaveDecliningCard: every way of saving one of Stripe's
// declining test cards for later (docs.stripe.com/testing: they "can't be
// attached to a Customer object", except 4000000000000341) refuses it with
// the card's error, as POST /v1/payment_methods/{id}/attach does, and
// leaves nothing half made: a customer created with the payment method or
// the card's token is not created, a customer updated with the token is
// unchanged, and a setup intent confirmed with it (at creation or later)
// is kept in requires_payment_method with last_setup_error, its payment
// method taken off and not attached (setup_intent.setup_failed; the
// error carries the intent). The card made to fail only on charges saves
// every way.
func TestSaveDecliningCard(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", v.Encode())
	}
	customers := func() int {
		t.Helper()
		return len(getObj(t, base, "/v1/customers?limit=100")["data"].([]any))
	}
	for _, d := range declineRows {
		t.Run(d.name, func(t *testing.T) {
			newPM := func() string {
				t.Helper()
				return idOfResp(mustOK(t, post("/v1/payment_methods", url.Values{"type": {"card"}, "card[number]": {d.number},
					"card[exp_month]": {"12"}, "card[exp_year]": {"2034"}, "card[cvc]": {"123"}})))
			}
			owner := func(pm string) any {
				t.Helper()
				return getObj(t, base, "/v1/payment_methods/"+pm)["customer"]
			}
			cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"name": {"Saver"}})))

			// A customer created with the payment method or the token.
			for _, p := range []url.Values{{"payment_method": {newPM()}}, {"source": {d.tok}}} {
				n := customers()
				p.Set("email", "new@example.com")
				r := post("/v1/customers", p)
				if d.attaches {
					c := idOfResp(mustOK(t, r))
					if pm := p.Get("payment_method"); pm != "" && owner(pm) != c {
						t.Errorf("customer created with %s: the payment method's customer is %v", pm, owner(pm))
					}
					continue
				}
				d.checkSaveRefused(t, "customer created with "+p.Encode(), r)
				if got := customers(); got != n {
					t.Errorf("refused customer create with %s: %d customers, was %d", p.Encode(), got, n)
				}
				if pm := p.Get("payment_method"); pm != "" && owner(pm) != nil {
					t.Errorf("refused customer create: payment method %s attached to %v", pm, owner(pm))
				}
			}

			// A customer updated with the token.
			r := post("/v1/customers/"+cus, url.Values{"source": {d.tok}, "name": {"Renamed"}})
			if d.attaches {
				mustOK(t, r)
			} else {
				d.checkSaveRefused(t, "customer updated with "+d.tok, r)
				if got := getObj(t, base, "/v1/customers/"+cus)["name"]; got != "Saver" {
					t.Errorf("refused customer update changed the name to %v", got)
				}
			}

			// A setup intent confirmed at creation, and one confirmed later.
			for _, how := range []string{"created with confirm=true", "confirmed"} {
				pm := newPM()
				p := url.Values{"customer": {cus}, "payment_method": {pm}}
				var r apiResp
				var si string
				if how == "confirmed" {
					si = idOfResp(mustOK(t, post("/v1/setup_intents", p)))
					r = post("/v1/setup_intents/"+si+"/confirm", nil)
				} else {
					p.Set("confirm", "true")
					r = post("/v1/setup_intents", p)
				}
				if d.attaches {
					if r.status != 200 || r.body["status"] != "succeeded" || owner(pm) != cus {
						t.Errorf("setup intent %s with %s: %d %.300s, payment method's customer %v", how, d.number, r.status, r.raw, owner(pm))
					}
					continue
				}
				e := d.checkSaveRefused(t, "setup intent "+how, r)
				inErr, _ := e["setup_intent"].(map[string]any)
				if si == "" {
					si, _ = inErr["id"].(string)
				}
				if inErr["id"] != si {
					t.Fatalf("setup intent %s: the card error carries setup_intent %v, want %s", how, inErr["id"], si)
				}
				for _, got := range []map[string]any{inErr, getObj(t, base, "/v1/setup_intents/"+si)} {
					lse, _ := got["last_setup_error"].(map[string]any)
					if got["status"] != "requires_payment_method" || got["payment_method"] != nil || lse["type"] != "card_error" ||
						lse["code"] != d.code || lse["message"] != d.message || lse["charge"] != nil || at(lse, "payment_method.id") != pm ||
						lse["doc_url"] != e["doc_url"] {
						t.Errorf("setup intent %s: status %v payment_method %v last_setup_error %v", how, got["status"], got["payment_method"], lse)
					}
					if dc, _ := lse["decline_code"].(string); dc != d.decline {
						t.Errorf("setup intent %s: last_setup_error.decline_code %q, want %q", how, dc, d.decline)
					}
				}
				if owner(pm) != nil {
					t.Errorf("setup intent %s failed but attached %s to %v", how, pm, owner(pm))
				}
				if evs := eventTypes(t, base, si); !slices.Equal(evs, []string{"setup_intent.created", "setup_intent.setup_failed"}) {
					t.Errorf("setup intent %s: events %v", how, evs)
				}
				if evs := eventTypes(t, base, pm); len(evs) != 0 {
					t.Errorf("setup intent %s: payment method events %v", how, evs)
				}
			}
		})
	}
}

// TestSetupIntentRetry: a setup intent whose card was refused can be
// confirmed again with another card, which succeeds, attaches it and
// clears last_setup_error; each refused attempt is its own
// setup_intent.setup_failed.
func TestSetupIntentRetry(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", v.Encode())
	}
	card := func(number string) string {
		t.Helper()
		return idOfResp(mustOK(t, post("/v1/payment_methods", url.Values{"type": {"card"}, "card[number]": {number},
			"card[exp_month]": {"12"}, "card[exp_year]": {"2034"}})))
	}
	cus := idOfResp(mustOK(t, post("/v1/customers", nil)))
	bad := card("4000000000009995")
	si := idOfResp(mustOK(t, post("/v1/setup_intents", url.Values{"customer": {cus}})))
	for range 2 {
		if r := post("/v1/setup_intents/"+si+"/confirm", url.Values{"payment_method": {bad}}); r.status != 402 {
			t.Fatalf("confirm with insufficient funds: %d %s", r.status, r.raw)
		}
	}
	good := card("4242424242424242")
	r := mustOK(t, post("/v1/setup_intents/"+si+"/confirm", url.Values{"payment_method": {good}}))
	if r.body["status"] != "succeeded" || r.body["payment_method"] != good || r.body["last_setup_error"] != nil {
		t.Errorf("confirmed with a good card: %.400s", r.raw)
	}
	if c := getObj(t, base, "/v1/payment_methods/"+good)["customer"]; c != cus {
		t.Errorf("the good card's customer is %v", c)
	}
	want := []string{"setup_intent.created", "setup_intent.setup_failed", "setup_intent.setup_failed", "setup_intent.succeeded"}
	if evs := eventTypes(t, base, si); !slices.Equal(evs, want) {
		t.Errorf("events %v, want %v", evs, want)
	}
}

// TestPastDueLatestInvoice: a past_due subscription becomes active
// when its latest invoice is paid ("To move the subscription to active,
// pay the most recent invoice"), looking through the voided invoice of a
// pending update (which stays latest_invoice though it never billed the
// subscription), and through an invoice voided by request: "Stripe
// determines the status from the most recent non-voided invoice"
// (settleWrittenOff), so paying the renewal before it settles it as
// voiding or writing off the renewal would.
func TestPastDueLatestInvoice(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pending bool // a pending update's invoice expires on top of the update invoice
		pay     string
		want    string
	}{
		// The update invoice is the latest before the expired pending
		// update's: paying it settles the subscription, though the
		// renewal is still retried (as when it is latest_invoice).
		{"update invoice paid after a pending update expired", true, "update", "active"},
		// The latest invoice voided by request: the older renewal is the
		// most recent invoice that is not void, and paying it settles the
		// subscription.
		{"renewal paid after the latest invoice was voided", false, "renewal", "active"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, base := emulatortest.Start(t, emulator.Options{})
			k := newFrozenClock(t, base)
			sub, item := k.pendingSub()
			renewal := num(k.get("/v1/subscriptions/" + sub)["current_period_end"])
			k.advance(renewal + 3600)
			s := k.get("/v1/subscriptions/" + sub)
			invs := map[string]string{"renewal": s["latest_invoice"].(string)}
			if s["status"] != "past_due" {
				t.Fatalf("after a declined renewal: %v", s["status"])
			}
			// An always_invoice change billed and declined at once
			// (allow_incomplete): the latest invoice, retried.
			mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"2"},
				"proration_behavior": {"always_invoice"}}))
			s = k.get("/v1/subscriptions/" + sub)
			invs["update"] = s["latest_invoice"].(string)
			if invs["update"] == invs["renewal"] || s["status"] != "past_due" {
				t.Fatalf("after a declined update: %v, latest %v", s["status"], s["latest_invoice"])
			}
			if tc.pending {
				mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
					"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
				k.advance(renewal + 3600 + 23*3600)
				if s = k.get("/v1/subscriptions/" + sub); s["pending_update"] != nil || s["latest_invoice"] == invs["update"] ||
					k.get("/v1/invoices/" + s["latest_invoice"].(string))["status"] != "void" {
					t.Fatalf("the pending update did not expire: %v, latest %v", s["pending_update"], s["latest_invoice"])
				}
			} else {
				mustOK(t, k.post("/v1/invoices/"+invs["update"]+"/void", nil))
			}
			paid := mustOK(t, k.post("/v1/invoices/"+invs[tc.pay]+"/pay", url.Values{"payment_method": {"pm_card_visa"}}))
			if paid.body["status"] != "paid" {
				t.Fatalf("paying the %s invoice: %v", tc.pay, paid.body["status"])
			}
			if got := k.get("/v1/subscriptions/" + sub)["status"]; got != tc.want {
				t.Errorf("the %s invoice paid: subscription %v, want %v", tc.pay, got, tc.want)
			}
		})
	}
}

// TestSetupIntentUnattachablePM: a setup intent saves its payment
// method for its customer as POST /v1/payment_methods/{id}/attach does, so
// it refuses what attaching refuses: a payment method of another customer
// (which it would otherwise move to its own) and one that was detached
// ("it can no longer be used for a payment or re-attached to a
// Customer"), with or without a customer. The refusal comes before the
// card is checked, so it changes nothing: no intent is made by a create
// with confirm=true, a confirmed one stays as it was, and the payment
// method keeps its customer.
func TestSetupIntentUnattachablePM(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", v.Encode())
	}
	card := func() string {
		t.Helper()
		return idOfResp(mustOK(t, post("/v1/payment_methods", url.Values{"type": {"card"}, "card[number]": {"4242424242424242"},
			"card[exp_month]": {"12"}, "card[exp_year]": {"2034"}})))
	}
	owner := func(pm string) any {
		t.Helper()
		return getObj(t, base, "/v1/payment_methods/"+pm)["customer"]
	}
	setupIntents := func() int {
		t.Helper()
		return len(getObj(t, base, "/v1/setup_intents?limit=100")["data"].([]any))
	}
	a := idOfResp(mustOK(t, post("/v1/customers", url.Values{"name": {"A"}})))
	b := idOfResp(mustOK(t, post("/v1/customers", url.Values{"name": {"B"}})))
	theirs := card()
	mustOK(t, post("/v1/payment_methods/"+theirs+"/attach", url.Values{"customer": {a}}))
	detached := card()
	mustOK(t, post("/v1/payment_methods/"+detached+"/attach", url.Values{"customer": {a}}))
	mustOK(t, post("/v1/payment_methods/"+detached+"/detach", nil))

	for _, tc := range []struct {
		name, pm, customer string
		owner              any // the payment method's customer, before and after
	}{
		{"another customer's payment method", theirs, b, a},
		{"a detached payment method", detached, a, nil},
		{"a detached payment method, no customer", detached, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := url.Values{"payment_method": {tc.pm}}
			if tc.customer != "" {
				p.Set("customer", tc.customer)
			}
			// Created with confirm=true: refused, and no intent is made.
			n := setupIntents()
			cp := url.Values{"confirm": {"true"}}
			for k, v := range p {
				cp[k] = v
			}
			r := post("/v1/setup_intents", cp)
			if r.status != 400 || errField(r, "type") != "invalid_request_error" {
				t.Errorf("created with confirm=true: %d %.300s, want 400 invalid_request_error", r.status, r.raw)
			}
			if got := setupIntents(); got != n {
				t.Errorf("refused create made a setup intent: %d, was %d", got, n)
			}
			if got := owner(tc.pm); got != tc.owner {
				t.Errorf("created with confirm=true: payment method's customer %v, want %v", got, tc.owner)
			}

			// Confirmed later: refused, the intent unchanged.
			si := idOfResp(mustOK(t, post("/v1/setup_intents", p)))
			r = post("/v1/setup_intents/"+si+"/confirm", nil)
			if r.status != 400 || errField(r, "type") != "invalid_request_error" {
				t.Errorf("confirmed: %d %.300s, want 400 invalid_request_error", r.status, r.raw)
			}
			if got := getObj(t, base, "/v1/setup_intents/"+si); got["status"] != "requires_confirmation" || got["payment_method"] != tc.pm {
				t.Errorf("refused confirm left the intent %v with payment method %v", got["status"], got["payment_method"])
			}
			if got := owner(tc.pm); got != tc.owner {
				t.Errorf("confirmed: payment method's customer %v, want %v", got, tc.owner)
			}
			if evs := eventTypes(t, base, tc.pm); len(evs) != 0 && evs[len(evs)-1] == "payment_method.attached" && tc.owner == nil {
				t.Errorf("a detached payment method was attached again: %v", evs)
			}
		})
	}
}

// TestPastDueSettledBeforePendingVoided: the invoice before a
// pending update's is what settles a past_due subscription once the
// update's invoice is voided (TestPastDueLatestInvoice), whichever comes
// first: paying it while the update still waits (its invoice then the
// latest, so the subscription stays past_due) and then the update
// expiring leaves the subscription active, as paying it after the expiry
// does, not past_due until some later invoice is paid.
func TestPastDueSettledBeforePendingVoided(t *testing.T) {
	for _, end := range []string{"expires", "voided"} {
		t.Run("update "+end, func(t *testing.T) {
			_, base := emulatortest.Start(t, emulator.Options{})
			k := newFrozenClock(t, base)
			sub, item := k.pendingSub()
			renewalAt := num(k.get("/v1/subscriptions/" + sub)["current_period_end"])
			k.advance(renewalAt + 3600)
			s := k.get("/v1/subscriptions/" + sub)
			renewal := s["latest_invoice"].(string)
			if s["status"] != "past_due" {
				t.Fatalf("after a declined renewal: %v", s["status"])
			}
			mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
				"proration_behavior": {"always_invoice"}, "payment_behavior": {"pending_if_incomplete"}}))
			s = k.get("/v1/subscriptions/" + sub)
			pending, _ := s["latest_invoice"].(string)
			if s["pending_update"] == nil || pending == renewal {
				t.Fatalf("no pending update: %v, latest %v", s["pending_update"], s["latest_invoice"])
			}
			if r := mustOK(t, k.post("/v1/invoices/"+renewal+"/pay", url.Values{"payment_method": {"pm_card_visa"}})); r.body["status"] != "paid" {
				t.Fatalf("paying the renewal: %v", r.body["status"])
			}
			if got := k.get("/v1/subscriptions/" + sub)["status"]; got != "past_due" {
				t.Fatalf("the renewal paid while the update's invoice is the latest: %v, want past_due", got)
			}
			if end == "expires" {
				k.advance(renewalAt + 3600 + 23*3600)
			} else {
				mustOK(t, k.post("/v1/invoices/"+pending+"/void", nil))
			}
			s = k.get("/v1/subscriptions/" + sub)
			if s["pending_update"] != nil || k.get("/v1/invoices/" + pending)["status"] != "void" {
				t.Fatalf("the pending update did not end: %v, its invoice %v", s["pending_update"], k.get("/v1/invoices/" + pending)["status"])
			}
			if s["status"] != "active" {
				t.Errorf("renewal paid, then the update's invoice voided: subscription %v, want active", s["status"])
			}
		})
	}
}

// TestCardErrorParam: the card errors of the expired-card and
// incorrect-CVC test cards blame a card field in param (exp_month, cvc),
// in the error and in the intent's last_payment_error, and carry no
// decline_code; the others have no param. Stripe's test-mode responses
// recorded in 2021 for pm_card_chargeDeclinedExpiredCard,
// pm_card_chargeDeclinedIncorrectCvc and
// pm_card_chargeDeclinedProcessingError, and docs.stripe.com/declines
// ("Invalid API calls").
func TestCardErrorParam(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		pm, tok, code, param string
	}{
		{"pm_card_chargeDeclinedExpiredCard", "tok_chargeDeclinedExpiredCard", "expired_card", "exp_month"},
		{"pm_card_chargeDeclinedIncorrectCvc", "tok_chargeDeclinedIncorrectCvc", "incorrect_cvc", "cvc"},
		{"pm_card_chargeDeclinedProcessingError", "tok_chargeDeclinedProcessingError", "processing_error", ""},
		{"pm_card_visa_chargeDeclined", "tok_visa_chargeDeclined", "card_declined", ""},
	} {
		t.Run(tc.code, func(t *testing.T) {
			check := func(how string, e map[string]any) {
				t.Helper()
				if e["code"] != tc.code {
					t.Fatalf("%s: code %v, want %s", how, e["code"], tc.code)
				}
				if p, _ := e["param"].(string); p != tc.param {
					t.Errorf("%s: param %q, want %q", how, p, tc.param)
				}
				if _, ok := e["decline_code"]; ok && tc.code != "card_declined" {
					t.Errorf("%s: decline_code %v, want none", how, e["decline_code"])
				}
			}
			r := do(t, "POST", base+"/v1/payment_intents", "sk_test_x", "amount=1200&currency=usd&confirm=true&payment_method="+tc.pm)
			if r.status != 402 {
				t.Fatalf("payment intent: %d %s", r.status, r.raw)
			}
			check("error", at(r.body, "error").(map[string]any))
			check("error's last_payment_error", at(r.body, "error.payment_intent.last_payment_error").(map[string]any))
			pi := getObj(t, base, "/v1/payment_intents/"+at(r.body, "error.payment_intent.id").(string))
			check("stored last_payment_error", pi["last_payment_error"].(map[string]any))
			r = do(t, "POST", base+"/v1/charges", "sk_test_x", "amount=700&currency=usd&source="+tc.tok)
			if r.status != 402 {
				t.Fatalf("charge: %d %s", r.status, r.raw)
			}
			check("charge error", at(r.body, "error").(map[string]any))
		})
	}
}
