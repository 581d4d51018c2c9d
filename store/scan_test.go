package store

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

func FuzzScanObject(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : 1 , "b":[1,{"c":"]}"}], "d\"e": "x\\"y", "n": null, "t": true, "f": -1.5e3 } `,
		`{"a":{"b":{"c":[[],{}]}}}`, `[1]`, `{"a":}`, `{"a":1,}`, `{"a" 1}`, `{"a":"unterminated}`, `{"a":1}x`,
		`{"lines": {"object": "list", "data": [{"id": "il_1"}, {"id": "il_2"}], "has_more": true}}`, `null`, ` null `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want map[string]json.RawMessage
		wantErr := json.Unmarshal(b, &want)
		if !json.Valid(b) || !utf8.Valid(b) {
			return // decode rejects these before scanning
		}
		if wantErr == nil && want == nil {
			// JSON null: encoding/json leaves the map nil without an
			// error, but an object is required here (a Stripe object is
			// never null).
			wantErr = errors.New("null is not an object")
		}
		got, err := scanObject(b)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: err %v, encoding/json %v", b, err, wantErr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d fields, want %d", b, len(got), len(want))
		}
		for k, v := range want {
			var a, b any
			json.Unmarshal(v, &a)
			json.Unmarshal(got[k], &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("field %q: %s, want %s", k, got[k], v)
			}
		}
	})
}

func TestScanArray(t *testing.T) {
	got, err := scanArray([]byte(` [ {"a": [1, 2]}, "x,y", 3 ] `))
	if err != nil || len(got) != 3 || string(got[0]) != `{"a": [1, 2]}` || string(got[1]) != `"x,y"` || string(got[2]) != "3" {
		t.Fatalf("%q %v", got, err)
	}
	if got, err := scanArray([]byte(`[]`)); err != nil || len(got) != 0 {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := scanArray([]byte(`{}`)); err == nil {
		t.Fatal("object accepted as array")
	}
}
