package writethrough

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// asRole makes the env's client connection one of a fresh login role that
// may read and write stripe.customers only; pgstripe's pool stays the
// superuser. Postgres roles are cluster-wide: one name per run.
func (e *env) asRole(extra ...string) string {
	e.t.Helper()
	role := fmt.Sprintf("app_%d", time.Now().UnixNano())
	for _, q := range append([]string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT USAGE ON SCHEMA stripe TO ` + role,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON stripe.customers TO ` + role,
		`CREATE TABLE public.secret (v text)`,
		`INSERT INTO public.secret VALUES ('topsecret')`,
		`REVOKE ALL ON public.secret FROM PUBLIC`,
	}, extra...) {
		if _, err := e.pool.Exec(e.ctx, strings.ReplaceAll(q, "$role", role)); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
	e.t.Cleanup(func() {
		e.conn.Close(e.ctx)
		e.pool.Exec(e.ctx, `DROP OWNED BY `+role)
		e.pool.Exec(e.ctx, `DROP ROLE `+role)
	})
	u, _ := url.Parse(e.url)
	u.User = url.User(role)
	conn, err := pgx.Connect(e.ctx, u.String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.conn.Close(e.ctx)
	e.conn = conn
	return role
}

// A client in a REPEATABLE READ transaction can't see the applied rows, so
// RETURNING is answered from fresh rows. The client's target list must
// still run with the client's privileges: neither a function that runs
// SQL of its own (query_to_xml, checked only when it runs) nor resetting
// the role inside the expression may read what only pgstripe's role can.
func TestReturningFreshRunsAsClient(t *testing.T) {
	e := setup(t)
	role := e.asRole()
	if _, err := e.conn.Exec(e.ctx, `SELECT v FROM public.secret`); err == nil {
		t.Fatal("the role reads the secret table directly")
	}
	for _, ret := range []string{
		`pg_catalog.query_to_xml('SELECT v FROM public.secret', true, false, '')::text`,
		`pg_catalog.set_config('role', 'none', true) || pg_catalog.query_to_xml('SELECT v FROM public.secret', true, false, '')::text`,
		`email || current_user`,
	} {
		for _, q := range []string{`BEGIN ISOLATION LEVEL REPEATABLE READ`, `SELECT count(*) FROM stripe.customers`} {
			if _, err := e.conn.Exec(e.ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		r := e.run(`INSERT INTO stripe.customers (email) VALUES ('rr@b.co') RETURNING ` + ret)
		if _, err := e.conn.Exec(e.ctx, `ROLLBACK`); err != nil {
			t.Fatal(err)
		}
		if ret == `email || current_user` && r.err != nil {
			t.Fatalf("RETURNING %s: %s %s", ret, r.err.Code, r.err.Message)
		}
		// As in Postgres: the function's query is refused, the client
		// hears of it, and the write is reported as done.
		if ret != `email || current_user` && (r.err == nil || r.err.Code != "42501" || !strings.Contains(r.err.Detail, "only RETURNING failed")) {
			t.Errorf("RETURNING %s: %+v, want 42501 saying the insert reached Stripe", ret, r)
		}
		if strings.Contains(fmt.Sprint(r.rows), "topsecret") {
			t.Errorf("RETURNING %s read a table the role may not read: %v", ret, r.rows)
		}
		if ret == `email || current_user` && (len(r.rows) != 1 || r.rows[0][0] != "rr@b.co"+role) {
			t.Errorf("RETURNING %s in REPEATABLE READ: %v, want the new row as seen by %s", ret, r.rows, role)
		}
	}
}

// Row-level security policies on a stripe table hold for writes through
// pgstripe as they would in Postgres: a role whose policies let it read
// every row but change only some must not change the others in Stripe.
func TestRowLevelSecurity(t *testing.T) {
	e := setup(t)
	other := e.ok(`INSERT INTO stripe.customers (email, metadata) VALUES ('other@b.co', '{"tenant":"b"}') RETURNING id`).rows[0][0]
	e.asRole(
		`ALTER TABLE stripe.customers ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY read_all ON stripe.customers FOR SELECT USING (true)`,
		`CREATE POLICY upd_a ON stripe.customers FOR UPDATE USING (metadata->>'tenant' = 'a')`,
		`CREATE POLICY del_a ON stripe.customers FOR DELETE USING (metadata->>'tenant' = 'a')`,
		`CREATE POLICY ins_a ON stripe.customers FOR INSERT WITH CHECK (metadata->>'tenant' = 'a')`,
	)
	// Postgres itself: the row is visible but can't be changed.
	for _, q := range []string{
		`UPDATE stripe.customers SET name = 'x' WHERE id = '` + other + `'`,
		`DELETE FROM stripe.customers WHERE id = '` + other + `'`,
	} {
		tag, err := e.conn.PgConn().Exec(e.ctx, `BEGIN; `+q+`; ROLLBACK`).ReadAll()
		if err != nil || tag[1].CommandTag.RowsAffected() != 0 {
			t.Fatalf("directly, %s: %v %v", q, err, tag[1].CommandTag)
		}
	}
	before := e.emu.Stats().Total
	for _, q := range []string{
		`UPDATE stripe.customers SET name = 'hacked' WHERE id = '` + other + `'`,
		`DELETE FROM stripe.customers WHERE id = '` + other + `'`,
		`INSERT INTO stripe.customers (email, metadata) VALUES ('x@b.co', '{"tenant":"b"}')`,
	} {
		e.fails("42501", q)
	}
	if n := e.emu.Stats().Total - before; n != 0 {
		t.Errorf("Stripe got %d requests for writes the policies forbid", n)
	}
	if o := e.stripeObj("customers", other); o == nil || o["name"] != nil {
		t.Errorf("the customer was changed or deleted in Stripe: %v", o)
	}
}

// The same through the proxy, as a client with pgx would do it.
func TestReturningFreshThroughProxy(t *testing.T) {
	e := setup(t)
	role := e.asRole()
	u, _ := url.Parse(e.proxied())
	u.User = url.User(role)
	c := e.client(u.String(), pgx.QueryExecModeCacheStatement)
	tx, err := c.BeginTx(e.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	if _, err := tx.Exec(e.ctx, `SELECT count(*) FROM stripe.customers`); err != nil {
		t.Fatal(err)
	}
	var got *string
	err = tx.QueryRow(e.ctx, `INSERT INTO stripe.customers (email) VALUES ($1)
RETURNING pg_catalog.query_to_xml('SELECT v FROM public.secret', true, false, '')::text`, "p@b.co").Scan(&got)
	if got != nil && strings.Contains(*got, "topsecret") {
		t.Fatalf("RETURNING read a table the role may not read: %s", *got)
	}
	if sqlstate(err) != "42501" {
		t.Errorf("RETURNING of a table the role may not read: %v, want SQLSTATE 42501", err)
	}
}

// shadowEquals gives the env's client role a schema of its own with
// an "=" on text that is always true, first on its search_path (before
// pg_catalog, named explicitly, as any session may).
func (e *env) shadowEquals(role string) {
	e.t.Helper()
	for _, q := range []string{
		`CREATE FUNCTION evil.yes(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'`,
		`CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.yes)`,
		`SET search_path = evil, pg_catalog`,
	} {
		if _, err := e.conn.Exec(e.ctx, q); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
}

// A role granted INSERT and UPDATE on some columns only must not write
// the others through pgstripe by shadowing the operators of pgstripe's own
// privilege query on its connection.
func TestPrivilegeCheckIgnoresClientOperators(t *testing.T) {
	e := setup(t)
	id := e.one(`INSERT INTO stripe.customers (email) VALUES ('victim@b.co') RETURNING id`)
	role := e.asRole(
		`REVOKE INSERT, UPDATE, DELETE ON stripe.customers FROM $role`,
		`GRANT INSERT (email), UPDATE (name) ON stripe.customers TO $role`,
		`CREATE SCHEMA evil AUTHORIZATION $role`,
	)
	e.shadowEquals(role)
	before := e.calls()
	for _, q := range []string{
		`INSERT INTO stripe.customers (email, description) VALUES ('x@b.co', 'not allowed')`,
		`UPDATE stripe.customers SET email = 'pwned@b.co' WHERE id = '` + id + `'`,
	} {
		r := e.run(q)
		if r.err == nil || r.err.Code != "42501" {
			t.Errorf("%s with a shadowed \"=\": %+v, want 42501", q, r)
		}
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("Stripe got %d calls for writes of columns the role may not write", n)
	}
	if o := e.stripeObj("customers", id); o["email"] != "victim@b.co" {
		t.Errorf("the customer's email was changed in Stripe: %v", o["email"])
	}
}

// The statement's own expressions run in pgstripe's queries on the
// client's connection, and may change search_path on the way
// (set_config). An unqualified target found in schema stripe must stay
// that table in every query: the RETURNING run over the table is what
// checks the role's column privileges before the applied rows, read on
// pgstripe's own pool, are given to the target list as data. Here a role
// that may read a customer's id and name (and write its name) tries to
// read its email: Postgres refuses that RETURNING (42501).
func TestSearchPathChangedMidStatement(t *testing.T) {
	e := setup(t)
	id := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('victim@b.co', 'V') RETURNING id`)
	e.asRole(
		`REVOKE ALL ON stripe.customers FROM $role`,
		`GRANT SELECT (id, name, _synced_at), UPDATE (name) ON stripe.customers TO $role`,
	)
	for _, q := range []string{
		`CREATE TEMP TABLE customers (id text, name text, email text, _synced_at timestamptz)`,
		`SET search_path = stripe, pg_temp`,
		`BEGIN`,
	} {
		if _, err := e.conn.Exec(e.ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	defer e.conn.Exec(e.ctx, `ROLLBACK`)
	r := e.run(`UPDATE customers SET name = pg_catalog.set_config('search_path', 'pg_temp, stripe', false) WHERE id = '` + id + `' RETURNING email`)
	if strings.Contains(fmt.Sprint(r.rows), "victim@b.co") {
		t.Errorf("RETURNING gave a column the role may not read: %v", r.rows)
	}
	if r.err == nil || r.err.Code != "42501" {
		t.Errorf("RETURNING a column the role may not read: %+v, want 42501", r)
	}
}

// Stripe's expand puts whole objects of other types into its answer,
// which pgstripe applies to the written table and gives to RETURNING: a
// role that may write and read payment intents, and nothing else, must
// not read a customer (email, name, address) by naming its id.
func TestExpandRefused(t *testing.T) {
	e := setup(t)
	cus := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('victim@b.co', 'Victim Name') RETURNING id`)
	pi := e.one(`INSERT INTO stripe.payment_intents (amount, currency) VALUES (100, 'usd') RETURNING id`)
	e.asRole(
		`REVOKE ALL ON stripe.customers FROM $role`,
		`GRANT SELECT, INSERT, UPDATE ON stripe.payment_intents TO $role`,
	)
	if _, err := e.conn.Exec(e.ctx, `SELECT email FROM stripe.customers`); err == nil {
		t.Fatal("the role reads customers directly")
	}
	before := e.calls()
	for _, q := range []string{
		`INSERT INTO stripe.payment_intents (amount, currency, customer, _params) VALUES (100, 'usd', '` + cus + `', '{"expand": ["customer"]}') RETURNING _raw::text`,
		`UPDATE stripe.payment_intents SET customer = '` + cus + `', _params = '{"expand": ["customer"]}' WHERE id = '` + pi + `' RETURNING _raw::text`,
		`UPDATE stripe.payment_intents SET _params = '{"expand": ["customer", "latest_charge"]}', status = 'canceled' WHERE id = '` + pi + `' RETURNING _raw::text`,
	} {
		r := e.run(q)
		if strings.Contains(fmt.Sprint(r.rows), "victim@b.co") {
			t.Errorf("%s: RETURNING showed the customer: %v", q, r.rows)
		}
		if r.err == nil || r.err.Code != "0A000" {
			t.Errorf("%s: %+v, want 0A000", q, r)
		}
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("Stripe got %d calls", n)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.payment_intents WHERE _raw::text LIKE '%victim@b.co%'`); got != "0" {
		t.Errorf("%s payment intents hold the customer's email", got)
	}
}

// The same two attacks through the proxy, as a pgx client would make
// them, in each protocol.
func TestAttacksThroughProxy(t *testing.T) {
	e := setup(t)
	id := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('victim@b.co', 'V') RETURNING id`)
	role := e.asRole(
		`REVOKE ALL ON stripe.customers FROM $role`,
		`GRANT SELECT (id, name, _synced_at), INSERT (email), UPDATE (name) ON stripe.customers TO $role`,
		`CREATE SCHEMA evil AUTHORIZATION $role`,
	)
	e.shadowEquals(role)
	u, _ := url.Parse(e.proxied())
	u.User = url.User(role)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u.String(), m.mode)
			before := e.calls()
			// Column grants only: shadowing "=" must not widen them.
			if _, err := c.Exec(e.ctx, `SET search_path = evil, pg_catalog`); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(e.ctx, `INSERT INTO stripe.customers (email, description) VALUES ('x@b.co', 'not allowed')`); sqlstate(err) != "42501" {
				t.Errorf("INSERT of a column the role may not write: %v, want 42501", err)
			}
			if n := e.calls() - before; n != 0 {
				t.Errorf("Stripe got %d calls", n)
			}
			// search_path changed by the statement itself: RETURNING must
			// not read a column the role may not read.
			for _, q := range []string{
				`CREATE TEMP TABLE IF NOT EXISTS customers (id text, name text, email text, _synced_at timestamptz)`,
				`SET search_path = stripe, pg_temp`,
			} {
				if _, err := c.Exec(e.ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			tx, err := c.Begin(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(e.ctx)
			var got *string
			err = tx.QueryRow(e.ctx, `UPDATE customers SET name = pg_catalog.set_config('search_path', 'pg_temp, stripe', false) WHERE id = '`+id+`' RETURNING email`).Scan(&got)
			if got != nil && strings.Contains(*got, "victim@b.co") {
				t.Errorf("RETURNING gave a column the role may not read: %s", *got)
			}
			if sqlstate(err) != "42501" {
				t.Errorf("RETURNING a column the role may not read: %v, want 42501", err)
			}
		})
	}
	if o := e.stripeObj("customers", id); o["email"] != "victim@b.co" {
		t.Errorf("the customer's email was changed in Stripe: %v", o["email"])
	}
}

// beginRepeatableRead opens a REPEATABLE READ transaction whose snapshot is taken,
// so that RETURNING is answered from the applied rows given as data
// (ReturningRows) after the run over the table.
func (e *env) beginRepeatableRead() {
	e.t.Helper()
	for _, q := range []string{`BEGIN ISOLATION LEVEL REPEATABLE READ`, `SELECT 1`} {
		if _, err := e.conn.Exec(e.ctx, q); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
	e.t.Cleanup(func() { e.conn.Exec(e.ctx, `ROLLBACK`) })
}

// RETURNING's target list is parsed twice: over the table (where Postgres
// checks the role's column privileges) and over the applied rows given as
// data. A name in it that the statement itself makes resolve differently
// the second time (set_config of search_path, or a temp table created by a
// function it calls) must not reach a column the role may not read: here
// the subquery's "email" is t's column in the first parse, and the
// target's (the victim's email) in the second.
func TestReturningReparsedNames(t *testing.T) {
	for _, how := range []struct{ name, change string }{
		{"search_path", `pg_catalog.set_config('search_path', 'evil2, stripe', false)`},
		{"temp table", `evil.shadow()`},
	} {
		t.Run(how.name, func(t *testing.T) {
			e := setup(t)
			id := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('victim@b.co', 'V') RETURNING id`)
			e.asRole(
				`REVOKE ALL ON stripe.customers FROM $role`,
				`GRANT SELECT (id, name, _synced_at), UPDATE (name) ON stripe.customers TO $role`,
				`CREATE SCHEMA evil AUTHORIZATION $role`,
				`CREATE SCHEMA evil2 AUTHORIZATION $role`,
			)
			for _, q := range []string{
				`CREATE TABLE evil.t (email text)`,
				`INSERT INTO evil.t VALUES ('decoy')`,
				`CREATE TABLE evil2.t (x int)`,
				`INSERT INTO evil2.t VALUES (1)`,
				`CREATE FUNCTION evil.shadow() RETURNS text LANGUAGE plpgsql AS $$BEGIN CREATE TEMP TABLE IF NOT EXISTS t AS SELECT 1 AS x; RETURN 'changed'; END$$`,
				`SET search_path = evil, stripe`,
			} {
				if _, err := e.conn.Exec(e.ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if _, err := e.conn.Exec(e.ctx, `SELECT email FROM stripe.customers`); err == nil {
				t.Fatal("the role reads the email directly")
			}
			e.beginRepeatableRead()
			r := e.run(`UPDATE stripe.customers SET name = 'x' WHERE id = '` + id + `' RETURNING (SELECT email FROM t LIMIT 1), name, ` + how.change)
			if strings.Contains(fmt.Sprint(r.rows), "victim@b.co") {
				t.Errorf("RETURNING gave a column the role may not read: %v", r.rows)
			}
			// What the role may read is still given.
			if r.err != nil || len(r.rows) != 1 || len(r.rows[0]) != 3 || r.rows[0][1] != "x" {
				t.Errorf("RETURNING: %+v %+v, want one row with name x", r, r.err)
			}
		})
	}
}

// RETURNING may name the target's columns qualified with its schema, as
// Prisma writes them ("stripe"."customers"."name"), and Postgres takes
// that for a target written qualified or found through search_path. When
// RETURNING is answered from the applied rows given as data (a REPEATABLE
// READ snapshot; a row the client has locked, SELECT … FOR UPDATE, as ORMs
// lock pessimistically) it must still work: the write has reached Stripe.
func TestReturningSchemaQualifiedColumns(t *testing.T) {
	e := setup(t)
	id := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('q@b.co', 'before') RETURNING id`)
	n := 0
	for _, c := range []struct{ name, begin, lock string }{
		{"repeatable read", `BEGIN ISOLATION LEVEL REPEATABLE READ`, `SELECT 1`},
		{"row locked", `BEGIN`, `SELECT id FROM stripe.customers WHERE id = '` + id + `' FOR UPDATE`},
	} {
		for _, target := range []string{`"stripe"."customers"`, `customers`} {
			t.Run(c.name+"/"+target, func(t *testing.T) {
				n++
				name := fmt.Sprintf("after%d", n)
				for _, q := range []string{`SET search_path = public, stripe`, c.begin, c.lock} {
					if _, err := e.conn.Exec(e.ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				defer e.conn.Exec(e.ctx, `ROLLBACK`)
				r := e.run(`UPDATE `+target+` SET "name" = $1 WHERE "stripe"."customers"."id" = $2 RETURNING "stripe"."customers"."id", "stripe"."customers"."name", upper("stripe"."customers"."name")`, name, id)
				if r.err != nil {
					t.Fatalf("%s: %s (%s)", r.err.Code, r.err.Message, r.err.Detail)
				}
				if len(r.rows) != 1 || strings.Join(r.rows[0], "|") != id+"|"+name+"|"+strings.ToUpper(name) {
					t.Errorf("RETURNING %v, want the updated row", r.rows)
				}
				r = e.run(`INSERT INTO `+target+` ("email") VALUES ($1) RETURNING "stripe"."customers".*`, "new@b.co")
				if r.err != nil {
					t.Fatalf("INSERT: %s: %s (%s)", r.err.Code, r.err.Message, r.err.Detail)
				}
				if len(r.rows) != 1 || !strings.Contains(strings.Join(r.rows[0], "|"), "new@b.co") {
					t.Errorf("INSERT RETURNING %v, want the new row", r.rows)
				}
			})
		}
	}
}

// A role that may UPDATE (or INSERT) a table but not SELECT a column its
// RETURNING reads is refused by Postgres before anything changes
// (ExecCheckPermissions at the statement's start): pgstripe must refuse
// it before any Stripe call, with Postgres's own error, not call Stripe
// and fail in RETURNING afterwards.
func TestReturningPrivilegesBeforeStripe(t *testing.T) {
	e := setup(t)
	id := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('victim@b.co', 'V') RETURNING id`)
	e.asRole(
		`REVOKE ALL ON stripe.customers FROM $role`,
		`GRANT SELECT (id, name, _synced_at), INSERT (email, name), UPDATE (name) ON stripe.customers TO $role`,
	)
	upd := `UPDATE stripe.customers SET name = 'x' WHERE id = '` + id + `' RETURNING `
	ins := `INSERT INTO stripe.customers (email) VALUES ('new@b.co') RETURNING `
	refused := []string{
		upd + `email`,
		upd + `id, email`,
		upd + `*`,
		upd + `customers`,
		upd + `customers.*`,
		upd + `stripe.customers.email`,
		upd + `row_to_json(customers)::text`,
		upd + `lower(email)`,
		upd + `name || email`,
		upd + `(SELECT customers.email)`,
		upd + `(SELECT v FROM public.secret)`,
		`UPDATE stripe.customers AS c SET name = 'x' WHERE id = '` + id + `' RETURNING c.email`,
		`UPDATE stripe.customers AS c SET name = 'x' WHERE id = '` + id + `' RETURNING c`,
		ins + `email`,
		ins + `*`,
		ins + `(SELECT v FROM public.secret)`,
	}
	for i, q := range refused {
		// A new name each time, so that each one would call Stripe.
		q = strings.Replace(q, `name = 'x'`, fmt.Sprintf(`name = 'no%d'`, i), 1)
		// What Postgres itself says to the same statement.
		_, direct := e.conn.PgConn().Exec(e.ctx, `BEGIN; `+q+`; ROLLBACK`).ReadAll()
		e.conn.PgConn().Exec(e.ctx, `ROLLBACK`).ReadAll()
		if sqlstate(direct) != "42501" {
			t.Fatalf("directly, %s: %v, want 42501", q, direct)
		}
		before := e.calls()
		r := e.run(q)
		var pe *pgconn.PgError
		errors.As(direct, &pe)
		if r.err == nil || r.err.Code != "42501" || r.err.Message != pe.Message {
			t.Errorf("%s: %+v, want 42501 as Postgres gives it: %v", q, r.err, direct)
		}
		if r.err != nil && strings.Contains(r.err.Detail, "only RETURNING failed") {
			t.Errorf("%s: refused after reaching Stripe: %s", q, r.err.Detail)
		}
		if n := e.calls() - before; n != 0 {
			t.Errorf("%s: Stripe got %d calls", q, n)
		}
	}
	if o := e.stripeObj("customers", id); o["name"] != "V" {
		t.Errorf("the customer's name was changed in Stripe: %v", o["name"])
	}
	// What the role may read still works, functions included.
	for i, q := range []string{
		upd + `id, name`,
		upd + `customers.name, 1 AS one`,
		upd + `upper(name) AS up`,
		upd + `(SELECT customers.name)`,
		ins + `id`,
	} {
		// A new name each time, or there is nothing to call Stripe for.
		q = strings.Replace(q, `name = 'x'`, fmt.Sprintf(`name = 'ok%d'`, i), 1)
		before := e.calls()
		if r := e.run(q); r.err != nil || len(r.rows) != 1 {
			t.Errorf("%s: %+v", q, r)
		} else if e.calls() == before {
			t.Errorf("%s: no Stripe call", q)
		}
	}
}

// The same through the proxy, in each protocol: the privilege query runs
// in the client's implicit transaction there.
func TestReturningPrivilegesThroughProxy(t *testing.T) {
	e := setup(t)
	id := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('victim@b.co', 'V') RETURNING id`)
	role := e.asRole(
		`REVOKE ALL ON stripe.customers FROM $role`,
		`GRANT SELECT (id, name, _synced_at), UPDATE (name) ON stripe.customers TO $role`,
	)
	u, _ := url.Parse(e.proxied())
	u.User = url.User(role)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u.String(), m.mode)
			before := e.calls()
			var got *string
			err := c.QueryRow(e.ctx, `UPDATE stripe.customers SET name = $1 WHERE id = $2 RETURNING email`, "x", id).Scan(&got)
			if sqlstate(err) != "42501" || !strings.Contains(err.Error(), "permission denied for table customers") {
				t.Errorf("RETURNING a column the role may not read: %v, want 42501", err)
			}
			if n := e.calls() - before; n != 0 {
				t.Errorf("Stripe got %d calls", n)
			}
			var name string
			if err := c.QueryRow(e.ctx, `UPDATE stripe.customers SET name = $1 WHERE id = $2 RETURNING name`, m.name, id).Scan(&name); err != nil || name != m.name {
				t.Errorf("RETURNING a column the role may read: %q %v", name, err)
			}
		})
	}
}

// WHERE reading a column the role may not SELECT: Postgres refuses the
// UPDATE; pgstripe evaluates WHERE on the client's connection, so
// Postgres refuses it there, before any Stripe call. (Not changed here:
// kept, and checked.)
func TestWhereColumnPrivilege(t *testing.T) {
	e := setup(t)
	id := e.one(`INSERT INTO stripe.customers (email, name) VALUES ('victim@b.co', 'V') RETURNING id`)
	e.asRole(
		`REVOKE ALL ON stripe.customers FROM $role`,
		`GRANT SELECT (id, name, _synced_at), UPDATE (name), DELETE ON stripe.customers TO $role`,
	)
	before := e.calls()
	for _, q := range []string{
		`UPDATE stripe.customers SET name = 'x' WHERE email = 'victim@b.co'`,
		`UPDATE stripe.customers SET name = email WHERE id = '` + id + `'`,
		`DELETE FROM stripe.customers WHERE email LIKE 'victim%'`,
	} {
		if r := e.fails("42501", q); !strings.Contains(r.err.Message, "permission denied for table customers") {
			t.Errorf("%s: %s", q, r.err.Message)
		}
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("Stripe got %d calls", n)
	}
	if o := e.stripeObj("customers", id); o == nil || o["name"] != "V" {
		t.Errorf("the customer was changed in Stripe: %v", o)
	}
}
