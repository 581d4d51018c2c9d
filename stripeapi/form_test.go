package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76/form"
)

// TestBodyInStripeGoOrder: the body of a POST lists an array's
// elements in index order and a hash's keys sorted, byte for byte as
// stripe-go's encoder writes the same params. A plain sort of the keys
// sent items[10] and items[11] between items[1] and items[2].
func TestBodyInStripeGoOrder(t *testing.T) {
	items := make([]map[string]any, 12)
	params := url.Values{"customer": {"cus_1"}, "metadata[b]": {"2"}, "metadata[a]": {"1 & 2"}}
	for i := range items {
		items[i] = map[string]any{"price": fmt.Sprintf("price_%d", i), "quantity": int64(i + 1)}
		params.Set(fmt.Sprintf("items[%d][price]", i), fmt.Sprintf("price_%d", i))
		params.Set(fmt.Sprintf("items[%d][quantity]", i), fmt.Sprint(i+1))
	}
	rates := make([]string, 11)
	for i := range rates {
		rates[i] = fmt.Sprintf("txr_%d", i)
		params.Set(fmt.Sprintf("items[2][tax_rates][%d]", i), rates[i])
	}
	items[2]["tax_rates"] = rates
	fv := &form.Values{}
	form.AppendTo(fv, map[string]any{
		"customer": "cus_1",
		"items":    items,
		"metadata": map[string]string{"b": "2", "a": "1 & 2"},
	})
	want := fv.Encode()

	var got string
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		fmt.Fprint(w, `{"id":"sub_1","object":"subscription"}`)
	}, Config{})
	if _, err := c.Post(context.Background(), "/v1/subscriptions", params, "idem_1"); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("body\n got:  %s\n want: %s", got, want)
	}
}

// FuzzCompareKeys: compareKeys is a total order on any keys, so
// that Form's sort is well defined: a key equals only itself, the order
// of two keys does not depend on which comes first, and it is
// transitive.
func FuzzCompareKeys(f *testing.F) {
	for _, s := range [][3]string{
		{"items[2][price]", "items[10][price]", "items[1][tax_rates][0]"},
		{"metadata[a]", "metadata[b]", "metadata"},
		{"a[01]", "a[1]", "a[b]"},
		{"a[18446744073709551616]", "a[9]", "a[x]"},
		{"a[", "a[]", "a[][]"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		checkTotalOrder(t, a, b, c)
	})
}

func checkTotalOrder(t *testing.T, a, b, c string) {
	t.Helper()
	sign := func(x, y string) int {
		switch c := compareKeys(x, y); {
		case c < 0:
			return -1
		case c > 0:
			return 1
		}
		return 0
	}
	for _, p := range [][2]string{{a, b}, {b, c}, {a, c}} {
		x, y := p[0], p[1]
		if s := sign(x, y); (s == 0) != (x == y) || s != -sign(y, x) {
			t.Fatalf("compareKeys(%q, %q) = %d, compareKeys(%q, %q) = %d", x, y, s, y, x, sign(y, x))
		}
	}
	for _, k := range [][3]string{{a, b, c}, {a, c, b}, {b, a, c}, {b, c, a}, {c, a, b}, {c, b, a}} {
		if sign(k[0], k[1]) <= 0 && sign(k[1], k[2]) <= 0 && sign(k[0], k[2]) > 0 {
			t.Fatalf("not transitive: %q ≤ %q ≤ %q but %q > %q", k[0], k[1], k[2], k[0], k[2])
		}
	}
}

// TestCompareKeysTransitive: parts that read as numbers compared
// by number, and otherwise as text, made a cycle (9 < 10 as numbers,
// 10 < 5a and 5a < 9 as text): with such keys in one hash (metadata, a
// _params object) the sort had no defined result, and could split the
// keys of one element from each other. Found by FuzzCompareKeys.
func TestCompareKeysTransitive(t *testing.T) {
	for _, k := range [][3]string{
		{"9", "10", "5a"},
		{"p[9]", "p[10]", "p[5a]"},
		{"p[9][x]", "p[10][x]", "p[5a][x]"},
		{"p[7]", "p[99999999999999999999]", "p[8]"},
		{"p[1]", "p[01]", "p[1a]"},
		{"0A", "1", "02"},
	} {
		checkTotalOrder(t, k[0], k[1], k[2])
	}
}

// FuzzForm: whatever the nesting, Form lists the keys of each
// array element together, the elements in index order, and the body is
// byte for byte stripe-go's for the same value where that is comparable
// (encodingsDiffer: the order of a hash's keys means nothing to Stripe).
func FuzzForm(f *testing.F) {
	for _, s := range []string{
		`{"customer": "cus_1", "items": [{"price": "p0", "tax_rates": ["a","b","c","d","e","f","g","h","i","j","k","l"]}, {"price": "p1"}]}`,
		`{"a": [[1, 2], [[3]], {"b": [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]}]}`,
		`{"metadata": {"9": "x", "10": "y", "5a": "z", "b": {"c": "d"}}}`,
		`{"x": "&=?", "y": true, "z": 1.5e3}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		d := json.NewDecoder(strings.NewReader(js))
		d.UseNumber()
		var top map[string]any
		if d.Decode(&top) != nil || d.More() {
			return
		}
		v, ok := plainParams(top)
		if !ok {
			return // nothing to send, or a key the encoding can't carry
		}
		params := url.Values{}
		arrays := map[string]bool{}
		encodeBracketed(params, arrays, "", v)

		got := Form(params)
		seen := map[string][]string{} // prefix → its children, in order of first appearance
		last := map[string]string{}   // prefix → the child the previous key under it was in
		for _, pair := range strings.Split(got.Encode(), "&") {
			k, _, _ := strings.Cut(pair, "=")
			k, err := url.QueryUnescape(k)
			if err != nil {
				t.Fatalf("%s: key %q: %v", js, k, err)
			}
			parts := keyParts(k)
			for i := 1; i < len(parts); i++ {
				prefix := strings.Join(parts[:i], "\x00")
				child := parts[i]
				if last[prefix] == child {
					continue
				}
				if slices.Contains(seen[prefix], child) {
					t.Fatalf("%s: the keys under %q are split:\n%s", js, strings.Join(parts[:i+1], "]["), got.Encode())
				}
				if arrays[prefix] && strconv.Itoa(len(seen[prefix])) != child {
					t.Fatalf("%s: element %s of %q comes after %v:\n%s", js, child, strings.Join(parts[:i], "]["), seen[prefix], got.Encode())
				}
				seen[prefix] = append(seen[prefix], child)
				last[prefix] = child
			}
		}
		if encodingsDiffer(v) {
			return
		}
		want := &form.Values{}
		form.AppendTo(want, v)
		if got.Encode() != want.Encode() {
			t.Fatalf("%s:\n got:  %s\n want: %s", js, got.Encode(), want.Encode())
		}
	})
}

// plainParams is v with its scalars as text and without what a create
// leaves out (nulls, empty hashes and arrays); ok is false when nothing
// is left or a key has a bracket or is empty.
func plainParams(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == "" || strings.ContainsAny(k, "[]") {
				return nil, false
			}
			if p, ok := plainParams(e); ok {
				out[k] = p
			}
		}
		return out, len(out) > 0
	case []any:
		var out []any
		for _, e := range x {
			if p, ok := plainParams(e); ok {
				out = append(out, p)
			}
		}
		return out, len(out) > 0
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case string:
		return x, true
	}
	return nil, false
}

// encodeBracketed adds v to params as Stripe's bracketed form, recording
// the key parts (joined by \x00) of its arrays.
func encodeBracketed(params url.Values, arrays map[string]bool, name string, v any) {
	key := func(k string) string {
		if name == "" {
			return k
		}
		return name + "[" + k + "]"
	}
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			encodeBracketed(params, arrays, key(k), x[k])
		}
	case []any:
		arrays[strings.Join(keyParts(name), "\x00")] = true
		for i, e := range x {
			encodeBracketed(params, arrays, key(strconv.Itoa(i)), e)
		}
	case string:
		params.Add(name, x)
	}
}

// encodingsDiffer: stripe-go's encoding of v is not comparable with Form's
// of the same params: a hash has a key of digits only (sorted as text
// by stripe-go, as an index by Form), or an array has an empty string
// (stripe-go leaves it out; the params Form gets have it).
func encodingsDiffer(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if strings.Trim(k, "0123456789") == "" || encodingsDiffer(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if e == "" || encodingsDiffer(e) {
				return true
			}
		}
	}
	return false
}

// bigForm is a body of n metadata keys and n/10 items with ten tax
// rates each: the two shapes a large statement gives Form.
func bigForm(n int) url.Values {
	p := url.Values{}
	for i := 0; i < n; i++ {
		p.Set(fmt.Sprintf("metadata[k%d]", i), "v")
	}
	for i := 0; i < n/10; i++ {
		for j := 0; j < 10; j++ {
			p.Set(fmt.Sprintf("items[%d][tax_rates][%d]", i, j), "txr")
		}
	}
	return p
}

// TestFormSplitsKeysOnce: Form's sort splits each key into its
// parts once. Splitting both keys at every comparison made allocations
// grow with n log n (about 40 per key at 200,000 keys), and a 200,000-key
// metadata hash took seconds to encode; the bound here is per key,
// whatever n.
func TestFormSplitsKeysOnce(t *testing.T) {
	p := bigForm(20000)
	allocs := testing.AllocsPerRun(2, func() { Form(p) })
	if perKey := allocs / float64(len(p)); perKey > 4 {
		t.Fatalf("Form made %.0f allocations for %d keys (%.1f per key), want at most 4 per key", allocs, len(p), perKey)
	}
}

func BenchmarkForm(b *testing.B) {
	p := bigForm(100000)
	b.ResetTimer()
	for range b.N {
		Form(p)
	}
}
