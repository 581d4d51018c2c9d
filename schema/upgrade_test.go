package schema_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// A database made by an older pgstripe (a column and a table missing) is
// brought up to date by Migrate: nothing lost, new columns filled from _raw.
func TestMigrateUpgradeFromOlderSchema(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := store.Upsert(ctx, tx, "customers", []store.Object{
			{Raw: json.RawMessage(`{"id": "cus_1", "object": "customer", "email": "a@example.com", "created": 1700000000, "default_source": {"id": "card_1", "object": "card"}}`), AsOf: at},
			{Raw: json.RawMessage(`{"id": "cus_2", "object": "customer", "email": null, "created": 1700000001}`), AsOf: at},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE stripe.customers DROP COLUMN email, DROP COLUMN created, DROP COLUMN default_source; DROP TABLE stripe.tax_ids; DROP INDEX stripe.subscriptions_customer_idx`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var email, src *string
	var created time.Time
	if err := conn.QueryRow(ctx, `SELECT email, created, default_source FROM stripe.customers WHERE id = 'cus_1'`).Scan(&email, &created, &src); err != nil {
		t.Fatal(err)
	}
	if email == nil || *email != "a@example.com" || created.Unix() != 1700000000 || src == nil || *src != "card_1" {
		t.Errorf("refilled cus_1: email %v created %v default_source %v", email, created, src)
	}
	if err := conn.QueryRow(ctx, `SELECT email FROM stripe.customers WHERE id = 'cus_2'`).Scan(&email); err != nil || email != nil {
		t.Errorf("cus_2 email %v, %v", email, err)
	}
	if cols := columnTypes(t, conn, "tax_ids"); cols["value"] != "text" || cols["_raw"] != "jsonb" {
		t.Errorf("tax_ids not recreated: %v", cols)
	}
	var ix int
	conn.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = 'stripe' AND indexname IN ('subscriptions_customer_idx', 'customers_created_idx')`).Scan(&ix)
	if ix != 2 {
		t.Errorf("%d of 2 indexes after upgrade", ix)
	}
	var detail map[string]any
	if err := conn.QueryRow(ctx, `SELECT detail FROM stripe_sync.log WHERE kind = 'migrate_add_columns'`).Scan(&detail); err != nil {
		t.Fatal(err)
	}
	if detail["table"] != "customers" || detail["rows_filled"] != float64(2) {
		t.Errorf("log detail %v", detail)
	}
	// And once more: nothing to do.
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// A column of the wrong type (say, from a hand edit) is left alone and noted.
func TestMigrateKeepsRetypedColumn(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE stripe.customers ALTER COLUMN balance TYPE text`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if cols := columnTypes(t, conn, "customers"); cols["balance"] != "text" {
		t.Errorf("balance retyped to %s", cols["balance"])
	}
	// Noted once, not on every later run.
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var n int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'migrate_type_mismatch'`).Scan(&n)
	if n != 1 {
		t.Errorf("%d type mismatch notes", n)
	}
}

// Every created column is a timestamptz, subscription_items' too (its spec
// lacks format unix-time; the generator goes by its description).
func TestCreatedIsTimestamptzEverywhere(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tb := range schema.Tables() {
		c, ok := tb.Column("created")
		if !ok {
			continue
		}
		n++
		if c.Kind != schema.KindTimestamp || c.PGType != "timestamptz" {
			t.Errorf("%s.created: kind %s, type %s", tb.Name, c.Kind, c.PGType)
		}
		if got := columnTypes(t, conn, tb.Name)["created"]; got != "timestamp with time zone" {
			t.Errorf("stripe.%s.created is %q in the database", tb.Name, got)
		}
	}
	if n < 20 {
		t.Fatalf("only %d tables have created", n)
	}
}

// oldSubscriptionItems replaces stripe.subscription_items with the table an
// earlier pgstripe made (created bigint; otherwise the same DDL, index on
// created and guard included) holding rows of the given created values
// (nil: NULL), and returns its ids in order.
func oldSubscriptionItems(t *testing.T, conn *pgx.Conn, created []*int64) []string {
	t.Helper()
	ctx := context.Background()
	tb, _ := schema.Lookup("subscription_items")
	ddl := tb.CreateTableSQL()
	old := strings.Replace(ddl, `"created" timestamptz,`, `"created" bigint,`, 1)
	if old == ddl {
		t.Fatal("no created timestamptz in the DDL")
	}
	if _, err := conn.Exec(ctx, "DROP TABLE stripe.subscription_items;\n"+old); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, c := range created {
		id := "si_" + string(rune('a'+i))
		raw := map[string]any{"id": id, "object": "subscription_item", "subscription": "sub_1", "quantity": i + 1}
		if c != nil {
			raw["created"] = *c
		}
		b, _ := json.Marshal(raw)
		if _, err := conn.Exec(ctx, `INSERT INTO stripe.subscription_items (id, created, subscription, quantity, _raw, _synced_at, _as_of) VALUES ($1, $2, 'sub_1', $3, $4, now(), '2024-01-01Z')`,
			id, c, i+1, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if got := columnTypes(t, conn, "subscription_items")["created"]; got != "bigint" {
		t.Fatalf("old table's created is %s", got)
	}
	return ids
}

func i64(v int64) *int64 { return &v }

// A database of the previous version, whose subscription_items.created is
// bigint, is migrated in place: the column becomes timestamptz, every row
// keeps its instant (NULL stays NULL; seconds no timestamptz holds become
// NULL, as sync stores them, instead of failing the upgrade), the index and
// guard survive, the change is logged once, and sync writes the table again.
func TestMigrateRetypesBigintCreated(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	vals := []*int64{i64(1700000000), i64(1), i64(-86400), nil, i64(1e12)}
	ids := oldSubscriptionItems(t, conn, vals)
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if got := columnTypes(t, conn, "subscription_items")["created"]; got != "timestamp with time zone" {
		t.Fatalf("created is %s after Migrate", got)
	}
	for i, id := range ids {
		var created *time.Time
		var quantity int64
		if err := conn.QueryRow(ctx, `SELECT created, quantity FROM stripe.subscription_items WHERE id = $1`, id).Scan(&created, &quantity); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if quantity != int64(i+1) {
			t.Errorf("%s: quantity %d, want %d", id, quantity, i+1)
		}
		switch v := vals[i]; {
		case v == nil || *v == 1e12:
			if created != nil {
				t.Errorf("%s: created %v, want NULL", id, created)
			}
		case created == nil || !created.Equal(time.Unix(*v, 0)):
			t.Errorf("%s: created %v, want %v", id, created, time.Unix(*v, 0).UTC())
		}
	}
	var ix, guard int
	conn.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = 'stripe' AND indexname = 'subscription_items_created_idx'`).Scan(&ix)
	conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'stripe.subscription_items'::regclass AND tgname = '_pgstripe_refuse_local_write'`).Scan(&guard)
	if ix != 1 || guard != 1 {
		t.Errorf("after the retype: %d created index, %d guard", ix, guard)
	}
	// Indexed by the instant now: a range scan finds the row.
	var byRange string
	if err := conn.QueryRow(ctx, `SELECT id FROM stripe.subscription_items WHERE created >= '2023-11-14T22:13:20Z' AND created < '2023-11-14T22:13:21Z'`).Scan(&byRange); err != nil || byRange != ids[0] {
		t.Errorf("range on created: %q, %v", byRange, err)
	}
	logged := func() []string {
		t.Helper()
		var out []string
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(detail::text), '{}') FROM stripe_sync.log WHERE kind = 'migrate_retype_columns'`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if l := logged(); len(l) != 1 || !strings.Contains(l[0], `"table": "subscription_items"`) || !strings.Contains(l[0], `"columns": ["created"]`) {
		t.Errorf("retype log %v", l)
	}
	var mismatch int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'migrate_type_mismatch'`).Scan(&mismatch)
	if mismatch != 0 {
		t.Errorf("%d type mismatch notes", mismatch)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if l := logged(); len(l) != 1 {
		t.Errorf("a second Migrate logged again: %v", l)
	}
	// sync's writer works on the retyped table.
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := store.Upsert(ctx, tx, "subscription_items", []store.Object{
			{Raw: json.RawMessage(`{"id": "si_new", "object": "subscription_item", "subscription": "sub_1", "created": 1700000123, "quantity": 1}`), AsOf: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var created time.Time
	if err := conn.QueryRow(ctx, `SELECT created FROM stripe.subscription_items WHERE id = 'si_new'`).Scan(&created); err != nil || created.Unix() != 1700000123 {
		t.Errorf("upserted created %v, %v", created, err)
	}
}

// A view on the old column stops the retype (Postgres can't retype a
// column a view uses): Migrate fails saying what is in the way and what to
// do, and changes nothing.
func TestMigrateRetypeBlockedByView(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	oldSubscriptionItems(t, conn, []*int64{i64(1700000000)})
	if _, err := conn.Exec(ctx, `CREATE VIEW public.recent_items AS SELECT id, created FROM stripe.subscription_items WHERE created > 1690000000`); err != nil {
		t.Fatal(err)
	}
	err := schema.Migrate(ctx, conn)
	if err == nil {
		t.Fatal("Migrate succeeded with a view on the bigint column")
	}
	for _, want := range []string{`"stripe"."subscription_items": column created`, "timestamptz", "recent_items", "nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if got := columnTypes(t, conn, "subscription_items")["created"]; got != "bigint" {
		t.Errorf("created is %s after the failed Migrate", got)
	}
	var created int64
	if err := conn.QueryRow(ctx, `SELECT created FROM public.recent_items`).Scan(&created); err != nil || created != 1700000000 {
		t.Errorf("view reads %d, %v", created, err)
	}
	// Out of the way, the retype goes through.
	if _, err := conn.Exec(ctx, `DROP VIEW public.recent_items`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if got := columnTypes(t, conn, "subscription_items")["created"]; got != "timestamp with time zone" {
		t.Errorf("created is %s", got)
	}
}

// The retype waits for the table's lock no longer than any other change of
// Migrate: a long reader makes it give up (55P03) with nothing changed,
// and once the reader ends it goes through.
func TestMigrateRetypeLockWaitBounded(t *testing.T) {
	conn, url := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	oldSubscriptionItems(t, conn, []*int64{i64(1700000000)})
	defer schema.SetMigrateLockWait(100*time.Millisecond, 2)()
	long, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close(ctx)
	tx, err := long.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM stripe.subscription_items`); err != nil {
		t.Fatal(err)
	}
	err = schema.Migrate(ctx, conn)
	if err == nil || !strings.Contains(err.Error(), "55P03") || !strings.Contains(err.Error(), "long transaction") {
		t.Fatalf("Migrate with the table held: %v", err)
	}
	if got := columnTypes(t, conn, "subscription_items")["created"]; got != "bigint" {
		t.Errorf("created is %s after the failed Migrate", got)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var created time.Time
	if err := conn.QueryRow(ctx, `SELECT created FROM stripe.subscription_items`).Scan(&created); err != nil || created.Unix() != 1700000000 {
		t.Errorf("created %v, %v", created, err)
	}
}

// TestRetypeStatementTimeout: a retype that the connection's
// statement_timeout stops (the rewrite outlasts it; here an index of the
// user's, rebuilt with the table, is slow) is no dependency of the user's
// to drop: Migrate says it was statement_timeout and what to do, changes
// nothing, and goes through once the timeout allows the rewrite.
func TestRetypeStatementTimeout(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	oldSubscriptionItems(t, conn, []*int64{i64(1700000000)})
	// Rebuilt by the rewrite, once per row; it does not use created. Slow
	// only while review.slow is on, and then far beyond the timeout, so
	// that nothing but the rewrite can reach it.
	if _, err := conn.Exec(ctx, `CREATE FUNCTION public.slow_key(text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.current_setting('review.slow', true) = 'on' THEN
        PERFORM pg_catalog.pg_sleep(30);
    END IF;
    RETURN $1;
END$$;
CREATE INDEX items_slow_idx ON stripe.subscription_items (public.slow_key(id))`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SET review.slow = on; SET statement_timeout = '3s'`); err != nil {
		t.Fatal(err)
	}
	err := schema.Migrate(ctx, conn)
	if err == nil {
		t.Fatal("Migrate succeeded within a statement_timeout shorter than the rewrite")
	}
	for _, want := range []string{"57014", "statement_timeout", "nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "drop what uses it") {
		t.Errorf("error blames a dependency there is none of: %v", err)
	}
	if got := columnTypes(t, conn, "subscription_items")["created"]; got != "bigint" {
		t.Errorf("created is %s after the failed Migrate", got)
	}
	if _, err := conn.Exec(ctx, `SET review.slow = off; SET statement_timeout = 0`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if got := columnTypes(t, conn, "subscription_items")["created"]; got != "timestamp with time zone" {
		t.Errorf("created is %s", got)
	}
}
