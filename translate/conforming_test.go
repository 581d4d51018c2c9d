package translate

import "testing"

// TestNonConforming: ordinary literals with a backslash become E'…'
// literals, and nothing else changes, so that the parser here (which reads
// with standard_conforming_strings on) sees what Postgres sees with it off.
func TestNonConforming(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 'a'`, ``},
		{`SELECT 'C:\\dir'`, `SELECT E'C:\\dir'`},
		{`SELECT 'it\'s', 'x'`, `SELECT E'it\'s', 'x'`},
		{`SELECT E'a\\b', e'\''`, ``},
		{`SELECT text'a\\b'`, `SELECT text E'a\\b'`},
		{`SELECT N'a\'b'`, `SELECT NCHAR E'a\'b'`},
		{`SELECT B'01', X'ff', U&'d\0061t', U&"d\0061t"`, ``},
		{`SELECT "a\'b", 'x'`, ``},
		{`SELECT $$a\'b$$, $q$'\'$q$, $1`, ``},
		{`SELECT a$b, 'c\d'`, `SELECT a$b, E'c\d'`},
		{"SELECT 'a\\b' -- 'c\\d'\n, 'e'", "SELECT E'a\\b' -- 'c\\d'\n, 'e'"},
		{"SELECT /* 'a\\b' /* x */ */ 'c'", ``},
		{"SELECT 'a'\n'b\\'c'", "SELECT E'a'\n'b\\'c'"},
		{"SELECT 'a' -- c\n  'b\\'c'", "SELECT E'a' -- c\n  'b\\'c'"},
		{"SELECT 'a' 'b\\c'", "SELECT 'a' E'b\\c'"},
		{`SELECT 1e'\n'`, ``},
		{`SELECT 'a''\'''`, `SELECT E'a''\'''`},
	} {
		got, changed := NonConforming(tc.in)
		want := tc.want
		if want == "" {
			want = tc.in
		}
		if got != want || changed != (tc.want != "") {
			t.Errorf("NonConforming(%q) = %q, %v; want %q", tc.in, got, changed, want)
		}
	}
}

// TestClassifyStrings: a write whose literals read differently with
// standard_conforming_strings off keeps both readings; one that reads the
// same, or passes through either way, is classified as before.
func TestClassifyStrings(t *testing.T) {
	sql := `UPDATE stripe.customers SET description = 'it\'s' WHERE id = 'cus_1'`
	c := Classify(sql)
	if c.Action != Write || c.Stmt == nil || c.Stmt.Strings == nil {
		t.Fatalf("Classify(%q) = %+v", sql, c)
	}
	if on := c.Stmt.Strings.Pick(true); on.Action != Pass {
		t.Errorf("read with the setting on: %+v, want pass (a syntax error for Postgres)", on)
	}
	off := ClassifyAs(sql, false)
	if off.Action != Write || off.Stmt.Table == nil || off.Stmt.Table.Name != "customers" {
		t.Fatalf("read with the setting off: %+v", off)
	}
	for _, sql := range []string{
		`UPDATE stripe.customers SET description = E'a\\b' WHERE id = 'cus_1'`,
		`SELECT * FROM stripe.customers WHERE description ~ '\d'`,
		`UPDATE public.t SET a = 'x\y' WHERE b = 'customers'`,
	} {
		if c := Classify(sql); c.Stmt != nil && c.Stmt.Strings != nil {
			t.Errorf("Classify(%q) kept two readings", sql)
		}
	}
}
