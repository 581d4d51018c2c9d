package emulator_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

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

// eventTypesFor lists the types of the events whose object is id or
// belongs to payment intent id (its charges), as GET /v1/events orders
// them: newest first.
func eventTypesFor(t *testing.T, base, id string) []string {
	t.Helper()
	r := mustOK(t, do(t, "GET", base+"/v1/events?limit=100", "sk_test_x", ""))
	var out []string
	data, _ := r.body["data"].([]any)
	for _, d := range data {
		ev := d.(map[string]any)
		obj := ev["data"].(map[string]any)["object"].(map[string]any)
		if obj["id"] == id || obj["payment_intent"] == id {
			out = append(out, ev["type"].(string))
		}
	}
	return out
}

// disputeOf returns the one dispute of charge ch, or nil when it has
// none.
func disputeOf(t *testing.T, base, ch string) map[string]any {
	t.Helper()
	data, _ := mustOK(t, do(t, "GET", base+"/v1/disputes?charge="+ch, "sk_test_x", "")).body["data"].([]any)
	switch len(data) {
	case 0:
		return nil
	case 1:
		return data[0].(map[string]any)
	}
	t.Fatalf("%d disputes of %s", len(data), ch)
	return nil
}

// TestDisputeOutcome: Stripe's test evidence decides a dispute
// (docs.stripe.com/testing#disputes, "Evidence": uncategorized_text
// winning_evidence closes it as won, losing_evidence as lost). A won
// dispute gives back the disputed amount, but not the $15 fee of a
// dispute opened since Stripe's June 2025 pricing (disputePricing2025),
// in a second balance transaction (spec, dispute.balance_transactions:
// "zero, one, or two … funds withdrawn and reinstated"), with
// charge.dispute.funds_reinstated after charge.dispute.closed. The charge
// stays disputed (spec: "Whether the charge has been disputed").
func TestDisputeOutcome(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		name   string
		update string // form of POST /v1/disputes/{id}; "close" posts /close
		status string
		events []string // of the dispute, oldest first
		txns   int
		count  int64 // evidence_details.submission_count
	}{
		{"winning evidence", "evidence[uncategorized_text]=winning_evidence", "won",
			[]string{"charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_reinstated"}, 2, 1},
		{"losing evidence", "evidence[uncategorized_text]=losing_evidence", "lost",
			[]string{"charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.dispute.closed"}, 1, 1},
		{"other evidence", "evidence[uncategorized_text]=we+shipped+it", "under_review",
			[]string{"charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.updated"}, 1, 1},
		{"winning evidence staged", "evidence[uncategorized_text]=winning_evidence&submit=false", "needs_response",
			[]string{"charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.updated"}, 1, 0},
		{"closed", "close", "lost",
			[]string{"charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.closed"}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := idOfResp(mustOK(t, do(t, "POST", base+"/v1/charges", "sk_test_x", "amount=2000&currency=usd&source=tok_createDispute")))
			d := disputeOf(t, base, ch)
			if d == nil || d["status"] != "needs_response" {
				t.Fatalf("dispute of %s: %v", ch, d)
			}
			id := d["id"].(string)
			if tc.update == "close" {
				d = mustOK(t, do(t, "POST", base+"/v1/disputes/"+id+"/close", "sk_test_x", "")).body
			} else {
				d = mustOK(t, do(t, "POST", base+"/v1/disputes/"+id, "sk_test_x", tc.update)).body
			}
			if d["status"] != tc.status {
				t.Fatalf("status %v, want %s", d["status"], tc.status)
			}
			if again := getObj(t, base, "/v1/disputes/"+id); again["status"] != tc.status {
				t.Fatalf("retrieved status %v, want %s", again["status"], tc.status)
			}
			ed, _ := d["evidence_details"].(map[string]any)
			if num(ed["submission_count"]) != tc.count || ed["has_evidence"] != (tc.update != "close") {
				t.Errorf("evidence_details %v, want submission_count %d", ed, tc.count)
			}
			if got := eventTypes(t, base, id); !slices.Equal(got, tc.events) {
				t.Errorf("events %v, want %v", got, tc.events)
			}
			txns, _ := d["balance_transactions"].([]any)
			if len(txns) != tc.txns {
				t.Fatalf("%d balance transactions, want %d: %v", len(txns), tc.txns, txns)
			}
			var net int64
			for _, x := range txns {
				tx := x.(map[string]any)
				if tx["source"] != id || tx["type"] != "adjustment" {
					t.Errorf("balance transaction %v: want an adjustment from %s", tx, id)
				}
				if stored := getObj(t, base, "/v1/balance_transactions/"+tx["id"].(string)); num(stored["net"]) != num(tx["net"]) {
					t.Errorf("stored %v differs from the embedded %v", stored, tx)
				}
				net += num(tx["net"])
			}
			w := txns[0].(map[string]any)
			if num(w["amount"]) != -2000 || num(w["fee"]) != 1500 || num(w["net"]) != -3500 {
				t.Errorf("withdrawal %v", w)
			}
			if tc.txns == 2 {
				r := txns[1].(map[string]any)
				if num(r["amount"]) != 2000 || num(r["fee"]) != 0 || num(r["net"]) != 2000 || r["reporting_category"] != "dispute_reversal" {
					t.Errorf("reinstatement %v", r)
				}
				if net != -1500 {
					t.Errorf("a won dispute costs %d, want the fee, 1500", -net)
				}
			}
			if c := getObj(t, base, "/v1/charges/"+ch); c["disputed"] != true {
				t.Errorf("charge disputed %v after %s", c["disputed"], tc.status)
			}
		})
	}
}

// TestDisputeWaitsForCapture: an authorization holds no funds, so
// a dispute test card disputes the payment once it is captured (a
// cardholder disputes a payment, not a hold), for the captured amount;
// one released uncaptured is never disputed.
func TestDisputeWaitsForCapture(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		name      string
		authorize string // POST path and form that authorize 2000
		finish    string // path (after /v1/) that captures or releases; {id} is the intent or charge
		form      string
		disputed  int64 // amount disputed in the end, 0 for none
	}{
		{"intent captured in part", "/v1/payment_intents amount=2000&currency=usd&payment_method=pm_card_createDispute&capture_method=manual&confirm=true",
			"payment_intents/{id}/capture", "amount_to_capture=1500", 1500},
		{"intent released", "/v1/payment_intents amount=2000&currency=usd&payment_method=pm_card_createDispute&capture_method=manual&confirm=true",
			"payment_intents/{id}/cancel", "", 0},
		{"charge captured", "/v1/charges amount=2000&currency=usd&source=tok_createDispute&capture=false",
			"charges/{id}/capture", "", 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, form, _ := strings.Cut(tc.authorize, " ")
			obj := mustOK(t, do(t, "POST", base+path, "sk_test_x", form)).body
			id := obj["id"].(string)
			ch := id
			if obj["object"] == "payment_intent" {
				ch = obj["latest_charge"].(string)
			}
			if d := disputeOf(t, base, ch); d != nil {
				t.Fatalf("an authorization was disputed: %v", d)
			}
			if c := getObj(t, base, "/v1/charges/"+ch); c["disputed"] != false {
				t.Fatalf("authorized charge disputed %v", c["disputed"])
			}
			adj := mustOK(t, do(t, "GET", base+"/v1/balance_transactions?type=adjustment", "sk_test_x", "")).body["data"].([]any)
			before := len(adj)
			mustOK(t, do(t, "POST", base+"/v1/"+strings.ReplaceAll(tc.finish, "{id}", id), "sk_test_x", tc.form))
			d := disputeOf(t, base, ch)
			c := getObj(t, base, "/v1/charges/"+ch)
			adj = mustOK(t, do(t, "GET", base+"/v1/balance_transactions?type=adjustment", "sk_test_x", "")).body["data"].([]any)
			if tc.disputed == 0 {
				if d != nil || c["disputed"] != false || len(adj) != before {
					t.Fatalf("released authorization: dispute %v, disputed %v, %d adjustments (had %d)", d, c["disputed"], len(adj), before)
				}
				return
			}
			if d == nil || num(d["amount"]) != tc.disputed || c["disputed"] != true || len(adj) != before+1 {
				t.Fatalf("captured: dispute %v, disputed %v, %d adjustments (had %d)", d, c["disputed"], len(adj), before)
			}
			if w := d["balance_transactions"].([]any)[0].(map[string]any); num(w["amount"]) != -tc.disputed {
				t.Fatalf("withdrawn %v, want %d", w["amount"], -tc.disputed)
			}
		})
	}
}

// TestAuthorizationExpires: an uncaptured payment expires seven
// days after it is created (spec, POST /v1/charges/{charge}/capture:
// "Uncaptured payments expire a set number of days after they are created
// (7 by default), after which they are marked as refunded and capture
// attempts will fail"; capture_before: "a future timestamp at which the
// charge will be automatically refunded if uncaptured"): charge.expired,
// and its intent canceled with cancellation_reason automatic (spec:
// "generated by Stripe internally"). Moving the emulator's clock is what
// makes the days pass.
func TestAuthorizationExpires(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	held := mustOK(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x",
		"amount=1000&currency=usd&payment_method=pm_card_visa&capture_method=manual&confirm=true")).body
	pi, ch := held["id"].(string), held["latest_charge"].(string)
	legacy := idOfResp(mustOK(t, do(t, "POST", base+"/v1/charges", "sk_test_x", "amount=900&currency=usd&source=tok_visa&capture=false")))
	captured := mustOK(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x",
		"amount=800&currency=usd&payment_method=pm_card_visa&capture_method=manual&confirm=true")).body
	mustOK(t, do(t, "POST", base+"/v1/payment_intents/"+captured["id"].(string)+"/capture", "sk_test_x", ""))
	// A refund releases an authorization's funds but leaves its intent
	// waiting for a capture: expiry ends that wait.
	refunded := mustOK(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x",
		"amount=700&currency=usd&payment_method=pm_card_visa&capture_method=manual&confirm=true")).body
	mustOK(t, do(t, "POST", base+"/v1/refunds", "sk_test_x", "payment_intent="+refunded["id"].(string)))

	c := getObj(t, base, "/v1/charges/"+ch)
	card := c["payment_method_details"].(map[string]any)["card"].(map[string]any)
	if num(card["capture_before"]) != num(c["created"])+7*86400 {
		t.Errorf("capture_before %v, created %v", card["capture_before"], c["created"])
	}

	for _, step := range []struct {
		offset  time.Duration
		expired bool
	}{
		{6 * 24 * time.Hour, false},
		{7*24*time.Hour + time.Minute, true},
	} {
		e.SetClockOffset(step.offset)
		p := getObj(t, base, "/v1/payment_intents/"+pi)
		c := getObj(t, base, "/v1/charges/"+ch)
		l := getObj(t, base, "/v1/charges/"+legacy)
		if !step.expired {
			if p["status"] != "requires_capture" || c["refunded"] != false || l["refunded"] != false {
				t.Fatalf("after %s: intent %v, charges refunded %v %v", step.offset, p["status"], c["refunded"], l["refunded"])
			}
			continue
		}
		if p["status"] != "canceled" || p["cancellation_reason"] != "automatic" || num(p["amount_capturable"]) != 0 || p["canceled_at"] == nil {
			t.Errorf("expired intent: status %v, reason %v, capturable %v, canceled_at %v", p["status"], p["cancellation_reason"], p["amount_capturable"], p["canceled_at"])
		}
		for _, x := range []map[string]any{c, l} {
			if x["refunded"] != true || num(x["amount_refunded"]) != num(x["amount"]) || x["captured"] != false || x["balance_transaction"] != nil {
				t.Errorf("expired charge %v: refunded %v, amount_refunded %v, captured %v, balance_transaction %v",
					x["id"], x["refunded"], x["amount_refunded"], x["captured"], x["balance_transaction"])
			}
		}
		if got, want := eventTypesFor(t, base, pi), []string{"payment_intent.canceled", "charge.expired", "payment_intent.amount_capturable_updated", "charge.succeeded", "payment_intent.created"}; !slices.Equal(got, want) {
			t.Errorf("events of the expired intent, newest first: %v, want %v", got, want)
		}
		if got := eventTypes(t, base, legacy); !slices.Equal(got, []string{"charge.succeeded", "charge.expired"}) {
			t.Errorf("events of the expired charge: %v", got)
		}
		if got := eventTypesFor(t, base, refunded["id"].(string)); got[0] != "payment_intent.canceled" || slices.Contains(got, "charge.expired") {
			t.Errorf("events of the refunded authorization, newest first: %v", got)
		}
		if k := getObj(t, base, "/v1/payment_intents/"+captured["id"].(string)); k["status"] != "succeeded" {
			t.Errorf("a captured intent changed at expiry: %v", k["status"])
		}
		wantErr(t, do(t, "POST", base+"/v1/payment_intents/"+pi+"/capture", "sk_test_x", ""), 400, "payment_intent_unexpected_state", "")
		wantErr(t, do(t, "POST", base+"/v1/charges/"+legacy+"/capture", "sk_test_x", ""), 400, "charge_already_refunded", "")
	}
}

// TestConfirmOnCreateEventOrder: an intent created with
// confirm=true exists before it is paid: Stripe sends
// payment_intent.created, then the charge's event, then the intent's
// outcome. GET /v1/events lists newest first, and these share one second,
// so the list order is the only order a reader has.
func TestConfirmOnCreateEventOrder(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		name, form string
		status     int
		want       []string // newest first
	}{
		{"automatic", "payment_method=pm_card_visa", 200,
			[]string{"payment_intent.succeeded", "charge.succeeded", "payment_intent.created"}},
		{"manual", "payment_method=pm_card_visa&capture_method=manual", 200,
			[]string{"payment_intent.amount_capturable_updated", "charge.succeeded", "payment_intent.created"}},
		{"declined", "payment_method=pm_card_chargeDeclined", 402,
			[]string{"payment_intent.payment_failed", "charge.failed", "payment_intent.created"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", base+"/v1/payment_intents", "sk_test_x", "amount=1000&currency=usd&confirm=true&"+tc.form)
			if r.status != tc.status {
				t.Fatalf("create: %d %s", r.status, r.raw)
			}
			id := idOfResp(r)
			if id == "" {
				pi, _ := r.body["error"].(map[string]any)["payment_intent"].(map[string]any)
				id, _ = pi["id"].(string)
			}
			if got := eventTypesFor(t, base, id); !slices.Equal(got, tc.want) {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
		})
	}
}

// A charge describes the card it was paid with, not the fixture's Visa
// 4242: payment_method_details.card has the brand, last4, expiry,
// fingerprint and funding of the saved card, test payment method or
// token charged, and charge.source is the card object when a card
// (saved, or made of a token) paid, null for a payment method. The
// charge.succeeded event carries the same object.
func TestChargeDescribesItsCard(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path, body string) apiResp { t.Helper(); return mustOK(t, do(t, "POST", base+path, key, body)) }
	year := float64(time.Now().Year() + 1)

	cus := post("/v1/customers", "source=tok_amex").body
	amex := cardID(t, cus, "default_source")
	amexCard := getObj(t, base, "/v1/customers/"+idOfResp(apiResp{body: cus})+"/sources/"+amex)
	pi := post("/v1/payment_intents", "amount=800&currency=usd&confirm=true&payment_method=pm_card_mastercard").body
	for _, tc := range []struct {
		name                    string
		charge                  map[string]any
		brand, last4, funding   string
		fingerprint, sourceCard string // sourceCard "": source null; "new": a card made for the charge
	}{
		{"customer's default source", post("/v1/charges", "amount=500&currency=usd&customer="+idOfResp(apiResp{body: cus})).body,
			"amex", "0005", "credit", amexCard["fingerprint"].(string), amex},
		{"a saved card by id", post("/v1/charges", "amount=500&currency=usd&customer="+idOfResp(apiResp{body: cus})+"&source="+amex).body,
			"amex", "0005", "credit", amexCard["fingerprint"].(string), amex},
		{"a token, no customer", post("/v1/charges", "amount=500&currency=usd&source=tok_visa_debit").body,
			"visa", "5556", "debit", "", "new"},
		{"test payment method", getObj(t, base, "/v1/charges/"+pi["latest_charge"].(string)),
			"mastercard", "4444", "credit", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := tc.charge
			pc := ch["payment_method_details"].(map[string]any)["card"].(map[string]any)
			if pc["brand"] != tc.brand || pc["network"] != tc.brand || pc["last4"] != tc.last4 || pc["funding"] != tc.funding ||
				pc["exp_year"] != year || pc["country"] != "US" {
				t.Errorf("payment_method_details.card: %v", pc)
			}
			if tc.fingerprint != "" && pc["fingerprint"] != tc.fingerprint {
				t.Errorf("fingerprint %v, want the card's %s", pc["fingerprint"], tc.fingerprint)
			}
			if pc["fingerprint"] == "r40d4vOgg3VecDJF" {
				t.Errorf("fingerprint is 4242's: %v", pc)
			}
			src, _ := ch["source"].(map[string]any)
			switch tc.sourceCard {
			case "":
				if v, ok := ch["source"]; !ok || v != nil {
					t.Errorf("source %v (present %v), want null", v, ok)
				}
			case "new":
				if src == nil || src["object"] != "card" || src["customer"] != nil || src["last4"] != tc.last4 || ch["payment_method"] != src["id"] ||
					!strings.HasPrefix(ch["payment_method"].(string), "card_") {
					t.Errorf("token charge: payment_method %v, source %v", ch["payment_method"], ch["source"])
				}
			default:
				if src == nil || src["id"] != tc.sourceCard || src["object"] != "card" || src["brand"] != "American Express" || ch["payment_method"] != tc.sourceCard {
					t.Errorf("card charge: payment_method %v, source %v", ch["payment_method"], ch["source"])
				}
			}
			// The event's charge is the charge answered.
			for _, x := range getObj(t, base, "/v1/events?type=charge.succeeded&limit=100")["data"].([]any) {
				obj := x.(map[string]any)["data"].(map[string]any)["object"].(map[string]any)
				if obj["id"] != ch["id"] {
					continue
				}
				epc := obj["payment_method_details"].(map[string]any)["card"].(map[string]any)
				if epc["brand"] != tc.brand || epc["last4"] != tc.last4 {
					t.Errorf("charge.succeeded says %v %v", epc["brand"], epc["last4"])
				}
				return
			}
			t.Errorf("no charge.succeeded for %v", ch["id"])
		})
	}
}

// The Charges API and an intent confirmed without a payment method take
// the customer's default_source, never invoice_settings.default_payment_method
// (spec, payment_intents payment_method; stripe/stripe-go#490); with no
// default source the charge is refused ("Cannot charge a customer that
// has no active card", card_error missing). Invoices of a subscription
// paid without a payment method take the subscription's default_source
// before the customer's invoice settings (spec, subscription
// default_source).
func TestCustomerDefaults(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path, body string) apiResp { t.Helper(); return mustOK(t, do(t, "POST", base+path, key, body)) }

	cr := post("/v1/customers", "source=tok_amex")
	cus := idOfResp(cr)
	card := cardID(t, cr.body, "default_source")
	pm := idOfResp(post("/v1/payment_methods", "type=card&card[number]=5555555555554444&card[exp_month]=12&card[exp_year]=2040"))
	post("/v1/payment_methods/"+pm+"/attach", "customer="+cus)
	post("/v1/customers/"+cus, "invoice_settings[default_payment_method]="+pm)

	// A payment method made of a card number describes that card.
	if pi := post("/v1/payment_intents", "amount=500&currency=usd&confirm=true&customer="+cus+"&payment_method="+pm).body; true {
		pc := getObj(t, base, "/v1/charges/"+pi["latest_charge"].(string))["payment_method_details"].(map[string]any)["card"].(map[string]any)
		if pc["brand"] != "mastercard" || pc["last4"] != "4444" || pc["exp_year"] != float64(2040) {
			t.Errorf("charge of a Mastercard payment method: %v", pc)
		}
	}
	if ch := post("/v1/charges", "amount=500&currency=usd&customer="+cus).body; ch["payment_method"] != card {
		t.Errorf("charge of the customer: payment_method %v, want its default_source %s", ch["payment_method"], card)
	}
	if pi := post("/v1/payment_intents", "amount=500&currency=usd&confirm=true&customer="+cus).body; pi["payment_method"] != card {
		t.Errorf("intent confirmed without a payment method: %v, want default_source %s", pi["payment_method"], card)
	}

	// Only invoice settings: no active card for the Charges API, and an
	// intent has nothing to confirm with.
	bare := idOfResp(post("/v1/customers", "name=b"))
	pm2 := idOfResp(post("/v1/payment_methods", "type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2040"))
	post("/v1/payment_methods/"+pm2+"/attach", "customer="+bare)
	post("/v1/customers/"+bare, "invoice_settings[default_payment_method]="+pm2)
	if r := do(t, "POST", base+"/v1/charges", key, "amount=500&currency=usd&customer="+bare); r.status != 402 ||
		errField(r, "type") != "card_error" || errField(r, "code") != "missing" || errField(r, "param") != "card" ||
		errField(r, "message") != "Cannot charge a customer that has no active card" {
		t.Errorf("charge of a customer without a source: %d %s", r.status, r.raw)
	}
	if r := do(t, "POST", base+"/v1/payment_intents", key, "amount=500&currency=usd&confirm=true&customer="+bare); r.status != 400 {
		t.Errorf("intent of a customer without a source: %d %s", r.status, r.raw)
	}

	// A subscription's invoice paid by hand: the subscription's source
	// comes before the customer's invoice settings.
	second := idOfResp(post("/v1/customers/"+cus+"/sources", "source=tok_discover"))
	price := idOfResp(post("/v1/prices", "unit_amount=1000&currency=usd&recurring[interval]=month&product_data[name]=p"))
	sub := post("/v1/subscriptions", "customer="+cus+"&items[0][price]="+price+"&default_source="+second+"&payment_behavior=default_incomplete").body
	inv := post("/v1/invoices/"+sub["latest_invoice"].(string)+"/pay", "").body
	if ch := getObj(t, base, "/v1/charges/"+inv["charge"].(string)); ch["payment_method"] != second {
		t.Errorf("subscription invoice paid without a payment method: %v, want the subscription's default_source %s", ch["payment_method"], second)
	}
}

// Charges API sources that need or refuse a customer: a token with a
// customer is refused (it must be saved first: code missing, "Customer …
// does not have a linked source with ID tok_…", stripe/stripe-go#490), a
// saved card without its customer too (spec: "you must also pass the ID
// of the associated customer"); neither makes a charge.
func TestChargeSourceNeedsCustomer(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cr := mustOK(t, do(t, "POST", base+"/v1/customers", key, "source=tok_visa"))
	cus, card := idOfResp(cr), cardID(t, cr.body, "default_source")
	before := len(e.Objects("charges"))
	for _, tc := range []struct {
		body, code, msg string
	}{
		{"customer=" + cus + "&source=tok_visa", "missing", "Customer " + cus + " does not have a linked source with ID tok_visa."},
		{"source=" + card, "resource_missing", "No such token: '" + card + "'"},
		{"source=tok_nope", "resource_missing", "No such token: 'tok_nope'"},
	} {
		r := do(t, "POST", base+"/v1/charges", key, "amount=500&currency=usd&"+tc.body)
		if r.status != 400 || errField(r, "type") != "invalid_request_error" || errField(r, "code") != tc.code ||
			errField(r, "param") != "source" || errField(r, "message") != tc.msg {
			t.Errorf("%s: %d %s", tc.body, r.status, r.raw)
		}
	}
	if n := len(e.Objects("charges")); n != before {
		t.Errorf("refused charges made %d charges", n-before)
	}
}

// defaultPMSetup is an emulator with two customers and a monthly price.
func defaultPMSetup(t *testing.T) (base, cus, other, price string, post func(string, url.Values) apiResp) {
	t.Helper()
	_, base = emulatortest.Start(t, emulator.Options{})
	post = func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", v.Encode())
	}
	cus = idOfResp(mustOK(t, post("/v1/customers", nil)))
	other = idOfResp(mustOK(t, post("/v1/customers", nil)))
	price = idOfResp(mustOK(t, post("/v1/prices", url.Values{"unit_amount": {"1000"}, "currency": {"usd"},
		"recurring[interval]": {"month"}, "product_data[name]": {"p"}})))
	return
}

// refusedTestPM fails unless r is Stripe's refusal of a test payment
// method (pm_card_visa) used where an attached one is needed: 400
// resource_missing on param, naming a new pm_ id, not the test one.
func refusedTestPM(t *testing.T, what, param string, r apiResp) {
	t.Helper()
	msg := errField(r, "message")
	id, _, _ := strings.Cut(strings.TrimPrefix(msg, "The customer does not have a payment method with the ID "), ".")
	if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != param ||
		!strings.HasPrefix(id, "pm_") || id == "pm_card_visa" || !strings.HasSuffix(msg, "The payment method must be attached to the customer.") {
		t.Errorf("%s: %d %s, want 400 resource_missing on %s naming a new pm_", what, r.status, r.raw, param)
	}
}

// Stripe's test payment methods are made into a new, unattached payment
// method at each use, so where an attached one is needed (a
// subscription's or invoice's default_payment_method, a customer's
// invoice_settings.default_payment_method) they are refused, and the
// request makes nothing.
func TestTestPMRefusedAsDefault(t *testing.T) {
	base, cus, _, price, post := defaultPMSetup(t)
	sub := idOfResp(mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}})))
	inv := idOfResp(mustOK(t, post("/v1/invoices", url.Values{"customer": {cus}})))
	count := func(path string) int {
		return len(getObj(t, base, path+"?limit=100&customer="+cus)["data"].([]any))
	}
	subs, invs := count("/v1/subscriptions"), count("/v1/invoices")
	for _, tc := range []struct {
		name, path string
		q          url.Values
		param      string
	}{
		{"subscription create", "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "default_payment_method": {"pm_card_visa"}}, "default_payment_method"},
		{"subscription update", "/v1/subscriptions/" + sub, url.Values{"default_payment_method": {"pm_card_visa"}}, "default_payment_method"},
		{"invoice create", "/v1/invoices", url.Values{"customer": {cus}, "default_payment_method": {"pm_card_visa"}}, "default_payment_method"},
		{"invoice update", "/v1/invoices/" + inv, url.Values{"default_payment_method": {"pm_card_visa"}}, "default_payment_method"},
		{"customer update", "/v1/customers/" + cus, url.Values{"invoice_settings[default_payment_method]": {"pm_card_visa"}}, "invoice_settings[default_payment_method]"},
	} {
		refusedTestPM(t, tc.name, tc.param, post(tc.path, tc.q))
	}
	if n := count("/v1/subscriptions"); n != subs {
		t.Errorf("%d subscriptions made by a refused create", n-subs)
	}
	if n := count("/v1/invoices"); n != invs {
		t.Errorf("%d invoices made by a refused create", n-invs)
	}
	if pm := getObj(t, base, "/v1/subscriptions/"+sub)["default_payment_method"]; pm != nil {
		t.Errorf("subscription's default_payment_method after a refused update: %v", pm)
	}
	if pm := at(getObj(t, base, "/v1/customers/"+cus), "invoice_settings.default_payment_method"); pm != nil {
		t.Errorf("customer's default after a refused update: %v", pm)
	}
}

// Attaching a test payment method attaches a new pm_ of its card
// (payment_method.attached), which is then the customer's to use: it pays,
// or declines, as the test card does. A test card Stripe won't attach is
// refused with its card error.
func TestAttachTestPM(t *testing.T) {
	base, cus, _, price, post := defaultPMSetup(t)
	r := mustOK(t, post("/v1/payment_methods/pm_card_mastercard/attach", url.Values{"customer": {cus}}))
	pm := idOfResp(r)
	if !strings.HasPrefix(pm, "pm_") || strings.HasPrefix(pm, "pm_card_") || r.body["customer"] != cus ||
		at(r.body, "card.last4") != "4444" || at(r.body, "card.brand") != "mastercard" {
		t.Fatalf("attached pm_card_mastercard: %s", r.raw)
	}
	if got := getObj(t, base, "/v1/payment_methods/"+pm); got["customer"] != cus {
		t.Errorf("retrieved copy: customer %v", got["customer"])
	}
	listed := false
	for _, x := range getObj(t, base, "/v1/customers/"+cus+"/payment_methods")["data"].([]any) {
		listed = listed || x.(map[string]any)["id"] == pm
	}
	if !listed {
		t.Errorf("the customer's payment methods don't list %s", pm)
	}
	attached := false
	for _, ev := range getObj(t, base, "/v1/events?type=payment_method.attached")["data"].([]any) {
		attached = attached || at(ev, "data.object.id") == pm
	}
	if !attached {
		t.Errorf("no payment_method.attached for %s", pm)
	}
	s := mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price},
		"default_payment_method": {pm}, "expand[]": {"latest_invoice"}}))
	if s.body["status"] != "active" || at(s.body, "latest_invoice.status") != "paid" {
		t.Errorf("subscription charged to the attached copy: %v, invoice %v", s.body["status"], at(s.body, "latest_invoice.status"))
	}

	failing := idOfResp(mustOK(t, post("/v1/payment_methods/pm_card_chargeCustomerFail/attach", url.Values{"customer": {cus}})))
	s = mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price},
		"default_payment_method": {failing}, "payment_behavior": {"allow_incomplete"}}))
	if s.body["status"] != "incomplete" {
		t.Errorf("subscription charged to the attached pm_card_chargeCustomerFail: %v, want incomplete", s.body["status"])
	}

	if r := post("/v1/payment_methods/pm_card_chargeDeclined/attach", url.Values{"customer": {cus}}); r.status != 402 || errField(r, "code") != "card_declined" {
		t.Errorf("attach pm_card_chargeDeclined: %d %s, want 402 card_declined", r.status, r.raw)
	}
}

// A customer created with payment_method=pm_card_visa gets a new copy of
// it attached, which invoice_settings names when it names pm_card_visa:
// the customer's subscriptions are then charged to it.
func TestCustomerCreatedWithTestPM(t *testing.T) {
	base, _, _, price, post := defaultPMSetup(t)
	cu := mustOK(t, post("/v1/customers", url.Values{"payment_method": {"pm_card_visa"},
		"invoice_settings[default_payment_method]": {"pm_card_visa"}})).body
	cus := cu["id"].(string)
	pm, _ := at(cu, "invoice_settings.default_payment_method").(string)
	if !strings.HasPrefix(pm, "pm_") || pm == "pm_card_visa" {
		t.Fatalf("invoice_settings.default_payment_method %q, want the attached copy", pm)
	}
	if got := getObj(t, base, "/v1/payment_methods/"+pm); got["customer"] != cus || at(got, "card.last4") != "4242" {
		t.Errorf("the default: customer %v last4 %v", got["customer"], at(got, "card.last4"))
	}
	s := mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "expand[]": {"latest_invoice"}}))
	if at(s.body, "latest_invoice.status") != "paid" {
		t.Errorf("first invoice charged to the customer's default: %v", at(s.body, "latest_invoice.status"))
	}
}

// TestSetupIntentTestPM: a setup intent of a customer confirmed with
// one of Stripe's test payment methods (at creation, or later with the
// payment_method param) sets up a new pm_ of its card, attached to the
// customer (payment_method.attached) and named by the intent, which the
// customer can then make its default and be charged to; the test id
// itself is refused as a default (TestTestPMRefusedAsDefault), so an
// intent naming it would have set up nothing usable.
func TestSetupIntentTestPM(t *testing.T) {
	base, cus, _, price, post := defaultPMSetup(t)
	check := func(how string, r apiResp, testPM, last4 string) string {
		t.Helper()
		pm, _ := r.body["payment_method"].(string)
		if r.status != 200 || r.body["status"] != "succeeded" || !strings.HasPrefix(pm, "pm_") || strings.HasPrefix(pm, "pm_card_") {
			t.Fatalf("setup intent %s with %s: %d %.300s, want succeeded naming a new pm_", how, testPM, r.status, r.raw)
		}
		got := getObj(t, base, "/v1/payment_methods/"+pm)
		if got["customer"] != cus || at(got, "card.last4") != last4 {
			t.Errorf("setup intent %s: its payment method's customer %v last4 %v, want %s %s", how, got["customer"], at(got, "card.last4"), cus, last4)
		}
		attached := false
		for _, ev := range getObj(t, base, "/v1/events?type=payment_method.attached")["data"].([]any) {
			attached = attached || at(ev, "data.object.id") == pm
		}
		if !attached {
			t.Errorf("setup intent %s: no payment_method.attached for %s", how, pm)
		}
		return pm
	}
	visa := check("created with confirm=true", post("/v1/setup_intents", url.Values{"customer": {cus},
		"payment_method": {"pm_card_visa"}, "confirm": {"true"}}), "pm_card_visa", "4242")
	si := idOfResp(mustOK(t, post("/v1/setup_intents", url.Values{"customer": {cus}})))
	mc := check("confirmed", post("/v1/setup_intents/"+si+"/confirm", url.Values{"payment_method": {"pm_card_mastercard"}}), "pm_card_mastercard", "4444")
	if visa == mc {
		t.Errorf("both setups named %s", visa)
	}
	n := len(getObj(t, base, "/v1/customers/"+cus+"/payment_methods")["data"].([]any))
	if n != 2 {
		t.Errorf("the customer has %d payment methods after two setups, want 2", n)
	}
	mustOK(t, post("/v1/customers/"+cus, url.Values{"invoice_settings[default_payment_method]": {mc}}))
	s := mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "expand[]": {"latest_invoice"}}))
	if at(s.body, "latest_invoice.status") != "paid" {
		t.Errorf("subscription charged to the set-up default: invoice %v", at(s.body, "latest_invoice.status"))
	}

	// A test card that declines once attached is set up, then declines.
	failing := check("created with confirm=true", post("/v1/setup_intents", url.Values{"customer": {cus},
		"payment_method": {"pm_card_chargeCustomerFail"}, "confirm": {"true"}}), "pm_card_chargeCustomerFail", "0341")
	s = mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price},
		"default_payment_method": {failing}, "payment_behavior": {"allow_incomplete"}}))
	if s.body["status"] != "incomplete" {
		t.Errorf("subscription charged to the set-up pm_card_chargeCustomerFail: %v, want incomplete", s.body["status"])
	}
}

// TestInvoicePayPMBelongs: POST /v1/invoices/{id}/pay with a
// payment_method that is not the invoice customer's (spec: "must be the
// ID of a PaymentMethod belonging to the customer associated with the
// invoice being paid") is refused, an unknown id as "No such
// PaymentMethod", and the invoice is neither charged nor finalized; the
// customer's own payment method pays.
func TestInvoicePayPMBelongs(t *testing.T) {
	base, cus, other, _, post := defaultPMSetup(t)
	others := attachCard(t, base, other, "pm_card_visa")
	loose := idOfResp(mustOK(t, post("/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})))
	own := attachCard(t, base, cus, "pm_card_visa")
	mustOK(t, post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"700"}, "currency": {"usd"}}))
	inv := idOfResp(mustOK(t, post("/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"}})))
	charges := func() int {
		return len(getObj(t, base, "/v1/charges?limit=100")["data"].([]any))
	}
	before := charges()
	for _, tc := range []struct{ name, pm, msg string }{
		{"unknown", "pm_nope", "No such PaymentMethod: 'pm_nope'"},
		{"another customer's", others, "The customer does not have a payment method with the ID " + others + ". The payment method must be attached to the customer."},
		{"nobody's", loose, "The customer does not have a payment method with the ID " + loose + ". The payment method must be attached to the customer."},
	} {
		r := post("/v1/invoices/"+inv+"/pay", url.Values{"payment_method": {tc.pm}})
		if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "payment_method" || errField(r, "message") != tc.msg {
			t.Errorf("pay with %s payment method: %d %s, want 400 resource_missing %q", tc.name, r.status, r.raw, tc.msg)
		}
		if st := getObj(t, base, "/v1/invoices/"+inv)["status"]; st != "draft" {
			t.Errorf("pay with %s payment method refused, the invoice is %v, want draft", tc.name, st)
		}
	}
	if n := charges(); n != before {
		t.Errorf("refused payments made %d charges", n-before)
	}
	if got := mustOK(t, post("/v1/invoices/"+inv+"/pay", url.Values{"payment_method": {own}})).body; got["status"] != "paid" {
		t.Errorf("pay with the customer's own payment method: %v", got["status"])
	}
}

// listCount is how many objects the list endpoint path answers (at most
// 100).
func listCount(t *testing.T, base, path string) int {
	t.Helper()
	return len(getObj(t, base, path+"?limit=100")["data"].([]any))
}

// TestIntentUnknownPM: a payment intent created (with or without
// confirm) or confirmed with a pm_ id that names no payment method is
// refused as Stripe does, 400 resource_missing "No such PaymentMethod",
// param payment_method, and nothing is created or charged.
func TestIntentUnknownPM(t *testing.T) {
	base, cus, _, _, post := defaultPMSetup(t)
	const msg = "No such PaymentMethod: 'pm_nope'"
	check := func(what string, r apiResp) {
		t.Helper()
		if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "payment_method" || errField(r, "message") != msg {
			t.Errorf("%s: %d %.300s, want 400 resource_missing payment_method %q", what, r.status, r.raw, msg)
		}
	}
	check("create", post("/v1/payment_intents", url.Values{"amount": {"500"}, "currency": {"usd"}, "payment_method": {"pm_nope"}}))
	check("create with confirm", post("/v1/payment_intents", url.Values{"amount": {"500"}, "currency": {"usd"}, "customer": {cus},
		"payment_method": {"pm_nope"}, "confirm": {"true"}}))
	if n := listCount(t, base, "/v1/payment_intents"); n != 0 {
		t.Errorf("refused creates made %d payment intents", n)
	}
	pi := idOfResp(mustOK(t, post("/v1/payment_intents", url.Values{"amount": {"500"}, "currency": {"usd"}, "customer": {cus}})))
	check("confirm", post("/v1/payment_intents/"+pi+"/confirm", url.Values{"payment_method": {"pm_nope"}}))
	if got := getObj(t, base, "/v1/payment_intents/"+pi); got["status"] != "requires_payment_method" || got["payment_method"] != nil {
		t.Errorf("after the refused confirm: status %v payment_method %v", got["status"], got["payment_method"])
	}
	if n := listCount(t, base, "/v1/charges"); n != 0 {
		t.Errorf("refused payments made %d charges", n)
	}
}

// TestIntentPMOwner: "Payment methods attached to other Customers
// cannot be used with this PaymentIntent" (spec, customer): another
// customer's payment method is refused with Stripe's wording, and a
// customer's payment method on an intent without a customer is refused
// with the one asking for the customer; nothing is charged. An
// unattached payment method pays for an intent with a customer and stays
// unattached, unless setup_future_usage is given, which attaches it to the
// intent's customer (payment_method.attached).
func TestIntentPMOwner(t *testing.T) {
	base, cus, other, _, post := defaultPMSetup(t)
	others := attachCard(t, base, other, "pm_card_visa")
	pay := func(v url.Values) apiResp {
		t.Helper()
		v.Set("amount", "700")
		v.Set("currency", "usd")
		return post("/v1/payment_intents", v)
	}
	notTheirs := "The PaymentMethod " + others + " does not belong to the Customer you supplied " + cus +
		". Please use this PaymentMethod with the Customer that it belongs to instead."
	r := pay(url.Values{"customer": {cus}, "payment_method": {others}, "confirm": {"true"}})
	if r.status != 400 || errField(r, "code") != "" || errField(r, "param") != "payment_method" || errField(r, "message") != notTheirs {
		t.Errorf("create with another customer's payment method: %d %.300s, want 400 %q", r.status, r.raw, notTheirs)
	}
	pi := idOfResp(mustOK(t, pay(url.Values{"customer": {cus}})))
	r = post("/v1/payment_intents/"+pi+"/confirm", url.Values{"payment_method": {others}})
	if r.status != 400 || errField(r, "param") != "payment_method" || errField(r, "message") != notTheirs {
		t.Errorf("confirm with another customer's payment method: %d %.300s, want 400 %q", r.status, r.raw, notTheirs)
	}
	noCustomer := "The `payment_method` parameter supplied " + others + " belongs to the Customer " + other +
		". Please include the Customer in the `customer` parameter on the PaymentIntent."
	r = pay(url.Values{"payment_method": {others}, "confirm": {"true"}})
	if r.status != 400 || errField(r, "code") != "parameter_missing" || errField(r, "message") != noCustomer {
		t.Errorf("create without customer with a customer's payment method: %d %.300s, want 400 %q", r.status, r.raw, noCustomer)
	}
	bare := idOfResp(mustOK(t, pay(url.Values{})))
	r = post("/v1/payment_intents/"+bare+"/confirm", url.Values{"payment_method": {others}})
	if r.status != 400 || errField(r, "message") != noCustomer {
		t.Errorf("confirm without customer with a customer's payment method: %d %.300s, want 400 %q", r.status, r.raw, noCustomer)
	}
	if n := listCount(t, base, "/v1/charges"); n != 0 {
		t.Errorf("refused payments made %d charges", n)
	}
	// Its own customer's intent pays with it.
	if got := mustOK(t, pay(url.Values{"customer": {other}, "payment_method": {others}, "confirm": {"true"}})).body; got["status"] != "succeeded" || got["payment_method"] != others {
		t.Errorf("the owner's intent: status %v payment_method %v", got["status"], got["payment_method"])
	}

	loose := func() string {
		t.Helper()
		return idOfResp(mustOK(t, post("/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})))
	}
	pm := loose()
	if got := mustOK(t, pay(url.Values{"customer": {cus}, "payment_method": {pm}, "confirm": {"true"}})).body; got["status"] != "succeeded" || got["payment_method"] != pm {
		t.Errorf("unattached payment method with a customer: status %v payment_method %v", got["status"], got["payment_method"])
	}
	if c := getObj(t, base, "/v1/payment_methods/"+pm)["customer"]; c != nil {
		t.Errorf("paid without setup_future_usage, the payment method's customer is %v, want null", c)
	}
	attached := func(pm string) bool {
		for _, ev := range getObj(t, base, "/v1/events?type=payment_method.attached&limit=100")["data"].([]any) {
			if at(ev, "data.object.id") == pm && at(ev, "data.object.customer") == cus {
				return true
			}
		}
		return false
	}
	saved := loose()
	mustOK(t, pay(url.Values{"customer": {cus}, "payment_method": {saved}, "confirm": {"true"}, "setup_future_usage": {"off_session"}}))
	if c := getObj(t, base, "/v1/payment_methods/"+saved)["customer"]; c != cus || !attached(saved) {
		t.Errorf("paid with setup_future_usage: customer %v (attached event %v), want %s", c, attached(saved), cus)
	}
	later := loose()
	pi = idOfResp(mustOK(t, pay(url.Values{"customer": {cus}})))
	mustOK(t, post("/v1/payment_intents/"+pi+"/confirm", url.Values{"payment_method": {later}, "setup_future_usage": {"on_session"}}))
	if c := getObj(t, base, "/v1/payment_methods/"+later)["customer"]; c != cus || !attached(later) {
		t.Errorf("confirmed with setup_future_usage: customer %v, want %s", c, cus)
	}
}

// TestIntentTestPM: an intent paid with one of Stripe's test
// payment methods (pm_card_mastercard, ...) names, as its charge does,
// the new payment method Stripe makes of it at each use: a stored pm_ of
// the same card (brand, last4), which the charge's
// payment_method_details describe, and which declines or disputes as the
// card it was made of.
func TestIntentTestPM(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", v.Encode())
	}
	cus := idOfResp(mustOK(t, post("/v1/customers", nil)))
	pay := func(v url.Values) apiResp {
		t.Helper()
		v.Set("amount", "900")
		v.Set("currency", "usd")
		return post("/v1/payment_intents", v)
	}
	// copyOf checks that pm is a stored copy of a test card, brand and
	// last4 as given, and that charge ch names and describes it.
	copyOf := func(what, pm, ch, brand, last4 string) {
		t.Helper()
		if !strings.HasPrefix(pm, "pm_") || strings.HasPrefix(pm, "pm_card_") {
			t.Errorf("%s: payment_method %q, want a new pm_", what, pm)
			return
		}
		got := getObj(t, base, "/v1/payment_methods/"+pm)
		if at(got, "card.brand") != brand || at(got, "card.last4") != last4 {
			t.Errorf("%s: %s is a %v %v, want %s %s", what, pm, at(got, "card.brand"), at(got, "card.last4"), brand, last4)
		}
		c := getObj(t, base, "/v1/charges/"+ch)
		if c["payment_method"] != pm || at(c, "payment_method_details.card.brand") != brand || at(c, "payment_method_details.card.last4") != last4 {
			t.Errorf("%s: charge payment_method %v, payment_method_details.card %v, want %s, %s %s", what, c["payment_method"],
				at(c, "payment_method_details.card"), pm, brand, last4)
		}
	}
	a := mustOK(t, pay(url.Values{"payment_method": {"pm_card_mastercard"}, "confirm": {"true"}})).body
	copyOf("created with confirm", a["payment_method"].(string), a["latest_charge"].(string), "mastercard", "4444")
	b := mustOK(t, pay(url.Values{"payment_method": {"pm_card_mastercard"}, "confirm": {"true"}})).body
	if a["payment_method"] == b["payment_method"] {
		t.Errorf("two payments with pm_card_mastercard named the same %v", a["payment_method"])
	}
	pi := mustOK(t, pay(url.Values{"customer": {cus}, "payment_method": {"pm_card_visa"}})).body
	if pm, _ := pi["payment_method"].(string); pi["status"] != "requires_confirmation" || strings.HasPrefix(pm, "pm_card_") {
		t.Errorf("created unconfirmed: status %v payment_method %v, want requires_confirmation and a new pm_", pi["status"], pm)
	}
	c := mustOK(t, post("/v1/payment_intents/"+idOfResp(apiResp{body: pi})+"/confirm", nil)).body
	copyOf("created, then confirmed", c["payment_method"].(string), c["latest_charge"].(string), "visa", "4242")
	pi = mustOK(t, pay(url.Values{"customer": {cus}})).body
	c = mustOK(t, post("/v1/payment_intents/"+idOfResp(apiResp{body: pi})+"/confirm", url.Values{"payment_method": {"pm_card_amex"}})).body
	copyOf("confirmed with it", c["payment_method"].(string), c["latest_charge"].(string), "amex", "0005")

	// Declines as the card named: a failed charge of the copy.
	r := pay(url.Values{"payment_method": {"pm_card_chargeDeclinedInsufficientFunds"}, "confirm": {"true"}})
	if r.status != 402 || errField(r, "decline_code") != "insufficient_funds" {
		t.Fatalf("pm_card_chargeDeclinedInsufficientFunds: %d %.300s, want 402 insufficient_funds", r.status, r.raw)
	}
	failed := getObj(t, base, "/v1/charges/"+errField(r, "charge"))
	if failed["status"] != "failed" {
		t.Errorf("declined charge status %v", failed["status"])
	}
	copyOf("declined", failed["payment_method"].(string), idOfResp(apiResp{body: failed}), "visa", "9995")
	// Disputes as the card named.
	d := mustOK(t, pay(url.Values{"payment_method": {"pm_card_createDispute"}, "confirm": {"true"}})).body
	copyOf("disputed", d["payment_method"].(string), d["latest_charge"].(string), "visa", "0259")
	if disputeOf(t, base, d["latest_charge"].(string)) == nil {
		t.Errorf("pm_card_createDispute's charge has no dispute")
	}
	// With a customer and setup_future_usage the copy is saved for it.
	s := mustOK(t, pay(url.Values{"customer": {cus}, "payment_method": {"pm_card_visa"}, "confirm": {"true"}, "setup_future_usage": {"off_session"}})).body
	if got := getObj(t, base, "/v1/payment_methods/"+s["payment_method"].(string)); got["customer"] != cus {
		t.Errorf("pm_card_visa with setup_future_usage: its copy's customer %v, want %s", got["customer"], cus)
	}
	// The unattached copies are on no list and in no event; the saved one
	// is listed.
	unlisted := e.UnlistedPaymentMethods()
	for _, pm := range []any{a["payment_method"], b["payment_method"], c["payment_method"], failed["payment_method"], d["payment_method"]} {
		if !unlisted[pm.(string)] {
			t.Errorf("unattached copy %v is not among the unlisted payment methods", pm)
		}
	}
	if unlisted[s["payment_method"].(string)] {
		t.Errorf("the saved copy %v is among the unlisted payment methods", s["payment_method"])
	}
}

// TestIntentUpdatePM: an update of a payment intent's
// payment_method is held to the create's rules (2a61b27 checked create
// and confirm only): an unknown pm_ is refused with Stripe's 400
// resource_missing and leaves the intent as it was, another customer's
// payment method is refused, and a test payment method (pm_card_visa)
// becomes a new pm_ copy, as on create.
func TestIntentUpdatePM(t *testing.T) {
	base, cus, other, _, post := defaultPMSetup(t)
	pi := idOfResp(mustOK(t, post("/v1/payment_intents", url.Values{"amount": {"500"}, "currency": {"usd"}, "customer": {cus}})))
	r := post("/v1/payment_intents/"+pi, url.Values{"payment_method": {"pm_nope"}})
	if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "payment_method" ||
		errField(r, "message") != "No such PaymentMethod: 'pm_nope'" {
		t.Errorf("update with an unknown pm_: %d %.300s, want 400 resource_missing", r.status, r.raw)
	}
	if got := getObj(t, base, "/v1/payment_intents/"+pi); got["payment_method"] != nil {
		t.Errorf("after the refused update: payment_method %v", got["payment_method"])
	}
	others := attachCard(t, base, other, "pm_card_visa")
	r = post("/v1/payment_intents/"+pi, url.Values{"payment_method": {others}})
	if r.status != 400 || errField(r, "param") != "payment_method" {
		t.Errorf("update with another customer's payment method: %d %.300s, want 400 on payment_method", r.status, r.raw)
	}
	got := mustOK(t, post("/v1/payment_intents/"+pi, url.Values{"payment_method": {"pm_card_visa"}})).body
	pm, _ := got["payment_method"].(string)
	if pm == "" || pm == "pm_card_visa" {
		t.Fatalf("update with pm_card_visa: payment_method %v, want a new pm_", got["payment_method"])
	}
	getObj(t, base, "/v1/payment_methods/"+pm)
	ok := mustOK(t, post("/v1/payment_intents/"+pi+"/confirm", nil)).body
	if ok["status"] != "succeeded" || ok["payment_method"] != pm {
		t.Errorf("confirm after the update: status %v payment_method %v, want succeeded %s", ok["status"], ok["payment_method"], pm)
	}
}
