package writethrough

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// latin1 connects through the proxy with client_encoding LATIN1, as psql
// does on a Windows console (WIN1252) or psycopg2 after
// set_client_encoding('LATIN1'): the client's bytes are Latin-1.
func (e *env) latin1(u string) *pgconn.PgConn {
	e.t.Helper()
	cfg, err := pgconn.ParseConfig(u)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.RuntimeParams["client_encoding"] = "LATIN1"
	c, err := pgconn.ConnectConfig(e.ctx, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close(context.Background()) })
	if got := c.ParameterStatus("client_encoding"); got != "LATIN1" {
		e.t.Fatalf("client_encoding %q", got)
	}
	return c
}

// A write whose text is Latin-1 ("König" with byte 0xf6) is not valid
// UTF-8. It used to go straight through to Postgres, so the local row
// changed and Stripe never heard of it. It is refused before any call;
// statements that are not stripe writes still pass, whatever their bytes.
func TestLatin1TextIsNotPassedThrough(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('latin1@b.co', 'Before') RETURNING id`).rows[0][0]
	c := e.latin1(u)
	before := e.calls()

	// Simple protocol.
	_, err := c.Exec(e.ctx, "UPDATE stripe.customers SET name = 'K\xf6nig' WHERE id = '"+id+"'").ReadAll()
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "LATIN1") {
		t.Errorf("simple UPDATE with a Latin-1 literal: %v, want 0A000 naming the encoding", err)
	}
	// Extended protocol.
	rr := c.ExecParams(e.ctx, "DELETE FROM stripe.customers WHERE id = $1 AND name <> 'K\xf6nig'", [][]byte{[]byte(id)}, nil, nil, nil)
	if _, err := rr.Close(); sqlstate(err) != "0A000" {
		t.Errorf("extended DELETE with a Latin-1 literal: %v, want 0A000", err)
	}
	// An unqualified name that search_path resolves to stripe.
	if _, err := c.Exec(e.ctx, "SET search_path = stripe").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(e.ctx, "UPDATE customers SET name = 'K\xf6nig' WHERE id = '"+id+"'").ReadAll(); sqlstate(err) != "0A000" {
		t.Errorf("unqualified UPDATE with a Latin-1 literal: %v, want 0A000", err)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != "Before" {
		t.Errorf("local name %q: the write went around Stripe", got)
	}
	if got := e.stripeObj("customers", id)["name"]; got != "Before" {
		t.Errorf("Stripe name %q", got)
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls", n)
	}

	// Writes elsewhere pass through untouched, converted by Postgres.
	if _, err := c.Exec(e.ctx, "SET search_path = public; CREATE TABLE customers (name text)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(e.ctx, "INSERT INTO customers VALUES ('K\xf6nig')").ReadAll(); err != nil {
		t.Fatalf("simple INSERT into a table of ours: %v", err)
	}
	rr = c.ExecParams(e.ctx, "UPDATE public.customers SET name = name || '\xe9' WHERE name = 'K\xf6nig'", nil, nil, nil, nil)
	if tag, err := rr.Close(); err != nil || tag.String() != "UPDATE 1" {
		t.Fatalf("extended UPDATE of a table of ours: %v %q", err, tag)
	}
	if got := e.local(`SELECT name FROM public.customers`); got != "Königé" {
		t.Errorf("public.customers has %q", got)
	}
}

// Values that Postgres evaluates on a Latin-1 session come back in Latin-1;
// they used to reach Stripe as those bytes (stored as "K\ufffdnig"), after
// which RETURNING failed on the character Latin-1 can't hold.
func TestLatin1ValuesReachStripeAsUTF8(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('latin1v@b.co', 'Before') RETURNING id`).rows[0][0]
	c := e.latin1(u)

	check := func(what, want string, tag pgconn.CommandTag, rows [][][]byte, err error) {
		t.Helper()
		if err != nil || tag.String() != "UPDATE 1" || len(rows) != 1 {
			t.Fatalf("%s: %v %q %d rows", what, err, tag, len(rows))
		}
		var b []byte // want in Latin-1: one byte per rune
		for _, r := range want {
			b = append(b, byte(r))
		}
		if string(rows[0][0]) != string(b) {
			t.Errorf("%s: RETURNING %q, want %q in Latin-1", what, rows[0][0], b)
		}
		if got := e.stripeObj("customers", id)["name"]; got != want {
			t.Errorf("%s: Stripe has %q, want %q", what, got, want)
		}
		if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != want {
			t.Errorf("%s: local %q, want %q", what, got, want)
		}
	}

	// A parameter (extended protocol), sent in the client's encoding.
	rr := c.ExecParams(e.ctx, `UPDATE stripe.customers SET name = $1, metadata = $2 WHERE id = $3 RETURNING name`,
		[][]byte{[]byte("K\xf6nig"), []byte("{\"city\": \"Z\xfcrich\"}"), []byte(id)}, nil, nil, nil)
	res := rr.Read()
	check("parameter", "König", res.CommandTag, res.Rows, res.Err)
	if got := e.stripeObj("customers", id)["metadata"].(map[string]any)["city"]; got != "Zürich" {
		t.Errorf("Stripe metadata city %q", got)
	}

	// An expression in an ASCII text (simple protocol).
	mr := c.Exec(e.ctx, `UPDATE stripe.customers SET name = 'Gr' || chr(252) || 'n' WHERE id = '`+id+`' RETURNING name`)
	results, err := mr.ReadAll()
	if err != nil || len(results) != 1 {
		t.Fatalf("simple UPDATE: %v", err)
	}
	check("expression", "Grün", results[0].CommandTag, results[0].Rows, results[0].Err)
}

// In REPEATABLE READ, RETURNING runs over the applied rows given to the
// client's connection as jsonb text, which Postgres reads in the
// session's client_encoding.
func TestLatin1ReturningInRepeatableRead(t *testing.T) {
	e := setup(t)
	c := e.latin1(e.proxied())
	mr := c.Exec(e.ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM stripe.customers")
	if _, err := mr.ReadAll(); err != nil {
		t.Fatal(err)
	}
	rr := c.ExecParams(e.ctx, `INSERT INTO stripe.customers (email, name) VALUES ('rr@b.co', $1) RETURNING name`, [][]byte{[]byte("K\xf6nig")}, nil, nil, nil)
	res := rr.Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "K\xf6nig" {
		t.Fatalf("RETURNING in REPEATABLE READ: %v %q", res.Err, res.Rows)
	}
}

func TestASCIIJSON(t *testing.T) {
	in := `[{"name": "König 😀 \"q\" \\u00e9", "n": 1}]`
	out := asciiJSON([]byte(in))
	if !isASCII(out) {
		t.Fatalf("not ASCII: %s", out)
	}
	var a, b any
	if err := json.Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s decodes to %v, want %v", out, b, a)
	}
}

// Statements on a Latin-1 session whose text is not UTF-8 and that are no
// stripe writes reach Postgres as they are: a multi-statement read and a
// COPY FROM STDIN.
func TestLatin1PassThrough(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	c := e.latin1(u)
	if _, err := c.Exec(e.ctx, "CREATE TABLE public.notes (name text)").ReadAll(); err != nil {
		t.Fatal(err)
	}

	res, err := c.Exec(e.ctx, "SELECT 'caf\xe9' AS a; SELECT 'updated' AS b").ReadAll()
	if err != nil || len(res) != 2 || string(res[0].Rows[0][0]) != "caf\xe9" || string(res[1].Rows[0][0]) != "updated" {
		t.Errorf("multi-statement read: %v %v", res, err)
	}

	tag, err := c.CopyFrom(e.ctx, strings.NewReader("x\xe9\n"), "COPY public.notes (name) FROM STDIN WITH (FORMAT csv, NULL 'n\xe9ant')")
	if err != nil || tag.RowsAffected() != 1 {
		t.Errorf("COPY FROM STDIN: %v %v", tag, err)
	}

	if got := e.local(`SELECT string_agg(name, ',') FROM public.notes`); got != "xé" {
		t.Errorf("public.notes has %q, want xé", got)
	}
}

// TestLatin1UnicodeEscapeName: a Latin-1 write that spells its
// stripe table with Unicode-escape identifiers (no "stripe", no table name
// in the text) must be refused like any other non-UTF-8 stripe write, not
// pass through and change the local copy behind Stripe's back.
func TestLatin1UnicodeEscapeName(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('uesc@b.co', 'Before') RETURNING id`).rows[0][0]
	c := e.latin1(u)
	before := e.calls()
	_, err := c.Exec(e.ctx, `UPDATE U&"\0073tripe".U&"\0063ustomers" SET name = 'K`+"\xf6"+`nig' WHERE id = '`+id+`'`).ReadAll()
	if sqlstate(err) != "0A000" {
		t.Errorf("UPDATE naming the table with U& escapes: %v, want 0A000", err)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != "Before" {
		t.Errorf("local name %q: the write went around Stripe", got)
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls", n)
	}
}

// TestUnencodableArraysRefusedBeforeAnyCall: a jsonb array with a
// null or empty element would reach Stripe with a gap in its indices
// (items[1][price] with no items[0]). Through the proxy such a value is
// refused with 22023 naming the column and the element, and a two-row
// INSERT whose second row has one makes no Stripe call at all: the first
// row's subscription is not created either.
func TestUnencodableArraysRefusedBeforeAnyCall(t *testing.T) {
	e := setup(t)
	one := func(sql string, args ...any) string {
		t.Helper()
		return e.ok(sql, args...).rows[0][0]
	}
	cus := e.newCustomers("gap1@b.co", "gap2@b.co")
	prod := one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	p1 := one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	p2 := one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 300, '{"interval":"month"}') RETURNING id`, prod)

	subs := func() string {
		t.Helper()
		return e.local(`SELECT count(*)::text FROM stripe.subscriptions`)
	}
	check := func(r reply, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(r.err.Message, w) {
				t.Errorf("message %q lacks %q", r.err.Message, w)
			}
		}
	}

	before := e.calls()
	r := e.fails("22023", `INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, jsonb_build_array(jsonb_build_object('price', $2::text))), ($3, jsonb_build_array(NULL, jsonb_build_object('price', $4::text)))`,
		cus[0], p1, cus[1], p2)
	check(r, "items of stripe.subscriptions", "null element", "items[0]")
	if !strings.Contains(r.err.Detail, "row 2 of 2") {
		t.Errorf("detail %q names no row", r.err.Detail)
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls for a refused statement", n)
	}
	if len(e.emu.Objects("subscriptions")) != 0 || subs() != "0" {
		t.Fatalf("a subscription was created: %d in Stripe, %s local", len(e.emu.Objects("subscriptions")), subs())
	}

	// The same rows without the null go through, both of them.
	e.ok(`INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, jsonb_build_array(jsonb_build_object('price', $2::text))), ($3, jsonb_build_array(jsonb_build_object('price', $4::text)))`,
		cus[0], p1, cus[1], p2)
	if subs() != "2" {
		t.Fatalf("%s subscriptions", subs())
	}
	sub := e.local(`SELECT id FROM stripe.subscriptions WHERE customer = $1`, cus[0])

	// An UPDATE with an empty element, and one with an array of arrays in
	// _params: refused, Stripe untouched.
	before = e.calls()
	r = e.fails("22023", `UPDATE stripe.subscriptions SET items = '[{}, {"price": "`+p2+`"}]' WHERE id = $1`, sub)
	check(r, "items of stripe.subscriptions", "nothing to send", "items[0]")
	r = e.fails("22023", `UPDATE stripe.customers SET _params = '{"preferred_locales": [["en"]]}' WHERE id = $1`, cus[0])
	check(r, `_params key "preferred_locales"`, "array inside an array")
	// A fraction where Stripe takes an integer.
	r = e.fails("22023", `UPDATE stripe.customers SET _params = '{"balance": 12.5}' WHERE id = $1`, cus[0])
	check(r, "integer", "balance")
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls for refused statements", n)
	}
	items := e.stripeObj("subscriptions", sub)["items"].(map[string]any)["data"].([]any)
	if len(items) != 1 {
		t.Errorf("Stripe's subscription has %d items, want 1", len(items))
	}
}
