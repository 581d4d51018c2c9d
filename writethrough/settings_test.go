package writethrough

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestNonConformingStrings: with standard_conforming_strings off, a
// backslash in an ordinary literal is an escape, for a write to Stripe as
// for the same statement on a plain table: 'C:\\dir' is C:\dir, and
// 'it\'s' (which the parser here can't read with the setting on) is it's,
// in Stripe and locally, not passed to Postgres alone.
func TestNonConformingStrings(t *testing.T) {
	e := setup(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE public.plain (id int, description text); INSERT INTO public.plain VALUES (1, NULL)`); err != nil {
		t.Fatal(err)
	}
	u := e.proxied()
	for _, m := range append(modes, struct {
		name string
		mode pgx.QueryExecMode
	}{"cache-describe", pgx.QueryExecModeCacheDescribe}) {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u, m.mode)
			// pgx refuses its own simple protocol with the setting off: send
			// the text as it is.
			one := func(sql, id string) (string, error) {
				if m.mode != pgx.QueryExecModeSimpleProtocol {
					var s string
					err := c.QueryRow(e.ctx, sql, id).Scan(&s)
					return s, err
				}
				res, err := c.PgConn().Exec(e.ctx, strings.ReplaceAll(sql, "$1", "'"+id+"'")).ReadAll()
				if err != nil {
					return "", err
				}
				if len(res) != 1 || len(res[0].Rows) != 1 {
					return "", fmt.Errorf("result %+v", res)
				}
				return string(res[0].Rows[0][0]), nil
			}
			var id string
			if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`, m.name+"@b.co").Scan(&id); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(e.ctx, `SET standard_conforming_strings = off`); err != nil {
				t.Fatal(err)
			}
			for _, lit := range []string{`'C:\\dir'`, `'it\'s'`, `N'tab\there'`, "'a\\\\'\n'\\'b'", `text'x\\y'`} {
				want, err := one(`UPDATE public.plain SET description = `+lit+` WHERE id = $1::int RETURNING description`, "1")
				if err != nil {
					t.Fatalf("%s on a plain table: %v", lit, err)
				}
				calls := e.calls()
				got, err := one(`UPDATE stripe.customers SET description = `+lit+` WHERE id = $1 RETURNING description`, id)
				if err != nil {
					t.Fatalf("%s: %v", lit, err)
				}
				if got != want {
					t.Errorf("%s: RETURNING %q, Postgres gives %q", lit, got, want)
				}
				if e.calls() == calls {
					t.Errorf("%s: Stripe was not called", lit)
				}
				if s := e.stripeObj("customers", id)["description"]; s != want {
					t.Errorf("%s: Stripe has %q, want %q", lit, s, want)
				}
				if l := e.local(`SELECT description FROM stripe.customers WHERE id = $1`, id); l != want {
					t.Errorf("%s: local %q, want %q", lit, l, want)
				}
			}
			// The same text with the setting back on: Postgres refuses it,
			// and nothing reaches Stripe.
			if _, err := c.Exec(e.ctx, `SET standard_conforming_strings = on`); err != nil {
				t.Fatal(err)
			}
			calls := e.calls()
			if _, err := one(`UPDATE stripe.customers SET description = 'it\'s' WHERE id = $1 RETURNING id`, id); sqlstate(err) != "42601" {
				t.Fatalf("with the setting on: %v", err)
			}
			if got, err := one(`UPDATE stripe.customers SET description = 'C:\\dir' WHERE id = $1 RETURNING description`, id); err != nil || got != `C:\\dir` {
				t.Fatalf("with the setting on: %q %v", got, err)
			}
			if e.calls() != calls+1 {
				t.Fatalf("%d Stripe calls, want 1", e.calls()-calls)
			}
		})
	}
}

// TestReturningSnapshotIsolation: RETURNING shows the rows the write
// produced, as in Postgres, also when the client's transaction keeps the
// snapshot of its first query: an explicit REPEATABLE READ transaction,
// and autocommit statements under default_transaction_isolation
// (REPEATABLE READ or SERIALIZABLE), whose implicit transaction our
// queries share. There an INSERT … RETURNING gave no row at all, and an
// UPDATE … RETURNING the row as it was before.
func TestReturningSnapshotIsolation(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	for _, m := range modes {
		for _, iso := range []string{"repeatable read", "serializable"} {
			t.Run(m.name+"/"+iso, func(t *testing.T) {
				c := e.client(u, m.mode)
				if _, err := c.Exec(e.ctx, `SET default_transaction_isolation = '`+iso+`'`); err != nil {
					t.Fatal(err)
				}
				var id, email string
				if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, name) VALUES ($1, 'before') RETURNING id, email`, iso+"@b.co").Scan(&id, &email); err != nil {
					t.Fatalf("INSERT RETURNING: %v", err)
				}
				if !strings.HasPrefix(id, "cus_") || email != iso+"@b.co" {
					t.Fatalf("INSERT RETURNING %q %q", id, email)
				}
				var name string
				var bal int64
				if err := c.QueryRow(e.ctx, `UPDATE stripe.customers SET name = 'after', balance = balance + 5 WHERE id = $1 RETURNING name, balance`, id).Scan(&name, &bal); err != nil || name != "after" || bal != 5 {
					t.Fatalf("UPDATE RETURNING %q %d %v", name, bal, err)
				}
				// The same inside an explicit transaction that has its
				// snapshot already.
				tx, err := c.Begin(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(e.ctx)
				if err := tx.QueryRow(e.ctx, `SELECT name FROM stripe.customers WHERE id = $1`, id).Scan(&name); err != nil || name != "after" {
					t.Fatalf("read %q %v", name, err)
				}
				if err := tx.QueryRow(e.ctx, `UPDATE stripe.customers SET name = 'again' WHERE id = $1 RETURNING name`, id).Scan(&name); err != nil || name != "again" {
					t.Fatalf("UPDATE RETURNING in a %s transaction: %q %v", iso, name, err)
				}
				if err := tx.Commit(e.ctx); err != nil {
					t.Fatal(err)
				}
				if s := e.stripeObj("customers", id)["name"]; s != "again" {
					t.Fatalf("Stripe has %v", s)
				}
			})
		}
	}
}
