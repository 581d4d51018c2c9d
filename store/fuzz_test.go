package store

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/pgtest"
)

// FuzzReplaceBadEscapes: whatever valid JSON Stripe sends, what decode
// stores (after needsEscapeRepair and replaceBadEscapes) is valid JSON
// that Postgres' jsonb accepts, means what encoding/json reads from the
// input with NUL read as U+FFFD (encoding/json already reads an unpaired
// surrogate so), and is the input itself when nothing needed repair.
func FuzzReplaceBadEscapes(f *testing.F) {
	for _, s := range []string{
		`{"a":"b"}`, `{"name":"x\u0000y"}`, `{"k\u0000":"v"}`, `{"e":"\ud83d\ude00"}`, `{"e":"\ud83d"}`, `{"e":"\ude00\ud83d"}`,
		`{"e":"\uD83D\uDE00"}`, `{"e":"\\u0000"}`, `{"e":"\\\u0000"}`, `{"e":"\ud800\u0000"}`, `{"e":"\ud800\\ud800"}`,
		`{"metadata":{"note":"tab\there \"quoted\" \u00e9"},"lines":{"data":[{"d":"\udfff"}]}}`, `["\ud800x"]`, `"\u0000"`,
	} {
		f.Add([]byte(s))
	}
	conn := connectFuzz(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) || !utf8.Valid(in) {
			return // decode refuses these before any repair
		}
		out := in
		if needsEscapeRepair(in) {
			out = replaceBadEscapes(in)
		}
		if !json.Valid(out) {
			t.Fatalf("%q: repaired to invalid JSON %q", in, out)
		}
		var a, b any
		json.Unmarshal(in, &a)
		json.Unmarshal(out, &b)
		if want := nulToReplacement(a); !reflect.DeepEqual(want, b) {
			t.Fatalf("%q: repaired %q reads %#v, want %#v", in, out, b, want)
		}
		if !strings.Contains(string(in), `\u0000`) && reflect.DeepEqual(a, b) && !hasBadSurrogate(in) && string(out) != string(in) {
			t.Fatalf("%q: changed to %q with nothing to repair", in, out)
		}
		var ok bool
		err := conn.QueryRow(context.Background(), `SELECT $1::text::jsonb IS NOT NULL`, string(out)).Scan(&ok)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "22003" {
			return // a number beyond numeric (1e999999): not an escape, and Stripe sends none
		}
		if err != nil {
			t.Fatalf("%q: repaired %q refused by jsonb: %v", in, out, err)
		}
	})
}

// hasBadSurrogate reports whether encoding/json would read an unpaired
// surrogate escape in b (it reads it as U+FFFD).
func hasBadSurrogate(b []byte) bool {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return false
	}
	return strings.Contains(string(b), `\ud`) || strings.Contains(string(b), `\uD`)
}

func nulToReplacement(v any) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, "\x00", "\ufffd")
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[strings.ReplaceAll(k, "\x00", "\ufffd")] = nulToReplacement(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = nulToReplacement(e)
		}
		return out
	}
	return v
}

// connectFuzz connects to the package's throwaway cluster (started once
// per fuzzing process).
func connectFuzz(f *testing.F) *pgx.Conn {
	return pgtest.Connect(f, pgtest.NewDB(f))
}
