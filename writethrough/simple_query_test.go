package writethrough

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestSimpleQueryAnalysedAsPostgres: a write sent as a simple Query
// (psql, pgx's simple protocol) gets the errors Postgres gives for the
// statement itself, at the statement's own positions, and Stripe is not
// called. The proxy's own queries (VALUES with explicit casts, a SELECT for
// WHERE) accepted what an INSERT can't assign, and their error positions
// pointed into text the client never sent.
func TestSimpleQueryAnalysedAsPostgres(t *testing.T) {
	e := setup(t)
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	var id string
	if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email) VALUES ('r@b.co') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	calls := e.calls()
	for _, tc := range []struct {
		sql, code, at string // at: the text the error position points to
	}{
		// text is not assignable to jsonb (an explicit cast is)
		{`INSERT INTO stripe.customers (email, metadata) VALUES ('x@b.co', '{}'::text)`, "42804", `'{}'::text`},
		{`INSERT INTO stripe.customers (email, balance) VALUES ('x@b.co', true)`, "42804", `true`},
		// DEFAULT for a column that does not exist
		{`UPDATE stripe.customers SET nosuch = DEFAULT WHERE id = '` + id + `'`, "42703", `nosuch`},
		{`UPDATE stripe.customers SET name = 'x' WHERE nosuch = 1`, "42703", `nosuch`},
		{`UPDATE stripe.customers SET balance = 'abc' WHERE id = '` + id + `'`, "22P02", `'abc'`},
		{`INSERT INTO stripe.customers (email) VALUES (nosuchfn(1))`, "42883", `nosuchfn`},
		{`DELETE FROM stripe.customers WHERE id = 'x' RETURNING nosuch`, "42703", `nosuch`},
		{`INSERT INTO stripe.customers (email) VALUES ('x@b.co') RETURNING nosuch`, "42703", `nosuch`},
		// refused by pgstripe's own plan, where Postgres refuses too
		{`INSERT INTO stripe.customers (email, nosuch) VALUES ('x@b.co', NULL)`, "42703", `nosuch`},
		{`UPDATE stripe.customers SET nosuch = 1 WHERE id = '` + id + `'`, "42703", `nosuch`},
		{`INSERT INTO stripe.customers (email, balance) VALUES ('x@b.co', 1), ('y@b.co')`, "42601", `'y@b.co'`},
	} {
		_, err := c.Exec(e.ctx, tc.sql)
		pe, ok := err.(*pgconn.PgError)
		if !ok || pe.Code != tc.code {
			t.Errorf("%s: want %s, got %v", tc.sql, tc.code, err)
			continue
		}
		if want := int32(strings.Index(tc.sql, tc.at) + 1); pe.Position != want {
			t.Errorf("%s: position %d, want %d (%q)", tc.sql, pe.Position, want, tc.at)
		}
	}
	if got := e.calls() - calls; got != 0 {
		t.Fatalf("%d Stripe calls", got)
	}
	if got := e.local(`SELECT email FROM stripe.customers WHERE id = $1`, id); got != "r@b.co" {
		t.Fatalf("email %q", got)
	}
}

// TestUpdateEvaluatesSetOnce: an UPDATE's SET expressions run once
// per row, as in Postgres. They ran a second time once the object was
// locked, so a sequence advanced twice and a function with side effects
// ran twice.
func TestUpdateEvaluatesSetOnce(t *testing.T) {
	e := setup(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE SEQUENCE public.seq; CREATE TABLE public.audit (n int);
		CREATE FUNCTION public.audited(v text) RETURNS text LANGUAGE sql VOLATILE AS $$ INSERT INTO public.audit VALUES (1); SELECT v $$`); err != nil {
		t.Fatal(err)
	}
	u := e.proxied()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u, m.mode)
			var id string
			if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`, m.name+"@b.co").Scan(&id); err != nil {
				t.Fatal(err)
			}
			if _, err := e.pool.Exec(e.ctx, `SELECT setval('public.seq', 1, false); TRUNCATE public.audit`); err != nil {
				t.Fatal(err)
			}
			var name string
			if err := c.QueryRow(e.ctx, `UPDATE stripe.customers SET name = nextval('public.seq')::text, description = public.audited('d') WHERE id = $1 RETURNING name`, id).Scan(&name); err != nil {
				t.Fatal(err)
			}
			var cur, audited int
			if err := e.pool.QueryRow(e.ctx, `SELECT last_value, (SELECT count(*) FROM public.audit) FROM public.seq`).Scan(&cur, &audited); err != nil {
				t.Fatal(err)
			}
			if name != "1" || cur != 1 || audited != 1 {
				t.Fatalf("name %q, sequence at %d, audited %d times: want 1, 1, 1", name, cur, audited)
			}
		})
	}
}
