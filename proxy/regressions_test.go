package proxy

// Differences from Postgres that TestDifferential (differential_test.go)
// found, each reduced to the messages that show it.

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

func withoutNotices(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if m != "NoticeResponse" {
			out = append(out, m)
		}
	}
	return out
}

// TestExecuteInFailedTransaction: in a failed transaction Postgres answers
// an Execute with 34000 when the portal does not exist (its Bind failed)
// and with 25P02 when it does. The proxy asked upstream whether an
// intercepted portal was still there, which in a failed transaction fails
// with 25P02 either way.
func TestExecuteInFailedTransaction(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	run := func(url string) []string {
		rc := dialRaw(t, url)
		rc.send(&pgproto3.Query{String: "BEGIN"})
		rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Parse{Name: "s", Query: insertX},
			&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "s", Parameters: [][]byte{[]byte("before")}}, &pgproto3.Sync{})
		rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Query{String: "SELECT 1/0"})
		rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "s", Parameters: [][]byte{[]byte("after")}}, &pgproto3.Sync{})
		out := rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{})
		out = append(out, rc.until("ReadyForQuery", 1)...)
		rc.send(&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{})
		out = append(out, rc.until("ReadyForQuery", 1)...)
		rc.send(&pgproto3.Query{String: "ROLLBACK"})
		rc.until("ReadyForQuery", 1)
		return out
	}
	want := run(direct)
	if len(want) != 6 || !strings.HasPrefix(want[2], "ErrorResponse(34000") || !strings.HasPrefix(want[4], "ErrorResponse(25P02") {
		t.Fatalf("Postgres: %v", want)
	}
	before := ti.count()
	sameTranscript(t, "Execute in a failed transaction", run(url), want)
	if ti.count() != before {
		t.Errorf("interceptor called in a failed transaction")
	}
}

// TestForwardedQueryAfterUnsyncedExtended: extended-protocol requests
// without a Sync, then a Query: Postgres runs the Query in their implicit
// transaction, so a failure in the Query rolls them back too. The proxy
// sent a Sync of its own before a Query its interceptor handed back
// (Call.Forward), which committed them on their own.
func TestForwardedQueryAfterUnsyncedExtended(t *testing.T) {
	tp, _, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	admin := pgtest.Connect(t, direct)
	if _, err := admin.Exec(ctxT(t), `CREATE TABLE t (id int)`); err != nil {
		t.Fatal(err)
	}
	run := func(url string) ([]string, int) {
		admin.Exec(ctxT(t), `TRUNCATE t`)
		rc := dialRaw(t, url)
		rc.send(&pgproto3.Parse{Query: "INSERT INTO t VALUES (1)"}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Query{String: forwardMark + "INSERT INTO t VALUES (2); SELECT 1/0"})
		out := withoutNotices(rc.until("ReadyForQuery", 1))
		var n int
		if err := admin.QueryRow(ctxT(t), `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return out, n
	}
	want, wantN := run(direct)
	got, gotN := run(url)
	sameTranscript(t, "forwarded Query after an unsynced INSERT", got, want)
	if wantN != 0 || gotN != wantN {
		t.Errorf("rows left: %d through the proxy, %d from Postgres", gotN, wantN)
	}
}

// TestInterceptedQueryDropsUnnamed: Postgres drops the unnamed statement
// at every simple Query and replaces the unnamed portal with the Query's
// own. An intercepted Query never reached upstream, so a portal bound
// earlier in the transaction block survived it there: an Execute of it
// then ran the statement upstream as it was, without the interceptor.
func TestInterceptedQueryDropsUnnamed(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Query{String: "BEGIN"})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Parse{Query: insertX}, &pgproto3.Bind{Parameters: [][]byte{[]byte("early")}}, &pgproto3.Sync{})
	sameTranscript(t, "bind", rc.until("ReadyForQuery", 1), []string{"ParseComplete", "BindComplete", "ReadyForQuery(T)"})
	rc.send(&pgproto3.Query{String: "INSERT INTO stripe.x (v) VALUES ('simple') RETURNING id, v"})
	sameTranscript(t, "intercepted Query", withoutNotices(rc.until("ReadyForQuery", 1)),
		[]string{"RowDescription", "DataRow(x_SIMPLE,simple)", "CommandComplete(INSERT 0 1)", "ReadyForQuery(T)"})
	before := ti.count()
	rc.send(&pgproto3.Execute{}, &pgproto3.Sync{})
	sameTranscript(t, "Execute of the unnamed portal", rc.until("ReadyForQuery", 1),
		[]string{`ErrorResponse(34000 portal "" does not exist)`, "ReadyForQuery(E)"})
	rc.send(&pgproto3.Query{String: "ROLLBACK"})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Bind{Parameters: [][]byte{[]byte("late")}}, &pgproto3.Sync{})
	sameTranscript(t, "Bind of the unnamed statement", rc.until("ReadyForQuery", 1),
		[]string{"ErrorResponse(26000 unnamed prepared statement does not exist)", "ReadyForQuery(I)"})
	if ti.count() != before {
		t.Errorf("interceptor calls %d → %d", before, ti.count())
	}
}

// TestInterceptReexecuteWithoutRows: Postgres runs a statement without
// result rows (no RETURNING) to completion at the first Execute of its
// portal, whatever the row limit, and refuses later ones (55000). The proxy
// answered them with an empty success (INSERT 0 0), as for a RETURNING
// statement whose rows have all been fetched.
func TestInterceptReexecuteWithoutRows(t *testing.T) {
	calls := 0
	ic := InterceptorFunc(func(ctx context.Context, call *Call) error {
		calls++
		return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")})
	})
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: ic})
	db := pgtest.NewDB(t)
	admin := pgtest.Connect(t, db)
	if _, err := admin.Exec(ctxT(t), `CREATE SCHEMA stripe; CREATE TABLE stripe.x (id text primary key, v text); CREATE TABLE t (id text primary key, v text)`); err != nil {
		t.Fatal(err)
	}
	run := func(url, sql string, inBlock bool) []string {
		rc := dialRaw(t, url)
		if inBlock {
			// The portal outlives Sync; the second Execute comes alone.
			rc.send(&pgproto3.Query{String: "BEGIN"})
			rc.until("ReadyForQuery", 1)
			rc.send(&pgproto3.Parse{Name: "s", Query: sql}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"},
				&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{})
			out := rc.until("ReadyForQuery", 1)
			rc.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
			return append(out, rc.until("ReadyForQuery", 1)...)
		}
		rc.send(&pgproto3.Parse{Name: "s", Query: sql}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"},
			&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		return rc.until("ReadyForQuery", 1)
	}
	for _, inBlock := range []bool{false, true} {
		admin.Exec(ctxT(t), `TRUNCATE t`)
		want := run(db, `INSERT INTO t VALUES ('a', 'b')`, inBlock)
		if !strings.Contains(strings.Join(want, " "), `ErrorResponse(55000 portal "p" cannot be run)`) {
			t.Fatalf("Postgres: %v", want)
		}
		calls = 0
		sameTranscript(t, "Execute of a portal that ran", run(tp.via(t, db), `INSERT INTO stripe.x VALUES ('a', 'b')`, inBlock), want)
		if calls != 1 {
			t.Errorf("interceptor called %d times, want 1", calls)
		}
	}
	var n int
	if err := admin.QueryRow(ctxT(t), `SELECT count(*) FROM stripe.x`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows in stripe.x: %d %v", n, err)
	}
}

// TestUncertainStatementAccepted: a statement name whose intercepted Parse
// failed, reused for BEGIN ISOLATION LEVEL. The proxy could not tell which
// statement the name held and asked upstream with a query of its own,
// which made the client's BEGIN come after the transaction's first query:
// refused (25001). Postgres's ParseComplete already says the new statement
// is the one.
func TestUncertainStatementAccepted(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	run := func(url string) []string {
		rc := dialRaw(t, url)
		rc.send(&pgproto3.Parse{Name: "s", Query: "INSERT INTO stripe.x (nosuchcolumn) VALUES ($1)"}, &pgproto3.Sync{})
		out := rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Parse{Name: "s", Query: "BEGIN ISOLATION LEVEL REPEATABLE READ"}, &pgproto3.Bind{PreparedStatement: "s"},
			&pgproto3.Execute{}, &pgproto3.Sync{})
		out = append(out, withoutNotices(rc.until("ReadyForQuery", 1))...)
		rc.send(&pgproto3.Query{String: "SHOW transaction_isolation"})
		return append(out, rc.until("ReadyForQuery", 1)...)
	}
	want := run(direct)
	before := ti.count()
	sameTranscript(t, "BEGIN under a reused statement name", run(url), want)
	if ti.count() != before {
		t.Errorf("interceptor called for BEGIN")
	}
}

// TestSkippedUnnamedParse: Postgres skips every request after an error
// until Sync, a Parse of the unnamed statement too, which then keeps the
// statement it had. The proxy took the skipped Parse for the unnamed
// statement: a later Bind and Execute of it ran an intercepted statement
// Postgres would not have run, or (the other way round) ran one that
// should have been intercepted upstream as it was.
func TestSkippedUnnamedParse(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	skipped := func(rc *rawConn, sql string) {
		t.Helper()
		rc.send(&pgproto3.Parse{Name: "bad", Query: "SELEC 1"}, &pgproto3.Parse{Query: sql}, &pgproto3.Sync{})
		got := rc.until("ReadyForQuery", 1)
		if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(42601") {
			t.Fatalf("failed batch: %v", got)
		}
	}
	bindExecute := []pgproto3.FrontendMessage{&pgproto3.Bind{Parameters: [][]byte{[]byte("v")}}, &pgproto3.Execute{}, &pgproto3.Sync{}}

	// A read in place, the skipped Parse an intercepted write: as
	// Postgres, the read runs.
	run := func(url string) []string {
		rc := dialRaw(t, url)
		rc.send(&pgproto3.Parse{Query: "SELECT $1::text AS x"}, &pgproto3.Sync{})
		rc.until("ReadyForQuery", 1)
		skipped(rc, insertX)
		rc.send(bindExecute...)
		return rc.until("ReadyForQuery", 1)
	}
	want := run(direct)
	before := ti.count()
	sameTranscript(t, "read in place", run(url), want)
	if ti.count() != before {
		t.Errorf("interceptor called for a write Postgres skipped")
	}

	// An intercepted write in place, the skipped Parse a read: the write
	// runs, and goes to the interceptor.
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Parse{Query: insertX}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	skipped(rc, "SELECT $1::text AS x")
	before = ti.count()
	rc.send(bindExecute...)
	sameTranscript(t, "write in place", withoutNotices(rc.until("ReadyForQuery", 1)),
		[]string{"BindComplete", "DataRow(x_V,v)", "CommandComplete(INSERT 0 1)", "ReadyForQuery(I)"})
	if ti.count() != before+1 {
		t.Errorf("interceptor calls %d → %d", before, ti.count())
	}
}

// TestSkippedQueryKeepsUnnamedPortal: a simple Query that Postgres skips
// (after an error earlier in the batch) does not replace the unnamed
// portal. The proxy forgot the portal at every Query, so an Execute of a
// portal of an intercepted write that survived (bound before a savepoint
// the failure was rolled back to) ran upstream as it was. (Postgres keeps
// the portal: checked in TestDifferential's terms by running the same
// with a read.)
func TestSkippedQueryKeepsUnnamedPortal(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Query{String: "BEGIN"})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Parse{Query: insertX}, &pgproto3.Bind{Parameters: [][]byte{[]byte("kept")}}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	// (Savepoints in the extended protocol: a Query would replace the
	// portal.)
	savepoint := func(sql string) {
		rc.send(&pgproto3.Parse{Name: "sp", Query: sql}, &pgproto3.Bind{DestinationPortal: "sp", PreparedStatement: "sp"},
			&pgproto3.Execute{Portal: "sp"}, &pgproto3.Close{ObjectType: 'P', Name: "sp"}, &pgproto3.Close{ObjectType: 'S', Name: "sp"}, &pgproto3.Sync{})
		if got := rc.until("ReadyForQuery", 1); got[len(got)-1] != "ReadyForQuery(T)" {
			t.Fatalf("%s: %v", sql, got)
		}
	}
	savepoint("SAVEPOINT a")
	rc.send(&pgproto3.Parse{Name: "bad", Query: "SELEC 1"}, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Sync{})
	sameTranscript(t, "skipped Query", rc.until("ReadyForQuery", 1),
		[]string{`ErrorResponse(42601 syntax error at or near "SELEC")`, "ReadyForQuery(E)"})
	savepoint("ROLLBACK TO SAVEPOINT a")
	before := ti.count()
	rc.send(&pgproto3.Execute{}, &pgproto3.Sync{})
	sameTranscript(t, "Execute of the unnamed portal", withoutNotices(rc.until("ReadyForQuery", 1)),
		[]string{"DataRow(x_KEPT,kept)", "CommandComplete(INSERT 0 1)", "ReadyForQuery(T)"})
	if ti.count() != before+1 {
		t.Errorf("interceptor calls %d → %d: the INSERT ran upstream as it is", before, ti.count())
	}
}

// TestBindParamsOutliveBuffer: the parameters of a Bind of an intercepted
// statement are used at its Execute, which may come after more messages
// (another batch; or in the same batch, past the end of the proxy's read
// buffer). They were kept as references into the read buffer, which those
// messages overwrite: the interceptor got someone else's bytes.
func TestBindParamsOutliveBuffer(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Query{String: "BEGIN"})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Parse{Name: "s", Query: insertX},
		&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", Parameters: [][]byte{[]byte("mine")}}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Query{String: "SELECT '" + strings.Repeat("overwritten ", 100) + "'"})
	rc.until("ReadyForQuery", 1)
	// In one batch: a message longer than the 32 kB read buffer between
	// Bind and Execute.
	rc.send(&pgproto3.Bind{DestinationPortal: "q", PreparedStatement: "s", Parameters: [][]byte{[]byte("also mine")}},
		&pgproto3.Describe{ObjectType: 'P', Name: "q"}, &pgproto3.Query{String: "SELECT '" + strings.Repeat("x", 40000) + "'"},
		&pgproto3.Execute{Portal: "q"}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 2)
	rc.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
	sameTranscript(t, "Execute after other messages", withoutNotices(rc.until("ReadyForQuery", 1)),
		[]string{"DataRow(x_MINE,mine)", "CommandComplete(INSERT 0 1)", "ReadyForQuery(T)"})
	if got := string(ti.last().Params[0]); got != "mine" {
		t.Errorf("interceptor got %q", got)
	}
	rc.send(&pgproto3.Query{String: "SELECT v FROM stripe.x ORDER BY v"})
	sameTranscript(t, "rows", rc.until("ReadyForQuery", 1),
		[]string{"RowDescription", "DataRow(also mine)", "DataRow(mine)", "CommandComplete(SELECT 2)", "ReadyForQuery(T)"})
}
