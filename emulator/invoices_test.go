package emulator_test

import (
	"net/url"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// TestInvoiceTransitions checks the invoice status transitions of
// Stripe's workflow table (docs.stripe.com/invoicing/integration/
// workflow-transitions): open and uncollectible invoices can be paid and
// voided, a draft is finalized by pay, and a draft can't be voided
// (Stripe answers 400 "You can only pass in open invoices. This invoice
// isn't open.", with no code) nor, when it belongs to a subscription,
// deleted (spec of DELETE /v1/invoices/{invoice}: "if an invoice is for a
// subscription, it must be voided").
func TestInvoiceTransitions(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, key, v.Encode())
	}
	cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"name": {"a"}})))
	pm := idOfResp(mustOK(t, post("/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})))
	mustOK(t, post("/v1/payment_methods/"+pm+"/attach", url.Values{"customer": {cus}}))
	prod := idOfResp(mustOK(t, post("/v1/products", url.Values{"name": {"p"}})))
	price := idOfResp(mustOK(t, post("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"700"}, "currency": {"usd"}, "recurring[interval]": {"month"}})))
	sub := idOfResp(mustOK(t, post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price},
		"collection_method": {"send_invoice"}, "days_until_due": {"3"}})))

	// invoice makes a one-off invoice of 500 (or a subscription's draft
	// when sub is set) and brings it to status.
	invoice := func(status, sub string) string {
		t.Helper()
		mustOK(t, post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"500"}, "currency": {"usd"}}))
		v := url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"}}
		if sub != "" {
			v.Set("subscription", sub)
		}
		id := idOfResp(mustOK(t, post("/v1/invoices", v)))
		switch status {
		case "draft":
		case "open":
			mustOK(t, post("/v1/invoices/"+id+"/finalize", nil))
		case "uncollectible":
			mustOK(t, post("/v1/invoices/"+id+"/finalize", nil))
			mustOK(t, post("/v1/invoices/"+id+"/mark_uncollectible", nil))
		case "paid":
			mustOK(t, post("/v1/invoices/"+id+"/pay", url.Values{"payment_method": {pm}}))
		default:
			t.Fatalf("no invoice status %s", status)
		}
		return id
	}

	for _, tc := range []struct {
		name   string
		from   string
		sub    bool
		method string
		action string // "" for the invoice itself
		params url.Values
		// want: the HTTP status, then the invoice's status afterwards
		// ("" = deleted) and, for an error, its message and code.
		status    int
		after     string
		message   string
		code      string
		wantEvent string
	}{
		{name: "pay uncollectible", from: "uncollectible", method: "POST", action: "pay", params: url.Values{"payment_method": {pm}},
			status: 200, after: "paid", wantEvent: "invoice.paid"},
		{name: "pay uncollectible out of band", from: "uncollectible", method: "POST", action: "pay", params: url.Values{"paid_out_of_band": {"true"}},
			status: 200, after: "paid", wantEvent: "invoice.paid"},
		{name: "pay open", from: "open", method: "POST", action: "pay", params: url.Values{"payment_method": {pm}},
			status: 200, after: "paid", wantEvent: "invoice.paid"},
		{name: "pay draft finalizes it", from: "draft", method: "POST", action: "pay", params: url.Values{"payment_method": {pm}},
			status: 200, after: "paid", wantEvent: "invoice.finalized"},
		{name: "void uncollectible", from: "uncollectible", method: "POST", action: "void", status: 200, after: "void", wantEvent: "invoice.voided"},
		{name: "void draft", from: "draft", method: "POST", action: "void", status: 400, after: "draft",
			message: "You can only pass in open invoices. This invoice isn't open."},
		{name: "void paid", from: "paid", method: "POST", action: "void", status: 400, after: "paid",
			message: "You can only pass in open invoices. This invoice isn't open."},
		{name: "delete one-off draft", from: "draft", method: "DELETE", status: 200, after: ""},
		{name: "delete subscription draft", from: "draft", sub: true, method: "DELETE", status: 400, after: "draft"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ""
			if tc.sub {
				s = sub
			}
			id := invoice(tc.from, s)
			path := "/v1/invoices/" + id
			if tc.action != "" {
				path += "/" + tc.action
			}
			r := do(t, tc.method, base+path, key, tc.params.Encode())
			if r.status != tc.status {
				t.Fatalf("%s %s: %d %s", tc.method, path, r.status, r.raw)
			}
			if tc.message != "" && (errField(r, "message") != tc.message || errField(r, "code") != tc.code || errField(r, "param") != "") {
				t.Errorf("error %s, want message %q, code %q and no param", r.raw, tc.message, tc.code)
			}
			got := do(t, "GET", base+"/v1/invoices/"+id, key, "")
			switch {
			case tc.after == "" && got.status != 404:
				t.Errorf("deleted invoice: %d %s", got.status, got.raw)
			case tc.after != "" && got.body["status"] != tc.after:
				t.Errorf("invoice status %v, want %s", got.body["status"], tc.after)
			}
			if tc.wantEvent != "" {
				ev := mustOK(t, do(t, "GET", base+"/v1/events?type="+tc.wantEvent+"&limit=1", key, ""))
				data, _ := ev.body["data"].([]any)
				if len(data) != 1 || data[0].(map[string]any)["data"].(map[string]any)["object"].(map[string]any)["id"] != id {
					t.Errorf("no %s event for %s first: %s", tc.wantEvent, id, ev.raw)
				}
			}
		})
	}
}

// TestConfirmPaysUncollectibleInvoice: the payment intent of an
// uncollectible invoice still collects it (Stripe's workflow table:
// uncollectible → paid), so confirming it directly pays the invoice too.
func TestConfirmPaysUncollectibleInvoice(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	const key = "sk_test_x"
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return mustOK(t, do(t, "POST", base+path, key, v.Encode()))
	}
	cus := idOfResp(post("/v1/customers", url.Values{"name": {"a"}}))
	post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"500"}, "currency": {"usd"}})
	inv := idOfResp(post("/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"}}))
	post("/v1/invoices/"+inv+"/finalize", nil)
	r := post("/v1/invoices/"+inv+"/mark_uncollectible", nil)
	pi, _ := r.body["payment_intent"].(string)
	if pi == "" {
		t.Fatalf("uncollectible invoice without payment intent: %s", r.raw)
	}
	post("/v1/payment_intents/"+pi+"/confirm", url.Values{"payment_method": {"pm_card_visa"}})
	if got := mustOK(t, do(t, "GET", base+"/v1/invoices/"+inv, key, "")); got.body["status"] != "paid" {
		t.Fatalf("invoice after its intent succeeded: %v", got.body["status"])
	}
}
