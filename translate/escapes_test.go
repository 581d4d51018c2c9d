package translate

import "testing"

// TestNotUTF8UnicodeEscapes: a U&"…" identifier spells a stripe
// table without its name appearing in the text; a non-UTF-8 write so
// spelled must still be intercepted (and refused), not pass through to
// change the local copy only.
func TestNotUTF8UnicodeEscapes(t *testing.T) {
	for _, sql := range []string{
		`UPDATE U&"\0073tripe".U&"\0063ustomers" SET name = 'K` + "\xf6" + `nig' WHERE id = 'cus_1'`,
		`DELETE FROM u&"!0063ustomers" UESCAPE '!' WHERE name = '` + "\xf6" + `'`,
		`INSERT INTO U&"\+000063ustomers" (name) VALUES ('` + "\xe9" + `')`,
	} {
		c := Classify(sql)
		if c.Action != Write || c.Stmt == nil || !c.Stmt.Transcode {
			t.Errorf("Classify(%q) = %+v, want Write with Transcode", sql, c)
		}
	}
	// The same in UTF-8: the parser resolves the escapes.
	sql := `UPDATE U&"\0073tripe".U&"\0063ustomers" SET name = 'König' WHERE id = 'cus_1'`
	if c := Classify(sql); c.Action != Write || c.Stmt == nil || c.Stmt.Transcode {
		t.Errorf("Classify(%q) = %+v, want Write", sql, c)
	}
}
