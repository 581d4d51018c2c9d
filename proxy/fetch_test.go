package proxy

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestFetchWithUnnamedPortalBound: SQL cannot name the unnamed
// portal (FETCH FROM "" is a zero-length identifier), so an intercepted
// write bound to it must not make the lexical FETCH check refuse a
// cursor whose name has a doubled quote or is Unicode-escaped.
func TestFetchWithUnnamedPortalBound(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	query := func(sql string) []string {
		t.Helper()
		rc.send(&pgproto3.Query{String: sql})
		return rc.until("ReadyForQuery", 1)
	}
	query("BEGIN")
	rc.send(&pgproto3.Parse{Name: "s", Query: insertX}, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("fetched")}}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	before := ti.count()
	query(`DECLARE "a""b" CURSOR FOR SELECT 7`)
	if got := query(`FETCH ALL FROM "a""b"`); !slices.Contains(got, "DataRow(7)") {
		t.Fatalf(`FETCH of cursor a"b: %v`, got)
	}
	query(`DECLARE c CURSOR FOR SELECT 8`)
	if got := query(`FETCH ALL FROM U&"c"`); !slices.Contains(got, "DataRow(8)") {
		t.Fatalf(`FETCH of cursor U&"c": %v`, got)
	}
	query("ROLLBACK")
	if ti.count() != before {
		t.Errorf("the interceptor ran for a FETCH")
	}
}
