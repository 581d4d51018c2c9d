package proxy

import (
	"context"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

// testInterceptor answers INSERT INTO stripe.x (v) VALUES (…) RETURNING id, v
// itself: it computes the row with a SELECT on the client's upstream
// connection, applies it with an INSERT on the same connection (so the
// client's transaction owns it), and replies. A value containing "fail"
// makes it fail the way a Stripe error would.
type testInterceptor struct {
	mu    sync.Mutex
	calls []Call
}

var literal = regexp.MustCompile(`VALUES \('([^']*)'\)`)

// forwardMark makes the test interceptor look at a statement (one upstream
// query) and hand it back (Call.Forward).
const forwardMark = "/* forward */ "

func classifyTest(sql string) Class {
	if strings.HasPrefix(sql, "INSERT INTO stripe.x") || strings.HasPrefix(sql, forwardMark) {
		return Intercept
	}
	return Passthrough
}

func (ti *testInterceptor) Intercept(ctx context.Context, call *Call) error {
	ti.mu.Lock()
	ti.calls = append(ti.calls, *call)
	ti.mu.Unlock()
	var v string
	if strings.HasPrefix(call.SQL, forwardMark) {
	} else if call.Protocol == SimpleProtocol {
		m := literal.FindStringSubmatch(call.SQL)
		if m == nil {
			return errors.New("test interceptor: no literal")
		}
		v = m[1]
	} else {
		v = string(call.Params[0]) // text, in either format
	}
	if call.TxStatus == 'E' {
		return &pgconn.PgError{Code: "25P02", Message: "current transaction is aborted, commands ignored until end of transaction block"}
	}
	if strings.HasPrefix(call.SQL, forwardMark) {
		if _, err := call.Upstream().Query(ctx, `SELECT pg_catalog.to_regclass('t')`); err != nil {
			return err
		}
		call.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "forwarded"})
		return call.Forward()
	}
	res, err := call.Upstream().Query(ctx, `SELECT 'x_' || upper($1), current_user`, v)
	if err != nil {
		return err
	}
	id := string(res.Rows[0][0])
	if strings.Contains(v, "fail") {
		return &pgconn.PgError{Code: "P0001", Message: "stripe said no", Detail: "request req_123"}
	}
	if strings.Contains(v, "badsql") {
		_, err := call.Upstream().Query(ctx, `SELECT nosuchcolumn`)
		return err
	}
	if _, err := call.Upstream().Query(ctx, `INSERT INTO stripe.x VALUES ($1, $2)`, id, v); err != nil {
		return err
	}
	if call.TxStatus == 'T' {
		call.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000", Message: "ROLLBACK cannot undo this write"})
	}
	call.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("id"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1},
		{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1},
	}})
	call.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(id), []byte(v)}})
	return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")})
}

func (ti *testInterceptor) count() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return len(ti.calls)
}

func (ti *testInterceptor) last() Call {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.calls[len(ti.calls)-1]
}

func setupIntercept(t *testing.T) (*testProxy, *testInterceptor, string) {
	ti := &testInterceptor{}
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: ti})
	url := pgtest.NewDB(t)
	admin := pgtest.Connect(t, url)
	if _, err := admin.Exec(ctxT(t), `CREATE SCHEMA stripe; CREATE TABLE stripe.x (id text primary key, v text)`); err != nil {
		t.Fatal(err)
	}
	return tp, ti, tp.via(t, url)
}

// connectNoticed connects and collects the messages of the notices the
// session receives.
func connectNoticed(t *testing.T, url string) (*pgx.Conn, *[]string) {
	t.Helper()
	notices := new([]string)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { *notices = append(*notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, notices
}

func rowsOf(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(ctxT(t), `SELECT id || '=' || v FROM stripe.x ORDER BY id`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const insertX = `INSERT INTO stripe.x (v) VALUES ($1) RETURNING id, v`

func TestInterceptExtended(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, _ := pgx.ParseConfig(url)
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			v := "val_" + strings.ReplaceAll(mode.String(), " ", "")
			var id, gotV string
			if err := conn.QueryRow(ctx, insertX, v).Scan(&id, &gotV); err != nil {
				t.Fatal(err)
			}
			if id != "x_"+strings.ToUpper(v) || gotV != v {
				t.Fatalf("got %q %q", id, gotV)
			}
			c := ti.last()
			if c.Protocol != ExtendedProtocol || c.TxStatus != 'I' || len(c.ParamOIDs) != 1 || c.ParamOIDs[0] != 25 || c.SQL != insertX || len(c.ParamFormats) != 1 || c.User != "postgres" {
				t.Fatalf("call = %+v", c)
			}
			// The client's own unnamed statement still works after the
			// interceptor ran its queries.
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM stripe.x WHERE v = $1`, v).Scan(&n); err != nil || n != 1 {
				t.Fatalf("count = %d, %v", n, err)
			}
			// A Stripe-side failure: error to the client, session fine.
			_, err = conn.Exec(ctx, insertX, "please fail")
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "P0001" || pe.Detail != "request req_123" {
				t.Fatalf("failing insert: %v", err)
			}
			// An upstream error inside the interceptor reaches the client.
			_, err = conn.Exec(ctx, insertX, "badsql")
			if !errors.As(err, &pe) || pe.Code != "42703" {
				t.Fatalf("badsql insert: %v", err)
			}
			if err := conn.QueryRow(ctx, `SELECT 41 + $1::int`, 1).Scan(&n); err != nil || n != 42 {
				t.Fatalf("after failure: %d %v", n, err)
			}
		})
	}
	tp.waitSessions(t, 0)
}

func TestInterceptSimple(t *testing.T) {
	_, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	conn := pgtest.Connect(t, url)
	res, err := conn.PgConn().Exec(ctx, `INSERT INTO stripe.x (v) VALUES ('simple') RETURNING id, v`).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "x_SIMPLE" || res[0].CommandTag.String() != "INSERT 0 1" || len(res[0].FieldDescriptions) != 2 {
		t.Fatalf("result = %+v", res)
	}
	if c := ti.last(); c.Protocol != SimpleProtocol || c.Params != nil {
		t.Fatalf("call = %+v", c)
	}
	if got := rowsOf(t, conn); strings.Join(got, ",") != "x_SIMPLE=simple" {
		t.Fatalf("rows = %v", got)
	}
	// Failure in simple protocol, then the session goes on.
	_, err = conn.PgConn().Exec(ctx, `INSERT INTO stripe.x (v) VALUES ('fail')`).ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "P0001" {
		t.Fatalf("failing insert: %v", err)
	}
	if conn.PgConn().TxStatus() != 'I' {
		t.Fatalf("tx status after failure = %c", conn.PgConn().TxStatus())
	}
}

func TestInterceptTransactions(t *testing.T) {
	_, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	conn, notices := connectNoticed(t, url)

	// In a transaction block: the interceptor sees 'T', its local apply
	// belongs to the client's transaction, and the NOTICE arrives.
	tx, _ := conn.Begin(ctx)
	var id string
	if err := tx.QueryRow(ctx, insertX, "intx").Scan(&id, new(string)); err != nil {
		t.Fatal(err)
	}
	if ti.last().TxStatus != 'T' {
		t.Fatalf("TxStatus = %c, want T", ti.last().TxStatus)
	}
	if len(*notices) != 1 {
		t.Fatalf("notices = %v", *notices)
	}
	tx.Rollback(ctx)
	if got := rowsOf(t, conn); len(got) != 0 {
		t.Fatalf("rows after rollback = %v", got)
	}

	// A failure inside a transaction block aborts it, as in Postgres.
	tx, _ = conn.Begin(ctx)
	_, err := tx.Exec(ctx, `INSERT INTO stripe.x (v) VALUES ('ok1') RETURNING id`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, insertX, "fail")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "P0001" {
		t.Fatalf("failing insert: %v", err)
	}
	_, err = tx.Exec(ctx, `SELECT 1`)
	if !errors.As(err, &pe) || pe.Code != "25P02" {
		t.Fatalf("after failure in tx: %v", err)
	}
	// Extended protocol: Bind already fails upstream, the interceptor is
	// not called.
	before := ti.count()
	_, err = tx.Exec(ctx, insertX, "x")
	if !errors.As(err, &pe) || pe.Code != "25P02" || ti.count() != before {
		t.Fatalf("insert in failed tx: %v (calls %d → %d)", err, before, ti.count())
	}
	// Simple protocol: the interceptor is called and told the transaction
	// failed.
	_, err = conn.PgConn().Exec(ctx, `INSERT INTO stripe.x (v) VALUES ('y')`).ReadAll()
	if !errors.As(err, &pe) || pe.Code != "25P02" || ti.last().TxStatus != 'E' {
		t.Fatalf("simple insert in failed tx: %v (status %c)", err, ti.last().TxStatus)
	}
	if conn.PgConn().TxStatus() != 'E' {
		t.Fatalf("tx status = %c, want E", conn.PgConn().TxStatus())
	}
	tx.Rollback(ctx)
	if conn.PgConn().TxStatus() != 'I' {
		t.Fatalf("tx status = %c", conn.PgConn().TxStatus())
	}
}

func TestInterceptPipeline(t *testing.T) {
	_, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	conn := pgtest.Connect(t, url)

	// Intercepted statements in the middle of a pipeline, in order.
	b := &pgx.Batch{}
	b.Queue(`SELECT 1`)
	b.Queue(insertX, "p1")
	b.Queue(`SELECT 2`)
	b.Queue(insertX, "p2")
	b.Queue(`SELECT count(*) FROM stripe.x`)
	br := conn.SendBatch(ctx, b)
	var n int
	var id string
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(br.QueryRow().Scan(&n))
	check(br.QueryRow().Scan(&id, new(string)))
	if id != "x_P1" {
		t.Fatalf("id = %q", id)
	}
	check(br.QueryRow().Scan(&n))
	if n != 2 {
		t.Fatalf("n = %d", n)
	}
	check(br.QueryRow().Scan(&id, new(string)))
	check(br.QueryRow().Scan(&n))
	if n != 2 {
		t.Fatalf("count in pipeline = %d, want 2", n)
	}
	check(br.Close())

	// A failure before an intercepted statement: it is skipped, like every
	// statement up to Sync, and the interceptor is never called.
	before := ti.count()
	b = &pgx.Batch{}
	b.Queue(`SELECT 1/0`)
	b.Queue(insertX, "never")
	br = conn.SendBatch(ctx, b)
	if err := br.QueryRow().Scan(&n); err == nil {
		t.Fatal("division by zero succeeded")
	}
	br.Close()
	if ti.count() != before {
		t.Fatal("interceptor called for a statement after a failure in the batch")
	}

	// An interceptor failure skips the rest of the batch and rolls back the
	// batch's implicit transaction.
	b = &pgx.Batch{}
	b.Queue(insertX, "p3")
	b.Queue(insertX, "fail")
	b.Queue(`SELECT 3`)
	br = conn.SendBatch(ctx, b)
	check(br.QueryRow().Scan(&id, new(string)))
	if err := br.QueryRow().Scan(&id, new(string)); err == nil {
		t.Fatal("failing insert succeeded")
	}
	if err := br.QueryRow().Scan(&n); err == nil {
		t.Fatal("statement after a failure in the batch ran")
	}
	br.Close()
	if got := rowsOf(t, conn); strings.Join(got, ",") != "x_P1=p1,x_P2=p2" {
		t.Fatalf("rows = %v", got)
	}
}

// TestInterceptUnknownParamTypes sends Parse without parameter types and no
// statement Describe: the proxy asks upstream for the types itself.
func TestInterceptUnknownParamTypes(t *testing.T) {
	_, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	conn := pgtest.Connect(t, url)
	res := conn.PgConn().ExecParams(ctx, insertX, [][]byte{[]byte("raw")}, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(res.Rows) != 1 || string(res.Rows[0][0]) != "x_RAW" {
		t.Fatalf("rows = %q", res.Rows)
	}
	if c := ti.last(); len(c.ParamOIDs) != 1 || c.ParamOIDs[0] != 25 {
		t.Fatalf("ParamOIDs = %v", c.ParamOIDs)
	}
}

// TestInterceptBinaryParams: binary parameters reach the interceptor as
// sent, with their formats and types.
func TestInterceptBinaryParams(t *testing.T) {
	var got Call
	ic := InterceptorFunc(func(ctx context.Context, call *Call) error {
		got = *call
		return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")})
	})
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: ic})
	url := pgtest.NewDB(t)
	admin := pgtest.Connect(t, url)
	if _, err := admin.Exec(ctxT(t), `CREATE SCHEMA stripe; CREATE TABLE stripe.x (id text primary key, v text, n int8)`); err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, tp.via(t, url))
	tag, err := conn.Exec(ctxT(t), `INSERT INTO stripe.x (id, n) VALUES ($1, $2)`, "a", int64(258))
	if err != nil || tag.String() != "INSERT 0 1" {
		t.Fatalf("exec: %v %v", tag, err)
	}
	if len(got.Params) != 2 || got.ParamOIDs[1] != 20 || got.ParamFormats[1] != 1 || string(got.Params[1]) != "\x00\x00\x00\x00\x00\x00\x01\x02" {
		t.Fatalf("call = %+v", got)
	}
}

// TestInterceptForward: statements the interceptor hands back run upstream
// as the client sent them, whatever they are (several statements, COPY,
// a prepared statement), inside or outside a transaction.
func TestInterceptForward(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	ctx := ctxT(t)
	conn, notices := connectNoticed(t, url)
	if _, err := conn.Exec(ctx, `CREATE TABLE t (id int)`); err != nil {
		t.Fatal(err)
	}
	before := ti.count()

	res, err := conn.PgConn().Exec(ctx, forwardMark+`INSERT INTO t VALUES (1), (2); SELECT count(*) FROM t`).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].CommandTag.String() != "INSERT 0 2" || len(res[1].Rows) != 1 || string(res[1].Rows[0][0]) != "2" {
		t.Fatalf("multi-statement result = %+v", res)
	}

	tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("3\n4\n5\n"), forwardMark+`COPY t FROM STDIN`)
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("COPY: %v %v", tag, err)
	}

	var n int
	if err := conn.QueryRow(ctx, forwardMark+`SELECT count(*) + $1::int FROM t`, 100).Scan(&n); err != nil || n != 105 {
		t.Fatalf("extended: %d %v", n, err)
	}

	// In a transaction: the forwarded write is the client's, rolled back
	// with it, and the transaction status stays right throughout.
	if _, err := conn.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.PgConn().Exec(ctx, forwardMark+`INSERT INTO t VALUES (6); INSERT INTO t VALUES (7)`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if s := conn.PgConn().TxStatus(); s != 'T' {
		t.Fatalf("tx status in block = %c", s)
	}
	if _, err := conn.PgConn().Exec(ctx, forwardMark+`SELECT 1/0`).ReadAll(); err == nil {
		t.Fatal("division by zero succeeded")
	}
	if s := conn.PgConn().TxStatus(); s != 'E' {
		t.Fatalf("tx status after error = %c", s)
	}
	if _, err := conn.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("after rollback: %d %v", n, err)
	}
	if got := ti.count() - before; got < 5 {
		t.Errorf("interceptor saw %d statements, want at least 5", got)
	}
	if len(*notices) < 5 || (*notices)[0] != "forwarded" {
		t.Errorf("notices = %v", *notices)
	}
	conn.Close(ctx)
	tp.waitSessions(t, 0)
}

// TestUpstreamGoneDuringInterception: Postgres ends the client's
// backend while the interceptor runs (a restart while a write's Stripe
// call is out). The interceptor's query gets the FATAL; its reply, which
// can say what reached Stripe, must still reach the client: the server
// loop saw upstream's EOF and closed the session first, and the client got
// only the proxy's 08006.
func TestUpstreamGoneDuringInterception(t *testing.T) {
	url := pgtest.NewDB(t)
	admin := pgtest.Connect(t, url)
	ctx := ctxT(t)
	if _, err := admin.Exec(ctx, `CREATE SCHEMA stripe; CREATE TABLE stripe.x (id text primary key)`); err != nil {
		t.Fatal(err)
	}
	var pid uint32
	var queryErr error
	ic := InterceptorFunc(func(ctx context.Context, call *Call) error {
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, int32(pid)); err != nil {
			return err
		}
		_, queryErr = call.Upstream().Query(ctx, `SELECT 1`)
		// The reply takes a while (an apply on another connection):
		// upstream's EOF comes meanwhile.
		time.Sleep(300 * time.Millisecond)
		return call.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "08006",
			Message: "connection lost", Detail: "the write reached Stripe: x_1"})
	})
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: ic})
	for _, simple := range []bool{true, false} {
		conn := pgtest.Connect(t, tp.via(t, url))
		pid = conn.PgConn().PID()
		var err error
		if simple {
			_, err = conn.PgConn().Exec(ctx, `INSERT INTO stripe.x (id) VALUES ('a')`).ReadAll()
		} else {
			_, err = conn.Exec(ctx, `INSERT INTO stripe.x (id) VALUES ($1)`, "a")
		}
		var pe *pgconn.PgError
		if !errors.As(queryErr, &pe) || pe.Code != "57P01" {
			t.Errorf("simple %v: the interceptor's query on a terminated backend: %v", simple, queryErr)
		}
		if !errors.As(err, &pe) || !strings.Contains(pe.Detail, "reached Stripe: x_1") {
			t.Errorf("simple %v: the client got %v, not the interceptor's reply", simple, err)
		}
	}
	tp.waitSessions(t, 0)
}

// TestErrorResponseKeepsFields: a Postgres error an interceptor
// returns reaches the client with every field, SeverityUnlocalized
// included: with lc_messages = 'de_DE' Severity is FEHLER, and clients
// that test the severity read V (it was set to Severity). A PgError
// pgstripe makes up, with no V, still gets one, as Postgres always sends.
func TestErrorResponseKeepsFields(t *testing.T) {
	full := &pgproto3.ErrorResponse{Severity: "FEHLER", SeverityUnlocalized: "ERROR", Code: "22P02",
		Message: "m", Detail: "d", Hint: "h", Position: 7, InternalPosition: 8, InternalQuery: "SELECT nosuch",
		Where: "PL/pgSQL function dyn() line 1 at EXECUTE", SchemaName: "s", TableName: "t", ColumnName: "c",
		DataTypeName: "dt", ConstraintName: "k", File: "jsonfuncs.c", Line: 627, Routine: "json_ereport_error"}
	for _, tc := range []struct {
		name string
		in   *pgconn.PgError
		want *pgproto3.ErrorResponse
	}{
		{"from Postgres, localized", PgError(full), full},
		{"made up with a severity", &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "m"},
			&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "40001", Message: "m"}},
		{"made up without", &pgconn.PgError{Code: "XX000", Message: "m"},
			&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "XX000", Message: "m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorResponse(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ErrorResponse(%+v)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

// TestIsFatalLocalized: Postgres sends S in the session's
// lc_messages before V: a Russian FATAL (ВАЖНО) ends the session as any
// FATAL does, and a severity word that reads FATAL in S only is not
// taken for one when V says otherwise.
func TestIsFatalLocalized(t *testing.T) {
	for _, tc := range []struct {
		sev, unloc string
		want       bool
	}{
		{"ВАЖНО", "FATAL", true},
		{"ПАНИКА", "PANIC", true},
		{"ОШИБКА", "ERROR", false},
		{"FATAL", "ERROR", false},
		{"FATAL", "FATAL", true},
		{"FATAL", "", true}, // before 9.6: no V
		{"ERROR", "", false},
	} {
		raw := enc(&pgproto3.ErrorResponse{Severity: tc.sev, SeverityUnlocalized: tc.unloc, Code: "57P01", Message: "m"})
		if got := isFatal(raw); got != tc.want {
			t.Errorf("isFatal(S=%q V=%q) = %v, want %v", tc.sev, tc.unloc, got, tc.want)
		}
	}
}
