package writethrough

import (
	"fmt"
	"net/http"
	url2 "net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/emulator"
)

// stripeWith lists the customers whose field in Stripe has the value v.
func (e *env) stripeWith(ids []string, field, v string) []string {
	e.t.Helper()
	var out []string
	for _, id := range ids {
		if o := e.stripeObj("customers", id); o != nil && fmt.Sprint(o[field]) == v {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// localWith lists the local customers whose column has the value v.
func (e *env) localWith(col, v string) []string {
	e.t.Helper()
	got := e.local(`SELECT coalesce(string_agg(id, ',' ORDER BY id), '') FROM stripe.customers WHERE `+col+` = $1`, v)
	if got == "" {
		return nil
	}
	return strings.Split(got, ",")
}

func column(rows [][]string, i int) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[i])
	}
	sort.Strings(out)
	return out
}

// TestVolatileWhereEvaluatedOnce: Postgres evaluates an UPDATE's
// WHERE once per row it scans. With nextval() in it, the first two rows
// scanned match; the sequence ends at the number of rows. WHERE was
// evaluated once to find the objects to lock and again with SET, so the
// second run saw 5, 6, … and nothing matched: UPDATE 0, nothing changed.
func TestVolatileWhereEvaluatedOnce(t *testing.T) {
	e := setup(t)
	ids := e.newCustomers("v1@b.co", "v2@b.co", "v3@b.co", "v4@b.co")
	if _, err := e.conn.Exec(e.ctx, `CREATE SEQUENCE public.s`); err != nil {
		t.Fatal(err)
	}
	r := e.ok(`UPDATE stripe.customers SET description = 'picked' WHERE nextval('public.s') <= 2 RETURNING id`)
	if r.tag != "UPDATE 2" || len(r.rows) != 2 {
		t.Fatalf("tag %q, %d rows returned; want UPDATE 2 and 2 rows", r.tag, len(r.rows))
	}
	returned := column(r.rows, 0)
	if s := e.stripeWith(ids, "description", "picked"); strings.Join(s, ",") != strings.Join(returned, ",") {
		t.Fatalf("changed in Stripe %v, returned %v", s, returned)
	}
	if l := e.localWith("description", "picked"); strings.Join(l, ",") != strings.Join(returned, ",") {
		t.Fatalf("changed locally %v, returned %v", l, returned)
	}
	if got := e.local(`SELECT last_value::text FROM public.s`); got != "4" {
		t.Fatalf("sequence at %s, want 4 (WHERE once per row)", got)
	}

	// DELETE likewise.
	if _, err := e.conn.Exec(e.ctx, `SELECT setval('public.s', 1, false)`); err != nil {
		t.Fatal(err)
	}
	r = e.ok(`DELETE FROM stripe.customers WHERE nextval('public.s') <= 1 RETURNING id`)
	if r.tag != "DELETE 1" || len(r.rows) != 1 || e.stripeObj("customers", r.rows[0][0]) != nil {
		t.Fatalf("delete: %+v", r)
	}
	if got := e.local(`SELECT last_value::text FROM public.s`); got != "4" {
		t.Fatalf("after DELETE: sequence at %s, want 4", got)
	}
}

// TestVolatileWhereAgrees: with random() in WHERE or in a subquery
// of it, what Stripe changed, what the table holds, what RETURNING gives
// and the command tag are the same rows, and a LIMIT 2 subquery picks 2.
func TestVolatileWhereAgrees(t *testing.T) {
	e := setup(t)
	var emails []string
	for i := range 12 {
		emails = append(emails, fmt.Sprintf("r%d@b.co", i))
	}
	ids := e.newCustomers(emails...)
	for i, where := range []string{
		`random() < 0.5`,
		`id IN (SELECT id FROM stripe.customers ORDER BY random() LIMIT 2)`,
		`clock_timestamp() < now() + interval '1 hour' AND random() < 0.5`,
	} {
		v := fmt.Sprintf("r%d", i)
		before := e.calls()
		r := e.ok(`UPDATE stripe.customers SET description = '` + v + `' WHERE ` + where + ` RETURNING id`)
		returned := column(r.rows, 0)
		if r.tag != fmt.Sprintf("UPDATE %d", len(returned)) {
			t.Fatalf("%s: tag %q, %d rows returned", where, r.tag, len(returned))
		}
		if i == 1 && len(returned) != 2 {
			t.Fatalf("%s: %d rows, want 2", where, len(returned))
		}
		if n := e.calls() - before; n != int64(len(returned)) {
			t.Fatalf("%s: %d Stripe calls for %d rows", where, n, len(returned))
		}
		if s := e.stripeWith(ids, "description", v); strings.Join(s, ",") != strings.Join(returned, ",") {
			t.Fatalf("%s: changed in Stripe %v, returned %v", where, s, returned)
		}
		if l := e.localWith("description", v); strings.Join(l, ",") != strings.Join(returned, ",") {
			t.Fatalf("%s: changed locally %v, returned %v", where, l, returned)
		}
	}
}

// TestVolatileWithDeleteReturning: a WITH query is evaluated once
// per statement in Postgres, so RETURNING sees the rows it picked. It was
// evaluated again for RETURNING, which then saw other rows.
func TestVolatileWithDeleteReturning(t *testing.T) {
	e := setup(t)
	var emails []string
	for i := range 12 {
		emails = append(emails, fmt.Sprintf("d%d@b.co", i))
	}
	e.newCustomers(emails...)
	for range 3 {
		r := e.ok(`WITH r AS (SELECT id FROM stripe.customers ORDER BY random() LIMIT 2) DELETE FROM stripe.customers WHERE id IN (SELECT id FROM r) RETURNING id, id IN (SELECT id FROM r) AS picked`)
		if r.tag != "DELETE 2" || len(r.rows) != 2 {
			t.Fatalf("reply %+v", r)
		}
		for _, row := range r.rows {
			if row[1] != "t" {
				t.Fatalf("RETURNING saw another evaluation of the WITH query: %v", r.rows)
			}
			if e.stripeObj("customers", row[0]) != nil {
				t.Fatalf("%s returned as deleted but still in Stripe", row[0])
			}
		}
	}
}

// TestVolatileSetAndValuesAgree: a volatile SET expression or
// VALUES item is evaluated once: Stripe, the table and RETURNING agree.
func TestVolatileSetAndValuesAgree(t *testing.T) {
	e := setup(t)
	agree := func(rows [][]string) {
		t.Helper()
		for _, row := range rows {
			o := e.stripeObj("customers", row[0])
			if o["description"] != row[1] || o["metadata"].(map[string]any)["r"] != row[2] {
				t.Fatalf("Stripe %v, returned %v", o, row)
			}
			if l := e.local(`SELECT description || ' ' || (metadata->>'r') FROM stripe.customers WHERE id = $1`, row[0]); l != row[1]+" "+row[2] {
				t.Fatalf("local %q, returned %v", l, row)
			}
		}
	}
	r := e.ok(`INSERT INTO stripe.customers (description, metadata) VALUES (gen_random_uuid()::text, jsonb_build_object('r', random()::text)), (gen_random_uuid()::text, jsonb_build_object('r', random()::text)) RETURNING id, description, metadata->>'r'`)
	if r.tag != "INSERT 0 2" || len(r.rows) != 2 {
		t.Fatalf("reply %+v", r)
	}
	agree(r.rows)
	ids := column(r.rows, 0)
	r = e.ok(`UPDATE stripe.customers SET metadata = jsonb_build_object('r', random()::text), description = clock_timestamp()::text WHERE id = ANY($1) RETURNING id, description, metadata->>'r'`, ids)
	if r.tag != "UPDATE 2" || len(r.rows) != 2 {
		t.Fatalf("reply %+v", r)
	}
	agree(r.rows)
}

// TestUpdateRechecksChangedRow: a row another session changed
// while this UPDATE waited for it is evaluated again, WHERE included, as
// Postgres's EvalPlanQual does: once the other +100 is in, the row no
// longer has balance < 100 and is left alone.
func TestUpdateRechecksChangedRow(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	a, b := e.client(u, pgx.QueryExecModeCacheStatement), e.client(u, pgx.QueryExecModeSimpleProtocol)
	var id string
	if err := a.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, balance) VALUES ('epq@b.co', 0) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	e.emu.Update(emulator.Options{RateLimit: -1, Latency: 400 * time.Millisecond})
	first := make(chan error, 1)
	go func() {
		_, err := a.Exec(e.ctx, `UPDATE stripe.customers SET balance = balance + 100 WHERE id = $1`, id)
		first <- err
	}()
	// The first UPDATE holds the object and waits for Stripe; this one
	// evaluates balance 0 < 100, then waits for the object.
	time.Sleep(150 * time.Millisecond)
	tag, err := b.Exec(e.ctx, `UPDATE stripe.customers SET balance = balance + 100 WHERE id = $1 AND balance < 100`, id)
	if err != nil || tag.String() != "UPDATE 0" {
		t.Fatalf("second UPDATE: %q %v; want UPDATE 0", tag, err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.stripeObj("customers", id)["balance"]); got != "100" {
		t.Fatalf("balance in Stripe = %s, want 100", got)
	}
}

// TestRefusalNoticeFromFlagNotText: whether a failed call may have
// taken effect travels beside the error, not in its DETAIL's text. A
// definite refusal (HTTP 400) whose DETAIL happens to carry the words of
// that clause (here in Stripe's param) has nothing for ROLLBACK to leave
// behind: no ROLLBACK notice; the DETAIL is Stripe's, unchanged. A 500
// (unknown outcome) still gets both.
func TestRefusalNoticeFromFlagNotText(t *testing.T) {
	e := setup(t)
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		switch form.Get("email") {
		case "refused@b.co":
			return stripeAnswer(w, 400, `{"error":{"type":"invalid_request_error","message":"Invalid email.","param":"`+mayHaveTakenEffect+`"}}`)
		case "unknown@b.co":
			return stripeAnswer(w, 500, `{"error":{"type":"api_error","message":"An unknown error occurred."}}`)
		}
		return false
	}
	e.fault.Store(&f)
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	r := e.fails("22023", `INSERT INTO stripe.customers (email) VALUES ('refused@b.co')`)
	if len(r.notices) != 0 {
		t.Fatalf("notices %v for a write Stripe refused outright", r.notices)
	}
	if strings.Count(r.err.Detail, mayHaveTakenEffect) != 1 || !strings.Contains(r.err.Detail, "param "+mayHaveTakenEffect) {
		t.Fatalf("detail %q", r.err.Detail)
	}
	if _, err := e.conn.Exec(e.ctx, `ROLLBACK; BEGIN`); err != nil {
		t.Fatal(err)
	}
	r = e.fails("58000", `INSERT INTO stripe.customers (email) VALUES ('unknown@b.co')`)
	if len(r.notices) != 1 || !strings.Contains(r.notices[0], "ROLLBACK cannot undo") || !strings.HasSuffix(r.err.Detail, "; "+mayHaveTakenEffect) {
		t.Fatalf("notices %v, detail %q", r.notices, r.err.Detail)
	}
	if _, err := e.conn.Exec(e.ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
}

// TestArrayForObjectParam: a jsonb array for a Stripe parameter that
// is an object (metadata) went out as metadata[0]=…, which Stripe reads as
// an object keyed "0": the statement wrote an array, Stripe and the table
// got {"0": …} (on UPDATE, merged into the existing metadata). Refused
// before any call instead, as a value the column can't take.
func TestArrayForObjectParam(t *testing.T) {
	e := setup(t)
	id := e.newCustomers("arr@b.co")[0]
	before := e.calls()
	e.fails("22023", `INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', '["x", "y"]')`)
	e.fails("22023", `UPDATE stripe.customers SET metadata = '["x"]' WHERE id = $1`, id)
	e.fails("22023", `UPDATE stripe.customers SET address = '[{"city": "Paris"}]' WHERE id = $1`, id)
	if n := e.calls() - before; n != 0 {
		t.Fatalf("%d Stripe calls", n)
	}
	if md := e.stripeObj("customers", id)["metadata"].(map[string]any); len(md) != 0 {
		t.Fatalf("metadata in Stripe %v", md)
	}
	// Arrays where Stripe takes arrays still go.
	r := e.ok(`UPDATE stripe.customers SET preferred_locales = '["en", "fr"]' WHERE id = $1 RETURNING preferred_locales`, id)
	if r.tag != "UPDATE 1" || r.rows[0][0] != `["en", "fr"]` {
		t.Fatalf("reply %+v", r)
	}
}

// TestDeleteReturningFormats: DELETE … RETURNING is evaluated with
// WHERE in one query, whose first column is ours: the client's result
// formats (binary per column, as pgx asks) apply to its own columns, and
// no rows still describe them.
func TestDeleteReturningFormats(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u, m.mode)
			var id string
			if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, balance) VALUES ($1, 42) RETURNING id`, m.name+"@b.co").Scan(&id); err != nil {
				t.Fatal(err)
			}
			var gotID, email string
			var balance int64
			var created time.Time
			var deleted bool
			err := c.QueryRow(e.ctx, `DELETE FROM stripe.customers WHERE id = $1 RETURNING id, balance, created, email, true`, id).Scan(&gotID, &balance, &created, &email, &deleted)
			if err != nil || gotID != id || balance != 42 || created.IsZero() || email != m.name+"@b.co" || !deleted {
				t.Fatalf("%v: %q %d %v %q %v", err, gotID, balance, created, email, deleted)
			}
			rows, err := c.Query(e.ctx, `DELETE FROM stripe.customers WHERE id = $1 RETURNING id, balance`, id)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range rows.FieldDescriptions() {
				names = append(names, f.Name)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil || n != 0 || strings.Join(names, ",") != "id,balance" || rows.CommandTag().String() != "DELETE 0" {
				t.Fatalf("%v: %d rows, fields %v, tag %q", err, n, names, rows.CommandTag())
			}
		})
	}
}

// TestVolatileWithReturning: RETURNING of an INSERT or UPDATE that
// reads a WITH query sees the rows the statement's values saw: Postgres
// evaluates a WITH query once per statement. RETURNING ran it again.
func TestVolatileWithReturning(t *testing.T) {
	e := setup(t)
	id := e.newCustomers("wr@b.co")[0]
	r := e.ok(`WITH r AS (SELECT gen_random_uuid()::text AS u) UPDATE stripe.customers SET description = (SELECT u FROM r) WHERE id = $1 RETURNING description, description = (SELECT u FROM r)`, id)
	if r.tag != "UPDATE 1" || len(r.rows) != 1 || r.rows[0][1] != "t" || e.stripeObj("customers", id)["description"] != r.rows[0][0] {
		t.Fatalf("update: %+v", r)
	}
	r = e.ok(`WITH r AS (SELECT gen_random_uuid()::text AS u) INSERT INTO stripe.customers (description) VALUES ((SELECT u FROM r)), ((SELECT u FROM r)) RETURNING id, description, description = (SELECT u FROM r)`)
	if r.tag != "INSERT 0 2" || len(r.rows) != 2 || r.rows[0][2] != "t" || r.rows[1][2] != "t" || r.rows[0][1] != r.rows[1][1] {
		t.Fatalf("insert: %+v", r)
	}

	// A chain (b reads a; SET reads a, RETURNING b), types that must come
	// back as they were, NULLs, quotes, an empty WITH query, a sequence
	// that must advance once.
	if _, err := e.conn.Exec(e.ctx, `CREATE SEQUENCE public.ws`); err != nil {
		t.Fatal(err)
	}
	r = e.ok(`WITH a AS (SELECT nextval('public.ws') AS n, 12.50::numeric(10,2) AS amt, now() AS at, NULL::text AS z, 'q"u,o{t}e' AS s, '{"k": [1]}'::jsonb AS j, ARRAY[1,2] AS arr),
b(n2, amt2, at2, z2, s2, j2, arr2) AS (SELECT * FROM a), e AS (SELECT 1 AS one WHERE false)
UPDATE stripe.customers SET description = (SELECT n::text FROM a) WHERE id = $1
RETURNING description = (SELECT n2::text FROM b), (SELECT amt2 FROM b), (SELECT pg_typeof(at2)::text = 'timestamp with time zone' AND at2 IS NOT NULL FROM b), (SELECT z2 IS NULL FROM b), (SELECT s2 FROM b), (SELECT j2 FROM b), (SELECT arr2 FROM b), (SELECT count(*) FROM e)`, id)
	want := []string{"t", "12.50", "t", "t", `q"u,o{t}e`, `{"k": [1]}`, "{1,2}", "0"}
	if len(r.rows) != 1 || strings.Join(r.rows[0], "|") != strings.Join(want, "|") {
		t.Fatalf("chain: %+v, want %v", r.rows, want)
	}
	if got := e.local(`SELECT last_value::text FROM public.ws`); got != "1" {
		t.Fatalf("sequence at %s, want 1", got)
	}

	// A column of an anonymous record type can't be given back as data:
	// that WITH query stays as written; the statement still works.
	r = e.ok(`WITH rr AS (SELECT ROW(1, 'a') AS rec, 2 AS n) UPDATE stripe.customers SET description = 'rec' WHERE id = $1 RETURNING (SELECT rec FROM rr), (SELECT n FROM rr)`, id)
	if r.tag != "UPDATE 1" || len(r.rows) != 1 || r.rows[0][0] != "(1,a)" || r.rows[0][1] != "2" {
		t.Fatalf("record: %+v", r)
	}
}
