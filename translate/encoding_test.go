package translate

import "testing"

// A text that is not UTF-8 can't be parsed here; one that may write is
// left to writethrough, which has Postgres convert it (it used to pass
// through, a stripe write included).
func TestClassifyNotUTF8(t *testing.T) {
	for _, sql := range []string{
		"UPDATE stripe.customers SET name = 'K\xf6nig' WHERE id = 'cus_1'",
		"INSERT INTO customers (name) VALUES ('\xe9')",
		"DELETE FROM \"Products\" WHERE name = '\xf6'",
	} {
		c := Classify(sql)
		if c.Action != Write || c.Stmt == nil || !c.Stmt.Transcode || c.Stmt.SQL != sql {
			t.Errorf("Classify(%q) = %+v, want Write with Transcode", sql, c)
		}
	}
	// A text that names no stripe table can't write to one: it passes
	// through without a round trip, also in a failed transaction (where
	// Postgres could not convert it).
	for _, sql := range []string{
		"DELETE FROM t WHERE name = '\xf6'",
		"ROLLBACK TO SAVEPOINT s; UPDATE public.notes SET name = 'd\xe9j\xe0', updated_at = now()",
	} {
		if c := Classify(sql); c.Action != Pass {
			t.Errorf("Classify(%q) = %+v, want Pass", sql, c)
		}
	}
	// No keyword that can write: no parse, no round trip.
	if c := Classify("SELECT 'K\xf6nig'"); c.Action != Pass {
		t.Errorf("a read with a Latin-1 literal: %+v", c)
	}
	// Valid UTF-8 is parsed as before.
	if c := Classify("UPDATE stripe.customers SET name = 'König' WHERE id = 'cus_1'"); c.Action != Write || c.Stmt.Transcode || c.Stmt.Table == nil {
		t.Errorf("a UTF-8 write: %+v", c)
	}
}
