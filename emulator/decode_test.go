package emulator

import (
	"bytes"
	"reflect"
	"testing"
)

// decodeCases are inputs decodeFast must either decode as
// encoding/json does or leave to it.
var decodeCases = []string{
	`{}`,
	` {"a" : [ ] , "b":{}} `,
	`{"a":1,"a":2}`,
	`{"n":[0,-0,1.5,-2e10,3E+2,4e-3,12345678901234567890123]}`,
	`{"n":01}`, `{"n":1.}`, `{"n":-}`, `{"n":.5}`, `{"n":1e}`, `{"n":+1}`,
	`{"s":"plain","e":"tab\tquote\"slash\/u\u00e9\ud83d\ude00"}`,
	`{"lone":"\ud800x","bad":"\x"}`,
	"{\"utf8\":\"caf\xc3\xa9\",\"invalid\":\"a\xffb\"}",
	"{\"ctl\":\"a\x01b\"}",
	`{"t":true,"f":false,"z":null,"x":[true,false,null]}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":1}x`, `{"a":1} {"b":2}`, `{"a":1`, `{"a"}`, `{"a":1,}`, `[1]`, `null`, `"s"`, ``, ` `,
	`{"deep":` + string(bytes.Repeat([]byte("["), 300)) + string(bytes.Repeat([]byte("]"), 300)) + `}`,
}

func checkDecode(t *testing.T, raw []byte) {
	t.Helper()
	want, wantErr := decodeStd(raw)
	got, gotErr := decodeObject(raw)
	if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() {
		t.Fatalf("%q: error %v, encoding/json says %v", raw, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decoded %#v, encoding/json gives %#v", raw, got, want)
	}
	if m, ok := decodeFast(raw); ok && !reflect.DeepEqual(m, want) {
		t.Fatalf("%q: decodeFast %#v, encoding/json gives %#v", raw, m, want)
	}
}

// TestDecodeMatchesEncodingJSON: decodeObject gives what
// encoding/json gives, values (json.Number, []any{} for []) and errors,
// and the fast path takes the plain objects the store writes.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, c := range decodeCases {
		checkDecode(t, []byte(c))
	}
	for _, c := range []string{`{}`, `{"a":[1,{"b":"c"}],"d":-1.5e3,"e":null,"f":"caf` + "\u00e9" + `"}`} {
		if _, ok := decodeFast([]byte(c)); !ok {
			t.Errorf("%s: left to encoding/json", c)
		}
	}
	// Everything a seeded account stores.
	e, err := New(Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Seed(3, DistUniform); err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, tb := range e.tables {
		for _, r := range tb.ordered {
			if _, ok := decodeFast(r.raw); !ok {
				t.Errorf("%s %s: left to encoding/json", name, r.id)
			}
			checkDecode(t, r.raw)
			n++
		}
	}
	if n < 500 {
		t.Fatalf("only %d objects seeded", n)
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkDecode(t, raw)
	})
}
