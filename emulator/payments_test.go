package emulator_test

import (
	"slices"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// getObj retrieves one object as the API returns it.
func getObj(t *testing.T, base, path string) map[string]any {
	t.Helper()
	return mustOK(t, do(t, "GET", base+path, "sk_test_x", "")).body
}

// TestManualCapture: with capture_method=manual, confirming only
// authorizes (Stripe's spec: status requires_capture, amount_capturable;
// the charge succeeds uncaptured, and only a capture moves money, so the
// balance transaction comes with the capture). A partial capture
// (amount_to_capture) captures that much and the rest "is automatically
// refunded"; what is left to refund is the captured amount.
func TestManualCapture(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	pi := mustOK(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x",
		"amount=1000&currency=usd&payment_method=pm_card_visa&capture_method=manual&confirm=true")).body
	id := pi["id"].(string)
	if pi["status"] != "requires_capture" || num(pi["amount_capturable"]) != 1000 || num(pi["amount_received"]) != 0 {
		t.Fatalf("confirmed manual intent: status %v, capturable %v, received %v", pi["status"], pi["amount_capturable"], pi["amount_received"])
	}
	chID, _ := pi["latest_charge"].(string)
	ch := getObj(t, base, "/v1/charges/"+chID)
	if ch["captured"] != false || num(ch["amount_captured"]) != 0 || ch["balance_transaction"] != nil || ch["status"] != "succeeded" {
		t.Fatalf("authorized charge: captured %v, amount_captured %v, balance_transaction %v, status %v",
			ch["captured"], ch["amount_captured"], ch["balance_transaction"], ch["status"])
	}
	if got := eventTypes(t, base, id); !slices.Equal(got, []string{"payment_intent.created", "payment_intent.amount_capturable_updated"}) {
		t.Fatalf("events of the authorized intent: %v", got)
	}
	if r := do(t, "POST", base+"/v1/payment_intents/"+id+"/capture", "sk_test_x", "amount_to_capture=1001"); r.status != 400 {
		t.Fatalf("capture beyond amount_capturable: %d %s", r.status, r.raw)
	}

	pi = mustOK(t, do(t, "POST", base+"/v1/payment_intents/"+id+"/capture", "sk_test_x", "amount_to_capture=600")).body
	if pi["status"] != "succeeded" || num(pi["amount_received"]) != 600 || num(pi["amount_capturable"]) != 0 {
		t.Fatalf("captured intent: status %v, received %v, capturable %v", pi["status"], pi["amount_received"], pi["amount_capturable"])
	}
	ch = getObj(t, base, "/v1/charges/"+chID)
	if ch["captured"] != true || num(ch["amount_captured"]) != 600 || num(ch["amount_refunded"]) != 400 || ch["refunded"] != false {
		t.Fatalf("captured charge: captured %v, amount_captured %v, amount_refunded %v, refunded %v",
			ch["captured"], ch["amount_captured"], ch["amount_refunded"], ch["refunded"])
	}
	txnID, _ := ch["balance_transaction"].(string)
	if txnID == "" {
		t.Fatalf("captured charge without a balance transaction")
	}
	txn := getObj(t, base, "/v1/balance_transactions/"+txnID)
	if num(txn["amount"]) != 600 || txn["type"] != "charge" || txn["source"] != chID || num(txn["net"]) != 600-num(txn["fee"]) {
		t.Fatalf("capture's balance transaction: %v", txn)
	}
	if got := eventTypes(t, base, chID); !slices.Equal(got, []string{"charge.succeeded", "charge.captured"}) {
		t.Fatalf("events of the charge: %v", got)
	}
	if got := eventTypes(t, base, id); got[len(got)-1] != "payment_intent.succeeded" {
		t.Fatalf("events of the captured intent: %v", got)
	}
	if r := do(t, "POST", base+"/v1/payment_intents/"+id+"/capture", "sk_test_x", ""); r.status != 400 {
		t.Fatalf("second capture: %d %s", r.status, r.raw)
	}
	// Only the captured 600 can be refunded.
	if r := do(t, "POST", base+"/v1/refunds", "sk_test_x", "payment_intent="+id+"&amount=601"); r.status != 400 {
		t.Fatalf("refund beyond the captured amount: %d %s", r.status, r.raw)
	}
	mustOK(t, do(t, "POST", base+"/v1/refunds", "sk_test_x", "payment_intent="+id))
	if ch = getObj(t, base, "/v1/charges/"+chID); num(ch["amount_refunded"]) != 1000 || ch["refunded"] != true {
		t.Fatalf("fully refunded charge: amount_refunded %v, refunded %v", ch["amount_refunded"], ch["refunded"])
	}
	if r := do(t, "POST", base+"/v1/refunds", "sk_test_x", "charge="+chID); r.status != 400 || r.body["error"].(map[string]any)["code"] != "charge_already_refunded" {
		t.Fatalf("refund of a refunded charge: %d %s", r.status, r.raw)
	}
}

// TestCancelAuthorized: canceling a requires_capture intent
// releases the authorization ("the remaining amount_capturable is
// automatically refunded"): the charge shows it refunded, no money moved.
func TestCancelAuthorized(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	pi := mustOK(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x",
		"amount=2000&currency=usd&payment_method=pm_card_visa&capture_method=manual")).body
	id := pi["id"].(string)
	if pi["status"] != "requires_confirmation" {
		t.Fatalf("unconfirmed intent: %v", pi["status"])
	}
	pi = mustOK(t, do(t, "POST", base+"/v1/payment_intents/"+id+"/confirm", "sk_test_x", "")).body
	if pi["status"] != "requires_capture" {
		t.Fatalf("confirmed manual intent: %v", pi["status"])
	}
	chID := pi["latest_charge"].(string)
	pi = mustOK(t, do(t, "POST", base+"/v1/payment_intents/"+id+"/cancel", "sk_test_x", "cancellation_reason=abandoned")).body
	if pi["status"] != "canceled" || num(pi["amount_capturable"]) != 0 || pi["cancellation_reason"] != "abandoned" {
		t.Fatalf("canceled intent: %v, capturable %v, reason %v", pi["status"], pi["amount_capturable"], pi["cancellation_reason"])
	}
	ch := getObj(t, base, "/v1/charges/"+chID)
	if ch["captured"] != false || ch["refunded"] != true || num(ch["amount_refunded"]) != 2000 || ch["balance_transaction"] != nil {
		t.Fatalf("released charge: %v", ch)
	}
	if got := eventTypes(t, base, chID); !slices.Equal(got, []string{"charge.succeeded", "charge.refunded"}) {
		t.Fatalf("events of the released charge: %v", got)
	}
	txns := getObj(t, base, "/v1/balance_transactions")["data"].([]any)
	if len(txns) != 0 {
		t.Fatalf("balance transactions for an authorization that was never captured: %v", txns)
	}
}

// TestChargeCaptureFalse: the legacy charges API holds a charge
// with capture=false until /v1/charges/{id}/capture.
func TestChargeCaptureFalse(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	ch := mustOK(t, do(t, "POST", base+"/v1/charges", "sk_test_x", "amount=1500&currency=usd&source=tok_visa&capture=false")).body
	if ch["captured"] != false || ch["balance_transaction"] != nil {
		t.Fatalf("charge with capture=false: captured %v, balance_transaction %v", ch["captured"], ch["balance_transaction"])
	}
	ch = mustOK(t, do(t, "POST", base+"/v1/charges/"+ch["id"].(string)+"/capture", "sk_test_x", "amount=1000")).body
	if ch["captured"] != true || num(ch["amount_captured"]) != 1000 || num(ch["amount_refunded"]) != 500 || ch["balance_transaction"] == nil {
		t.Fatalf("captured charge: %v", ch)
	}
}

// TestDeclinedCreateKeepsIntent: creating and confirming an intent
// in one call with a declining card answers Stripe's 402 card error, but
// the intent exists (requires_payment_method, with last_payment_error) as
// does its failed charge, and the error carries the intent
// (api_errors.payment_intent); their events follow.
func TestDeclinedCreateKeepsIntent(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	r := do(t, "POST", base+"/v1/payment_intents", "sk_test_x", "amount=1000&currency=usd&payment_method=pm_card_chargeDeclined&confirm=true")
	if r.status != 402 {
		t.Fatalf("declined create: %d %s", r.status, r.raw)
	}
	ae := r.body["error"].(map[string]any)
	epi, _ := ae["payment_intent"].(map[string]any)
	if ae["code"] != "card_declined" || epi == nil || epi["status"] != "requires_payment_method" {
		t.Fatalf("declined create's error: %s", r.raw)
	}
	id := epi["id"].(string)
	pi := getObj(t, base, "/v1/payment_intents/"+id)
	lpe, _ := pi["last_payment_error"].(map[string]any)
	if pi["status"] != "requires_payment_method" || lpe == nil || lpe["charge"] != ae["charge"] || pi["latest_charge"] != ae["charge"] {
		t.Fatalf("declined intent: %v", pi)
	}
	if ch := getObj(t, base, "/v1/charges/"+ae["charge"].(string)); ch["status"] != "failed" || ch["payment_intent"] != id {
		t.Fatalf("failed charge: %v", ch)
	}
	if got := eventTypes(t, base, id); !slices.Equal(got, []string{"payment_intent.created", "payment_intent.payment_failed"}) {
		t.Fatalf("events of the declined intent: %v", got)
	}
	// Confirming again with a good card pays it.
	pi = mustOK(t, do(t, "POST", base+"/v1/payment_intents/"+id+"/confirm", "sk_test_x", "payment_method=pm_card_visa")).body
	if pi["status"] != "succeeded" || pi["last_payment_error"] != nil {
		t.Fatalf("intent confirmed again: %v", pi)
	}
}

// TestDisputeWithdrawsFunds: a dispute takes the charge's amount
// back plus Stripe's dispute fee, as one balance transaction (type
// adjustment, source the dispute) embedded in dispute.balance_transactions,
// with charge.dispute.funds_withdrawn (Stripe's charge.dispute.created
// payloads show it: "Chargeback withdrawal for ch_…", fee 1500).
func TestDisputeWithdrawsFunds(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	ch := idOfResp(mustOK(t, do(t, "POST", base+"/v1/charges", "sk_test_x", "amount=2000&currency=usd&source=tok_createDispute")))
	data := getObj(t, base, "/v1/disputes?charge="+ch)["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("disputes of %s: %v", ch, data)
	}
	d := data[0].(map[string]any)
	bts, _ := d["balance_transactions"].([]any)
	if len(bts) != 1 {
		t.Fatalf("dispute's balance transactions: %v", d["balance_transactions"])
	}
	bt := bts[0].(map[string]any)
	if num(bt["amount"]) != -2000 || num(bt["fee"]) != 1500 || num(bt["net"]) != -3500 || bt["type"] != "adjustment" || bt["source"] != d["id"] {
		t.Fatalf("dispute's balance transaction: %v", bt)
	}
	if got := getObj(t, base, "/v1/balance_transactions/"+bt["id"].(string)); num(got["net"]) != -3500 || got["reporting_category"] != "dispute" {
		t.Fatalf("listed balance transaction: %v", got)
	}
	if got := eventTypes(t, base, d["id"].(string)); !slices.Equal(got, []string{"charge.dispute.created", "charge.dispute.funds_withdrawn"}) {
		t.Fatalf("events of the dispute: %v", got)
	}
}

// TestReleasedAuthorizationNotCapturable: a refund of an
// authorized intent's charge releases it (no money moved); capturing the
// intent afterwards must not move money after all. Stripe's spec (charge
// capture): a released authorization is "marked as refunded and capture
// attempts will fail", as the emulator's charge capture already says.
func TestReleasedAuthorizationNotCapturable(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	pi := mustOK(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x",
		"amount=1000&currency=usd&payment_method=pm_card_visa&capture_method=manual&confirm=true")).body
	id, chID := pi["id"].(string), pi["latest_charge"].(string)
	mustOK(t, do(t, "POST", base+"/v1/refunds", "sk_test_x", "payment_intent="+id))
	if r := do(t, "POST", base+"/v1/payment_intents/"+id+"/capture", "sk_test_x", ""); r.status != 400 || errField(r, "code") != "charge_already_refunded" {
		t.Errorf("capture of a released authorization: %d %s", r.status, r.raw)
	}
	ch := getObj(t, base, "/v1/charges/"+chID)
	if ch["captured"] != false || ch["balance_transaction"] != nil || num(ch["amount_refunded"]) != 1000 {
		t.Errorf("released charge after the capture attempt: captured %v, balance_transaction %v, amount_refunded %v",
			ch["captured"], ch["balance_transaction"], ch["amount_refunded"])
	}
	if txns := getObj(t, base, "/v1/balance_transactions")["data"].([]any); len(txns) != 0 {
		t.Errorf("balance transactions for a released authorization: %v", txns)
	}
}
