package emulator

import (
	"encoding/json"
	"testing"
)

// TestAppendJSONMatchesEncodingJSON: the fast encoder writes what
// encoding/json writes for the same generic value.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	a, err := getSpec()
	if err != nil {
		t.Fatal(err)
	}
	vals := []any{
		map[string]any{"s": "a\"b\\c\n\t<>&\u2028é\x01", "n": 12.5, "i": int64(-3), "f": 1795430012.0, "big": 1e22, "b": true, "z": nil,
			"arr": []any{1, "x", map[string]any{}}, "raw": json.RawMessage(`{"k":1}`), "num": json.Number("42"),
			"nilmap": map[string]any(nil)},
	}
	for _, f := range a.fixtures {
		vals = append(vals, f)
	}
	for _, v := range vals {
		got, err := marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(v)
		if string(got) != string(want) {
			t.Fatalf("mismatch:\n got %s\nwant %s", got, want)
		}
	}
}
