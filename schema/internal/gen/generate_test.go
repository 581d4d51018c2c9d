package main

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stripe/stripe-mock/embedded"
	"github.com/stripe/stripe-mock/spec"
)

// The checked-in tables_gen.go must be what the generator makes from the
// spec in go.mod's stripe-mock; run `go generate ./schema/...` when not.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../tables_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatal("schema/tables_gen.go is stale: run `go generate ./schema/...`")
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/customers/{customer}":                    "/v1/customers/{id}",
		"/v1/invoices/{invoice}/lines/{line_item_id}": "/v1/invoices/{parent}/lines/{id}",
		"/v1/subscriptions/{subscription_exposed_id}": "/v1/subscriptions/{id}",
		"/v1/customers":                               "/v1/customers",
		"/v1/payment_intents/{intent}/cancel":         "/v1/payment_intents/{id}/cancel",
	} {
		if got := normalize(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEmptyOmittedDecisions: every hand decision of emptyOmitted
// names an array place without the empty string of its table's create
// parameters (checkOmitted fails the generator when the spec moves one),
// and a decision naming something else is caught.
func TestEmptyOmittedDecisions(t *testing.T) {
	if _, err := generateParsed(t); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"customers no_such_param",
		"subscriptions default_tax_rates",      // takes "": sent as the empty string, not left out
		"subscriptions items.[].tax_rates",     // the same, below a parameter
		"subscriptions items.[].quantity",      // no array
		"payment_intents payment_method_types", // left out means ["card"]: never listed, but the check can't know
	} {
		emptyOmitted[k] = "test"
		_, err := generateParsed(t)
		delete(emptyOmitted, k)
		if k == "payment_intents payment_method_types" {
			if err != nil {
				t.Errorf("%s: %v", k, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s: %v, want the decision named", k, err)
		}
	}
}

// TestPlaces: the places below a parameter that the generator
// records, from the spec's own schema of subscription items.
func TestPlaces(t *testing.T) {
	var items *param
	for _, d := range defs {
		if d.name != "subscriptions" {
			continue
		}
		g := newGen(t)
		tb, err := g.table(d)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range tb.createParams {
			if p.name == "items" {
				items = &tb.createParams[i]
			}
		}
	}
	if items == nil {
		t.Fatal("no items parameter")
	}
	for _, w := range []string{"[].quantity", "[].price_data.unit_amount", "[].billing_thresholds.usage_gte"} {
		if !slices.Contains(items.integers, w) {
			t.Errorf("integers %v lack %s", items.integers, w)
		}
	}
	if !slices.Equal(items.unsetArr, []string{"[].tax_rates"}) || !items.omit || len(items.omitArr) != 0 {
		t.Errorf("items: unset %v, omit %v %v", items.unsetArr, items.omit, items.omitArr)
	}
	if slices.Contains(items.integers, "[].price_data.unit_amount_decimal") {
		t.Error("a decimal string recorded as an integer")
	}
}

// parsed is the spec parsed once for the tests that generate from it or
// read it: parsing it is most of what a test spends under the race
// detector, and generating only reads it.
var parsed = sync.OnceValues(parse)

// generateParsed is Generate from the spec parsed once.
func generateParsed(t *testing.T) ([]byte, error) {
	t.Helper()
	g, err := parsed()
	if err != nil {
		t.Fatal(err)
	}
	return g.generate()
}

// newGen is a generator on the parsed spec, without its descriptions.
func newGen(t *testing.T) *gen {
	t.Helper()
	g, err := parsed()
	if err != nil {
		t.Fatal(err)
	}
	return &gen{s: g.s}
}

// TestEmptyOmittedOnUpdate: the decisions for places below update
// parameters reach the update's Param (and not the create's), and one
// naming a parameter itself, a place that takes "" or no place at all
// fails the generator.
func TestEmptyOmittedOnUpdate(t *testing.T) {
	g := newGen(t)
	var tb *table
	for _, d := range defs {
		if d.name == "subscription_schedules" {
			var err error
			if tb, err = g.table(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if tb == nil {
		t.Fatal("no subscription_schedules")
	}
	phases := func(ps []param) param {
		for _, p := range ps {
			if p.name == "phases" {
				return p
			}
		}
		t.Fatal("no phases parameter")
		return param{}
	}
	if up := phases(tb.updateParams); !slices.Equal(up.omitArr, []string{"[].add_invoice_items"}) || up.omit {
		t.Errorf("update phases: omit %v %v, want only [].add_invoice_items", up.omit, up.omitArr)
	}
	if cp := phases(tb.createParams); !slices.Equal(cp.omitArr, []string{"[].add_invoice_items", "[].items"}) || !cp.omit {
		t.Errorf("create phases: omit %v %v", cp.omit, cp.omitArr)
	}
	for _, k := range []string{
		"subscription_schedules phases",                      // a parameter itself: Build's
		"subscription_schedules phases.[].default_tax_rates", // takes ""
		"subscriptions items.[].no_such",
	} {
		emptyOmittedOnUpdate[k] = "test"
		_, err := generateParsed(t)
		delete(emptyOmittedOnUpdate, k)
		if err == nil || !strings.Contains(err.Error(), k) || !strings.Contains(err.Error(), "emptyOmittedOnUpdate") {
			t.Errorf("%s: %v, want the decision named", k, err)
		}
	}
}

// TestUnixTimeByDescription: an integer the spec describes as
// seconds since the Unix epoch is a timestamp, format or not; an integer
// described otherwise, or a string so described, keeps its kind.
func TestUnixTimeByDescription(t *testing.T) {
	g := newGen(t)
	integer := &spec.Schema{Type: spec.TypeInteger}
	for _, c := range []struct {
		ps         *spec.Schema
		desc, want string
	}{
		{integer, "Time at which the object was created. Measured in seconds since the Unix epoch.", "KindTimestamp"},
		{integer, "Measured in seconds since Unix epoch.", "KindTimestamp"},
		{integer, "The file expires and isn't available at this time in epoch seconds.", "KindInteger"},
		{integer, "Number of seconds the link is valid for.", "KindInteger"},
		{integer, "", "KindInteger"},
		{&spec.Schema{Type: spec.TypeString}, "Measured in seconds since the Unix epoch.", "KindText"},
		{&spec.Schema{Type: spec.TypeInteger, Format: "unix-time"}, "", "KindTimestamp"},
	} {
		if got := g.column("f", c.ps, c.desc); got.kind != c.want {
			t.Errorf("%s %q: %s, want %s", c.ps.Type, c.desc, got.kind, c.want)
		}
	}
}

// TestDescriptionRuleInSpec: in the spec of go.mod's stripe-mock the
// description rule turns exactly one column into a timestamp, and it is
// subscription_items.created; so every created column is a timestamptz.
func TestDescriptionRuleInSpec(t *testing.T) {
	g := newGen(t)
	if err := g.readDescriptions(embedded.OpenAPISpec); err != nil {
		t.Fatal(err)
	}
	var byDescription []string
	for _, d := range defs {
		tb, err := g.table(d)
		if err != nil {
			t.Fatal(err)
		}
		sc := g.s.Components.Schemas[d.object]
		for _, c := range tb.columns {
			if c.name == "created" && c.pgType != "timestamptz" {
				t.Errorf("%s.created is %s", d.name, c.pgType)
			}
			if c.kind == "KindTimestamp" && g.kind(sc.Properties[c.name]) != "KindTimestamp" {
				byDescription = append(byDescription, d.name+"."+c.name)
			}
		}
	}
	if len(byDescription) != 1 || byDescription[0] != "subscription_items.created" {
		t.Errorf("timestamps by description alone: %v, want [subscription_items.created]", byDescription)
	}
}

// TestEmptyPlacesArrayElements: an array's element is a place that
// takes "" only where its schema has "" among its values; a string
// element without an enum (a tax rate id in default_tax_rates.[]) takes
// none, as Stripe refuses "" there. Keys inside elements (items.[].id)
// and the arrays themselves (items.[].tax_rates, with the unset
// alternative) keep their places.
func TestEmptyPlacesArrayElements(t *testing.T) {
	g := newGen(t)
	str := &spec.Schema{Type: spec.TypeString}
	arrayOf := func(e *spec.Schema) *spec.Schema { return &spec.Schema{Type: spec.TypeArray, Items: e} }
	for _, c := range []struct {
		name string
		req  *spec.Schema
		want []string
	}{
		{"strings", arrayOf(str), nil},
		{"strings with an empty enum value", arrayOf(&spec.Schema{Type: spec.TypeString, Enum: []any{"", "x"}}), []string{"[]"}},
		{"strings in a hash", &spec.Schema{Type: spec.TypeObject, Properties: map[string]*spec.Schema{"ids": arrayOf(str), "name": str}}, []string{"name"}},
		{"hashes", arrayOf(&spec.Schema{Type: spec.TypeObject, Properties: map[string]*spec.Schema{"id": str}}), []string{"[].id"}},
	} {
		if got := g.emptyPlaces(c.req); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	// The spec's own: no update parameter of any table lists an element
	// place, and the subscription's items keep their own places.
	found := false
	for _, d := range defs {
		tb, err := g.table(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tb.updateParams {
			for _, place := range p.unsetAt {
				if place == "[]" || strings.HasSuffix(place, ".[]") {
					t.Errorf("%s update %s: UnsetPlaces lists the array element %q", d.name, p.name, place)
				}
			}
			if d.name == "subscriptions" && p.name == "items" {
				found = true
				for _, w := range []string{"[].tax_rates", "[].metadata", "[].metadata.{}", "[].billing_thresholds"} {
					if !slices.Contains(p.unsetAt, w) {
						t.Errorf("subscriptions items: UnsetPlaces %q lack %s", p.unsetAt, w)
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("no update parameter items of subscriptions")
	}
}
