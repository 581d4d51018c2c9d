package cli

import (
	"strings"
	"testing"
)

// --objects with only separators names no table: one line, before any
// connection (it used to say "unknown table(s)  (known: …)", naming an
// empty one).
func TestBackfillObjectsNamesNoTable(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x", "STRIPE_API_KEY": "sk_test_x"}
	code, _, errs := run(t, env, "backfill", "--objects", ", ")
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "names no table") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	code, _, errs = run(t, env, "backfill", "--objects", "customers,nosuch,")
	if code != 1 || !strings.Contains(errs, "unknown table(s) nosuch (known:") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}
