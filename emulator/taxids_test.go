package emulator_test

import (
	"encoding/json"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// invoice.customer_tax_ids: "Until the invoice is finalized, this field will
// contain the same tax IDs as customer.tax_ids. Once the invoice is
// finalized, this field will no longer be updated" (spec, 2023-10-16),
// each as {type, value}. A draft and the upcoming invoice follow the
// customer's tax ids as they are added and deleted (through either path),
// a finalized invoice keeps those it was finalized with, and no invoice
// event is sent for it.
func TestInvoiceCustomerTaxIDs(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 1000)
	mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&collection_method=send_invoice&days_until_due=30"))
	draft := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus)))
	open := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus)))
	a := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers/"+cus+"/tax_ids", "sk_test_x", "type=eu_vat&value=DE123456789")))
	mustOK(t, do(t, "POST", base+"/v1/invoices/"+open+"/finalize", "sk_test_x", ""))
	b := idOfResp(mustOK(t, do(t, "POST", base+"/v1/tax_ids", "sk_test_x", "type=gb_vat&value=GB123456789&owner[type]=customer&owner[customer]="+cus)))
	invoiceEvents := func() int {
		r := mustOK(t, do(t, "GET", base+"/v1/events?limit=100", "sk_test_x", ""))
		n := 0
		for _, e := range r.body["data"].([]any) {
			if typ, _ := e.(map[string]any)["type"].(string); len(typ) > 8 && typ[:8] == "invoice." {
				n++
			}
		}
		return n
	}
	before := invoiceEvents()
	taxIDs := func(path string) string {
		t.Helper()
		r := mustOK(t, do(t, "GET", base+path, "sk_test_x", ""))
		j, _ := json.Marshal(r.body["customer_tax_ids"])
		return string(j)
	}
	both := `[{"type":"gb_vat","value":"GB123456789"},{"type":"eu_vat","value":"DE123456789"}]`
	if got := taxIDs("/v1/invoices/" + draft); got != both {
		t.Errorf("draft after two tax ids: %s, want %s", got, both)
	}
	if got := taxIDs("/v1/invoices/upcoming?customer=" + cus); got != both {
		t.Errorf("upcoming after two tax ids: %s, want %s", got, both)
	}
	if got, want := taxIDs("/v1/invoices/"+open), `[{"type":"eu_vat","value":"DE123456789"}]`; got != want {
		t.Errorf("finalized invoice: %s, want %s (those at finalization)", got, want)
	}
	mustOK(t, do(t, "DELETE", base+"/v1/customers/"+cus+"/tax_ids/"+a, "sk_test_x", ""))
	if got, want := taxIDs("/v1/invoices/"+draft), `[{"type":"gb_vat","value":"GB123456789"}]`; got != want {
		t.Errorf("draft after a nested delete: %s, want %s", got, want)
	}
	mustOK(t, do(t, "DELETE", base+"/v1/tax_ids/"+b, "sk_test_x", ""))
	for _, p := range []string{"/v1/invoices/" + draft, "/v1/invoices/upcoming?customer=" + cus} {
		if got := taxIDs(p); got != "[]" {
			t.Errorf("%s after deleting both: %s, want []", p, got)
		}
	}
	if got := taxIDs("/v1/invoices/" + open); got != `[{"type":"eu_vat","value":"DE123456789"}]` {
		t.Errorf("finalized invoice changed after deletes: %s", got)
	}
	if n := invoiceEvents(); n != before {
		t.Errorf("%d invoice events for tax id changes, Stripe documents none", n-before)
	}
}

// customer_tax_exempt: "Until the invoice is finalized, this field will
// equal customer.tax_exempt. Once the invoice is finalized, this field
// will no longer be updated" (spec, 2023-10-16).
func TestInvoiceCustomerTaxExempt(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "tax_exempt=reverse")))
	draft := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus)))
	open := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus)))
	mustOK(t, do(t, "POST", base+"/v1/invoices/"+open+"/finalize", "sk_test_x", ""))
	if r := mustOK(t, do(t, "GET", base+"/v1/invoices/"+draft, "sk_test_x", "")); r.body["customer_tax_exempt"] != "reverse" {
		t.Errorf("draft of a reverse-charge customer: customer_tax_exempt %v", r.body["customer_tax_exempt"])
	}
	mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "tax_exempt=exempt"))
	if r := mustOK(t, do(t, "GET", base+"/v1/invoices/"+draft, "sk_test_x", "")); r.body["customer_tax_exempt"] != "exempt" {
		t.Errorf("draft after the customer's change: customer_tax_exempt %v", r.body["customer_tax_exempt"])
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/invoices/"+open, "sk_test_x", "")); r.body["customer_tax_exempt"] != "reverse" {
		t.Errorf("finalized invoice: customer_tax_exempt %v", r.body["customer_tax_exempt"])
	}
}
