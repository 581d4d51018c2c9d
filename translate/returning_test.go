package translate

import (
	"strings"
	"testing"
)

// Without RECURSIVE a WITH query's text sees only the WITH queries before
// it: a name of its own, or of a later one, is a table there. RETURNING
// reading such a WITH query reads a stripe table, after the apply.
func TestReturningReadsStripeThroughSelfNamedWith(t *testing.T) {
	for _, sql := range []string{
		`WITH customers AS (SELECT id, name FROM customers) UPDATE customers SET name = 'new' WHERE id = 'cus_1' RETURNING (SELECT c.name FROM customers c WHERE c.id = 'cus_1')`,
		`WITH a AS (SELECT count(*) AS n FROM products), products AS (SELECT 1 AS one) UPDATE stripe.customers SET name = 'x' WHERE id = 'cus_1' RETURNING (SELECT n FROM a)`,
	} {
		c := Classify(sql)
		if c.Action == Write && c.Stmt.Deferred == nil {
			t.Errorf("%s\naccepted: its RETURNING reads a stripe table after the apply", sql)
		}
	}
	// Still accepted: the names are the WITH queries in scope.
	for _, sql := range []string{
		`WITH products AS (SELECT 1 AS one), a AS (SELECT one FROM products) UPDATE stripe.customers SET name = 'x' WHERE id = 'cus_1' RETURNING (SELECT one FROM a)`,
		`WITH RECURSIVE a AS (SELECT one FROM products), products AS (SELECT 1 AS one) UPDATE stripe.customers SET name = 'x' WHERE id = 'cus_1' RETURNING (SELECT one FROM a)`,
		`WITH customers AS (SELECT 'cus_1'::text AS id) UPDATE customers SET name = 'x' WHERE id IN (SELECT id FROM customers) RETURNING id, (SELECT count(*) FROM customers) AS n`,
	} {
		if c := Classify(sql); c.Action != Write || c.Stmt.Deferred != nil {
			t.Errorf("%s\nrefused: %v", sql, c.Err)
		}
	}
}

// What RETURNING reads, for the privilege check before any Stripe call:
// the columns of plain references, all of them for * and whole-row
// references, and anything else left to Postgres (not plain).
func TestReturningReads(t *testing.T) {
	upd := `UPDATE stripe.customers SET name = 'x' WHERE id = 'cus_1' RETURNING `
	for _, c := range []struct {
		sql   string
		cols  string
		all   bool
		plain bool
	}{
		{upd + `id, email, id`, "id,email", false, true},
		{upd + `email AS e, 1, 'a'`, "email", false, true},
		{upd + `*`, "", true, true},
		{upd + `customers`, "", true, true},
		{upd + `customers.*, name`, "name", true, true},
		{upd + `stripe.customers.email, customers._raw, _synced_at`, "email,_raw,_synced_at", false, true},
		{`UPDATE stripe.customers AS c SET name = 'x' WHERE id = 'cus_1' RETURNING c.email, c`, "email", true, true},
		{`UPDATE customers SET name = 'x' WHERE id = 'cus_1' RETURNING customers.email`, "email", false, true},
		{`INSERT INTO stripe.customers (email) VALUES ('a@b.co') RETURNING id, stripe.customers.*`, "id", true, true},
		{upd + `lower(email)`, "", false, false},
		{upd + `id, email::text`, "id", false, false},
		{upd + `(SELECT v FROM public.secret)`, "", false, false},
		{upd + `metadata->>'k'`, "", false, false},
	} {
		cl := Classify(c.sql)
		if cl.Action != Write || cl.Stmt.Returning == nil {
			t.Fatalf("%s: %+v", c.sql, cl)
		}
		st := cl.Stmt
		if got := strings.Join(st.ReturningColumns, ","); got != c.cols || st.ReturningAll != c.all || st.ReturningPlain != c.plain {
			t.Errorf("%s: columns %q all %v plain %v, want %q %v %v", c.sql, got, st.ReturningAll, st.ReturningPlain, c.cols, c.all, c.plain)
		}
	}
}
