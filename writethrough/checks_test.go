package writethrough

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestReturningErrorBeforeStripe: in the simple protocol Postgres has
// not parsed the statement before we run it, so a RETURNING that Postgres
// refuses (a typo'd column) must be refused before Stripe is called, as
// Postgres would refuse the whole statement; otherwise the object is made
// (or deleted) in Stripe while the client is told the statement failed.
func TestReturningErrorBeforeStripe(t *testing.T) {
	e := setup(t)
	before := e.calls()
	e.fails("42703", `INSERT INTO stripe.customers (email) VALUES ('typo@b.co') RETURNING idd`)
	if n := len(e.emu.Objects("customers")); n != 0 || e.calls() != before {
		t.Fatalf("Stripe was called: %d customers, %d calls", n, e.calls()-before)
	}
	id := e.ok(`INSERT INTO stripe.customers (email) VALUES ('keep@b.co') RETURNING id`).rows[0][0]
	before = e.calls()
	e.fails("42703", `DELETE FROM stripe.customers WHERE id = '`+id+`' RETURNING nope`)
	if e.stripeObj("customers", id) == nil || e.calls() != before {
		t.Fatalf("customer deleted in Stripe by a statement that failed (%d calls)", e.calls()-before)
	}
	e.fails("42883", `UPDATE stripe.customers SET name = 'n' WHERE id = '`+id+`' RETURNING created + 1`)
	if e.stripeObj("customers", id)["name"] == "n" {
		t.Fatal("update reached Stripe for a statement that failed")
	}
}

// TestMissingParameterSimpleProtocol: a $n the client gave no value
// for is an error in Postgres (42P02), never NULL: otherwise SET metadata = $1
// typed in psql erases the customer's metadata in Stripe.
func TestMissingParameterSimpleProtocol(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email, metadata) VALUES ('p@b.co', '{"keep":"me"}') RETURNING id`).rows[0][0]
	before := e.calls()
	e.fails("42P02", `UPDATE stripe.customers SET metadata = $1 WHERE id = '`+id+`'`)
	e.fails("42P02", `INSERT INTO stripe.customers (email) VALUES ($1)`)
	if e.calls() != before {
		t.Fatalf("Stripe called %d times", e.calls()-before)
	}
	if got := e.stripeObj("customers", id)["metadata"].(map[string]any)["keep"]; got != "me" {
		t.Fatalf("metadata in Stripe is %v", e.stripeObj("customers", id)["metadata"])
	}
}

// TestClearNestedArray: emptying an array inside an object column
// (invoice_settings.custom_fields) must reach Stripe as an unset, not be
// dropped (which made the UPDATE a silent no-op).
func TestClearNestedArray(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email, invoice_settings) VALUES ('a@b.co', '{"custom_fields":[{"name":"PO","value":"1"}]}') RETURNING id`).rows[0][0]
	if got := e.local(`SELECT jsonb_array_length(invoice_settings->'custom_fields')::text FROM stripe.customers WHERE id = $1`, id); got != "1" {
		t.Fatalf("custom_fields after insert: %s", got)
	}
	r := e.ok(`UPDATE stripe.customers SET invoice_settings = jsonb_set(invoice_settings, '{custom_fields}', '[]') WHERE id = $1`, id)
	if r.tag != "UPDATE 1" {
		t.Fatalf("tag %q", r.tag)
	}
	is := e.stripeObj("customers", id)["invoice_settings"].(map[string]any)
	if cf, _ := is["custom_fields"].([]any); len(cf) != 0 {
		t.Fatalf("custom_fields in Stripe still %v", is["custom_fields"])
	}
}

// TestCopyToOfWriteThroughProxy: COPY (DELETE … RETURNING …) TO
// STDOUT on a stripe table is refused before anything runs (it used to
// pass through and delete local rows only); on the client's own table it
// runs untouched.
func TestCopyToOfWriteThroughProxy(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email) VALUES ('copy@b.co') RETURNING id`).rows[0][0]
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE public.customers (id text, email text); INSERT INTO public.customers VALUES ('mine', 'm@b.co')`); err != nil {
		t.Fatal(err)
	}
	c := e.client(e.proxied(), pgx.QueryExecModeCacheStatement)
	pg := c.PgConn()
	before := e.calls()
	var out bytes.Buffer
	_, err := pg.CopyTo(e.ctx, &out, `COPY (DELETE FROM stripe.customers WHERE id = '`+id+`' RETURNING id) TO STDOUT`)
	if sqlstate(err) != "0A000" {
		t.Fatalf("COPY (DELETE …) TO: %v", err)
	}
	_, err = pg.Exec(e.ctx, `CREATE TABLE gone AS WITH d AS (DELETE FROM stripe.customers WHERE id = '`+id+`' RETURNING id) SELECT id FROM d`).ReadAll()
	if sqlstate(err) != "0A000" {
		t.Fatalf("CREATE TABLE AS WITH DELETE: %v", err)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE id = $1`, id); got != "1" {
		t.Fatalf("local row deleted without Stripe")
	}
	out.Reset()
	tag, err := pg.CopyTo(e.ctx, &out, `COPY (DELETE FROM customers RETURNING id) TO STDOUT`)
	if err != nil || tag.RowsAffected() != 1 || out.String() != "mine\n" {
		t.Fatalf("COPY (DELETE FROM public.customers …): %v %v %q", tag, err, out.String())
	}
	if e.calls() != before {
		t.Fatalf("%d Stripe calls", e.calls()-before)
	}
}

// TestNoNoticeWithoutCall: inside BEGIN, an UPDATE that changes
// nothing (an ORM saving an unchanged row) makes no Stripe call, so it must
// not claim that the write went to Stripe.
func TestNoNoticeWithoutCall(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('n@b.co', 'Same') RETURNING id`).rows[0][0]
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	defer e.conn.Exec(e.ctx, `ROLLBACK`)
	before := e.calls()
	r := e.ok(`UPDATE stripe.customers SET name = 'Same' WHERE id = $1`, id)
	if r.tag != "UPDATE 1" || e.calls() != before {
		t.Fatalf("reply %+v, %d calls", r, e.calls()-before)
	}
	if len(r.notices) != 0 {
		t.Fatalf("notices %v for a statement that made no Stripe call", r.notices)
	}
	r = e.ok(`UPDATE stripe.customers SET name = 'Other' WHERE id = $1`, id)
	if len(r.notices) != 1 {
		t.Fatalf("notices %v", r.notices)
	}
}

// TestRequiredParamBeforeAnyCall: a row without a parameter Stripe
// requires to create the object (NULL, empty, or its column left out) is
// refused before any call, as Postgres refuses a NOT NULL column left
// NULL: not after the rows before it were created in Stripe.
func TestRequiredParamBeforeAnyCall(t *testing.T) {
	e := setup(t)
	calls := e.calls()
	for _, sql := range []string{
		`INSERT INTO stripe.products (name) VALUES ('a'), ('b'), (NULL)`,
		`INSERT INTO stripe.products (name) VALUES ('a'), ('b'), ($1)`,
		`INSERT INTO stripe.products (name) VALUES ('a'), ('')`,
		`INSERT INTO stripe.products (description) VALUES ('no name')`,
		`INSERT INTO stripe.products (name, _params) VALUES ('a', '{}'), (DEFAULT, '{"active": true}')`,
		`INSERT INTO stripe.tax_rates (display_name, inclusive) VALUES ('VAT', false)`,
		`INSERT INTO stripe.products DEFAULT VALUES`,
	} {
		var args []any
		if strings.Contains(sql, "$1") {
			args = append(args, nil)
		}
		r := e.fails("23502", sql, args...)
		if !strings.Contains(r.err.Message, "Stripe requires") {
			t.Errorf("%s: %s", sql, r.err.Message)
		}
	}
	if n := e.calls() - calls; n != 0 {
		t.Fatalf("%d Stripe calls", n)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.products`); got != "0" || len(e.emu.Objects("products")) != 0 {
		t.Fatalf("%s products locally, %d in Stripe", got, len(e.emu.Objects("products")))
	}
	// Given through _params, it counts.
	r := e.ok(`INSERT INTO stripe.products (_params) VALUES ('{"name": "via params"}') RETURNING name`)
	if r.rows[0][0] != "via params" {
		t.Fatalf("rows %v", r.rows)
	}
	r = e.ok(`INSERT INTO stripe.tax_rates (display_name, inclusive, percentage) VALUES ('VAT', false, 20) RETURNING percentage`)
	if r.rows[0][0] != "20" {
		t.Fatalf("rows %v", r.rows)
	}
}
