package emulator_test

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// Each test here checks one behaviour of Stripe (API 2023-10-16)
// that the emulator must reproduce.

func mustOK(t *testing.T, r apiResp) apiResp {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	return r
}

func idOfResp(r apiResp) string { s, _ := r.body["id"].(string); return s }

// attachCard attaches test payment method testPM (pm_card_visa, ...) to
// customer cus on the emulator at base and returns the attached copy's
// id, which a subscription or invoice can then be charged to
// (emulatortest.Card).
func attachCard(t *testing.T, base, cus, testPM string) string {
	t.Helper()
	return emulatortest.Card(func(path string, q url.Values) string {
		t.Helper()
		return idOfResp(mustOK(t, do(t, "POST", base+path, "sk_test_x", q.Encode())))
	}, cus, testPM)
}

// A plan is a price in Stripe: a product with a plan can't be deleted
// ("This product cannot be deleted because it has one or more
// user-created prices"), any more than one with a price.
func TestProductWithPlanNotDeletable(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	prod := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p")))
	mustOK(t, do(t, "POST", base+"/v1/plans", "sk_test_x", "product="+prod+"&currency=usd&interval=month&amount=100"))
	r := do(t, "DELETE", base+"/v1/products/"+prod, "sk_test_x", "")
	if r.status != 400 || errField(r, "type") != "invalid_request_error" {
		t.Fatalf("delete product with a plan: %d %s", r.status, r.raw)
	}
}

// Stripe lets a canceled subscription update its metadata and
// cancellation_details ("A canceled subscription can only update its
// cancellation_details and metadata."), and refuses anything else.
func TestCanceledSubscriptionUpdate(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	prod := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p")))
	price := idOfResp(mustOK(t, do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+prod+"&currency=usd&unit_amount=0&recurring[interval]=month")))
	sub := idOfResp(mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price)))
	mustOK(t, do(t, "DELETE", base+"/v1/subscriptions/"+sub, "sk_test_x", ""))
	r := mustOK(t, do(t, "POST", base+"/v1/subscriptions/"+sub, "sk_test_x", "metadata[k]=v&cancellation_details[comment]=bye"))
	if md, _ := r.body["metadata"].(map[string]any); md["k"] != "v" || r.body["status"] != "canceled" {
		t.Fatalf("metadata on canceled subscription: %s", r.raw)
	}
	if cd, _ := r.body["cancellation_details"].(map[string]any); cd["comment"] != "bye" {
		t.Fatalf("cancellation_details on canceled subscription: %s", r.raw)
	}
	if r := do(t, "POST", base+"/v1/subscriptions/"+sub, "sk_test_x", "description=x"); r.status != 400 {
		t.Fatalf("other update of a canceled subscription: %d %s", r.status, r.raw)
	}
}

// Probe: pagination semantics.
func TestPagination(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", fmt.Sprintf("name=c%d", i)))))
	}
	get := func(q string) ([]string, bool) {
		r := mustOK(t, do(t, "GET", base+"/v1/customers?"+q, "sk_test_x", ""))
		var out []string
		for _, d := range r.body["data"].([]any) {
			out = append(out, d.(map[string]any)["id"].(string))
		}
		return out, r.body["has_more"].(bool)
	}
	got, more := get("limit=2")
	if fmt.Sprint(got) != fmt.Sprint([]string{ids[4], ids[3]}) || !more {
		t.Fatalf("first page %v %v", got, more)
	}
	got, more = get("limit=2&starting_after=" + ids[3])
	if fmt.Sprint(got) != fmt.Sprint([]string{ids[2], ids[1]}) || !more {
		t.Fatalf("second page %v %v", got, more)
	}
	got, more = get("limit=2&starting_after=" + ids[1])
	if fmt.Sprint(got) != fmt.Sprint([]string{ids[0]}) || more {
		t.Fatalf("last page %v %v", got, more)
	}
	got, more = get("limit=2&ending_before=" + ids[1])
	if fmt.Sprint(got) != fmt.Sprint([]string{ids[3], ids[2]}) || !more {
		t.Fatalf("ending_before page %v %v", got, more)
	}
	got, more = get("limit=2&ending_before=" + ids[3])
	if fmt.Sprint(got) != fmt.Sprint([]string{ids[4]}) || more {
		t.Fatalf("ending_before first %v %v", got, more)
	}
	_ = url.QueryEscape
}

// catalog makes a customer and a recurring price of amount.
func catalog(t *testing.T, base string, amount int) (cus, price string) {
	t.Helper()
	cus = idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	prod := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p")))
	price = idOfResp(mustOK(t, do(t, "POST", base+"/v1/prices", "sk_test_x", fmt.Sprintf("product=%s&currency=usd&unit_amount=%d&recurring[interval]=month", prod, amount))))
	return cus, price
}

// "Subscriptions with collection_method=send_invoice are automatically
// activated regardless of the first Invoice status" (spec, POST
// /v1/subscriptions payment_behavior).
func TestSendInvoiceSubscriptionActive(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 1000)
	r := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&collection_method=send_invoice&days_until_due=30"))
	if r.body["status"] != "active" {
		t.Fatalf("send_invoice subscription status %v, want active", r.body["status"])
	}
}

// payment_behavior=default_incomplete: "create Subscriptions with
// status=incomplete when the first invoice requires payment" — the
// invoice is left open for the client to confirm, even with a default
// payment method.
func TestDefaultIncomplete(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 1000)
	pm := idOfResp(mustOK(t, do(t, "POST", base+"/v1/payment_methods", "sk_test_x", "type=card")))
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm+"/attach", "sk_test_x", "customer="+cus))
	mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "invoice_settings[default_payment_method]="+pm))
	r := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&payment_behavior=default_incomplete&expand[]=latest_invoice"))
	inv, _ := r.body["latest_invoice"].(map[string]any)
	if r.body["status"] != "incomplete" || inv["status"] != "open" {
		t.Fatalf("default_incomplete: subscription %v, invoice %v", r.body["status"], inv["status"])
	}
	// Free first invoice: nothing to pay, so active at once.
	_, free := catalog(t, base, 0)
	r = mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+free+"&payment_behavior=default_incomplete"))
	if r.body["status"] != "active" {
		t.Fatalf("default_incomplete, free: %v", r.body["status"])
	}
}

// payment_behavior=error_if_incomplete: "return an HTTP 402 status code
// if a subscription's first invoice can't be paid … doesn't create a
// Subscription". Nothing is left behind: no subscription, invoice or event.
func TestErrorIfIncomplete(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 1000)
	count := func(path string) int {
		r := mustOK(t, do(t, "GET", base+path, "sk_test_x", ""))
		d, _ := r.body["data"].([]any)
		return len(d)
	}
	failing := attachCard(t, base, cus, "pm_card_chargeCustomerFail")
	events := count("/v1/events")
	for _, tc := range []struct{ name, extra, code string }{
		{"no payment method", "", "invoice_payment_intent_requires_action"},
		{"declined", "&default_payment_method=" + failing, "card_declined"},
	} {
		r := do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&payment_behavior=error_if_incomplete"+tc.extra)
		if r.status != 402 || errField(r, "type") != "card_error" || errField(r, "code") != tc.code {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.raw)
		}
	}
	if n := count("/v1/subscriptions?customer=" + cus + "&status=all"); n != 0 {
		t.Errorf("%d subscriptions created", n)
	}
	if n := count("/v1/invoices?customer=" + cus); n != 0 {
		t.Errorf("%d invoices created", n)
	}
	if n := count("/v1/events"); n != events {
		t.Errorf("%d events sent", n-events)
	}
	// allow_incomplete with the same declining card: created, incomplete.
	r := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&payment_behavior=allow_incomplete&default_payment_method="+failing))
	if r.body["status"] != "incomplete" {
		t.Errorf("allow_incomplete, declined: %v", r.body["status"])
	}
	// A trial charges nothing: created.
	r = mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&payment_behavior=error_if_incomplete&trial_period_days=7"))
	if r.body["status"] != "trialing" {
		t.Errorf("error_if_incomplete, trial: %v", r.body["status"])
	}
}

// A customer's invoice_settings.default_payment_method must be a payment
// method attached to that customer.
func TestDefaultPaymentMethodMustBeAttached(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	pm := idOfResp(mustOK(t, do(t, "POST", base+"/v1/payment_methods", "sk_test_x", "type=card")))
	r := do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "invoice_settings[default_payment_method]=pm_nope")
	if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != "invoice_settings[default_payment_method]" {
		t.Fatalf("unknown default payment method: %d %s", r.status, r.raw)
	}
	r = do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "invoice_settings[default_payment_method]="+pm)
	if r.status != 400 || errField(r, "param") != "invoice_settings[default_payment_method]" {
		t.Fatalf("unattached default payment method: %d %s", r.status, r.raw)
	}
	// Attached at creation by payment_method=: allowed.
	pm2 := idOfResp(mustOK(t, do(t, "POST", base+"/v1/payment_methods", "sk_test_x", "type=card")))
	mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "payment_method="+pm2+"&invoice_settings[default_payment_method]="+pm2))
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm+"/attach", "sk_test_x", "customer="+cus))
	mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "invoice_settings[default_payment_method]="+pm))
	// Unsetting it is fine.
	mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "invoice_settings[default_payment_method]="))
}

// Probe: metadata semantics and event snapshots.
func TestMetadataAndEvents(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a&metadata[a]=1&metadata[b]=2")))
	r := mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "metadata[a]=&name=b"))
	if md := r.body["metadata"].(map[string]any); len(md) != 1 || md["b"] != "2" {
		t.Fatalf("metadata[a]= : %v", md)
	}
	r = mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "metadata=&name=c"))
	if md := r.body["metadata"].(map[string]any); len(md) != 0 {
		t.Fatalf("metadata= : %v", md)
	}
	ev := mustOK(t, do(t, "GET", base+"/v1/events?type=customer.updated", "sk_test_x", ""))
	data := ev.body["data"].([]any)
	if len(data) != 2 {
		t.Fatalf("%d events", len(data))
	}
	older := data[1].(map[string]any)["data"].(map[string]any)
	if older["object"].(map[string]any)["name"] != "b" || older["previous_attributes"].(map[string]any)["name"] != "a" {
		t.Fatalf("older event: %v", older)
	}
	if ev.body["url"] != "/v1/events" {
		t.Fatalf("url %v", ev.body["url"])
	}
	e0 := data[0].(map[string]any)
	if req, _ := e0["request"].(map[string]any); req == nil || req["id"] == nil {
		t.Fatalf("request: %v", e0["request"])
	}
}

// Objects are built from stripe-mock's fixtures; none of the fixture's
// example content may show through where the request set nothing: Stripe
// answers null (or its own default) there.
func TestNoFixtureLeaks(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct {
		path, body string
		want       map[string]any // field -> expected value (nil = null)
	}{
		{"/v1/customers", "name=a", map[string]any{"currency": nil}},
		{"/v1/products", "name=p", map[string]any{"description": nil}},
		{"/v1/tax_rates", "display_name=VAT&inclusive=false&percentage=20", map[string]any{"description": nil, "country": nil, "jurisdiction": nil, "tax_type": nil}},
		{"/v1/coupons", "amount_off=100&currency=eur&duration=once", map[string]any{"percent_off": nil, "duration_in_months": nil, "name": nil, "amount_off": float64(100), "currency": "eur"}},
		{"/v1/coupons", "percent_off=10&duration=forever", map[string]any{"amount_off": nil, "currency": nil, "duration_in_months": nil, "name": nil}},
	} {
		r := mustOK(t, do(t, "POST", base+tc.path, "sk_test_x", tc.body))
		for f, want := range tc.want {
			if got := r.body[f]; got != want {
				t.Errorf("POST %s %s: %s = %v, want %v", tc.path, tc.body, f, got, want)
			}
		}
	}
	prod := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p")))
	r := mustOK(t, do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+prod+"&currency=usd&unit_amount_decimal=1500"))
	if r.body["unit_amount"] != float64(1500) || r.body["unit_amount_decimal"] != "1500" {
		t.Errorf("price from unit_amount_decimal: %v %v", r.body["unit_amount"], r.body["unit_amount_decimal"])
	}
	// Invoice prefixes are per customer.
	a := mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a"))
	b := mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=b"))
	if a.body["invoice_prefix"] == b.body["invoice_prefix"] {
		t.Errorf("two customers share invoice_prefix %v", a.body["invoice_prefix"])
	}
}

// A subscription gives a customer without one its billing currency (a
// new customer's currency is null), with a customer.updated event, and
// its first invoice is in the subscription's currency.
func TestCustomerCurrencyFromSubscription(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	prod := idOfResp(mustOK(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p")))
	price := idOfResp(mustOK(t, do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+prod+"&currency=eur&unit_amount=0&recurring[interval]=month")))
	sub := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&expand[]=latest_invoice"))
	if inv := sub.body["latest_invoice"].(map[string]any); inv["currency"] != "eur" {
		t.Fatalf("first invoice currency %v", inv["currency"])
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/customers/"+cus, "sk_test_x", "")); r.body["currency"] != "eur" {
		t.Fatalf("customer currency %v", r.body["currency"])
	}
	ev := mustOK(t, do(t, "GET", base+"/v1/events?type=customer.updated", "sk_test_x", ""))
	if data := ev.body["data"].([]any); len(data) != 1 {
		t.Fatalf("%d customer.updated events", len(data))
	}
	// Updating a customer whose default payment method is set leaves it
	// alone.
	mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "name=b"))
}

// Stripe answers 400 "Invalid Stripe API version: X" to a malformed
// Stripe-Version header.
func TestStripeVersionHeader(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	r := do(t, "GET", base+"/v1/customers", "sk_test_x", "", "Stripe-Version", "2019-2-19")
	if r.status != 400 || errField(r, "type") != "invalid_request_error" || errField(r, "message") != "Invalid Stripe API version: 2019-2-19" {
		t.Fatalf("bad version: %d %s", r.status, r.raw)
	}
	r = mustOK(t, do(t, "GET", base+"/v1/customers", "sk_test_x", "", "Stripe-Version", emulator.APIVersion))
	if r.header.Get("Stripe-Version") != emulator.APIVersion {
		t.Fatalf("Stripe-Version %q", r.header.Get("Stripe-Version"))
	}
}

// A coupon needs exactly one of amount_off and percent_off, a currency
// with amount_off, and duration_in_months when repeating; duration
// defaults to once (not the fixture's repeating).
func TestCouponRules(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	for _, tc := range []struct{ body, param string }{
		{"name=x", ""},
		{"percent_off=10&amount_off=100&currency=usd", "amount_off"},
		{"amount_off=100", "currency"},
		{"percent_off=10&duration=repeating", "duration_in_months"},
	} {
		r := do(t, "POST", base+"/v1/coupons", "sk_test_x", tc.body)
		if r.status != 400 || errField(r, "type") != "invalid_request_error" || errField(r, "param") != tc.param {
			t.Errorf("POST /v1/coupons %s: %d %s, want 400 on param %q", tc.body, r.status, r.raw, tc.param)
		}
	}
	r := mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "percent_off=10"))
	if r.body["duration"] != "once" || r.body["duration_in_months"] != nil {
		t.Errorf("default duration: %v / %v", r.body["duration"], r.body["duration_in_months"])
	}
	r = mustOK(t, do(t, "POST", base+"/v1/coupons", "sk_test_x", "percent_off=10&duration=repeating&duration_in_months=3"))
	if r.body["duration"] != "repeating" || r.body["duration_in_months"] != float64(3) {
		t.Errorf("repeating: %v / %v", r.body["duration"], r.body["duration_in_months"])
	}
}

// Finalizing an invoice creates its payment intent; confirming that
// intent pays the invoice and activates the subscription it started (the
// default_incomplete flow); the intent can't be canceled on its own, and
// voiding the invoice cancels it.
func TestInvoicePaymentIntent(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 1000)
	r := mustOK(t, do(t, "POST", base+"/v1/subscriptions", "sk_test_x", "customer="+cus+"&items[0][price]="+price+"&payment_behavior=default_incomplete&expand[]=latest_invoice.payment_intent"))
	sub := idOfResp(r)
	inv, _ := r.body["latest_invoice"].(map[string]any)
	pi, _ := inv["payment_intent"].(map[string]any)
	if pi["status"] != "requires_payment_method" || pi["amount"] != float64(1000) || pi["invoice"] != inv["id"] || pi["client_secret"] == nil {
		t.Fatalf("first invoice's payment intent: %v", pi)
	}
	piID := pi["id"].(string)
	if r := do(t, "POST", base+"/v1/payment_intents/"+piID+"/cancel", "sk_test_x", ""); r.status != 400 {
		t.Fatalf("cancel an invoice's intent: %d %s", r.status, r.raw)
	}
	// A declined card fails the invoice's attempt; a good one pays it.
	if r := do(t, "POST", base+"/v1/payment_intents/"+piID+"/confirm", "sk_test_x", "payment_method=pm_card_chargeDeclined"); r.status != 402 {
		t.Fatalf("confirm with a declined card: %d %s", r.status, r.raw)
	}
	r = mustOK(t, do(t, "GET", base+"/v1/invoices/"+inv["id"].(string), "sk_test_x", ""))
	if r.body["status"] != "open" || r.body["attempt_count"] != float64(1) {
		t.Fatalf("invoice after a declined confirm: %v, %v attempts", r.body["status"], r.body["attempt_count"])
	}
	r = mustOK(t, do(t, "POST", base+"/v1/payment_intents/"+piID+"/confirm", "sk_test_x", "payment_method=pm_card_visa"))
	if r.body["status"] != "succeeded" {
		t.Fatalf("confirm: %s", r.raw)
	}
	r = mustOK(t, do(t, "GET", base+"/v1/invoices/"+inv["id"].(string), "sk_test_x", ""))
	if r.body["status"] != "paid" || r.body["payment_intent"] != piID || r.body["charge"] == nil {
		t.Fatalf("invoice after its intent succeeded: %s", r.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/subscriptions/"+sub, "sk_test_x", "")); r.body["status"] != "active" {
		t.Fatalf("subscription after paying its first invoice: %v", r.body["status"])
	}

	// Voiding an open invoice cancels its intent.
	mustOK(t, do(t, "POST", base+"/v1/invoiceitems", "sk_test_x", "customer="+cus+"&amount=500&currency=usd"))
	draft := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus+"&pending_invoice_items_behavior=include")))
	open := mustOK(t, do(t, "POST", base+"/v1/invoices/"+draft+"/finalize", "sk_test_x", ""))
	vpi, _ := open.body["payment_intent"].(string)
	if vpi == "" {
		t.Fatalf("finalized invoice without a payment intent: %s", open.raw)
	}
	mustOK(t, do(t, "POST", base+"/v1/invoices/"+draft+"/void", "sk_test_x", ""))
	r = mustOK(t, do(t, "GET", base+"/v1/payment_intents/"+vpi, "sk_test_x", ""))
	if r.body["status"] != "canceled" || r.body["cancellation_reason"] != "void_invoice" {
		t.Fatalf("voided invoice's intent: %v %v", r.body["status"], r.body["cancellation_reason"])
	}
}

// A payment method attached to one customer can't be attached to another
// (Stripe: detach it first); attaching it again to the same customer is
// harmless and sends no second payment_method.attached.
func TestAttachAttachedPaymentMethod(t *testing.T) {
	emu, base := emulatortest.Start(t, emulator.Options{})
	a := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	b := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=b")))
	pm := idOfResp(mustOK(t, do(t, "POST", base+"/v1/payment_methods", "sk_test_x", "type=card")))
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm+"/attach", "sk_test_x", "customer="+a))
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm+"/attach", "sk_test_x", "customer="+a))
	if r := do(t, "POST", base+"/v1/payment_methods/"+pm+"/attach", "sk_test_x", "customer="+b); r.status != 400 {
		t.Fatalf("attach to a second customer: %d %s", r.status, r.raw)
	}
	if r := do(t, "POST", base+"/v1/customers", "sk_test_x", "payment_method="+pm); r.status != 400 {
		t.Fatalf("new customer with another's payment method: %d %s", r.status, r.raw)
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/payment_methods/"+pm, "sk_test_x", "")); r.body["customer"] != a {
		t.Fatalf("payment method moved to %v", r.body["customer"])
	}
	n := 0
	for _, ev := range emu.Objects("events") {
		if strings.Contains(string(ev), `"type":"payment_method.attached"`) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d payment_method.attached events, want 1", n)
	}
}

// Stripe updates only an attached payment method, and a detached one is
// spent: it can't be attached again or pay (spec: "A PaymentMethod must be
// attached a customer to be updated"; detach: "it can no longer be used
// for a payment or re-attached to a Customer"). Without these refusals a
// payment method's state from before its attach could exist, which no
// event of real Stripe carries.
func TestPaymentMethodUpdateNeedsAttachAndDetachIsFinal(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	a := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	pm := idOfResp(mustOK(t, do(t, "POST", base+"/v1/payment_methods", "sk_test_x", "type=card")))
	if r := do(t, "POST", base+"/v1/payment_methods/"+pm, "sk_test_x", "metadata[k]=v"); r.status != 400 {
		t.Fatalf("update of an unattached payment method: %d %s", r.status, r.raw)
	}
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm+"/attach", "sk_test_x", "customer="+a))
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm, "sk_test_x", "metadata[k]=v"))
	mustOK(t, do(t, "POST", base+"/v1/payment_methods/"+pm+"/detach", "sk_test_x", ""))
	for _, req := range []struct{ path, body string }{
		{"/v1/payment_methods/" + pm + "/attach", "customer=" + a},
		{"/v1/customers", "payment_method=" + pm},
		{"/v1/payment_intents", "amount=500&currency=usd&confirm=true&payment_method=" + pm},
	} {
		if r := do(t, "POST", base+req.path, "sk_test_x", req.body); r.status != 400 || !strings.Contains(errField(r, "message"), "may not be used again") {
			t.Errorf("POST %s with a detached payment method: %d %s", req.path, r.status, r.raw)
		}
	}
}

// Stripe refuses a currency that isn't a three-letter code, and voids an
// uncollectible invoice as it voids an open one.
func TestCurrencyCodeAndVoidUncollectible(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "name=a")))
	r := do(t, "POST", base+"/v1/invoiceitems", "sk_test_x", "customer="+cus+"&amount=500&currency=notacurrency")
	if r.status != 400 || errField(r, "param") != "currency" {
		t.Fatalf("invoice item in currency notacurrency: %d %s", r.status, r.raw)
	}
	mustOK(t, do(t, "POST", base+"/v1/invoiceitems", "sk_test_x", "customer="+cus+"&amount=500&currency=usd"))
	inv := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus+"&pending_invoice_items_behavior=include")))
	mustOK(t, do(t, "POST", base+"/v1/invoices/"+inv+"/finalize", "sk_test_x", ""))
	mustOK(t, do(t, "POST", base+"/v1/invoices/"+inv+"/mark_uncollectible", "sk_test_x", ""))
	if r := mustOK(t, do(t, "POST", base+"/v1/invoices/"+inv+"/void", "sk_test_x", "")); r.body["status"] != "void" {
		t.Fatalf("void an uncollectible invoice: %s", r.raw)
	}
	if r := do(t, "POST", base+"/v1/invoices/"+inv+"/mark_uncollectible", "sk_test_x", ""); r.status != 400 {
		t.Fatalf("mark a void invoice uncollectible: %d %s", r.status, r.raw)
	}
}

// A schedule that starts now creates its subscription: Stripe's
// customer.subscription.created carries schedule = the schedule's id, and
// no later event changes it, so an event consumer must see it there.
func TestScheduleSubscriptionCreatedEventNamesSchedule(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus, price := catalog(t, base, 1000)
	sched := mustOK(t, do(t, "POST", base+"/v1/subscription_schedules", "sk_test_x",
		"customer="+cus+"&start_date=now&phases[0][items][0][price]="+price+"&phases[0][iterations]=2"))
	sub, _ := sched.body["subscription"].(string)
	if sub == "" {
		t.Fatalf("schedule without subscription: %s", sched.raw)
	}
	got := mustOK(t, do(t, "GET", base+"/v1/subscriptions/"+sub, "sk_test_x", ""))
	if got.body["schedule"] != idOfResp(sched) {
		t.Fatalf("subscription.schedule = %v, want %s", got.body["schedule"], idOfResp(sched))
	}
	evs := mustOK(t, do(t, "GET", base+"/v1/events?type=customer.subscription.created", "sk_test_x", ""))
	data, _ := evs.body["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("%d customer.subscription.created events", len(data))
	}
	obj := data[0].(map[string]any)["data"].(map[string]any)["object"].(map[string]any)
	if obj["schedule"] != idOfResp(sched) {
		t.Fatalf("customer.subscription.created carries schedule %v, want %s (the stored subscription's)", obj["schedule"], idOfResp(sched))
	}
}

// A draft invoice shows its customer's current details ("Until the invoice
// is finalized, this field will equal customer.email"); a finalized one
// keeps those it was finalized with.
func TestDraftInvoiceFollowsCustomer(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	cus := idOfResp(mustOK(t, do(t, "POST", base+"/v1/customers", "sk_test_x", "email=old%40x.co&name=Old")))
	draft := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus)))
	open := idOfResp(mustOK(t, do(t, "POST", base+"/v1/invoices", "sk_test_x", "customer="+cus)))
	mustOK(t, do(t, "POST", base+"/v1/invoices/"+open+"/finalize", "sk_test_x", ""))
	mustOK(t, do(t, "POST", base+"/v1/customers/"+cus, "sk_test_x", "email=new%40x.co&name=New"))
	if r := mustOK(t, do(t, "GET", base+"/v1/invoices/"+draft, "sk_test_x", "")); r.body["customer_email"] != "new@x.co" || r.body["customer_name"] != "New" {
		t.Errorf("draft invoice: %v %v", r.body["customer_email"], r.body["customer_name"])
	}
	if r := mustOK(t, do(t, "GET", base+"/v1/invoices/"+open, "sk_test_x", "")); r.body["customer_email"] != "old@x.co" {
		t.Errorf("finalized invoice: %v", r.body["customer_email"])
	}
}

// TestDefaultPaymentMethodOwned: a subscription's (create and
// update) and an invoice's (create and update) default_payment_method
// "must belong to the customer associated with" it (spec): an unknown id
// is resource_missing "No such PaymentMethod", another customer's payment
// method or saved card, or one attached to no one, is Stripe's "The
// customer does not have a payment method with the ID …", param
// default_payment_method, and the request changes nothing. The
// customer's own payment method and saved card and "" (unset) are taken
// (Stripe's test payment methods are refused: TestTestPMRefusedAsDefault).
func TestDefaultPaymentMethodOwned(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp {
		t.Helper()
		return do(t, "POST", base+path, "sk_test_x", v.Encode())
	}
	id := func(r apiResp) string {
		t.Helper()
		return mustOK(t, r).body["id"].(string)
	}
	cus, other := id(post("/v1/customers", nil)), id(post("/v1/customers", nil))
	prod := id(post("/v1/products", url.Values{"name": {"p"}}))
	price := id(post("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"1000"}, "recurring[interval]": {"month"}}))
	newPM := func() string {
		return id(post("/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}}))
	}
	own, others, loose := newPM(), newPM(), newPM()
	mustOK(t, post("/v1/payment_methods/"+own+"/attach", url.Values{"customer": {cus}}))
	mustOK(t, post("/v1/payment_methods/"+others+"/attach", url.Values{"customer": {other}}))
	ownCard := id(post("/v1/customers/"+cus+"/sources", url.Values{"source": {"tok_visa"}}))
	othersCard := id(post("/v1/customers/"+other+"/sources", url.Values{"source": {"tok_mastercard"}}))

	sub := id(post("/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}}))
	inv := id(post("/v1/invoices", url.Values{"customer": {cus}}))
	notAttached := func(pm string) string {
		return "The customer does not have a payment method with the ID " + pm + ". The payment method must be attached to the customer."
	}
	refused := []struct{ pm, msg string }{
		{"pm_nope", "No such PaymentMethod: 'pm_nope'"},
		{"card_nope", "No such PaymentMethod: 'card_nope'"},
		{others, notAttached(others)},
		{loose, notAttached(loose)},
		{othersCard, notAttached(othersCard)},
	}
	requests := []struct {
		name, path string
		base       url.Values
	}{
		{"subscription create", "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}}},
		{"subscription update", "/v1/subscriptions/" + sub, url.Values{}},
		{"invoice create", "/v1/invoices", url.Values{"customer": {cus}}},
		{"invoice update", "/v1/invoices/" + inv, url.Values{}},
	}
	count := func(path string) int {
		return len(getObj(t, base, path+"?limit=100&customer="+cus)["data"].([]any))
	}
	subs, invs := count("/v1/subscriptions"), count("/v1/invoices")
	for _, rq := range requests {
		for _, tc := range refused {
			v := url.Values{"default_payment_method": {tc.pm}}
			for k, x := range rq.base {
				v[k] = x
			}
			r := post(rq.path, v)
			e, _ := r.body["error"].(map[string]any)
			if r.status != 400 || e["code"] != "resource_missing" || e["param"] != "default_payment_method" || e["message"] != tc.msg {
				t.Errorf("%s with %s: %d %s, want 400 resource_missing %q", rq.name, tc.pm, r.status, r.raw, tc.msg)
			}
		}
		for _, pm := range []string{own, ownCard} {
			v := url.Values{"default_payment_method": {pm}}
			for k, x := range rq.base {
				v[k] = x
			}
			if got := mustOK(t, post(rq.path, v)).body["default_payment_method"]; got != pm {
				t.Errorf("%s with its customer's %s: default_payment_method %v", rq.name, pm, got)
			}
		}
	}
	// Two creates of each kind were taken (own, ownCard), each
	// subscription with its first invoice; none of the refused ones left
	// anything behind.
	if n := count("/v1/subscriptions"); n != subs+2 {
		t.Errorf("%d subscriptions, want %d: a refused create made one", n, subs+2)
	}
	if n := count("/v1/invoices"); n != invs+4 {
		t.Errorf("%d invoices, want %d: a refused create made one", n, invs+4)
	}
	if got := mustOK(t, post("/v1/subscriptions/"+sub, url.Values{"default_payment_method": {""}})).body["default_payment_method"]; got != nil {
		t.Errorf("default_payment_method after unsetting it: %v", got)
	}
}

// TestNoFixtureLeftovers: objects made with the least a request
// needs carry none of stripe-mock's example content: a payment method
// made of a token has null billing_details (not jenny@example.com at
// 1234 Fake Street) and keeps the ones given; a charge of a token has no
// billing name (not Jenny Rosen) and a charge of a payment method its
// billing_details; a checkout session given no cancel_url has none (not
// https://example.com/cancel); a credit note has no tax_amounts (no tax
// is computed; not the fixture's 190 of a tax rate that doesn't exist).
func TestNoFixtureLeftovers(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) map[string]any {
		t.Helper()
		return mustOK(t, do(t, "POST", base+path, "sk_test_x", v.Encode())).body
	}
	nulls := map[string]any{
		"address": map[string]any{"city": nil, "country": nil, "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
		"email":   nil, "name": nil, "phone": nil,
	}
	pm := post("/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"}})
	if !reflect.DeepEqual(pm["billing_details"], nulls) {
		t.Errorf("payment method of tok_visa: billing_details %v, want all null", pm["billing_details"])
	}
	given := post("/v1/payment_methods", url.Values{"type": {"card"}, "card[token]": {"tok_visa"},
		"billing_details[name]": {"Ann Lee"}, "billing_details[address][city]": {"Oslo"}})
	want := map[string]any{
		"address": map[string]any{"city": "Oslo", "country": nil, "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
		"email":   nil, "name": "Ann Lee", "phone": nil,
	}
	if !reflect.DeepEqual(given["billing_details"], want) {
		t.Errorf("payment method with billing_details: %v, want %v", given["billing_details"], want)
	}
	if got := getObj(t, base, "/v1/payment_methods/"+given["id"].(string))["billing_details"]; !reflect.DeepEqual(got, want) {
		t.Errorf("payment method retrieved: billing_details %v, want %v", got, want)
	}

	ch := post("/v1/charges", url.Values{"amount": {"1000"}, "currency": {"usd"}, "source": {"tok_visa"}})
	if !reflect.DeepEqual(ch["billing_details"], nulls) {
		t.Errorf("charge of tok_visa: billing_details %v, want all null", ch["billing_details"])
	}
	pi := post("/v1/payment_intents", url.Values{"amount": {"1000"}, "currency": {"usd"}, "payment_method": {given["id"].(string)},
		"confirm": {"true"}, "expand[]": {"latest_charge"}})
	if got := at(pi, "latest_charge.billing_details"); !reflect.DeepEqual(got, want) {
		t.Errorf("charge of a payment method with billing_details: %v, want %v", got, want)
	}

	cus := post("/v1/customers", nil)["id"].(string)
	prod := post("/v1/products", url.Values{"name": {"p"}})["id"].(string)
	price := post("/v1/prices", url.Values{"product": {prod}, "currency": {"usd"}, "unit_amount": {"500"}})["id"].(string)
	cs := post("/v1/checkout/sessions", url.Values{"mode": {"payment"}, "line_items[0][price]": {price}, "line_items[0][quantity]": {"1"},
		"success_url": {"https://shop.test/ok"}})
	if cs["cancel_url"] != nil || cs["success_url"] != "https://shop.test/ok" {
		t.Errorf("checkout session: cancel_url %v success_url %v, want null and the one given", cs["cancel_url"], cs["success_url"])
	}

	post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"1000"}, "currency": {"usd"}})
	inv := post("/v1/invoices", url.Values{"customer": {cus}, "pending_invoice_items_behavior": {"include"}, "collection_method": {"send_invoice"}, "days_until_due": {"3"}})
	post("/v1/invoices/"+inv["id"].(string)+"/finalize", nil)
	cn := post("/v1/credit_notes", url.Values{"invoice": {inv["id"].(string)}, "amount": {"100"}})
	if ta, ok := cn["tax_amounts"].([]any); !ok || len(ta) != 0 {
		t.Errorf("credit note: tax_amounts %v, want []", cn["tax_amounts"])
	}

	// Nothing else of the example content shows anywhere in them.
	for _, obj := range []map[string]any{pm, given, ch, pi, cs, cn} {
		raw := strings.ToLower(mustOK(t, do(t, "GET", base+"/v1/"+map[string]string{"pm": "payment_methods", "ch": "charges", "pi": "payment_intents",
			"cs": "checkout/sessions", "cn": "credit_notes"}[strings.SplitN(obj["id"].(string), "_", 2)[0]]+"/"+obj["id"].(string), "sk_test_x", "")).raw)
		for _, s := range []string{"jenny", "fake street", "example.com", "txr_1opouv"} {
			if strings.Contains(raw, s) {
				t.Errorf("%s shows %q: %.300s", obj["id"], s, raw)
			}
		}
	}
}

// TestCreditNoteChangesInvoice: spec, POST /v1/credit_notes: "For
// a status=open invoice, a credit note reduces its amount_due [...] Each
// credit note will increment the invoice's pre_payment_credit_notes_amount
// or post_payment_credit_notes_amount depending on its status", and
// Stripe's credit notes guide: "The sum of all credit notes cannot exceed
// the invoice's total amount." The invoice changes, so an event consumer
// must hear of it (invoice.updated); a voided credit note gives it back.
func TestCreditNoteChangesInvoice(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path, body string) apiResp {
		t.Helper()
		return mustOK(t, do(t, "POST", base+path, "sk_test_x", body))
	}
	invoiceOf := func(cus string) string {
		post("/v1/invoiceitems", "customer="+cus+"&amount=500&currency=usd")
		inv := idOfResp(post("/v1/invoices", "customer="+cus+"&collection_method=send_invoice&days_until_due=5&pending_invoice_items_behavior=include"))
		post("/v1/invoices/"+inv+"/finalize", "")
		return inv
	}
	num := func(r apiResp, f string) int64 { v, _ := r.body[f].(float64); return int64(v) }
	updates := func(inv string) int {
		t.Helper()
		l := mustOK(t, do(t, "GET", base+"/v1/events?type=invoice.updated", "sk_test_x", ""))
		n := 0
		for _, x := range l.body["data"].([]any) {
			o := x.(map[string]any)["data"].(map[string]any)["object"].(map[string]any)
			if o["id"] == inv {
				n++
			}
		}
		return n
	}
	cus := idOfResp(post("/v1/customers", "name=a"))

	open := invoiceOf(cus)
	before := updates(open)
	cn := idOfResp(post("/v1/credit_notes", "invoice="+open+"&amount=200"))
	got := mustOK(t, do(t, "GET", base+"/v1/invoices/"+open, "sk_test_x", ""))
	if num(got, "amount_due") != 300 || num(got, "amount_remaining") != 300 || num(got, "pre_payment_credit_notes_amount") != 200 {
		t.Errorf("open invoice after a credit note of 200 (of 500): %s", got.raw)
	}
	if updates(open) != before+1 {
		t.Errorf("no invoice.updated for the credited invoice")
	}
	if r := do(t, "POST", base+"/v1/credit_notes", "sk_test_x", "invoice="+open+"&amount=301"); r.status != 400 {
		t.Errorf("credit notes beyond the invoice's total: %d %s", r.status, r.raw)
	}
	post("/v1/credit_notes/"+cn+"/void", "")
	got = mustOK(t, do(t, "GET", base+"/v1/invoices/"+open, "sk_test_x", ""))
	if num(got, "amount_due") != 500 || num(got, "pre_payment_credit_notes_amount") != 0 {
		t.Errorf("open invoice after its credit note was voided: %s", got.raw)
	}

	paid := invoiceOf(cus)
	post("/v1/invoices/"+paid+"/pay", "paid_out_of_band=true")
	post("/v1/credit_notes", "invoice="+paid+"&amount=100&out_of_band_amount=100")
	got = mustOK(t, do(t, "GET", base+"/v1/invoices/"+paid, "sk_test_x", ""))
	if num(got, "post_payment_credit_notes_amount") != 100 || num(got, "amount_due") != 500 {
		t.Errorf("paid invoice after a credit note of 100: %s", got.raw)
	}
}

// creditNoteSetup is an emulator, a post helper and a customer
// with a saved card as its default.
func creditNoteSetup(t *testing.T, customer url.Values) (post func(path string, q url.Values) apiResp, get func(path string) apiResp, cus string) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post = func(path string, q url.Values) apiResp {
		t.Helper()
		return mustOK(t, do(t, "POST", base+path, "sk_test_x", q.Encode()))
	}
	get = func(path string) apiResp {
		t.Helper()
		return mustOK(t, do(t, "GET", base+path, "sk_test_x", ""))
	}
	cus = idOfResp(post("/v1/customers", customer))
	pm := emulatortest.Card(func(path string, q url.Values) string { return idOfResp(post(path, q)) }, cus, "pm_card_visa")
	post("/v1/customers/"+cus, url.Values{"invoice_settings[default_payment_method]": {pm}})
	return post, get, cus
}

// openInvoice500 is an open charge_automatically invoice of 500.
func openInvoice500(post func(string, url.Values) apiResp, cus string) string {
	post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"500"}, "currency": {"usd"}})
	inv := idOfResp(post("/v1/invoices", url.Values{"customer": {cus}, "auto_advance": {"false"}, "pending_invoice_items_behavior": {"include"}}))
	post("/v1/invoices/"+inv+"/finalize", nil)
	return inv
}

// TestCreditedInvoiceChargesAmountDue: a credit note of 200 on an
// open invoice of 500 leaves 300 due; paying the invoice charges 300,
// its amount_paid, not the 500 its payment intent was made for at
// finalization (before, the charge was 500 and amount_paid 300).
func TestCreditedInvoiceChargesAmountDue(t *testing.T) {
	post, get, cus := creditNoteSetup(t, url.Values{"name": {"a"}})
	inv := openInvoice500(post, cus)
	post("/v1/credit_notes", url.Values{"invoice": {inv}, "amount": {"200"}})
	paid := post("/v1/invoices/"+inv+"/pay", nil).body
	ch, _ := paid["charge"].(string)
	if paid["status"] != "paid" || ch == "" {
		t.Fatalf("paid invoice: %v charge %v", paid["status"], paid["charge"])
	}
	charge := get("/v1/charges/" + ch).body
	pi := get("/v1/payment_intents/" + paid["payment_intent"].(string)).body
	if num(paid["amount_paid"]) != 300 || num(charge["amount"]) != 300 || num(pi["amount_received"]) != 300 {
		t.Errorf("invoice amount_paid %v, charge %v, payment intent received %v: want 300 each",
			paid["amount_paid"], charge["amount"], pi["amount_received"])
	}
}

// TestVoidedCreditNoteGivesBackWhatItTook: a customer's credit of
// 300 leaves 200 due of an invoice of 500; a credit note of 250 takes
// that to 0 (not below), and its void gives back the 200, not 250
// (before, amount_due became 250, more than was ever due).
func TestVoidedCreditNoteGivesBackWhatItTook(t *testing.T) {
	post, get, cus := creditNoteSetup(t, url.Values{"name": {"a"}, "balance": {"-300"}})
	inv := openInvoice500(post, cus)
	if got := get("/v1/invoices/" + inv).body; num(got["amount_due"]) != 200 {
		t.Fatalf("after the customer's credit: amount_due %v, want 200", got["amount_due"])
	}
	cn := idOfResp(post("/v1/credit_notes", url.Values{"invoice": {inv}, "amount": {"250"}}))
	if got := get("/v1/invoices/" + inv).body; num(got["amount_due"]) != 0 || num(got["amount_remaining"]) != 0 {
		t.Fatalf("after a credit note of 250: amount_due %v remaining %v, want 0", got["amount_due"], got["amount_remaining"])
	}
	post("/v1/credit_notes/"+cn+"/void", nil)
	got := get("/v1/invoices/" + inv).body
	if num(got["amount_due"]) != 200 || num(got["amount_remaining"]) != 200 || num(got["pre_payment_credit_notes_amount"]) != 0 {
		t.Errorf("after the void: amount_due %v remaining %v credited %v, want 200 200 0",
			got["amount_due"], got["amount_remaining"], got["pre_payment_credit_notes_amount"])
	}
}
