package translate

import (
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"encoding/json"
	"regexp"
	"slices"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// TestRefsCoverSpec: every place of a writable jsonb column where
// the spec says the stored value holds a Stripe object but the request
// takes only its id (found by this file's own walk of the spec, down to
// its depth) is in the parameter's generated Refs, so Build sends the id.
func TestRefsCoverSpec(t *testing.T) {
	sp := loadSpecIndex(t)
	bracket := regexp.MustCompile(`\[([^\]]*)\]`)
	found := 0
	for _, name := range WritableTables() {
		tb, _ := schema.Lookup(name)
		o := OpsFor(name)
		obj := sp.resolve(sp.schemas[strings.ReplaceAll(tb.Object, ".", "_")])
		oprops, _ := obj["properties"].(map[string]any)
		for _, op := range []struct {
			verb   string
			on     bool
			path   string
			params map[string]schema.Param
		}{{"create", o.Create, tb.CreatePath, tb.CreateParams}, {"update", o.Update, tb.UpdatePath, tb.UpdateParams}} {
			if !op.on {
				continue
			}
			body := sp.body(op.path)
			for _, c := range tb.Columns {
				p, ok := op.params[c.Field]
				if !ok || c.Kind != schema.KindJSON || c.Field == "metadata" || !takes(c, p) {
					continue
				}
				var bad []string
				sp.writeBack(oprops[c.Field], body[c.Field], c.Field, 0, &bad)
				for _, b := range bad {
					place, ok := strings.CutSuffix(b, " (an object where Stripe takes its id)")
					if !ok {
						continue
					}
					var keys []string
					for _, m := range bracket.FindAllStringSubmatch(strings.TrimPrefix(place, c.Field), -1) {
						if m[1] == "" {
							m[1] = "[]"
						}
						keys = append(keys, m[1])
					}
					found++
					if ref := strings.Join(keys, "."); !slices.Contains(p.Refs, ref) {
						t.Errorf("%s %s: %s holds an object where Stripe takes its id, but %q is not in Refs %v", name, op.verb, place, ref, p.Refs)
					}
				}
			}
		}
	}
	if found < 20 {
		t.Fatalf("only %d places found: the walk is broken", found)
	}
}

// TestRefValue: objects at a parameter's Refs are sent as their ids;
// ids given as such, and objects elsewhere (no "object" key, or not at a
// Refs place), are sent as they are.
func TestRefValue(t *testing.T) {
	tb, _ := schema.Lookup("subscription_schedules")
	phases := Field{Column: "phases", Kind: schema.KindJSON, PGType: "jsonb", Role: RoleParam, Param: tb.UpdateParams["phases"]}
	pi, _ := schema.Lookup("payment_intents")
	for _, c := range []struct {
		name string
		f    Field
		in   string
		want string
	}{
		{"nested tax rates and price objects", phases,
			`[{"default_tax_rates":[{"id":"txr_1","object":"tax_rate"},"txr_2"],"items":[{"price":{"id":"price_1","object":"price"},"tax_rates":[{"id":"txr_3","object":"tax_rate"}]}]}]`,
			`[{"default_tax_rates":["txr_1","txr_2"],"items":[{"price":"price_1","tax_rates":["txr_3"]}]}]`},
		{"ids stay ids", phases,
			`[{"default_tax_rates":["txr_1"],"items":[{"price":"price_1"}]}]`,
			`[{"default_tax_rates":["txr_1"],"items":[{"price":"price_1"}]}]`},
		{"a map without object is the user's: Stripe judges it", phases,
			`[{"items":[{"price":{"id":"price_1","unit_amount":5}}]}]`,
			`[{"items":[{"price":{"id":"price_1","unit_amount":5}}]}]`},
		{"the id alone names the object", phases,
			`[{"items":[{"price":{"id":"price_1"}}]}]`,
			`[{"items":[{"price":"price_1"}]}]`},
		{"an object off the Refs places is left", phases,
			`[{"metadata":{"id":"x","object":"y"},"items":[{"price":"price_1"}]}]`,
			`[{"items":[{"price":"price_1"}],"metadata":{"id":"x","object":"y"}}]`},
		{"top-level object where Stripe takes an id", Field{Column: "customer", Param: pi.UpdateParams["customer"]},
			`{"id":"cus_1","object":"customer"}`, `"cus_1"`},
		{"discounts as stored become {discount: id}", Field{Column: "discounts", Param: schema.Param{Name: "discounts", Types: []string{"array"}, Refs: []string{"[].coupon"}}},
			`["di_1",{"id":"di_2","object":"discount","coupon":{"id":"co_1","object":"coupon"}}]`,
			`[{"discount":"di_1"},{"discount":"di_2"}]`},
	} {
		var in any
		if err := json.Unmarshal([]byte(c.in), &in); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(refValue(c.f, in))
		if string(got) != c.want {
			t.Errorf("%s: refValue(%s) = %s, want %s", c.name, c.in, got, c.want)
		}
		if again, _ := json.Marshal(in); string(again) != string(mustCompact(t, c.in)) {
			t.Errorf("%s: refValue changed its argument: %s", c.name, again)
		}
	}
}

func mustCompact(t *testing.T, s string) []byte {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return b
}

// An item written in the request's shape whose keys all hold their stored
// values changes nothing: no call goes to Stripe for it (an update of
// items[0][id] alone is a request, and an event, for nothing).
func TestRequestShapedItemUnchanged(t *testing.T) {
	stored := `{"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}], "has_more": false, "url": "/v1/subscription_items?subscription=sub_1"}`
	written := strings.Replace(stored, `{"id": "si_1", "object": "subscription_item", "created": 1700000000, "metadata": {"a": "1"}, "plan": {"id": "price_1", "object": "plan"}, "price": {"id": "price_1", "object": "price", "unit_amount": 100}, "quantity": 1, "subscription": "sub_1", "tax_rates": [], "billing_thresholds": null}`, `{"id": "si_1", "quantity": 1}`, 1)
	out := dump(t, goldenCase{name: "unchanged", sql: `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0}', '{"id": "si_1", "quantity": 1}') WHERE id = 'sub_1'`,
		rows: []string{`["sub_1", ` + written + `, ` + stored + `]`}})
	if !strings.Contains(out, "no call (unchanged)") {
		t.Errorf("an unchanged request-shaped item made a call:\n%s", out)
	}
	// Changed: only its own keys are sent, as before.
	changed := strings.Replace(written, `"quantity": 1}`, `"quantity": 5}`, 1)
	out = dump(t, goldenCase{name: "changed", sql: `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0}', '{"id": "si_1", "quantity": 5}') WHERE id = 'sub_1'`,
		rows: []string{`["sub_1", ` + changed + `, ` + stored + `]`}})
	if !strings.Contains(out, "items[0][quantity]=5") || strings.Contains(out, "items[0][price]") {
		t.Errorf("a changed request-shaped item:\n%s", out)
	}
}

// storedItem is a subscription item as the column stores it (Stripe's
// response), with the keys only Stripe sets.
func storedItem(id, price string, quantity int, extra string) string {
	return `{"id": "` + id + `", "object": "subscription_item", "created": 1700000000, "subscription": "sub_1", "billing_thresholds": null,` +
		` "plan": {"id": "` + price + `", "object": "plan", "amount": 1000, "interval": "month"},` +
		` "price": {"id": "` + price + `", "object": "price", "unit_amount": 1000, "recurring": {"interval": "month"}},` +
		` "quantity": ` + strconv.Itoa(quantity) + `, "tax_rates": [{"id": "txr_1", "object": "tax_rate", "percentage": 20}],` +
		` "metadata": {"a": "1"}` + extra + `}`
}

var (
	storedSI1 = storedItem("si_1", "price_1", 1, "")
	storedSI2 = storedItem("si_2", "price_2", 2, "")
	// storedList is the column's value: the list object.
	storedList = `{"object": "list", "has_more": false, "url": "/v1/subscription_items?subscription=sub_1", "data": [` + storedSI1 + `, ` + storedSI2 + `]}`
)

// TestCopiedItemsArray: an UPDATE of subscriptions.items with a
// plain array of the stored items (items->'data' changed with jsonb_set,
// or an ORM's array) is sent as the list object form sends it: copied
// items cut down to the request's keys (the price object as its id),
// unchanged items and keys left out, a changed item by id with its changed
// keys, a request-shaped element as a new item, a stored item left out as
// {id, deleted: true}. Before, every key of a copied item was sent
// (items[0][object], [created], [plan][…], [price][id]…), which Stripe
// refuses as unknown parameters.
func TestCopiedItemsArray(t *testing.T) {
	sql := `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`
	for _, c := range []struct{ name, items, want string }{
		{"quantity changed", `[` + storedItem("si_1", "price_1", 3, "") + `, ` + storedSI2 + `]`,
			"items[0][id]=si_1&items[0][quantity]=3"},
		{"metadata key changed", `[` + storedSI1 + `, ` + storedItem("si_2", "price_2", 2, `, "metadata": {"a": "9"}`) + `]`,
			"items[0][id]=si_2&items[0][metadata][a]=9"},
		{"price changed to an id", `[` + strings.Replace(storedSI1, `"price": {"id": "price_1", "object": "price", "unit_amount": 1000, "recurring": {"interval": "month"}}`, `"price": "price_9"`, 1) + `, ` + storedSI2 + `]`,
			"items[0][id]=si_1&items[0][price]=price_9"},
		{"one left out", `[` + storedSI2 + `]`,
			"items[0][deleted]=true&items[0][id]=si_1"},
		{"a request-shaped element added", `[` + storedSI1 + `, ` + storedSI2 + `, {"price": "price_3", "quantity": 2}]`,
			"items[0][price]=price_3&items[0][quantity]=2"},
		{"a request-shaped element naming a stored item", `[` + storedSI1 + `, {"id": "si_2", "quantity": 5}]`,
			"items[0][id]=si_2&items[0][quantity]=5"},
		{"the price object as its id", `[` + strings.Replace(storedItem("si_1", "price_1", 2, ""), `"price": {"id": "price_1", "object": "price", "unit_amount": 1000, "recurring": {"interval": "month"}}`, `"price": "price_1"`, 1) + `, ` + storedSI2 + `]`,
			"items[0][id]=si_1&items[0][quantity]=2"},
		{"without object: a stored item named by id with keys Stripe sets", `[` + strings.Replace(storedItem("si_1", "price_1", 4, ""), `"object": "subscription_item", `, ``, 1) + `, ` + storedSI2 + `]`,
			"items[0][id]=si_1&items[0][quantity]=4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls, err := build(t, sql, `["sub_1", `+c.items+`, `+storedList+`]`)
			if err != nil {
				t.Fatal(err)
			}
			if got := oneBody(t, calls); got != c.want {
				t.Errorf("body\n got:  %s\n want: %s", got, c.want)
			}
		})
	}
	t.Run("unchanged", func(t *testing.T) {
		calls, err := build(t, sql, `["sub_1", [`+storedSI1+`, `+storedSI2+`], `+storedList+`]`)
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 || len(calls[0].Calls) != 0 {
			t.Fatalf("calls %v, want none", calls)
		}
	})
}

// TestCopiedItemsArrayKeyStripeSets: a key of a copied item that
// Stripe's update doesn't take, changed by the statement, is refused
// before any call naming it, not dropped as an unchanged one is.
func TestCopiedItemsArrayKeyStripeSets(t *testing.T) {
	sql := `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`
	for _, c := range []struct{ name, items, key string }{
		{"created", `[` + strings.Replace(storedSI1, `"created": 1700000000`, `"created": 1`, 1) + `, ` + storedSI2 + `]`, "items.[].created"},
		{"plan", `[` + storedSI1 + `, ` + strings.Replace(storedSI2, `"amount": 1000`, `"amount": 5`, 1) + `]`, "items.[].plan"},
		{"without object", `[{"id": "si_1", "quantity": 3, "subscription": "sub_2"}]`, "items.[].subscription"},
		{"the price object's content", `[` + strings.Replace(storedSI1, `"unit_amount": 1000`, `"unit_amount": 500`, 1) + `, ` + storedSI2 + `]`, "items.[].price"},
		{"a tax rate object's content", `[` + strings.Replace(storedSI1, `"percentage": 20`, `"percentage": 7`, 1) + `, ` + storedSI2 + `]`, "items.[].tax_rates.[]"},
		{"the price object's content, list object", strings.Replace(storedList, `"unit_amount": 1000`, `"unit_amount": 500`, 1), "items.data.[].price"},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls, err := build(t, sql, `["sub_1", `+c.items+`, `+storedList+`]`)
			if err == nil || calls != nil {
				t.Fatalf("%v, %v: want a refusal and no calls", calls, err)
			}
			if err.Code != CodeUndefinedColumn || !strings.Contains(err.Message, c.key) {
				t.Errorf("%s %q: want 42703 naming %s", err.Code, err.Message, c.key)
			}
		})
	}
}

// TestCopiedItemsOnInsert: an INSERT of a subscription with the
// items of another copied as an array (items->'data') sends each item cut
// down to the create's keys, as the list object form does; before, the
// items went with object, created, plan and the price object. The
// price and tax rate objects pass as their stored copies (see Objects).
func TestCopiedItemsOnInsert(t *testing.T) {
	stored := Stored{
		{Table: "prices", ID: "price_1"}:  []byte(`{"id": "price_1", "object": "price", "unit_amount": 1000, "recurring": {"interval": "month"}}`),
		{Table: "tax_rates", ID: "txr_1"}: []byte(`{"id": "txr_1", "object": "tax_rate", "percentage": 20}`),
	}
	calls, err := buildStored(t, stored, `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`,
		`["cus_1", [`+storedSI1+`, {"price": "price_3"}]]`)
	if err != nil {
		t.Fatal(err)
	}
	want := "customer=cus_1&items[0][metadata][a]=1&items[0][price]=price_1&items[0][quantity]=1&items[0][tax_rates][0]=txr_1&items[1][price]=price_3"
	if got := stripeapi.Form(calls[0].Calls[0].Params).Encode(); got != want {
		t.Errorf("body\n got:  %s\n want: %s", got, want)
	}
}

// TestCopiedItemsBadFormKey: a key the bracketed form encoding can't
// carry, in an item written back as the list object or as its array, is
// refused with 22023 before any call, as in the column's other forms;
// before, the list object's items skipped that check and
// items[0][metadata][a[b]] reached Stripe.
func TestCopiedItemsBadFormKey(t *testing.T) {
	bad := strings.Replace(storedSI1, `"metadata": {"a": "1"}`, `"metadata": {"a": "1", "x[y]": "2"}`, 1)
	for _, items := range []string{
		`{"object": "list", "data": [` + bad + `, ` + storedSI2 + `]}`,
		`[` + bad + `, ` + storedSI2 + `]`,
	} {
		calls, err := build(t, `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`, `["sub_1", `+items+`, `+storedList+`]`)
		if err == nil || calls != nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "x[y]") {
			t.Errorf("%s: %v, %v: want 22023 naming x[y] and no calls", items[:12], calls, err)
		}
	}
}

// TestItemsWithoutObjectKeepUnnamed: README: "An array of
// request-shaped elements only (no `object`, …) leaves the items it
// doesn't name as they are." An element without "object" that names one
// stored item and carries a key Stripe sets (a row of
// stripe.subscription_items turned into JSON, a hand-written element with
// "subscription") is trimmed like a copy, but the items the array leaves
// out are not removed on that guess: the statement is refused (0A000,
// naming the item and how to remove or keep it), nothing sent. An array
// with a Stripe object in it is a copy, and removes them.
func TestItemsWithoutObjectKeepUnnamed(t *testing.T) {
	calls, err := build(t, `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
		`["sub_1", [{"id": "si_1", "quantity": 3, "subscription": "sub_1"}], `+storedList+`]`)
	if err == nil || err.Code != CodeFeatureNotSupported || !strings.Contains(err.Message, "si_2") || !strings.Contains(err.Hint, `"deleted": true`) {
		t.Errorf("an array without Stripe objects leaving si_2 out: err %v (hint %q), want 0A000 naming si_2", err, hintOf(err))
	}
	for _, rc := range calls {
		for _, c := range rc.Calls {
			if body := stripeapi.Form(c.Params).Encode(); strings.Contains(body, "[deleted]=true") {
				t.Errorf("an item the array does not name is deleted: %s", body)
			}
		}
	}
	// Told to, it removes si_2 and changes si_1.
	calls, err = build(t, `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`,
		`["sub_1", [{"id": "si_1", "quantity": 3, "subscription": "sub_1"}, {"id": "si_2", "deleted": true}], `+storedList+`]`)
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, rc := range calls {
		for _, c := range rc.Calls {
			bodies = append(bodies, stripeapi.Form(c.Params).Encode())
		}
	}
	if all := strings.Join(bodies, "&"); !strings.Contains(all, "deleted%5D=true") && !strings.Contains(all, "[deleted]=true") {
		t.Errorf("si_2 given as deleted was not removed: %v", bodies)
	}
}

func hintOf(err *Error) string {
	if err == nil {
		return ""
	}
	return err.Hint
}

// TestDiscountObjectWhereAnIDGoes: a discount given as the object
// (Stripe takes {"discount": id}) goes as its id only when nothing but its
// id is given, or it is as the column holds it; otherwise, as its coupon
// changed or no copy tells, it is refused before any call. Before, both
// went as discounts[0][discount]=di_1, the coupon's change dropped.
func TestDiscountObjectWhereAnIDGoes(t *testing.T) {
	sql := `UPDATE stripe.invoiceitems SET discounts = $1 WHERE id = 'ii_1'`
	changed := `[{"id": "di_1", "object": "discount", "coupon": {"id": "co_1", "object": "coupon", "percent_off": 50}}]`
	stored := Stored{{Table: "coupons", ID: "co_1"}: []byte(`{"id": "co_1", "object": "coupon", "percent_off": 10}`)}
	for _, c := range []struct{ name, value, old, place string }{
		{"its coupon changed", changed, `["di_2"]`, "discounts.[].coupon"},
		{"no copy of the discount", strings.Replace(changed, "50", "10", 1), `["di_2"]`, "discounts.[]"},
	} {
		calls, err := buildStored(t, stored, sql, `["ii_1", `+c.value+`, `+c.old+`]`)
		if err == nil || calls != nil || err.Code != CodeUndefinedColumn || !strings.HasPrefix(err.Message, c.place+" of stripe.invoiceitems") {
			t.Errorf("%s: %v %v: want 42703 naming %s, no calls", c.name, calls, err, c.place)
		}
	}
	for _, c := range []struct{ name, value, old string }{
		{"the id and object alone", `[{"id": "di_1", "object": "discount"}]`, `["di_2"]`},
		{"as the column holds it", changed, changed},
	} {
		calls, err := buildStored(t, stored, sql, `["ii_1", `+c.value+`, `+c.old+`]`)
		if c.value == c.old {
			// sameJSON: nothing to send, nothing refused.
			if err != nil || len(calls) != 1 || len(calls[0].Calls) != 0 {
				t.Errorf("%s: %v %v: want no call", c.name, calls, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := stripeapi.Form(calls[0].Calls[0].Params).Encode(); got != "discounts[0][discount]=di_1" {
			t.Errorf("%s: body %s", c.name, got)
		}
	}
}

// TestObjectsNamesWhatBuildCompares: Objects names the objects
// with content at id places of the values an UPDATE changes or an INSERT
// gives, by their table, once each; ids alone, objects without a table
// and unchanged columns are left out.
func TestObjectsNamesWhatBuildCompares(t *testing.T) {
	st := Classify(`UPDATE stripe.subscriptions SET items = $1, default_tax_rates = $2, metadata = $3 WHERE id = 'sub_1'`).Stmt
	p := `{"id": "price_1", "object": "price", "unit_amount": 1}`
	row := [][]byte{[]byte("sub_1"), []byte("1"),
		[]byte(`[{"price": ` + p + `}, {"price": ` + p + `, "tax_rates": [{"id": "txr_1", "object": "tax_rate"}]}, {"price": {"id": "price_2"}}]`), []byte(`[]`),
		[]byte(`[{"id": "txr_2", "object": "tax_rate", "percentage": 5}]`), []byte(`[{"id": "txr_2", "object": "tax_rate", "percentage": 5}]`),
		[]byte(`{"a": "1"}`), []byte(`{}`)}
	got := st.Objects(NewRows([][][]byte{row}))
	want := []ObjectRef{{Table: "prices", ID: "price_1"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Objects = %v, want %v", got, want)
	}
}

// TestObjectCopiesCompareAsJSON: a copy given whole where Stripe
// takes the id passes when it is the stored object as JSON values are
// compared (numbers by value, as jsonb's = does), and when only the counts
// Stripe keeps on the object without an update of it (a coupon's
// times_redeemed and valid) are older than its own row; a changed value
// is still refused. Before, 20 against a stored 20.0 and a copy of a
// coupon from before a redemption were refused (42703).
func TestObjectCopiesCompareAsJSON(t *testing.T) {
	txr := `{"id": "txr_1", "object": "tax_rate", "percentage": 20.0, "active": true}`
	coupon := `{"id": "co_1", "object": "coupon", "percent_off": 10, "times_redeemed": 3, "valid": false, "max_redemptions": 3}`
	stored := Stored{
		{Table: "tax_rates", ID: "txr_1"}: []byte(txr),
		{Table: "coupons", ID: "co_1"}:    []byte(coupon),
	}
	for _, c := range []struct {
		name, sql, row string
		body           string // "" when refused with 42703
	}{
		{"20 for a stored 20.0",
			`INSERT INTO stripe.subscriptions (customer, items, default_tax_rates) VALUES ($1, $2, $3)`,
			`["cus_1", [{"price": "price_1"}], [{"id": "txr_1", "object": "tax_rate", "percentage": 20, "active": true}]]`,
			"customer=cus_1&default_tax_rates[0]=txr_1&items[0][price]=price_1"},
		{"2e1 and 20.000 for a stored 20.0",
			`INSERT INTO stripe.subscriptions (customer, items, default_tax_rates) VALUES ($1, $2, $3)`,
			`["cus_1", [{"price": "price_1"}], [{"id": "txr_1", "object": "tax_rate", "percentage": 2e1}, {"id": "txr_1", "object": "tax_rate", "percentage": 20.000}]]`,
			"customer=cus_1&default_tax_rates[0]=txr_1&default_tax_rates[1]=txr_1&items[0][price]=price_1"},
		{"21 for a stored 20.0",
			`INSERT INTO stripe.subscriptions (customer, items, default_tax_rates) VALUES ($1, $2, $3)`,
			`["cus_1", [{"price": "price_1"}], [{"id": "txr_1", "object": "tax_rate", "percentage": 21}]]`, ""},
		{"200 for a stored 20.0",
			`INSERT INTO stripe.subscriptions (customer, items, default_tax_rates) VALUES ($1, $2, $3)`,
			`["cus_1", [{"price": "price_1"}], [{"id": "txr_1", "object": "tax_rate", "percentage": 200}]]`, ""},
		{"a coupon copied before its redemptions",
			`INSERT INTO stripe.promotion_codes (coupon, code) VALUES ($1, 'SECOND')`,
			`[{"id": "co_1", "object": "coupon", "percent_off": 10, "times_redeemed": 0, "valid": true, "max_redemptions": 3}, "SECOND"]`,
			"code=SECOND&coupon=co_1"},
		{"a coupon with another percent_off",
			`INSERT INTO stripe.promotion_codes (coupon, code) VALUES ($1, 'SECOND')`,
			`[{"id": "co_1", "object": "coupon", "percent_off": 50, "times_redeemed": 3}, "SECOND"]`, ""},
	} {
		calls, err := buildStored(t, stored, c.sql, c.row)
		if c.body == "" {
			if err == nil || err.Code != CodeUndefinedColumn || calls != nil {
				t.Errorf("%s: %v %v, want 42703", c.name, calls, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %s (hint %s)", c.name, errText(err), hintOf(err))
			continue
		}
		if got := oneBody(t, calls); got != c.body {
			t.Errorf("%s: body %s, want %s", c.name, got, c.body)
		}
	}
}

// TestCanonicalNumber: numbers equal in value have one form, others
// another; what is not a JSON number is not one.
func TestCanonicalNumber(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"20", "2e1", true}, {"20.0", "2e1", true}, {"2e1", "2e1", true}, {"2.0E+1", "2e1", true},
		{"0.5", "5e-1", true}, {"-0.50", "-5e-1", true}, {"0", "0", true}, {"-0.0", "0", true},
		{"100", "1e2", true}, {"1e400", "1e400", true}, {"12.345678901234567890123", "12345678901234567890123e-21", true},
		{"", "", false}, {"1e", "", false}, {"x", "", false}, {"1.2.3", "", false},
	} {
		got, ok := canonicalNumber(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("canonicalNumber(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzCanonicalNumber: two JSON numbers have the same canonical
// form exactly when they are equal in value (big.Rat decides, for
// exponents it can compute with).
func FuzzCanonicalNumber(f *testing.F) {
	for _, s := range [][2]string{{"20", "20.0"}, {"2e1", "20"}, {"0.5", "5e-1"}, {"-0", "0.0"}, {"1", "10e-1"}, {"100", "1e3"}, {"12.5", "125"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var x, y json.Number
		if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil || len(a) > 40 || len(b) > 40 {
			return
		}
		var p, q big.Rat
		if _, ok := p.SetString(string(x)); !ok || exponentOver(string(x), 400) {
			return
		}
		if _, ok := q.SetString(string(y)); !ok || exponentOver(string(y), 400) {
			return
		}
		cx, okx := canonicalNumber(string(x))
		cy, oky := canonicalNumber(string(y))
		if !okx || !oky {
			t.Fatalf("canonicalNumber(%q) %v, (%q) %v", x, okx, y, oky)
		}
		if (cx == cy) != (p.Cmp(&q) == 0) {
			t.Fatalf("%q → %s, %q → %s; equal in value: %v", x, cx, y, cy, p.Cmp(&q) == 0)
		}
	})
}

func exponentOver(s string, max int) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return false
	}
	e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
	return err != nil || e > max || e < -max
}
