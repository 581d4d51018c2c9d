package writethrough

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestCapturePaymentIntent: an intent created with
// capture_method=manual and confirmed waits in requires_capture; SET
// status = 'succeeded' captures it through Stripe's capture endpoint,
// amount_to_capture coming from _params, and the local row is Stripe's
// answer. Capturing an intent in another status (one still to be
// confirmed) gets Stripe's refusal (55000), with nothing applied.
func TestCapturePaymentIntent(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}
	pi := w.one(`INSERT INTO stripe.payment_intents (amount, currency, payment_method, capture_method, _params)
		VALUES (1000, 'usd', 'pm_card_visa', 'manual', '{"confirm": true}') RETURNING id`)
	w.local("payment_intents", pi, "status", "requires_capture")
	w.local("payment_intents", pi, "amount_capturable", "1000")

	w.exec("UPDATE 1", `UPDATE stripe.payment_intents SET status = 'succeeded', _params = '{"amount_to_capture": 600}' WHERE id = $1`, pi)
	w.local("payment_intents", pi, "status", "succeeded")
	w.local("payment_intents", pi, "amount_received", "600")
	w.remote("payment_intents", pi, "status", "succeeded")
	ch, _ := e.stripeObj("payment_intents", pi)["latest_charge"].(string)
	w.remote("charges", ch, "amount_captured", float64(600))

	open := w.one(`INSERT INTO stripe.payment_intents (amount, currency) VALUES (500, 'usd') RETURNING id`)
	if _, err := w.c.Exec(e.ctx, `UPDATE stripe.payment_intents SET status = 'succeeded' WHERE id = $1`, open); sqlstate(err) != "55000" {
		t.Fatalf("capture of an unconfirmed intent: want 55000, got %v", err)
	}
	w.local("payment_intents", open, "status", "requires_payment_method")
}
