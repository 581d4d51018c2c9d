package writethrough

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// fiftyKeys is SQL for a metadata object of the keys k0..k49.
const fiftyKeys = `(SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(0, 49) i)`

// TestMetadataLimitsBeforeAnyCall: an INSERT whose last row has
// metadata Stripe refuses (51 keys, a 41-character key, a 501-character
// value, a key with a square bracket) is refused with 22023 naming the
// row, through the proxy, before any Stripe call: before, rows 1 and 2
// were created in Stripe and then Stripe refused row 3.
func TestMetadataLimitsBeforeAnyCall(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	for _, m := range modes[:2] {
		c := e.client(u, m.mode)
		for _, bad := range []struct{ name, md string }{
			{"51 keys", `(SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(0, 50) i)`},
			{"41-character key", `jsonb_build_object(repeat('x', 41), 'v')`},
			{"501-character value", `jsonb_build_object('k', repeat('é', 501))`},
			{"bracket in key", `'{"a[b]": "v"}'`},
		} {
			before := e.calls()
			_, err := c.Exec(e.ctx, `INSERT INTO stripe.customers (email, metadata) VALUES
				('r1@b.co', '{"a": "1"}'), ('r2@b.co', '{"a": "2"}'), ('r3@b.co', `+bad.md+`)`)
			var pe *pgconn.PgError
			if !asPgError(err, &pe) || pe.Code != "22023" || !strings.Contains(pe.Message, "metadata of stripe.customers") || !strings.Contains(pe.Detail, "row 3 of 3") {
				t.Errorf("%s %s: %v (detail %q), want 22023 naming metadata and row 3", m.name, bad.name, err, detailOf(err))
			}
			if n := e.calls() - before; n != 0 {
				t.Errorf("%s %s: %d Stripe requests, want none", m.name, bad.name, n)
			}
			if n := len(e.emu.Objects("customers")); n != 0 {
				t.Fatalf("%s %s: %d customers in Stripe", m.name, bad.name, n)
			}
		}
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM stripe.customers`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("local customers: %d %v", n, err)
	}
}

// TestMetadataMergeCounted: Stripe merges an UPDATE's metadata
// into the object's, so the 50 keys are counted on what the object would
// have, from the synced row. Removing one key and adding another at 50 is
// sent and lands; a 51st key is refused before any call, also when
// another row of the same UPDATE would have been fine (it would have been
// updated before Stripe refused this one).
func TestMetadataMergeCounted(t *testing.T) {
	e := setup(t)
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	full, small := fullAndSmall(t, e, c)

	if _, err := c.Exec(e.ctx, `UPDATE stripe.customers SET metadata = metadata - 'k0' || '{"new": "v"}' WHERE id = $1`, full); err != nil {
		t.Fatalf("one out, one in at 50: %v (%s)", err, detailOf(err))
	}
	md, _ := e.stripeObj("customers", full)["metadata"].(map[string]any)
	if len(md) != 50 || md["new"] != "v" || md["k0"] != nil {
		t.Fatalf("Stripe's metadata after the swap: %d keys %v", len(md), md)
	}

	before := e.calls()
	_, err := c.Exec(e.ctx, `UPDATE stripe.customers SET metadata = metadata || '{"x": "v"}' WHERE id IN ($1, $2)`, small, full)
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "22023" || !strings.Contains(pe.Message, "would have 51 keys") || !strings.Contains(pe.Detail, "the synced row has 50 keys") {
		t.Fatalf("51st key: %v (detail %q), want 22023 counting 51 keys", err, detailOf(err))
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe requests for a refused UPDATE, want none", n)
	}
	if md, _ := e.stripeObj("customers", small)["metadata"].(map[string]any); len(md) != 1 {
		t.Errorf("the other row was updated in Stripe: %v", md)
	}
}

func detailOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Detail
	}
	return ""
}

// TestMetadataMergeCountedFromParams: metadata set through
// _params is merged by Stripe into the object's as the metadata column's
// is, so a 51st key given there must be refused before any call too.
// The statement reads the synced metadata only when it assigns the
// metadata column, so here it counted only the key set: the UPDATE went
// to Stripe, which refused the full customer (51 keys), after the other
// row's call when that came first.
func TestMetadataMergeCountedFromParams(t *testing.T) {
	e := setup(t)
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	full, small := fullAndSmall(t, e, c)
	before := e.calls()
	_, err := c.Exec(e.ctx, `UPDATE stripe.customers SET _params = '{"metadata": {"x": "v"}}' WHERE id IN ($1, $2)`, small, full)
	var pe *pgconn.PgError
	if !asPgError(err, &pe) || pe.Code != "22023" || !strings.Contains(pe.Message, "would have 51 keys") {
		t.Errorf("51st key through _params: %v (detail %q), want 22023 counting 51 keys", err, detailOf(err))
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe requests for an UPDATE Stripe refuses, want none", n)
	}
	if md, _ := e.stripeObj("customers", small)["metadata"].(map[string]any); len(md) != 1 {
		t.Errorf("the other row was updated in Stripe: %v", md)
	}
}

// TestParamsMetadataCountedWithStoredCopy: metadata given in
// _params is counted on what Stripe merges it into, read from the row's
// stored copy in both protocols: a 51st key is refused before any call,
// with the detail naming the synced row's 50 keys and the row; a key
// removed with null makes room for another (sent, lands).
func TestParamsMetadataCountedWithStoredCopy(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	c := e.client(u, pgx.QueryExecModeSimpleProtocol)
	full, small := fullAndSmall(t, e, c)
	for _, m := range modes[:2] {
		mc := e.client(u, m.mode)
		before := e.calls()
		// The small row first: without the count its call went out
		// before Stripe refused the full one.
		_, err := mc.Exec(e.ctx, `UPDATE stripe.customers SET email = email || '', _params = jsonb_build_object('metadata', jsonb_build_object('x', $3::text)) WHERE id IN ($1, $2)`, small, full, "v")
		var pe *pgconn.PgError
		if !asPgError(err, &pe) || pe.Code != "22023" || !strings.Contains(pe.Message, "metadata of stripe.customers would have 51 keys") ||
			!strings.Contains(pe.Detail, "the synced row has 50 keys") || !strings.Contains(pe.Detail, "of 2") {
			t.Errorf("%s: %v (detail %q), want 22023 counting 51 keys from the synced row's 50, naming the row", m.name, err, detailOf(err))
		}
		if n := e.calls() - before; n != 0 {
			t.Errorf("%s: %d Stripe requests for a refused UPDATE, want none", m.name, n)
		}
	}
	if md, _ := e.stripeObj("customers", small)["metadata"].(map[string]any); len(md) != 1 {
		t.Errorf("the other row was updated in Stripe: %v", md)
	}

	e.ok(`UPDATE stripe.customers SET _params = '{"metadata": {"k0": null, "new": "v"}}' WHERE id = $1`, full)
	md, _ := e.stripeObj("customers", full)["metadata"].(map[string]any)
	if len(md) != 50 || md["new"] != "v" || md["k0"] != nil {
		t.Errorf("Stripe's metadata after one out, one in through _params: %d keys %v", len(md), md)
	}
}

// TestItemMetadataCountedWithSyncedItem: a subscription item
// named by its id in an UPDATE has its metadata merged by Stripe, so its
// 50 keys are counted with the keys the synced subscription holds for
// it, whether the items column is edited (jsonb_set) or the item is
// given in _params: a 51st key is refused before any call, also for the
// other subscription of the UPDATE, and one key out and one in is sent
// and lands.
func TestItemMetadataCountedWithSyncedItem(t *testing.T) {
	e := setup(t)
	small, _ := itemMetadataSubscription(t, e, "small@b.co")
	cus := e.newCustomers("full@b.co")[0]
	price := e.local(`SELECT items->'data'->0->'price'->>'id' FROM stripe.subscriptions WHERE id = $1`, small)
	full := e.one(`INSERT INTO stripe.subscriptions (customer, items, collection_method, days_until_due)
		VALUES ($1, jsonb_build_array(jsonb_build_object('price', $2::text, 'metadata', `+fiftyKeys+`)), 'send_invoice', 7)
		RETURNING id`, cus, price)
	fullItem := e.local(`SELECT items->'data'->0->>'id' FROM stripe.subscriptions WHERE id = $1`, full)

	for _, c := range []struct{ name, sql string }{
		{"items column", `UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,metadata,x}', '"v"') WHERE id IN ($1, $2)`},
		{"_params", `UPDATE stripe.subscriptions SET _params = jsonb_build_object('items', jsonb_build_array(jsonb_build_object('id', items->'data'->0->'id', 'metadata', '{"x": "v"}'::jsonb)), 'proration_behavior', 'none') WHERE id IN ($1, $2)`},
	} {
		before := e.calls()
		r := e.fails("22023", c.sql, small, full)
		if !strings.Contains(r.err.Message, "items[0][metadata] of stripe.subscriptions would have 51 keys") || !strings.Contains(r.err.Detail, "the synced row has 50 keys") {
			t.Errorf("%s: refusal %q (detail %q), want 51 keys counted in items[0][metadata]", c.name, r.err.Message, r.err.Detail)
		}
		if n := e.calls() - before; n != 0 {
			t.Errorf("%s: %d Stripe requests for a refused UPDATE, want none", c.name, n)
		}
	}
	smallItem := e.local(`SELECT items->'data'->0->>'id' FROM stripe.subscriptions WHERE id = $1`, small)
	if md, _ := e.stripeObj("subscription_items", smallItem)["metadata"].(map[string]any); len(md) != 2 {
		t.Errorf("the other subscription's item was updated in Stripe: %v", md)
	}

	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_set(items, '{data,0,metadata}', (items #> '{data,0,metadata}') - 'k0' || '{"new": "v"}') WHERE id = $1`, full)
	e.ok(`UPDATE stripe.subscriptions SET _params = '{"items": [{"id": "`+fullItem+`", "metadata": {"k1": null, "new2": "v"}}], "proration_behavior": "none"}' WHERE id = $1`, full)
	md, _ := e.stripeObj("subscription_items", fullItem)["metadata"].(map[string]any)
	if len(md) != 50 || md["new"] != "v" || md["new2"] != "v" || md["k0"] != nil || md["k1"] != nil {
		t.Errorf("Stripe's item metadata after two swaps: %d keys %v", len(md), md)
	}
}

// fullAndSmall creates, through c, a customer with 50 metadata keys and
// one with a single key.
func fullAndSmall(t *testing.T, e *env, c *client) (full, small string) {
	t.Helper()
	if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, metadata) VALUES ('full@b.co', `+fiftyKeys+`) RETURNING id`).Scan(&full); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, metadata) VALUES ('small@b.co', '{"a": "1"}') RETURNING id`).Scan(&small); err != nil {
		t.Fatal(err)
	}
	return full, small
}
