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
			d.checkCardError(t, base, d.number, post("/v1/payment_intents", "amount=1300&currency=usd&confirm=true&payment_method="+pm))
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
			k, sub, inv := dunnedRenewal(t, tc.pm)
			renewal := monthStart(1)
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
			mustOK(t, k.post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {"pm_card_visa"}}))
			k.advance(renewal + 2*retryGapSeconds)
			if got := k.get("/v1/invoices/" + inv); got["status"] != "paid" || num(got["attempt_count"]) != 3 {
				t.Errorf("retry with a new payment method: invoice %v, attempt_count %v", got["status"], got["attempt_count"])
			}
		})
	}
}
