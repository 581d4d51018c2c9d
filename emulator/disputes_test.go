package emulator_test

import (
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// TestDisputeEvidenceStaged: Stripe's dispute update submits the
// evidence to the bank unless submit=false, which only stages it; a
// staged dispute still needs a response (and can still be closed).
func TestDisputeEvidenceStaged(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	dispute := func() string {
		ch := idOfResp(mustOK(t, do(t, "POST", base+"/v1/charges", "sk_test_x", "amount=2000&currency=usd&source=tok_createDispute")))
		r := mustOK(t, do(t, "GET", base+"/v1/disputes?charge="+ch, "sk_test_x", ""))
		data, _ := r.body["data"].([]any)
		if len(data) != 1 {
			t.Fatalf("disputes of %s: %v", ch, r.body)
		}
		return data[0].(map[string]any)["id"].(string)
	}
	staged := dispute()
	r := mustOK(t, do(t, "POST", base+"/v1/disputes/"+staged, "sk_test_x", "evidence[product_description]=a+hat&submit=false"))
	if r.body["status"] != "needs_response" {
		t.Fatalf("staged evidence: status %v, want needs_response", r.body["status"])
	}
	if r = mustOK(t, do(t, "POST", base+"/v1/disputes/"+staged+"/close", "sk_test_x", "")); r.body["status"] != "lost" {
		t.Fatalf("close: status %v", r.body["status"])
	}
	submitted := dispute()
	if r = mustOK(t, do(t, "POST", base+"/v1/disputes/"+submitted, "sk_test_x", "evidence[product_description]=a+hat")); r.body["status"] != "under_review" {
		t.Fatalf("submitted evidence: status %v, want under_review", r.body["status"])
	}
}

// TestWonDisputeKeepsFee: a dispute opened since Stripe's June 2025
// dispute pricing keeps its $15 fee when won: the reinstatement gives back
// the amount only (docs.stripe.com/disputes/how-disputes-work: "the fee
// for receiving a dispute is non-refundable"). A seeded dispute, opened
// before (seeded history ends in 2024), gets the fee back as Stripe then
// refunded it.
func TestWonDisputeKeepsFee(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{Seed: 200})
	win := func(id string) map[string]any {
		t.Helper()
		d := mustOK(t, do(t, "POST", base+"/v1/disputes/"+id+"?expand[]=balance_transactions", "sk_test_x", "evidence[uncategorized_text]=winning_evidence")).body
		if d["status"] != "won" {
			t.Fatalf("dispute %s: status %v, want won", id, d["status"])
		}
		txns, _ := d["balance_transactions"].([]any)
		if len(txns) != 2 {
			t.Fatalf("dispute %s: %d balance transactions, want 2", id, len(txns))
		}
		return txns[1].(map[string]any)
	}

	ch := idOfResp(mustOK(t, do(t, "POST", base+"/v1/charges", "sk_test_x", "amount=2000&currency=usd&source=tok_createDispute")))
	disputes := mustOK(t, do(t, "GET", base+"/v1/disputes?charge="+ch, "sk_test_x", "")).body["data"].([]any)
	if len(disputes) != 1 {
		t.Fatalf("disputes of %s: %v", ch, disputes)
	}
	r := win(disputes[0].(map[string]any)["id"].(string))
	if num(r["amount"]) != 2000 || num(r["fee"]) != 0 || num(r["net"]) != 2000 || len(r["fee_details"].([]any)) != 0 {
		t.Errorf("reinstatement of a dispute opened now: amount %v fee %v net %v fee_details %v, want 2000 0 2000 none",
			r["amount"], r["fee"], r["net"], r["fee_details"])
	}

	var seeded map[string]any
	for _, x := range mustOK(t, do(t, "GET", base+"/v1/disputes?limit=100", "sk_test_x", "")).body["data"].([]any) {
		if d := x.(map[string]any); d["charge"] != ch && d["status"] == "needs_response" {
			seeded = d
			break
		}
	}
	if seeded == nil {
		t.Fatal("the seeded account has no open dispute")
	}
	r = win(seeded["id"].(string))
	if amt := num(seeded["amount"]); num(r["amount"]) != amt || num(r["fee"]) != -1500 || num(r["net"]) != amt+1500 {
		t.Errorf("reinstatement of a dispute opened in %v: amount %v fee %v net %v, want %d -1500 %d", seeded["created"], r["amount"], r["fee"], r["net"], amt, amt+1500)
	}
}
