package translate

import (
	"encoding/json"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76/form"
	"github.com/stripe/stripe-mock/param/nestedtypeassembler"
	"github.com/stripe/stripe-mock/param/parser"
)

// FuzzMetadataUpdate: an UPDATE of metadata sends only the change
// (Stripe merges metadata key by key: a value sets its key, an empty
// value removes it, an empty metadata removes them all). Parsed as Stripe
// parses the body and merged into the old metadata as Stripe merges it,
// the change must give exactly the new metadata (less its NULLs, which
// remove their key).
func FuzzMetadataUpdate(f *testing.F) {
	for _, s := range [][2]string{
		{`{"a": "1"}`, `{"a": "2"}`}, {`{"a": "1", "b": "2"}`, `{}`}, {`{}`, `{"a": "1"}`}, {`{"a": "1"}`, `{"a": null, "b": "x"}`},
		{`{"k": "a&b=c"}`, `{"k": "a&b=c", "ü": "%2F"}`}, {`{}`, `{}`}, {`{"a": "1"}`, `{"a": "1"}`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, oldJS, newJS string) {
		old, ok1 := flatStrings(oldJS)
		nw, ok2 := flatStrings(newJS)
		if !ok1 || !ok2 {
			return
		}
		out := url.Values{}
		encodeUpdate(out, "metadata", anyMap(old), anyMap(nw), false)
		fv := &form.Values{}
		for _, k := range slices.Sorted(maps.Keys(out)) {
			for _, x := range out[k] {
				fv.Add(k, x)
			}
		}
		got := map[string]string{}
		for k, v := range old {
			if v != nil {
				got[k] = *v
			}
		}
		if body := fv.Encode(); body != "" {
			pairs, err := parser.ParseFormString(body)
			if err != nil {
				t.Fatalf("%s → %s: body %q does not parse: %v", oldJS, newJS, body, err)
			}
			params, err := nestedtypeassembler.AssembleParams(pairs)
			if err != nil {
				t.Fatalf("%s → %s: body %q does not assemble: %v", oldJS, newJS, body, err)
			}
			switch md := params["metadata"].(type) {
			case string:
				if md != "" {
					t.Fatalf("%s → %s: body %q sets metadata to %q", oldJS, newJS, body, md)
				}
				got = map[string]string{}
			case map[string]any:
				for k, v := range md {
					s, ok := v.(string)
					if !ok {
						t.Fatalf("%s → %s: body %q sends metadata[%s] as %#v", oldJS, newJS, body, k, v)
					}
					if s == "" {
						delete(got, k)
					} else {
						got[k] = s
					}
				}
			default:
				t.Fatalf("%s → %s: body %q parses as %#v", oldJS, newJS, body, params)
			}
			if len(params) != 1 {
				t.Fatalf("%s → %s: body %q sends more than metadata: %#v", oldJS, newJS, body, params)
			}
		}
		want := map[string]string{}
		for k, v := range nw {
			if v != nil {
				want[k] = *v
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s → %s: body %q leaves %v, want %v", oldJS, newJS, fv.Encode(), got, want)
		}
	})
}

// flatStrings reads a JSON object of strings and NULLs whose keys and
// values Stripe's metadata can carry (keys without brackets, non-empty
// values: an empty one removes its key).
func flatStrings(js string) (map[string]*string, bool) {
	var m map[string]*string
	if json.Unmarshal([]byte(js), &m) != nil || m == nil {
		return nil, false
	}
	for k, v := range m {
		if k == "" || strings.ContainsAny(k, "[]") || v != nil && *v == "" {
			return nil, false
		}
	}
	return m, true
}

func anyMap(m map[string]*string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if v == nil {
			out[k] = nil
		} else {
			out[k] = *v
		}
	}
	return out
}
