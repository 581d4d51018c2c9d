package translate

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/pgstripe/pgstripe/schema"
)

// Stripe's form encoding: nested objects as name[key], arrays as
// name[index], booleans as true/false, the empty string to unset.

// encodeCreate adds v under name for a create: NULLs (at any depth) and
// empty objects or arrays are simply not sent.
func encodeCreate(out url.Values, name string, v any) {
	switch x := v.(type) {
	case nil:
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			encodeCreate(out, name+"["+k+"]", x[k])
		}
	case []any:
		for i, e := range x {
			encodeCreate(out, name+"["+strconv.Itoa(i)+"]", e)
		}
	default:
		out.Add(name, scalar(x))
	}
}

// encodeUpdate adds the change from old to v under name. Keys that were set
// and are now gone or NULL are unset with the empty string (for metadata
// this removes the key). With full, an object is sent whole (keys whose
// value didn't change too), since Stripe replaces most hashes as a whole;
// without it (metadata, which Stripe merges key by key) only changed keys
// are sent. Arrays and scalars are always sent whole.
func encodeUpdate(out url.Values, name string, old, v any, full bool) {
	(&updateDiff{out: out}).encode(name, nil, old, v, full)
}

// encodeParamUpdate is encodeUpdate for the value of p, with the spec's
// word on what the empty string may unset. The encoding unsets with the
// empty string: a key set to null or removed from a hash, and an array
// emptied (it has no key for an empty array). Stripe takes "" only where
// p's request schema does (Param.Unset for p itself, Param.UnsetPlaces
// below it; for an emptied array, Param.UnsetArrays: elsewhere "" would
// unset a string, not empty a list) and refuses it anywhere else ("You
// passed an empty string for … cannot be unset"), after the calls of
// the statement's earlier rows; left out, the key would keep what it has
// in Stripe. The first such key is returned, and out must then be
// dropped. A key that held nothing (null, [] or {}) is not sent: there
// is nothing to remove. A hash set to null where "" is not taken is
// unset key by key instead, and a hash emptied key by key where one of
// its keys takes no "" is unset whole where it takes "" itself.
func encodeParamUpdate(out url.Values, p schema.Param, name string, old, v any, full bool) *unsetRefusal {
	return encodeParamUpdateAt(out, p, name, nil, old, v, full)
}

// encodeParamUpdateAt is encodeParamUpdate for a value at the place keys
// below p (as in schema.Param.UnsetAt): an element of a list parameter
// (["[]"]).
func encodeParamUpdateAt(out url.Values, p schema.Param, name string, keys []string, old, v any, full bool) *unsetRefusal {
	d := &updateDiff{out: out, p: &p}
	d.encode(name, keys, old, v, full)
	return d.refused
}

// encodeParamElement adds e, an element of the array parameter p under
// the form key name, to an update, as an element of p sent whole (see
// updateDiff.element).
func encodeParamElement(out url.Values, p schema.Param, name string, e any) *unsetRefusal {
	d := &updateDiff{out: out, p: &p}
	d.element(name, []string{"[]"}, e)
	return d.refused
}

// encodeParamGiven adds v, given for the parameter p in an update with
// nothing to compare it with (a _params key): as encodeCreate does,
// except that null or a hash with nothing to send unsets p, with "" where
// Stripe takes it (Param.Unset: _params '{"pause_collection": null}'),
// and is refused elsewhere, and a metadata hash's null values unset their
// keys (see updateDiff.given).
func encodeParamGiven(out url.Values, p schema.Param, name string, v any) *unsetRefusal {
	d := &updateDiff{out: out, p: &p}
	if a, ok := v.([]any); ok && d.elements(name, a) {
		// _params '{"items": [{"id": "si_1", "metadata": {}}]}' updates
		// the item as the column's array does: encodeCreate would drop
		// the unset.
		return d.refused
	}
	d.givenValue(name, nil, v)
	return d.refused
}

// unsetRefusal is a key that an update would have to send as the empty
// string where Stripe takes none (see encodeParamUpdate).
type unsetRefusal struct {
	key   string // the form key
	array bool   // an emptied array (else a key set to null or removed)
}

// updateDiff carries encodeUpdate through a value: keys are where the
// value at hand is below the parameter (as in schema.Param.UnsetAt).
type updateDiff struct {
	out     url.Values
	p       *schema.Param // nil: every unset goes as ""
	refused *unsetRefusal
}

// takesEmpty says whether Stripe takes "" at keys below the parameter.
func (d *updateDiff) takesEmpty(keys []string) bool {
	return d.p == nil || len(keys) == 0 && d.p.Unset || d.p.UnsetAt(keys...)
}

// unsetsAt says whether null or {} at keys goes as "": where Stripe
// takes it (takesEmpty), except at an array element's reference to
// another object (Param.Refs: an item's price). "" there names no object
// rather than unsetting one: Stripe looks up a price of an empty id
// (and answers "No such price") after the calls of the statement's
// earlier rows, and an item can't be without its price.
func (d *updateDiff) unsetsAt(keys []string) bool {
	if !d.takesEmpty(keys) {
		return false
	}
	if d.p == nil || len(keys) < 2 || keys[0] != "[]" {
		return true
	}
	return !slices.Contains(d.p.Refs, strings.Join(keys, "."))
}

func (d *updateDiff) refuse(key string, array bool) {
	if d.refused == nil {
		d.refused = &unsetRefusal{key: key, array: array}
	}
}

// sub runs f on a diff into scratch values with the same parameter, so
// that the caller can take its result or drop it.
func (d *updateDiff) sub(f func(*updateDiff)) (url.Values, *unsetRefusal) {
	s := &updateDiff{out: url.Values{}, p: d.p}
	f(s)
	return s.out, s.refused
}

func (d *updateDiff) take(out url.Values) {
	for k, v := range out {
		d.out[k] = v
	}
}

func (d *updateDiff) encode(name string, keys []string, old, v any, full bool) {
	if a, ok := v.([]any); ok && len(keys) == 0 && d.elements(name, a) {
		return
	}
	nm, nok := v.(map[string]any)
	om, ook := old.(map[string]any)
	if !nok || !ook {
		if isEmpty(v) {
			d.unset(name, keys, old, v)
			return
		}
		encodeCreate(d.out, name, v)
		return
	}
	if len(nm) == 0 && !isNothing(om) && d.p != nil {
		// An emptied hash goes key by key, each as "", as before;
		// where one of its keys can't be unset so but the hash itself
		// can, the hash is unset whole instead.
		out, refused := d.sub(func(s *updateDiff) { s.diff(name, keys, om, nm, full) })
		if refused != nil && d.takesEmpty(keys) {
			d.out.Set(name, "")
			return
		}
		d.take(out)
		if refused != nil {
			d.refuse(refused.key, refused.array)
		}
		return
	}
	d.diff(name, keys, om, nm, full)
}

// diff sends the change of the hash om to nm (see encodeUpdate).
func (d *updateDiff) diff(name string, keys []string, om, nm map[string]any, full bool) {
	all := map[string]bool{}
	for k := range nm {
		all[k] = true
	}
	for k := range om {
		all[k] = true
	}
	sent := false
	for _, k := range slices.Sorted(maps.Keys(all)) {
		nv, present := nm[k]
		ov := om[k]
		key := name + "[" + k + "]"
		at := append(slices.Clip(keys), k)
		switch {
		case !present || nv == nil:
			if ov != nil {
				d.remove(key, at, ov, full)
				sent = true
			}
		case !full && equalJSON(ov, nv):
		case full:
			if om2, ok := ov.(map[string]any); ok {
				if nm2, ok := nv.(map[string]any); ok {
					d.encode(key, at, om2, nm2, true)
					sent = true
					continue
				}
			}
			if isEmpty(nv) {
				// encodeCreate sends nothing for an empty array or
				// object: emptying one that had content must unset it
				// (custom_fields: []), or the change is silently lost.
				if ov != nil && !isEmpty(ov) {
					d.unset(key, at, ov, nv)
				}
			} else {
				encodeCreate(d.out, key, nv)
			}
			sent = true
		default:
			d.encode(key, at, ov, nv, false)
			sent = true
		}
	}
	if !sent && len(nm) == 0 && d.takesEmpty(keys) {
		d.out.Set(name, "")
	}
}

// remove unsets key (at keys), which held old and is now null or gone:
// with the empty string where Stripe takes it there; else a hash is
// emptied key by key, and anything else is refused unless it held
// nothing.
func (d *updateDiff) remove(key string, keys []string, old any, full bool) {
	if d.unsetsAt(keys) {
		d.out.Set(key, "")
		return
	}
	if isNothing(old) {
		return
	}
	if om, ok := old.(map[string]any); ok {
		out, refused := d.sub(func(s *updateDiff) { s.diff(key, keys, om, map[string]any{}, full) })
		if refused == nil {
			d.take(out)
			return
		}
	}
	d.refuse(key, false)
}

// elements adds a, an array written in the request's shape for the
// parameter, sent whole, element by element (see element), where the
// parameter's elements may name an object by its id (Param.List has
// "id": a subscription's items); ok is false elsewhere, and for an empty
// array.
func (d *updateDiff) elements(name string, a []any) (ok bool) {
	if len(a) == 0 || d.p == nil || !slices.Contains(d.p.List, "id") {
		return false
	}
	for i, e := range a {
		d.element(name+"["+strconv.Itoa(i)+"]", []string{"[]"}, e)
	}
	return true
}

// element adds e, an element of an array parameter sent whole (at keys,
// ["[]"]), in an update: as encodeCreate does, unless it names an object
// by its id (a subscription's items[0][id]), which Stripe then updates
// by the keys the element gives (see given).
func (d *updateDiff) element(name string, keys []string, e any) {
	if m, ok := e.(map[string]any); ok {
		if id, ok := m["id"].(string); ok && id != "" {
			d.given(name, keys, m)
			return
		}
	}
	encodeCreate(d.out, name, e)
}

// given adds the keys of m, a hash that Stripe merges into what it holds
// key by key (an element that names an existing object by its id, a
// metadata hash in one), where what Stripe holds there is not known: a
// key given as null, or as a hash with nothing to send ({}), unsets the
// key. encodeCreate would leave it out, and the unset would be lost
// (items[0][metadata] emptied kept the item's metadata): it is sent as
// "" where Stripe takes that (items[0][metadata]=, all of the item's
// metadata), and refused anywhere else. Other hashes (price_data,
// billing_thresholds) replace what Stripe holds whole, and go as
// encodeCreate sends them.
func (d *updateDiff) given(name string, keys []string, m map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.givenValue(name+"["+k+"]", append(slices.Clip(keys), k), m[k])
	}
}

// givenValue adds v, given for key (at keys) in a hash Stripe merges (see
// given).
func (d *updateDiff) givenValue(key string, keys []string, v any) {
	m, isMap := v.(map[string]any)
	switch {
	case isMap && len(m) > 0 && isMetadata(key):
		// Its nulls remove their keys: not a hash with nothing to
		// send.
		d.given(key, keys, m)
	case v == nil || isMap && sendsNothing(m):
		if d.unsetsAt(keys) {
			d.out.Set(key, "")
		} else {
			d.refuse(key, false)
		}
	default:
		encodeCreate(d.out, key, v)
	}
}

// isMetadata says whether the form key name is a metadata hash
// (metadata, items[0][metadata]): every hash of Stripe's request schemas
// named metadata, and no other hash, takes free keys with string values
// (spec 2023-10-16), and Stripe merges it key by key.
func isMetadata(name string) bool {
	return name == "metadata" || strings.HasSuffix(name, "[metadata]")
}

// unset sends v, an empty array or object that replaces old at keys, as
// the empty string, or records it as refused (see encodeParamUpdate).
func (d *updateDiff) unset(key string, keys []string, old, v any) {
	_, arr := v.([]any)
	if arr && (d.p == nil || len(keys) == 0 && d.p.Unset || len(keys) > 0 && slices.Contains(d.p.UnsetArrays, strings.Join(keys, "."))) ||
		!arr && d.takesEmpty(keys) {
		d.out.Set(key, "")
		return
	}
	if isNothing(old) {
		return
	}
	d.refuse(key, arr)
}

// isNothing reports whether v holds nothing to remove: null, an empty
// array or object, or an object of nothing but nulls.
func isNothing(v any) bool {
	if m, ok := v.(map[string]any); ok {
		for _, e := range m {
			if e != nil {
				return false
			}
		}
		return true
	}
	return v == nil || isEmpty(v)
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// unencodable finds the first array element under v (the value of the
// form parameter name) that the encoding can't carry as written, and
// returns its form key (items[0]) and what is wrong with it. A null
// element, or one with nothing to send (an empty object, an object whose
// keys are all null or empty), would leave items[1] without items[0], or
// drop the last element: how Stripe reads indices with gaps is not
// documented, and what reaches it is not the array the statement wrote.
// (stripe-go leaves the same gap for a nil element.) An array in an array
// would be name[0][0]: no parameter of Stripe's API takes one.
func unencodable(name string, v any) (key, what string, gap bool) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if key, what, gap := unencodable(name+"["+k+"]", x[k]); key != "" {
				return key, what, gap
			}
		}
	case []any:
		for i, e := range x {
			key := name + "[" + strconv.Itoa(i) + "]"
			switch e.(type) {
			case nil:
				return key, "a null element", true
			case []any:
				return key, "an array inside an array, which no Stripe parameter takes", false
			}
			if sendsNothing(e) {
				return key, "an element with nothing to send (" + string(mustJSON(e)) + ")", true
			}
			if key, what, gap := unencodable(key, e); key != "" {
				return key, what, gap
			}
		}
	}
	return "", "", false
}

// sendsNothing reports whether encodeCreate adds nothing for v.
func sendsNothing(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, e := range x {
			if !sendsNothing(e) {
				return false
			}
		}
		return true
	case []any:
		for _, e := range x {
			if !sendsNothing(e) {
				return false
			}
		}
		return true
	}
	return false
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// integerValue checks a number given where Stripe takes only an integer
// (an amount, a quantity): the parameter p itself when place is "", or
// the place below it (as in schema.Param.Refs: "[].quantity"). jsonb
// keeps a number as it was written, so 12.5 would reach Stripe as 12.5,
// and a fraction is not something to round away on the statement's
// behalf; 12.0 or 1.2e1 is the integer 12 and is sent as 12. ok is false
// for a number with a fraction; v is returned as it is when it is not a
// number or the place takes other types too.
func integerValue(p schema.Param, place string, v any) (out any, ok bool) {
	n, isNum := v.(json.Number)
	if !isNum {
		return v, true
	}
	if place == "" {
		if len(p.Types) != 1 || p.Types[0] != "integer" {
			return v, true
		}
	} else if !slices.Contains(p.Integers, place) {
		return v, true
	}
	if _, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		return v, true
	}
	i, ok := integerText(n.String())
	if !ok {
		return v, false
	}
	return json.Number(i), true
}

// formMode says how a value will be encoded, which decides what becomes
// of its empty arrays (emptyArray).
type formMode uint8

const (
	// formCreate: encodeCreate, for a create.
	formCreate formMode = iota
	// formSent: encodeCreate, for an update (_params keys).
	formSent
	// formDiffed: encodeParamUpdate, which diffs hashes with the old value
	// and decides on an array emptied there itself; arrays inside array
	// elements are sent whole, with encodeCreate.
	formDiffed
)

// emptyArray says how an empty array at place (as in integerValue) of p
// is to be sent. The encoding has no key for an empty array, and
// encodeCreate leaves it out: where Stripe takes the empty string as well
// (Param.Unset, Param.UnsetArrays) that is sent instead, and Stripe reads
// it as an empty list, as stripe-go sends it (an item's tax_rates: none,
// not the subscription's default_tax_rates); where leaving the array out
// means the same (Param.OmitEmpty on a create, Param.OmitEmptyArrays) it
// is left out. ok is false anywhere else: left out, the array would mean
// what Stripe does without it, which is not what the statement wrote
// (payment_method_types defaults to ["card"], a schedule phase without
// items is refused by Stripe after the calls of the statement's earlier
// rows). That holds for an update as for a create wherever encodeCreate
// sends the value: in array elements, which go whole, and in _params
// (formSent). Two places keep their rules on an update: a column's value
// outside array elements, which encodeParamUpdate diffs with the old value
// (only it knows whether an array there is emptied: it unsets it where
// the spec takes the empty string, and refuses it elsewhere), and a
// _params key itself, where an update leaving the array out leaves the
// field as it is; and a parameter the spec doesn't describe (p.Name "",
// sent to an action endpoint) is left for Stripe to judge.
func emptyArray(p schema.Param, mode formMode, place string) (out any, ok bool) {
	if mode == formDiffed && !strings.Contains(place, "[]") {
		return []any{}, true
	}
	if place == "" && p.Unset || place != "" && slices.Contains(p.UnsetArrays, place) {
		return "", true
	}
	if p.Name == "" || place == "" && (p.OmitEmpty || mode != formCreate) || slices.Contains(p.OmitEmptyArrays, place) {
		return []any{}, true
	}
	return nil, false
}

// formProblem is a value refused by formValue: key is its form key
// (items[0][quantity]).
type formProblem struct {
	key      string
	value    any
	empty    bool // an empty array (else a fraction for an integer)
	object   bool // the empty array was written as an empty object
	metadata bool // a metadata value that is a hash or an array
}

// formValue returns v, the value of p under the form key name, as the
// encoding is to carry it: integers as integers at every place Stripe
// takes only one (integerValue), empty arrays as emptyArray says. place
// is where v is below p ("" for p itself). The maps and arrays on the
// way are copied.
func formValue(p schema.Param, mode formMode, name, place string, v any) (any, *formProblem) {
	switch x := v.(type) {
	case json.Number:
		out, ok := integerValue(p, place, x)
		if !ok {
			return nil, &formProblem{key: name, value: x}
		}
		return out, nil
	case map[string]any:
		if len(x) == 0 && place == "" && slices.Contains(p.Types, "array") && !slices.Contains(p.Types, "object") {
			// node-postgres sends a JavaScript [] as the array literal
			// '{}', which jsonb reads as an empty object: where Stripe
			// takes only an array, that is the empty array the ORM was
			// given (knex, Kysely: payment_method_types: []). Left out
			// as an empty object it would get Stripe's default, which
			// '[]' is refused for. Only the parameter itself: below it
			// the spec's types are not known here, and node-postgres
			// writes nested arrays as JSON anyway.
			out, bad := formValue(p, mode, name, place, []any{})
			if bad != nil {
				bad.object = true
			}
			return out, bad
		}
		if isMetadata(name) {
			// Stripe's metadata values are strings: a number or a
			// boolean goes as its text, which is what Stripe keeps. A
			// hash or an array would go as metadata[k][x] or
			// metadata[k][0], which Stripe refuses (after the calls of
			// the statement's earlier rows), or, empty, as nothing: an
			// update removed the key for {} (as for null) but refused
			// [], and a create left both out. Both are refused, empty or
			// not; null removes the key.
			for _, k := range slices.Sorted(maps.Keys(x)) {
				switch x[k].(type) {
				case map[string]any, []any:
					return nil, &formProblem{key: name + "[" + k + "]", value: x[k], metadata: true}
				}
			}
		}
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			e, bad := formValue(p, mode, name+"["+k+"]", joinPlace(place, k), x[k])
			if bad != nil {
				return nil, bad
			}
			out[k] = e
		}
		return out, nil
	case []any:
		if len(x) == 0 {
			out, ok := emptyArray(p, mode, place)
			if !ok {
				return nil, &formProblem{key: name, value: x, empty: true}
			}
			return out, nil
		}
		out := make([]any, len(x))
		for i, e := range x {
			var bad *formProblem
			if out[i], bad = formValue(p, mode, name+"["+strconv.Itoa(i)+"]", joinPlace(place, "[]"), e); bad != nil {
				return nil, bad
			}
		}
		return out, nil
	}
	return v, nil
}

// joinPlace extends a place (as in schema.Param.Refs) by one key, or
// "[]" for the elements of an array.
func joinPlace(place, k string) string {
	if place == "" {
		return k
	}
	return place + "." + k
}

// integerText returns the decimal s ("12.00", "1.2e1", "-0.0") as an
// integer's text ("12", "12", "0"); ok is false when s has a fraction or
// is not a plain JSON number. Exponents beyond ±400 are refused rather
// than expanded: no Stripe integer has that many digits.
func integerText(s string) (string, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > 400 || e < -400 {
			return "", false
		}
		mant, exp = s[:i], e
	}
	whole, frac, _ := strings.Cut(mant, ".")
	if whole == "" || strings.Trim(whole+frac, "0123456789") != "" {
		return "", false
	}
	digits := whole + frac
	point := len(whole) + exp // digits before the decimal point
	if point < 0 {
		point = 0
		digits = ""
		if strings.Trim(whole+frac, "0") != "" {
			return "", false
		}
	}
	for len(digits) < point {
		digits += "0"
	}
	if strings.Trim(digits[point:], "0") != "" {
		return "", false
	}
	out := strings.TrimLeft(digits[:point], "0")
	if out == "" {
		return "0", true
	}
	if neg {
		out = "-" + out
	}
	return out, true
}
