package writethrough

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestSQLExecuteOfProtocolStatement: SQL EXECUTE runs a statement
// prepared through the protocol (Parse) too; the proxy intercepts such a
// write at its protocol Execute only, so EXECUTE (alone, under EXPLAIN
// ANALYZE, in the extended protocol, or through another prepared EXECUTE)
// would change the local table without Stripe. It is refused; EXECUTE of
// anything else runs as it is.
func TestSQLExecuteOfProtocolStatement(t *testing.T) {
	e := setup(t)
	ids := e.newCustomers("x1@b.co")
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE public.customers (id text, name text); INSERT INTO public.customers VALUES ('p1', 'Mine')`); err != nil {
		t.Fatal(err)
	}
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	pg := c.PgConn()
	for name, sql := range map[string]string{
		"upd":    `UPDATE stripe.customers SET name = $1 WHERE id = $2`,
		"del":    `DELETE FROM stripe.customers WHERE id = $1`,
		"unq":    `UPDATE customers SET name = $1 WHERE id = $2`,
		"nested": `EXECUTE upd('Nested', '` + ids[0] + `')`,
		"rd":     `SELECT name FROM stripe.customers WHERE id = $1`,
	} {
		if _, err := pg.Prepare(e.ctx, name, sql, nil); err != nil {
			t.Fatalf("prepare %s: %v", name, err)
		}
	}
	calls := e.calls()
	refused := func(sql string) {
		t.Helper()
		_, err := pg.Exec(e.ctx, sql).ReadAll()
		if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "locally only") {
			t.Fatalf("%s: %v", sql, err)
		}
		rr := pg.ExecParams(e.ctx, sql, nil, nil, nil, nil).Read()
		if sqlstate(rr.Err) != "0A000" {
			t.Fatalf("%s, extended protocol: %v", sql, rr.Err)
		}
	}
	refused(`EXECUTE upd('Bypassed', '` + ids[0] + `')`)
	refused(`execute "upd" ('Bypassed', '` + ids[0] + `')`)
	refused(`EXPLAIN ANALYZE EXECUTE del('` + ids[0] + `')`)
	refused(`EXPLAIN (ANALYZE, COSTS OFF) EXECUTE del('` + ids[0] + `')`)
	refused(`EXECUTE nested`)
	if _, err := pg.Exec(e.ctx, `SELECT 1; EXECUTE upd('Bypassed', '`+ids[0]+`')`).ReadAll(); sqlstate(err) != "0A000" {
		t.Fatalf("multi-statement: %v", err)
	}

	// The same statement text, another session state: an unqualified
	// name is resolved when EXECUTE runs (Postgres analyses a prepared
	// statement again when search_path changes).
	if _, err := pg.Exec(e.ctx, `EXECUTE unq('Changed', 'p1')`).ReadAll(); err != nil {
		t.Fatalf("unqualified, public: %v", err)
	}
	if _, err := pg.Exec(e.ctx, `PREPARE sqlunq(text, text) AS UPDATE customers SET name = $1 WHERE id = $2`).ReadAll(); err != nil {
		t.Fatalf("SQL PREPARE resolving to public: %v", err)
	}
	if _, err := pg.Exec(e.ctx, `SET search_path = stripe, public`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	refused(`EXECUTE unq('Bypassed', '` + ids[0] + `')`)
	refused(`EXECUTE sqlunq('Bypassed', '` + ids[0] + `')`)
	if _, err := pg.Exec(e.ctx, `RESET search_path`).ReadAll(); err != nil {
		t.Fatal(err)
	}

	// Reads, and a name that is not prepared, go to Postgres as sent.
	res, err := pg.Exec(e.ctx, `SELECT 1; EXECUTE rd('`+ids[0]+`')`).ReadAll()
	if err != nil || len(res) != 2 || len(res[1].Rows) != 1 || string(res[1].Rows[0][0]) != "Old" {
		t.Fatalf("EXECUTE of a read: %+v %v", res, err)
	}
	rr := pg.ExecParams(e.ctx, `EXECUTE rd('`+ids[0]+`')`, nil, nil, nil, nil).Read()
	if rr.Err != nil || len(rr.Rows) != 1 || string(rr.Rows[0][0]) != "Old" {
		t.Fatalf("EXECUTE of a read, extended protocol: %+v", rr)
	}
	if _, err := pg.Exec(e.ctx, `EXECUTE nosuch`).ReadAll(); sqlstate(err) != "26000" {
		t.Fatalf("EXECUTE of no statement: %v", err)
	}

	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, ids[0]); got != "Old" {
		t.Fatalf("local name %q, Stripe has Old", got)
	}
	if got := e.local(`SELECT name FROM public.customers WHERE id = 'p1'`); got != "Changed" {
		t.Fatalf("public.customers: %q", got)
	}
	if n := e.calls() - calls; n != 0 {
		t.Fatalf("%d Stripe calls", n)
	}
	if pg.TxStatus() != 'I' {
		t.Fatalf("tx status %c", pg.TxStatus())
	}
}

// TestExecuteAbortedTx: SQL EXECUTE in a failed transaction gets
// Postgres's 25P02, and the session stays usable.
func TestExecuteAbortedTx(t *testing.T) {
	e := setup(t)
	ids := e.newCustomers("x1@b.co")
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	pg := c.PgConn()
	if _, err := pg.Prepare(e.ctx, "rd", `SELECT name FROM stripe.customers WHERE id = $1`, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(e.ctx, `BEGIN; SELECT 1/0`).ReadAll(); sqlstate(err) != "22012" {
		t.Fatal(err)
	}
	if _, err := pg.Exec(e.ctx, `EXECUTE rd('`+ids[0]+`')`).ReadAll(); sqlstate(err) != "25P02" {
		t.Fatalf("simple: %v", err)
	}
	if rr := pg.ExecParams(e.ctx, `EXECUTE rd('`+ids[0]+`')`, nil, nil, nil, nil).Read(); sqlstate(rr.Err) != "25P02" {
		t.Fatalf("extended: %v", rr.Err)
	}
	if pg.TxStatus() != 'E' {
		t.Fatalf("status %c", pg.TxStatus())
	}
	if _, err := pg.Exec(e.ctx, `ROLLBACK`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	res, err := pg.Exec(e.ctx, `EXECUTE rd('`+ids[0]+`')`).ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		t.Fatalf("after rollback: %+v %v", res, err)
	}
}

// TestExecuteMultiStatementPrepare: a statement prepared by SQL
// PREPARE in a multi-statement Query is recorded with the whole Query's
// text; EXECUTE of the read it prepared must not be refused because of
// another statement of that text.
func TestExecuteMultiStatementPrepare(t *testing.T) {
	e := setup(t)
	e.newCustomers("x1@b.co")
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE public.customers (id text, name text)`); err != nil {
		t.Fatal(err)
	}
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	pg := c.PgConn()
	if _, err := pg.Exec(e.ctx, `PREPARE s AS SELECT 1; UPDATE customers SET name = 'x' WHERE false`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	// The write prepared in such a Query is still found.
	if _, err := pg.Exec(e.ctx, `SELECT 1; PREPARE w AS UPDATE customers SET name = 'y' WHERE false`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	res, err := pg.Exec(e.ctx, `SELECT statement FROM pg_prepared_statements WHERE name = 's'`).ReadAll()
	if err == nil {
		t.Logf("recorded: %s", res[0].Rows[0][0])
	}
	if _, err := pg.Exec(e.ctx, `SET search_path = stripe, public`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(e.ctx, `EXECUTE w`).ReadAll(); sqlstate(err) != "0A000" {
		t.Fatalf("EXECUTE of the write: %v", err)
	}
	res, err = pg.Exec(e.ctx, `EXECUTE s`).ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		t.Fatalf("EXECUTE of a read: %+v %v", res, err)
	}
}
