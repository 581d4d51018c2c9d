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
