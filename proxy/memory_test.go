package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgstripe/pgstripe/heaptest"
	"github.com/pgstripe/pgstripe/pgtest"
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

func classifyRelayTest(sql string) Class {
	if strings.HasPrefix(sql, relayMark) {
		return Intercept
	}
	return Passthrough
}

// TestSlowReaderHugeResult: a client that asks for a large result
// (many rows, one row of a single large value, COPY TO STDOUT, a relayed
// write's RETURNING) and reads none of it. Postgres then waits on its
// socket (ClientWrite) as it would for the client directly, the proxy
// holds its buffers only, other clients are served, and when the client
// goes away the upstream backend exits and the session's goroutines end.
// A single DataRow or CopyData was read whole before it was passed on (a
// 40 MB value: 40 MB of heap, ~1.5 times that while the buffer grew, for
// as long as the client did not read, up to 1 GB a session), and a relayed
// statement's result was collected whole before its first row went out.
func TestSlowReaderHugeResult(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyRelayTest, Interceptor: relayInterceptorTest})
	db := pgtest.NewDB(t)
	admin := pgtest.Connect(t, db)
	if _, err := admin.Exec(ctxT(t), `CREATE UNLOGGED TABLE big (id int, v text)`); err != nil {
		t.Fatal(err)
	}
	url := tp.via(t, db)
	extended := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	simple := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}
	}
	const (
		manyRows = "SELECT repeat('x', 1000) FROM generate_series(1, 200000)" // ~200 MB
		oneRow   = "SELECT repeat('x', 40000000)"                             // one 40 MB value
		returned = relayMark + "INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 60000) g RETURNING *"
	)
	for _, tc := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
	}{
		{"many rows, simple", simple(manyRows)},
		{"many rows, extended", extended(manyRows)},
		{"one large row, simple", simple(oneRow)},
		{"one large row, extended", extended(oneRow)},
		{"COPY TO STDOUT, many rows", simple("COPY (" + manyRows + ") TO STDOUT")},
		{"COPY TO STDOUT, one large row", simple("COPY (" + oneRow + ") TO STDOUT")},
		{"relayed RETURNING, simple", simple(returned)},
		{"relayed RETURNING, extended", extended(returned)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			goroutines := runtime.NumGoroutine()
			base := heapInUse()
			rc := dialRaw(t, url)
			pid := tp.onlySession(t).upstreamPID
			rc.send(tc.msgs...)
			// The first bytes of the reply, then nothing: whatever the
			// proxy holds to pass on, it holds from then on.
			rc.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.ReadFull(rc.conn, make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
			event := waitBackend(t, admin, pid)
			grew := heapInUse() - base
			t.Logf("heap grew %d MB while the client does not read", grew>>20)
			if grew > 16<<20 {
				t.Errorf("heap grew %d MB for one client that does not read", grew>>20)
			}
			if event != "ClientWrite" {
				t.Errorf("upstream sent its whole reply (%s) to a client that reads none of it", event)
			}
			other := pgtest.Connect(t, url)
			var n int
			if err := other.QueryRow(ctxT(t), `SELECT 7`).Scan(&n); err != nil || n != 7 {
				t.Fatalf("another client meanwhile: %d, %v", n, err)
			}
			other.Close(ctxT(t))
			rc.conn.Close()
			tp.waitSessions(t, 0)
			waitBackendGone(t, admin, pid)
			waitGoroutines(t, goroutines)
		})
	}
}

// TestLargeResultsArriveWhole: what passes in pieces (a DataRow or
// CopyData over streamMin) reaches a client that reads it exactly as
// Postgres sent it, in both protocols, followed by the rest of the
// reply; a relayed write's RETURNING has every row, and one that fails
// sends the error alone, as Postgres does.
func TestLargeResultsArriveWhole(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyRelayTest, Interceptor: relayInterceptorTest})
	db := pgtest.NewDB(t)
	admin := pgtest.Connect(t, db)
	if _, err := admin.Exec(ctxT(t), `CREATE TABLE r (id int, v text)`); err != nil {
		t.Fatal(err)
	}
	url := tp.via(t, db)
	const size = 3*(256<<10) + 12345 // pieces of a message passed on as it arrives
	value := fmt.Sprintf("SELECT repeat('ab', %d) || 'z'", size/2)
	want := strings.Repeat("ab", size/2) + "z"
	for _, target := range []struct{ name, url string }{{"direct", db}, {"proxy", url}} {
		rc := dialRaw(t, target.url)
		rc.conn.SetDeadline(time.Now().Add(30 * time.Second))
		rc.send(&pgproto3.Query{String: value + "; " + value},
			&pgproto3.Parse{Query: value}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Query{String: "COPY (" + value + " UNION ALL SELECT 'short') TO STDOUT"})
		var got []string
		for rfq := 0; rfq < 3; {
			msg, err := rc.fe.Receive()
			if err != nil {
				t.Fatalf("%s: after %v: %v", target.name, got, err)
			}
			switch m := msg.(type) {
			case *pgproto3.DataRow:
				if len(m.Values) != 1 || string(m.Values[0]) != want {
					t.Fatalf("%s: DataRow of %d bytes is not the value", target.name, len(m.Values[0]))
				}
				got = append(got, "DataRow(value)")
			case *pgproto3.CopyData:
				switch string(m.Data) {
				case want + "\n":
					got = append(got, "CopyData(value)")
				case "short\n":
					got = append(got, "CopyData(short)")
				default:
					t.Fatalf("%s: CopyData of %d bytes", target.name, len(m.Data))
				}
			case *pgproto3.ReadyForQuery:
				rfq++
				got = append(got, msgName(msg, false))
			default:
				got = append(got, msgName(msg, false))
			}
		}
		sameTranscript(t, target.name, got, []string{
			"RowDescription", "DataRow(value)", "CommandComplete(SELECT 1)",
			"RowDescription", "DataRow(value)", "CommandComplete(SELECT 1)", "ReadyForQuery(I)",
			"ParseComplete", "BindComplete", "DataRow(value)", "CommandComplete(SELECT 1)", "ReadyForQuery(I)",
			"CopyOutResponse", "CopyData(value)", "CopyData(short)", "CopyDone", "CommandComplete(COPY 2)", "ReadyForQuery(I)",
		})
	}

	// Relayed: every row, in order, and the tag.
	conn := pgtest.Connect(t, url)
	rows, err := conn.Query(ctxT(t), relayMark+"INSERT INTO r SELECT g, repeat('v', 1000) FROM generate_series(1, 5000) g RETURNING id", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 5000 || ids[0] != 1 || ids[4999] != 5000 {
		t.Fatalf("relayed RETURNING: %d rows", len(ids))
	}
	if tag := rows.CommandTag().String(); tag != "INSERT 0 5000" {
		t.Errorf("relayed tag %q", tag)
	}
	// A relayed write that fails in its third row: the error alone, no
	// RowDescription first (Postgres sends a write's rows once it ran
	// to its end).
	for _, target := range []struct{ name, url string }{{"direct", db}, {"proxy", url}} {
		rc := dialRaw(t, target.url)
		rc.send(&pgproto3.Query{String: relayMark + "INSERT INTO r SELECT g FROM generate_series(1, 5) g RETURNING 1/(3-id)"})
		sameTranscript(t, target.name+": failing RETURNING", rc.until("ReadyForQuery", 1),
			[]string{"ErrorResponse(22012 division by zero)", "ReadyForQuery(I)"})
	}
}

// TestLargeCopyIn: a 100 MB COPY FROM STDIN streams through in
// bounded memory, every row arrives, and the proxy reads the client no
// faster than Postgres takes the data.
func TestLargeCopyIn(t *testing.T) {
	tp := startProxy(t, Config{})
	db := pgtest.NewDB(t)
	admin := pgtest.Connect(t, db)
	if _, err := admin.Exec(ctxT(t), `CREATE UNLOGGED TABLE c (id int, v text)`); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, tp.via(t, db))
	rc.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	rc.send(&pgproto3.Query{String: "COPY c FROM STDIN"})
	rc.until("CopyInResponse", 1)
	const rows = 100_000
	pad := strings.Repeat("y", 1000)
	base := heapInUse()
	peak := base
	var chunk []byte
	sent := 0
	for i := 1; i <= rows; i++ {
		chunk = fmt.Appendf(chunk, "%d\t%s\n", i, pad)
		if len(chunk) >= 64<<10 || i == rows {
			if _, err := rc.conn.Write(enc(&pgproto3.CopyData{Data: chunk})); err != nil {
				t.Fatal(err)
			}
			sent += len(chunk)
			chunk = chunk[:0]
			if i%20000 < 64 {
				peak = max(peak, heapInUse())
			}
		}
	}
	rc.send(&pgproto3.CopyDone{})
	sameTranscript(t, "COPY", rc.until("ReadyForQuery", 1), []string{"CommandComplete(COPY 100000)", "ReadyForQuery(I)"})
	t.Logf("%d MB copied; heap %d MB before, peak %d MB", sent>>20, base>>20, peak>>20)
	if peak-base > 16<<20 {
		t.Errorf("heap grew %d MB during the COPY", (peak-base)>>20)
	}
	var n, total int64
	if err := admin.QueryRow(ctxT(t), `SELECT count(*), sum(length(v)) FROM c`).Scan(&n, &total); err != nil {
		t.Fatal(err)
	}
	if n != rows || total != rows*1000 {
		t.Errorf("table has %d rows, %d bytes of v; want %d, %d", n, total, rows, rows*1000)
	}
}

// relayMark makes relayInterceptorTest run the statement itself
// (Call.Relay), as write-through does with a write that is not its own
// (an unqualified table name that resolves to the application's table).
const relayMark = "/* relay */ "

var relayInterceptorTest = InterceptorFunc(func(ctx context.Context, call *Call) error { return call.Relay(ctx) })

// TestCutOffLongRow: upstream sends the start of a DataRow longer
// than streamMin and dies without sending the rest. The client gets that
// start as it arrives (before the rest, which never comes), and then the
// close alone: nothing after the cut-off bytes, neither the proxy's FATAL
// 08006 nor anything else, which the client would read as more of the
// row. (Before pieces, the proxy held the start until the whole row had
// arrived.)
func TestCutOffLongRow(t *testing.T) {
	for _, mode := range []crashMode{crashEOF, crashReset} {
		t.Run(mode.String(), func(t *testing.T) {
			h := newSessionHarness(t, noInterceptor(t))
			const size, sent = 1 << 20, 600 << 10 // the value, and what upstream sends of it
			rd := encode(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
			head := []byte{'D', 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(head[1:], uint32(4+2+4+size))
			binary.BigEndian.PutUint32(head[7:], size)
			want := append(append(rd, head...), bytes.Repeat([]byte("x"), sent)...)
			got := make(chan struct{})
			dead := make(chan struct{})
			go func() {
				defer close(dead)
				if _, err := pgproto3.NewBackend(h.up, h.up).Receive(); err != nil {
					t.Errorf("fake upstream: %v", err)
					return
				}
				if _, err := h.up.Write(want); err != nil {
					t.Errorf("fake upstream: %v", err)
					return
				}
				<-got
				if mode == crashReset {
					h.up.SetLinger(0)
				}
				h.up.Close()
			}()
			h.start(t, endAsRun)
			h.send(t, &pgproto3.Query{String: "SELECT v FROM big"})
			h.client.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, len(want))
			if _, err := io.ReadFull(h.client, buf); err != nil {
				t.Fatalf("the row's start did not reach the client before its rest: %v", err)
			}
			if !bytes.Equal(buf, want) {
				t.Fatal("the client got other bytes than upstream sent")
			}
			close(got)
			<-dead
			rest, err := io.ReadAll(h.client)
			if len(rest) > 0 {
				t.Errorf("after the cut-off row the client got %d more bytes (%q…): it reads them as the row's", len(rest), rest[:min(len(rest), 40)])
			}
			if err != nil && !isClosedErr(err) && !bytes.Contains([]byte(err.Error()), []byte("reset")) {
				t.Errorf("client read: %v", err)
			}
		})
	}
}

// limitMark makes limitInterceptor run the rest of the
// statement with QueryParamsLimit (limit in bytes after the mark, 0 for
// QueryParams) and answer with the number of rows and the total length
// of their values, or 54000 when the result is past the limit.
const limitMark = "/* limit "

func classifyLimit(sql string) Class {
	if strings.HasPrefix(sql, limitMark) {
		return Intercept
	}
	return Passthrough
}

var limitInterceptor = InterceptorFunc(func(ctx context.Context, call *Call) error {
	rest := strings.TrimPrefix(call.SQL, limitMark)
	n, sql, _ := strings.Cut(rest, " */ ")
	limit, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return err
	}
	var res *Result
	if limit == 0 {
		res, err = call.Upstream().QueryParams(ctx, sql, nil, nil, nil, nil)
	} else {
		res, err = call.Upstream().QueryParamsLimit(ctx, sql, nil, nil, nil, nil, limit)
	}
	var tl *ResultTooLargeError
	if errors.As(err, &tl) {
		return call.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "54000", Message: tl.Error()})
	}
	if err != nil {
		return err
	}
	total := 0
	for _, r := range res.Rows {
		for _, v := range r {
			total += len(v)
		}
	}
	call.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("rows"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1},
		{Name: []byte("bytes"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1},
	}})
	call.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(strconv.Itoa(len(res.Rows))), []byte(strconv.Itoa(total))}})
	return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
})

// TestQueryParamsLimit: an interceptor's query keeps its rows
// within the limit it gives: under it every row arrives (a long row,
// gathered from its pieces, exactly); past it, many rows or one row
// longer than the limit, the query ends at once (upstream cancels it:
// the results asked for would take minutes to produce) with
// ResultTooLargeError, holding about the limit, never the row. The
// session goes on as after an error: a transaction block is aborted, and
// the cancel never reaches a later statement.
func TestQueryParamsLimit(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyLimit, Interceptor: limitInterceptor})
	db := pgtest.NewDB(t)
	conn := pgtest.Connect(t, tp.via(t, db))
	ctx := ctxT(t)
	for _, tc := range []struct {
		name  string
		limit int64
		sql   string
		rows  string // "" for refused
		bytes string
	}{
		{"rows under the limit", 1 << 20, "SELECT g::text FROM generate_series(1, 1000) g", "1000", "2893"},
		{"a long row under the limit", 4 << 20, "SELECT repeat('ab', 600000) || 'z'", "1", "1200001"},
		{"a long row, no limit", 0, "SELECT repeat('ab', 600000) || 'z'", "1", "1200001"},
		{"endless rows", 1 << 20, "SELECT repeat('x', 100), generate_series(1, 1000000000)", "", ""},
		{"one row longer than the limit", 1 << 20, "SELECT repeat('x', 6000000)", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rows, bytes string
			var err error
			start := time.Now()
			grew := heaptest.PeakGrowth(func() {
				err = conn.QueryRow(ctx, fmt.Sprintf("%s%d */ %s", limitMark, tc.limit, tc.sql), pgx.QueryExecModeSimpleProtocol).Scan(&rows, &bytes)
			})
			t.Logf("%v, heap rose %d MB in %v", err, grew>>20, time.Since(start).Round(time.Millisecond))
			if tc.rows == "" {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "54000" {
					t.Fatalf("got %v, want 54000", err)
				}
				if grew > 3*tc.limit+16<<20 {
					t.Errorf("heap rose %d MB for a limit of %d MB", grew>>20, tc.limit>>20)
				}
			} else if err != nil || rows != tc.rows || bytes != tc.bytes {
				t.Fatalf("got %s rows, %s bytes, %v; want %s, %s", rows, bytes, err, tc.rows, tc.bytes)
			}
			// A cancel left in flight would fail this one.
			var n int
			if err := conn.QueryRow(ctx, `SELECT 7 FROM pg_sleep(0.2)`).Scan(&n); err != nil || n != 7 {
				t.Fatalf("the next statement: %d, %v", n, err)
			}
		})
	}
	if _, err := conn.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, limitMark+"1024 */ SELECT repeat('x', 100), generate_series(1, 1000000000)", pgx.QueryExecModeSimpleProtocol)
	if sqlstateOf(err) != "54000" {
		t.Fatalf("in a transaction block: %v", err)
	}
	if _, err := conn.Exec(ctx, `SELECT 1`); sqlstateOf(err) != "25P02" {
		t.Fatalf("after the refusal in a transaction block: %v, want 25P02", err)
	}
	if _, err := conn.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
}

func sqlstateOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestQueryParamsNarrowRows: the rows QueryParams keeps take about
// what came on the wire. Each kept pgproto3's room for 32 values (768
// bytes), so 300,000 rows of one number took 300 MB.
func TestQueryParamsNarrowRows(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyLimit, Interceptor: limitInterceptor})
	db := pgtest.NewDB(t)
	conn := pgtest.Connect(t, tp.via(t, db))
	var rows, bytes string
	var err error
	grew := heaptest.PeakGrowth(func() {
		err = conn.QueryRow(ctxT(t), limitMark+"0 */ SELECT 1 FROM generate_series(1, 300000)", pgx.QueryExecModeSimpleProtocol).Scan(&rows, &bytes)
	})
	t.Logf("heap rose %d MB", grew>>20)
	if err != nil || rows != "300000" {
		t.Fatalf("%s rows, %v", rows, err)
	}
	// 300,000 × (a 12-byte message in a 16-byte allocation, one value's
	// slice header, the row's) is 19 MB; twice that for the growth of the
	// slice of rows and the garbage of the messages.
	if grew > 80<<20 {
		t.Errorf("heap rose %d MB for 300,000 rows of one value", grew>>20)
	}
}
