package emulator_test

import (
	"net/url"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// TestUpdateLine: POST /v1/invoices/{invoice}/lines/{id} changes a
// draft's line and its invoice item alike, checks its tax rates (a
// refused request changes nothing), and is refused once the invoice is
// finalized.
func TestUpdateLine(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	call := func(method, path string, v url.Values) apiResp {
		t.Helper()
		return do(t, method, base+path, key, v.Encode())
	}
	cus := idOfResp(mustOK(t, call("POST", "/v1/customers", url.Values{"name": {"a"}})))
	ii := idOfResp(mustOK(t, call("POST", "/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"500"}, "currency": {"usd"}})))
	inv := idOfResp(mustOK(t, call("POST", "/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"}})))
	txr := idOfResp(mustOK(t, call("POST", "/v1/tax_rates", url.Values{"display_name": {"VAT"}, "percentage": {"20"}, "inclusive": {"false"}})))
	lines := mustOK(t, call("GET", "/v1/invoices/"+inv+"/lines", nil)).body["data"].([]any)
	if len(lines) != 1 {
		t.Fatalf("lines: %v", lines)
	}
	line := lines[0].(map[string]any)["id"].(string)
	path := "/v1/invoices/" + inv + "/lines/" + line

	got := mustOK(t, call("POST", path, url.Values{"description": {"by line"}, "tax_rates[0]": {txr}})).body
	firstRate := func(o map[string]any) string {
		rs, _ := o["tax_rates"].([]any)
		if len(rs) != 1 {
			return ""
		}
		m, _ := rs[0].(map[string]any)
		id, _ := m["id"].(string)
		return id
	}
	if got["description"] != "by line" || firstRate(got) != txr {
		t.Errorf("updated line: %v", got)
	}
	item := mustOK(t, call("GET", "/v1/invoiceitems/"+ii, nil)).body
	if item["description"] != "by line" || firstRate(item) != txr {
		t.Errorf("the invoice item did not follow its line: %v", item)
	}

	r := call("POST", path, url.Values{"description": {"refused"}, "tax_rates[0]": {"txr_nosuch"}})
	if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "tax_rates[0]" {
		t.Errorf("unknown tax rate: %d %s", r.status, r.raw)
	}
	lines = mustOK(t, call("GET", "/v1/invoices/"+inv+"/lines", nil)).body["data"].([]any)
	if d := lines[0].(map[string]any)["description"]; d != "by line" {
		t.Errorf("a refused update changed the line: description %v", d)
	}

	mustOK(t, call("POST", "/v1/invoices/"+inv+"/finalize", nil))
	r = call("POST", path, url.Values{"description": {"late"}})
	if r.status != 400 || errField(r, "code") != "invoice_not_editable" {
		t.Errorf("update of a finalized invoice's line: %d %s", r.status, r.raw)
	}
}
