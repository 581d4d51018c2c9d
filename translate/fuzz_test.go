package translate

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/stripe/stripe-go/v76/form"
	"github.com/stripe/stripe-mock/param/nestedtypeassembler"
	"github.com/stripe/stripe-mock/param/parser"
)

var sqlstate = regexp.MustCompile(`^[0-9A-Z]{5}$`)

// FuzzBuild runs statement text and the values Postgres could return for
// it (Eval's rows: whatever the client's $n parameters, in text or binary
// format, evaluate to, as JSON text) through Classify and Build. Whatever
// arrives, the answer is calls or a *Error with a SQLSTATE, and calls only
// ever come from an INSERT, UPDATE or DELETE of the stripe table they name.
//
// Rows are given as one string: rows separated by \x1e, cells by \x1f, a
// cell "\x00" is SQL NULL. Cells are padded or cut to the width Build
// expects, so that most inputs get past the width check.
func FuzzBuild(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.sql")
	for _, file := range files {
		src, _ := os.ReadFile(file)
		for _, c := range splitCases(&testing.T{}, string(src)) {
			var rows []string
			for _, r := range c.rows {
				var cells []json.RawMessage
				if json.Unmarshal([]byte(r), &cells) != nil {
					continue
				}
				var enc []string
				for i, cell := range cells {
					s := string(cell)
					var id string
					if i == 0 && json.Unmarshal(cell, &id) == nil {
						s = id // UPDATE and DELETE: the id as text
					}
					if s == "null" {
						s = "\x00"
					}
					enc = append(enc, s)
				}
				rows = append(rows, strings.Join(enc, "\x1f"))
			}
			f.Add(c.sql, strings.Join(rows, "\x1e"))
		}
	}
	f.Add(`UPDATE stripe.customers SET metadata = $1 WHERE id = $2`, "cus_1\x1f1\x1f{\"a\": null}\x1f{\"a\": \"b\"}")
	f.Add(`UPDATE stripe.subscriptions SET status = $1 WHERE id = $2`, "sub_1\x1f1\x1f\"canceled\"\x1f\"active\"")
	f.Add(`DELETE FROM stripe.customers WHERE id = $1`, "..")
	f.Fuzz(func(t *testing.T, sql, rowText string) {
		c := Classify(sql)
		readings := []Class{c}
		if c.Action == Write && c.Stmt.Strings != nil {
			readings = []Class{c.Stmt.Strings.On, c.Stmt.Strings.Off}
		}
		for _, c := range readings {
			switch c.Action {
			case Reject:
				if c.Err == nil || !sqlstate.MatchString(c.Err.Code) {
					t.Fatalf("%q: rejected without a SQLSTATE: %+v", sql, c.Err)
				}
				continue
			case Write:
			default:
				continue
			}
			st := c.Stmt
			if st.Deferred != nil {
				if !sqlstate.MatchString(st.Deferred.Code) {
					t.Fatalf("%q: deferred error without a SQLSTATE: %+v", sql, st.Deferred)
				}
				continue
			}
			if st.Table == nil || st.Transcode || st.Strings != nil {
				continue
			}
			rows := fuzzRows(st, rowText)
			calls, err := st.Build(rows)
			if err != nil {
				if !sqlstate.MatchString(err.Code) {
					t.Fatalf("%q %q: error without a SQLSTATE: %+v", sql, rowText, err)
				}
				if calls != nil {
					t.Fatalf("%q: calls and an error", sql)
				}
				continue
			}
			checkCalls(t, sql, st, calls)
		}
	})
}

// fuzzRows splits rowText into rows of the width Build expects for st.
func fuzzRows(st *Statement, rowText string) [][][]byte {
	width := len(st.Fields)
	switch st.Op {
	case Update:
		width = 2 + 2*len(st.Fields)
	case Delete:
		width = 1
	}
	var rows [][][]byte
	for _, r := range strings.Split(rowText, "\x1e") {
		var row [][]byte
		for _, cell := range strings.Split(r, "\x1f") {
			if cell == "\x00" {
				row = append(row, nil)
			} else {
				row = append(row, []byte(cell))
			}
		}
		for len(row) < width {
			row = append(row, nil)
		}
		rows = append(rows, row[:width])
	}
	if st.Op == Insert && len(rows) > st.Rows {
		rows = rows[:st.Rows]
	}
	for st.Op == Insert && len(rows) < st.Rows {
		rows = append(rows, make([][]byte, width))
	}
	return rows
}

func checkCalls(t *testing.T, sql string, st *Statement, calls []RowCalls) {
	t.Helper()
	tree, err := pg_query.ParseToJSON(sql)
	if err != nil {
		t.Fatalf("%q: calls for a text Postgres' parser refuses: %v", sql, err)
	}
	if !strings.Contains(tree, `"relname":"`+st.Table.Name+`"`) ||
		!(strings.Contains(tree, `"InsertStmt"`) || strings.Contains(tree, `"UpdateStmt"`) || strings.Contains(tree, `"DeleteStmt"`)) {
		t.Fatalf("%q: calls to stripe.%s, which it does not write", sql, st.Table.Name)
	}
	if len(calls) > MaxRows {
		t.Fatalf("%q: %d rows of calls", sql, len(calls))
	}
	for _, rc := range calls {
		for _, c := range rc.Calls {
			if c.Method != http.MethodPost && c.Method != http.MethodDelete {
				t.Fatalf("%q: method %s", sql, c.Method)
			}
			if !strings.HasPrefix(c.Path, "/v1/") || strings.ContainsAny(c.Path, "?#") {
				t.Fatalf("%q: path %q", sql, c.Path)
			}
			if st.Op != Insert && !strings.Contains(c.Path, "/"+url.PathEscape(rc.ID)) {
				t.Fatalf("%q: call %s does not name the row's object %q", sql, c.Path, rc.ID)
			}
			for k := range c.Params {
				if k == "" {
					t.Fatalf("%q: a parameter without a name: %s", sql, c)
				}
			}
		}
	}
}

// FuzzFormRoundTrip encodes a jsonb value as a create parameter and
// parses the body as Stripe does (stripe-mock's parser, on the body as
// stripe-go sends it): it must come back as the same structure, less what
// a create does not send (NULLs, empty objects and arrays), with scalars
// as their text.
func FuzzFormRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"tier": "gold"}`, `{"city": "Paris", "line1": "1 rue", "state": null}`, `["fr", "en"]`,
		`{"n": 1, "ok": true, "f": 1.50, "e": 1e400}`, `[{"price": "price_1", "quantity": 2}, {"price": "price_2"}]`,
		`{"a": {"b": {"c": [[1, 2], {"d": "x"}]}}}`, `{"custom_fields": [], "footer": "f"}`, `"plain"`, `{"k": "a&b=c%d+e f"}`,
		`{"ünï": "cödé"}`, `[1, null, 2]`, `{"": "x"}`, `{"a[b]": "x"}`, `{"a]": "x"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, js string) {
		d := json.NewDecoder(strings.NewReader(js))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil || d.More() {
			return
		}
		if _, ok := v.(map[string]any); !ok {
			if _, ok := v.([]any); !ok {
				return // a scalar is sent as it is
			}
		}
		if _, bad := badFormKey(v); bad {
			return // refused before any call (TestBracketKeysRefused)
		}
		out := url.Values{}
		encodeCreate(out, "p", v)
		fv := &form.Values{}
		for _, k := range slices.Sorted(maps.Keys(out)) {
			for _, x := range out[k] {
				fv.Add(k, x)
			}
		}
		pairs, err := parser.ParseFormString(fv.Encode())
		if err != nil {
			t.Fatalf("%s: body %q does not parse: %v", js, fv.Encode(), err)
		}
		got, err := nestedtypeassembler.AssembleParams(pairs)
		if err != nil {
			t.Fatalf("%s: body %q does not assemble: %v", js, fv.Encode(), err)
		}
		want := map[string]any{}
		if w := sentForm(v); w != nil {
			want["p"] = w
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: body %q parses as %#v, want %#v", js, fv.Encode(), got, want)
		}
	})
}

// sentForm is v as a create sends it and Stripe parses it back: scalars
// as their text, arrays as objects keyed by index (Stripe's array[i]; the
// parameter's type decides whether Stripe reads them as an array), without
// what a create leaves out.
func sentForm(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if s := sentForm(e); s != nil {
				out[k] = s
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		out := map[string]any{}
		for i, e := range x {
			if s := sentForm(e); s != nil {
				out[strconv.Itoa(i)] = s
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return scalar(v)
}

// TestBracketKeysRefused: a jsonb key with [ or ], or an empty one,
// can't be carried by Stripe's bracketed form: metadata {"a]": "x"} was
// sent as metadata[a]]=x, which Stripe's parser reads as metadata[a]
// (and an UPDATE removing it as a removal of key "a"). Found by
// FuzzFormRoundTrip. Now the statement is refused before any call.
func TestBracketKeysRefused(t *testing.T) {
	ins := Classify(`INSERT INTO stripe.customers (email, metadata) VALUES ($1, $2), ($3, $4)`)
	for _, md := range []string{`{"a]": "x"}`, `{"a[b]": "x"}`, `{"": "x"}`, `{"ok": {"[": 1}}`} {
		_, err := ins.Stmt.Build([][][]byte{{[]byte(`"a@b.co"`), []byte(`{"ok": "1"}`)}, {[]byte(`"c@d.co"`), []byte(md)}})
		if err == nil || err.Code != CodeInvalidParameterValue || !strings.Contains(err.Detail, "row 2 of 2") {
			t.Errorf("INSERT metadata %s: %v", md, err)
		}
	}
	up := Classify(`UPDATE stripe.customers SET metadata = $1 WHERE id = $2`)
	// Removing the key "a]" would remove "a" instead.
	_, err := up.Stmt.Build([][][]byte{{[]byte("cus_1"), []byte("1"), []byte(`{"a": "keep"}`), []byte(`{"a": "keep", "a]": "x"}`)}})
	if err == nil || err.Code != CodeInvalidParameterValue {
		t.Errorf("UPDATE removing a bracketed key: %v", err)
	}
	params := Classify(`INSERT INTO stripe.customers (email, _params) VALUES ('a@b.co', $1)`)
	_, err = params.Stmt.Build([][][]byte{{[]byte(`"a@b.co"`), []byte(`{"metadata": {"x]": "y"}}`)}})
	if err == nil || err.Code != CodeInvalidParameterValue {
		t.Errorf("_params with a bracketed key: %v", err)
	}
	// Brackets in values are fine.
	calls, err := ins.Stmt.Build([][][]byte{{[]byte(`"a@b.co"`), []byte(`{"k": "[v]"}`)}, {[]byte(`"c@d.co"`), nil}})
	if err != nil || calls[0].Calls[0].Params.Get("metadata[k]") != "[v]" {
		t.Errorf("bracket in a value: %v %+v", err, calls)
	}
}
