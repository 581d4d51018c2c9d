package writethrough

import (
	"strings"
	"testing"
)

// newCustomers creates customers through the write-through and returns
// their ids, in order.
func (e *env) newCustomers(emails ...string) []string {
	e.t.Helper()
	var ids []string
	for _, m := range emails {
		r := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ($1, 'Old') RETURNING id`, m)
		ids = append(ids, r.rows[0][0])
	}
	return ids
}

// TestWithUpdate: the statement Drizzle's db.with(cte).update(…)
// sends (a read-only WITH on the write, its parameters, RETURNING), with
// Postgres's choice of rows and values.
func TestWithUpdate(t *testing.T) {
	e := setup(t)
	ids := e.newCustomers("w1@b.co", "w2@b.co", "other@b.co")
	if _, err := e.conn.Exec(e.ctx, `CREATE TABLE public.tiers (email text, tier text); INSERT INTO public.tiers VALUES ('w1@b.co', 'gold'), ('w2@b.co', 'gold')`); err != nil {
		t.Fatal(err)
	}
	before := e.calls()
	r := e.ok(`WITH "sq" AS (SELECT "id" FROM "stripe"."customers" WHERE "email" LIKE $1), "g" AS (SELECT "email" FROM "public"."tiers" WHERE "tier" = $3) UPDATE "stripe"."customers" SET "name" = $2 WHERE "stripe"."customers"."id" IN (SELECT "id" FROM "sq") RETURNING "id", "name", (SELECT count(*) FROM "g") AS "n"`,
		"w%", "New", "gold")
	if r.tag != "UPDATE 2" || strings.Join(r.fields, ",") != "id,name,n" || len(r.rows) != 2 {
		t.Fatalf("reply %+v", r)
	}
	got := map[string]bool{}
	for _, row := range r.rows {
		if row[1] != "New" || row[2] != "2" {
			t.Fatalf("row %v", row)
		}
		got[row[0]] = true
	}
	if !got[ids[0]] || !got[ids[1]] {
		t.Fatalf("rows %v, want %v", r.rows, ids[:2])
	}
	if n := e.calls() - before; n != 2 {
		t.Fatalf("%d Stripe calls, want 2", n)
	}
	for i, want := range []string{"New", "New", "Old"} {
		if got := e.stripeObj("customers", ids[i])["name"]; got != want {
			t.Fatalf("%s in Stripe: name %v, want %s", ids[i], got, want)
		}
		if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, ids[i]); got != want {
			t.Fatalf("%s locally: name %v, want %s", ids[i], got, want)
		}
	}

	// RECURSIVE and the materialization hints; WITH queries reading a
	// table of the client's own.
	if _, err := e.conn.Exec(e.ctx, `CREATE TABLE public.vip (email text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Exec(e.ctx, `INSERT INTO public.vip VALUES ('other@b.co')`); err != nil {
		t.Fatal(err)
	}
	r = e.ok(`WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3),
  v AS MATERIALIZED (SELECT email FROM public.vip),
  k AS NOT MATERIALIZED (SELECT 'depth' AS key)
UPDATE stripe.customers SET metadata = jsonb_build_object((SELECT key FROM k), (SELECT max(n) FROM r))
WHERE email IN (SELECT email FROM v) RETURNING metadata->>'depth'`)
	if r.tag != "UPDATE 1" || len(r.rows) != 1 || r.rows[0][0] != "3" {
		t.Fatalf("reply %+v", r)
	}
	if md := e.stripeObj("customers", ids[2])["metadata"].(map[string]any); md["depth"] != "3" {
		t.Fatalf("metadata in Stripe %v", md)
	}
}

// TestWithInsertDelete: Kysely's .with(…).insertInto(…) and
// .deleteFrom(…); RETURNING reads the WITH query through a subquery.
func TestWithInsertDelete(t *testing.T) {
	e := setup(t)
	r := e.ok(`WITH "v" AS (SELECT $1::text AS email, $2::text AS name) INSERT INTO "stripe"."customers" ("email", "name") VALUES ((SELECT email FROM v), (SELECT name FROM v)) RETURNING "id", "email", (SELECT name FROM v) AS given`,
		"ins@b.co", "Ins")
	if r.tag != "INSERT 0 1" || strings.Join(r.fields, ",") != "id,email,given" || r.rows[0][1] != "ins@b.co" || r.rows[0][2] != "Ins" {
		t.Fatalf("reply %+v", r)
	}
	id := r.rows[0][0]
	if obj := e.stripeObj("customers", id); obj["email"] != "ins@b.co" || obj["name"] != "Ins" {
		t.Fatalf("stripe object %v", obj)
	}

	ids := e.newCustomers("gone1@b.co", "gone2@b.co")
	// DELETE's RETURNING sees the WITH query as it was before the delete,
	// as in Postgres, also when it reads the stripe table.
	r = e.ok(`WITH old AS (SELECT id FROM stripe.customers WHERE email LIKE 'gone%') DELETE FROM stripe.customers WHERE id IN (SELECT id FROM old) RETURNING id, (SELECT count(*) FROM old) AS n`)
	if r.tag != "DELETE 2" || len(r.rows) != 2 || r.rows[0][1] != "2" || r.rows[1][1] != "2" {
		t.Fatalf("reply %+v", r)
	}
	for _, id := range ids {
		if e.stripeObj("customers", id) != nil {
			t.Fatalf("%s still in Stripe", id)
		}
		if n := e.local(`SELECT count(*)::text FROM stripe.customers WHERE id = $1`, id); n != "0" {
			t.Fatalf("%s still local", id)
		}
	}
	if e.local(`SELECT count(*)::text FROM stripe.customers WHERE id = $1`, id) != "1" {
		t.Fatal("the inserted customer was deleted too")
	}
}

// TestWithShadowsTarget: a WITH query named like the target. The
// target of a write is always the table; in WHERE and RETURNING the name
// is the WITH query's.
func TestWithShadowsTarget(t *testing.T) {
	e := setup(t)
	ids := e.newCustomers("s1@b.co", "s2@b.co")
	if _, err := e.conn.Exec(e.ctx, `SET search_path = stripe, public`); err != nil {
		t.Fatal(err)
	}
	r := e.ok(`WITH customers AS (SELECT $1::text AS id) UPDATE customers SET name = 'Shadow' WHERE id IN (SELECT id FROM customers) RETURNING id, name, (SELECT count(*) FROM customers) AS n`, ids[1])
	if r.tag != "UPDATE 1" || len(r.rows) != 1 || r.rows[0][0] != ids[1] || r.rows[0][1] != "Shadow" || r.rows[0][2] != "1" {
		t.Fatalf("reply %+v", r)
	}
	if e.stripeObj("customers", ids[0])["name"] != "Old" || e.stripeObj("customers", ids[1])["name"] != "Shadow" {
		t.Fatal("wrong object updated")
	}
	r = e.ok(`WITH customers AS (SELECT $1::text AS id) DELETE FROM stripe.customers WHERE id IN (SELECT id FROM customers) RETURNING id`, ids[0])
	if r.tag != "DELETE 1" || r.rows[0][0] != ids[0] {
		t.Fatalf("reply %+v", r)
	}
	if e.stripeObj("customers", ids[1]) == nil {
		t.Fatal("wrong object deleted")
	}
}

// TestWithSetEvaluatedOnce: a volatile WITH query that only SET
// reads runs once, as in Postgres (Match does not refer to it).
func TestWithSetEvaluatedOnce(t *testing.T) {
	e := setup(t)
	ids := e.newCustomers("seq@b.co")
	if _, err := e.conn.Exec(e.ctx, `CREATE SEQUENCE public.s`); err != nil {
		t.Fatal(err)
	}
	e.ok(`WITH n AS (SELECT nextval('public.s') AS v) UPDATE stripe.customers SET metadata = jsonb_build_object('n', (SELECT v FROM n)) WHERE id = $1`, ids[0])
	if md := e.stripeObj("customers", ids[0])["metadata"].(map[string]any); md["n"] != "1" {
		t.Fatalf("metadata %v", md)
	}
	if got := e.local(`SELECT last_value::text FROM public.s`); got != "1" {
		t.Fatalf("sequence at %s, want 1", got)
	}
}

// TestWithRefused: a WITH query that writes (at any depth), row
// locks in WITH, and RETURNING of an INSERT/UPDATE reading a WITH query
// over stripe tables are refused before anything runs.
func TestWithRefused(t *testing.T) {
	e := setup(t)
	ids := e.newCustomers("r@b.co")
	if _, err := e.conn.Exec(e.ctx, `CREATE TABLE public.t (id text); INSERT INTO public.t VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ sql, msg string }{
		{`WITH x AS (DELETE FROM public.t RETURNING id) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM x)`,
			"UPDATE of stripe.customers with a data-modifying WITH query is not supported"},
		{`WITH x AS (DELETE FROM public.t RETURNING id) INSERT INTO stripe.customers (email) VALUES ('a')`,
			"INSERT INTO stripe.customers with a data-modifying WITH query is not supported"},
		{`WITH x AS (DELETE FROM public.t RETURNING id) DELETE FROM stripe.customers WHERE id IN (SELECT id FROM x)`,
			"DELETE from stripe.customers with a data-modifying WITH query is not supported"},
		{`WITH a AS (WITH b AS (DELETE FROM public.t RETURNING id) SELECT id FROM b) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM a)`,
			"UPDATE of stripe.customers with a data-modifying WITH query is not supported"},
		{`WITH x AS (DELETE FROM stripe.products RETURNING id) DELETE FROM stripe.customers WHERE id IN (SELECT id FROM x)`,
			"a WITH query that writes stripe.products is not supported"},
		{`WITH a AS (SELECT id FROM stripe.customers FOR UPDATE) UPDATE stripe.customers SET name = 'x' WHERE id IN (SELECT id FROM a)`,
			"UPDATE of stripe.customers with FOR UPDATE/FOR SHARE in its WITH clause is not supported"},
		{`WITH c AS (SELECT id, name FROM stripe.customers) UPDATE stripe.customers SET name = 'x' WHERE id = '` + ids[0] + `' RETURNING (SELECT c.name FROM c WHERE c.id = customers.id)`,
			`UPDATE of stripe.customers with RETURNING that reads WITH query "c" is not supported`},
	} {
		before := e.calls()
		r := e.fails("0A000", c.sql)
		if !strings.HasPrefix(r.err.Message, c.msg) {
			t.Errorf("%s: message %q, want %q", c.sql, r.err.Message, c.msg)
		}
		if e.calls() != before {
			t.Errorf("%s: Stripe was called", c.sql)
		}
	}
	if got := e.local(`SELECT count(*)::text FROM public.t`); got != "1" {
		t.Fatalf("a refused statement's WITH query ran: public.t has %s rows", got)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, ids[0]); got != "Old" {
		t.Fatalf("local name %q", got)
	}
}

// TestWithThroughProxy: ORMs send these with the extended protocol
// (Parse/Describe upstream, Execute intercepted); the simple protocol too.
func TestWithThroughProxy(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	if _, err := e.conn.Exec(e.ctx, `CREATE TABLE public.wlog (n int)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u, m.mode)
			prefix := m.name + "-"
			var id, email, given string
			err := c.QueryRow(e.ctx, `WITH "v" AS (SELECT $1::text AS email) INSERT INTO "stripe"."customers" ("email", "name") VALUES ((SELECT email FROM v), $2) RETURNING "id", "email", (SELECT email FROM v) AS given`,
				prefix+"a@b.co", "A").Scan(&id, &email, &given)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(id, "cus_") || email != prefix+"a@b.co" || given != email {
				t.Fatalf("insert returning %q %q %q", id, email, given)
			}
			rows, err := c.Query(e.ctx, `WITH "sq" AS (SELECT "id" FROM "stripe"."customers" WHERE "email" = $1), "k" AS (SELECT $3::bigint AS n) UPDATE "stripe"."customers" SET "name" = $2 WHERE "stripe"."customers"."id" IN (SELECT "id" FROM "sq") RETURNING "id", "name", (SELECT n FROM k) AS n`,
				email, "B", int64(7))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range rows.FieldDescriptions() {
				names = append(names, f.Name)
			}
			var gotID, gotName string
			var n int64
			count := 0
			for rows.Next() {
				if err := rows.Scan(&gotID, &gotName, &n); err != nil {
					t.Fatal(err)
				}
				count++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if strings.Join(names, ",") != "id,name,n" || count != 1 || gotID != id || gotName != "B" || n != 7 || rows.CommandTag().String() != "UPDATE 1" {
				t.Fatalf("update returning %v %d %q %q %d %q", names, count, gotID, gotName, n, rows.CommandTag())
			}
			if e.stripeObj("customers", id)["name"] != "B" {
				t.Fatalf("stripe object %v", e.stripeObj("customers", id))
			}
			tag, err := c.Exec(e.ctx, `WITH x AS (SELECT $1::text AS id) DELETE FROM stripe.customers WHERE id IN (SELECT id FROM x)`, id)
			if err != nil || tag.String() != "DELETE 1" {
				t.Fatalf("delete %q %v", tag, err)
			}
			_, err = c.Exec(e.ctx, `WITH x AS (INSERT INTO public.wlog VALUES (1) RETURNING 1) UPDATE stripe.customers SET name = $1 WHERE false`, "x")
			if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "data-modifying WITH query") {
				t.Fatalf("writable WITH: %v", err)
			}
			var rowsLogged int
			if err := c.QueryRow(e.ctx, `SELECT count(*) FROM public.wlog`).Scan(&rowsLogged); err != nil || rowsLogged != 0 {
				t.Fatalf("after the refused write: %d rows in public.wlog, %v", rowsLogged, err)
			}
		})
	}
}
