package translate

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// mdJSON is a metadata object of the keys k<from>..k<from+n-1>, value v.
func mdJSON(from, n int, extra map[string]string) string {
	m := map[string]string{}
	for i := from; i < from+n; i++ {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestMetadataLimits: a row whose metadata Stripe would refuse (51
// keys, a key over 40 characters, a value over 500, counted in
// characters) is refused with 22023 before any call of the statement,
// naming the hash, the key and the row, also when it is the last row of
// an INSERT (Stripe would have refused it only after creating the rows
// before it). At the limits, it is sent.
func TestMetadataLimits(t *testing.T) {
	const ins3 = `INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', $1), ('b@b.co', $2), ('c@b.co', $3)`
	ok := `["a@b.co", {"a": "1"}]`
	row := func(md string) string { return `["c@b.co", ` + md + `]` }
	for _, c := range []struct {
		name, md string
		want     []string // in the message; nil: accepted
	}{
		{"51 keys", mdJSON(0, 51, nil), []string{"metadata of stripe.customers would have 51 keys", "at most 50"}},
		{"41-character key", mdJSON(0, 1, map[string]string{strings.Repeat("x", 41): "v"}), []string{`the key "xxxxxxxx`, "41 characters", "at most 40"}},
		{"501-character value", mdJSON(0, 1, map[string]string{"long": strings.Repeat("é", 501)}), []string{"a value of 501 characters", `the key "long"`, "at most 500"}},
		{"bracket in key", `{"a[b]": "v"}`, []string{`"a[b]"`}},
		// Keys set to null are not sent, so they don't count.
		{"50 keys and a null", `{"gone": null, ` + mdJSON(0, 50, nil)[1:], nil},
		{"at the limits", mdJSON(0, 49, map[string]string{strings.Repeat("é", 40): strings.Repeat("é", 500)}), nil},
	} {
		calls, err := build(t, ins3, ok, ok, row(c.md))
		if c.want == nil {
			if err != nil || len(calls) != 3 {
				t.Errorf("%s: %v, want 3 rows of calls", c.name, err)
			}
			continue
		}
		if err == nil || calls != nil || err.Code != CodeInvalidParameterValue {
			t.Errorf("%s: calls %v, err %v; want 22023 and no calls", c.name, calls, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Message, w) {
				t.Errorf("%s: message %q lacks %q", c.name, err.Message, w)
			}
		}
		if !strings.Contains(err.Detail, "in row 3 of 3") {
			t.Errorf("%s: detail %q does not name the row", c.name, err.Detail)
		}
		if strings.Contains(err.Message+err.Detail+err.Hint, "éééééééééé") {
			t.Errorf("%s: the value is quoted in the error: %s", c.name, err.Message)
		}
	}
}

// TestMetadataMergedOnUpdate: Stripe merges an UPDATE's metadata
// into the object's, so the 50 keys are counted on the result, from the
// synced row: a 51st key is refused, one that replaces a removed key (or
// a changed value) is sent, and a SET that leaves out keys removes them.
func TestMetadataMergedOnUpdate(t *testing.T) {
	const upd = `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`
	stored := mdJSON(0, 50, nil)
	for _, c := range []struct {
		name, nw string
		refused  bool
		body     string // the form body sent, where accepted ("": not checked)
	}{
		{"51st key", mdJSON(0, 50, map[string]string{"new": "v"}), true, ""},
		{"one out, one in: 50", mdJSON(1, 49, map[string]string{"new": "v"}), false, "metadata[k0]=&metadata[new]=v"},
		{"one nulled, one in: 50", `{"k0": null, ` + mdJSON(1, 49, map[string]string{"new": "v"})[1:], false, "metadata[k0]=&metadata[new]=v"},
		{"a value changed", mdJSON(0, 50, map[string]string{"k7": "w"}), false, "metadata[k7]=w"},
		{"replaced whole", mdJSON(100, 50, nil), false, ""},
	} {
		calls, err := build(t, upd, `["cus_1", `+c.nw+`, `+stored+`]`)
		if c.refused {
			if err == nil || calls != nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "would have 51 keys") || !strings.Contains(err.Detail, "the synced row has 50 keys") {
				t.Errorf("%s: calls %v, err %+v; want 22023 counting 51 keys", c.name, calls, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := oneBody(t, calls); c.body != "" && got != c.body {
			t.Errorf("%s: body %s, want %s", c.name, got, c.body)
		}
	}
}

// TestNestedMetadataLimits: a metadata hash inside another
// parameter (an item's, in the items column or in _params) has the same
// limits, named by its form key.
func TestNestedMetadataLimits(t *testing.T) {
	items := `[{"price": "price_1", "metadata": ` + mdJSON(0, 51, nil) + `}]`
	_, err := build(t, `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`, `["cus_1", `+items+`]`)
	if err == nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "items[0][metadata] of stripe.subscriptions would have 51 keys") {
		t.Errorf("items column: %+v", err)
	}
	params := `{"items": [{"price": "price_1", "metadata": {"v": "` + strings.Repeat("x", 501) + `"}}]}`
	_, err = build(t, `INSERT INTO stripe.subscriptions (customer, _params) VALUES ('cus_1', $1)`, `["cus_1", `+params+`]`)
	if err == nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "items[0][metadata] of stripe.subscriptions has a value of 501 characters") {
		t.Errorf("_params: %+v", err)
	}
}
