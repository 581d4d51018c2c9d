package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-mock/embedded"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func setup(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	return conn
}

// upsert runs store.Upsert in its own transaction.
func upsert(t testing.TB, conn *pgx.Conn, table string, objs ...store.Object) store.Result {
	t.Helper()
	ctx := context.Background()
	var res store.Result
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var err error
		res, err = store.Upsert(ctx, tx, table, objs)
		return err
	})
	if err != nil {
		t.Fatalf("upsert %s: %v", table, err)
	}
	return res
}

func fixtures(t testing.TB) map[string]json.RawMessage {
	t.Helper()
	var f struct {
		Resources map[string]json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(embedded.OpenAPIFixtures, &f); err != nil {
		t.Fatal(err)
	}
	return f.Resources
}

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Every fixture object of every table upserts, and every row's typed columns
// agree with its _raw.
func TestFixturesRoundTrip(t *testing.T) {
	conn := setup(t)
	fx := fixtures(t)
	for _, tb := range schema.Tables() {
		raw, ok := fx[tb.Object]
		if !ok {
			t.Errorf("no fixture for %s", tb.Object)
			continue
		}
		if tb.Virtual {
			// An upcoming invoice is an invoice without an id.
			var m map[string]any
			json.Unmarshal(raw, &m)
			delete(m, "id")
			raw, _ = json.Marshal(m)
		}
		res := upsert(t, conn, tb.Name, store.Object{Raw: raw, AsOf: t0})
		if len(res.Applied) != 1 {
			t.Errorf("%s: %+v", tb.Name, res)
		}
	}
	for _, tb := range schema.Tables() {
		n := checkColumnsAgree(t, conn, tb)
		if n == 0 {
			t.Errorf("%s: no rows", tb.Name)
		}
	}
}

// checkColumnsAgree compares every typed column of every row of tb with the
// value an independent Go conversion of _raw gives, and returns the rows seen.
func checkColumnsAgree(t testing.TB, conn *pgx.Conn, tb *schema.Table) int {
	t.Helper()
	rows, err := conn.Query(context.Background(), fmt.Sprintf("SELECT to_jsonb(t) FROM %s t", tb.QualifiedName()))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var row map[string]json.RawMessage
		if err := rows.Scan(&row); err != nil {
			t.Fatal(err)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(row["_raw"], &raw); err != nil {
			t.Fatal(err)
		}
		for _, c := range tb.Columns {
			if tb.Parent != nil && c.Name == tb.Parent.Column {
				continue // the parent's id, which may differ from the field (fixtures)
			}
			if err := agree(c, raw[c.Field], row[c.Name]); err != nil {
				t.Errorf("%s.%s: %v", tb.Name, c.Name, err)
			}
		}
	}
	return n
}

func isNull(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

func agree(c schema.Column, raw, col json.RawMessage) error {
	if isNull(raw) {
		if !isNull(col) {
			return fmt.Errorf("raw is null, column %s", col)
		}
		return nil
	}
	var want any
	switch c.Kind {
	case schema.KindText, schema.KindInteger, schema.KindNumber, schema.KindBoolean:
		want = decodeAny(raw)
	case schema.KindExpandable:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			var o struct{ ID string }
			json.Unmarshal(raw, &o)
			s = o.ID
		}
		want = s
	case schema.KindTimestamp:
		var sec int64
		json.Unmarshal(raw, &sec)
		var ts time.Time
		if err := json.Unmarshal(col, &ts); err != nil {
			return fmt.Errorf("column %s: %v", col, err)
		}
		if ts.Unix() != sec {
			return fmt.Errorf("column %s, raw %d", col, sec)
		}
		return nil
	default:
		want = decodeAny(raw)
	}
	got := decodeAny(col)
	if !reflect.DeepEqual(got, want) {
		if g, ok := got.(float64); ok {
			if w, ok := want.(float64); ok && math.Abs(g-w) < 1e-9 {
				return nil
			}
		}
		return fmt.Errorf("column %s, raw %s", col, raw)
	}
	return nil
}

func decodeAny(v json.RawMessage) any {
	var x any
	json.Unmarshal(v, &x)
	return x
}

func customer(id string, fields string) json.RawMessage {
	if fields != "" {
		fields = ", " + fields
	}
	return json.RawMessage(fmt.Sprintf(`{"id": %q, "object": "customer", "created": 1700000000, "email": "a@example.com", "balance": 5, "metadata": {"k": "v"}%s}`, id, fields))
}

func TestOrderingGuard(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	email := func(id string) string {
		var e *string
		if err := conn.QueryRow(ctx, `SELECT email FROM stripe.customers WHERE id = $1`, id).Scan(&e); err != nil {
			t.Fatal(err)
		}
		if e == nil {
			return "<nil>"
		}
		return *e
	}
	res := upsert(t, conn, "customers", store.Object{Raw: customer("cus_1", `"name": "v1"`), AsOf: t0})
	if !slices.Equal(res.Applied, []string{"cus_1"}) {
		t.Fatalf("first: %+v", res)
	}
	// Newer replaces.
	res = upsert(t, conn, "customers", store.Object{Raw: json.RawMessage(`{"id": "cus_1", "object": "customer", "email": "new@example.com"}`), AsOf: t0.Add(time.Second)})
	if !slices.Equal(res.Applied, []string{"cus_1"}) || email("cus_1") != "new@example.com" {
		t.Fatalf("newer: %+v, email %s", res, email("cus_1"))
	}
	// Older is stale.
	res = upsert(t, conn, "customers", store.Object{Raw: customer("cus_1", ""), AsOf: t0})
	if !slices.Equal(res.Stale, []string{"cus_1"}) || email("cus_1") != "new@example.com" {
		t.Fatalf("older: %+v, email %s", res, email("cus_1"))
	}
	// Same time, same content: stale (nothing to do).
	res = upsert(t, conn, "customers", store.Object{Raw: json.RawMessage(`{"object": "customer", "id": "cus_1",  "email": "new@example.com"}`), AsOf: t0.Add(time.Second)})
	if !slices.Equal(res.Stale, []string{"cus_1"}) {
		t.Fatalf("same: %+v", res)
	}
	// Same time, other content: ambiguous, row untouched.
	res = upsert(t, conn, "customers", store.Object{Raw: json.RawMessage(`{"id": "cus_1", "object": "customer", "email": "other@example.com"}`), AsOf: t0.Add(time.Second)})
	if !slices.Equal(res.Ambiguous, []string{"cus_1"}) || email("cus_1") != "new@example.com" {
		t.Fatalf("tie: %+v, email %s", res, email("cus_1"))
	}
	// Within one batch the newest wins, whatever the order.
	res = upsert(t, conn, "customers",
		store.Object{Raw: customer("cus_2", `"email": "late@example.com"`), AsOf: t0.Add(2 * time.Second)},
		store.Object{Raw: customer("cus_2", `"email": "early@example.com"`), AsOf: t0.Add(time.Second)},
	)
	if !slices.Equal(res.Applied, []string{"cus_2"}) || !slices.Equal(res.Stale, []string{"cus_2"}) || email("cus_2") != "late@example.com" {
		t.Fatalf("batch: %+v, email %s", res, email("cus_2"))
	}
	// A tie within one batch is applied (one of them) and reported ambiguous.
	res = upsert(t, conn, "customers",
		store.Object{Raw: customer("cus_3", `"email": "x@example.com"`), AsOf: t0},
		store.Object{Raw: customer("cus_3", `"email": "y@example.com"`), AsOf: t0},
	)
	if !slices.Equal(res.Applied, []string{"cus_3"}) || !slices.Equal(res.Ambiguous, []string{"cus_3"}) {
		t.Fatalf("batch tie: %+v", res)
	}
}

func TestDeleteAndTombstone(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	upsert(t, conn, "customers", store.Object{Raw: customer("cus_d", ""), AsOf: t0})
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		return store.Delete(ctx, tx, "customers", "cus_d", t0.Add(time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows after delete", n)
	}
	// A late event (even a newer-looking one) never brings it back.
	res := upsert(t, conn, "customers", store.Object{Raw: customer("cus_d", ""), AsOf: t0.Add(time.Hour)})
	if !slices.Equal(res.Tombstoned, []string{"cus_d"}) {
		t.Fatalf("%+v", res)
	}
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers`).Scan(&n)
	if n != 0 {
		t.Fatalf("tombstoned row came back")
	}
	// A deletion stub deletes.
	upsert(t, conn, "customers", store.Object{Raw: customer("cus_e", ""), AsOf: t0})
	res = upsert(t, conn, "customers", store.Object{Raw: json.RawMessage(`{"id": "cus_e", "object": "customer", "deleted": true}`), AsOf: t0.Add(time.Second)})
	if !slices.Equal(res.Deleted, []string{"cus_e"}) {
		t.Fatalf("stub: %+v", res)
	}
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.tombstones WHERE object = 'customers'`).Scan(&n)
	if n != 2 {
		t.Fatalf("%d tombstones, want 2", n)
	}
}

func invoice(id string, lineIDs []string, hasMore bool) json.RawMessage {
	var lines []map[string]any
	for _, l := range lineIDs {
		lines = append(lines, map[string]any{"id": l, "object": "line_item", "amount": 100, "invoice": id,
			"price": map[string]any{"id": "price_1", "object": "price"}, "period": map[string]any{"start": 1, "end": 2}})
	}
	b, _ := json.Marshal(map[string]any{"id": id, "object": "invoice", "customer": map[string]any{"id": "cus_1", "object": "customer"},
		"created": 1700000000, "total": 100 * len(lineIDs),
		"lines": map[string]any{"object": "list", "data": lines, "has_more": hasMore, "url": "/v1/invoices/" + id + "/lines"}})
	return b
}

func lineIDs(t *testing.T, conn *pgx.Conn, inv string) []string {
	t.Helper()
	rows, _ := conn.Query(context.Background(), `SELECT id FROM stripe.invoice_line_items WHERE invoice = $1 ORDER BY id`, inv)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestChildrenReplacedWithParent(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	upsert(t, conn, "invoices", store.Object{Raw: invoice("in_1", []string{"il_a", "il_b", "il_c"}, false), AsOf: t0})
	if got := lineIDs(t, conn, "in_1"); !slices.Equal(got, []string{"il_a", "il_b", "il_c"}) {
		t.Fatalf("lines %v", got)
	}
	var cust, price string
	conn.QueryRow(ctx, `SELECT i.customer, l.price->>'id' FROM stripe.invoices i JOIN stripe.invoice_line_items l ON l.invoice = i.id LIMIT 1`).Scan(&cust, &price)
	if cust != "cus_1" || price != "price_1" {
		t.Errorf("expandable customer %q, line price %q", cust, price)
	}
	// A newer state drops il_b.
	upsert(t, conn, "invoices", store.Object{Raw: invoice("in_1", []string{"il_a", "il_c"}, false), AsOf: t0.Add(time.Second)})
	if got := lineIDs(t, conn, "in_1"); !slices.Equal(got, []string{"il_a", "il_c"}) {
		t.Fatalf("after newer: lines %v", got)
	}
	// An older state changes nothing, children included.
	upsert(t, conn, "invoices", store.Object{Raw: invoice("in_1", []string{"il_x"}, false), AsOf: t0})
	if got := lineIDs(t, conn, "in_1"); !slices.Equal(got, []string{"il_a", "il_c"}) {
		t.Fatalf("after older: lines %v", got)
	}
	// A truncated embedded list adds but never removes, and says so.
	res := upsert(t, conn, "invoices", store.Object{Raw: invoice("in_1", []string{"il_d"}, true), AsOf: t0.Add(2 * time.Second)})
	if !slices.Equal(res.Incomplete, []string{"in_1"}) {
		t.Fatalf("incomplete not reported: %+v", res)
	}
	if got := lineIDs(t, conn, "in_1"); !slices.Equal(got, []string{"il_a", "il_c", "il_d"}) {
		t.Fatalf("after truncated: lines %v", got)
	}
	// A complete list passed separately replaces the embedded one.
	var full []json.RawMessage
	for _, id := range []string{"il_d", "il_e"} {
		full = append(full, json.RawMessage(fmt.Sprintf(`{"id": %q, "object": "line_item", "amount": 1}`, id)))
	}
	res = upsert(t, conn, "invoices", store.Object{Raw: invoice("in_1", []string{"il_d"}, true), AsOf: t0.Add(3 * time.Second),
		Children: map[string][]json.RawMessage{"lines": full}})
	if len(res.Incomplete) != 0 {
		t.Fatalf("%+v", res)
	}
	if got := lineIDs(t, conn, "in_1"); !slices.Equal(got, []string{"il_d", "il_e"}) {
		t.Fatalf("after complete: lines %v", got)
	}
	// The same line id under another invoice is another row (key invoice, id).
	upsert(t, conn, "invoices", store.Object{Raw: invoice("in_2", []string{"il_d"}, false), AsOf: t0})
	if got := lineIDs(t, conn, "in_2"); !slices.Equal(got, []string{"il_d"}) {
		t.Fatalf("in_2 lines %v", got)
	}
	// Deleting the invoice removes its lines.
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return store.Delete(ctx, tx, "invoices", "in_1", t0.Add(time.Hour)) }); err != nil {
		t.Fatal(err)
	}
	if got := lineIDs(t, conn, "in_1"); len(got) != 0 {
		t.Fatalf("lines survive their invoice: %v", got)
	}
}

func TestChildWrittenLaterSurvivesOlderParent(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	sub := func(items ...string) json.RawMessage {
		var data []map[string]any
		for _, id := range items {
			data = append(data, map[string]any{"id": id, "object": "subscription_item", "subscription": "sub_1", "quantity": 1})
		}
		b, _ := json.Marshal(map[string]any{"id": "sub_1", "object": "subscription", "customer": "cus_1",
			"items": map[string]any{"object": "list", "data": data, "has_more": false}})
		return b
	}
	upsert(t, conn, "subscriptions", store.Object{Raw: sub("si_1"), AsOf: t0})
	// Write-through adds si_2 at t0+5s, then a subscription state from t0+2s arrives.
	upsert(t, conn, "subscription_items", store.Object{Raw: json.RawMessage(`{"id": "si_2", "object": "subscription_item", "subscription": "sub_1", "quantity": 3}`), AsOf: t0.Add(5 * time.Second)})
	upsert(t, conn, "subscriptions", store.Object{Raw: sub("si_1"), AsOf: t0.Add(2 * time.Second)})
	rows, _ := conn.Query(ctx, `SELECT id FROM stripe.subscription_items WHERE subscription = 'sub_1' ORDER BY id`)
	ids, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	if !slices.Equal(ids, []string{"si_1", "si_2"}) {
		t.Fatalf("items %v", ids)
	}
}

func TestUnexpectedTypesAndUnknownFields(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	raw := json.RawMessage(`{"id": "cus_t", "object": "customer", "balance": "lots", "created": 1.5e300, "delinquent": "no", "email": 7, "default_source": 12, "brand_new_field": {"x": 1}}`)
	res := upsert(t, conn, "customers", store.Object{Raw: raw, AsOf: t0})
	if !slices.Equal(res.Applied, []string{"cus_t"}) {
		t.Fatalf("%+v", res)
	}
	var balance, email, src, created, delinquent *string
	var kept json.RawMessage
	err := conn.QueryRow(ctx, `SELECT balance::text, email, default_source, created::text, delinquent::text, _raw->'brand_new_field' FROM stripe.customers WHERE id = 'cus_t'`).
		Scan(&balance, &email, &src, &created, &delinquent, &kept)
	if err != nil {
		t.Fatal(err)
	}
	if balance != nil || email != nil || src != nil || created != nil || delinquent != nil {
		t.Errorf("mistyped fields not NULL: %v %v %v %v %v", balance, email, src, created, delinquent)
	}
	if string(kept) != `{"x": 1}` {
		t.Errorf("unknown field in _raw: %s", kept)
	}
}

func TestBadInput(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := store.Upsert(ctx, tx, "nope", nil); err == nil {
		t.Error("unknown table accepted")
	}
	if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: json.RawMessage(`{"object": "customer"}`), AsOf: t0}}); err == nil {
		t.Error("object without id accepted")
	}
	if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: json.RawMessage(`[1]`), AsOf: t0}}); err == nil {
		t.Error("non-object accepted")
	}
	if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: customer("cus_z", "")}}); err == nil {
		t.Error("object without AsOf accepted")
	}
	if err := store.Delete(ctx, tx, "customers", "", t0); err == nil {
		t.Error("delete of an empty id accepted")
	}
	// None of the refusals reached Postgres: the transaction is usable.
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("transaction broken: %v", err)
	}
}

// Upsert belongs to the caller's transaction: a rollback leaves nothing.
func TestCallersTransaction(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Upsert(ctx, tx, "invoices", []store.Object{{Raw: invoice("in_r", []string{"il_1"}, false), AsOf: t0}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM stripe.invoices) + (SELECT count(*) FROM stripe.invoice_line_items)`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows after rollback", n)
	}
}

func TestUpcomingInvoiceKeyedByCustomer(t *testing.T) {
	conn := setup(t)
	up := func(total int, at time.Time) store.Result {
		return upsert(t, conn, "upcoming_invoices", store.Object{
			Raw: json.RawMessage(fmt.Sprintf(`{"object": "invoice", "customer": "cus_u", "total": %d, "lines": {"object": "list", "data": [], "has_more": false}}`, total)), AsOf: at})
	}
	up(100, t0)
	if res := up(200, t0.Add(time.Second)); !slices.Equal(res.Applied, []string{"cus_u"}) {
		t.Fatalf("%+v", res)
	}
	var total int
	conn.QueryRow(context.Background(), `SELECT total FROM stripe.upcoming_invoices WHERE customer = 'cus_u'`).Scan(&total)
	if total != 200 {
		t.Fatalf("total %d", total)
	}
}

// Two transactions writing the same id at the same _as_of with different
// content: the second waits for the first and must report the id ambiguous,
// though the row did not exist when its statement started.
func TestConcurrentTieIsAmbiguous(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	other, err := pgx.Connect(ctx, conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	txA, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Upsert(ctx, txA, "customers", []store.Object{{Raw: customer("cus_c", `"name": "A"`), AsOf: t0}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan store.Result, 1)
	errc := make(chan error, 1)
	go func() {
		var res store.Result
		errc <- pgx.BeginFunc(ctx, other, func(tx pgx.Tx) error {
			var err error
			res, err = store.Upsert(ctx, tx, "customers", []store.Object{{Raw: customer("cus_c", `"name": "B"`), AsOf: t0}})
			return err
		})
		done <- res
	}()
	time.Sleep(200 * time.Millisecond) // let B block on A's row
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if res := <-done; !slices.Equal(res.Ambiguous, []string{"cus_c"}) {
		t.Fatalf("second writer: %+v", res)
	}
	var name string
	conn.QueryRow(ctx, `SELECT name FROM stripe.customers WHERE id = 'cus_c'`).Scan(&name)
	if name != "A" {
		t.Fatalf("name %q", name)
	}
}

// Postgres's jsonb can't hold \u0000; one such string must not fail the batch
// (and the caller's transaction).
func TestNULInString(t *testing.T) {
	conn := setup(t)
	raw := json.RawMessage(`{"id": "cus_nul", "object": "customer", "name": "a\u0000b", "description": "keep \\u0000 text"}`)
	res := upsert(t, conn, "customers", store.Object{Raw: raw, AsOf: t0}, store.Object{Raw: customer("cus_ok", ""), AsOf: t0})
	if len(res.Applied) != 2 {
		t.Fatalf("%+v", res)
	}
	var name, desc string
	conn.QueryRow(context.Background(), `SELECT name, description FROM stripe.customers WHERE id = 'cus_nul'`).Scan(&name, &desc)
	if name != "a\ufffdb" || desc != `keep \u0000 text` {
		t.Fatalf("name %q description %q", name, desc)
	}
}

func TestInvalidSeparateChildren(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	_, err = store.Upsert(ctx, tx, "invoices", []store.Object{{Raw: invoice("in_bad", nil, true), AsOf: t0,
		Children: map[string][]json.RawMessage{"lines": {json.RawMessage(`{"id": "il_1", "amount": tru}`)}}}})
	if err == nil {
		t.Fatal("invalid child JSON accepted")
	}
	// The transaction is still usable: the error came before Postgres saw it.
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("transaction broken: %v", err)
	}
}

// An embedded child that can't be stored (no id) doesn't fail its parent:
// it is skipped, its siblings are kept and the parent reported incomplete.
func TestChildWithoutID(t *testing.T) {
	conn := setup(t)
	raw := json.RawMessage(`{"id": "in_k", "object": "invoice", "lines": {"object": "list", "has_more": false,
		"data": [{"id": "il_1", "object": "line_item"}, {"object": "line_item", "amount": 5}]}}`)
	res := upsert(t, conn, "invoices", store.Object{Raw: raw, AsOf: t0})
	if !slices.Equal(res.Applied, []string{"in_k"}) || !slices.Equal(res.Incomplete, []string{"in_k"}) {
		t.Fatalf("%+v", res)
	}
	if got := lineIDs(t, conn, "in_k"); !slices.Equal(got, []string{"il_1"}) {
		t.Fatalf("lines %v", got)
	}
}

// An upsert waiting on a row that a concurrent Delete removes must not bring
// it back when the Delete commits.
func TestConcurrentDeleteWins(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	upsert(t, conn, "customers", store.Object{Raw: customer("cus_r", ""), AsOf: t0})
	other, err := pgx.Connect(ctx, conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	txD, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, txD, "customers", "cus_r", t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	done := make(chan store.Result, 1)
	errc := make(chan error, 1)
	go func() {
		var res store.Result
		errc <- pgx.BeginFunc(ctx, other, func(tx pgx.Tx) error {
			var err error
			res, err = store.Upsert(ctx, tx, "customers", []store.Object{{Raw: customer("cus_r", `"name": "late"`), AsOf: t0.Add(time.Second)}})
			return err
		})
		done <- res
	}()
	time.Sleep(200 * time.Millisecond) // let the upsert block on the row
	if err := txD.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if res := <-done; !slices.Equal(res.Tombstoned, []string{"cus_r"}) {
		t.Errorf("upsert after concurrent delete: %+v", res)
	}
	var n int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE id = 'cus_r'`).Scan(&n)
	if n != 0 {
		t.Fatal("deleted customer came back")
	}
}
