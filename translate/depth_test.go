package translate

import (
	"strings"
	"testing"
)

// Nesting that the parser here can't turn into a tree (Go's protobuf
// decoding stops at 10,000 levels) but Postgres runs: a write to a stripe
// table must not pass through as if it were none. Other statements still
// go to Postgres, which reports what it finds.
func TestTooDeepForTheParserIsNotPassed(t *testing.T) {
	nots := strings.Repeat("NOT ", 5000)
	for _, q := range []string{
		`UPDATE stripe.customers SET name = 'x' WHERE ` + nots + `(id = 'cus_1')`,
		`DELETE FROM stripe.customers WHERE ` + nots + `true`,
		`INSERT INTO stripe.customers (email) VALUES (CASE WHEN ` + nots + `true THEN 'a' END)`,
	} {
		c := Classify(q)
		if c.Action != Reject || c.Err.Code != CodeStatementTooComplex {
			t.Errorf("%.60s…: %v %+v, want a reject with 54001", q, c.Action, c.Err)
		}
	}
	if c := Classify(`UPDATE public.things SET a = 1 WHERE ` + nots + `true`); c.Action != Pass {
		t.Errorf("a deep write to another table: %v %+v, want pass", c.Action, c.Err)
	}
	// Too deep for Postgres's grammar too: Postgres answers it.
	if c := Classify(`UPDATE stripe.customers SET name = 'x' WHERE ` + strings.Repeat("NOT ", 20000) + `true`); c.Action != Pass {
		t.Errorf("beyond the grammar's own limit: %v %+v, want pass", c.Action, c.Err)
	}
}
