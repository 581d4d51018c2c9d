package translate

import (
	"strings"
	"testing"

	"encoding/json"
	"regexp"
	"slices"

	"github.com/pgstripe/pgstripe/schema"
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
			`[{"items":[{"price":{"id":"price_1"}}]}]`,
			`[{"items":[{"price":{"id":"price_1"}}]}]`},
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
