package proxy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// keptBytes is the length of the statement texts the proxy's
// classification cache holds.
func keptBytes(c *classCache) (n, entries int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for k := range c.m {
		n += len(k)
	}
	return n, len(c.m)
}

// TestClassCacheBoundedInBytes: clients that inline literals into
// long statements (multi-row VALUES from an ORM's bulk insert) send an
// endless stream of distinct texts; the cache must stay within 16 MB of
// text however long each one is, not only within its entry count.
func TestClassCacheBoundedInBytes(t *testing.T) {
	p := New(Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	pad := strings.Repeat("(1, 'x'),", 8<<10/9)
	const bound = 16 << 20
	for i := range 6000 { // ~48 MB of distinct 8 KB texts
		sql := fmt.Sprintf("INSERT INTO app.t VALUES %s(%d, 'y')", pad, i)
		if got := p.classify.get([]byte(sql)); got != Passthrough {
			t.Fatalf("statement %d classified %v, want Passthrough", i, got)
		}
		if n, entries := keptBytes(p.classify); n > bound {
			t.Fatalf("after %d statements the cache keeps %d entries, %d bytes of text (bound %d)", i+1, entries, n, bound)
		}
	}
	// Still a cache: a short text is classified once.
	calls := 0
	c := newClassCache(func(s string) Class { calls++; return classifyTest(s) }, classCacheEntries, classCacheBytes)
	for range 3 {
		if got := c.get([]byte("INSERT INTO stripe.x VALUES (1)")); got != Intercept {
			t.Fatalf("classified %v, want Intercept", got)
		}
	}
	if calls != 1 {
		t.Errorf("classifier called %d times for one short text, want 1", calls)
	}
	// A text too long to keep is still classified right, every time.
	long := "INSERT INTO stripe.x VALUES ('" + strings.Repeat("z", classCacheBytes/classCacheLargeShare) + "')"
	for range 2 {
		if got := c.get([]byte(long)); got != Intercept {
			t.Fatalf("long text classified %v, want Intercept", got)
		}
	}
	if n, _ := keptBytes(c); n > 100 {
		t.Errorf("a text longer than the per-entry limit was kept (%d bytes of text kept)", n)
	}
}

// onlySession returns the proxy's one open session.
func (tp *testProxy) onlySession(t *testing.T) *session {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(tp.sessions))
	}
	for s := range tp.sessions {
		return s
	}
	return nil
}

// TestDeallocateBySQLForgetsStatements: ActiveRecord and mini_sql
// prepare each statement under a new name (a1, a2 …)
// and evict from their cache with DEALLOCATE in SQL. Postgres frees the
// statement; the proxy's record of it must go too, or a session that
// lives for weeks keeps one per statement ever prepared.
func TestDeallocateBySQLForgetsStatements(t *testing.T) {
	tp, _, url := setupIntercept(t)
	ctx := ctxT(t)
	pc := connectPg(t, url)
	const n = 600
	for i := range n {
		name := fmt.Sprintf("a%d", i)
		if _, err := pc.Prepare(ctx, name, fmt.Sprintf("SELECT $1::int + %d", i), nil); err != nil {
			t.Fatal(err)
		}
		sql := "DEALLOCATE " + name
		switch i % 4 {
		case 1:
			sql = fmt.Sprintf("deallocate prepare A%d;", i) // folded to a%d
		case 2:
			sql = fmt.Sprintf(`DEALLOCATE "a%d" ; `, i)
		case 3:
			if i%100 == 3 {
				sql = "DEALLOCATE ALL"
			}
		}
		if _, err := pc.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if kept := len(tp.onlySession(t).stmts); kept > 1 {
		t.Errorf("after %d statements prepared and deallocated with SQL, the proxy keeps %d records", n, kept)
	}
	// A quoted name keeps its case: "B" is not b.
	if _, err := pc.Prepare(ctx, "B", "SELECT 1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "DEALLOCATE b").ReadAll(); err == nil {
		t.Fatal("DEALLOCATE b dropped statement B")
	}
	if _, ok := tp.onlySession(t).stmts["B"]; !ok {
		t.Error("the record of B went with a DEALLOCATE of b")
	}
}

// TestSQLPrepareNameStillSafe: a statement made with SQL PREPARE (in
// a simple Query, after a comment or another statement, through the
// extended protocol, or by a DO block) has no record in the proxy; a Parse of a write under its name is refused by Postgres, and
// Executing the name runs the old statement: the proxy must not take it
// for the write (and call Stripe).
func TestSQLPrepareNameStillSafe(t *testing.T) {
	_, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	for _, c := range []struct {
		name, comment string
		extended      bool
		sql           string // instead of comment + PREPARE
	}{{"c", "", false, ""}, {"e", "", true, ""},
		{"cc", "/* app:42 */ -- cached\n", false, ""},
		{"w", "", false, "SELECT 1; PREPARE w(int) AS SELECT 41 + $1"},
		// Made by code the statement runs: no reading of the text sees it.
		{"d", "", false, `DO $$BEGIN EXECUTE 'PREPARE d(int) AS SELECT 41 + $1'; END$$`}} {
		pc := connectPg(t, url) // a session of its own: nothing seen before
		name, extended := c.name, c.extended
		prep := c.comment + "PREPARE " + name + "(int) AS SELECT 41 + $1"
		if c.sql != "" {
			prep = c.sql
		}
		var err error
		if extended {
			err = pc.ExecParams(ctx, prep, nil, nil, nil, nil).Read().Err
		} else {
			_, err = pc.Exec(ctx, prep).ReadAll()
		}
		if err != nil {
			t.Fatal(err)
		}
		oldStatementRuns(t, pc, name)
	}
	noCalls(t, ti)
}

// oldStatementRuns checks that a Parse of a write under name, a statement
// of "SELECT 41 + $1" in use, is refused (42P05) and that Executing name
// still runs the old statement.
func oldStatementRuns(t *testing.T, pc *pgconn.PgConn, name string) {
	t.Helper()
	ctx := ctxT(t)
	var pe *pgconn.PgError
	if _, err := pc.Prepare(ctx, name, "INSERT INTO stripe.x VALUES ($1)", nil); !errors.As(err, &pe) || pe.Code != "42P05" {
		t.Fatalf("Parse under a name in use: %v, want 42P05", err)
	}
	res := pc.ExecPrepared(ctx, name, [][]byte{[]byte("1")}, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != "42" {
		t.Errorf("Execute of %s: rows %q, want the old statement's 42", name, res.Rows)
	}
}

// noCalls checks that the interceptor never ran.
func noCalls(t *testing.T, ti *testInterceptor) {
	t.Helper()
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if len(ti.calls) != 0 {
		t.Errorf("the interceptor ran %d times for a statement Postgres never prepared: %q", len(ti.calls), ti.calls[0].SQL)
	}
}

// TestRefusedUnnamedParsesDoNotChain: a client retrying a write that
// Postgres refuses at Parse (a column that does not exist) through the
// unnamed statement, for as long as its session lives: each refused Parse
// must not keep the ones before it (and their texts) alive.
func TestRefusedUnnamedParsesDoNotChain(t *testing.T) {
	tp, _, url := setupIntercept(t)
	ctx := ctxT(t)
	pc := connectPg(t, url)
	for i := range 300 {
		sql := fmt.Sprintf("INSERT INTO stripe.x (nosuchcolumn) VALUES ($1) -- try %d", i)
		if err := pc.ExecParams(ctx, sql, [][]byte{[]byte("v")}, nil, nil, nil).Read().Err; err == nil {
			t.Fatal("INSERT of a column that does not exist succeeded")
		}
	}
	n := 0
	for st := tp.onlySession(t).stmts[""]; st != nil; st = st.prev {
		n++
	}
	if n > 2 {
		t.Errorf("the unnamed statement's record keeps a chain of %d records after 300 refused Parses", n)
	}
}

// TestSkippedUnnamedParsesDoNotChain: a client whose pipelines keep
// failing before their write (a prepared statement's Execute, then the
// write through the unnamed statement, which Postgres skips) must not
// make the unnamed statement's record keep every skipped Parse.
func TestSkippedUnnamedParsesDoNotChain(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	pc := connectPg(t, url)
	// A named statement that fails at Execute: the batch aborts without
	// any unnamed Parse before the write's.
	if _, err := pc.Prepare(ctx, "f", "SELECT 1/$1::int", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		p := pc.StartPipeline(ctx)
		p.SendQueryPrepared("f", [][]byte{[]byte("0")}, nil, nil)
		p.SendQueryParams(fmt.Sprintf("INSERT INTO stripe.x VALUES ($1) -- try %d", i), [][]byte{[]byte("v")}, nil, nil, nil)
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err == nil {
			t.Fatal("pipeline with 1/0 succeeded")
		}
	}
	// The unnamed statement is still the proxy's to tell: none was made.
	if err := pc.ExecParams(ctx, "SELECT 1", nil, nil, nil, nil).Read().Err; err != nil {
		t.Fatal(err)
	}
	n := 0
	for st := tp.onlySession(t).stmts[""]; st != nil; st = st.prev {
		n++
	}
	if n > 2 {
		t.Errorf("the unnamed statement's record keeps a chain of %d records after 300 skipped Parses", n)
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if len(ti.calls) != 0 {
		t.Errorf("the interceptor ran %d times for skipped writes", len(ti.calls))
	}
}
