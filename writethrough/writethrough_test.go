package writethrough

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	url2 "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/translate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one test's world: a migrated database, an emulator, the
// interceptor, and a client connection standing in for the proxied one.
type env struct {
	t    *testing.T
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
	conn *pgx.Conn
	emu  *emulator.Emulator
	api  *stripeapi.Client
	ic   *Interceptor
	// fault, when set, answers matching Stripe requests in place of the
	// emulator (card declines, failures midway).
	fault atomic.Pointer[faultFunc]
}

func setup(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	return setupOn(t, pgtest.NewDB(t), opts...)
}

// setupOn is setup on the database at url (a cluster of the test's own).
func setupOn(t *testing.T, url string, opts ...func(*Config)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	emu, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, url: url, pool: pool, conn: conn, emu: emu}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := e.fault.Load(); f != nil {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url2.ParseQuery(string(body))
			if (*f)(w, r, form) {
				return
			}
		}
		emu.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	api, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_writethrough", BaseURL: srv.URL, RateLimit: 1e6, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Stripe: api, Pool: pool, Timeout: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	e.api, e.ic = api, New(cfg)
	return e
}

// faultFunc may answer a Stripe request in place of the emulator; it
// reports whether it did.
type faultFunc func(w http.ResponseWriter, r *http.Request, form url2.Values) bool

// stripeAnswer writes an error answer as Stripe would.
func stripeAnswer(w http.ResponseWriter, status int, body string) bool {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fault")
	w.WriteHeader(status)
	io.WriteString(w, body)
	return true
}

// cardDeclined is Stripe's answer to a declined card.
const cardDeclined = `{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds.","doc_url":"https://stripe.com/docs/error-codes/card-declined"}}`

// reply is a Reply taken apart for assertions.
type reply struct {
	pass    bool
	err     *pgproto3.ErrorResponse
	notices []string
	fields  []string
	rows    [][]string
	tag     string
}

func (e *env) run(sql string, args ...any) reply {
	e.t.Helper()
	return e.runReq(Request{SQL: sql, TxStatus: e.txStatus(), Describe: true}, args...)
}

func (e *env) txStatus() byte { return e.conn.PgConn().TxStatus() }

// runReq encodes args the way pgx does for a prepared statement: the types
// come from Postgres's Describe of the original statement, binary where pgx
// can, and the Parse declares no types (so our own queries must infer the
// same ones).
func (e *env) runReq(req Request, args ...any) reply {
	e.t.Helper()
	if len(args) > 0 {
		sd, err := e.conn.PgConn().Prepare(e.ctx, "", req.SQL, nil)
		if err != nil {
			e.t.Fatalf("prepare %q: %v", req.SQL, err)
		}
		m := e.conn.TypeMap()
		for i, a := range args {
			oid := sd.ParamOIDs[i]
			format := m.FormatCodeForOID(oid)
			buf, err := m.Encode(oid, format, a, nil)
			if err != nil {
				e.t.Fatalf("encode $%d: %v", i+1, err)
			}
			req.Params = append(req.Params, buf)
			req.ParamFormats = append(req.ParamFormats, format)
		}
		req.ParamOIDs = make([]uint32, len(args))
	}
	r := e.ic.Execute(e.ctx, PgConnUpstream(e.conn.PgConn()), req)
	var out reply
	out.pass = r.Pass
	for _, m := range r.Messages {
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			out.err = m
		case *pgproto3.NoticeResponse:
			out.notices = append(out.notices, m.Message)
		case *pgproto3.RowDescription:
			for _, f := range m.Fields {
				out.fields = append(out.fields, string(f.Name))
			}
		case *pgproto3.DataRow:
			var row []string
			for _, v := range m.Values {
				if v == nil {
					row = append(row, "NULL")
				} else {
					row = append(row, string(v))
				}
			}
			out.rows = append(out.rows, row)
		case *pgproto3.CommandComplete:
			out.tag = string(m.CommandTag)
		}
	}
	return out
}

// one runs sql, which must succeed through the write-through, and
// returns the first column of its first row (an INSERT's RETURNING id).
func (e *env) one(sql string, args ...any) string {
	e.t.Helper()
	return e.ok(sql, args...).rows[0][0]
}

func (e *env) ok(sql string, args ...any) reply {
	e.t.Helper()
	r := e.run(sql, args...)
	if r.err != nil {
		e.t.Fatalf("%s: %s: %s (%s) hint: %s", sql, r.err.Code, r.err.Message, r.err.Detail, r.err.Hint)
	}
	if r.pass {
		e.t.Fatalf("%s: passed through", sql)
	}
	return r
}

func (e *env) fails(code, sql string, args ...any) reply {
	e.t.Helper()
	before := e.emu.Stats().Total
	r := e.run(sql, args...)
	if r.err == nil {
		e.t.Fatalf("%s: want error %s, got %+v", sql, code, r)
	}
	if r.err.Code != code {
		e.t.Fatalf("%s: want SQLSTATE %s, got %s: %s (%s)", sql, code, r.err.Code, r.err.Message, r.err.Detail)
	}
	_ = before
	return r
}

// local reads one value from the local table through pgstripe's pool.
func (e *env) local(sql string, args ...any) string {
	e.t.Helper()
	var s *string
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&s); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return "NULL"
	}
	return *s
}

// stripeObj returns an object as the emulator holds it.
func (e *env) stripeObj(table, id string) map[string]any {
	e.t.Helper()
	raw, ok := e.emu.Objects(table)[id]
	if !ok {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) calls() int64 { return e.emu.Stats().Total }

func TestDoneWhen(t *testing.T) {
	e := setup(t)
	r := e.ok(`INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', '{"tier":"gold"}') RETURNING id, email, created;`)
	if r.tag != "INSERT 0 1" {
		t.Fatalf("tag %q", r.tag)
	}
	if strings.Join(r.fields, ",") != "id,email,created" || len(r.rows) != 1 {
		t.Fatalf("returning: %v %v", r.fields, r.rows)
	}
	id := r.rows[0][0]
	if !strings.HasPrefix(id, "cus_") || r.rows[0][1] != "a@b.co" || r.rows[0][2] == "NULL" {
		t.Fatalf("row %v", r.rows[0])
	}
	if got := e.local(`SELECT metadata->>'tier' FROM stripe.customers WHERE email = 'a@b.co'`); got != "gold" {
		t.Fatalf("local metadata %q", got)
	}
	obj := e.stripeObj("customers", id)
	if obj == nil || obj["email"] != "a@b.co" || obj["metadata"].(map[string]any)["tier"] != "gold" {
		t.Fatalf("stripe object %v", obj)
	}
}

func TestInsertParamsBinaryAndMultiRow(t *testing.T) {
	e := setup(t)
	r := e.ok(`INSERT INTO stripe.customers (email, name, balance, metadata, created, id) VALUES ($1, $2, $3, $4, NULL, DEFAULT), ($5, NULL, DEFAULT, NULL, NULL, NULL) RETURNING email, balance`,
		"x@y.co", "X", int64(42), map[string]any{"k": "v"}, "z@y.co")
	if r.tag != "INSERT 0 2" || len(r.rows) != 2 || r.rows[0][0] != "x@y.co" || r.rows[1][0] != "z@y.co" {
		t.Fatalf("reply %+v", r)
	}
	if r.rows[0][1] != "42" {
		t.Fatalf("balance %v", r.rows[0])
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE email = 'x@y.co'`); got != "X" {
		t.Fatalf("name %q", got)
	}
}

func TestUpdateOnlyChangedAndMetadata(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email, name, metadata) VALUES ('u@b.co', 'U', '{"a":"1","b":"2"}') RETURNING id`).rows[0][0]
	r := e.ok(`UPDATE stripe.customers SET metadata = metadata - 'a' || '{"plan":"pro"}', name = $1 WHERE id = $2 RETURNING name, metadata->>'plan'`, "New", id)
	if r.tag != "UPDATE 1" || len(r.rows) != 1 || r.rows[0][0] != "New" || r.rows[0][1] != "pro" {
		t.Fatalf("reply %+v", r)
	}
	md := e.stripeObj("customers", id)["metadata"].(map[string]any)
	if _, has := md["a"]; has || md["b"] != "2" || md["plan"] != "pro" {
		t.Fatalf("stripe metadata %v", md)
	}
	if got := e.local(`SELECT metadata::text FROM stripe.customers WHERE id = $1`, id); got != `{"b": "2", "plan": "pro"}` {
		t.Fatalf("local metadata %s", got)
	}
	// Unchanged values make no call, but the row still counts.
	before := e.calls()
	r = e.ok(`UPDATE stripe.customers SET name = 'New', created = created WHERE id = $1`, id)
	if r.tag != "UPDATE 1" || e.calls() != before {
		t.Fatalf("no-op update: %+v, %d calls", r, e.calls()-before)
	}
}

func TestDelete(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email) VALUES ('d@b.co') RETURNING id`).rows[0][0]
	r := e.ok(`DELETE FROM stripe.customers WHERE id = $1 RETURNING email`, id)
	if r.tag != "DELETE 1" || len(r.rows) != 1 || r.rows[0][0] != "d@b.co" {
		t.Fatalf("reply %+v", r)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers`); got != "0" {
		t.Fatalf("local rows %s", got)
	}
	if e.stripeObj("customers", id) != nil {
		t.Fatalf("still in Stripe")
	}
}

func TestRejectedBeforeAnyCall(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email) VALUES ('r@b.co') RETURNING id`).rows[0][0]
	before := e.calls()
	e.fails("42703", `INSERT INTO stripe.customers (email, created) VALUES ('a@b.co', now())`)
	e.fails("42703", `INSERT INTO stripe.customers (email, nope) VALUES ('a@b.co', 1)`)
	e.fails("0A000", `INSERT INTO stripe.customers (email) SELECT 'a@b.co'`)
	e.fails("0A000", `DELETE FROM stripe.prices WHERE id = 'x'`)
	e.fails("0A000", `TRUNCATE stripe.customers`)
	e.fails("0A000", `INSERT INTO stripe.disputes (amount) VALUES (1)`)
	e.fails("22P02", `INSERT INTO stripe.customers (email, balance) VALUES ('a@b.co', 'many')`)
	rows := make([]string, 101)
	for i := range rows {
		rows[i] = "('a@b.co')"
	}
	e.fails("54000", `INSERT INTO stripe.customers (email) VALUES `+strings.Join(rows, ","))
	e.fails("23502", `UPDATE stripe.customers SET email = NULL WHERE id = $1`, id)
	if e.calls() != before {
		t.Fatalf("%d Stripe calls for rejected statements", e.calls()-before)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers`); got != "1" {
		t.Fatalf("local rows %s", got)
	}
}

func TestTooManyRowsByWhere(t *testing.T) {
	e := setup(t)
	if _, err := e.pool.Exec(e.ctx, `INSERT INTO stripe.customers (id, _raw, _as_of, _synced_at) SELECT 'cus_'||g, '{}', now(), now() FROM generate_series(1, 101) g`); err != nil {
		t.Fatal(err)
	}
	before := e.calls()
	e.fails("54000", `UPDATE stripe.customers SET name = 'x'`)
	if e.calls() != before {
		t.Fatal("Stripe called")
	}
}

func TestPrivilegesAndFailedTransaction(t *testing.T) {
	e := setup(t)
	// Roles are the cluster's: one per run, so the test can run again.
	role := fmt.Sprintf("reader_%d", time.Now().UnixNano())
	if _, err := e.conn.Exec(e.ctx, `CREATE ROLE `+role+`; GRANT USAGE ON SCHEMA stripe TO `+role+`; GRANT SELECT ON ALL TABLES IN SCHEMA stripe TO `+role+`; SET ROLE `+role+``); err != nil {
		t.Fatal(err)
	}
	before := e.calls()
	r := e.fails("42501", `INSERT INTO stripe.customers (email) VALUES ('p@b.co')`)
	if !strings.Contains(r.err.Message, "permission denied") {
		t.Fatalf("message %q", r.err.Message)
	}
	if e.calls() != before {
		t.Fatal("Stripe called for an INSERT without the privilege")
	}
	// A column grant is enough for the columns it covers, as in Postgres.
	if _, err := e.conn.Exec(e.ctx, `RESET ROLE; GRANT UPDATE (name) ON stripe.customers TO `+role+``); err != nil {
		t.Fatal(err)
	}
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('col@b.co', 'A') RETURNING id`).rows[0][0]
	if _, err := e.conn.Exec(e.ctx, `SET ROLE `+role+``); err != nil {
		t.Fatal(err)
	}
	e.ok(`UPDATE stripe.customers SET name = 'B' WHERE id = $1`, id)
	before = e.calls()
	e.fails("42501", `UPDATE stripe.customers SET email = 'c@b.co' WHERE id = $1`, id)
	e.fails("42501", `DELETE FROM stripe.customers WHERE id = $1`, id)
	if _, err := e.conn.Exec(e.ctx, `RESET ROLE`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	e.conn.Exec(e.ctx, `SELECT 1/0`)
	if e.txStatus() != 'E' {
		t.Fatalf("tx status %c", e.txStatus())
	}
	e.fails("25P02", `INSERT INTO stripe.customers (email) VALUES ('p@b.co')`)
	if e.calls() != before {
		t.Fatal("Stripe called")
	}
	e.conn.Exec(e.ctx, `ROLLBACK`)
}

func TestInTransactionNoticeAndRollback(t *testing.T) {
	e := setup(t)
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	r := e.ok(`INSERT INTO stripe.customers (email) VALUES ('t@b.co') RETURNING id`)
	if len(r.notices) != 1 || !strings.Contains(r.notices[0], "ROLLBACK cannot undo") {
		t.Fatalf("notices %v", r.notices)
	}
	if _, err := e.conn.Exec(e.ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = 't@b.co'`); got != "1" {
		t.Fatalf("row gone after client's ROLLBACK: %s", got)
	}
}

// A session with client_min_messages above NOTICE (Sequelize sets warning
// on connect) gets no notices from Postgres, so none from us either.
func TestNoticesFollowClientMinMessages(t *testing.T) {
	e := setup(t)
	for _, q := range []string{`SET client_min_messages TO warning`, `BEGIN`} {
		if _, err := e.conn.Exec(e.ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if r := e.ok(`INSERT INTO stripe.customers (email) VALUES ('q@b.co')`); len(r.notices) != 0 {
		t.Fatalf("notices %v with client_min_messages = warning", r.notices)
	}
	if _, err := e.conn.Exec(e.ctx, `SET LOCAL client_min_messages TO notice`); err != nil {
		t.Fatal(err)
	}
	if r := e.ok(`INSERT INTO stripe.customers (email) VALUES ('n@b.co')`); len(r.notices) != 1 {
		t.Fatalf("notices %v with client_min_messages = notice", r.notices)
	}
	e.conn.Exec(e.ctx, `ROLLBACK`)
}

func TestSearchPath(t *testing.T) {
	e := setup(t)
	if _, err := e.conn.Exec(e.ctx, `CREATE TABLE public.customers (id text, email text)`); err != nil {
		t.Fatal(err)
	}
	r := e.run(`INSERT INTO customers (email) VALUES ('s@b.co')`)
	if !r.pass {
		t.Fatalf("public.customers not passed through: %+v", r)
	}
	if _, err := e.conn.Exec(e.ctx, `SET search_path = stripe, public`); err != nil {
		t.Fatal(err)
	}
	r = e.ok(`INSERT INTO customers (email) VALUES ('s@b.co') RETURNING email`)
	if r.tag != "INSERT 0 1" || r.rows[0][0] != "s@b.co" {
		t.Fatalf("reply %+v", r)
	}
}

func TestStripeErrorNothingApplied(t *testing.T) {
	e := setup(t)
	// A row Stripe doesn't know: the update call gets 404.
	if _, err := e.pool.Exec(e.ctx, `INSERT INTO stripe.customers (id, name, _raw, _as_of, _synced_at) VALUES ('cus_missing', 'old', '{"id":"cus_missing","object":"customer","name":"old"}', now(), now())`); err != nil {
		t.Fatal(err)
	}
	r := e.fails("P0002", `UPDATE stripe.customers SET name = 'x' WHERE id = $1`, "cus_missing")
	if !strings.Contains(r.err.Detail, "request ") || !strings.Contains(r.err.Detail, "resource_missing") {
		t.Fatalf("detail %q", r.err.Detail)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = 'cus_missing'`); got != "old" {
		t.Fatalf("local row changed: %s", got)
	}
}

func TestClassCache(t *testing.T) {
	ic := New(Config{})
	a := ic.Classify(`INSERT INTO stripe.customers (email) VALUES ('a')`)
	if a.Action != translate.Write || ic.Classify(`INSERT INTO stripe.customers (email) VALUES ('a')`).Stmt != a.Stmt {
		t.Fatal("not cached")
	}
}

func TestCardDeclined(t *testing.T) {
	e := setup(t)
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "POST" && form.Get("payment_method") == "pm_card_chargeDeclined" {
			return stripeAnswer(w, 402, cardDeclined)
		}
		return false
	}
	e.fault.Store(&f)
	r := e.fails("P0001", `INSERT INTO stripe.payment_intents (amount, currency, payment_method) VALUES (500, 'usd', 'pm_card_chargeDeclined')`)
	if r.err.Message != "Your card has insufficient funds." || !strings.Contains(r.err.Detail, "decline_code insufficient_funds") ||
		!strings.Contains(r.err.Detail, "request req_fault") || !strings.Contains(r.err.Detail, "card_declined") {
		t.Fatalf("error %+v", r.err)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.payment_intents`); got != "0" {
		t.Fatalf("applied locally: %s", got)
	}
}

func TestFailureMidwayReportsRowsThatReachedStripe(t *testing.T) {
	e := setup(t, func(c *Config) { c.Concurrency = 1 })
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if form.Get("email") == "bad@b.co" {
			return stripeAnswer(w, 400, `{"error":{"type":"invalid_request_error","code":"email_invalid","param":"email","message":"Invalid email address: bad@b.co"}}`)
		}
		return false
	}
	e.fault.Store(&f)
	r := e.fails("22023", `INSERT INTO stripe.customers (email) VALUES ('one@b.co'), ('bad@b.co'), ('three@b.co') RETURNING id`)
	id := e.local(`SELECT id FROM stripe.customers WHERE email = 'one@b.co'`)
	if !strings.Contains(r.err.Detail, "row 2 of 3 failed; 1 row reached Stripe and is applied") || !strings.Contains(r.err.Detail, "row 1 ("+id+")") || !strings.Contains(r.err.Detail, "param email") {
		t.Fatalf("detail %q (row 1 is %s)", r.err.Detail, id)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers`); got != "1" {
		t.Fatalf("local rows %s, want only the row that reached Stripe", got)
	}
	if len(e.emu.Objects("customers")) != 1 {
		t.Fatalf("Stripe has %d customers", len(e.emu.Objects("customers")))
	}
}

func TestStripeTimeout(t *testing.T) {
	e := setup(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	e.emu.Update(emulator.Options{RateLimit: -1, Latency: time.Second})
	start := time.Now()
	r := e.fails("57014", `INSERT INTO stripe.customers (email) VALUES ('slow@b.co')`)
	if time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("took %v", time.Since(start))
	}
	if !strings.Contains(r.err.Message, "Stripe did not answer in time") {
		t.Fatalf("message %q", r.err.Message)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers`); got != "0" {
		t.Fatalf("applied locally: %s", got)
	}
}

func TestClientRowLockDoesNotHang(t *testing.T) {
	e := setup(t) // default lock timeout: 2 s, 250 ms inside a transaction block
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('lock@b.co', 'A') RETURNING id`).rows[0][0]
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Exec(e.ctx, `SELECT * FROM stripe.customers WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := e.ok(`UPDATE stripe.customers SET name = 'B' WHERE id = $1`, id)
	if time.Since(start) > time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
	if r.tag != "UPDATE 1" || len(r.notices) != 2 || !strings.Contains(r.notices[1], "catch up from Stripe's events") {
		t.Fatalf("reply %+v", r)
	}
	e.conn.Exec(e.ctx, `ROLLBACK`)
	if e.stripeObj("customers", id)["name"] != "B" {
		t.Fatal("not in Stripe")
	}
}

// TestLostAnswerRetriedWithSameKey: Stripe makes the object but the answer
// is lost on the way; the retry carries the same idempotency key, so Stripe
// hands back the same object instead of making a second one.
func TestLostAnswerRetriedWithSameKey(t *testing.T) {
	e := setup(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		key := r.Header.Get("Idempotency-Key")
		if r.Method != "POST" || key == "" {
			return false
		}
		mu.Lock()
		first := !seen[key]
		seen[key] = true
		mu.Unlock()
		if !first {
			return false
		}
		e.emu.ServeHTTP(httptest.NewRecorder(), r) // Stripe does the work…
		conn, _, err := w.(http.Hijacker).Hijack() // …and the answer is lost.
		if err == nil {
			conn.Close()
		}
		return true
	}
	e.fault.Store(&f)
	r := e.ok(`INSERT INTO stripe.customers (email) VALUES ('once@b.co'), ('twice@b.co') RETURNING id`)
	if len(r.rows) != 2 || len(seen) != 2 {
		t.Fatalf("reply %+v, %d keys", r, len(seen))
	}
	if n := len(e.emu.Objects("customers")); n != 2 {
		t.Fatalf("Stripe has %d customers, want 2", n)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers`); got != "2" {
		t.Fatalf("local rows %s", got)
	}
}

func TestReturningInRepeatableRead(t *testing.T) {
	e := setup(t)
	if _, err := e.conn.Exec(e.ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Exec(e.ctx, `SELECT count(*) FROM stripe.customers`); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	r := e.ok(`INSERT INTO stripe.customers (email) VALUES ('rr@b.co') RETURNING id, email`)
	if len(r.rows) != 1 || !strings.HasPrefix(r.rows[0][0], "cus_") || r.rows[0][1] != "rr@b.co" {
		t.Fatalf("reply %+v", r)
	}
	e.conn.Exec(e.ctx, `ROLLBACK`)
}

func TestReturningWithoutRowsHasColumns(t *testing.T) {
	e := setup(t)
	r := e.ok(`UPDATE stripe.customers SET name = 'x' WHERE false RETURNING id, name`)
	if r.tag != "UPDATE 0" || strings.Join(r.fields, ",") != "id,name" || len(r.rows) != 0 {
		t.Fatalf("reply %+v", r)
	}
}

// TestExtraParams: _params carries parameters without a column, also in
// the extended protocol (Postgres parses the statement, so every table has
// the write-only column).
func TestExtraParams(t *testing.T) {
	e := setup(t)
	cus := e.ok(`INSERT INTO stripe.customers (email) VALUES ('x@b.co') RETURNING id`).rows[0][0]
	inv := e.ok(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus).rows[0][0]
	e.ok(`INSERT INTO stripe.invoiceitems (customer, invoice, amount, currency) VALUES ($1, $2, 1200, 'usd')`, cus, inv)
	e.ok(`UPDATE stripe.invoices SET status = 'open' WHERE id = $1`, inv)
	r := e.ok(`UPDATE stripe.invoices SET status = 'paid', _params = $2 WHERE id = $1 RETURNING status, paid_out_of_band`, inv, `{"paid_out_of_band": true}`)
	if len(r.rows) != 1 || r.rows[0][0] != "paid" || r.rows[0][1] != "t" {
		t.Fatalf("reply %+v", r)
	}
	e.fails("42703", `INSERT INTO stripe.customers (email, _params) VALUES ('y@b.co', '{"shoe_size": 42}')`)
}

// TestCouponThroughParams: a coupon is applied to a customer, and removed,
// through _params (coupon is a parameter, not a field of the customer);
// the customer's discount column answers at once.
func TestCouponThroughParams(t *testing.T) {
	e := setup(t)
	e.ok(`INSERT INTO stripe.coupons (id, percent_off, duration) VALUES ('SQL20', 20, 'forever')`)
	cus := e.ok(`INSERT INTO stripe.customers (email) VALUES ('c@b.co') RETURNING id`).rows[0][0]
	r := e.ok(`UPDATE stripe.customers SET _params = '{"coupon": "SQL20"}' WHERE id = $1 RETURNING discount->'coupon'->>'id', discount->>'customer'`, cus)
	if len(r.rows) != 1 || r.rows[0][0] != "SQL20" || r.rows[0][1] != cus {
		t.Fatalf("coupon applied: %+v", r)
	}
	r = e.ok(`UPDATE stripe.customers SET _params = '{"coupon": ""}' WHERE id = $1 RETURNING discount IS NULL`, cus)
	if len(r.rows) != 1 || r.rows[0][0] != "t" {
		t.Fatalf("coupon removed: %+v", r)
	}
	e.fails("P0002", `UPDATE stripe.customers SET _params = '{"coupon": "NOPE"}' WHERE id = $1`, cus)
}

func TestReadOnlyTransaction(t *testing.T) {
	e := setup(t)
	if _, err := e.conn.Exec(e.ctx, `BEGIN READ ONLY`); err != nil {
		t.Fatal(err)
	}
	before := e.calls()
	e.fails("25006", `INSERT INTO stripe.customers (email) VALUES ('ro@b.co')`)
	if e.calls() != before {
		t.Fatal("Stripe called")
	}
	e.conn.Exec(e.ctx, `ROLLBACK`)
}

func TestHundredRowsInOrder(t *testing.T) {
	e := setup(t)
	var vals []string
	for i := 0; i < translate.MaxRows; i++ {
		vals = append(vals, fmt.Sprintf("('r%03d@b.co')", i))
	}
	r := e.ok(`INSERT INTO stripe.customers (email) VALUES ` + strings.Join(vals, ", ") + ` RETURNING email, id`)
	if r.tag != "INSERT 0 100" || len(r.rows) != 100 {
		t.Fatalf("tag %q, %d rows", r.tag, len(r.rows))
	}
	for i, row := range r.rows {
		if want := fmt.Sprintf("r%03d@b.co", i); row[0] != want {
			t.Fatalf("row %d is %s, want %s", i, row[0], want)
		}
	}
	r = e.ok(`UPDATE stripe.customers SET metadata = jsonb_build_object('n', right(split_part(email, '@', 1), 3)) WHERE email LIKE 'r%' RETURNING id`)
	if r.tag != "UPDATE 100" {
		t.Fatalf("tag %q", r.tag)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE metadata->>'n' = right(split_part(email, '@', 1), 3)`); got != "100" {
		t.Fatalf("local rows updated: %s", got)
	}
}

// TestPartialRow: an update reaches Stripe, the status change after it
// fails: the error says so and the updated state is applied locally.
func TestPartialRow(t *testing.T) {
	e := setup(t)
	cus := e.ok(`INSERT INTO stripe.customers (email) VALUES ('p@b.co') RETURNING id`).rows[0][0]
	inv := e.ok(`INSERT INTO stripe.invoices (customer) VALUES ($1) RETURNING id`, cus).rows[0][0]
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if strings.HasSuffix(r.URL.Path, "/finalize") {
			return stripeAnswer(w, 400, `{"error":{"type":"invalid_request_error","code":"invoice_no_customer_line_items","message":"Nothing to invoice for customer"}}`)
		}
		return false
	}
	e.fault.Store(&f)
	r := e.fails("55000", `UPDATE stripe.invoices SET description = 'half', status = 'open' WHERE id = $1`, inv)
	if !strings.Contains(r.err.Detail, "earlier call POST /v1/invoices/"+inv+" reached Stripe") {
		t.Fatalf("detail %q", r.err.Detail)
	}
	if got := e.local(`SELECT description FROM stripe.invoices WHERE id = $1`, inv); got != "half" {
		t.Fatalf("local description %q", got)
	}
}

// TestDeleteAlreadyGone: a DELETE whose object is already gone in Stripe
// (deleted elsewhere, or a retry after a lost answer: Stripe ignores
// idempotency keys on DELETE) succeeds and removes the row.
func TestDeleteAlreadyGone(t *testing.T) {
	e := setup(t)
	prod := e.ok(`INSERT INTO stripe.products (name) VALUES ('gone') RETURNING id`).rows[0][0]
	if _, err := e.api.Delete(e.ctx, "/v1/products/"+prod, nil); err != nil {
		t.Fatal(err)
	}
	if r := e.ok(`DELETE FROM stripe.products WHERE id = $1`, prod); r.tag != "DELETE 1" {
		t.Fatalf("reply %+v", r)
	}
	var n int
	e.pool.QueryRow(e.ctx, `SELECT count(*) FROM stripe.products WHERE id = $1`, prod).Scan(&n)
	if n != 0 {
		t.Fatal("row still there")
	}

	cus := e.ok(`INSERT INTO stripe.customers (email) VALUES ('gone@b.co') RETURNING id`).rows[0][0]
	if _, err := e.api.Delete(e.ctx, "/v1/customers/"+cus, nil); err != nil {
		t.Fatal(err)
	}
	if r := e.ok(`DELETE FROM stripe.customers WHERE id = $1`, cus); r.tag != "DELETE 1" {
		t.Fatalf("reply %+v", r)
	}
	// A stale row whose object Stripe doesn't know is removed the same way.
	if _, err := e.pool.Exec(e.ctx, `INSERT INTO stripe.customers (id, _raw, _synced_at, _as_of) VALUES ('cus_never', '{"id":"cus_never","object":"customer"}', now(), now())`); err != nil {
		t.Fatal(err)
	}
	r := e.ok(`DELETE FROM stripe.customers WHERE id = 'cus_never'`)
	if r.tag != "DELETE 1" {
		t.Fatalf("a row whose object Stripe doesn't have is removed like a deleted one: %+v", r)
	}
}
