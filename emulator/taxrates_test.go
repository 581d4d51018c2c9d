package emulator_test

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// at reads a dotted path (map keys, array indexes) out of a decoded body.
func at(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// rateIDs lists the ids of the tax rate objects at path, or "!" plus what
// is there when it isn't an array of tax rate objects.
func rateIDs(body map[string]any, path string) string {
	arr, ok := at(body, path).([]any)
	if !ok {
		return fmt.Sprintf("!%v", at(body, path))
	}
	var ids []string
	for _, x := range arr {
		m, _ := x.(map[string]any)
		if m["object"] != "tax_rate" {
			return fmt.Sprintf("!%v", x)
		}
		ids = append(ids, m["id"].(string))
	}
	return strings.Join(ids, ",")
}

// TestTaxRates: Stripe keeps the tax rates given to subscriptions,
// their items, schedule phases, invoices and invoice items, and returns
// them as tax rate objects (spec: default_tax_rates / tax_rates are arrays
// of $ref tax_rate); an id that is no tax rate is 400 resource_missing
// naming the param, and nothing is created. A schedule's first phase
// hands its tax rates to the subscription it starts, a subscription its
// own to its invoices ("Invoices created will have their
// default_tax_rates populated from the subscription"), and items and
// invoice items theirs to their invoice lines. Tax amounts are not
// computed (doc.go).
func TestTaxRates(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	post := func(path string, v url.Values) apiResp { return do(t, "POST", base+path, "sk_test_x", v.Encode()) }
	get := func(path string) apiResp { return do(t, "GET", base+path, "sk_test_x", "") }
	cus := idOfResp(mustOK(t, post("/v1/customers", url.Values{"name": {"a"}})))
	prod := idOfResp(mustOK(t, post("/v1/products", url.Values{"name": {"p"}})))
	price := idOfResp(mustOK(t, post("/v1/prices", url.Values{"product": {prod}, "unit_amount": {"700"}, "currency": {"usd"}, "recurring[interval]": {"month"}})))
	rate := func(name string) string {
		return idOfResp(mustOK(t, post("/v1/tax_rates", url.Values{"display_name": {name}, "percentage": {"20"}, "inclusive": {"false"}})))
	}
	r1, r2 := rate("VAT"), rate("GST")
	subOf := func(extra url.Values) string {
		v := url.Values{"customer": {cus}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"3"}}
		for k, x := range extra {
			v[k] = x
		}
		return idOfResp(mustOK(t, post("/v1/subscriptions", v)))
	}
	sub := subOf(nil)
	si := idOfResp(mustOK(t, post("/v1/subscription_items", url.Values{"subscription": {sub}, "price": {price}})))
	// Of sub: a pending item of no subscription would go on the first
	// invoice of the subscriptions the cases create, no longer editable.
	ii := idOfResp(mustOK(t, post("/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"100"}, "currency": {"usd"}, "subscription": {sub}})))
	inv := idOfResp(mustOK(t, post("/v1/invoices", url.Values{"customer": {cus}})))
	sched := idOfResp(mustOK(t, post("/v1/subscription_schedules", url.Values{"customer": {cus}, "start_date": {"2000000000"},
		"phases[0][items][0][price]": {price}})))

	for _, tc := range []struct {
		name   string
		path   string
		params url.Values // {r1} and {r2} stand for the two tax rates, {bad} for an id that is none
		field  string     // where the answer holds them
		want   string     // {r1},{r2} as ids; "" for none
		param  string     // the param a bad id is reported under
		get    string     // where to read field instead of the answer
	}{
		{"subscription create", "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"3"},
			"default_tax_rates[0]": {"{r1}"}, "items[0][tax_rates][0]": {"{r2}"}}, "default_tax_rates", "{r1}", "", ""},
		{"subscription create, item", "/v1/subscriptions", url.Values{"customer": {cus}, "items[0][price]": {price}, "collection_method": {"send_invoice"}, "days_until_due": {"3"},
			"items[0][tax_rates][0]": {"{r1}"}, "items[0][tax_rates][1]": {"{bad}"}}, "items.data.0.tax_rates", "", "items[0][tax_rates][1]", ""},
		{"subscription update", "/v1/subscriptions/" + sub, url.Values{"default_tax_rates[0]": {"{r2}"}, "default_tax_rates[1]": {"{r1}"}}, "default_tax_rates", "{r2},{r1}", "default_tax_rates[0]", ""},
		{"subscription update, unset", "/v1/subscriptions/" + sub, url.Values{"default_tax_rates": {""}}, "default_tax_rates", "", "", ""},
		{"subscription update, new item", "/v1/subscriptions/" + sub, url.Values{"items[0][price]": {price}, "items[0][tax_rates][0]": {"{r1}"}}, "items.data.0.tax_rates", "", "items[0][tax_rates][0]", ""},
		{"subscription update, item", "/v1/subscriptions/" + sub, url.Values{"items[0][id]": {si}, "items[0][tax_rates][0]": {"{r1}"}}, "tax_rates", "{r1}", "items[0][tax_rates][0]", "/v1/subscription_items/" + si},
		{"subscription item create", "/v1/subscription_items", url.Values{"subscription": {sub}, "price": {price}, "tax_rates[0]": {"{r2}"}}, "tax_rates", "{r2}", "tax_rates[0]", ""},
		{"subscription item update", "/v1/subscription_items/" + si, url.Values{"tax_rates[0]": {"{r1}"}, "tax_rates[1]": {"{r2}"}}, "tax_rates", "{r1},{r2}", "tax_rates[0]", ""},
		{"subscription item update, unset", "/v1/subscription_items/" + si, url.Values{"tax_rates": {""}}, "tax_rates", "", "", ""},
		{"invoice item create", "/v1/invoiceitems", url.Values{"customer": {cus}, "amount": {"100"}, "currency": {"usd"}, "tax_rates[0]": {"{r1}"}}, "tax_rates", "{r1}", "tax_rates[0]", ""},
		{"invoice item update", "/v1/invoiceitems/" + ii, url.Values{"tax_rates[0]": {"{r2}"}}, "tax_rates", "{r2}", "tax_rates[0]", ""},
		{"invoice create", "/v1/invoices", url.Values{"customer": {cus}, "default_tax_rates[0]": {"{r2}"}}, "default_tax_rates", "{r2}", "default_tax_rates[0]", ""},
		{"invoice update", "/v1/invoices/" + inv, url.Values{"default_tax_rates[0]": {"{r1}"}}, "default_tax_rates", "{r1}", "default_tax_rates[0]", ""},
		{"schedule create", "/v1/subscription_schedules", url.Values{"customer": {cus}, "start_date": {"2000000000"}, "phases[0][items][0][price]": {price},
			"phases[0][default_tax_rates][0]": {"{r1}"}, "phases[0][items][0][tax_rates][0]": {"{r2}"}}, "phases.0.default_tax_rates", "{r1}", "phases[0][default_tax_rates][0]", ""},
		{"schedule update", "/v1/subscription_schedules/" + sched, url.Values{"phases[0][items][0][price]": {price}, "phases[0][start_date]": {"2000000000"},
			"phases[0][items][0][tax_rates][0]": {"{r2}"}}, "phases.0.items.0.tax_rates", "{r2}", "phases[0][items][0][tax_rates][0]", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// fill puts the ids in; with bad, the param tc.param names
			// gets an id that is no tax rate.
			fill := func(bad bool) (url.Values, bool) {
				out, hasBad := url.Values{}, false
				for k, xs := range tc.params {
					for _, x := range xs {
						hasBad = hasBad || x == "{bad}"
						if bad && k == tc.param {
							x = "{bad}"
						}
						out.Add(k, strings.NewReplacer("{r1}", r1, "{r2}", r2, "{bad}", "txr_missing").Replace(x))
					}
				}
				return out, hasBad
			}
			if v, hasBad := fill(false); !hasBad {
				want := strings.NewReplacer("{r1}", r1, "{r2}", r2).Replace(tc.want)
				r := mustOK(t, post(tc.path, v))
				if got := rateIDs(r.body, tc.field); got != want && tc.get == "" {
					t.Fatalf("%s = %s, want %s", tc.field, got, want)
				}
				item := tc.path
				if strings.Count(item, "/") == 2 {
					item += "/" + idOfResp(r)
				}
				if tc.get != "" {
					item = tc.get
				}
				if got := rateIDs(mustOK(t, get(item)).body, tc.field); got != want {
					t.Fatalf("retrieved %s = %s, want %s", tc.field, got, want)
				}
			}
			if tc.param == "" {
				return
			}
			v, _ := fill(true)
			r := post(tc.path, v)
			if r.status != 400 || errField(r, "code") != "resource_missing" || errField(r, "param") != tc.param || !strings.Contains(errField(r, "message"), "No such tax rate: 'txr_missing'") {
				t.Fatalf("bad tax rate: %d %s", r.status, r.raw)
			}
		})
	}

	t.Run("carried over", func(t *testing.T) {
		// Schedule -> subscription -> first invoice and its line.
		s := mustOK(t, post("/v1/subscription_schedules", url.Values{"customer": {cus}, "start_date": {"now"}, "phases[0][items][0][price]": {price},
			"phases[0][default_tax_rates][0]": {r1}, "phases[0][items][0][tax_rates][0]": {r2}, "phases[0][collection_method]": {"send_invoice"}, "phases[0][invoice_settings][days_until_due]": {"3"}}))
		sid, _ := s.body["subscription"].(string)
		if sid == "" {
			t.Fatalf("no subscription: %s", s.raw)
		}
		sb := mustOK(t, get("/v1/subscriptions/"+sid)).body
		if got := rateIDs(sb, "default_tax_rates") + " " + rateIDs(sb, "items.data.0.tax_rates"); got != r1+" "+r2 {
			t.Fatalf("subscription of the schedule: %s, want %s %s", got, r1, r2)
		}
		in := mustOK(t, get("/v1/invoices/"+sb["latest_invoice"].(string))).body
		if got := rateIDs(in, "default_tax_rates") + " " + rateIDs(in, "lines.data.0.tax_rates"); got != r1+" "+r2 {
			t.Fatalf("its invoice: %s, want %s %s", got, r1, r2)
		}
		// Its upcoming invoice too.
		up := mustOK(t, get("/v1/invoices/upcoming?subscription="+sid)).body
		if got := rateIDs(up, "default_tax_rates") + " " + rateIDs(up, "lines.data.0.tax_rates"); got != r1+" "+r2 {
			t.Fatalf("its upcoming invoice: %s, want %s %s", got, r1, r2)
		}
		// A schedule made from it keeps them in its phase.
		fs := mustOK(t, post("/v1/subscription_schedules", url.Values{"from_subscription": {subOf(url.Values{"default_tax_rates[0]": {r2}, "items[0][tax_rates][0]": {r1}})}})).body
		if got := rateIDs(fs, "phases.0.default_tax_rates") + " " + rateIDs(fs, "phases.0.items.0.tax_rates"); got != r2+" "+r1 {
			t.Fatalf("from_subscription phase: %s, want %s %s", got, r2, r1)
		}
		// An invoice item's rates go to its line on a draft invoice, and
		// follow the item's update.
		d := idOfResp(mustOK(t, post("/v1/invoices", url.Values{"customer": {cus}})))
		it := idOfResp(mustOK(t, post("/v1/invoiceitems", url.Values{"customer": {cus}, "invoice": {d}, "amount": {"100"}, "currency": {"usd"}, "tax_rates[0]": {r1}})))
		if got := rateIDs(mustOK(t, get("/v1/invoices/"+d)).body, "lines.data.0.tax_rates"); got != r1 {
			t.Fatalf("invoice item line: %s, want %s", got, r1)
		}
		mustOK(t, post("/v1/invoiceitems/"+it, url.Values{"tax_rates[0]": {r2}}))
		if got := rateIDs(mustOK(t, get("/v1/invoices/"+d)).body, "lines.data.0.tax_rates"); got != r2 {
			t.Fatalf("invoice item line after update: %s, want %s", got, r2)
		}
	})
}
