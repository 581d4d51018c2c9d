package emulator_test

import (
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// Deleting a customer deletes its tax ids (only a customer owns them in
// 2023-10-16, read through the customer), with no event of their own; its
// payment methods stay retrievable, still naming the customer (as
// reported in mozilla/fxa#11984, #12380), but no list shows them.
func TestCustomerDeletionDependents(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", key, "name=a")))
	pm := idOfResp(mustOK(t, do(t, "POST", base+"/v1/payment_methods", key, "type=card")))
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm+"/attach", key, "customer="+cus))
	txi := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers/"+cus+"/tax_ids", key, "type=eu_vat&value=DE123456789")))
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus, key, ""))

	for _, p := range []string{"/v1/customers/" + cus + "/tax_ids/" + txi, "/v1/tax_ids/" + txi, "/v1/customers/" + cus + "/tax_ids", "/v1/customers/" + cus + "/payment_methods"} {
		if r := do(t, "GET", base+p, key, ""); r.status != 404 {
			t.Errorf("GET %s after the customer's deletion: %d %s, want 404", p, r.status, r.raw)
		}
	}
	if _, ok := e.Objects("tax_ids")[txi]; ok {
		t.Errorf("tax id %s still held after its customer's deletion", txi)
	}
	r := mustOK(t, do(t, "GET", base+"/v1/payment_methods/"+pm, key, ""))
	if got, _ := r.body["customer"].(string); got != cus {
		t.Errorf("payment method's customer after the deletion: %v, want %s", r.body["customer"], cus)
	}
	if _, ok := e.Objects("payment_methods")[pm]; !ok {
		t.Errorf("payment method %s gone with its customer", pm)
	}
	ev := mustOK(t, do(t, "GET", base+"/v1/events?limit=100", key, ""))
	for _, x := range ev.body["data"].([]any) {
		typ, _ := x.(map[string]any)["type"].(string)
		if strings.HasPrefix(typ, "customer.tax_id.deleted") || strings.HasPrefix(typ, "payment_method.detached") {
			t.Errorf("event %s sent for the customer's deletion", typ)
		}
	}
}
