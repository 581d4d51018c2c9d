package translate

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stripe/stripe-mock/param/nestedtypeassembler"
	"github.com/stripe/stripe-mock/param/parser"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// jsonbCases are real parameters whose value a statement gives as jsonb
// (column is the cell that gets the fuzzed value, param the Stripe
// parameter it becomes); the other cells hold valid values.
var jsonbCases = []struct {
	sql, column, param string
	cells              map[string]string
	update             bool
}{
	{sql: `INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`, column: "items", param: "items",
		cells: map[string]string{"customer": `"cus_1"`}},
	{sql: `INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', $1)`, column: "metadata", param: "metadata",
		cells: map[string]string{"email": `"a@b.co"`}},
	{sql: `INSERT INTO stripe.payment_intents (currency, _params) VALUES ('usd', $1)`, column: "_params", param: "amount",
		cells: map[string]string{"currency": `"usd"`}},
	{sql: `INSERT INTO stripe.products (name, _params) VALUES ('p', $1)`, column: "_params", param: "default_price_data",
		cells: map[string]string{"name": `"p"`}},
	{sql: `UPDATE stripe.customers SET metadata = $1 WHERE id = 'cus_1'`, column: "metadata", param: "metadata", update: true},
}

var integerTextRe = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// FuzzFormValues puts arbitrary jsonb (nested hashes and arrays,
// -0, 1e400, long digit strings, fractions) into real parameters:
// subscription items, metadata (create and update), a payment intent's
// top-level integer amount and a product's default_price_data (through
// _params). Whatever arrives: no panic; a refusal is a *Error with
// SQLSTATE 22023 (23502 where the value sends nothing and Stripe requires
// the parameter); an accepted value's body, parsed back as Stripe parses
// it, is the value written: arrays with indices 0…n-1 and no gap, a
// number at a place Stripe takes only an integer as integer text of the
// same number, other scalars as their text, less what the encoding
// leaves out (nulls, empty hashes, empty arrays or "" for one).
func FuzzFormValues(f *testing.F) {
	for _, s := range []struct {
		c  uint8
		js string
	}{
		{0, `[{"price": "price_1", "quantity": 2}, {"price": "price_2", "quantity": 1.0e1, "tax_rates": []}]`},
		{0, `[{"price": "price_1", "quantity": 2.5}]`},
		{0, `[{"price_data": {"currency": "usd", "product": "prod_1", "recurring": {"interval": "month", "interval_count": 1e400}, "unit_amount": -0}}]`},
		{0, `[{"price": "price_1", "metadata": {"k": "v", "n": 1.5}}, null]`},
		{0, `[{"price": {"id": "price_1", "object": "price"}, "tax_rates": [{"id": "txr_1", "object": "tax_rate"}]}]`},
		{1, `{"a": "1", "b": 2.50, "c": true, "d": null, "e": {"f": [1, [2]]}}`},
		{1, `{"n": 123456789012345678901234567890}`},
		{2, `{"amount": 1e400}`},
		{2, `{"amount": -0.0}`},
		{2, `{"amount": 12.00, "metadata": {"x": []}}`},
		{2, `{"amount": 1e-400}`},
		{2, `{"amount": 99999999999999999999999999999999999999.000000000000000000000000000000000}`},
		{2, `{"amount": 100, "payment_method_types": []}`},
		{3, `{"default_price_data": {"currency": "usd", "unit_amount": 1.20e2, "recurring": {"interval": "month", "interval_count": 3.0}}}`},
		{4, `{"a": null, "b": "x", "c": {}}`},
		{4, `{}`},
	} {
		f.Add(s.c, s.js)
	}
	f.Fuzz(func(t *testing.T, which uint8, js string) {
		c := jsonbCases[int(which)%len(jsonbCases)]
		d := json.NewDecoder(strings.NewReader(js))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil || d.More() {
			return // Postgres hands over jsonb only
		}
		cl := Classify(c.sql)
		if cl.Action != Write || cl.Stmt.Deferred != nil {
			t.Fatalf("%s: %+v", c.sql, cl)
		}
		st := cl.Stmt
		var row [][]byte
		if c.update {
			row = [][]byte{[]byte("cus_1"), []byte("1"), []byte(js), []byte(`{}`)}
		} else {
			for _, fl := range st.Fields {
				if fl.Column == c.column {
					row = append(row, []byte(js))
				} else {
					row = append(row, []byte(c.cells[fl.Column]))
				}
			}
		}
		calls, err := st.Build([][][]byte{row})
		if err != nil {
			switch {
			case err.Code == CodeInvalidParameterValue:
			case err.Code == CodeNotNullViolation && encodesToNothing(v):
			case err.Code == CodeUndefinedColumn && c.column == ParamsColumn:
				// a _params key that is not a parameter of the create
			case err.Code == CodeUndefinedColumn && givenWhole(st, c.column, v):
				// an object with content where Stripe takes only its id
				// (README: refused, 42703, unless it is as stored, and
				// nothing is stored here)
			default:
				t.Fatalf("%d %s: refused with %s: %s", which, js, err.Code, err.Error())
			}
			if calls != nil {
				t.Fatalf("%d %s: calls and an error", which, js)
			}
			return
		}
		if len(calls) != 1 || len(calls[0].Calls) > 1 {
			t.Fatalf("%d %s: calls %+v", which, js, calls)
		}
		got := map[string]any{}
		if len(calls[0].Calls) == 1 {
			body := stripeapi.Form(calls[0].Calls[0].Params).Encode()
			if body != "" {
				pairs, perr := parser.ParseFormString(body)
				if perr != nil {
					t.Fatalf("%d %s: body %q does not parse: %v", which, js, body, perr)
				}
				if got, perr = nestedtypeassembler.AssembleParams(pairs); perr != nil {
					t.Fatalf("%d %s: body %q does not assemble: %v", which, js, body, perr)
				}
			}
		}
		want := v
		table := st.Table
		p := table.CreateParams[c.param]
		if c.update {
			p = table.UpdateParams[c.param]
		}
		if c.column == ParamsColumn {
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%d %s: _params not an object accepted", which, js)
			}
			// Only the fuzzed parameter is checked; other keys of
			// _params are parameters of their own.
			for k := range m {
				if k != c.param {
					delete(got, k)
				}
			}
			want = m[c.param]
		}
		g, sent := got[c.param]
		delete(got, c.param)
		for k := range got {
			if _, ok := c.cells[k]; !ok {
				t.Fatalf("%d %s: body has %q, which the statement does not give", which, js, k)
			}
		}
		if !sent {
			if want != nil && !encodesToNothing(want) {
				t.Fatalf("%d %s: %s not sent", which, js, c.param)
			}
			return
		}
		if msg := sameValue(p, c.param, "", want, g); msg != "" {
			t.Fatalf("%d %s: %s\nparams: %s", which, js, msg, calls[0].Calls[0].Params.Encode())
		}
	})
}

// givenWhole reports whether v, written to column, has an object with
// keys besides its id at a place where Stripe takes only the id
// (checkObjects refuses such an object unless a copy shows it unchanged).
func givenWhole(st *Statement, column string, v any) bool {
	whole := false
	for _, f := range st.Fields {
		if f.Column == column {
			eachIDPlace(f, v, func(_ string, m map[string]any) { whole = whole || hasContent(m) })
		}
	}
	return whole
}

// encodesToNothing: the encoding sends nothing for v, or only "" (an
// emptied array or hash).
func encodesToNothing(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, e := range x {
			if !encodesToNothing(e) {
				return false
			}
		}
		return true
	case []any:
		for _, e := range x {
			if !encodesToNothing(e) {
				return false
			}
		}
		return true
	}
	return false
}

// sameValue compares want (the jsonb written, at place below p) with
// got (the body parsed back at key): "" when it is the same value.
func sameValue(p schema.Param, key, place string, want, got any) string {
	if encodesToNothing(want) {
		// Left out (the caller checks), or unset with "".
		if s, ok := got.(string); ok && s == "" {
			return ""
		}
		if m, ok := got.(map[string]any); ok && encodesToNothing(want) {
			// A hash whose keys are all null or empty: its "" unsets.
			w, _ := want.(map[string]any)
			for k, e := range m {
				if msg := sameValue(p, key+"["+k+"]", joinPlace(place, k), w[k], e); msg != "" {
					return msg
				}
			}
			return ""
		}
		return fmt.Sprintf("%s: %v sent for %s", key, got, mustJSON(want))
	}
	switch w := want.(type) {
	case map[string]any:
		if s, ok := got.(string); ok && slices.Contains(p.Refs, place) {
			if id, _ := w["id"].(string); id == s {
				return "" // an object named by its id
			}
		}
		m, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %#v sent for %s", key, got, mustJSON(want))
		}
		for k, e := range w {
			g, present := m[k]
			if !present {
				if !encodesToNothing(e) {
					return fmt.Sprintf("%s[%s] not sent", key, k)
				}
				continue
			}
			if msg := sameValue(p, key+"["+k+"]", joinPlace(place, k), e, g); msg != "" {
				return msg
			}
		}
		for k := range m {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("%s[%s] sent, not written", key, k)
			}
		}
		return ""
	case []any:
		m, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %#v sent for the array %s", key, got, mustJSON(want))
		}
		if len(m) != len(w) {
			return fmt.Sprintf("%s: %d elements sent for %d", key, len(m), len(w))
		}
		for i, e := range w {
			g, present := m[strconv.Itoa(i)]
			if !present {
				return fmt.Sprintf("%s: element %d missing (a gap in the indices)", key, i)
			}
			if msg := sameValue(p, key+"["+strconv.Itoa(i)+"]", joinPlace(place, "[]"), e, g); msg != "" {
				return msg
			}
		}
		return ""
	case json.Number:
		s, ok := got.(string)
		if !ok {
			return fmt.Sprintf("%s: %#v sent for the number %s", key, got, w)
		}
		integer := place == "" && len(p.Types) == 1 && p.Types[0] == "integer" || slices.Contains(p.Integers, place)
		if !integer {
			if s != w.String() {
				return fmt.Sprintf("%s: %q sent for %s", key, s, w)
			}
			return ""
		}
		if !integerTextRe.MatchString(s) {
			return fmt.Sprintf("%s: %q sent where Stripe takes an integer (%s written)", key, s, w)
		}
		a, okA := new(big.Rat).SetString(s)
		b, okB := new(big.Rat).SetString(w.String())
		if !okA || !okB || a.Cmp(b) != 0 {
			return fmt.Sprintf("%s: %s sent for %s", key, s, w)
		}
		return ""
	default:
		if s, ok := got.(string); !ok || s != scalar(want) {
			return fmt.Sprintf("%s: %#v sent for %s", key, got, mustJSON(want))
		}
		return ""
	}
}

// TestObjectNamedByIDOnlyWhereAnIDGoes: an object in a column is
// named by its id only where the parameter takes an id, and only by a
// real one. items {"id": ""} went as items= (and {"id": "si_1"} as
// items=si_1, for a parameter that takes an array), and an invoice
// item's price {"id": ""} as price=, the empty string that means "not
// given" (found by FuzzFormValues).
func TestObjectNamedByIDOnlyWhereAnIDGoes(t *testing.T) {
	for _, c := range []struct {
		sql, value, param string
		cells             []string
	}{
		{`INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`, `{"id": ""}`, "items", []string{`"cus_1"`}},
		{`INSERT INTO stripe.subscriptions (customer, items) VALUES ('cus_1', $1)`, `{"id": "si_1"}`, "items", []string{`"cus_1"`}},
		{`INSERT INTO stripe.invoiceitems (customer, price) VALUES ('cus_1', $1)`, `{"id": "", "object": "price"}`, "price", []string{`"cus_1"`}},
	} {
		st := Classify(c.sql).Stmt
		calls, err := st.Build([][][]byte{{[]byte(c.cells[0]), []byte(c.value)}})
		if err != nil {
			continue // refused: not sent as something else
		}
		params := calls[0].Calls[0].Params
		if _, ok := params[c.param]; ok {
			t.Errorf("%s %s: sent as %s=%q", c.sql, c.value, c.param, params.Get(c.param))
		}
	}
	// An object where an id goes is still named by its id (its content
	// as stored: see Objects).
	st := Classify(`INSERT INTO stripe.invoiceitems (customer, price) VALUES ('cus_1', $1)`).Stmt
	price := []byte(`{"id": "price_1", "object": "price", "unit_amount": 5}`)
	calls, err := st.BuildStored(NewRows([][][]byte{{[]byte(`"cus_1"`), price}}), Stored{{Table: "prices", ID: "price_1"}: price})
	if err != nil || calls[0].Calls[0].Params.Get("price") != "price_1" {
		t.Errorf("price object: %v %v", err, calls)
	}
}
