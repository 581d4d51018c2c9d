package translate

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pgstripe/pgstripe/schema"
)

// ObjectRef names a Stripe object whose stored copy Build needs: one that
// a value the statement writes gives whole where Stripe's request takes
// only its id (an item's price, a tax rate), or the row of an UPDATE that
// sets metadata (its own, or an item's) through _params: see
// Statement.Objects.
type ObjectRef struct {
	Table string // the stripe table of its kind: prices, tax_rates, …
	ID    string
}

// Stored holds the stored copies (the _raw column, as JSON) of the
// objects Statement.Objects named; one that is not stored is left out.
type Stored map[ObjectRef][]byte

// Objects returns the Stripe objects that the rows Eval returned give
// whole, with more than their id, where Stripe's request takes only the
// id: Build sends the id, and the rest must be what Stripe has, or a
// change the statement made (an item's price with another unit_amount)
// would be dropped without a word. Build compares each with the copy the
// column itself holds (an UPDATE of the list it was read from) or with
// the stored one given to it (BuildStored): for an INSERT, or an object
// the column did not hold, that is the only one. Rows Build would refuse
// for their shape are skipped here.
//
// It also names the row itself (its table, its id) where an UPDATE sets
// metadata keys through _params, the object's own or those of an item
// named by its id, and does not assign the column (metadata, items) whose
// current value would tell what the row holds: Stripe merges them into
// the metadata the object or item has, and Build counts Stripe's 50 keys
// on that result from the stored copy; a row without one, or an item it
// does not hold, counts only the keys set.
func (st *Statement) Objects(rows *Rows) []ObjectRef {
	if rows == nil {
		return nil
	}
	var out []ObjectRef
	seen := map[ObjectRef]bool{}
	add := func(ref ObjectRef) {
		if !seen[ref] {
			seen[ref] = true
			out = append(out, ref)
		}
	}
	for i := range rows.rows {
		r := &rows.rows[i]
		st.paramValues(r, func(f Field, nv, _ any) {
			eachIDPlace(f, nv, func(_ string, m map[string]any) {
				obj, _ := m["object"].(string)
				id, _ := m["id"].(string)
				t, ok := schema.ByObject(obj)
				if !ok || id == "" || !hasContent(m) {
					return
				}
				add(ObjectRef{Table: t.Name, ID: id})
			})
		})
		if st.mergesParamsMetadata(r) {
			add(ObjectRef{Table: st.Table.Name, ID: string(r.raw[0])})
		}
	}
	return out
}

// paramValues calls fn with each parameter field of the row r (as Eval
// returned it) that the row gives a value, with that value and, on an
// update, the column's current one; an update's unchanged fields are
// left out, as Build leaves them out.
func (st *Statement) paramValues(r *evalRow, fn func(f Field, nv, ov any)) {
	switch st.Op {
	case Insert:
		if len(r.raw) != len(st.Fields) {
			return
		}
		for i, f := range st.Fields {
			if v, err := r.value(i, f); err == nil && v != nil && f.Role == RoleParam {
				fn(f, v, nil)
			}
		}
	case Update:
		lead := 2
		if st.parentInPath() {
			lead = 3
		}
		if len(r.raw) != lead+2*len(st.Fields) {
			return
		}
		for i, f := range st.Fields {
			if f.Role != RoleParam || sameJSON(r.raw[lead+2*i], r.raw[lead+1+2*i]) {
				continue
			}
			nv, err := r.value(lead+2*i, f)
			if err != nil || nv == nil {
				continue
			}
			ov, _ := r.value(lead+1+2*i, f)
			fn(f, nv, ov)
		}
	}
}

// eachIDPlace calls fn with each object (a JSON object with an "id") at
// a place of v, a value of f's parameter, where Stripe takes only an id:
// the parameter itself where it takes only a string (promotion_codes'
// coupon, subscription_items' price), the places of Param.Refs (under
// the list's data for a Param.List parameter, as the column holds it or
// as its array), and a discounts array's elements, which Stripe takes as
// {"discount": id} (see refElements). place is the path from the
// column, as errors name it (items.data.[].price).
func eachIDPlace(f Field, v any, fn func(place string, m map[string]any)) {
	visit := func(place string, root any, keys []string) {
		for _, e := range valuesAt(root, keys) {
			if m, ok := e.(map[string]any); ok {
				if id, _ := m["id"].(string); id != "" {
					fn(place, m)
				}
			}
		}
	}
	if !slices.Contains(f.Param.Types, "object") && slices.Contains(f.Param.Types, "string") {
		visit(f.Column, v, nil)
	}
	root, prefix := v, f.Column+"."
	if data, ok := listData(f, v); ok {
		root, prefix = data, f.Column+".data."
	}
	for _, ref := range f.Param.Refs {
		visit(prefix+ref, root, strings.Split(ref, "."))
	}
	if f.Param.Name == "discounts" {
		for _, e := range valuesAt(root, []string{"[]"}) {
			// Only a Stripe object: a request-shaped element's id
			// would be a key of its own, not the discount's.
			if m, ok := e.(map[string]any); ok {
				if _, obj := m["object"].(string); obj {
					visit(prefix+"[]", m, nil)
				}
			}
		}
	}
}

// hasContent reports whether m, an object where Stripe takes only an id,
// has keys besides "id" and "object", which sending the id would drop.
func hasContent(m map[string]any) bool {
	for k := range m {
		if k != "id" && k != "object" {
			return true
		}
	}
	return false
}

// checkObjects refuses, before any call, an object at a place where
// Stripe takes only an id (see eachIDPlace) that the value nv gives with
// content the id does not carry and that is not what Stripe has: sending
// the id would drop the statement's change (a price with another
// unit_amount). The content counts as unchanged when every key it gives
// is as in a copy the column's current value ov holds (same place, same
// id: items read back and written with jsonb_set), or as in the stored
// copy (stored: the object's own table, for an INSERT or an object the
// column did not hold). Against the stored copy, keys the object's own
// update takes (a price's metadata, nickname, active), and counts Stripe
// keeps on it (stripeCounts), are not compared:
// the copy in another row (another subscription's items) may be older
// than it, and either may be the current one. An object with nothing but
// its id (and "object") is always sent as its id.
func checkObjects(t *schema.Table, f Field, op string, nv, ov any, stored Stored) *Error {
	copies := map[string][]map[string]any{}
	if ov != nil {
		eachIDPlace(f, ov, func(place string, m map[string]any) {
			id, _ := m["id"].(string)
			k := canonicalPlace(f, place) + "\x00" + id
			copies[k] = append(copies[k], m)
		})
	}
	var err *Error
	eachIDPlace(f, nv, func(place string, m map[string]any) {
		if err == nil && hasContent(m) {
			err = checkObject(t, f, op, place, m, copies[canonicalPlace(f, place)+"\x00"+m["id"].(string)], stored)
		}
	})
	return err
}

// canonicalPlace is place as the column's current value names it: the
// current value is read from the column (a list object), the new one may
// be its array (items->'data').
func canonicalPlace(f Field, place string) string {
	if len(f.Param.List) > 0 && !strings.HasPrefix(place, f.Column+".data.") && strings.HasPrefix(place, f.Column+".") {
		return f.Column + ".data." + strings.TrimPrefix(place, f.Column+".")
	}
	return place
}

func checkObject(t *schema.Table, f Field, op, place string, m map[string]any, copies []map[string]any, stored Stored) *Error {
	id, _ := m["id"].(string)
	obj, isObj := m["object"].(string)
	refused := func(format string, args ...any) *Error {
		return errorf(CodeUndefinedColumn, "%s of stripe.%s cannot be changed: Stripe's %s %s takes only the id of the object there", place, t.Name, op, t.Object).
			withDetail(format, args...)
	}
	if !isObj {
		// Not a copy of a Stripe object (it has no "object"): written so
		// to change it, or to name it. Stripe takes a string there and
		// would refuse it, after the statement's earlier rows.
		return refused("%s is given with keys besides its id, which Stripe's request cannot carry", id).
			withHint(`give the id alone ("%s")`, id)
	}
	for _, c := range copies {
		if differs(m, c, nil) == "" {
			return nil
		}
	}
	ot, known := schema.ByObject(obj)
	var raw map[string]any
	if known {
		if b, ok := stored[ObjectRef{Table: ot.Name, ID: id}]; ok {
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			if d.Decode(&raw) != nil {
				raw = nil
			}
		}
	}
	if raw != nil && differs(m, raw, nil) == "" {
		return nil
	}
	var key string
	switch {
	case len(copies) > 0:
		key = differs(m, copies[0], nil)
	case raw != nil:
		if key = differs(m, raw, storedSkips(ot)); key == "" {
			return nil
		}
	default:
		return refused("%s %s is given whole, and no stored copy tells whether the statement changed it", obj, id).
			withHint(`give its id alone ("%s")`, id)
	}
	e := refused("%s of %s %s differs from Stripe's", key, obj, id)
	switch {
	case known && updatable(ot, key):
		e.withHint(`give the id alone ("%s"), and change %s in stripe.%s`, id, key, ot.Name)
	case obj == "price" && takesPriceData(t, f):
		e.withHint(`a price's %s cannot be changed: give the id of a price that has it, or price_data (currency, product, recurring, unit_amount, …) in place of price, for which Stripe creates a new price`, key)
	default:
		e.withHint("a %s's %s cannot be changed: give the id of one that has it", obj, key)
	}
	return e
}

// differs returns the first key (sorted) that m gives a value other than
// c's, skipping those of skip; "" when none does. A key m leaves out is
// not a change.
func differs(m, c map[string]any, skip map[string]schema.Param) string {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if _, ok := skip[k]; ok {
			continue
		}
		if !sameJSONValue(m[k], c[k]) {
			return k
		}
	}
	return ""
}

// sameJSONValue reports whether a and b (decoded with UseNumber) are the same
// JSON value, as jsonb's = decides: numbers by value, so that 20.0 is 20.
// jsonb keeps a number's text (20.0 stays 20.0, as Stripe may write it),
// and a client that maps jsonb to its own numbers (a JavaScript Number,
// a Java double) writes the copy it read back with another.
func sameJSONValue(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		p, okx := canonicalNumber(string(x))
		q, oky := canonicalNumber(string(y))
		return okx && oky && p == q
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameJSONValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSONValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return equalJSON(a, b)
}

// stripeCounts are keys Stripe changes on an object of the type without
// an update of it (a coupon's redemptions, and valid once they reach
// max_redemptions; sync re-fetches the coupon when a discount is
// created), so that a copy in another row is older than the object's own.
var stripeCounts = map[string][]string{
	"coupon":         {"times_redeemed", "valid"},
	"promotion_code": {"times_redeemed"},
}

// storedSkips are the keys of an object of t not compared with its own
// row: those its own update takes, and Stripe's counts.
func storedSkips(t *schema.Table) map[string]schema.Param {
	counts := stripeCounts[t.Object]
	if len(counts) == 0 {
		return t.UpdateParams
	}
	skip := maps.Clone(t.UpdateParams)
	if skip == nil {
		skip = map[string]schema.Param{}
	}
	for _, k := range counts {
		skip[k] = schema.Param{Name: k}
	}
	return skip
}

// updatable reports whether t's own update takes the key k.
func updatable(t *schema.Table, k string) bool {
	_, ok := t.UpdateParams[k]
	return ok
}

// takesPriceData reports whether where f's price goes, price_data may go
// instead: an element of items, or the row itself (subscription_items).
func takesPriceData(t *schema.Table, f Field) bool {
	if len(f.Param.List) > 0 {
		return slices.Contains(f.Param.List, "price_data")
	}
	_, c := t.CreateParams["price_data"]
	_, u := t.UpdateParams["price_data"]
	return c || u
}

// canonicalNumber writes the JSON number s as its significant digits and
// a power of ten (20.0 and 2e1 are both 2e1), without computing with an
// exponent a client chose.
func canonicalNumber(s string) (string, bool) {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			return "", false
		}
		exp, s = e, s[:i]
	}
	digits := s
	if i := strings.IndexByte(s, '.'); i >= 0 {
		digits = s[:i] + s[i+1:]
		exp -= len(s) - i - 1
	}
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", true
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	return sign + trimmed + "e" + strconv.Itoa(exp), true
}
