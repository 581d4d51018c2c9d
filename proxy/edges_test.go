package proxy

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

// rawConn is a connected, authenticated session driven message by message.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
	pid  uint32 // the backend's, as BackendKeyData gave it
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	pc, err := pgconn.Connect(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return &rawConn{t: t, conn: hc.Conn, fe: hc.Frontend, pid: hc.PID}
}

func (rc *rawConn) send(msgs ...pgproto3.FrontendMessage) {
	rc.t.Helper()
	for _, m := range msgs {
		rc.fe.Send(m)
	}
	if err := rc.fe.Flush(); err != nil {
		rc.t.Fatal(err)
	}
}

// until reads messages until one of type stop (by Go type name, e.g.
// "ReadyForQuery") has been seen n times, and returns a compact transcript.
func (rc *rawConn) until(stop string, n int) []string {
	rc.t.Helper()
	var out []string
	rc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for seen := 0; seen < n; {
		msg, err := rc.fe.Receive()
		if err != nil {
			rc.t.Fatalf("receive after %v: %v", out, err)
		}
		name := msgName(msg, false)
		out = append(out, name)
		if strings.HasPrefix(name, stop) {
			seen++
		}
	}
	return out
}

func sameTranscript(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// TestExtendedCopyInWithSync: a client that sends Sync right after
// Execute of COPY FROM STDIN (libpq's PQexecParams, tokio-postgres) and
// another after CopyDone. Postgres ignores Sync in copy-in mode, so only the
// second gets a ReadyForQuery; the proxy's reply queue must not keep an
// entry for the first, or later replies are matched to the wrong requests
// (an intercepted statement then never gets its turn).
func TestExtendedCopyInWithSync(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	admin := pgtest.Connect(t, strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1))
	if _, err := admin.Exec(ctxT(t), `CREATE TABLE t (id int, s text)`); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Parse{Query: "COPY t FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rc.until("CopyInResponse", 1)
	rc.send(&pgproto3.CopyData{Data: []byte("1\tone\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	sameTranscript(t, "end of COPY", rc.until("ReadyForQuery", 1), []string{"CommandComplete(COPY 1)", "ReadyForQuery(I)"})

	// The same, where the COPY fails on bad data.
	rc.send(&pgproto3.Parse{Query: "COPY t FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rc.until("CopyInResponse", 1)
	rc.send(&pgproto3.CopyData{Data: []byte("x\tbad\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	got := rc.until("ReadyForQuery", 1)
	if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(22P02") {
		t.Errorf("failed COPY: %v", got)
	}

	rc.send(&pgproto3.Query{String: "SELECT count(*) FROM t"})
	sameTranscript(t, "query", rc.until("ReadyForQuery", 1), []string{"RowDescription", "DataRow(1)", "CommandComplete(SELECT 1)", "ReadyForQuery(I)"})
	before := ti.count()
	rc.send(&pgproto3.Query{String: "INSERT INTO stripe.x (v) VALUES ('after') RETURNING id, v"})
	sameTranscript(t, "intercepted query", rc.until("ReadyForQuery", 1),
		[]string{"RowDescription", "DataRow(x_AFTER,after)", "CommandComplete(INSERT 0 1)", "ReadyForQuery(I)"})
	if ti.count() != before+1 {
		t.Errorf("interceptor calls %d → %d", before, ti.count())
	}
}

// TestPipelinedRollbackThenIntercept: in a failed transaction, a
// pipeline that rolls back and then writes: Postgres runs the write after
// the ROLLBACK, so the interceptor must not be told the transaction failed.
func TestPipelinedRollbackThenIntercept(t *testing.T) {
	_, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	conn := pgtest.Connect(t, url)
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("no error")
	}
	if conn.PgConn().TxStatus() != 'E' {
		t.Fatalf("status %c", conn.PgConn().TxStatus())
	}
	// (pgx would prepare the batch first, which a failed transaction
	// refuses: send the messages by hand.)
	before := ti.count()
	rc := &rawConn{t: t, conn: conn.PgConn().Conn(), fe: conn.PgConn().Frontend()}
	rc.send(
		&pgproto3.Parse{Query: "ROLLBACK"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: insertX}, &pgproto3.Bind{Parameters: [][]byte{[]byte("afterrb")}}, &pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	var got []string
	for _, m := range rc.until("ReadyForQuery", 1) {
		if m != "NoticeResponse" { // whether the block is over, the tag does not tell
			got = append(got, m)
		}
	}
	sameTranscript(t, "pipelined ROLLBACK and write", got, []string{
		"ParseComplete", "BindComplete", "CommandComplete(ROLLBACK)",
		"ParseComplete", "BindComplete", "DataRow(x_AFTERRB,afterrb)", "CommandComplete(INSERT 0 1)", "ReadyForQuery(I)"})
	if ti.count() != before+1 || ti.last().TxStatus == 'E' {
		t.Errorf("interceptor calls %d → %d, saw status %c", before, ti.count(), ti.last().TxStatus)
	}

	// After a pipelined COMMIT the write is outside any transaction block.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("COMMIT")
	b.Queue(insertX, "aftercommit")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if s := ti.last().TxStatus; s != 'I' {
		t.Errorf("after COMMIT the interceptor saw status %c, want I", s)
	}
}

// TestInterceptMaxRows: Execute with a row limit on an intercepted
// portal. Postgres runs an INSERT … RETURNING to completion on the first
// Execute, returns max_rows rows and PortalSuspended, and later Executes of
// the portal return the rest (tag counting the rows of that Execute): the
// statement runs once.
func TestInterceptMaxRows(t *testing.T) {
	var calls int
	rows := func(vals ...string) (out []*pgproto3.DataRow) {
		for i := 0; i < len(vals); i += 2 {
			out = append(out, &pgproto3.DataRow{Values: [][]byte{[]byte(vals[i]), []byte(vals[i+1])}})
		}
		return out
	}
	ic := InterceptorFunc(func(ctx context.Context, call *Call) error {
		calls++
		for _, r := range rows("a", "b", "c", "d", "e", "f") {
			call.Send(r)
		}
		return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 3")})
	})
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: ic})
	db := pgtest.NewDB(t)
	admin := pgtest.Connect(t, db)
	if _, err := admin.Exec(ctxT(t), `CREATE SCHEMA stripe; CREATE TABLE stripe.x (id text primary key, v text); CREATE TABLE t (id text primary key, v text)`); err != nil {
		t.Fatal(err)
	}
	run := func(url, sql string, limits ...uint32) []string {
		rc := dialRaw(t, url)
		msgs := []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s", Query: sql},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"},
		}
		for _, n := range limits {
			msgs = append(msgs, &pgproto3.Execute{Portal: "p", MaxRows: n})
		}
		rc.send(append(msgs, &pgproto3.Sync{})...)
		return rc.until("ReadyForQuery", 1)
	}
	for _, limits := range [][]uint32{{1, 1, 5, 5}, {3, 1}, {2, 0}, {0, 0}} {
		t.Run(fmt.Sprint(limits), func(t *testing.T) {
			admin.Exec(ctxT(t), `TRUNCATE t`)
			want := run(db, `INSERT INTO t VALUES ('a', 'b'), ('c', 'd'), ('e', 'f') RETURNING id, v`, limits...)
			calls = 0
			got := run(tp.via(t, db), `INSERT INTO stripe.x VALUES ('a', 'b'), ('c', 'd'), ('e', 'f') RETURNING id, v`, limits...)
			sameTranscript(t, "intercepted vs plain Postgres", got, want)
			if calls != 1 {
				t.Errorf("interceptor called %d times, want 1", calls)
			}
		})
	}
}

// TestClientHalfClose: a client that sends a query and shuts down its
// sending side still gets the reply, as from Postgres.
func TestClientHalfClose(t *testing.T) {
	tp := startProxy(t, Config{})
	db := pgtest.NewDB(t)
	for _, target := range []struct{ name, url string }{{"direct", db}, {"proxy", tp.via(t, db)}} {
		t.Run(target.name, func(t *testing.T) {
			rc := dialRaw(t, target.url)
			rc.send(&pgproto3.Query{String: "SELECT 42"})
			if err := rc.conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			sameTranscript(t, "reply", rc.until("ReadyForQuery", 1), []string{"RowDescription", "DataRow(42)", "CommandComplete(SELECT 1)", "ReadyForQuery(I)"})
		})
	}
}

// TestUnnamedPortalAcrossSync: inside a transaction block the unnamed
// portal outlives Sync (it ends with the transaction), so an Execute after
// Sync still runs the intercepted statement: it must reach the interceptor,
// not run upstream as it is (a local write that never reached Stripe).
func TestUnnamedPortalAcrossSync(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Query{String: "BEGIN"})
	rc.until("ReadyForQuery", 1)
	before := ti.count()
	rc.send(&pgproto3.Parse{Query: insertX}, &pgproto3.Bind{Parameters: [][]byte{[]byte("late")}}, &pgproto3.Sync{})
	sameTranscript(t, "bind", rc.until("ReadyForQuery", 1), []string{"ParseComplete", "BindComplete", "ReadyForQuery(T)"})
	rc.send(&pgproto3.Execute{}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	if ti.count() != before+1 {
		t.Errorf("interceptor calls %d → %d: the INSERT ran upstream as it is", before, ti.count())
	}
	rc.send(&pgproto3.Query{String: "ROLLBACK"})
	rc.until("ReadyForQuery", 1)
	// Once the transaction is over the portal is gone: Postgres refuses
	// the Execute, and the interceptor must not run again.
	before = ti.count()
	rc.send(&pgproto3.Execute{}, &pgproto3.Sync{})
	got := rc.until("ReadyForQuery", 1)
	if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(34000") || ti.count() != before {
		t.Errorf("Execute of a portal gone with its transaction: %v, interceptor calls %d → %d", got, before, ti.count())
	}
}

// TestFailedParseKeepsStatement: a Parse that Postgres refuses (the
// name is taken) leaves the existing statement as it was; executing it must
// still go to the interceptor, not run upstream as it is.
func TestFailedParseKeepsStatement(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Parse{Name: "s", Query: insertX}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Parse{Name: "s", Query: "SELECT $1::text, 'x'"}, &pgproto3.Sync{})
	got := rc.until("ReadyForQuery", 1)
	if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(42P05") {
		t.Fatalf("duplicate Parse: %v", got)
	}
	before := ti.count()
	rc.send(&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("dup")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	got = rc.until("ReadyForQuery", 1)
	if ti.count() != before+1 {
		t.Errorf("statement s (an intercepted INSERT) ran without the interceptor: %v", got)
	}

	// Deallocated by SQL, behind the proxy's back: the name can be reused
	// for a read, which then runs upstream.
	rc.send(&pgproto3.Query{String: "DEALLOCATE s"})
	rc.until("ReadyForQuery", 1)
	before = ti.count()
	rc.send(&pgproto3.Parse{Name: "s", Query: "SELECT $1::text, 'x'"}, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("sel")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	sameTranscript(t, "reused name", rc.until("ReadyForQuery", 1), []string{"ParseComplete", "BindComplete", "DataRow(sel,x)", "CommandComplete(SELECT 1)", "ReadyForQuery(I)"})
	if ti.count() != before {
		t.Errorf("interceptor called for a SELECT")
	}
}

// A Close that Postgres skips (an error earlier in the batch) leaves the
// statement prepared: a later Bind/Execute of it is still intercepted. A
// Close that Postgres does run leaves nothing to intercept.
func TestSkippedCloseKeepsStatement(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Parse{Name: "s", Query: insertX}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Parse{Name: "bad", Query: "SELEC 1"}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	got := rc.until("ReadyForQuery", 1)
	if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(42601") {
		t.Fatalf("batch with a failed Parse: %v", got)
	}
	before := ti.count()
	rc.send(&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("kept")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	got = rc.until("ReadyForQuery", 1)
	if ti.count() != before+1 {
		t.Errorf("statement s (an intercepted INSERT, still prepared) ran without the interceptor: %v", got)
	}

	rc.send(&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	before = ti.count()
	rc.send(&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("gone")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	got = rc.until("ReadyForQuery", 1)
	if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(26000") || ti.count() != before {
		t.Errorf("Bind of a closed statement: %v (%d interceptions)", got, ti.count()-before)
	}
}

// A portal outlives the statement it was bound from: a simple Query drops
// the unnamed statement, and a named one can be closed and prepared again
// with other parameter types. Executing the portal runs what was bound, so
// the interceptor must get that statement's parameter types, not whatever
// the name means now (or 26000 for the unnamed statement that is gone).
func TestPortalOutlivesItsStatement(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Query{String: "BEGIN"})
	rc.until("ReadyForQuery", 1)

	rc.send(&pgproto3.Parse{Query: insertX}, &pgproto3.Bind{DestinationPortal: "p", Parameters: [][]byte{[]byte("a")}}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Query{String: "SELECT 1"})
	rc.until("ReadyForQuery", 1)
	before := ti.count()
	rc.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
	got := rc.until("ReadyForQuery", 1)
	if ti.count() != before+1 || !slices.Contains(got, "DataRow(x_A,a)") {
		t.Fatalf("Execute of a portal whose unnamed statement a Query dropped: %v", got)
	}
	if c := ti.last(); len(c.ParamOIDs) != 1 || c.ParamOIDs[0] != 25 {
		t.Errorf("unnamed: ParamOIDs = %v, want [25]", c.ParamOIDs)
	}

	rc.send(&pgproto3.Parse{Name: "s", Query: insertX}, &pgproto3.Bind{DestinationPortal: "q", PreparedStatement: "s", Parameters: [][]byte{[]byte("b")}},
		&pgproto3.Close{ObjectType: 'S', Name: "s"},
		&pgproto3.Parse{Name: "s", Query: `INSERT INTO stripe.x (v) VALUES ($1::int4::text) RETURNING id, v`}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Execute{Portal: "q"}, &pgproto3.Sync{})
	got = rc.until("ReadyForQuery", 1)
	if !slices.Contains(got, "DataRow(x_B,b)") {
		t.Fatalf("Execute of a portal whose statement name was reused: %v", got)
	}
	if c := ti.last(); len(c.ParamOIDs) != 1 || c.ParamOIDs[0] != 25 || c.SQL != insertX {
		t.Errorf("named: SQL %q ParamOIDs %v, want the bound statement's (text)", c.SQL, c.ParamOIDs)
	}
}

// A named portal lives as long as its transaction; after a Sync, only
// upstream knows whether that transaction (or the savepoint the portal
// was bound under) has ended. An Execute of a portal that is gone goes
// upstream (34000) and never to the interceptor; one that lives is
// intercepted.
func TestPortalLifetimeAcrossSync(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	gone := func(what string) {
		t.Helper()
		before := ti.count()
		rc.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
		got := rc.until("ReadyForQuery", 1)
		if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(34000") || ti.count() != before {
			t.Errorf("%s: Execute of a portal that is gone: %v, interceptor calls %d → %d", what, got, before, ti.count())
		}
	}
	bind := func(v string) {
		t.Helper()
		rc.send(&pgproto3.Parse{Name: "s" + v, Query: insertX}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s" + v, Parameters: [][]byte{[]byte(v)}}, &pgproto3.Sync{})
		rc.until("ReadyForQuery", 1)
	}
	query := func(sql string) {
		t.Helper()
		rc.send(&pgproto3.Query{String: sql})
		rc.until("ReadyForQuery", 1)
	}

	// Bound in an implicit transaction, which its Sync ended; a BEGIN
	// after that does not bring it back.
	bind("implicit")
	query("BEGIN")
	gone("implicit transaction, then BEGIN")
	query("ROLLBACK")

	// Bound under a savepoint that was rolled back.
	query("BEGIN; SAVEPOINT a")
	bind("savepoint")
	query("ROLLBACK TO SAVEPOINT a")
	gone("savepoint rolled back")
	query("ROLLBACK")

	// Bound in a transaction block that is still open: intercepted.
	query("BEGIN")
	bind("open")
	query("SELECT 1")
	before := ti.count()
	rc.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
	got := rc.until("ReadyForQuery", 1)
	if ti.count() != before+1 {
		t.Errorf("Execute of a live portal after Sync: %v, not intercepted", got)
	}
	query("ROLLBACK")
}

// A protocol-level portal is a cursor to SQL: FETCH or MOVE of one bound
// to an intercepted write would have Postgres run the write on its own,
// without Stripe. The proxy refuses it; other cursors fetch as usual.
func TestFetchOfInterceptedPortalRefused(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	rc.send(&pgproto3.Query{String: "BEGIN"})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Parse{Name: "s", Query: insertX}, &pgproto3.Bind{DestinationPortal: "P1", PreparedStatement: "s", Parameters: [][]byte{[]byte("fetched")}}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Query{String: "DECLARE c CURSOR FOR SELECT 7"})
	rc.until("ReadyForQuery", 1)
	rc.send(&pgproto3.Query{String: "FETCH ALL FROM c"})
	if got := rc.until("ReadyForQuery", 1); !slices.Contains(got, "DataRow(7)") {
		t.Fatalf("FETCH of an ordinary cursor: %v", got)
	}
	before := ti.count()
	for _, q := range []string{`FETCH ALL FROM "P1"`, `select 1; move next in "P1";`,
		// Comments and quoted names don't hide the cursor's name.
		`/* c */ FETCH ALL FROM "P1"`, "-- c\nFETCH ALL FROM \"P1\"", `FETCH ALL FROM "P1" /* c */`,
		"FETCH ALL FROM \"P1\" -- c", `select ';'; FETCH/**/ALL FROM"P1"`} {
		rc.send(&pgproto3.Query{String: q})
		got := rc.until("ReadyForQuery", 1)
		if len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(0A000") || got[1] != "ReadyForQuery(E)" {
			t.Fatalf("%s: %v", q, got)
		}
		rc.send(&pgproto3.Query{String: "ROLLBACK TO SAVEPOINT nosuch"})
		rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Query{String: "ROLLBACK"})
		rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Query{String: "BEGIN"})
		rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Bind{DestinationPortal: "P1", PreparedStatement: "s", Parameters: [][]byte{[]byte("fetched")}}, &pgproto3.Sync{})
		rc.until("ReadyForQuery", 1)
	}
	if ti.count() != before {
		t.Errorf("the interceptor ran for a FETCH")
	}
	rc.send(&pgproto3.Query{String: "SELECT count(*) FROM stripe.x WHERE v = 'fetched'"})
	if got := rc.until("ReadyForQuery", 1); !slices.Contains(got, "DataRow(0)") {
		t.Fatalf("the bound INSERT ran in Postgres: %v", got)
	}
}

// The same FETCH or MOVE, prepared and executed through the extended
// protocol, is refused at its Execute, whichever of the two portals was
// bound first; in a failed transaction Postgres answers it as usual.
func TestExtendedFetchOfInterceptedPortalRefused(t *testing.T) {
	_, ti, url := setupIntercept(t)
	rc := dialRaw(t, url)
	query := func(sql string) []string {
		t.Helper()
		rc.send(&pgproto3.Query{String: sql})
		return rc.until("ReadyForQuery", 1)
	}
	bindWrite := func() {
		t.Helper()
		rc.send(&pgproto3.Parse{Name: "s", Query: insertX}, &pgproto3.Bind{DestinationPortal: "P1", PreparedStatement: "s", Parameters: [][]byte{[]byte("fetched")}}, &pgproto3.Sync{})
		rc.until("ReadyForQuery", 1)
		rc.send(&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
		rc.until("ReadyForQuery", 1)
	}
	before := ti.count()

	query("BEGIN")
	query("DECLARE c CURSOR FOR SELECT 7")
	rc.send(&pgproto3.Parse{Name: "fc", Query: "FETCH ALL FROM c"}, &pgproto3.Bind{PreparedStatement: "fc"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if got := rc.until("ReadyForQuery", 1); !slices.Contains(got, "DataRow(7)") {
		t.Fatalf("extended FETCH of an ordinary cursor: %v", got)
	}
	bindWrite()
	rc.send(&pgproto3.Parse{Name: "f", Query: "/* c */ fetch all from \"P1\" -- c"}, &pgproto3.Bind{PreparedStatement: "f"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	got := rc.until("ReadyForQuery", 1)
	if len(got) != 4 || !strings.HasPrefix(got[2], "ErrorResponse(0A000") || got[3] != "ReadyForQuery(E)" {
		t.Fatalf("extended FETCH of an intercepted portal: %v", got)
	}
	// Failed transaction: Postgres' own answer.
	rc.send(&pgproto3.Bind{DestinationPortal: "again", PreparedStatement: "f"}, &pgproto3.Execute{Portal: "again"}, &pgproto3.Sync{})
	if got := rc.until("ReadyForQuery", 1); len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(25P02") {
		t.Fatalf("FETCH in a failed transaction: %v", got)
	}
	query("ROLLBACK")

	// The MOVE's portal bound before the write's.
	query("BEGIN")
	rc.send(&pgproto3.Parse{Name: "m", Query: `MOVE NEXT IN "P1"`}, &pgproto3.Bind{DestinationPortal: "mp", PreparedStatement: "m"}, &pgproto3.Sync{})
	rc.until("ReadyForQuery", 1)
	bindWrite()
	rc.send(&pgproto3.Execute{Portal: "mp"}, &pgproto3.Sync{})
	if got := rc.until("ReadyForQuery", 1); len(got) != 2 || !strings.HasPrefix(got[0], "ErrorResponse(0A000") {
		t.Fatalf("MOVE bound before the intercepted portal: %v", got)
	}
	query("ROLLBACK")

	if ti.count() != before {
		t.Errorf("the interceptor ran for a FETCH")
	}
	if got := query("SELECT count(*) FROM stripe.x WHERE v = 'fetched'"); !slices.Contains(got, "DataRow(0)") {
		t.Fatalf("the bound INSERT ran in Postgres: %v", got)
	}
}

// msgName is a compact transcript entry for msg: its type and, for the
// messages whose content tells replies apart, that content (an error's
// severity too when withSeverity).
func msgName(msg pgproto3.BackendMessage, withSeverity bool) string {
	name := strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
	switch m := msg.(type) {
	case *pgproto3.CommandComplete:
		name += "(" + string(m.CommandTag) + ")"
	case *pgproto3.ErrorResponse:
		if withSeverity {
			name += "(" + m.Severity + " " + m.Code + " " + m.Message + ")"
		} else {
			name += "(" + m.Code + " " + m.Message + ")"
		}
	case *pgproto3.DataRow:
		var vals []string
		for _, v := range m.Values {
			vals = append(vals, string(v))
		}
		name += "(" + strings.Join(vals, ",") + ")"
	case *pgproto3.ReadyForQuery:
		name += "(" + string(m.TxStatus) + ")"
	}
	return name
}

// connectPg opens a pgconn session to url, closed when the test ends.
func connectPg(t *testing.T, url string) *pgconn.PgConn {
	t.Helper()
	pc, err := pgconn.Connect(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	return pc
}
