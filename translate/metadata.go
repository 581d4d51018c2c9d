package translate

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// Stripe's metadata limits (docs.stripe.com/api/metadata): at most 50
// keys per object, keys of at most 40 characters without square
// brackets, values of at most 500 characters. Stripe refuses a row past
// them only when its call is made, after the calls of the statement's
// earlier rows; Build refuses the statement before any call instead.
const (
	maxMetadataKeys     = 50
	maxMetadataKeyLen   = 40
	maxMetadataValueLen = 500
)

// metadataHash is what one call's form sets in one metadata hash.
type metadataHash struct {
	cleared bool              // the hash itself sent as "" (all its keys removed)
	keys    map[string]string // key → value; "" removes the key
}

// metadataHashes groups the form keys of params that are in a metadata
// hash (metadata[k], items[0][metadata][k]) by the hash's form name. A
// metadata value is a string, so the first hash named metadata on a
// key's path is the one it is in, whatever the key itself is.
func metadataHashes(params url.Values) map[string]*metadataHash {
	var out map[string]*metadataHash
	hash := func(name string) *metadataHash {
		if out == nil {
			out = map[string]*metadataHash{}
		}
		h := out[name]
		if h == nil {
			h = &metadataHash{keys: map[string]string{}}
			out[name] = h
		}
		return h
	}
	for k, vs := range params {
		if len(vs) == 0 {
			continue
		}
		v := vs[len(vs)-1]
		if isMetadata(k) {
			if v == "" {
				hash(k).cleared = true
			}
			continue
		}
		name, key, ok := metadataKey(k)
		if ok {
			hash(name).keys[key] = v
		}
	}
	return out
}

// metadataKey splits a form key in a metadata hash into the hash's name
// and the metadata key.
func metadataKey(k string) (hash, key string, ok bool) {
	if !strings.HasSuffix(k, "]") {
		return "", "", false
	}
	if rest, found := strings.CutPrefix(k, "metadata["); found {
		return "metadata", rest[:len(rest)-1], true
	}
	if i := strings.Index(k, "[metadata]["); i >= 0 {
		end := i + len("[metadata]")
		return k[:end], k[end+1 : len(k)-1], true
	}
	return "", "", false
}

// checkMetadataLimits refuses a call whose metadata Stripe would refuse.
// stored holds, by hash name (metadata, items[0][metadata]), what the
// synced row has in a hash that the call updates (see syncedHashes):
// Stripe merges an update's metadata[k] into the object's metadata, ""
// removing a key, so the 50 keys are counted on the result. Where
// nothing is known of what Stripe holds (a new item's hash, a row
// without a stored copy), only the keys the call sets are counted: fewer
// than Stripe may count, never more. where names the statement's target
// for the message (stripe.customers).
func checkMetadataLimits(where string, params url.Values, stored map[string]map[string]any) *Error {
	hashes := metadataHashes(params)
	for _, name := range slices.Sorted(maps.Keys(hashes)) {
		h := hashes[name]
		label := name + " of " + where
		for _, k := range slices.Sorted(maps.Keys(h.keys)) {
			if n := utf8.RuneCountInString(k); n > maxMetadataKeyLen {
				return errorf(CodeInvalidParameterValue, "%s has the key %q of %d characters: Stripe takes metadata keys of at most %d", label, shortKey(k), n, maxMetadataKeyLen).
					withHint("use a shorter key")
			}
			if strings.ContainsAny(k, "[]") {
				return errorf(CodeInvalidParameterValue, "%s has the key %q: Stripe does not allow square brackets in metadata keys", label, shortKey(k))
			}
			// The value is not quoted: metadata may hold what should
			// not reach a log.
			if n := utf8.RuneCountInString(h.keys[k]); n > maxMetadataValueLen {
				return errorf(CodeInvalidParameterValue, "%s has a value of %d characters at the key %q: Stripe takes metadata values of at most %d", label, n, shortKey(k), maxMetadataValueLen).
					withHint("shorten it (left(value, %d)), or keep it elsewhere and put its id in metadata", maxMetadataValueLen)
			}
		}
		base := map[string]bool{}
		if !h.cleared {
			for k, v := range stored[name] {
				if v != nil {
					base[k] = true
				}
			}
		}
		had := len(base)
		for k, v := range h.keys {
			if v == "" {
				delete(base, k)
			} else {
				base[k] = true
			}
		}
		if n := len(base); n > maxMetadataKeys {
			e := errorf(CodeInvalidParameterValue, "%s would have %d keys: Stripe allows at most %d metadata keys", label, n, maxMetadataKeys).
				withHint("remove keys in the same statement (metadata - 'key', or the key set to null), or keep several values under one key as JSON text")
			if had > 0 {
				keys := "keys"
				if had == 1 {
					keys = "key"
				}
				e.withDetail("Stripe merges an update's metadata into what it holds: the synced row has %d %s", had, keys)
				if name != "metadata" {
					e.Detail += " there"
				}
			}
			return e
		}
	}
	return nil
}

// syncedHashes returns, by hash name, the metadata the synced row has in
// the hashes of params an update merges into: the object's own
// (metadata) and that of each element of a list parameter named by its
// id (items[0][metadata] with items[0][id]). current holds the current
// value of the columns the statement assigns, by parameter (the
// metadata column, the items list object); raw is the row's stored copy
// (_raw), for what the statement gives in _params only.
func syncedHashes(params url.Values, current map[string]any, raw []byte) map[string]map[string]any {
	hashes := metadataHashes(params)
	if len(hashes) == 0 {
		return nil
	}
	var copied map[string]any
	decoded := false
	synced := func(param string) any {
		if v, ok := current[param]; ok {
			return v
		}
		if !decoded && raw != nil {
			// Only when needed: a subscription's copy holds its items.
			decoded = true
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if d.Decode(&copied) != nil {
				copied = nil
			}
		}
		return copied[param]
	}
	out := map[string]map[string]any{}
	for name := range hashes {
		if name == "metadata" {
			out[name], _ = synced("metadata").(map[string]any)
			continue
		}
		// name[i][metadata], one level down: an element of a list the
		// row holds, when the call names which one.
		el := strings.TrimSuffix(name, "[metadata]")
		open := strings.IndexByte(el, '[')
		id := params.Get(el + "[id]")
		if open <= 0 || id == "" || strings.Count(el, "[") != 1 {
			// Nothing merged, the keys set are all: an element without
			// an id is new, and the update replaces a schedule's phases
			// and their items with the list sent (neither takes an id;
			// spec: "past phases can be omitted").
			continue
		}
		for _, e := range elementsOf(synced(el[:open])) {
			if m, ok := e.(map[string]any); ok && m["id"] == id {
				out[name], _ = m["metadata"].(map[string]any)
				break
			}
		}
	}
	return out
}

// elementsOf returns the elements of a list as a row holds it (a list
// object, or its data array).
func elementsOf(v any) []any {
	if m, ok := v.(map[string]any); ok {
		v = m["data"]
	}
	a, _ := v.([]any)
	return a
}

// mergesParamsMetadata reports whether the update row r (as Eval
// returned it) sets metadata keys through _params where Stripe merges
// them into metadata the object holds and the statement reads no column
// that has it: the object's own when the metadata column is not
// assigned, an element's named by its id in a list parameter (items)
// whose column is not assigned. Build counts them with the row's stored
// copy then (Objects names it). Only removing keys can't pass the limit,
// and needs none.
func (st *Statement) mergesParamsMetadata(r *evalRow) bool {
	t := st.Table
	if st.Op != Update || !st.Ops.Update {
		return false
	}
	lead := 2
	if st.parentInPath() {
		lead = 3
	}
	if len(r.raw) != lead+2*len(st.Fields) {
		return false
	}
	var extra map[string]any
	assigned := map[string]bool{}
	for i, f := range st.Fields {
		switch f.Role {
		case RoleParam:
			assigned[f.Param.Name] = true
		case RoleExtra:
			v, err := r.value(lead+2*i, f)
			if err != nil {
				return false
			}
			extra, _ = v.(map[string]any)
		}
	}
	for k, v := range extra {
		p, ok := t.UpdateParams[k]
		if !ok || assigned[k] {
			continue
		}
		if k == "metadata" && setsKeys(v) {
			return true
		}
		if !slices.Contains(p.List, "id") || !slices.Contains(p.List, "metadata") {
			continue
		}
		for _, e := range elementsOf(v) {
			if m, ok := e.(map[string]any); ok && m["id"] != nil && setsKeys(m["metadata"]) {
				return true
			}
		}
	}
	return false
}

// setsKeys reports whether v, a metadata value as written, gives a key
// a value (not null nor "", which remove it).
func setsKeys(v any) bool {
	m, _ := v.(map[string]any)
	for _, x := range m {
		if s, isString := x.(string); x != nil && !(isString && s == "") {
			return true
		}
	}
	return false
}

// shortKey cuts a metadata key for a message after 60 characters.
func shortKey(k string) string {
	const max = 60
	if utf8.RuneCountInString(k) <= max {
		return k
	}
	i := 0
	for n := 0; n < max; n++ {
		_, size := utf8.DecodeRuneInString(k[i:])
		i += size
	}
	return k[:i] + "…"
}
