package writethrough

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	url2 "net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgstripe/pgstripe/stripeapi"
)

func TestPGDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "500ms": 500 * time.Millisecond, "5s": 5 * time.Second, "1min": time.Minute,
		"2h": 2 * time.Hour, "1d": 24 * time.Hour, "250": 250 * time.Millisecond, "": 0, "bogus": 0,
	} {
		if got := pgDuration(in); got != want {
			t.Errorf("pgDuration(%q) = %v, want %v", in, got, want)
		}
	}
}

// A write that failed without a definite answer may have reached Stripe,
// and DETAIL says so; a refusal or a read says nothing of the kind.
func TestStripeErrorSaysWhenOutcomeUnknown(t *testing.T) {
	for _, tc := range []struct {
		err  error
		call string
		want bool
	}{
		{&stripeapi.Error{HTTPStatus: 500, Type: "api_error"}, "POST /v1/customers", true},
		{&stripeapi.Error{HTTPStatus: 503, Type: "api_error"}, "DELETE /v1/customers/cus_1", true},
		{&stripeapi.NetworkError{Err: errors.New("connection reset")}, "POST /v1/customers", true},
		{context.DeadlineExceeded, "POST /v1/customers", true},
		{context.Canceled, "POST /v1/invoices/in_1/pay", true},
		{&stripeapi.Error{HTTPStatus: 409, Type: "idempotency_error", Code: "idempotency_key_in_use"}, "POST /v1/customers/cus_1", true},
		{&stripeapi.Error{HTTPStatus: 402, Type: "card_error"}, "POST /v1/invoices/in_1/pay", false},
		{&stripeapi.Error{HTTPStatus: 400, Type: "invalid_request_error"}, "POST /v1/customers", false},
		{&stripeapi.Error{HTTPStatus: 500, Type: "api_error"}, "GET /v1/customers/cus_1", false},
	} {
		e := stripeError(tc.err, tc.call)
		if got := strings.Contains(e.Detail, mayHaveTakenEffect); got != tc.want {
			t.Errorf("%v on %s: DETAIL %q, says outcome unknown: %v, want %v", tc.err, tc.call, e.Detail, got, tc.want)
		}
	}
}

// Stripe's answers map to the SQLSTATEs of the README's table; a
// lock_timeout comes as a 429 but is a lock, not the rate limit.
func TestStripeCode(t *testing.T) {
	for _, tc := range []struct {
		err  stripeapi.Error
		want string
	}{
		{stripeapi.Error{HTTPStatus: 402, Type: "card_error", Code: "card_declined"}, "P0001"},
		{stripeapi.Error{HTTPStatus: 404, Type: "invalid_request_error", Code: "resource_missing"}, "P0002"},
		{stripeapi.Error{HTTPStatus: 400, Type: "invalid_request_error", Param: "email"}, "22023"},
		{stripeapi.Error{HTTPStatus: 400, Type: "invalid_request_error"}, "55000"},
		{stripeapi.Error{HTTPStatus: 400, Type: "idempotency_error"}, "55000"},
		{stripeapi.Error{HTTPStatus: 429, Type: "invalid_request_error", Code: "rate_limit"}, "53400"},
		{stripeapi.Error{HTTPStatus: 429, Type: "invalid_request_error", Code: "lock_timeout"}, "55P03"},
		{stripeapi.Error{HTTPStatus: 409, Type: "idempotency_error", Code: "idempotency_key_in_use"}, "55P03"},
		{stripeapi.Error{HTTPStatus: 401, Type: "invalid_request_error"}, "28000"},
		{stripeapi.Error{HTTPStatus: 403, Type: "invalid_request_error"}, "42501"},
		{stripeapi.Error{HTTPStatus: 500, Type: "api_error"}, "58000"},
	} {
		if got := stripeCode(&tc.err); got != tc.want {
			t.Errorf("HTTP %d %s %s: %s, want %s", tc.err.HTTPStatus, tc.err.Type, tc.err.Code, got, tc.want)
		}
	}
}

// TestPostgresErrorFieldsThroughProxy: an error Postgres raises
// while pgstripe handles a write (analysing the client's text, evaluating
// its values and WHERE, a statement relayed because its name resolved
// elsewhere) reaches the client with every field Postgres sent, as
// directly: psql's \set VERBOSITY verbose shows LOCATION (File, Line,
// Routine), and CONTEXT's internal query and position, through the proxy
// too. Simple and extended protocol, field by field.
func TestPostgresErrorFieldsThroughProxy(t *testing.T) {
	e := setup(t)
	id := e.newCustomers("fields@b.co")[0]
	// Run as the client's own objects, in public: a domain check and
	// NOT NULL (SchemaName, DataTypeName, ConstraintName), dynamic SQL
	// that fails to parse (InternalQuery, InternalPosition, Where), RAISE
	// with every field it can set, and a table of the client's own that
	// shadows stripe.customers by name.
	if _, err := e.conn.Exec(e.ctx, `
CREATE DOMAIN public.posint AS bigint CONSTRAINT posint_positive CHECK (VALUE > 0);
CREATE DOMAIN public.nnint AS bigint NOT NULL;
CREATE FUNCTION public.dyn() RETURNS bigint LANGUAGE plpgsql AS $$BEGIN EXECUTE 'SELECT nosuch'; RETURN 1; END$$;
CREATE FUNCTION public.raiser() RETURNS bigint LANGUAGE plpgsql AS $$BEGIN
  RAISE EXCEPTION USING ERRCODE = '22000', MESSAGE = 'raised', DETAIL = 'd', HINT = 'h', COLUMN = 'c',
    CONSTRAINT = 'k', DATATYPE = 'dt', TABLE = 'tb', SCHEMA = 'sc';
END$$;
CREATE TABLE public.customers (n int CONSTRAINT n_positive CHECK (n > 0));`); err != nil {
		t.Fatal(err)
	}
	// ID stands for the customer's id: a literal in the simple protocol, $1
	// in the extended one.
	stmts := []struct{ name, sql string }{
		{"bad json literal", `UPDATE stripe.customers SET preferred_locales = '{"en","fr"}' WHERE id = ID`},
		{"bad json at run time", `UPDATE stripe.customers SET metadata = (name || '{')::jsonb WHERE id = ID`},
		{"bad int literal", `UPDATE stripe.customers SET balance = 'abc' WHERE id = ID`},
		{"bad int at run time", `UPDATE stripe.customers SET balance = name::bigint WHERE id = ID`},
		{"unknown column", `UPDATE stripe.customers SET nosuch = 1 WHERE id = ID`},
		{"not-null domain", `UPDATE stripe.customers SET balance = NULL::nnint WHERE id = ID`},
		{"check domain", `UPDATE stripe.customers SET balance = '-1'::posint WHERE id = ID`},
		{"dynamic SQL", `UPDATE stripe.customers SET balance = dyn() WHERE id = ID`},
		{"raise", `UPDATE stripe.customers SET balance = raiser() WHERE id = ID`},
		{"bad cast in WHERE", `UPDATE stripe.customers SET name = 'x' WHERE id::int = 1 OR id = ID`},
		{"bad cast in DELETE", `DELETE FROM stripe.customers WHERE id::bigint = 1 OR id = ID`},
		{"insert bad json", `INSERT INTO stripe.customers (email, metadata) VALUES ('i@b.co', '{bad')`},
		{"insert unknown column", `INSERT INTO stripe.customers (email, nosuch) VALUES ('i@b.co', 1)`},
		{"relayed check violation", `INSERT INTO customers (n) VALUES (-1)`},
	}
	direct := e.client(e.url, pgx.QueryExecModeSimpleProtocol).PgConn()
	proxied := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol).PgConn()
	before := e.calls()
	for _, proto := range []string{"simple", "extended"} {
		for _, s := range stmts {
			t.Run(proto+"/"+s.name, func(t *testing.T) {
				want := runIn(t, direct, proto, s.sql, id)
				got := runIn(t, proxied, proto, s.sql, id)
				if d := errorFieldDiff(want, got); d != "" {
					t.Errorf("through the proxy the error differs from Postgres's own:\n%s", d)
				}
			})
		}
	}
	if e.calls() != before {
		t.Errorf("Stripe was called %d times for statements that fail in Postgres", e.calls()-before)
	}
}

// runIn runs sql, which must fail, and returns Postgres's error.
func runIn(t *testing.T, c *pgconn.PgConn, proto, sql, id string) *pgconn.PgError {
	t.Helper()
	var err error
	switch proto {
	case "simple":
		_, err = c.Exec(t.Context(), strings.ReplaceAll(sql, "ID", "'"+id+"'")).ReadAll()
	default:
		var params [][]byte
		if strings.Contains(sql, "ID") {
			params = [][]byte{[]byte(id)}
		}
		_, err = c.ExecParams(t.Context(), strings.ReplaceAll(sql, "ID", "$1"), params, nil, nil, nil).Close()
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: want a Postgres error, got %v", sql, err)
	}
	return pe
}

// errorFieldDiff lists the fields of got that differ from want, by name.
func errorFieldDiff(want, got *pgconn.PgError) string {
	var d []string
	w, g := reflect.ValueOf(want).Elem(), reflect.ValueOf(got).Elem()
	for i := range w.NumField() {
		if !reflect.DeepEqual(w.Field(i).Interface(), g.Field(i).Interface()) {
			d = append(d, fmt.Sprintf("  %s: Postgres %q, proxy %q", w.Type().Field(i).Name, fmt.Sprint(w.Field(i).Interface()), fmt.Sprint(g.Field(i).Interface())))
		}
	}
	return strings.Join(d, "\n")
}

// TestOwnErrorsSeverityUnlocalized: the errors pgstripe makes
// itself carry SeverityUnlocalized (V) as Postgres's do, which drivers
// read the severity from: Stripe's refusals, refusals before any call,
// and the 40001 of a REPEATABLE READ update of an object changed since the
// snapshot (made as a PgError, it went out without V).
func TestOwnErrorsSeverityUnlocalized(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	c := e.client(u, pgx.QueryExecModeSimpleProtocol)
	id := e.newCustomers("sev@b.co")[0]
	check := func(t *testing.T, code string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != code {
			t.Fatalf("want SQLSTATE %s, got %v", code, err)
		}
		if pe.Severity != "ERROR" || pe.SeverityUnlocalized != "ERROR" {
			t.Errorf("%s %q: Severity %q, SeverityUnlocalized %q, want ERROR for both", pe.Code, pe.Message, pe.Severity, pe.SeverityUnlocalized)
		}
	}
	both := []string{"simple", "extended"}
	for _, s := range []struct {
		code, sql string
		protos    []string
	}{
		{"22023", `INSERT INTO stripe.customers (email, tax_exempt) VALUES ('sev2@b.co', 'bogus')`, both}, // Stripe's 400
		{"0A000", `DELETE FROM stripe.prices WHERE id = 'price_x'`, both},
		{"42703", `INSERT INTO stripe.customers (id, email) VALUES ('cus_mine', 'sev3@b.co')`, both},
		{"23502", `UPDATE stripe.customers SET balance = NULL WHERE id = '` + id + `'`, both},
		// In the extended protocol Postgres itself refuses the Bind.
		{"42P02", `UPDATE stripe.customers SET name = $1 WHERE id = '` + id + `'`, []string{"simple"}},
	} {
		for _, proto := range s.protos {
			t.Run(proto+"/"+s.code, func(t *testing.T) {
				var err error
				if proto == "simple" {
					_, err = c.PgConn().Exec(e.ctx, s.sql).ReadAll()
				} else {
					_, err = c.PgConn().ExecParams(e.ctx, s.sql, nil, nil, nil, nil).Close()
				}
				check(t, s.code, err)
			})
		}
	}
	t.Run("40001", func(t *testing.T) {
		other := e.client(u, pgx.QueryExecModeSimpleProtocol)
		tx, err := c.BeginTx(e.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(e.ctx)
		if _, err := tx.Exec(e.ctx, `SELECT balance FROM stripe.customers WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(e.ctx, `UPDATE stripe.customers SET balance = 5 WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(e.ctx, `UPDATE stripe.customers SET balance = 7 WHERE id = $1`, id)
		check(t, "40001", err)
	})
}

// TestReturningErrorFields: when only RETURNING fails, after the
// write reached Stripe, the error is Postgres's with every field, DETAIL
// extended to say what reached Stripe (a rewrite on purpose: without it
// the client takes the statement for undone and repeats it).
func TestReturningErrorFields(t *testing.T) {
	e := setup(t)
	id := e.newCustomers("ret@b.co")[0]
	direct := e.client(e.url, pgx.QueryExecModeSimpleProtocol).PgConn()
	proxied := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol).PgConn()
	for _, proto := range []string{"simple", "extended"} {
		t.Run(proto, func(t *testing.T) {
			// A new name each time, or the second UPDATE changes nothing
			// and makes no call; balance - balance is no constant: the
			// division runs per row, after the write.
			sql := `UPDATE stripe.customers SET name = '` + proto + `' WHERE id = ID RETURNING 1 / (balance - balance)`
			want := runIn(t, direct, proto, sql, id)
			got := runIn(t, proxied, proto, sql, id)
			if !strings.HasPrefix(got.Detail, "only RETURNING failed: the update reached Stripe") || !strings.Contains(got.Detail, id) {
				t.Errorf("DETAIL %q does not say the update reached Stripe", got.Detail)
			}
			got.Detail = want.Detail
			if d := errorFieldDiff(want, got); d != "" {
				t.Errorf("through the proxy the error differs from Postgres's own:\n%s", d)
			}
		})
	}
}

// With Stripe unreachable (every connection refused), a write says
// definitely that nothing was changed, and answers within about
// stripeapi.UnreachedBudget instead of the whole retry schedule (39 s).
func TestStripeDownWriteNotReached(t *testing.T) {
	var cfg *Config
	e := setup(t, func(c *Config) { cfg = c })
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('down@b.co', 'up') RETURNING id`).rows[0][0]

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ln.Close() // Stripe killed: the port refuses connections
	down, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_writethrough", BaseURL: base, RateLimit: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	c := *cfg
	c.Stripe, c.Timeout = down, 60*time.Second
	e.ic = New(c)

	start := time.Now()
	r := e.fails(codeStripeIO, `UPDATE stripe.customers SET name = 'down' WHERE id = $1`, id)
	took := time.Since(start)
	if !strings.Contains(r.err.Detail, notReached) || strings.Contains(r.err.Detail, mayHaveTakenEffect) {
		t.Errorf("DETAIL %q: want it to say Stripe was not reached, and nothing of an unknown outcome", r.err.Detail)
	}
	if !strings.HasPrefix(r.err.Message, "could not connect to Stripe") {
		t.Errorf("message %q", r.err.Message)
	}
	// The budget is of backoff; the refused attempts themselves are quick.
	if took > stripeapi.UnreachedBudget+3*time.Second {
		t.Errorf("the refused write took %v", took)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != "up" {
		t.Errorf("local name %q", got)
	}
}

// The DETAIL of a call that never reached Stripe says so, whatever ended it
// (the retries, a deadline while waiting to retry), and never that it may
// have taken effect.
func TestStripeErrorNotSent(t *testing.T) {
	refused := &stripeapi.NetworkError{Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}
	for _, tc := range []struct {
		err  error
		code string
	}{
		{&stripeapi.NotSentError{Err: refused, Attempts: 5}, codeStripeIO},
		{&stripeapi.NotSentError{Err: context.DeadlineExceeded, Attempts: 3}, codeTimeout},
		{&stripeapi.NotSentError{Err: context.Canceled, Attempts: 1}, codeTimeout},
	} {
		e := stripeError(tc.err, "POST /v1/customers/cus_1")
		if e.Code != tc.code || !strings.Contains(e.Detail, notReached) || strings.Contains(e.Detail, mayHaveTakenEffect) {
			t.Errorf("%v: %s %q", tc.err, e.Code, e.Detail)
		}
		if mayHaveTakenEffectOf(tc.err, "POST") {
			t.Errorf("%v: counted as of unknown outcome", tc.err)
		}
	}
	// Without the mark, a network error stays of unknown outcome.
	if e := stripeError(refused, "POST /v1/customers/cus_1"); !strings.Contains(e.Detail, mayHaveTakenEffect) || strings.Contains(e.Detail, notReached) {
		t.Errorf("unmarked network error: %q", e.Detail)
	}
}

// A statement refused before any Stripe call (no privilege, a failed
// transaction, an unknown column) is Refused, for the metrics' "rejected";
// one that got to Stripe, even refused there, is a write.
func TestReplyRefused(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email) VALUES ('ref@b.co') RETURNING id`).rows[0][0]
	exec := func(sql string) Reply {
		t.Helper()
		return e.ic.Execute(e.ctx, PgConnUpstream(e.conn.PgConn()), Request{SQL: sql, TxStatus: e.txStatus(), Describe: true})
	}
	code := func(r Reply) string {
		for _, m := range r.Messages {
			if er, ok := m.(*pgproto3.ErrorResponse); ok {
				return er.Code
			}
		}
		return ""
	}
	for _, tc := range []struct {
		sql     string
		code    string
		refused bool
	}{
		{`UPDATE stripe.customers SET name = 'n' WHERE id = '` + id + `'`, "", false},
		{`UPDATE stripe.customers SET no_such_column = 'n' WHERE id = '` + id + `'`, "42703", true},
		{`UPDATE stripe.customers SET name = 'none' WHERE id = 'cus_none'`, "", false}, // no row: UPDATE 0
	} {
		if r := exec(tc.sql); r.Refused() != tc.refused || r.Pass || code(r) != tc.code {
			t.Errorf("%s: Refused %v (pass %v, error %q), want %v (%q)", tc.sql, r.Refused(), r.Pass, code(r), tc.refused, tc.code)
		}
	}

	// Stripe refuses: the statement was a write all the same.
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		return stripeAnswer(w, 400, `{"error":{"type":"invalid_request_error","message":"no","param":"name"}}`)
	}
	e.fault.Store(&f)
	if r := exec(`UPDATE stripe.customers SET name = 'x' WHERE id = '` + id + `'`); r.Refused() || code(r) != codeInvalidParam {
		t.Errorf("refused by Stripe: Refused %v, error %q", r.Refused(), code(r))
	}
	e.fault.Store(nil)

	// In a failed transaction: 25P02, no call.
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	e.conn.Exec(e.ctx, `SELECT 1/0`)
	if r := exec(`UPDATE stripe.customers SET name = 'n' WHERE id = '` + id + `'`); !r.Refused() || code(r) != "25P02" {
		t.Errorf("failed transaction: Refused %v, error %q", r.Refused(), code(r))
	}
	if _, err := e.conn.Exec(e.ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}

	// Without UPDATE privilege: 42501, no call.
	e.asRole(`REVOKE UPDATE ON stripe.customers FROM $role`)
	r := exec(`UPDATE stripe.customers SET name = 'n' WHERE id = '` + id + `'`)
	if !r.Refused() || code(r) != "42501" {
		t.Errorf("no privilege: Refused %v, error %q", r.Refused(), code(r))
	}
}

// A multi-row INSERT whose first row was created in Stripe and whose
// second row's call never got a connection must not tell the client that
// nothing was changed: a client that believes it and repeats the statement
// creates the first customer twice. The DETAIL says the failed call changed
// nothing and what did reach Stripe.
func TestNotReachedAfterOtherRows(t *testing.T) {
	var cfg *Config
	e := setup(t, func(c *Config) { c.Concurrency = 1; cfg = c })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := ln.Addr().String()
	ln.Close() // nothing listens: a dial there is refused
	var dials atomic.Int32
	var d net.Dialer
	tr := &http.Transport{
		// One connection per request, so the second row's call dials.
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) > 1 {
				addr = refusing // Stripe went down after the first row
			}
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	api, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_writethrough", BaseURL: e.api.BaseURL(),
		RateLimit: 1e6, MaxRetries: 1, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	c := *cfg
	c.Stripe = api
	e.ic = New(c)

	r := e.fails(codeStripeIO, `INSERT INTO stripe.customers (email) VALUES ('first@b.co'), ('second@b.co')`)
	if !strings.Contains(r.err.Detail, "1 row reached Stripe") {
		t.Fatalf("DETAIL %q: want the first row reported as created", r.err.Detail)
	}
	if strings.Contains(r.err.Detail, "nothing was changed") || !strings.Contains(r.err.Detail, notReachedCall) {
		t.Errorf("DETAIL %q: says nothing was changed though row 1 was created in Stripe", r.err.Detail)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = 'first@b.co'`); got != "1" {
		t.Errorf("first row applied locally %s times", got)
	}
}
