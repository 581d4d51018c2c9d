package translate

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stripe/stripe-mock/embedded"

	"github.com/pgstripe/pgstripe/schema"
)

// specIndex is stripe-mock's spec3.json, decoded generically.
type specIndex struct {
	paths   map[string]map[string]any
	schemas map[string]any
}

func loadSpecIndex(t *testing.T) *specIndex {
	t.Helper()
	var raw struct {
		Paths      map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(embedded.OpenAPISpec, &raw); err != nil {
		t.Fatal(err)
	}
	return &specIndex{paths: raw.Paths, schemas: raw.Components.Schemas}
}

func (s *specIndex) resolve(v any) map[string]any {
	m, _ := v.(map[string]any)
	for m != nil {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		m, _ = s.schemas[ref[strings.LastIndex(ref, "/")+1:]].(map[string]any)
	}
	return m
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// body returns the form schema's properties of POST path (a template with
// {id}, and {parent} for a child's parent).
func (s *specIndex) body(path string) map[string]any {
	path = strings.ReplaceAll(path, "{parent}", "{id}")
	for p, verbs := range s.paths {
		if pathParam.ReplaceAllString(p, "{id}") != path {
			continue
		}
		op, _ := verbs["post"].(map[string]any)
		rb, _ := op["requestBody"].(map[string]any)
		c, _ := rb["content"].(map[string]any)
		f, _ := c["application/x-www-form-urlencoded"].(map[string]any)
		sc := s.resolve(f["schema"])
		props, _ := sc["properties"].(map[string]any)
		return props
	}
	return nil
}

// alternatives flattens anyOf. It leaves out the client-side views of
// payment method options (what a publishable key retrieves): with a secret
// key Stripe returns the method's own options, and the client view, a union
// of every method's keys, would make all of them look response-only.
func (s *specIndex) alternatives(v any) []map[string]any {
	if r, ok := v.(map[string]any); ok {
		if ref, _ := r["$ref"].(string); strings.HasSuffix(ref, "_type_specific_payment_method_options_client") {
			return nil
		}
	}
	m := s.resolve(v)
	if m == nil {
		return nil
	}
	if alts, ok := m["anyOf"].([]any); ok {
		var out []map[string]any
		for _, a := range alts {
			out = append(out, s.alternatives(a)...)
		}
		return out
	}
	return []map[string]any{m}
}

func typeOf(m map[string]any) string {
	t, _ := m["type"].(string)
	if t == "" && m["properties"] != nil {
		return "object"
	}
	return t
}

// writeBack lists the places where a value the column can hold (the
// response schema resp) would not be accepted by the request schema req:
// keys Stripe returns but doesn't take. Objects with an id where the
// request takes a string are fine at the top (refValue).
func (s *specIndex) writeBack(resp, req any, name string, depth int, out *[]string) {
	s.writeBackPaths(resp, req, name, "", depth, out, nil)
}

// writeBackPaths is writeBack; keys, when set, also collects the dotted
// paths (below the column) of object keys Stripe returns but doesn't take.
func (s *specIndex) writeBackPaths(resp, req any, name, path string, depth int, out *[]string, keys map[string]bool) {
	if depth > 4 {
		return
	}
	var reqObj map[string]any
	reqTypes := map[string]bool{}
	for _, r := range s.alternatives(req) {
		t := typeOf(r)
		reqTypes[t] = true
		if t == "object" && r["properties"] != nil {
			reqObj = r
		}
	}
	for _, r := range s.alternatives(resp) {
		switch typeOf(r) {
		case "object":
			props, _ := r["properties"].(map[string]any)
			if reqTypes["object"] {
				if reqObj == nil {
					continue // free-form (metadata)
				}
				rp, _ := reqObj["properties"].(map[string]any)
				for _, k := range slices.Sorted(maps.Keys(props)) {
					if _, ok := rp[k]; !ok {
						*out = append(*out, name+"["+k+"]")
						if keys != nil {
							keys[strings.TrimPrefix(path+"."+k, ".")] = true
						}
						continue
					}
					s.writeBackPaths(props[k], rp[k], name+"["+k+"]", path+"."+k, depth+1, out, keys)
				}
			} else if reqTypes["string"] && props["id"] != nil {
				if depth > 0 {
					*out = append(*out, name+" (an object where Stripe takes its id)")
				}
			} else if reqTypes["array"] && props["data"] != nil {
				*out = append(*out, name+" (a list object where Stripe takes an array)")
			} else if len(props) > 0 {
				*out = append(*out, name+" (object, Stripe takes "+strings.Join(slices.Sorted(maps.Keys(reqTypes)), "|")+")")
			}
		case "array":
			if !reqTypes["array"] {
				*out = append(*out, name+" (array)")
				continue
			}
			var items any
			for _, q := range s.alternatives(req) {
				if typeOf(q) == "array" {
					items = q["items"]
				}
			}
			s.writeBackPaths(r["items"], items, name+"[]", path+".[]", depth+1, out, keys)
		case "string":
			if !reqTypes["string"] && depth > 0 {
				*out = append(*out, name+" (string, Stripe takes "+strings.Join(slices.Sorted(maps.Keys(reqTypes)), "|")+")")
			}
		case "integer":
			if !reqTypes["integer"] && !reqTypes["number"] {
				*out = append(*out, name+" (integer, Stripe takes "+strings.Join(slices.Sorted(maps.Keys(reqTypes)), "|")+")")
			}
		case "boolean":
			if !reqTypes["boolean"] {
				*out = append(*out, name+" (boolean)")
			}
		}
	}
}

// kindFits says whether a column of kind k, as Build encodes it, is a value
// of the request schema req.
func (s *specIndex) kindFits(k schema.Kind, req any) bool {
	for _, r := range s.alternatives(req) {
		t := typeOf(r)
		enum, _ := r["enum"].([]any)
		switch k {
		case schema.KindText, schema.KindExpandable:
			if t == "string" && !(len(enum) > 0 && len(enum) <= 2 && (enum[0] == "" || enum[0] == "now" || enum[0] == "unchanged" || enum[0] == "inf")) {
				return true
			}
		case schema.KindInteger, schema.KindTimestamp:
			if t == "integer" {
				return true
			}
		case schema.KindNumber:
			if t == "number" || t == "integer" {
				return true
			}
		case schema.KindBoolean:
			if t == "boolean" {
				return true
			}
		case schema.KindJSON:
			return true
		}
	}
	return false
}

// TestColumnsAgainstSpec walks every writable table and operation.
func TestColumnsAgainstSpec(t *testing.T) {
	sp := loadSpecIndex(t)
	for _, name := range WritableTables() {
		tb, _ := schema.Lookup(name)
		o := OpsFor(name)
		objName := strings.ReplaceAll(tb.Object, ".", "_")
		obj := sp.resolve(sp.schemas[objName])
		oprops, _ := obj["properties"].(map[string]any)
		for _, op := range []struct {
			verb string
			on   bool
			path string
		}{{"create", o.Create, tb.CreatePath}, {"update", o.Update, tb.UpdatePath}} {
			body := sp.body(op.path)
			if !op.on {
				if op.path != "" && body != nil {
					t.Errorf("%s %s: Stripe has POST %s (%s) but pgstripe refuses it", name, op.verb, op.path, strings.Join(slices.Sorted(maps.Keys(body)), ", "))
				}
				continue
			}
			for _, c := range tb.Columns {
				sql := fmt.Sprintf("INSERT INTO stripe.%s (%q) VALUES (NULL)", name, c.Name)
				if op.verb == "update" {
					sql = fmt.Sprintf("UPDATE stripe.%s SET %q = NULL", name, c.Name)
				}
				cl := Classify(sql)
				role := Role(0)
				if cl.Stmt != nil && len(cl.Stmt.Fields) == 1 {
					role = cl.Stmt.Fields[0].Role
				}
				req, isParam := body[c.Field]
				if c.Field == "expand" {
					isParam = false
				}
				switch {
				case role == RoleParam && !isParam && !(o.OwnerColumn == c.Name && op.verb == "create"):
					t.Errorf("%s %s: column %s is sent but is not a Stripe parameter", name, op.verb, c.Name)
				case isParam && role != RoleParam && role != RoleStatus && role != RoleAttach && o.OwnerColumn != c.Name &&
					!(name == "subscriptions" && c.Name == "billing_cycle_anchor" && op.verb == "update") && // takes "now"/"unchanged" only: _params
					!(name == "charges" && c.Name == "application_fee" && op.verb == "create"): // an amount, where the column holds the fee's id: _params
					t.Errorf("%s %s: Stripe parameter %s has a column that translate refuses (%v)", name, op.verb, c.Name, role)
				}
				if role != RoleParam {
					continue
				}
				if !sp.kindFits(c.Kind, req) && o.OwnerColumn != c.Name {
					t.Errorf("%s %s: column %s (%s) is sent as %s but Stripe takes %s", name, op.verb, c.Name, c.PGType, c.Kind, describe(sp, req))
				}
				if c.Kind == schema.KindJSON && c.Field != "metadata" {
					var bad []string
					sp.writeBack(oprops[c.Field], req, c.Field, 0, &bad)
					if len(bad) > 0 {
						t.Logf("%s %s: jsonb column %s holds what Stripe doesn't take back: %s", name, op.verb, c.Name, strings.Join(bad, ", "))
					}
				}
			}
		}
	}
}

func describe(sp *specIndex, v any) string {
	var s []string
	for _, r := range sp.alternatives(v) {
		d := typeOf(r)
		if e, ok := r["enum"].([]any); ok {
			d += fmt.Sprint(e)
		}
		if r["format"] != nil {
			d += "(" + fmt.Sprint(r["format"]) + ")"
		}
		s = append(s, d)
	}
	sort.Strings(s)
	return strings.Join(s, "|")
}

// stripeObjects reports whether the array column (table.column) holds
// Stripe objects, which refElements recognises by their "object" key.
func stripeObjects(sp *specIndex, column string) bool {
	table, col, _ := strings.Cut(column, ".")
	tb, _ := schema.Lookup(table)
	c, _ := tb.Column(col)
	obj := sp.resolve(sp.schemas[strings.ReplaceAll(tb.Object, ".", "_")])
	oprops, _ := obj["properties"].(map[string]any)
	for _, a := range sp.alternatives(oprops[c.Field]) {
		for _, e := range sp.alternatives(a["items"]) {
			if props, _ := e["properties"].(map[string]any); props["object"] != nil {
				return true
			}
		}
	}
	return false
}

// updateResponseOnly is, per table.column of an update, the dotted paths of
// keys the stored value has that Stripe's update does not take.
func updateResponseOnly(t *testing.T, sp *specIndex) map[string][]string {
	out := map[string][]string{}
	for _, name := range WritableTables() {
		tb, _ := schema.Lookup(name)
		if !OpsFor(name).Update {
			continue
		}
		obj := sp.resolve(sp.schemas[strings.ReplaceAll(tb.Object, ".", "_")])
		oprops, _ := obj["properties"].(map[string]any)
		body := sp.body(tb.UpdatePath)
		for _, c := range tb.Columns {
			p, ok := tb.UpdateParams[c.Field]
			if !ok || !takes(c, p) || c.Kind != schema.KindJSON || c.Field == "metadata" {
				continue
			}
			keys := map[string]bool{}
			var bad []string
			sp.writeBackPaths(oprops[c.Field], body[c.Field], c.Field, "", 0, &bad, keys)
			if len(keys) > 0 {
				out[name+"."+c.Name] = slices.Sorted(maps.Keys(keys))
			}
		}
	}
	return out
}

// TestResponseOnlyMatchesSpec keeps responseOnly equal to what the
// spec says Stripe returns in a jsonb column but its update doesn't take.
// Arrays of Stripe objects (discounts) are refElements' business; other
// arrays' elements (a schedule's phases) are responseOnly's.
func TestResponseOnlyMatchesSpec(t *testing.T) {
	sp := loadSpecIndex(t)
	want := updateResponseOnly(t, sp)
	for k, v := range want {
		var keep []string
		for _, p := range v {
			if !strings.HasPrefix(p, "[].") || !stripeObjects(sp, k) {
				keep = append(keep, p)
			}
		}
		want[k] = keep
		if len(keep) == 0 {
			delete(want, k)
		}
	}
	for k, v := range want {
		if got := strings.Join(responseOnly[k], ","); got != strings.Join(v, ",") {
			t.Errorf("responseOnly[%q] = {%s}, the spec says {%s}", k, got, strings.Join(v, ","))
		}
	}
	for k := range responseOnly {
		if _, ok := want[k]; !ok {
			t.Errorf("responseOnly[%q]: the spec has no such keys", k)
		}
	}
}
