package translate

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strconv"
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
	nm, nok := v.(map[string]any)
	om, ook := old.(map[string]any)
	if !nok || !ook {
		if isEmpty(v) {
			out.Set(name, "")
			return
		}
		encodeCreate(out, name, v)
		return
	}
	keys := map[string]bool{}
	for k := range nm {
		keys[k] = true
	}
	for k := range om {
		keys[k] = true
	}
	sent := false
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		nv, present := nm[k]
		ov := om[k]
		key := name + "[" + k + "]"
		switch {
		case !present || nv == nil:
			if ov != nil {
				out.Set(key, "")
				sent = true
			}
		case !full && equalJSON(ov, nv):
		case full:
			if om2, ok := ov.(map[string]any); ok {
				if nm2, ok := nv.(map[string]any); ok {
					encodeUpdate(out, key, om2, nm2, true)
					sent = true
					continue
				}
			}
			if isEmpty(nv) {
				// encodeCreate sends nothing for an empty array or
				// object: emptying one that had content must unset it
				// (custom_fields: []), or the change is silently lost.
				if ov != nil && !isEmpty(ov) {
					out.Set(key, "")
				}
			} else {
				encodeCreate(out, key, nv)
			}
			sent = true
		default:
			encodeUpdate(out, key, ov, nv, false)
			sent = true
		}
	}
	if !sent && len(nm) == 0 {
		out.Set(name, "")
	}
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
