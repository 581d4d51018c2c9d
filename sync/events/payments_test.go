package events_test

import (
	"context"
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
