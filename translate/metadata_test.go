package translate

import (
	"encoding/json"
	"fmt"
	"reflect"
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

// TestObjectsNamesRowForParamsMetadata: Objects names an
// UPDATE's own row (its table, its id, once) when _params sets metadata
// keys and the statement does not assign the metadata column, whose
// current value Build counts on instead; not when _params only removes
// keys, sets none, or the update takes no metadata.
func TestObjectsNamesRowForParamsMetadata(t *testing.T) {
	for _, c := range []struct {
		name, sql string
		row       []string // after id and version: new and old of each field
		want      []ObjectRef
	}{
		{"a key set", `UPDATE stripe.customers SET _params = $1 WHERE id = 'cus_1'`,
			[]string{`{"metadata": {"x": "v", "y": null}}`, ``}, []ObjectRef{{Table: "customers", ID: "cus_1"}}},
		{"with another column", `UPDATE stripe.customers SET email = 'a@b.co', _params = $1 WHERE id = 'cus_1'`,
			[]string{`"a@b.co"`, `"b@b.co"`, `{"metadata": {"x": "v"}}`, ``}, []ObjectRef{{Table: "customers", ID: "cus_1"}}},
		{"keys removed only", `UPDATE stripe.customers SET _params = $1 WHERE id = 'cus_1'`,
			[]string{`{"metadata": {"x": null, "y": ""}}`, ``}, nil},
		{"no metadata", `UPDATE stripe.customers SET _params = $1 WHERE id = 'cus_1'`,
			[]string{`{"invoice_prefix": "ABC"}`, ``}, nil},
		{"metadata column assigned", `UPDATE stripe.customers SET metadata = metadata, _params = $1 WHERE id = 'cus_1'`,
			[]string{`{"a": "1"}`, `{"a": "1"}`, `{"metadata": {"x": "v"}}`, ``}, nil},
		{"no update of the object", `UPDATE stripe.checkout_sessions SET status = 'expired', _params = $1 WHERE id = 'cs_1'`,
			[]string{`"expired"`, `"open"`, `{"metadata": {"x": "v"}}`, ``}, nil},
	} {
		st := Classify(c.sql).Stmt
		if st == nil {
			t.Fatalf("%s: not a write", c.name)
		}
		id := strings.Split(strings.Split(c.sql, "id = '")[1], "'")[0]
		row := [][]byte{[]byte(id), []byte("1")}
		for _, v := range c.row {
			if v == "" {
				row = append(row, nil)
			} else {
				row = append(row, []byte(v))
			}
		}
		// Twice: one id is one object.
		if got := st.Objects(NewRows([][][]byte{row, row})); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Objects = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestParamsMetadataMergedWithStored: metadata an UPDATE gives in
// _params is counted on what Stripe merges it into, the row's stored
// copy: a 51st key is refused (the detail names the synced row's keys),
// a key removed makes room for one, and without a stored copy, or with
// one that has no metadata, only the keys set count (never refused for
// keys not known to be in Stripe).
func TestParamsMetadataMergedWithStored(t *testing.T) {
	const upd = `UPDATE stripe.customers SET _params = $1 WHERE id = 'cus_1'`
	ref := ObjectRef{Table: "customers", ID: "cus_1"}
	full := Stored{ref: []byte(`{"id": "cus_1", "object": "customer", "metadata": ` + mdJSON(0, 50, nil) + `}`)}
	for _, c := range []struct {
		name, params string
		stored       Stored
		body         string // "": refused
	}{
		{"51st key", `{"metadata": {"new": "v"}}`, full, ""},
		{"one out, one in", `{"metadata": {"k0": null, "new": "v"}}`, full, "metadata[k0]=&metadata[new]=v"},
		{"a value changed", `{"metadata": {"k7": "w"}}`, full, "metadata[k7]=w"},
		{"cleared first", `{"metadata": ""}`, full, "metadata="},
		{"no stored copy", `{"metadata": {"new": "v"}}`, nil, "metadata[new]=v"},
		{"stored without metadata", `{"metadata": {"new": "v"}}`, Stored{ref: []byte(`{"id": "cus_1", "metadata": null}`)}, "metadata[new]=v"},
	} {
		calls, err := buildStored(t, c.stored, upd, `["cus_1", `+c.params+`, null]`)
		if c.body == "" {
			if err == nil || calls != nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "metadata of stripe.customers would have 51 keys") || !strings.Contains(err.Detail, "the synced row has 50 keys") {
				t.Errorf("%s: calls %v, err %+v; want 22023 counting 51 keys", c.name, calls, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := oneBody(t, calls); got != c.body {
			t.Errorf("%s: body %s, want %s", c.name, got, c.body)
		}
	}
}

// TestItemMetadataMergedWithStored: an item named by its id in
// an UPDATE's items (the column read back and edited, or _params) has
// its metadata merged by Stripe as the object's is, so its 50 keys are
// counted with the keys the synced row holds for that item: the items
// column's current value, or the row's stored copy for _params (which
// Objects names). A new item, or one the row does not hold, counts only
// the keys set.
func TestItemMetadataMergedWithStored(t *testing.T) {
	item := func(id, md string) string {
		return `{"id": "` + id + `", "object": "subscription_item", "price": {"id": "price_1", "object": "price"}, "quantity": 1, "metadata": ` + md + `}`
	}
	list := func(items ...string) string {
		return `{"object": "list", "has_more": false, "data": [` + strings.Join(items, ", ") + `]}`
	}
	full, small := mdJSON(0, 50, nil), `{"a": "1"}`
	stored := list(item("si_1", full), item("si_2", small))

	const col = `UPDATE stripe.subscriptions SET items = $1 WHERE id = 'sub_1'`
	for _, c := range []struct {
		name, items string
		refused     string // the hash named; "": sent
	}{
		{"51st key on the full item", list(item("si_1", mdJSON(0, 50, map[string]string{"x": "v"})), item("si_2", small)), "items[0][metadata]"},
		{"one out, one in", list(item("si_1", mdJSON(1, 49, map[string]string{"x": "v"})), item("si_2", small)), ""},
		{"a key on the small item", list(item("si_1", full), item("si_2", `{"a": "1", "x": "v"}`)), ""},
	} {
		calls, err := build(t, col, `["sub_1", `+c.items+`, `+stored+`]`)
		if c.refused != "" {
			if err == nil || calls != nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, c.refused+" of stripe.subscriptions would have 51 keys") || !strings.Contains(err.Detail, "the synced row has 50 keys there") {
				t.Errorf("items column, %s: calls %v, err %+v; want 22023 counting 51 keys in %s", c.name, calls, err, c.refused)
			}
		} else if err != nil {
			t.Errorf("items column, %s: %v", c.name, err)
		}
	}

	const prm = `UPDATE stripe.subscriptions SET _params = $1 WHERE id = 'sub_1'`
	raw := Stored{{Table: "subscriptions", ID: "sub_1"}: []byte(`{"id": "sub_1", "object": "subscription", "metadata": {}, "items": ` + stored + `}`)}
	for _, c := range []struct {
		name, params string
		stored       Stored
		refused      bool
	}{
		{"51st key on the full item", `{"items": [{"id": "si_2", "metadata": {"x": "v"}}, {"id": "si_1", "metadata": {"x": "v"}}]}`, raw, true},
		{"one out, one in", `{"items": [{"id": "si_1", "metadata": {"k0": null, "x": "v"}}]}`, raw, false},
		{"no stored copy", `{"items": [{"id": "si_1", "metadata": {"x": "v"}}]}`, nil, false},
		{"an item the row does not hold", `{"items": [{"id": "si_9", "metadata": {"x": "v"}}]}`, raw, false},
		{"a new item", `{"items": [{"price": "price_1", "metadata": ` + mdJSON(0, 50, nil) + `}]}`, raw, false},
	} {
		calls, err := buildStored(t, c.stored, prm, `["sub_1", `+c.params+`, null]`)
		if c.refused {
			if err == nil || calls != nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Message, "items[1][metadata] of stripe.subscriptions would have 51 keys") {
				t.Errorf("_params, %s: calls %v, err %+v; want 22023 counting 51 keys in items[1][metadata]", c.name, calls, err)
			}
		} else if err != nil {
			t.Errorf("_params, %s: %v", c.name, err)
		}
	}

	st := Classify(prm).Stmt
	row := [][]byte{[]byte("sub_1"), []byte("1"), []byte(`{"items": [{"id": "si_1", "metadata": {"x": "v"}}]}`), nil}
	if got, want := st.Objects(NewRows([][][]byte{row})), []ObjectRef{{Table: "subscriptions", ID: "sub_1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Objects = %v, want %v", got, want)
	}
	row[2] = []byte(`{"items": [{"price": "price_1", "metadata": {"x": "v"}}, {"id": "si_1", "metadata": {"x": null}}]}`)
	if got := st.Objects(NewRows([][][]byte{row})); got != nil {
		t.Errorf("Objects = %v for a new item and keys removed only, want none", got)
	}
}

// TestMetadataKeyCountDetail: the DETAIL of a refused 51st key
// counts the synced row's keys in English ("has 1 key", not "has 1 keys",
// which a user met on a customer with one key).
func TestMetadataKeyCountDetail(t *testing.T) {
	const upd = `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`
	for _, c := range []struct {
		stored int
		want   string
	}{
		{1, "the synced row has 1 key"},
		{2, "the synced row has 2 keys"},
	} {
		// The stored keys kept and more: 51 in all.
		_, err := build(t, upd, `["cus_1", `+mdJSON(0, 51, nil)+`, `+mdJSON(0, c.stored, nil)+`]`)
		if err == nil || err.Code != CodeInvalidParameterValue {
			t.Fatalf("%d stored keys: err %+v, want 22023", c.stored, err)
		}
		if !strings.HasSuffix(err.Detail, c.want) {
			t.Errorf("%d stored keys: detail %q, want it to end with %q", c.stored, err.Detail, c.want)
		}
	}
}
