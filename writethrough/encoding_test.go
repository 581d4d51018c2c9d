package writethrough

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	url2 "net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
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
	cus := e.newCustomers("gap1@b.co", "gap2@b.co")
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	p1 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	p2 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 300, '{"interval":"month"}') RETURNING id`, prod)

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

// TestEmptyTaxRatesAndNestedIntegers: through the interceptor, a
// subscription item written with "tax_rates": [] on a subscription with
// default_tax_rates reaches Stripe as items[0][tax_rates]= (stripe-go's
// empty list), so the item has no tax rates of its own and its invoice
// line none; before, the key was left out (the item then inherits the
// subscription's default_tax_rates), and on an update the emptied tax
// rates were not sent at all, so the item kept them. A quantity of 2.0 is
// sent as 2. A fraction where Stripe takes an integer (items[0][quantity])
// and an empty array Stripe can't take as written are refused with 22023,
// and nothing reaches Stripe.
func TestEmptyTaxRatesAndNestedIntegers(t *testing.T) {
	e := setup(t)
	cus := e.newCustomers("taxfree@b.co")[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	p1 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	p2 := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 300, '{"interval":"month"}') RETURNING id`, prod)
	txrDefault := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txrItem := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('GST', 5, false) RETURNING id`)

	var mu sync.Mutex
	var bodies []url2.Values
	record := faultFunc(func(_ http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/subscriptions" {
			mu.Lock()
			bodies = append(bodies, form)
			mu.Unlock()
		}
		return false // the emulator answers
	})
	e.fault.Store(&record)

	items := fmt.Sprintf(`[{"price": %q, "quantity": 2.0, "tax_rates": []}, {"price": %q, "tax_rates": [%q]}]`, p1, p2, txrItem)
	sub := e.one(`INSERT INTO stripe.subscriptions (customer, collection_method, days_until_due, default_tax_rates, items)
		VALUES ($1, 'send_invoice', 7, jsonb_build_array($2::text), $3::jsonb) RETURNING id`, cus, txrDefault, items)
	mu.Lock()
	if len(bodies) != 1 {
		t.Fatalf("%d subscription creates", len(bodies))
	}
	body := bodies[0]
	mu.Unlock()
	if v, ok := body["items[0][tax_rates]"]; !ok || !reflect.DeepEqual(v, []string{""}) {
		t.Errorf("items[0][tax_rates] sent as %q (present %v), want the empty string", v, ok)
	}
	if got := body.Get("items[0][quantity]"); got != "2" {
		t.Errorf("items[0][quantity] sent as %q, want 2", got)
	}

	taxRateIDs := func(v any) []string {
		ids := []string{}
		for _, r := range v.([]any) {
			ids = append(ids, r.(map[string]any)["id"].(string))
		}
		return ids
	}
	st := e.stripeObj("subscriptions", sub)
	if got := taxRateIDs(st["default_tax_rates"]); !reflect.DeepEqual(got, []string{txrDefault}) {
		t.Fatalf("Stripe's subscription default_tax_rates %v, want [%s]", got, txrDefault)
	}
	itemOf := map[string]map[string]any{} // by price
	for _, it := range st["items"].(map[string]any)["data"].([]any) {
		m := it.(map[string]any)
		itemOf[m["price"].(map[string]any)["id"].(string)] = m
	}
	if got := taxRateIDs(itemOf[p1]["tax_rates"]); len(got) != 0 {
		t.Errorf("Stripe's item of %s has tax rates %v, want none", p1, got)
	}
	if q := fmt.Sprint(itemOf[p1]["quantity"]); q != "2" {
		t.Errorf("quantity %s", q)
	}
	if got := taxRateIDs(itemOf[p2]["tax_rates"]); !reflect.DeepEqual(got, []string{txrItem}) {
		t.Errorf("Stripe's item of %s has tax rates %v", p2, got)
	}
	si1, si2 := itemOf[p1]["id"].(string), itemOf[p2]["id"].(string)
	if got := e.local(`SELECT tax_rates::text FROM stripe.subscription_items WHERE id = $1`, si1); got != "[]" {
		t.Errorf("local tax_rates of %s: %s", si1, got)
	}
	// Its invoice: the subscription's default on the invoice, none on
	// the item's line.
	inv := e.stripeObj("invoices", st["latest_invoice"].(string))
	if got := taxRateIDs(inv["default_tax_rates"]); !reflect.DeepEqual(got, []string{txrDefault}) {
		t.Errorf("invoice default_tax_rates %v", got)
	}
	for _, l := range inv["lines"].(map[string]any)["data"].([]any) {
		m := l.(map[string]any)
		if m["subscription_item"] == si1 {
			if got := taxRateIDs(m["tax_rates"]); len(got) != 0 {
				t.Errorf("the line of %s has tax rates %v", si1, got)
			}
		}
	}

	// Emptied on an update, as an array written by the statement: the
	// item's own tax rates go.
	e.ok(`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'tax_rates', '[]'::jsonb)) WHERE id = $1`, sub, si2)
	for _, it := range e.stripeObj("subscriptions", sub)["items"].(map[string]any)["data"].([]any) {
		if m := it.(map[string]any); m["id"] == si2 {
			if got := taxRateIDs(m["tax_rates"]); len(got) != 0 {
				t.Errorf("after the update Stripe's %s has tax rates %v, want none", si2, got)
			}
		}
	}
	if got := e.local(`SELECT tax_rates::text FROM stripe.subscription_items WHERE id = $1`, si2); got != "[]" {
		t.Errorf("local tax_rates of %s after the update: %s", si2, got)
	}

	// Refused before any call.
	before := e.calls()
	subs := len(e.emu.Objects("subscriptions"))
	for _, c := range []struct {
		sql  string
		args []any
		want []string
	}{
		{`INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, jsonb_build_array(jsonb_build_object('price', $2::text, 'quantity', 1.5)))`,
			[]any{cus, p1}, []string{"items of stripe.subscriptions", "items[0][quantity]", "integer"}},
		{`UPDATE stripe.subscriptions SET items = jsonb_build_array(jsonb_build_object('id', $2::text, 'quantity', 2.5)) WHERE id = $1`,
			[]any{sub, si1}, []string{"items[0][quantity]"}},
		{`INSERT INTO stripe.invoiceitems (customer, amount, currency, tax_rates) VALUES ($1, 500, 'usd', '[]')`,
			[]any{cus}, []string{"tax_rates of stripe.invoiceitems", "empty array"}},
	} {
		r := e.fails("22023", c.sql, c.args...)
		for _, w := range c.want {
			if !strings.Contains(r.err.Message, w) {
				t.Errorf("%s: message %q lacks %q", c.sql, r.err.Message, w)
			}
		}
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls for refused statements", n)
	}
	if n := len(e.emu.Objects("subscriptions")); n != subs || len(e.emu.Objects("invoiceitems")) != 0 {
		t.Errorf("%d subscriptions (want %d), %d invoice items in Stripe", n, subs, len(e.emu.Objects("invoiceitems")))
	}
	if q := e.local(`SELECT quantity::text FROM stripe.subscription_items WHERE id = $1`, si1); q != "2" {
		t.Errorf("local quantity of %s after the refused update: %s", si1, q)
	}
}

// TestSchedulePhasesEmptyArrays: an UPDATE that edits a schedule's
// phases as read back (jsonb_set) sends each empty array in them as the
// spec takes it: an item's tax_rates and the phase's default_tax_rates
// emptied reach Stripe as the empty string, and Stripe's schedule then has
// none, as written, locally too; the phase's add_invoice_items, [] as
// Stripe returned it, is left out (a phase has none unless passed again).
// A phase whose items are emptied, which the form encoding can't carry
// and Stripe takes no empty string for, is refused with 22023 naming the
// column and the element before any call; before, the items were left
// out of the update.
func TestSchedulePhasesEmptyArrays(t *testing.T) {
	e := setup(t)
	cus := e.newCustomers("phases@b.co")[0]
	prod := e.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	price := e.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	txr1 := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('VAT', 20, false) RETURNING id`)
	txr2 := e.one(`INSERT INTO stripe.tax_rates (display_name, percentage, inclusive) VALUES ('GST', 5, false) RETURNING id`)
	phases := fmt.Sprintf(`[{"items": [{"price": %q, "tax_rates": [%q]}], "default_tax_rates": [%q], "iterations": 2}]`, price, txr1, txr2)
	ss := e.one(`INSERT INTO stripe.subscription_schedules (customer, phases, _params) VALUES ($1, $2::jsonb, '{"start_date": "now"}') RETURNING id`, cus, phases)

	phase := func() map[string]any {
		t.Helper()
		ps, _ := e.stripeObj("subscription_schedules", ss)["phases"].([]any)
		if len(ps) != 1 {
			t.Fatalf("Stripe's schedule has phases %v", ps)
		}
		return ps[0].(map[string]any)
	}
	ids := func(v any) []string {
		out := []string{}
		for _, r := range v.([]any) {
			switch r := r.(type) {
			case string:
				out = append(out, r)
			case map[string]any:
				out = append(out, r["id"].(string))
			}
		}
		return out
	}
	p := phase()
	if got := ids(p["default_tax_rates"]); !reflect.DeepEqual(got, []string{txr2}) {
		t.Fatalf("default_tax_rates %v after the create", got)
	}
	if got := ids(p["items"].([]any)[0].(map[string]any)["tax_rates"]); !reflect.DeepEqual(got, []string{txr1}) {
		t.Fatalf("item tax_rates %v after the create", got)
	}
	if got := e.local(`SELECT phases->0->>'add_invoice_items' FROM stripe.subscription_schedules WHERE id = $1`, ss); got != "[]" {
		t.Fatalf("stored add_invoice_items %s: the test needs the [] Stripe returns", got)
	}

	var mu sync.Mutex
	var bodies []url2.Values
	record := faultFunc(func(_ http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/subscription_schedules/"+ss {
			mu.Lock()
			bodies = append(bodies, form)
			mu.Unlock()
		}
		return false // the emulator answers
	})
	e.fault.Store(&record)

	e.ok(`UPDATE stripe.subscription_schedules SET phases = jsonb_set(jsonb_set(phases, '{0,items,0,tax_rates}', '[]'), '{0,default_tax_rates}', '[]') WHERE id = $1`, ss)
	mu.Lock()
	if len(bodies) != 1 {
		t.Fatalf("%d schedule updates", len(bodies))
	}
	body := bodies[0]
	mu.Unlock()
	for _, k := range []string{"phases[0][items][0][tax_rates]", "phases[0][default_tax_rates]"} {
		if v, ok := body[k]; !ok || !reflect.DeepEqual(v, []string{""}) {
			t.Errorf("%s sent as %q (present %v), want the empty string", k, v, ok)
		}
	}
	for k := range body {
		if strings.HasPrefix(k, "phases[0][add_invoice_items]") {
			t.Errorf("%s sent: an empty add_invoice_items is left out", k)
		}
	}
	p = phase()
	if got := ids(p["default_tax_rates"]); len(got) != 0 {
		t.Errorf("Stripe's phase default_tax_rates %v after the update, want none", got)
	}
	if got := ids(p["items"].([]any)[0].(map[string]any)["tax_rates"]); len(got) != 0 {
		t.Errorf("Stripe's phase item tax_rates %v after the update, want none", got)
	}
	if got := e.local(`SELECT (phases->0->'default_tax_rates')::text || (phases->0->'items'->0->'tax_rates')::text FROM stripe.subscription_schedules WHERE id = $1`, ss); got != "[][]" {
		t.Errorf("local phase tax rates after the update: %s", got)
	}

	// A phase's items emptied: refused before any call, the schedule as it was.
	before := e.calls()
	r := e.fails("22023", `UPDATE stripe.subscription_schedules SET phases = jsonb_set(phases, '{0,items}', '[]') WHERE id = $1`, ss)
	for _, w := range []string{"phases of stripe.subscription_schedules", "phases[0][items]"} {
		if !strings.Contains(r.err.Message, w) {
			t.Errorf("message %q lacks %q", r.err.Message, w)
		}
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls for the refused update", n)
	}
	if items, _ := phase()["items"].([]any); len(items) != 1 {
		t.Errorf("Stripe's phase items after the refused update: %v", items)
	}
}

// TestEmptiedArraysInHashesThroughProxy: through the proxy and the
// emulator, an UPDATE that empties an array inside a column's hash
// follows the spec's request schema. Where the schema takes no empty
// string (a subscription's
// payment_settings.payment_method_options.us_bank_account.financial_connections.permissions,
// a customer's preferred_locales itself) it is refused with 22023 naming
// the form key, before any call: in a two-row statement the other row,
// fine on its own, is not sent either, and Stripe and the local rows stay
// as they were. Where the schema takes "" (payment_settings.payment_method_types)
// the empty string reaches Stripe and its answer is applied. Before,
// every emptied array went as key=, which Stripe refuses at the first
// places ("cannot be unset") after the calls of the statement's earlier
// rows.
func TestEmptiedArraysInHashesThroughProxy(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}
	cus := w.one(`INSERT INTO stripe.customers (email, preferred_locales) VALUES ('arrays@b.co', '["en", "fr"]') RETURNING id`)
	settings := `{"payment_method_types": ["card", "us_bank_account"], "save_default_payment_method": "off",
		"payment_method_options": {"us_bank_account": {"financial_connections": {"permissions": ["payment_method", "balances"]}}}}`
	subs := w.twoSubscriptions(cus, settings)
	permissions := `payment_settings->'payment_method_options'->'us_bank_account'->'financial_connections'->'permissions'`
	w.local("subscriptions", subs[0], permissions, `["payment_method", "balances"]`)

	var mu sync.Mutex
	var bodies []url2.Values
	record := faultFunc(func(_ http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/subscriptions/") {
			mu.Lock()
			bodies = append(bodies, form)
			mu.Unlock()
		}
		return false // the emulator answers
	})
	e.fault.Store(&record)

	refusedPermissionsEdit(t, e, w, subs, `[]`, "emptied permissions")

	// The column itself, where Stripe takes only an array.
	w.refused("22023", `UPDATE stripe.customers SET preferred_locales = '[]' WHERE id = $1`, cus)
	if got := e.stripeObj("customers", cus)["preferred_locales"]; !reflect.DeepEqual(got, []any{"en", "fr"}) {
		t.Errorf("Stripe's preferred_locales %v after the refused update", got)
	}

	// Where the schema takes "": sent so, and applied.
	w.exec("UPDATE 1", `UPDATE stripe.subscriptions SET payment_settings = jsonb_set(payment_settings, '{payment_method_types}', '[]') WHERE id = $1`, subs[0])
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("%d subscription updates, want 1", len(bodies))
	}
	if v, ok := bodies[0]["payment_settings[payment_method_types]"]; !ok || !reflect.DeepEqual(v, []string{""}) {
		t.Errorf("payment_settings[payment_method_types] sent as %q (present %v), want the empty string", v, ok)
	}
	if got := bodies[0]["payment_settings[payment_method_options][us_bank_account][financial_connections][permissions][1]"]; !reflect.DeepEqual(got, []string{"balances"}) {
		t.Errorf("permissions not sent whole with the hash: %v", bodies[0])
	}
	if pmt := e.stripeObj("subscriptions", subs[0])["payment_settings"].(map[string]any)["payment_method_types"]; pmt != nil && !reflect.DeepEqual(pmt, []any{}) {
		t.Errorf("Stripe's payment_method_types %v after the update, want none", pmt)
	}
	if got := e.local(`SELECT (payment_settings->'payment_method_types')::text FROM stripe.subscriptions WHERE id = $1`, subs[0]); got != "null" && got != "[]" {
		t.Errorf("local payment_method_types %s after the update, want none", got)
	}
}

// TestNestedUnsetThroughProxy: through the proxy and the emulator,
// an UPDATE that sets a key of a column's hash to null or removes it
// follows the spec's request schema. Where the schema takes no empty
// string (a subscription's payment_settings.save_default_payment_method,
// an enum without "") it is refused with 22023 naming the form key,
// before any call: the other row of the statement, fine on its own, is
// not sent either, and Stripe and the local rows stay as they were.
// Where the schema takes "" (payment_settings.payment_method_options.card,
// an unset alternative; a customer's address.line2, a string) key= reaches
// Stripe, which unsets it, and its answer is stored. Before, every such
// key went as key=, which Stripe refuses ("cannot be unset") after the
// calls of the statement's earlier rows.
func TestNestedUnsetThroughProxy(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}
	cus := w.one(`INSERT INTO stripe.customers (email, address) VALUES ('unset@b.co', '{"line1": "1 Main St", "line2": "Apt 2"}') RETURNING id`)
	settings := `{"save_default_payment_method": "off", "payment_method_options": {"card": {"request_three_d_secure": "any"}}}`
	subs := w.twoSubscriptions(cus, settings)
	w.local("subscriptions", subs[0], `payment_settings->'payment_method_options'->'card'->>'request_three_d_secure'`, "any")

	var mu sync.Mutex
	var bodies []url2.Values
	record := faultFunc(func(_ http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == http.MethodPost && (strings.HasPrefix(r.URL.Path, "/v1/subscriptions/") || strings.HasPrefix(r.URL.Path, "/v1/customers/")) {
			mu.Lock()
			bodies = append(bodies, form)
			mu.Unlock()
		}
		return false // the emulator answers
	})
	e.fault.Store(&record)

	refusedSettingsEdit(t, e, w, "removed save_default_payment_method", "payment_settings[save_default_payment_method]",
		`UPDATE stripe.subscriptions SET payment_settings = CASE WHEN id = $1
			THEN jsonb_set(payment_settings, '{payment_method_options,card,request_three_d_secure}', '"automatic"')
			ELSE payment_settings - 'save_default_payment_method' END
		WHERE id IN ($1, $2)`, subs[0], subs[1])
	for _, s := range subs {
		ps := e.stripeObj("subscriptions", s)["payment_settings"].(map[string]any)
		card, _ := ps["payment_method_options"].(map[string]any)["card"].(map[string]any)
		if ps["save_default_payment_method"] != "off" || card["request_three_d_secure"] != "any" {
			t.Errorf("Stripe's %s: payment_settings %v after the refused statement", s, ps)
		}
	}

	// Where the schema takes "": sent so, and applied in Stripe and locally.
	w.exec("UPDATE 1", `UPDATE stripe.subscriptions SET payment_settings = jsonb_set(payment_settings, '{payment_method_options,card}', 'null') WHERE id = $1`, subs[0])
	w.exec("UPDATE 1", `UPDATE stripe.customers SET address = address - 'line2' WHERE id = $1`, cus)
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 {
		t.Fatalf("%d updates reached Stripe, want 2: %v", len(bodies), bodies)
	}
	if v, ok := bodies[0]["payment_settings[payment_method_options][card]"]; !ok || !reflect.DeepEqual(v, []string{""}) {
		t.Errorf("payment_settings[payment_method_options][card] sent as %q (present %v), want the empty string: %v", v, ok, bodies[0])
	}
	if v, ok := bodies[1]["address[line2]"]; !ok || !reflect.DeepEqual(v, []string{""}) {
		t.Errorf("address[line2] sent as %q (present %v), want the empty string: %v", v, ok, bodies[1])
	}
	pmo, _ := e.stripeObj("subscriptions", subs[0])["payment_settings"].(map[string]any)["payment_method_options"].(map[string]any)
	if pmo["card"] != nil {
		t.Errorf("Stripe's payment_method_options.card %v after the update, want null", pmo["card"])
	}
	w.local("subscriptions", subs[0], `payment_settings->'payment_method_options'->'card'`, "null")
	if got := e.stripeObj("customers", cus)["address"].(map[string]any); got["line2"] != nil || got["line1"] != "1 Main St" {
		t.Errorf("Stripe's address %v after the update, want line2 null", got)
	}
	w.local("customers", cus, `address->'line2'`, "null")
}

// TestRemovedArrayThroughProxy: through the proxy and the
// emulator, a two-row UPDATE whose second row gives null for a
// subscription's payment_settings...financial_connections.permissions
// (an array whose request schema takes no empty string) is refused with
// 22023 naming the form key before any call, as emptying it with '[]'
// is: Stripe refuses permissions= ("cannot be unset") after the first
// row's call; the emulator keeps the elements. Neither row changes, in
// Stripe or locally.
func TestRemovedArrayThroughProxy(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}
	cus := w.one(`INSERT INTO stripe.customers (email) VALUES ('removed@b.co') RETURNING id`)
	settings := `{"save_default_payment_method": "off",
		"payment_method_options": {"us_bank_account": {"financial_connections": {"permissions": ["payment_method", "balances"]}}}}`
	subs := w.twoSubscriptions(cus, settings)
	refusedPermissionsEdit(t, e, w, subs, `null`, "permissions set to null")
}

// TestUnsetEnumWithEmptyThroughProxy: SET tax_exempt = NULL, which
// Stripe's spec takes as "" (one value of its enum), reaches Stripe as
// tax_exempt= and is applied; it was refused with 23502.
func TestUnsetEnumWithEmptyThroughProxy(t *testing.T) {
	e := setup(t)
	w := &walker{e: e, t: t, c: e.client(e.proxied(), pgx.QueryExecModeCacheStatement)}
	cus := w.one(`INSERT INTO stripe.customers (email, tax_exempt) VALUES ('exempt@b.co', 'exempt') RETURNING id`)
	before := e.calls()
	w.exec("UPDATE 1", `UPDATE stripe.customers SET tax_exempt = NULL WHERE id = $1`, cus)
	if n := e.calls() - before; n != 1 {
		t.Errorf("%d Stripe calls, want 1", n)
	}
	if got := e.stripeObj("customers", cus)["tax_exempt"]; got == "exempt" {
		t.Errorf("Stripe's tax_exempt still %v", got)
	}
	if got := e.local(`SELECT coalesce(tax_exempt, 'NULL') FROM stripe.customers WHERE id = $1`, cus); got == "exempt" {
		t.Errorf("local tax_exempt still %s", got)
	}
}

// refusedPermissionsEdit runs a two-row UPDATE of subs' payment_settings
// whose second row gives the us_bank_account permissions array value (SQL
// jsonb text), which Stripe can't take there, and checks that it is refused
// with 22023 naming the key before any Stripe call, both rows unchanged in
// Stripe and locally.
func refusedPermissionsEdit(t *testing.T, e *env, w *walker, subs []string, value, what string) {
	t.Helper()
	refusedSettingsEdit(t, e, w, what, "payment_settings[payment_method_options][us_bank_account][financial_connections][permissions]",
		`UPDATE stripe.subscriptions SET payment_settings = CASE WHEN id = $1
			THEN jsonb_set(payment_settings, '{save_default_payment_method}', '"on_subscription"')
			ELSE jsonb_set(payment_settings, '{payment_method_options,us_bank_account,financial_connections,permissions}', $3::jsonb) END
		WHERE id IN ($1, $2)`, subs[0], subs[1], value)
	for _, s := range subs {
		ps := e.stripeObj("subscriptions", s)["payment_settings"].(map[string]any)
		if ps["save_default_payment_method"] != "off" {
			t.Errorf("Stripe's %s: save_default_payment_method %v after the refused statement", s, ps["save_default_payment_method"])
		}
		fc := ps["payment_method_options"].(map[string]any)["us_bank_account"].(map[string]any)["financial_connections"].(map[string]any)
		if !reflect.DeepEqual(fc["permissions"], []any{"payment_method", "balances"}) {
			t.Errorf("Stripe's %s: permissions %v after the refused statement", s, fc["permissions"])
		}
	}
}

// twoSubscriptions creates two monthly send_invoice subscriptions of
// customer cus with payment_settings settings (jsonb text), through the
// proxy, and returns their ids.
func (w *walker) twoSubscriptions(cus, settings string) []string {
	w.t.Helper()
	prod := w.one(`INSERT INTO stripe.products (name) VALUES ('Plan') RETURNING id`)
	price := w.one(`INSERT INTO stripe.prices (product, currency, unit_amount, recurring) VALUES ($1, 'usd', 1000, '{"interval":"month"}') RETURNING id`, prod)
	var subs []string
	for range 2 {
		subs = append(subs, w.one(`INSERT INTO stripe.subscriptions (customer, items, collection_method, days_until_due, payment_settings)
			VALUES ($1, jsonb_build_array(jsonb_build_object('price', $2::text)), 'send_invoice', 7, $3::jsonb) RETURNING id`, cus, price, settings))
	}
	return subs
}

// refusedSettingsEdit runs sql, an UPDATE of subscriptions'
// payment_settings (what names it), and checks that it is refused with
// 22023 naming the form key key before any Stripe call, and that no
// local payment_settings changed; the caller checks Stripe's.
func refusedSettingsEdit(t *testing.T, e *env, w *walker, what, key, sql string, args ...any) {
	t.Helper()
	localBefore := e.local(`SELECT string_agg(payment_settings::text, ' ' ORDER BY id) FROM stripe.subscriptions`)
	before := e.calls()
	_, err := w.c.Exec(e.ctx, sql, args...)
	if sqlstate(err) != "22023" || !strings.Contains(err.Error(), key) {
		t.Fatalf("%s: want 22023 naming the key, got %v", what, err)
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls for the refused statement", n)
	}
	if got := e.local(`SELECT string_agg(payment_settings::text, ' ' ORDER BY id) FROM stripe.subscriptions`); got != localBefore {
		t.Errorf("local payment_settings changed by the refused statement:\n%s\nwas\n%s", got, localBefore)
	}
}
