package translate

import "testing"

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
