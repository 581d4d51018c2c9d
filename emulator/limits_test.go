package emulator_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// Refusals Stripe makes that the spec alone does not tell (limits, required
// values, recurring prices, all-or-nothing updates).

// form builds a form body from key/value pairs (keys may repeat).
func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func mustID(t *testing.T, r apiResp) string {
	t.Helper()
	return idOfResp(mustOK(t, r))
}

func wantErr(t *testing.T, r apiResp, status int, code, param string) {
	t.Helper()
	if r.status != status || errField(r, "type") != "invalid_request_error" || errField(r, "code") != code || errField(r, "param") != param {
		t.Fatalf("got %d %s; want %d code %q param %q", r.status, r.raw, status, code, param)
	}
}

// TestMetadataLimits: Stripe allows 50 metadata keys per object,
// keys up to 40 characters without square brackets and values up to 500
// characters (https://docs.stripe.com/api/metadata); beyond that the
// request is refused (400, param metadata) and nothing changes.
func TestMetadataLimits(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"

	wantErr(t, do(t, "POST", base+"/v1/customers", key, form(metadataKeys(0, 51)...)), 400, "", "metadata")
	wantErr(t, do(t, "POST", base+"/v1/customers", key, form("metadata["+strings.Repeat("a", 41)+"]", "v")), 400, "", "metadata")
	wantErr(t, do(t, "POST", base+"/v1/customers", key, form("metadata[k]", strings.Repeat("é", 501))), 400, "", "metadata")
	wantErr(t, do(t, "POST", base+"/v1/customers", key, form("metadata[a[b]]", "v")), 400, "", "metadata")
	// Nested metadata hashes have the same limits.
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p")))
	wantErr(t, do(t, "POST", base+"/v1/prices", key, form("product_data[name]", "x", "product_data[metadata][k]", strings.Repeat("v", 501), "currency", "usd", "unit_amount", "1")),
		400, "", "product_data[metadata]")
	if n := len(do(t, "GET", base+"/v1/customers", key, "").body["data"].([]any)); n != 0 {
		t.Fatalf("%d customers created by refused requests", n)
	}

	// At the limits: accepted, in characters rather than bytes.
	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, form(append(metadataKeys(0, 49),
		"metadata["+strings.Repeat("a", 40)+"]", strings.Repeat("é", 500))...)))

	// The 50 keys are the object's: an update that merges a 51st is
	// refused, one that also unsets a key is not.
	wantErr(t, do(t, "POST", base+"/v1/customers/"+cus, key, form("metadata[new]", "v")), 400, "", "metadata")
	r := do(t, "POST", base+"/v1/customers/"+cus, key, form("metadata[new]", "v", "metadata[k0]", ""))
	if md, _ := r.body["metadata"].(map[string]any); r.status != 200 || len(md) != 50 || md["new"] != "v" || md["k0"] != nil {
		t.Fatalf("update with unset: %d %.300s", r.status, r.raw)
	}
	_ = prod
}

// TestRequiredParamCannotBeUnset: an empty string is Stripe's
// "unset", which a required parameter (a product's name) can't be, on
// create or update: 400 parameter_invalid_empty. Fields that can be unset
// (a customer's email, a product's description) still can.
func TestRequiredParamCannotBeUnset(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	wantErr(t, do(t, "POST", base+"/v1/products", key, form("name", "")), 400, "parameter_invalid_empty", "name")
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p", "description", "d")))
	wantErr(t, do(t, "POST", base+"/v1/products/"+prod, key, form("name", "")), 400, "parameter_invalid_empty", "name")
	if r := do(t, "GET", base+"/v1/products/"+prod, key, ""); r.body["name"] != "p" {
		t.Fatalf("name changed by a refused update: %s", r.raw)
	}
	if r := do(t, "POST", base+"/v1/products/"+prod, key, form("description", "")); r.status != 200 || r.body["description"] != nil {
		t.Fatalf("unset description: %d %s", r.status, r.raw)
	}
	wantErr(t, do(t, "POST", base+"/v1/tax_rates", key, form("display_name", "", "inclusive", "false", "percentage", "5")), 400, "parameter_invalid_empty", "display_name")

	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, form("email", "a@b.c")))
	if r := do(t, "POST", base+"/v1/customers/"+cus, key, form("email", "")); r.status != 200 || r.body["email"] != nil {
		t.Fatalf("unset email: %d %s", r.status, r.raw)
	}
}

// TestSubscriptionNeedsRecurringPrice: Stripe refuses a one-time
// price on a subscription ("The price specified is set to `type=one_time`
// but this field only accepts prices with `type=recurring`.").
func TestSubscriptionNeedsRecurringPrice(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p")))
	once := mustID(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd", "unit_amount", "100")))
	monthly := mustID(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd", "unit_amount", "100", "recurring[interval]", "month")))
	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, ""))

	wantErr(t, do(t, "POST", base+"/v1/subscriptions", key, form("customer", cus, "items[0][price]", once,
		"collection_method", "send_invoice", "days_until_due", "3")), 400, "", "items[0][price]")
	if r := do(t, "GET", base+"/v1/subscriptions?status=all", key, ""); len(r.body["data"].([]any)) != 0 {
		t.Fatalf("subscription created with a one-time price: %s", r.raw)
	}
	sub := mustID(t, do(t, "POST", base+"/v1/subscriptions", key, form("customer", cus, "items[0][price]", monthly,
		"collection_method", "send_invoice", "days_until_due", "3")))
	wantErr(t, do(t, "POST", base+"/v1/subscription_items", key, form("subscription", sub, "price", once)), 400, "", "price")
	wantErr(t, do(t, "POST", base+"/v1/subscriptions/"+sub, key, form("items[0][price]", once)), 400, "", "items[0][price]")
}

// TestRefusedSubscriptionUpdateChangesNothing: a subscription update
// whose items[1] is refused must not have applied items[0] (Stripe checks
// the whole request first); before the fix items[0] was stored as a new
// subscription item that no event announced.
func TestRefusedSubscriptionUpdateChangesNothing(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p")))
	p1 := mustID(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd", "unit_amount", "100", "recurring[interval]", "month")))
	p2 := mustID(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd", "unit_amount", "200", "recurring[interval]", "month")))
	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, ""))
	sub := mustID(t, do(t, "POST", base+"/v1/subscriptions", key, form("customer", cus, "items[0][price]", p1,
		"collection_method", "send_invoice", "days_until_due", "3")))
	item := do(t, "GET", base+"/v1/subscription_items?subscription="+sub, key, "").body["data"].([]any)[0].(map[string]any)["id"].(string)

	for _, body := range []string{
		form("items[0][price]", p2, "items[1][price]", "price_missing"),
		form("items[0][id]", item, "items[0][deleted]", "true", "items[1][id]", "si_missing"),
		form("items[0][id]", item, "items[0][quantity]", "5", "items[1][price]", "price_missing"),
	} {
		r := do(t, "POST", base+"/v1/subscriptions/"+sub, key, body)
		if r.status != 400 {
			t.Fatalf("update %s: %d %s", body, r.status, r.raw)
		}
		items := do(t, "GET", base+"/v1/subscription_items?subscription="+sub, key, "").body["data"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["id"] != item || fmt.Sprint(items[0].(map[string]any)["quantity"]) != "1" {
			t.Fatalf("after refused update %s: items %v", body, items)
		}
	}
}

// TestEventsTypeOrTypes: /v1/events takes `type` or `types`, "but
// not both" (the spec's description of `types`); the emulator used to
// apply both filters as one.
func TestEventsTypeOrTypes(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	mustID(t, do(t, "POST", base+"/v1/customers", key, ""))
	wantErr(t, do(t, "GET", base+"/v1/events?type=customer.created&types[]=customer.updated", key, ""), 400, "", "types")
	for _, q := range []string{"type=customer.*", "types[]=customer.created&types[]=customer.updated"} {
		if r := do(t, "GET", base+"/v1/events?"+q, key, ""); r.status != 200 || len(r.body["data"].([]any)) != 1 {
			t.Fatalf("%s: %d %s", q, r.status, r.raw)
		}
	}
}

// Amounts Stripe refuses: a negative price ("a positive integer in cents,
// or 0 for a free price"), and a payment below the currency's minimum
// charge ($0.50, £0.30: "Minimum and maximum charge amounts").
func TestAmountBounds(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	prod := mustID(t, do(t, "POST", base+"/v1/products", "sk_test_x", "name=p"))
	wantErr(t, do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+prod+"&currency=usd&unit_amount=-5"), 400, "", "unit_amount")
	mustID(t, do(t, "POST", base+"/v1/prices", "sk_test_x", "product="+prod+"&currency=usd&unit_amount=0"))
	wantErr(t, do(t, "POST", base+"/v1/plans", "sk_test_x", "product="+prod+"&currency=usd&interval=month&amount=-1"), 400, "", "amount")
	for _, tc := range []struct {
		path, body, code string
	}{
		{"/v1/payment_intents", "amount=49&currency=usd", "amount_too_small"},
		{"/v1/payment_intents", "amount=29&currency=gbp", "amount_too_small"},
		{"/v1/payment_intents", "amount=0&currency=usd", ""},
		{"/v1/charges", "amount=10&currency=eur&source=tok_visa", "amount_too_small"},
	} {
		wantErr(t, do(t, "POST", base+tc.path, "sk_test_x", tc.body), 400, tc.code, "amount")
	}
	mustID(t, do(t, "POST", base+"/v1/payment_intents", "sk_test_x", "amount=30&currency=gbp"))
}

// TestRefusedAmountCreatesNoProduct: a price or plan refused for its
// negative amount changes nothing, not even the product it would have
// created inline (product_data, product[name]).
func TestRefusedAmountCreatesNoProduct(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	wantErr(t, do(t, "POST", base+"/v1/prices", key, form("product_data[name]", "leak", "currency", "usd", "unit_amount", "-5")), 400, "", "unit_amount")
	wantErr(t, do(t, "POST", base+"/v1/plans", key, form("product[name]", "leak", "currency", "usd", "interval", "month", "amount", "-1")), 400, "", "amount")
	if r := do(t, "GET", base+"/v1/products", key, ""); len(r.body["data"].([]any)) != 0 {
		t.Fatalf("refused requests created products: %.300s", r.raw)
	}
	if r := do(t, "GET", base+"/v1/events", key, ""); len(r.body["data"].([]any)) != 0 {
		t.Fatalf("refused requests emitted events: %.300s", r.raw)
	}
}

// TestMetadataLimitMessages: the metadata refusals carry Stripe's
// shape (400 invalid_request_error, param the metadata hash) and its
// messages: "Invalid key: <key> must be a string under 40 characters" and
// "Invalid val: <value> must be a string under 500 characters" (Stripe's
// templates, github.com/stripe/stripe-php/issues/246), and for the keys
// "Metadata can have up to 50 keys, but you've set 51. Email us at
// support+metadata@stripe.com for more information."
// (github.com/FlowFuse/flowfuse/issues/1948), counting the keys the
// object would have, also after an update merges. A cut long value stays
// valid UTF-8.
func TestMetadataLimitMessages(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	tooMany := func(n int) string {
		return fmt.Sprintf("Metadata can have up to 50 keys, but you've set %d. Email us at support+metadata@stripe.com for more information.", n)
	}
	long := strings.Repeat("a", 41)
	for _, c := range []struct {
		name, body, msg string
	}{
		{"51 keys", form(metadataKeys(0, 51)...), tooMany(51)},
		// An emptied key unsets, so it doesn't count.
		{"52 keys, one empty", form(append(metadataKeys(0, 51), "metadata[x]", "")...), tooMany(51)},
		{"41-character key", form("metadata["+long+"]", "v"), "Invalid key: " + long + " must be a string under 40 characters"},
		{"bracket in key", form("metadata[a[b]]", "v"), ""},
		// The message quotes the value's first 40 bytes, here in the
		// middle of an é: cut before it.
		{"501-character value", form("metadata[k]", "x"+strings.Repeat("é", 500)), "Invalid val: x" + strings.Repeat("é", 19) + "... must be a string under 500 characters"},
	} {
		r := do(t, "POST", base+"/v1/customers", key, c.body)
		wantErr(t, r, 400, "", "metadata")
		if c.msg != "" && errField(r, "message") != c.msg {
			t.Errorf("%s: message %q, want %q", c.name, errField(r, "message"), c.msg)
		}
	}
	nested := []string{"product_data[name]", "x", "currency", "usd", "unit_amount", "1"}
	for i := 0; i < 51; i++ {
		nested = append(nested, fmt.Sprintf("product_data[metadata][k%d]", i), "v")
	}
	r := do(t, "POST", base+"/v1/prices", key, form(nested...))
	wantErr(t, r, 400, "", "product_data[metadata]")
	if errField(r, "message") != tooMany(51) {
		t.Errorf("nested: message %q", errField(r, "message"))
	}

	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, form(metadataKeys(0, 50)...)))
	r = do(t, "POST", base+"/v1/customers/"+cus, key, form("metadata[new]", "v", "metadata[k1]", "w"))
	wantErr(t, r, 400, "", "metadata")
	if errField(r, "message") != tooMany(51) {
		t.Errorf("merged update: message %q, want %q", errField(r, "message"), tooMany(51))
	}
	if md := do(t, "GET", base+"/v1/customers/"+cus, key, "").body["metadata"].(map[string]any); len(md) != 50 || md["k1"] != "v" {
		t.Fatalf("refused update changed metadata: %v", md)
	}
}

// TestItemMetadataLimitOnSubscriptionUpdate: a subscription
// update merges items[n][metadata] into the item's metadata, which
// Stripe holds to 50 keys as any object's: a 51st key is refused (400,
// naming the item's hash) and changes nothing; one that also unsets a
// key is applied.
func TestItemMetadataLimitOnSubscriptionUpdate(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, form("email", "a@b.co")))
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p")))
	price := mustID(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd", "unit_amount", "100", "recurring[interval]", "month")))
	kv := []string{"customer", cus, "collection_method", "send_invoice", "days_until_due", "7", "items[0][price]", price}
	for i := range 50 {
		kv = append(kv, fmt.Sprintf("items[0][metadata][k%d]", i), "v")
	}
	sub := mustOK(t, do(t, "POST", base+"/v1/subscriptions", key, form(kv...)))
	item := sub.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
	subID := idOfResp(sub)

	wantErr(t, do(t, "POST", base+"/v1/subscriptions/"+subID, key, form("items[0][id]", item, "items[0][metadata][new]", "v")), 400, "", "items[0][metadata]")
	md := mustOK(t, do(t, "GET", base+"/v1/subscription_items/"+item, key, "")).body["metadata"].(map[string]any)
	if len(md) != 50 || md["new"] != nil {
		t.Fatalf("item metadata after a refused update: %d keys", len(md))
	}
	mustOK(t, do(t, "POST", base+"/v1/subscriptions/"+subID, key, form("items[0][id]", item, "items[0][metadata][k0]", "", "items[0][metadata][new]", "v")))
	md = mustOK(t, do(t, "GET", base+"/v1/subscription_items/"+item, key, "")).body["metadata"].(map[string]any)
	if len(md) != 50 || md["new"] != "v" || md["k0"] != nil {
		t.Fatalf("item metadata after one out, one in: %d keys %v", len(md), md)
	}
}

// metadataKeys is the form of n metadata keys k<from>… set to "v".
func metadataKeys(from, n int) []string {
	var kv []string
	for i := from; i < from+n; i++ {
		kv = append(kv, fmt.Sprintf("metadata[k%d]", i), "v")
	}
	return kv
}

// TestMergedMetadataLimitOnOtherUpdates: Stripe holds every
// object's metadata to 50 keys after an update merges into it, whichever
// endpoint merges: a subscription item's own update, a charge's update
// and a payment intent's capture (which takes metadata) refuse a 51st
// key (400, param metadata) and change nothing; one key out and one in
// is applied.
func TestMergedMetadataLimitOnOtherUpdates(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{RateLimit: -1})
	const key = "sk_test_x"
	fifty := func(prefix string, kv ...string) string {
		for i := range 50 {
			kv = append(kv, fmt.Sprintf("%s[k%d]", prefix, i), "v")
		}
		return form(kv...)
	}
	cus := mustID(t, do(t, "POST", base+"/v1/customers", key, form("email", "a@b.co")))
	prod := mustID(t, do(t, "POST", base+"/v1/products", key, form("name", "p")))
	price := mustID(t, do(t, "POST", base+"/v1/prices", key, form("product", prod, "currency", "usd", "unit_amount", "100", "recurring[interval]", "month")))
	sub := mustOK(t, do(t, "POST", base+"/v1/subscriptions", key, fifty("items[0][metadata]",
		"customer", cus, "collection_method", "send_invoice", "days_until_due", "7", "items[0][price]", price)))
	item := sub.body["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["id"].(string)
	charge := mustID(t, do(t, "POST", base+"/v1/charges", key, fifty("metadata", "amount", "700", "currency", "usd", "source", "tok_visa")))
	pi := mustID(t, do(t, "POST", base+"/v1/payment_intents", key, fifty("metadata",
		"amount", "2000", "currency", "usd", "payment_method", "pm_card_visa", "capture_method", "manual", "confirm", "true")))

	for _, c := range []struct{ name, path, get string }{
		{"subscription item update", "/v1/subscription_items/" + item, "/v1/subscription_items/" + item},
		{"charge update", "/v1/charges/" + charge, "/v1/charges/" + charge},
		{"payment intent capture", "/v1/payment_intents/" + pi + "/capture", "/v1/payment_intents/" + pi},
	} {
		r := do(t, "POST", base+c.path, key, form("metadata[new]", "v"))
		if r.status != 400 || errField(r, "param") != "metadata" {
			t.Errorf("%s with a 51st key: %d %s, want 400 naming metadata", c.name, r.status, r.raw)
		}
		md := mustOK(t, do(t, "GET", base+c.get, key, "")).body["metadata"].(map[string]any)
		if len(md) != 50 || md["new"] != nil {
			t.Errorf("%s: metadata after a refused update has %d keys (new: %v)", c.name, len(md), md["new"])
		}
	}
	// One out, one in fits, on the endpoints that can be called again.
	for _, path := range []string{"/v1/subscription_items/" + item, "/v1/charges/" + charge} {
		md := mustOK(t, do(t, "POST", base+path, key, form("metadata[k0]", "", "metadata[new]", "v"))).body["metadata"].(map[string]any)
		if len(md) != 50 || md["new"] != "v" || md["k0"] != nil {
			t.Errorf("%s one out, one in: %d keys", path, len(md))
		}
	}
}
