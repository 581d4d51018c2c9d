package translate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// ourBody is the request body pgstripe sends for the jsonb value js (as
// Postgres hands it back) given to the parameter name of a create: the
// encoder, then the layout stripeapi puts on the wire.
func ourBody(t *testing.T, name, js string) string {
	t.Helper()
	params := url.Values{}
	encodeCreate(params, name, decodeJSON(t, js))
	return stripeapi.Form(params).Encode()
}

func decodeJSON(t *testing.T, js string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(js))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// stripeGoBody is what stripe-go v76's own encoder makes of params.
func stripeGoBody(params any) string {
	fv := &form.Values{}
	form.AppendTo(fv, params)
	return fv.Encode()
}

// highPrecision is how stripe-go declares a decimal parameter
// (PriceParams.UnitAmountDecimal): shortest exact formatting.
type highPrecision struct {
	D *float64 `form:"d,high_precision"`
}

// lowPrecision is how stripe-go declares other float parameters
// (CouponParams.PercentOff): four decimal places.
type lowPrecision struct {
	D *float64 `form:"d"`
}

// TestFormMatchesStripeGo compares, body for body, what pgstripe
// sends for a jsonb value with what stripe-go sends for the same logical
// params. stripe-go's encoder writes a map's keys sorted and an array's
// elements in index order; stripeapi.Form lays pgstripe's keys out the
// same way, so the bodies are compared as bytes, order included. The
// cases where the two differ on purpose are in
// TestFormDeviatesFromStripeGo.
func TestFormMatchesStripeGo(t *testing.T) {
	twelve := make([]string, 12)
	for i := range twelve {
		twelve[i] = fmt.Sprintf("v%d", i)
	}
	twelveJSON, _ := json.Marshal(twelve)
	for _, c := range []struct {
		name string
		js   string // the value of parameter p, as jsonb text
		sg   any    // stripe-go's params for the same thing
	}{
		{"nested hashes", `{"address": {"city": "Paris", "line1": "1 rue"}, "name": "x"}`,
			map[string]any{"address": map[string]any{"city": "Paris", "line1": "1 rue"}, "name": "x"}},
		{"array of hashes", `[{"price": "price_1", "quantity": 2}, {"price": "price_2", "metadata": {"k": "v"}}]`,
			[]map[string]any{{"price": "price_1", "quantity": int64(2)}, {"price": "price_2", "metadata": map[string]string{"k": "v"}}}},
		{"array of scalars", `["fr", "en"]`, []string{"fr", "en"}},
		// items[10] after items[9], as stripe-go sends them, not after
		// items[1] as a plain sort of the keys would.
		{"twelve elements in index order", string(twelveJSON), twelve},
		{"array of hashes past ten", `[{"a": "0"}, {"a": "1"}, {"a": "2"}, {"a": "3"}, {"a": "4"}, {"a": "5"}, {"a": "6"}, {"a": "7"}, {"a": "8"}, {"a": "9"}, {"a": "10", "b": "x"}]`,
			[]map[string]string{{"a": "0"}, {"a": "1"}, {"a": "2"}, {"a": "3"}, {"a": "4"}, {"a": "5"}, {"a": "6"}, {"a": "7"}, {"a": "8"}, {"a": "9"}, {"a": "10", "b": "x"}}},
		{"empty string unsets a key", `{"a": "", "b": "2"}`, map[string]string{"a": "", "b": "2"}},
		{"booleans", `{"off": false, "on": true}`, map[string]any{"off": false, "on": true}},
		{"integers past 2^53 and negative", `{"big": 9007199254740993, "max": 9223372036854775807, "neg": -42, "zero": 0}`,
			map[string]any{"big": int64(9007199254740993), "max": int64(9223372036854775807), "neg": int64(-42), "zero": int64(0)}},
		{"unicode and reserved characters", `{"ключ 😀": "Zürich & a=b [x] 1+1 100% é", "q": "?#/\\\"'"}`,
			map[string]string{"ключ 😀": "Zürich & a=b [x] 1+1 100% é", "q": "?#/\\\"'"}},
		{"empty object sends nothing", `{"a": {}, "b": "1"}`, map[string]any{"a": map[string]string{}, "b": "1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ourBody(t, "p", c.js)
			want := stripeGoBody(map[string]any{"p": c.sg})
			if got != want {
				t.Errorf("%s:\n ours:      %s\n stripe-go: %s", c.js, got, want)
			}
		})
	}

	// Decimals: jsonb keeps a number exactly as Postgres prints it
	// (never with an exponent: 1e21 is 1000000000000000000000, 1.5e-7
	// is 0.00000015), which is what stripe-go's high_precision
	// formatting gives too.
	for _, c := range []struct {
		pg string // how Postgres hands the number back from jsonb
		f  float64
	}{
		{"0.1", 0.1}, {"1000000000000000000000", 1e21}, {"0.00000015", 1.5e-7}, {"-2.5", -2.5}, {"12", 12},
	} {
		f := c.f
		if got, want := ourBody(t, "d", c.pg), stripeGoBody(highPrecision{&f}); got != want {
			t.Errorf("%s: ours %s, stripe-go %s", c.pg, got, want)
		}
	}

	// A real stripe-go params type, field order aside (a struct's fields
	// are written in declaration order, ours sorted): the same pairs.
	sp := &stripe.SubscriptionParams{
		Items: []*stripe.SubscriptionItemsParams{
			{Price: stripe.String("price_1"), Quantity: stripe.Int64(2)},
			{Price: stripe.String("price_2"), Metadata: map[string]string{"k": "v w"}},
		},
	}
	got := pairs(ourBody(t, "items", `[{"price": "price_1", "quantity": 2}, {"metadata": {"k": "v w"}, "price": "price_2"}]`))
	if want := pairs(stripeGoBody(sp)); got != want {
		t.Errorf("subscription items:\n ours:      %s\n stripe-go: %s", got, want)
	}
}

// pairs is a body's key=value pairs, sorted.
func pairs(body string) string {
	p := strings.Split(body, "&")
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j] < p[j-1]; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
	return strings.Join(p, "&")
}

// TestFormDeviatesFromStripeGo pins down where pgstripe sends
// something else than stripe-go, and why that is right for a SQL write.
func TestFormDeviatesFromStripeGo(t *testing.T) {
	// stripe-go writes a float without high_precision with four decimal
	// places: 1.5e-7 becomes 0.0000. jsonb has the exact decimal, and
	// pgstripe sends it as it is.
	f := 1.5e-7
	if got := stripeGoBody(lowPrecision{&f}); got != "d=0.0000" {
		t.Errorf("stripe-go's plain float: %s", got)
	}
	if got := ourBody(t, "d", "0.00000015"); got != "d=0.00000015" {
		t.Errorf("ours: %s", got)
	}

	// An empty array given to a create: stripe-go sends p= (Stripe's
	// "empty") whatever the parameter; encodeCreate sends nothing, and
	// checkValue decides beforehand from the spec: p= where the parameter
	// takes "", left out where that means the same, refused elsewhere
	// (TestEmptyArrays). p= is refused for an array parameter that
	// can't be unset (preferred_locales, items, tax_id_data …).
	if got := stripeGoBody(map[string]any{"p": []string{}}); got != "p=" {
		t.Errorf("stripe-go's empty array: %s", got)
	}
	if got := ourBody(t, "p", `[]`); got != "" {
		t.Errorf("ours for an empty array on create: %q", got)
	}
	// On an update the two agree: p= empties the array.
	params := url.Values{}
	encodeUpdate(params, "p", []any{"x"}, []any{}, true)
	if got, want := stripeapi.Form(params).Encode(), stripeGoBody(map[string]any{"p": []string{}}); got != want {
		t.Errorf("empty array on update: ours %s, stripe-go %s", got, want)
	}

	// A nil element: stripe-go leaves a gap in the indices
	// (items[1][price] with no items[0]); pgstripe refuses the value
	// (TestUnencodableRefused).
	gap := stripeGoBody(&stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{nil, {Price: stripe.String("price_2")}}})
	if gap != "items[1][price]=price_2" {
		t.Errorf("stripe-go with a nil element: %s", gap)
	}
	if key, _, _ := unencodable("items", decodeJSON(t, `[null, {"price": "price_2"}]`)); key != "items[0]" {
		t.Errorf("unencodable found %q, want items[0]", key)
	}
}

// oneBody returns the form body of calls, which must be a single call.
func oneBody(t *testing.T, calls []RowCalls) string {
	t.Helper()
	if len(calls) != 1 || len(calls[0].Calls) != 1 {
		t.Fatalf("calls %v", calls)
	}
	return stripeapi.Form(calls[0].Calls[0].Params).Encode()
}

// build classifies sql and builds rows (JSON arrays as in the golden
// files: the id first for UPDATE, then each value, null for NULL).
func build(t *testing.T, sql string, rows ...string) ([]RowCalls, *Error) {
	t.Helper()
	return buildStored(t, nil, sql, rows...)
}

// buildStored is build with the stored copies of objects (see Objects).
func buildStored(t *testing.T, stored Stored, sql string, rows ...string) ([]RowCalls, *Error) {
	t.Helper()
	cl := Classify(sql)
	if cl.Action != Write || cl.Stmt == nil || cl.Stmt.Deferred != nil {
		t.Fatalf("%s: %+v", sql, cl)
	}
	st := cl.Stmt
	var in [][][]byte
	for _, r := range rows {
		var vals []json.RawMessage
		if err := json.Unmarshal([]byte(r), &vals); err != nil {
			t.Fatalf("row %s: %v", r, err)
		}
		var row [][]byte
		for i, v := range vals {
			switch {
			case string(v) == "null":
				row = append(row, nil)
			case i == 0 && st.Op != Insert:
				var id string
				json.Unmarshal(v, &id)
				row = append(row, []byte(id))
				if st.Op == Update {
					row = append(row, []byte("1700000000000000"))
				}
			default:
				row = append(row, bytes.Clone(v))
			}
		}
		in = append(in, row)
	}
	return st.BuildStored(NewRows(in), stored)
}

// TestUnencodableRefused: a value the form encoding can't carry as
// written is refused with 22023, naming the column and the element, before
// any call of the statement (Build returns no calls at all).
func TestUnencodableRefused(t *testing.T) {
	for _, c := range []struct {
		name, sql string
		rows      []string
		want      []string // in the message
	}{
		{"null element on insert", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', '[null, {"price": "price_2"}]')`,
			[]string{`["cus_1", [null, {"price": "price_2"}]]`}, []string{"items of stripe.subscriptions", "null element", "items[0]"}},
		{"trailing null element", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', '[{"price": "price_1"}, null]')`,
			[]string{`["cus_1", [{"price": "price_1"}, null]]`}, []string{"items[1]"}},
		{"empty object element", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', '[{}, {"price": "price_2"}]')`,
			[]string{`["cus_1", [{}, {"price": "price_2"}]]`}, []string{"nothing to send ({})", "items[0]"}},
		{"element of nulls", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', '[{"price": "price_1"}, {"price": null}]')`,
			[]string{`["cus_1", [{"price": "price_1"}, {"price": null}]]`}, []string{"items[1]"}},
		{"nested null element", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', '[{"price": "price_1", "tax_rates": ["txr_1", null]}]')`,
			[]string{`["cus_1", [{"price": "price_1", "tax_rates": ["txr_1", null]}]]`}, []string{"items[0][tax_rates][1]"}},
		{"array of arrays", `INSERT INTO stripe.customers (email, preferred_locales) VALUES ('a@b.co', '[["en"]]')`,
			[]string{`["a@b.co", [["en"]]]`}, []string{"preferred_locales of stripe.customers", "array inside an array", "preferred_locales[0]"}},
		{"in _params", `INSERT INTO stripe.subscriptions (customer, items, _params) VALUES ('cus_1', '[{"price": "price_1"}]', '{"add_invoice_items": [{"price": "price_9"}, {}]}')`,
			[]string{`["cus_1", [{"price": "price_1"}], {"add_invoice_items": [{"price": "price_9"}, {}]}]`}, []string{`_params key "add_invoice_items"`, "add_invoice_items[1]"}},
		{"null element on update", `UPDATE stripe.subscriptions SET items = '[null, {"price": "price_2"}]' WHERE id = 'sub_1'`,
			[]string{`["sub_1", [null, {"price": "price_2"}], {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "price": {"id": "price_1", "object": "price"}, "quantity": 1}]}]`},
			[]string{"items of stripe.subscriptions", "items[0]"}},
		{"null in a list read back", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,1}', 'null') WHERE id = 'sub_1'`,
			[]string{`["sub_1", {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "quantity": 1}, null]}, {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "quantity": 1}]}]`},
			[]string{"items[1]"}},
		{"nested null on update of an object", `UPDATE stripe.customers SET invoice_settings = '{"custom_fields": [null]}' WHERE id = 'cus_1'`,
			[]string{`["cus_1", {"custom_fields": [null]}, {"custom_fields": null}]`}, []string{"invoice_settings[custom_fields][0]"}},
		{"second row of two", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', '[{"price": "price_1"}]'), ('cus_2', '[null]')`,
			[]string{`["cus_1", [{"price": "price_1"}]]`, `["cus_2", [null]]`}, []string{"items[0]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls, err := build(t, c.sql, c.rows...)
			if err == nil {
				t.Fatalf("built %v, want 22023", calls)
			}
			if err.Code != CodeInvalidParameterValue || calls != nil {
				t.Fatalf("%v, %d calls; want 22023 and no calls", err, len(calls))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Message, w) {
					t.Errorf("message %q lacks %q", err.Message, w)
				}
			}
			if len(c.rows) > 1 && !strings.Contains(err.Detail, "in row 2 of 2") {
				t.Errorf("detail %q names no row", err.Detail)
			}
		})
	}

	// What stays allowed is sent as before: elements with something in
	// them, null keys inside an element; an empty array for a parameter
	// that takes "" is sent as "" (TestEmptyArrays).
	calls, err := build(t, `INSERT INTO stripe.subscriptions (customer, items, default_tax_rates) VALUES ('cus_1', '[{"price": "price_1", "quantity": null}, {"price": "price_2"}]', '[]')`,
		`["cus_1", [{"price": "price_1", "quantity": null}, {"price": "price_2"}], []]`)
	if err != nil {
		t.Fatal(err)
	}
	got := stripeapi.Form(calls[0].Calls[0].Params).Encode()
	if want := "customer=cus_1&default_tax_rates=&items[0][price]=price_1&items[1][price]=price_2"; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
}

// TestIntegerParams: a number with a fraction for a parameter
// Stripe takes only as an integer is refused; one whose fraction is zero
// is sent as the integer.
func TestIntegerParams(t *testing.T) {
	const sql = `INSERT INTO stripe.payment_intents (amount, currency, _params) VALUES (100, 'usd', $1)`
	for _, c := range []struct {
		params string
		want   string // the body's application_fee_amount, or "" for a refusal
	}{
		{`{"application_fee_amount": 12}`, "12"},
		{`{"application_fee_amount": 12.00}`, "12"},
		{`{"application_fee_amount": -3.0}`, "-3"},
		{`{"application_fee_amount": 12.5}`, ""},
		{`{"application_fee_amount": 0.00000015}`, ""},
	} {
		calls, err := build(t, sql, `[100, "usd", `+c.params+`]`)
		if c.want == "" {
			if err == nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "integer") || !strings.Contains(err.Message, "application_fee_amount") {
				t.Errorf("%s: %v, want 22023 asking for an integer", c.params, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.params, err)
			continue
		}
		if got := calls[0].Calls[0].Params.Get("application_fee_amount"); got != c.want {
			t.Errorf("%s: sent %q, want %q", c.params, got, c.want)
		}
	}
	// A parameter that takes decimals keeps its digits.
	calls, err := build(t, `INSERT INTO stripe.coupons (duration, percent_off) VALUES ('once', 12.50)`, `["once", 12.50]`)
	if err != nil || calls[0].Calls[0].Params.Get("percent_off") != "12.50" {
		t.Errorf("percent_off: %v %v", err, calls)
	}
}

func TestIntegerText(t *testing.T) {
	for in, want := range map[string]string{
		"12": "12", "12.0": "12", "-0.0": "0", "1.2e1": "12", "1200e-2": "12", "1E+2": "100", "0.0e5": "0",
		"12.5": "", "1.25e1": "", "1e-1": "", "abc": "", "": "", "1e999": "", "-": "", "1.": "1", ".5": "",
	} {
		got, ok := integerText(in)
		if (want == "") == ok || got != want {
			t.Errorf("integerText(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestNumericNaNRefused: a numeric column holding NaN or Infinity
// (to_jsonb gives the string "NaN") is refused, not sent as percent_off=NaN.
func TestNumericNaNRefused(t *testing.T) {
	for _, v := range []string{"NaN", "Infinity", "-Infinity"} {
		_, err := build(t, `INSERT INTO stripe.coupons (duration, percent_off) VALUES ('once', $1)`, `["once", "`+v+`"]`)
		if err == nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "percent_off of stripe.coupons") {
			t.Errorf("%s: %v, want 22023", v, err)
		}
	}
}

// oldItems is subscriptions.items as read back: si_1 (quantity 1, tax rate
// txr_1) and si_2 (quantity 2, no tax rates).
const oldItems = `{"object": "list", "data": [` +
	`{"id": "si_1", "object": "subscription_item", "price": {"id": "price_1", "object": "price"}, "quantity": 1, "tax_rates": [{"id": "txr_1", "object": "tax_rate"}], "metadata": {}}, ` +
	`{"id": "si_2", "object": "subscription_item", "price": {"id": "price_2", "object": "price"}, "quantity": 2, "tax_rates": [], "metadata": {}}]}`

// TestNestedIntegers: a number with a fraction where the spec's
// parameter schema takes only an integer, inside an array element or a
// hash, is refused with 22023 naming its form key; one whose fraction is
// zero is sent as the integer. Places that take other types keep the
// number as written.
func TestNestedIntegers(t *testing.T) {
	runFormCases(t, false, []formCase{
		{"item quantity 1.5", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
			`["cus_1", [{"price": "price_1"}, {"price": "price_2", "quantity": 1.5}]]`, "",
			[]string{"items of stripe.subscriptions", "1.5", "items[1][quantity]", "integer"}},
		{"item quantity 2.0", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
			`["cus_1", [{"price": "price_1", "quantity": 2.0}, {"price": "price_2", "quantity": 3e0}]]`,
			"customer=cus_1&items[0][price]=price_1&items[0][quantity]=2&items[1][price]=price_2&items[1][quantity]=3", nil},
		{"price_data unit_amount in an item", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
			`["cus_1", [{"price_data": {"currency": "usd", "product": "prod_1", "recurring": {"interval": "month"}, "unit_amount": 999.5}}]]`, "",
			[]string{"items[0][price_data][unit_amount]"}},
		{"hash: transform_quantity.divide_by", `INSERT INTO stripe.prices (currency, product, unit_amount, transform_quantity) VALUES ('usd', 'prod_1', 100, $1)`,
			`["usd", "prod_1", 100, {"divide_by": 2.5, "round": "up"}]`, "",
			[]string{"transform_quantity of stripe.prices", "transform_quantity[divide_by]"}},
		{"tier amounts", `INSERT INTO stripe.prices (currency, product, billing_scheme, tiers) VALUES ('usd', 'prod_1', 'tiered', $1)`,
			`["usd", "prod_1", "tiered", [{"up_to": 10, "unit_amount": 5.00}, {"up_to": "inf", "unit_amount": 4}]]`,
			"billing_scheme=tiered&currency=usd&product=prod_1&tiers[0][unit_amount]=5&tiers[0][up_to]=10&tiers[1][unit_amount]=4&tiers[1][up_to]=inf", nil},
		{"decimal place keeps its digits", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
			`["cus_1", [{"price_data": {"currency": "usd", "product": "prod_1", "recurring": {"interval": "month"}, "unit_amount_decimal": "1.50"}, "metadata": {"n": 1.5}}]]`,
			"customer=cus_1&items[0][metadata][n]=1.5&items[0][price_data][currency]=usd&items[0][price_data][product]=prod_1&items[0][price_data][recurring][interval]=month&items[0][price_data][unit_amount_decimal]=1.50", nil},
		{"in _params on create", `INSERT INTO stripe.subscriptions (customer, items, _params) VALUES ('cus_1', '[{"price": "price_1"}]', $1)`,
			`["cus_1", [{"price": "price_1"}], {"add_invoice_items": [{"price": "price_9", "quantity": 0.5}]}]`, "",
			[]string{`_params key "add_invoice_items"`, "add_invoice_items[0][quantity]"}},
		{"update, array written", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "quantity": 2.5}], ` + oldItems + `]`, "",
			[]string{"items of stripe.subscriptions", "items[0][quantity]"}},
		{"update, list read back and changed", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,1,quantity}', $1) WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldItems, `"quantity": 2`, `"quantity": 7.25`, 1) + `, ` + oldItems + `]`, "",
			[]string{"items[1][quantity]"}},
		{"update, list read back, 4.0", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,1,quantity}', $1) WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldItems, `"quantity": 2`, `"quantity": 4.0`, 1) + `, ` + oldItems + `]`,
			"items[0][id]=si_2&items[0][quantity]=4", nil},
		{"update, _params", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"add_invoice_items": [{"price": "price_9", "quantity": 2.0}]}, null]`,
			"add_invoice_items[0][price]=price_9&add_invoice_items[0][quantity]=2", nil},
	})
}

// TestEmptyArrays: an empty array is sent as the spec allows it:
// as the empty string where the parameter (or the place in it) takes ""
// (Stripe's empty list, as stripe-go sends it), left out on a create
// where leaving it out means the same, and refused (22023, naming the
// key) on a create where left out it would mean Stripe's default. Before,
// every empty array on a create was left out: an item's tax_rates: []
// became the subscription's default_tax_rates.
func TestEmptyArrays(t *testing.T) {
	runFormCases(t, true, []formCase{
		{"item tax_rates on create", `INSERT INTO stripe.subscriptions (customer, items, default_tax_rates) VALUES ('cus_1', $1, '["txr_1"]')`,
			`["cus_1", [{"price": "price_1", "tax_rates": []}], ["txr_1"]]`,
			"customer=cus_1&default_tax_rates[0]=txr_1&items[0][price]=price_1&items[0][tax_rates]=", nil},
		{"an element that is only an empty tax_rates", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
			`["cus_1", [{"price": "price_1"}, {"tax_rates": []}]]`,
			"customer=cus_1&items[0][price]=price_1&items[1][tax_rates]=", nil},
		{"top level that takes \"\"", `INSERT INTO stripe.subscription_items (subscription, price, tax_rates) VALUES ('sub_1', 'price_1', '[]')`,
			`["sub_1", "price_1", []]`, "price=price_1&subscription=sub_1&tax_rates=", nil},
		{"top level, left out means none", `INSERT INTO stripe.customers (email, preferred_locales, _params) VALUES ('a@b.co', '[]', '{"expand": []}')`,
			`["a@b.co", [], {"expand": []}]`, "email=a%40b.co", nil},
		{"nested, left out means none", `INSERT INTO stripe.subscription_schedules (customer, phases) VALUES ('cus_1', $1)`,
			`["cus_1", [{"items": [{"price": "price_1", "tax_rates": []}], "add_invoice_items": [], "default_tax_rates": []}]]`,
			"customer=cus_1&phases[0][default_tax_rates]=&phases[0][items][0][price]=price_1&phases[0][items][0][tax_rates]=", nil},
		{"_params on create", `INSERT INTO stripe.subscriptions (customer, items, _params) VALUES ('cus_1', '[{"price": "price_1"}]', $1)`,
			`["cus_1", [{"price": "price_1"}], {"add_invoice_items": [{"price": "price_9", "tax_rates": []}]}]`,
			"add_invoice_items[0][price]=price_9&add_invoice_items[0][tax_rates]=&customer=cus_1&items[0][price]=price_1", nil},
		{"payment_method_types: left out is [\"card\"]", `INSERT INTO stripe.payment_intents (amount, currency, payment_method_types) VALUES (100, 'usd', '[]')`,
			`[100, "usd", []]`, "", []string{"payment_method_types of stripe.payment_intents", "empty array at payment_method_types"}},
		{"invoice item tax_rates: left out is the invoice's", `INSERT INTO stripe.invoiceitems (customer, price, tax_rates) VALUES ('cus_1', 'price_1', '[]')`,
			`["cus_1", "price_1", []]`, "", []string{"empty array at tax_rates"}},
		{"checkout line item tax_rates", `INSERT INTO stripe.checkout_sessions (mode, line_items) VALUES ('payment', $1)`,
			`["payment", [{"price": "price_1", "quantity": 1, "tax_rates": []}]]`, "", []string{"line_items[0][tax_rates]"}},
		{"coupon for no products", `INSERT INTO stripe.coupons (duration, percent_off, applies_to) VALUES ('once', 10, $1)`,
			`["once", 10, {"products": []}]`, "", []string{"applies_to of stripe.coupons", "applies_to[products]"}},
		{"where the spec has no array", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
			`["cus_1", [{"price": "price_1", "metadata": {"k": []}}]]`, "", []string{"items[0][metadata][k]"}},
		{"update: an item's tax rates emptied", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "tax_rates": []}], ` + oldItems + `]`,
			"items[0][id]=si_1&items[0][tax_rates]=", nil},
		{"update: a list read back, one item's tax rates emptied", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,tax_rates}', '[]') WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldItems, `[{"id": "txr_1", "object": "tax_rate"}]`, `[]`, 1) + `, ` + oldItems + `]`,
			"items[0][id]=si_1&items[0][tax_rates]=", nil},
		{"update: _params", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"default_tax_rates": [], "add_invoice_items": [{"price": "price_9", "tax_rates": []}]}, null]`,
			"add_invoice_items[0][price]=price_9&add_invoice_items[0][tax_rates]=&default_tax_rates=", nil},
	})
}

// formCase is a statement with its row of parameters (a JSON array) and
// what it must become.
type formCase struct {
	name, sql string
	row       string
	want      string   // the body (stripe-go's layout), or "" for a refusal
	msg       []string // in the refusal's message
}

// runFormCases builds each case: a refusal must be 22023 with no calls and
// name msg (and, with withHint, carry a detail and a hint); anything else
// must send want.
func runFormCases(t *testing.T, withHint bool, cases []formCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls, err := build(t, c.sql, c.row)
			if c.want == "" {
				if err == nil || err.Code != CodeInvalidParameterValue || calls != nil {
					t.Fatalf("%v, %v: want 22023 and no calls", calls, err)
				}
				for _, w := range c.msg {
					if !strings.Contains(err.Message, w) {
						t.Errorf("message %q lacks %q", err.Message, w)
					}
				}
				if withHint && (err.Hint == "" || err.Detail == "") {
					t.Errorf("no detail or hint: %+v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := oneBody(t, calls); got != c.want {
				t.Errorf("body\n got:  %s\n want: %s", got, c.want)
			}
		})
	}
}

// oldPhases is a schedule's phases as the column stores them (Stripe's
// response): each phase with its add_invoice_items, default_tax_rates and
// an item's tax_rates, all empty.
const oldPhases = `[{"add_invoice_items": [], "currency": "usd", "default_tax_rates": [], "end_date": 1800000000, "start_date": 1700000000,
	"items": [{"price": {"id": "price_1", "object": "price"}, "quantity": 1, "tax_rates": [{"id": "txr_1", "object": "tax_rate"}], "metadata": {}}],
	"metadata": {}}]`

// TestEmptyArraysOnUpdate: on an UPDATE, an empty array at a
// place that encodeCreate sends (inside array elements, which go whole,
// and anywhere in _params) follows the spec as on an INSERT: the empty
// string where the place takes it (Stripe's empty list), left out where
// that means the same (a schedule phase's add_invoice_items, decided in
// schema/internal/gen), and refused with 22023 naming the column and the
// element anywhere else. Before, every such array was left out of an
// update, whatever Stripe then did without it (a phase without items,
// financial_connections.permissions at their default). Hashes of a
// column, which encodeUpdate diffs, and a parameter itself keep their
// rules.
func TestEmptyArraysOnUpdate(t *testing.T) {
	runFormCases(t, true, []formCase{
		{"schedule phases read back: each empty array as the spec takes it",
			`UPDATE stripe.subscription_schedules SET phases = jsonb_set(phases, '{0,items,0,tax_rates}', '[]') WHERE id = 'sub_sched_1'`,
			`["sub_sched_1", ` + strings.Replace(oldPhases, `[{"id": "txr_1", "object": "tax_rate"}]`, `[]`, 1) + `, ` + oldPhases + `]`,
			"phases[0][default_tax_rates]=&phases[0][end_date]=1800000000&phases[0][items][0][price]=price_1&phases[0][items][0][quantity]=1&phases[0][items][0][tax_rates]=&phases[0][start_date]=1700000000", nil},
		{"a schedule phase's items emptied", `UPDATE stripe.subscription_schedules SET phases = $1 WHERE id = 'sub_sched_1'`,
			`["sub_sched_1", [{"items": [], "start_date": 1700000000}], ` + oldPhases + `]`, "",
			[]string{"phases of stripe.subscription_schedules", "empty array at phases[0][items]"}},
		{"the second phase's items", `UPDATE stripe.subscription_schedules SET phases = $1 WHERE id = 'sub_sched_1'`,
			`["sub_sched_1", [{"items": [{"price": "price_1"}], "start_date": 1700000000}, {"items": [], "iterations": 1}], ` + oldPhases + `]`, "",
			[]string{"phases[1][items]"}},
		{"_params: phases", `UPDATE stripe.subscription_schedules SET _params = $1 WHERE id = 'sub_sched_1'`,
			`["sub_sched_1", {"phases": [{"items": [], "start_date": 1700000000}]}, null]`, "",
			[]string{`_params key "phases"`, "phases[0][items]"}},
		{"_params: a place in a hash without the empty string",
			`UPDATE stripe.payment_intents SET _params = $1 WHERE id = 'pi_1'`,
			`["pi_1", {"payment_method_options": {"us_bank_account": {"financial_connections": {"permissions": []}}}}, null]`, "",
			[]string{`_params key "payment_method_options"`, "payment_method_options[us_bank_account][financial_connections][permissions]"}},
		{"_params: a place in a hash that takes the empty string",
			`UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"payment_settings": {"payment_method_types": []}}, null]`,
			"payment_settings[payment_method_types]=", nil},
		{"_params: a parameter itself, left out as before",
			`UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"add_invoice_items": [], "metadata": {"k": "v"}}, null]`,
			"metadata[k]=v", nil},
		{"a column's hash, diffed as before", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"payment_method_types": []}, {"payment_method_types": ["card"]}]`,
			"payment_settings[payment_method_types]=", nil},
	})
}

// TestEmptyArraysInManyRows: a refusal in the second row of an
// UPDATE refuses the statement before the first row's call.
func TestEmptyArraysInManyRows(t *testing.T) {
	calls, err := build(t, `UPDATE stripe.subscription_schedules SET phases = $1 WHERE id IN ('sub_sched_1', 'sub_sched_2')`,
		`["sub_sched_1", [{"items": [{"price": "price_1"}], "start_date": 1700000000}], `+oldPhases+`]`,
		`["sub_sched_2", [{"items": [], "start_date": 1700000000}], `+oldPhases+`]`)
	if err == nil || err.Code != CodeInvalidParameterValue || calls != nil {
		t.Fatalf("%v, %v: want 22023 and no calls", calls, err)
	}
	if !strings.Contains(err.Detail, "in row 2 of 2") || !strings.Contains(err.Message, "phases[0][items]") {
		t.Errorf("%+v", err)
	}
}

// TestEmptyObjectForArray: node-postgres sends a JavaScript []
// parameter as the array literal '{}', which a jsonb column reads as an
// empty object, so knex and Kysely turn payment_method_types: [] into
// '{}'. Where Stripe takes only an array, that empty object follows the
// rules of the empty array ('[]') it stands for: refused (22023) where left
// out it would mean Stripe's default (payment_method_types: ["card"]),
// sent or left out as '[]' is elsewhere. Before, it was always left out,
// so the INSERT got Stripe's default without a word while '[]' was
// refused. An empty object where Stripe takes an object is unchanged.
func TestEmptyObjectForArray(t *testing.T) {
	runFormCases(t, true, []formCase{
		{"payment_method_types '{}' on create", `INSERT INTO stripe.payment_intents (amount, currency, payment_method_types) VALUES (100, 'usd', $1)`,
			`[100, "usd", {}]`, "", []string{"payment_method_types of stripe.payment_intents", "empty array at payment_method_types"}},
		{"invoice item tax_rates '{}' on create", `INSERT INTO stripe.invoiceitems (customer, price, tax_rates) VALUES ('cus_1', 'price_1', $1)`,
			`["cus_1", "price_1", {}]`, "", []string{"empty array at tax_rates"}},
		{"_params key '{}' on create", `INSERT INTO stripe.payment_intents (amount, currency, _params) VALUES (100, 'usd', $1)`,
			`[100, "usd", {"payment_method_types": {}}]`, "", []string{`_params key "payment_method_types"`}},
		{"subscription item tax_rates '{}': Stripe's empty list", `INSERT INTO stripe.subscription_items (subscription, price, tax_rates) VALUES ('sub_1', 'price_1', $1)`,
			`["sub_1", "price_1", {}]`, "price=price_1&subscription=sub_1&tax_rates=", nil},
		{"preferred_locales '{}': left out, as '[]'", `INSERT INTO stripe.customers (email, preferred_locales, address, metadata) VALUES ('a@b.co', $1, '{}', '{}')`,
			`["a@b.co", {}, {}, {}]`, "email=a%40b.co", nil},
	})
}

// TestEmptyObjectForArraySameAsEmptyArray: where Stripe takes only
// an array, '{}' builds exactly what '[]' builds: the same body, or the
// same refusal.
func TestEmptyObjectForArraySameAsEmptyArray(t *testing.T) {
	for _, c := range []struct {
		name, sql string
		row       string // %s is the value
	}{
		{"refused on create", `INSERT INTO stripe.payment_intents (amount, currency, payment_method_types) VALUES (100, 'usd', $1)`, `[100, "usd", %s]`},
		{"sent on create", `INSERT INTO stripe.products (name, images) VALUES ('p', $1)`, `[%s]`},
		{"emptied on update", `UPDATE stripe.products SET images = $1 WHERE id = 'prod_1'`, `["prod_1", %s, ["https://x.test/a.png"]]`},
		{"a subscription's items emptied", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`, `["sub_1", %s, ` + oldItems + `]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ca, ea := build(t, c.sql, fmt.Sprintf(c.row, "[]"))
			co, eo := build(t, c.sql, fmt.Sprintf(c.row, "{}"))
			if (ea == nil) != (eo == nil) || ea != nil && ea.Code != eo.Code {
				t.Fatalf("'[]': %v; '{}': %v", ea, eo)
			}
			if ea == nil {
				if got, want := fmt.Sprint(co), fmt.Sprint(ca); got != want {
					t.Errorf("'{}' makes %s, '[]' makes %s", got, want)
				}
			}
		})
	}
}

// oldPMO is a subscription's payment_settings as Stripe returns it, with
// an array at a place whose request schema takes no empty string
// (payment_method_options.us_bank_account.financial_connections.permissions)
// and one whose schema does (payment_method_types).
const oldPMO = `{"payment_method_options": {"us_bank_account": {"financial_connections": {"permissions": ["payment_method", "balances"]}, "verification_method": "automatic"}},
	"payment_method_types": ["card", "us_bank_account"], "save_default_payment_method": "off"}`

// TestEmptiedArraysInHashes: on an UPDATE, an array emptied in a
// column's value outside array elements (in its hashes, at any depth, or
// the column itself) follows the spec's request schema as everywhere
// else: sent as the empty string where the schema takes "" there (anyOf
// with enum [""]), and refused with 22023 naming the form key where it
// doesn't, with no call for any row. Before, every such array was sent as
// key=, which Stripe refuses there ("cannot be unset") after the calls of
// the statement's earlier rows.
func TestEmptiedArraysInHashes(t *testing.T) {
	emptied := strings.Replace(oldPMO, `["payment_method", "balances"]`, `[]`, 1)
	runFormCases(t, true, []formCase{
		{"a hash's array without \"\" in the schema", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", ` + emptied + `, ` + oldPMO + `]`, "",
			[]string{"payment_settings of stripe.subscriptions", "payment_settings[payment_method_options][us_bank_account][financial_connections][permissions]"}},
		{"the same on an invoice", `UPDATE stripe.invoices SET payment_settings = jsonb_set(payment_settings, '{payment_method_options,us_bank_account,financial_connections,permissions}', '[]') WHERE id = 'in_1'`,
			`["in_1", ` + emptied + `, ` + oldPMO + `]`, "",
			[]string{"payment_settings of stripe.invoices", "[financial_connections][permissions]"}},
		{"a setup intent's card mandate supported_types", `UPDATE stripe.setup_intents SET payment_method_options = $1 WHERE id = 'seti_1'`,
			`["seti_1", {"card": {"mandate_options": {"supported_types": []}}}, {"card": {"mandate_options": {"supported_types": ["india"]}}}]`, "",
			[]string{"payment_method_options[card][mandate_options][supported_types]"}},
		{"a metadata value, where the schema has no array", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"k": []}, {"k": "v"}]`, "",
			[]string{"metadata of stripe.customers", "metadata[k]"}},
		{"the column itself: preferred_locales", `UPDATE stripe.customers SET preferred_locales = $1 WHERE id = 'cus_1'`,
			`["cus_1", [], ["en", "fr"]]`, "",
			[]string{"preferred_locales of stripe.customers", "empty array at preferred_locales"}},
		{"the column itself as '{}' (node-postgres)", `UPDATE stripe.payment_intents SET payment_method_types = $1 WHERE id = 'pi_1'`,
			`["pi_1", {}, ["card"]]`, "",
			[]string{"payment_method_types of stripe.payment_intents"}},
		{"a subscription's items as an empty array", `UPDATE stripe.subscriptions SET items = '[]' WHERE id = 'sub_1'`,
			`["sub_1", [], ` + oldItems + `]`, "",
			[]string{"items of stripe.subscriptions", "empty array at items"}},
		{"a hash's array with \"\" in the schema", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldPMO, `["card", "us_bank_account"]`, `[]`, 1) + `, ` + oldPMO + `]`,
			"payment_settings[payment_method_options][us_bank_account][financial_connections][permissions][0]=payment_method&payment_settings[payment_method_options][us_bank_account][financial_connections][permissions][1]=balances&payment_settings[payment_method_options][us_bank_account][verification_method]=automatic&payment_settings[payment_method_types]=&payment_settings[save_default_payment_method]=off", nil},
		{"a customer's invoice_settings.custom_fields (\"\" in the schema)", `UPDATE stripe.customers SET invoice_settings = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"custom_fields": [], "footer": "f"}, {"custom_fields": [{"name": "PO", "value": "1"}], "footer": "f"}]`,
			"invoice_settings[custom_fields]=&invoice_settings[footer]=f", nil},
		{"an array left empty, another key changed", `UPDATE stripe.subscriptions SET payment_settings = jsonb_set(payment_settings, '{save_default_payment_method}', '"on_subscription"') WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(emptied, `"off"`, `"on_subscription"`, 1) + `, ` + emptied + `]`,
			"payment_settings[payment_method_options][us_bank_account][verification_method]=automatic&payment_settings[payment_method_types][0]=card&payment_settings[payment_method_types][1]=us_bank_account&payment_settings[save_default_payment_method]=on_subscription", nil},
		{"an array that was null, now empty, another key changed", `UPDATE stripe.setup_intents SET payment_method_options = $1 WHERE id = 'seti_1'`,
			`["seti_1", {"card": {"mandate_options": {"supported_types": []}, "request_three_d_secure": "any"}}, {"card": {"mandate_options": {"supported_types": null}, "request_three_d_secure": "automatic"}}]`,
			"payment_method_options[card][request_three_d_secure]=any", nil},
	})
}

// TestEmptiedArrayNothingToRemove: an array emptied where Stripe
// has no elements (the column NULL) is not sent: there is nothing to
// remove, and Stripe takes no empty string there. Before, the column
// itself went as preferred_locales=, which Stripe refuses.
func TestEmptiedArrayNothingToRemove(t *testing.T) {
	for _, row := range []string{`["cus_1", [], null]`, `["cus_1", {}, null]`} {
		calls, err := build(t, `UPDATE stripe.customers SET preferred_locales = $1 WHERE id = 'cus_1'`, row)
		if err != nil {
			t.Fatalf("%s: %v", row, err)
		}
		if len(calls) != 1 || len(calls[0].Calls) != 0 {
			t.Errorf("%s: calls %v, want none", row, calls)
		}
	}
	// metadata: a key that isn't there is not removed. (An array there
	// is refused: metadata values are strings.)
	calls, err := build(t, `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`, `["cus_1", {"a": "1", "k": null}, {}]`)
	if err != nil {
		t.Fatal(err)
	}
	if got := stripeapi.Form(calls[0].Calls[0].Params).Encode(); got != "metadata[a]=1" {
		t.Errorf("body %s, want metadata[a]=1", got)
	}
}

// TestEmptiedArrayInSecondRow: the refusal of an emptied array in
// the second row of an UPDATE comes before the first row's call.
func TestEmptiedArrayInSecondRow(t *testing.T) {
	emptied := strings.Replace(oldPMO, `["payment_method", "balances"]`, `[]`, 1)
	calls, err := build(t, `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id IN ('sub_1', 'sub_2')`,
		`["sub_1", `+strings.Replace(oldPMO, `"off"`, `"on_subscription"`, 1)+`, `+oldPMO+`]`,
		`["sub_2", `+emptied+`, `+oldPMO+`]`)
	if err == nil || err.Code != CodeInvalidParameterValue || calls != nil {
		t.Fatalf("%v, %v: want 22023 and no calls", calls, err)
	}
	if !strings.Contains(err.Detail, "in row 2 of 2") || !strings.Contains(err.Message, "[financial_connections][permissions]") {
		t.Errorf("%+v", err)
	}
}

// TestCannotUnsetNamesEveryColumn: TypeORM's second save() of a
// customer it has just inserted (the statement as TypeORM 1.1 sends it,
// parameters as Eval returns them: each new value, then the stored one)
// sets every field Stripe filled in to NULL. The refusal (23502, before
// any call) names each field Stripe can't unset, not only the first, and
// the hint says what to do; read-only columns (created, livemode, object)
// and fields Stripe can unset (metadata, tax_exempt: "" is one value of
// its enum) are not named.
func TestCannotUnsetNamesEveryColumn(t *testing.T) {
	calls, err := build(t, `UPDATE "stripe"."customers" SET "balance" = $1, "created" = $2, "delinquent" = $3, "invoice_prefix" = $4, "invoice_settings" = $5, "livemode" = $6, "metadata" = $7, "name" = $8, "next_invoice_sequence" = $9, "object" = $10, "preferred_locales" = $11, "tax_exempt" = $12 WHERE "id" = $13`,
		`["cus_1", null, 0, null, "2026-12-07T15:01:36+00:00", null, false, null, "1F9EDB95", null, {"footer": null, "custom_fields": null}, null, false, null, {}, "Second", "First", null, 1, null, "customer", null, [], null, "none"]`)
	if err == nil || err.Code != CodeNotNullViolation || calls != nil {
		t.Fatalf("%v, %v: want 23502 and no calls", calls, err)
	}
	if want := "Stripe cannot unset balance, invoice_prefix, invoice_settings, next_invoice_sequence and preferred_locales of customer: NULL is not allowed here"; err.Message != want {
		t.Errorf("message\n got:  %s\n want: %s", err.Message, want)
	}
	if !strings.Contains(err.Hint, "findOneBy") {
		t.Errorf("hint %q says nothing of reading the entity again", err.Hint)
	}
	// One column alone: the message as before.
	_, err = build(t, `UPDATE stripe.customers SET balance = NULL, name = 'n' WHERE id = 'cus_1'`, `["cus_1", null, 0, "n", "o"]`)
	if err == nil || err.Message != "Stripe cannot unset balance of customer: NULL is not allowed here" {
		t.Errorf("%+v", err)
	}
}

// oldPS is a subscription's payment_settings as Stripe returns it: the
// card options are an unset alternative (anyOf with enum [""]) whose keys
// are enums without "", and save_default_payment_method is an enum
// without "".
const oldPS = `{"payment_method_options": {"card": {"network": "visa", "request_three_d_secure": "any"}}, "payment_method_types": null, "save_default_payment_method": "off"}`

// TestNestedUnset: on an UPDATE, a key of a column's hash set to
// null or removed is sent as key= only where the spec's request schema
// takes "" at that place (a string, an enum with "", an unset
// alternative), and is refused with 22023 naming the form key, before
// any call, elsewhere. Before, every such key went as key=, which Stripe
// refuses ("You passed an empty string for … cannot be unset") after the
// calls of the statement's earlier rows.
func TestNestedUnset(t *testing.T) {
	card := `{"network": "visa", "request_three_d_secure": "any"}`
	runFormCases(t, true, []formCase{
		// Refused: an enum without "".
		{"a removed enum key", `UPDATE stripe.subscriptions SET payment_settings = payment_settings - 'save_default_payment_method' WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldPS, `, "save_default_payment_method": "off"`, ``, 1) + `, ` + oldPS + `]`, "",
			[]string{"payment_settings of stripe.subscriptions", "payment_settings[save_default_payment_method]"}},
		{"a nested enum set to null", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldPS, `"any"`, `null`, 1) + `, ` + oldPS + `]`, "",
			[]string{"payment_settings[payment_method_options][card][request_three_d_secure]"}},
		{"an integer in a list element set to null", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,quantity}', 'null') WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldItems, `"quantity": 1`, `"quantity": null`, 1) + `, ` + oldItems + `]`, "",
			[]string{"items of stripe.subscriptions", "items[0][quantity]"}},
		{"a boolean of a hash removed", `UPDATE stripe.subscriptions SET automatic_tax = $1 WHERE id = 'sub_1'`,
			`["sub_1", {}, {"enabled": true}]`, "",
			[]string{"automatic_tax[enabled]"}},
		// Taken.
		{"an unset alternative set to null", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldPS, card, `null`, 1) + `, ` + oldPS + `]`,
			"payment_settings[payment_method_options][card]=&payment_settings[save_default_payment_method]=off", nil},
		{"a hash without \"\" set to null: unset key by key", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"payment_method_options": null, "save_default_payment_method": "off"}, ` + oldPS + `]`,
			"payment_settings[payment_method_options][card]=&payment_settings[save_default_payment_method]=off", nil},
		{"a hash emptied whose keys take no \"\": unset whole", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldPS, card, `{}`, 1) + `, ` + oldPS + `]`,
			"payment_settings[payment_method_options][card]=&payment_settings[save_default_payment_method]=off", nil},
		{"a plain string removed", `UPDATE stripe.customers SET address = address - 'line2' WHERE id = 'cus_1'`,
			`["cus_1", {"line1": "1 Main St"}, {"line1": "1 Main St", "line2": "Apt 2"}]`,
			"address[line1]=1+Main+St&address[line2]=", nil},
		{"an enum with \"\" set to null", `UPDATE stripe.customers SET invoice_settings = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"footer": "f", "rendering_options": {"amount_tax_display": null}}, {"footer": "f", "rendering_options": {"amount_tax_display": "exclude_tax"}}]`,
			"invoice_settings[footer]=f&invoice_settings[rendering_options][amount_tax_display]=", nil},
		{"a metadata key with a dot removed", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"k": "v"}, {"a.b": "1", "k": "v"}]`,
			"metadata[a.b]=", nil},
		{"a list element's metadata set to null", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,metadata}', 'null') WHERE id = 'sub_1'`,
			`["sub_1", ` + strings.Replace(oldItems, `"metadata": {}}, `, `"metadata": null}, `, 1) + `, ` + strings.Replace(oldItems, `"metadata": {}}, `, `"metadata": {"k": "v"}}, `, 1) + `]`,
			"items[0][id]=si_1&items[0][metadata]=", nil},
		{"a key that held nothing", `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"payment_method_options": {"card": {"network": "visa"}}, "save_default_payment_method": "off"}, {"payment_method_options": {"card": {"network": "visa", "request_three_d_secure": null}}, "save_default_payment_method": "off"}]`,
			"payment_settings[payment_method_options][card][network]=visa&payment_settings[save_default_payment_method]=off", nil},
	})
}

// TestNestedUnsetNothingToRemove: a hash given as {} where the
// column held nothing sends no call where Stripe takes no "" for the
// column (a customer's invoice_settings). Before, invoice_settings= went
// out, which Stripe refuses.
func TestNestedUnsetNothingToRemove(t *testing.T) {
	calls, err := build(t, `UPDATE stripe.customers SET invoice_settings = '{}' WHERE id = 'cus_1'`, `["cus_1", {}, null]`)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || len(calls[0].Calls) != 0 {
		t.Errorf("calls %v, want none", calls)
	}
}

// TestNestedUnsetInSecondRow: the refusal of a nested null in the
// second row of an UPDATE comes before the first row's call.
func TestNestedUnsetInSecondRow(t *testing.T) {
	calls, err := build(t, `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id IN ('sub_1', 'sub_2')`,
		`["sub_1", `+strings.Replace(oldPS, `"off"`, `"on_subscription"`, 1)+`, `+oldPS+`]`,
		`["sub_2", `+strings.Replace(oldPS, `"off"`, `null`, 1)+`, `+oldPS+`]`)
	if err == nil || err.Code != CodeInvalidParameterValue || calls != nil {
		t.Fatalf("%v, %v: want 22023 and no calls", calls, err)
	}
	if !strings.Contains(err.Detail, "in row 2 of 2") || !strings.Contains(err.Message, "payment_settings[save_default_payment_method]") {
		t.Errorf("%+v", err)
	}
}

// TestRemovedArrayInHash: an UPDATE that gives null for an array in
// a column's hash, or leaves its key out, removes the elements as [] does,
// and follows the same rule: the empty string only where Stripe's spec
// takes it there (payment_method_types), else 22023 before any call,
// naming the form key (Stripe refuses
// ...[financial_connections][permissions]= with "cannot be unset", after
// the calls of the statement's earlier rows). An array that was already
// empty has nothing to remove: nothing is sent for it. Metadata keeps
// removing a key with "", whatever its value was.
func TestRemovedArrayInHash(t *testing.T) {
	perm := func(v string) string {
		return `{"payment_method_options": {"us_bank_account": {"financial_connections": {"permissions": ` + v + `}}}, "save_default_payment_method": "off"}`
	}
	permGone := `{"payment_method_options": {"us_bank_account": {"financial_connections": {}}}, "save_default_payment_method": "off"}`
	const sub = `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id = 'sub_1'`
	const key = "payment_settings[payment_method_options][us_bank_account][financial_connections][permissions]"
	runFormCases(t, true, []formCase{
		{"null for an array without \"\" in the schema", sub,
			`["sub_1", ` + perm("null") + `, ` + perm(`["balances"]`) + `]`, "",
			[]string{"payment_settings of stripe.subscriptions", "sets " + key + " to null or removes it"}},
		{"the key left out", sub,
			`["sub_1", ` + permGone + `, ` + perm(`["balances"]`) + `]`, "",
			[]string{"sets " + key + " to null or removes it"}},
		{"the key left out, another changed", `UPDATE stripe.setup_intents SET payment_method_options = $1 WHERE id = 'seti_1'`,
			`["seti_1", {"card": {"mandate_options": {}, "request_three_d_secure": "any"}}, {"card": {"mandate_options": {"supported_types": ["india"]}, "request_three_d_secure": "automatic"}}]`, "",
			[]string{"payment_method_options[card][mandate_options][supported_types]"}},
		{"null for an empty array: nothing to remove", sub,
			`["sub_1", ` + strings.Replace(perm("null"), `"off"`, `"on_subscription"`, 1) + `, ` + perm(`[]`) + `]`,
			"payment_settings[save_default_payment_method]=on_subscription", nil},
		{"the key of an empty array left out: nothing to remove", sub,
			`["sub_1", ` + strings.Replace(permGone, `"off"`, `"on_subscription"`, 1) + `, ` + perm(`[]`) + `]`,
			"payment_settings[save_default_payment_method]=on_subscription", nil},
		{"null where the schema takes \"\"", sub,
			`["sub_1", {"payment_method_types": null}, {"payment_method_types": ["card"]}]`,
			"payment_settings[payment_method_types]=", nil},
		{"left out where the schema takes \"\"", `UPDATE stripe.customers SET invoice_settings = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"footer": "f"}, {"custom_fields": [{"name": "PO", "value": "1"}], "footer": "f"}]`,
			"invoice_settings[custom_fields]=&invoice_settings[footer]=f", nil},
		{"metadata: a key removed, whatever it held", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"j": "x"}, {"k": ["v"], "j": "w"}]`,
			"metadata[j]=x&metadata[k]=", nil},
		{"metadata: null and \"\" remove a key", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"k": null, "l": ""}, {"k": "v", "l": "w"}]`,
			"metadata[k]=&metadata[l]=", nil},
	})
}

// TestRemovedArrayInSecondRow: the refusal of a removed array in
// the second row of an UPDATE comes before the first row's call.
func TestRemovedArrayInSecondRow(t *testing.T) {
	calls, err := build(t, `UPDATE stripe.subscriptions SET payment_settings = $1 WHERE id IN ('sub_1', 'sub_2')`,
		`["sub_1", `+strings.Replace(oldPMO, `"off"`, `"on_subscription"`, 1)+`, `+oldPMO+`]`,
		`["sub_2", `+strings.Replace(oldPMO, `["payment_method", "balances"]`, `null`, 1)+`, `+oldPMO+`]`)
	if err == nil || err.Code != CodeInvalidParameterValue || calls != nil {
		t.Fatalf("%v, %v: want 22023 and no calls", calls, err)
	}
	if !strings.Contains(err.Detail, "in row 2 of 2") || !strings.Contains(err.Message, "[financial_connections][permissions]") {
		t.Errorf("%+v", err)
	}
}

// TestUnsetEnumWithEmpty: where Stripe's spec lists "" among the
// values of a string's enum (a customer's tax_exempt, a payment intent's
// setup_future_usage), NULL unsets the field with the empty string, as
// where "" is an anyOf alternative; it was refused with 23502 ("Stripe
// cannot unset"), the generator reading "" only as an enum of its own.
func TestUnsetEnumWithEmpty(t *testing.T) {
	for _, c := range []struct{ sql, row, want string }{
		{`UPDATE stripe.customers SET tax_exempt = NULL WHERE id = 'cus_1'`, `["cus_1", null, "exempt"]`, "tax_exempt="},
		{`UPDATE stripe.payment_intents SET setup_future_usage = NULL WHERE id = 'pi_1'`, `["pi_1", null, "off_session"]`, "setup_future_usage="},
	} {
		calls, err := build(t, c.sql, c.row)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if len(calls) != 1 || len(calls[0].Calls) != 1 {
			t.Errorf("%s: calls %v", c.sql, calls)
			continue
		}
		if got := stripeapi.Form(calls[0].Calls[0].Params).Encode(); got != c.want {
			t.Errorf("%s: body %s, want %s", c.sql, got, c.want)
		}
	}
}

// TestRequestShapedElementUnsets: an element of subscriptions.items
// that names an item by its id, written in the request's shape (as the
// array, or inside the list read back with an id the stored list
// doesn't have), updates that item by the keys it gives: a key given as
// null or as a hash with nothing to send is an unset, sent as "" where
// the update-subscription spec takes it (items[i][metadata]=,
// items[i][billing_thresholds]=, a metadata key), and refused with 22023
// naming the form key where it doesn't (quantity, price_data). Before,
// such keys were left out and the unset was lost. Elements without an id
// are new items: nothing to unset, their nulls and {} are left out as
// on a create; so are those of a hash Stripe replaces whole (price_data).
func TestRequestShapedElementUnsets(t *testing.T) {
	runFormCases(t, false, []formCase{
		{"metadata emptied", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "metadata": {}}], ` + oldItems + `]`,
			"items[0][id]=si_1&items[0][metadata]=", nil},
		{"a metadata key removed, one of nothing but nulls too", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "metadata": {"a": null, "b": "2"}}, {"id": "si_2", "metadata": {"c": null}}], ` + oldItems + `]`,
			"items[0][id]=si_1&items[0][metadata][a]=&items[0][metadata][b]=2&items[1][id]=si_2&items[1][metadata][c]=", nil},
		{"billing_thresholds null or {}", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "billing_thresholds": null}, {"id": "si_2", "billing_thresholds": {}}], ` + oldItems + `]`,
			"items[0][billing_thresholds]=&items[0][id]=si_1&items[1][billing_thresholds]=&items[1][id]=si_2", nil},
		{"a new item: nothing to unset", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"price": "price_3", "metadata": {}, "billing_thresholds": null}], ` + oldItems + `]`,
			"items[0][price]=price_3", nil},
		{"price_data is replaced whole: its nulls are left out", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "price_data": {"currency": "usd", "product": "prod_1", "unit_amount": 5, "recurring": {"interval": "month", "interval_count": null}}}], ` + oldItems + `]`,
			"items[0][id]=si_1&items[0][price_data][currency]=usd&items[0][price_data][product]=prod_1&items[0][price_data][recurring][interval]=month&items[0][price_data][unit_amount]=5", nil},
		{"quantity null", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_2", "quantity": 3}, {"id": "si_1", "quantity": null}], ` + oldItems + `]`, "",
			[]string{"items of stripe.subscriptions", "items[1][quantity]"}},
		{"price_data {}", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "price_data": {}}], ` + oldItems + `]`, "",
			[]string{"items[0][price_data]"}},
		{"list read back, an id it doesn't have", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0}', '{"id": "si_9", "metadata": {}}') WHERE id = 'sub_1'`,
			`["sub_1", {"object": "list", "data": [{"id": "si_9", "metadata": {}, "quantity": 2}]}, ` + oldItems + `]`,
			"items[0][id]=si_9&items[0][metadata]=&items[0][quantity]=2&items[1][deleted]=true&items[1][id]=si_1&items[2][deleted]=true&items[2][id]=si_2", nil},
	})
}

// TestMetadataValues: a metadata value that is a hash or an array,
// empty or not, is refused with 22023 naming its form key, at any
// metadata place, on a create as on an update; before, {"k": {}} removed
// k on an update and was left out on a create, while {"k": []} was
// refused. Strings, numbers and booleans (sent as their text, which
// Stripe keeps) and null are taken.
func TestMetadataValues(t *testing.T) {
	runFormCases(t, true, []formCase{
		{"update, {}", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"k": {}}, {"k": "v"}]`, "", []string{"metadata of stripe.customers", "metadata[k]", "strings"}},
		{"update, []", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"k": []}, {"k": "v"}]`, "", []string{"metadata of stripe.customers", "metadata[k]", "strings"}},
		{"update, a hash", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"k": {"x": "1"}}, {}]`, "", []string{"metadata[k]"}},
		{"create, {}", `INSERT INTO stripe.customers (metadata) VALUES ($1)`,
			`[{"a": "1", "k": {}}]`, "", []string{"metadata[k]"}},
		{"create, an item's metadata", `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
			`["cus_1", [{"price": "price_1", "metadata": {"k": ["a"]}}]]`, "", []string{"items[0][metadata][k]"}},
		{"_params", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"metadata": {"k": {}}}, null]`, "", []string{"metadata[k]"}},
		{"scalars and null", `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"k": null, "n": 5, "b": true, "s": "x"}, {"k": "v"}]`,
			"metadata[b]=true&metadata[k]=&metadata[n]=5&metadata[s]=x", nil},
	})
}

// TestParamsGivenOnUpdate: on an UPDATE, a _params key of the
// update endpoint given as null or {} is an unset, not left out: "" where
// Stripe takes it, refused with 22023 naming the key elsewhere; a
// metadata hash's null removes that key alone (before, {"metadata":
// {"a": null}} sent nothing). On a create nothing changes: nothing is
// there to unset.
func TestParamsGivenOnUpdate(t *testing.T) {
	runFormCases(t, true, []formCase{
		{"metadata key", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"metadata": {"a": null}, "proration_behavior": "none"}, null]`,
			"metadata[a]=&proration_behavior=none", nil},
		{"takes \"\"", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"pause_collection": {}}, null]`, "pause_collection=", nil},
		{"{} where no \"\" is taken", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"trial_settings": {}}, null]`, "", []string{`_params key "trial_settings"`}},
		{"null where no \"\" is taken", `UPDATE stripe.customers SET _params = $1 WHERE id = 'cus_1'`,
			`["cus_1", {"coupon": null}, null]`, "", []string{`_params key "coupon"`}},
		{"create: left out", `INSERT INTO stripe.customers (email, _params) VALUES ('a@b.co', $1)`,
			`["a@b.co", {"coupon": null}]`, "email=a%40b.co", nil},
	})
}

// TestElementPriceAndParamsItems: an items element naming an item
// by its id with price null or {} is refused (22023, items[0][price]),
// in the request's array, in the list read back, and for a new element
// of the list that names an id the stored list lacks: "" would name a
// price of an empty id, not unset the item's. _params' items of an
// UPDATE are updated key by key as the column's array is (metadata {}
// sends items[0][metadata]=, quantity null is refused naming the form
// key); elements without an id are new items there too.
func TestElementPriceAndParamsItems(t *testing.T) {
	runFormCases(t, false, []formCase{
		{"array, price null", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "price": null, "quantity": 2}], ` + oldItems + `]`, "",
			[]string{"items of stripe.subscriptions", "items[0][price]"}},
		{"array, price {}", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "price": {}, "quantity": 2}], ` + oldItems + `]`, "",
			[]string{"items[0][price]"}},
		{"list read back, price removed", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "price": null, "quantity": 1, "tax_rates": [{"id": "txr_1", "object": "tax_rate"}], "metadata": {}}]}, ` + oldItems + `]`, "",
			[]string{"items[0][price]"}},
		{"list read back, an id it doesn't have, price null", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"object": "list", "data": [{"id": "si_9", "price": null}]}, ` + oldItems + `]`, "",
			[]string{"items[0][price]"}},
		{"array, tax_rates null still unsets", `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
			`["sub_1", [{"id": "si_1", "tax_rates": null}], ` + oldItems + `]`,
			"items[0][id]=si_1&items[0][tax_rates]=", nil},
		{"_params items, metadata {}", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"items": [{"id": "si_1", "metadata": {}}, {"price": "price_3", "metadata": {}}]}, null]`,
			"items[0][id]=si_1&items[0][metadata]=&items[1][price]=price_3", nil},
		{"_params items, quantity null", `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`,
			`["sub_1", {"items": [{"id": "si_1", "quantity": null}]}, null]`, "",
			[]string{`_params key "items"`, "items[0][quantity]"}},
	})
}
