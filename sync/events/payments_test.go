package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// TestManualCapture follows a manual-capture payment through the
// events loop: authorized (payment_intent.amount_capturable_updated and
// an uncaptured charge with no balance transaction), partially captured
// (charge.captured, payment_intent.succeeded, a balance transaction that
// only the periodic listing finds), refunded; and an authorization
// released by canceling its intent (charge.refunded); an intent created
// with a declining card (kept by Stripe despite the 402). After each step
// every table equals the emulator.
func TestManualCapture(t *testing.T) {
	v, call := opsEnv(t)
	step := func(name string, f func()) {
		t.Helper()
		f()
		t.Logf("step %s", name)
		v.converge(t, 10*time.Second)
	}
	cus := call("/v1/customers", url.Values{"name": {"Hold"}})
	var pi, pi2 string
	step("authorize", func() {
		pi = call("/v1/payment_intents", url.Values{"amount": {"1000"}, "currency": {"usd"}, "customer": {cus},
			"payment_method": {"pm_card_visa"}, "capture_method": {"manual"}, "confirm": {"true"}})
		pi2 = call("/v1/payment_intents", url.Values{"amount": {"700"}, "currency": {"usd"}, "customer": {cus},
			"payment_method": {"pm_card_visa"}, "capture_method": {"manual"}})
		call("/v1/payment_intents/"+pi2+"/confirm", nil)
	})
	step("partial capture", func() {
		call("/v1/payment_intents/"+pi+"/capture", url.Values{"amount_to_capture": {"600"}})
	})
	step("refund", func() {
		call("/v1/refunds", url.Values{"payment_intent": {pi}, "amount": {"100"}})
	})
	step("release", func() {
		call("/v1/payment_intents/"+pi2+"/cancel", nil)
	})
	step("declined create", func() {
		// Stripe answers 402, but the intent and its failed charge exist.
		ctx := stripeapi.WithPriority(context.Background(), stripeapi.Interactive)
		if _, err := v.mut.Post(ctx, "/v1/payment_intents", url.Values{"amount": {"500"}, "currency": {"usd"}, "customer": {cus},
			"payment_method": {"pm_card_chargeDeclined"}, "confirm": {"true"}}, ""); err == nil {
			t.Fatal("declined create succeeded")
		}
	})
	step("legacy charge held and captured", func() {
		ch := call("/v1/charges", url.Values{"amount": {"900"}, "currency": {"usd"}, "source": {"tok_visa"}, "capture": {"false"}})
		call("/v1/charges/"+ch+"/capture", nil)
	})
}

// TestDisputeOutcomesAndExpiry follows, with the loop running, what
// the emulator now models of disputes and authorizations: a dispute won
// with Stripe's test evidence (closed, the funds reinstated in a second
// balance transaction that only the periodic listing finds, the $15 fee
// kept as Stripe does since its June 2025 dispute pricing), one
// lost, a dispute test card on a manual-capture intent (disputed only at
// capture, for the amount captured), and authorizations left uncaptured past seven days on the
// emulator's clock (charge.expired, payment_intent.canceled). After each
// step every table equals the emulator; then the rows themselves are
// checked, so a table that follows the emulator's mistakes is not enough.
func TestDisputeOutcomesAndExpiry(t *testing.T) {
	v, call := opsEnv(t)
	ctx := context.Background()
	step := func(name string, f func()) {
		t.Helper()
		f()
		t.Logf("step %s", name)
		v.converge(t, 10*time.Second)
	}
	disputeOf := func(ch string) string {
		t.Helper()
		resp, err := v.mut.Get(ctx, "/v1/disputes", url.Values{"charge": {ch}})
		if err != nil {
			t.Fatal(err)
		}
		var dp struct {
			Data []struct{ ID string } `json:"data"`
		}
		json.Unmarshal(resp.Body, &dp)
		if len(dp.Data) != 1 {
			t.Fatalf("%d disputes of %s", len(dp.Data), ch)
		}
		return dp.Data[0].ID
	}
	var won, lost, held, heldCharge, legacy, capturedPI string
	step("disputes decided by test evidence", func() {
		won = disputeOf(call("/v1/charges", url.Values{"amount": {"2000"}, "currency": {"usd"}, "source": {"tok_createDispute"}}))
		lost = disputeOf(call("/v1/charges", url.Values{"amount": {"1200"}, "currency": {"usd"}, "source": {"tok_createDispute"}}))
		call("/v1/disputes/"+won, url.Values{"evidence[uncategorized_text]": {"winning_evidence"}})
		call("/v1/disputes/"+lost, url.Values{"evidence[uncategorized_text]": {"losing_evidence"}})
	})
	step("dispute card authorized", func() {
		capturedPI = call("/v1/payment_intents", url.Values{"amount": {"1500"}, "currency": {"usd"},
			"payment_method": {"pm_card_createDispute"}, "capture_method": {"manual"}, "confirm": {"true"}})
	})
	step("dispute card captured", func() {
		call("/v1/payment_intents/"+capturedPI+"/capture", url.Values{"amount_to_capture": {"1000"}})
	})
	step("authorizations held", func() {
		held = call("/v1/payment_intents", url.Values{"amount": {"1000"}, "currency": {"usd"},
			"payment_method": {"pm_card_visa"}, "capture_method": {"manual"}, "confirm": {"true"}})
		legacy = call("/v1/charges", url.Values{"amount": {"900"}, "currency": {"usd"}, "source": {"tok_visa"}, "capture": {"false"}})
	})
	step("authorizations expired", func() {
		v.e.SetClockOffset(7*24*time.Hour + time.Minute)
	})

	var status string
	var txns, net int64
	if err := v.pool.QueryRow(ctx, `SELECT d.status, count(b.id), coalesce(sum(b.net), 0)
FROM stripe.disputes d LEFT JOIN stripe.balance_transactions b ON b.source = d.id
WHERE d.id = $1 GROUP BY d.status`, won).Scan(&status, &txns, &net); err != nil {
		t.Fatal(err)
	}
	if status != "won" || txns != 2 || net != -1500 {
		t.Errorf("won dispute in Postgres: status %s, %d balance transactions netting %d; want won, 2, -1500 (the fee)", status, txns, net)
	}
	if err := v.pool.QueryRow(ctx, `SELECT status FROM stripe.disputes WHERE id = $1`, lost).Scan(&status); err != nil || status != "lost" {
		t.Errorf("lost dispute in Postgres: %q %v", status, err)
	}
	var disputed int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.disputes d JOIN stripe.payment_intents p ON p.id = d.payment_intent
WHERE p.id = $1 AND d.amount = 1000`, capturedPI).Scan(&disputed); err != nil || disputed != 1 {
		t.Errorf("disputes of the captured intent in Postgres: %d %v", disputed, err)
	}
	var reason string
	if err := v.pool.QueryRow(ctx, `SELECT p.status, p.cancellation_reason, p.latest_charge FROM stripe.payment_intents p WHERE p.id = $1`, held).
		Scan(&status, &reason, &heldCharge); err != nil || status != "canceled" || reason != "automatic" {
		t.Errorf("expired intent in Postgres: %s %s %v", status, reason, err)
	}
	var refunded int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.charges WHERE id IN ($1, $2) AND refunded AND NOT captured AND amount_refunded = amount`,
		heldCharge, legacy).Scan(&refunded); err != nil || refunded != 2 {
		t.Errorf("expired charges in Postgres: %d of 2 refunded %v", refunded, err)
	}
}

// TestDeclinesLand: payments declined by Stripe's test cards, each
// with its own code (docs.stripe.com/testing, "Declined payments"), reach
// the tables through the events loop with what the emulator says of them:
// the charge's failure_code, failure_message and outcome, the intent's
// last_payment_error. The legacy /v1/charges decline too, whose failed
// charge comes only with charge.failed: of a token without a customer
// (Stripe refuses a customer with a token that isn't its saved source), so
// the failed charges are told apart by the card they describe.
func TestDeclinesLand(t *testing.T) {
	v, call := opsEnv(t)
	ctx := stripeapi.WithPriority(context.Background(), stripeapi.Interactive)
	cus := call("/v1/customers", url.Values{"name": {"Declines"}})
	type want struct {
		code, decline, reason, typ string
	}
	wants := map[string]want{} // last4 of the card -> what its failed charge's row must say
	for _, tc := range []struct {
		path, card, last4 string
		want              want
	}{
		{"/v1/payment_intents", "pm_card_visa_chargeDeclinedInsufficientFunds", "9995", want{"card_declined", "insufficient_funds", "insufficient_funds", "issuer_declined"}},
		{"/v1/payment_intents", "pm_card_chargeDeclinedExpiredCard", "0069", want{"expired_card", "", "expired_card", "issuer_declined"}},
		{"/v1/payment_intents", "pm_card_radarBlock", "0019", want{"card_declined", "fraudulent", "highest_risk_level", "blocked"}},
		{"/v1/charges", "tok_visa_chargeDeclinedLostCard", "9987", want{"card_declined", "lost_card", "lost_card", "issuer_declined"}},
	} {
		q := url.Values{"amount": {"1500"}, "currency": {"usd"}}
		if tc.path == "/v1/charges" {
			q.Set("source", tc.card)
		} else {
			q.Set("customer", cus)
			q.Set("payment_method", tc.card)
			q.Set("confirm", "true")
		}
		_, err := v.mut.Post(ctx, tc.path, q, "")
		var ae *stripeapi.Error
		if !errors.As(err, &ae) || ae.HTTPStatus != 402 || ae.Code != tc.want.code || ae.DeclineCode != tc.want.decline {
			t.Fatalf("%s with %s: %v, want a 402 %s/%s", tc.path, tc.card, err, tc.want.code, tc.want.decline)
		}
		wants[tc.last4] = tc.want
	}
	resp, err := v.mut.Get(ctx, "/v1/charges", url.Values{"limit": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID, Status string
			Details    struct {
				Card struct{ Last4 string } `json:"card"`
			} `json:"payment_method_details"`
		} `json:"data"`
	}
	json.Unmarshal(resp.Body, &list)
	declined := map[string]want{} // failed charge -> what its row must say
	for _, c := range list.Data {
		if w, ok := wants[c.Details.Card.Last4]; ok && c.Status == "failed" {
			declined[c.ID] = w
		}
	}
	if len(declined) != len(wants) {
		t.Fatalf("%d failed charges in the emulator, want %d", len(declined), len(wants))
	}
	v.converge(t, 10*time.Second)

	for ch, w := range declined {
		var status, code, msg, reason, typ, lpe string
		if err := v.pool.QueryRow(context.Background(), `SELECT c.status, c.failure_code, c.failure_message, c.outcome->>'reason', c.outcome->>'type',
	coalesce(p.last_payment_error->>'decline_code', p.last_payment_error->>'code', '')
FROM stripe.charges c LEFT JOIN stripe.payment_intents p ON p.id = c.payment_intent WHERE c.id = $1`, ch).
			Scan(&status, &code, &msg, &reason, &typ, &lpe); err != nil {
			t.Fatalf("charge %s in Postgres: %v", ch, err)
		}
		if status != "failed" || code != w.code || msg == "" || reason != w.reason || typ != w.typ {
			t.Errorf("charge %s row: status %s failure_code %s message %q outcome %s/%s, want failed %s, %s/%s", ch, status, code, msg, reason, typ, w.code, w.reason, w.typ)
		}
		if wantLPE := map[bool]string{true: w.decline, false: w.code}[w.decline != ""]; lpe != wantLPE && lpe != "" {
			t.Errorf("charge %s: its intent's last_payment_error says %s, want %s", ch, lpe, wantLPE)
		}
	}
}
