package translate

import (
	"slices"
	"testing"
)

// TestClassifyExecute: SQL EXECUTE, which may run a write prepared
// through the protocol, is left to the session to decide (Prepared), under
// EXPLAIN ANALYZE and in a multi-statement query too.
func TestClassifyExecute(t *testing.T) {
	for _, tc := range []struct {
		sql      string
		prepared []string
	}{
		{`EXECUTE s1('a', 'b')`, []string{"s1"}},
		{`execute "S 1"`, []string{"S 1"}},
		{`EXPLAIN ANALYZE EXECUTE s1`, []string{"s1"}},
		{`EXPLAIN (ANALYZE true, FORMAT json) EXECUTE s1`, []string{"s1"}},
		{`SELECT 1; EXECUTE s1; EXECUTE s2`, []string{"s1", "s2"}},
		{`EXPLAIN EXECUTE s1`, nil},
		{`GRANT EXECUTE ON FUNCTION f() TO PUBLIC`, nil},
	} {
		c := Classify(tc.sql)
		if tc.prepared == nil {
			if c.Action != Pass {
				t.Errorf("%s: %v, want pass", tc.sql, c.Action)
			}
			continue
		}
		if c.Action != Write || !slices.Equal(c.Stmt.Prepared, tc.prepared) || c.Stmt.Deferred == nil ||
			c.Stmt.Deferred.Code != CodeFeatureNotSupported || !c.Stmt.Unrelayable {
			t.Errorf("%s: %+v %+v", tc.sql, c, c.Stmt)
		}
	}
}
