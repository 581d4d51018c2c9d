package emulator_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// Decimal amounts as docs.stripe.com/billing/subscriptions/decimal-amounts
// has them: "if you create a price with unit_amount_decimal = 0.05, the
// response contains unit_amount = null and unit_amount_decimal = 0.05";
// an integer decimal fills unit_amount; at most 12 decimal places;
// "Rounding occurs on the line item level ... 0.05 * 30 = 1.5, which is
// then rounded up to 2 cents. If you have multiple line items, each will
// be rounded before summing up".

// wantUnit is a unit amount as Stripe answers it: the integer (nil: none,
// the JSON null) and its decimal string.
type wantUnit struct {
	integer any // float64 as JSON decodes it, or nil
	decimal string
}

func checkUnit(t *testing.T, what string, obj map[string]any, intField, decField string, w wantUnit) {
	t.Helper()
	if obj[intField] != w.integer || obj[decField] != w.decimal {
		t.Errorf("%s: %s %v %s %v, want %v %q", what, intField, obj[intField], decField, obj[decField], w.integer, w.decimal)
	}
}

// TestDecimalPriceRoundTrip: prices and plans keep a decimal amount
// exactly, without trailing zeros, and fill the integer only when it is
// whole, on create and on retrieve; what Stripe refuses is refused with
// 400 and creates nothing.
func TestDecimalPriceRoundTrip(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p")))
	for _, tc := range []struct {
		param, value string
		want         wantUnit
	}{
		{"unit_amount_decimal", "12.5", wantUnit{nil, "12.5"}},
		{"unit_amount_decimal", "12.50", wantUnit{nil, "12.5"}},
		{"unit_amount_decimal", "12.0", wantUnit{float64(12), "12"}},
		{"unit_amount_decimal", "0.05", wantUnit{nil, "0.05"}},
		{"unit_amount_decimal", "0.000000000001", wantUnit{nil, "0.000000000001"}},
		{"unit_amount_decimal", "007.10", wantUnit{nil, "7.1"}},
		{"unit_amount_decimal", "1500", wantUnit{float64(1500), "1500"}},
		{"unit_amount_decimal", "0", wantUnit{float64(0), "0"}},
		{"unit_amount", "700", wantUnit{float64(700), "700"}},
	} {
		r := mustOK(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd", tc.param, tc.value)))
		checkUnit(t, "price "+tc.value, r.body, "unit_amount", "unit_amount_decimal", tc.want)
		checkUnit(t, "retrieved price "+tc.value, getObj(t, base, "/v1/prices/"+idOfResp(r)), "unit_amount", "unit_amount_decimal", tc.want)
	}
	for _, tc := range []struct {
		value string
		want  wantUnit
	}{
		{"0.05", wantUnit{nil, "0.05"}},
		{"5", wantUnit{float64(5), "5"}},
		{"99.990", wantUnit{nil, "99.99"}},
	} {
		r := mustOK(t, do(t, "POST", base+"/v1/plans", key, form("product", prod, "currency", "usd", "interval", "month", "amount_decimal", tc.value)))
		checkUnit(t, "plan "+tc.value, r.body, "amount", "amount_decimal", tc.want)
		checkUnit(t, "retrieved plan "+tc.value, getObj(t, base, "/v1/plans/"+idOfResp(r)), "amount", "amount_decimal", tc.want)
	}

	prices := len(getObj(t, base, "/v1/prices?limit=100")["data"].([]any))
	for _, tc := range []struct {
		name, body, code, param string
	}{
		{"13 decimal places", form("unit_amount_decimal", "1.0000000000001"), "parameter_invalid_number", "unit_amount_decimal"},
		{"not a number", form("unit_amount_decimal", "abc"), "parameter_invalid_number", "unit_amount_decimal"},
		{"exponent", form("unit_amount_decimal", "1e3"), "parameter_invalid_number", "unit_amount_decimal"},
		{"fraction", form("unit_amount_decimal", "1/3"), "parameter_invalid_number", "unit_amount_decimal"},
		{"bare dot", form("unit_amount_decimal", "."), "parameter_invalid_number", "unit_amount_decimal"},
		{"negative", form("unit_amount_decimal", "-0.5"), "", "unit_amount_decimal"},
		{"both", form("unit_amount", "5", "unit_amount_decimal", "5"), "parameters_exclusive", "unit_amount_decimal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd")+"&"+tc.body), 400, tc.code, tc.param)
		})
	}
	wantErr(t, do(t, "POST", base+"/v1/plans", key, form("product", prod, "currency", "usd", "interval", "month", "amount", "5", "amount_decimal", "5")),
		400, "parameters_exclusive", "amount_decimal")
	if n := len(getObj(t, base, "/v1/prices?limit=100")["data"].([]any)); n != prices {
		t.Errorf("%d prices after refusals, want %d", n, prices)
	}
}

// TestDecimalInvoiceItems: an invoice item of a decimal unit amount
// (its own, or its price's) keeps the decimal, has no integer unit unless
// whole, and its amount is quantity × unit rounded to the cent, halves
// away from zero; an update of its quantity or unit recomputes it the
// same way, and a draft invoice's line follows.
func TestDecimalInvoiceItems(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	post := func(path string, kv ...string) apiResp {
		t.Helper()
		return do(t, "POST", base+path, key, form(kv...))
	}
	cus := mustID(t, post("/v1/customers", "name", "a"))
	prod := mustID(t, post("/v1/products", "name", "p"))
	price := mustID(t, post("/v1/prices", "product", prod, "currency", "usd", "unit_amount_decimal", "12.5"))

	for _, tc := range []struct {
		name   string
		kv     []string
		amount int64
		unit   wantUnit
	}{
		{"the docs' example", []string{"unit_amount_decimal", "0.05", "quantity", "30", "currency", "usd"}, 2, wantUnit{nil, "0.05"}},
		{"below half a cent", []string{"unit_amount_decimal", "0.0049", "quantity", "100", "currency", "usd"}, 0, wantUnit{nil, "0.0049"}},
		{"a credit's half cent", []string{"unit_amount_decimal", "-0.5", "quantity", "3", "currency", "usd"}, -2, wantUnit{nil, "-0.5"}},
		{"a decimal price", []string{"price", price, "quantity", "3"}, 38, wantUnit{nil, "12.5"}},
		{"price_data", []string{"price_data[product]", prod, "price_data[currency]", "usd", "price_data[unit_amount_decimal]", "0.333", "quantity", "7"}, 2, wantUnit{nil, "0.333"}},
		{"a whole decimal", []string{"unit_amount_decimal", "250.000", "quantity", "2", "currency", "usd"}, 500, wantUnit{float64(250), "250"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustOK(t, post("/v1/invoiceitems", append([]string{"customer", cus}, tc.kv...)...))
			if num(r.body["amount"]) != tc.amount {
				t.Errorf("amount %v, want %d", r.body["amount"], tc.amount)
			}
			checkUnit(t, "invoice item", r.body, "unit_amount", "unit_amount_decimal", tc.unit)
			ii := getObj(t, base, "/v1/invoiceitems/"+idOfResp(r))
			checkUnit(t, "retrieved invoice item", ii, "unit_amount", "unit_amount_decimal", tc.unit)
			mustOK(t, do(t, "DELETE", base+"/v1/invoiceitems/"+idOfResp(r), key, ""))
		})
	}
	wantErr(t, post("/v1/invoiceitems", "customer", cus, "currency", "usd", "unit_amount", "5", "unit_amount_decimal", "5"), 400, "parameters_exclusive", "unit_amount_decimal")
	wantErr(t, post("/v1/invoiceitems", "customer", cus, "price_data[product]", prod, "price_data[currency]", "usd",
		"price_data[unit_amount]", "5", "price_data[unit_amount_decimal]", "5"), 400, "parameters_exclusive", "price_data[unit_amount_decimal]")
	wantErr(t, post("/v1/invoiceitems", "customer", cus, "currency", "usd", "unit_amount_decimal", "0.1234567890123"), 400, "parameter_invalid_number", "unit_amount_decimal")

	// On a draft invoice, updates recompute the item and its line.
	inv := mustID(t, post("/v1/invoices", "customer", cus, "pending_invoice_items_behavior", "exclude"))
	ii := mustID(t, post("/v1/invoiceitems", "customer", cus, "invoice", inv, "currency", "usd", "unit_amount_decimal", "0.05", "quantity", "30"))
	line := func() map[string]any {
		t.Helper()
		for _, l := range getObj(t, base, "/v1/invoices/"+inv+"/lines")["data"].([]any) {
			if m := l.(map[string]any); m["invoice_item"] == ii {
				return m
			}
		}
		t.Fatalf("no line of %s", ii)
		return nil
	}
	if l := line(); num(l["amount"]) != 2 || l["unit_amount_excluding_tax"] != "0.05" {
		t.Errorf("line: amount %v unit %v, want 2 0.05", l["amount"], l["unit_amount_excluding_tax"])
	}
	for _, tc := range []struct {
		kv     []string
		amount int64
		unit   wantUnit
	}{
		{[]string{"quantity", "50"}, 3, wantUnit{nil, "0.05"}},              // 2.5
		{[]string{"unit_amount_decimal", "0.01"}, 1, wantUnit{nil, "0.01"}}, // 0.5
		{[]string{"unit_amount", "3"}, 150, wantUnit{float64(3), "3"}},
		{[]string{"unit_amount_decimal", "1.25", "quantity", "3"}, 4, wantUnit{nil, "1.25"}}, // 3.75
	} {
		r := mustOK(t, post("/v1/invoiceitems/"+ii, tc.kv...))
		if num(r.body["amount"]) != tc.amount {
			t.Errorf("after %v: amount %v, want %d", tc.kv, r.body["amount"], tc.amount)
		}
		checkUnit(t, fmt.Sprint("after ", tc.kv), r.body, "unit_amount", "unit_amount_decimal", tc.unit)
		if l := line(); num(l["amount"]) != tc.amount || l["unit_amount_excluding_tax"] != tc.unit.decimal {
			t.Errorf("after %v: line amount %v unit %v, want %d %s", tc.kv, l["amount"], l["unit_amount_excluding_tax"], tc.amount, tc.unit.decimal)
		}
	}
	if got := getObj(t, base, "/v1/invoices/"+inv); num(got["subtotal"]) != 4 || num(got["total"]) != 4 || num(got["amount_due"]) != 4 {
		t.Errorf("invoice subtotal %v total %v amount_due %v, want 4", got["subtotal"], got["total"], got["amount_due"])
	}
}

// TestDecimalSubscriptionInvoice: a subscription of decimal prices
// bills each line rounded, and the invoice sums the rounded lines (the
// docs' "each will be rounded before summing up"): 0.05 × 30 = 1.5 → 2
// and 12.5 × 3 = 37.5 → 38 make 40, not round(39); the upcoming invoice
// and the renewal bill the same.
func TestDecimalSubscriptionInvoice(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	decimalPrice := func(dec string) string {
		prod := idOfResp(mustOK(t, k.post("/v1/products", url.Values{"name": {"p"}})))
		return idOfResp(mustOK(t, k.post("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"},
			"unit_amount_decimal": {dec}, "recurring[interval]": {"month"}})))
	}
	a, b := decimalPrice("0.05"), decimalPrice("12.5")
	sub := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "default_payment_method": {k.card("pm_card_visa")},
		"items[0][price]": {a}, "items[0][quantity]": {"30"}, "items[1][price]": {b}, "items[1][quantity]": {"3"}}))
	want := map[string]struct {
		amount int64
		unit   string
	}{a: {2, "0.05"}, b: {38, "12.5"}}
	checkLines := func(what string, inv map[string]any) {
		t.Helper()
		lines := inv["lines"].(map[string]any)["data"].([]any)
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines", what, len(lines))
		}
		for _, l := range lines {
			line := l.(map[string]any)
			w := want[line["price"].(map[string]any)["id"].(string)]
			if num(line["amount"]) != w.amount || line["unit_amount_excluding_tax"] != w.unit {
				t.Errorf("%s: line amount %v unit %v, want %d %s", what, line["amount"], line["unit_amount_excluding_tax"], w.amount, w.unit)
			}
		}
		if num(inv["subtotal"]) != 40 || num(inv["total"]) != 40 || num(inv["amount_due"]) != 40 {
			t.Errorf("%s: subtotal %v total %v amount_due %v, want 40", what, inv["subtotal"], inv["total"], inv["amount_due"])
		}
	}
	first := k.get("/v1/invoices/" + sub.body["latest_invoice"].(string))
	checkLines("first invoice", first)
	if first["status"] != "paid" || num(first["amount_paid"]) != 40 {
		t.Errorf("first invoice %v paid %v, want paid 40", first["status"], first["amount_paid"])
	}
	checkLines("upcoming invoice", k.get("/v1/invoices/upcoming?customer="+k.cus))
	k.advance(monthStart(1))
	renewal := k.get("/v1/invoices/" + k.get("/v1/subscriptions/" + idOfResp(sub))["latest_invoice"].(string))
	if renewal["billing_reason"] != "subscription_cycle" {
		t.Fatalf("latest invoice %v after the period", renewal["billing_reason"])
	}
	checkLines("renewal", renewal)
}

// TestDecimalProrations: a mid-period change of a decimal price's
// quantity prorates the exact period amount and rounds once, halves away
// from zero: at half of January, 12.5 × 1 credits -6.25 → -6 and
// 12.5 × 3 debits 18.75 → 19; the items' decimal unit is exact and
// without trailing zeros.
func TestDecimalProrations(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	k := newFrozenClock(t, base)
	prod := idOfResp(mustOK(t, k.post("/v1/products", url.Values{"name": {"p"}})))
	price := idOfResp(mustOK(t, k.post("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"},
		"unit_amount_decimal": {"12.5"}, "recurring[interval]": {"month"}})))
	s := mustOK(t, k.post("/v1/subscriptions", url.Values{"customer": {k.cus}, "items[0][price]": {price}, "default_payment_method": {k.card("pm_card_visa")}}))
	item := s.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
	half := int64(clockFrozenAt + januarySeconds/2)
	k.advance(clockFrozenAt + 10*daySeconds)
	mustOK(t, k.post("/v1/subscriptions/"+idOfResp(s), url.Values{"items[0][id]": {item}, "items[0][quantity]": {"3"},
		"proration_date": {fmt.Sprint(half)}}))
	got := k.items()
	want := []struct {
		amount, qty int64
		unit        wantUnit
	}{
		{-6, 1, wantUnit{float64(-6), "-6"}},
		{19, 3, wantUnit{float64(6), "6.333333333333"}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d invoice items, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		ii := got[i]
		if num(ii["amount"]) != w.amount || num(ii["quantity"]) != w.qty || ii["proration"] != true {
			t.Errorf("proration %d: amount %v quantity %v proration %v, want %d %d", i, ii["amount"], ii["quantity"], ii["proration"], w.amount, w.qty)
		}
		checkUnit(t, fmt.Sprint("proration ", i), ii, "unit_amount", "unit_amount_decimal", w.unit)
	}
	up := k.get("/v1/invoices/upcoming?customer=" + k.cus)
	// The renewal: 12.5 × 3 = 37.5 → 38, plus the prorations' 13.
	if num(up["total"]) != 38+13 {
		t.Errorf("upcoming total %v, want %d", up["total"], 38+13)
	}
}

// TestDecimalBeyondInt64: a decimal unit amount an int64 can't
// hold is refused (400, parameter_invalid_number) on prices and invoice
// items, as an integer amount that large is; the largest int64 is taken,
// whole, and billed as itself. Before, 9223372036854775808 was taken and
// a one-unit invoice item of it billed -9223372036854775808.
func TestDecimalBeyondInt64(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, form("email", "a@b.co")))
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p")))
	for _, v := range []string{"9223372036854775808", "9223372036854775807.5", "9999999999999999999", "-9223372036854775808.1"} {
		for _, req := range []struct{ path, body string }{
			{"/v1/prices", form("product", prod, "currency", "usd", "unit_amount_decimal", v)},
			{"/v1/invoiceitems", form("customer", cus, "currency", "usd", "unit_amount_decimal", v)},
		} {
			r := do(t, "POST", base+req.path, key, req.body)
			errObj, _ := r.body["error"].(map[string]any)
			if r.status != 400 || errObj["param"] != "unit_amount_decimal" || errObj["code"] != "parameter_invalid_number" {
				t.Errorf("%s unit_amount_decimal=%s: %d %s, want 400 parameter_invalid_number", req.path, v, r.status, r.raw)
			}
		}
	}
	const top = "9223372036854775807"
	r := mustOK(t, do(t, "POST", base+"/v1/invoiceitems", key, form("customer", cus, "currency", "usd", "unit_amount_decimal", top)))
	// Compared as text: JSON numbers this large don't survive float64.
	for _, f := range []string{`"amount":` + top, `"unit_amount":` + top, `"unit_amount_decimal":"` + top + `"`} {
		if !strings.Contains(r.raw, f) {
			t.Errorf("invoice item of %s: no %s in %s", top, f, r.raw)
		}
	}
}
