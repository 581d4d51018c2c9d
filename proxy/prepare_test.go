package proxy

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestDeallocateInMultiStatementQuery: a DEALLOCATE that is one of
// several statements of a simple Query frees the statement in Postgres
// like one sent alone; the proxy's record of it must go too.
func TestDeallocateInMultiStatementQuery(t *testing.T) {
	tp, _, url := setupIntercept(t)
	ctx := ctxT(t)
	pc := connectPg(t, url)
	const n = 200
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		if _, err := pc.Prepare(ctx, name, fmt.Sprintf("SELECT $1::int + %d", i), nil); err != nil {
			t.Fatal(err)
		}
		sql := "SELECT 1; DEALLOCATE " + name
		switch i % 5 {
		case 1:
			sql = fmt.Sprintf("SELECT ';'; deallocate prepare M%d -- evicted\n", i)
		case 2:
			sql = fmt.Sprintf(`SELECT $$;$$, 'it''s'; /* c; */ DEALLOCATE "m%d"; SELECT 2`, i)
		case 3:
			sql = fmt.Sprintf("DEALLOCATE m%d; SELECT 3", i)
		case 4:
			sql = fmt.Sprintf(`SELECT E'\';'; DEALLOCATE m%d`, i)
		}
		if _, err := pc.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if kept := len(tp.onlySession(t).stmts); kept > 1 {
		t.Errorf("after %d statements prepared and deallocated in multi-statement queries, the proxy keeps %d records", n, kept)
	}
	// A name inside a string or comment is not a DEALLOCATE.
	if _, err := pc.Prepare(ctx, "keep", "SELECT 1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "SELECT 'x; DEALLOCATE keep'; SELECT 1 /* ; DEALLOCATE keep */").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.onlySession(t).stmts["keep"]; !ok {
		t.Error("the record of keep went with a DEALLOCATE inside a string or comment")
	}
}

// TestDeallocateExtendedProtocol: DEALLOCATE sent through the
// extended protocol (Parse/Bind/Execute, as pgx and JDBC send every
// statement) frees the statement in Postgres too.
func TestDeallocateExtendedProtocol(t *testing.T) {
	tp, _, url := setupIntercept(t)
	ctx := ctxT(t)
	pc := connectPg(t, url)
	const n = 200
	for i := range n {
		name := fmt.Sprintf("x%d", i)
		if _, err := pc.Prepare(ctx, name, fmt.Sprintf("SELECT $1::int + %d", i), nil); err != nil {
			t.Fatal(err)
		}
		sql := "DEALLOCATE " + name
		if i%50 == 49 {
			sql = "DEALLOCATE ALL"
		}
		if i%3 == 1 {
			// A named statement, as a driver's statement cache makes.
			if _, err := pc.Prepare(ctx, "d", sql, nil); err != nil {
				t.Fatal(err)
			}
			if err := pc.ExecPrepared(ctx, "d", nil, nil, nil).Read().Err; err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			if sql != "DEALLOCATE ALL" {
				if _, err := pc.Exec(ctx, "DEALLOCATE d").ReadAll(); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		if err := pc.ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err; err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if kept := len(tp.onlySession(t).stmts); kept > 2 {
		t.Errorf("after %d statements prepared and deallocated through the extended protocol, the proxy keeps %d records", n, kept)
	}
	// Parsed but never executed: nothing is deallocated.
	if _, err := pc.Prepare(ctx, "keep", "SELECT 1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Prepare(ctx, "later", "DEALLOCATE keep", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.onlySession(t).stmts["keep"]; !ok {
		t.Error("the record of keep went with a DEALLOCATE that was only parsed")
	}
}

// TestDeallocateFailedStillSafe: a DEALLOCATE that Postgres refuses (in
// an aborted transaction), alone, inside a multi-statement Query or
// through the extended protocol, leaves the statement in place although
// the proxy dropped its record. A Parse of a write under that name is
// then refused by Postgres, and Executing the name runs the old
// statement: the proxy must not take it for the write.
func TestDeallocateFailedStillSafe(t *testing.T) {
	_, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	for _, c := range []struct {
		sql      string
		extended bool
	}{{"DEALLOCATE b", false}, {"SELECT 1; DEALLOCATE b", false}, {"DEALLOCATE b", true}} {
		pc := connectPg(t, url)
		if _, err := pc.Prepare(ctx, "b", "SELECT 41 + $1::int", nil); err != nil {
			t.Fatal(err)
		}
		pc.Exec(ctx, "BEGIN; SELECT 1/0").ReadAll()
		var pe *pgconn.PgError
		var err error
		if c.extended {
			err = pc.ExecParams(ctx, c.sql, nil, nil, nil, nil).Read().Err
		} else {
			_, err = pc.Exec(ctx, c.sql).ReadAll()
		}
		if !errors.As(err, &pe) || pe.Code != "25P02" {
			t.Fatalf("%s in a failed transaction: %v, want 25P02", c.sql, err)
		}
		if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			t.Fatal(err)
		}
		oldStatementRuns(t, pc, "b")
	}
	noCalls(t, ti)
}

// TestNextStatement: statements split where Postgres splits them.
func TestNextStatement(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want []string
	}{
		{"SELECT 1; DEALLOCATE a", []string{"SELECT 1", " DEALLOCATE a"}},
		{"SELECT ';'; x", []string{"SELECT ';'", " x"}},
		{"SELECT 'it''s;'; x", []string{"SELECT 'it''s;'", " x"}},
		{`SELECT '\'; x`, []string{`SELECT '\'`, " x"}},
		{`SELECT E'\'; x';y`, []string{`SELECT E'\'; x'`, "y"}},
		{`SELECT e'\\';y`, []string{`SELECT e'\\'`, "y"}},
		{`SELECT "a;""b";y`, []string{`SELECT "a;""b"`, "y"}},
		{"SELECT $$;$$;y", []string{"SELECT $$;$$", "y"}},
		{"SELECT $f$ $$; $f$;y", []string{"SELECT $f$ $$; $f$", "y"}},
		{"SELECT $1;y", []string{"SELECT $1", "y"}},
		{"SELECT a$b$;y$b$", []string{"SELECT a$b$", "y$b$"}},
		{"SELECT 1 -- ;\n;y", []string{"SELECT 1 -- ;\n", "y"}},
		{"SELECT /* /* ; */ ; */ 1;y", []string{"SELECT /* /* ; */ ; */ 1", "y"}},
		{"SELECT 'open;", []string{"SELECT 'open;"}},
		{"SELECT 1;", []string{"SELECT 1", ""}},
	} {
		var got []string
		sql := []byte(c.sql)
		for {
			stmt, rest, more := nextStatement(sql)
			got = append(got, string(stmt))
			if !more {
				break
			}
			sql = rest
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) || len(got) != len(c.want) {
			t.Errorf("%q: %q, want %q", c.sql, got, c.want)
		}
	}
	if rest := trimSpace([]byte(" /* a /* b */ */ -- c\n\tPREPARE")); string(rest) != "PREPARE" {
		t.Errorf("trimSpace: %q", rest)
	}
}
