package schema_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/schema"
)

// columnDefaults reads what model generators read: information_schema's
// column_default of every column of schema stripe ("table.column" → default,
// "" for none).
func columnDefaults(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT table_name, column_name, coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = 'stripe'`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var tbl, col, def string
		if err := rows.Scan(&tbl, &col, &def); err != nil {
			t.Fatal(err)
		}
		out[tbl+"."+col] = def
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSetByStripeDefaults checks that the columns Stripe and sync fill have
// a default, and no other column has one.
func checkSetByStripeDefaults(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	defs := columnDefaults(t, conn)
	want := map[string]bool{}
	for _, tb := range schema.Tables() {
		for _, col := range tb.SetByStripeColumns() {
			want[tb.Name+"."+col] = true
		}
	}
	for _, col := range []string{"customers.id", "customers._raw", "customers._synced_at", "customers._as_of", "invoice_line_items.id"} {
		if !want[col] {
			t.Errorf("%s is not among the columns set by Stripe", col)
		}
	}
	for _, col := range []string{"upcoming_invoices.customer", "invoice_line_items.invoice", "customers.email", "customers._params"} {
		if want[col] {
			t.Errorf("%s is among the columns set by Stripe", col)
		}
	}
	for col, def := range defs {
		if want[col] != (def != "") {
			t.Errorf("%s: column_default %q", col, def)
		}
		if want[col] && !strings.HasPrefix(def, schema.SetByStripeFunc+"(") {
			t.Errorf("%s: column_default %q", col, def)
		}
	}
	if len(defs) == 0 {
		t.Fatal("no columns")
	}
}

// Model generators (Prisma db pull, kysely-codegen, drizzle-kit,
// sequelize-auto) take a NOT NULL column without a default for one that
// must be given on create. The columns Stripe and sync fill have a default,
// and that default, evaluated by an INSERT that bypasses the proxy, refuses
// it with a message naming the proxy.
func TestSetByStripeDefaults(t *testing.T) {
	conn, url := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	checkSetByStripeDefaults(t, conn)

	// An application role that has no USAGE on stripe_sync: a stored default
	// is not looked up by name, so it still gets the message.
	// Roles are the cluster's, which the package's tests share (and rerun
	// with -count): one name per run.
	role := fmt.Sprintf("app_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'pw';
GRANT USAGE ON SCHEMA stripe TO `+role+`;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA stripe TO `+role); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, "pw"
	app, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	for _, c := range []struct{ table, sql string }{
		{"customers", `INSERT INTO stripe.customers (email) VALUES ('a@example.com')`},
		{"customers", `INSERT INTO stripe.customers (id, email, _raw, _synced_at, _as_of) VALUES (DEFAULT, 'a@example.com', DEFAULT, DEFAULT, DEFAULT)`},
		{"products", `INSERT INTO stripe.products DEFAULT VALUES`},
		// A local-only row with an id still lacks what sync fills.
		{"prices", `INSERT INTO stripe.prices (id, currency) VALUES ('price_x', 'usd')`},
		{"invoice_line_items", `INSERT INTO stripe.invoice_line_items (invoice, amount) VALUES ('in_1', 5)`},
	} {
		_, err := app.Exec(ctx, c.sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || pe.Message != fmt.Sprintf("stripe.%s is written only through pgstripe's proxy, by an INSERT statement of its own", c.table) ||
			!strings.Contains(pe.Hint, "6543") {
			t.Errorf("%s: %v (%+v)", c.sql, err, pe)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d customers, %v", n, err)
	}
	// Given explicitly, as sync does, the default is never evaluated.
	if _, err := app.Exec(ctx, `INSERT INTO stripe.customers (id, _raw, _synced_at, _as_of) VALUES ('cus_1', '{}', now(), now())`); err != nil {
		t.Errorf("insert with every column given: %v", err)
	}
	// Planning an INSERT that leaves the columns out does not evaluate the
	// default (the proxy forwards Parse, Bind and Describe of an
	// intercepted write upstream; only Execute is its own): EXPLAIN plans
	// without running, with custom and generic plans.
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := app.Exec(ctx, `DEALLOCATE ALL; SET plan_cache_mode = `+mode+`;
PREPARE ins(text) AS INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`); err != nil {
			t.Fatal(err)
		}
		if _, err := app.Exec(ctx, `EXPLAIN EXECUTE ins('x')`); err != nil {
			t.Errorf("%s: planning evaluated the default: %v", mode, err)
		}
	}
}

// A database made before set_by_stripe gets the defaults from Migrate; a
// default set by hand is kept, and the next Migrate has nothing to do.
func TestMigrateAddsSetByStripeDefaults(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var drop []string
	for _, tb := range schema.Tables() {
		var cols []string
		for _, col := range tb.SetByStripeColumns() {
			cols = append(cols, "ALTER COLUMN "+schema.Ident(col)+" DROP DEFAULT")
		}
		drop = append(drop, "ALTER TABLE "+tb.QualifiedName()+" "+strings.Join(cols, ", "))
	}
	if _, err := conn.Exec(ctx, strings.Join(drop, ";\n")+`;
DROP FUNCTION stripe._set_by_stripe(text, anyelement);
DELETE FROM stripe_sync.migrations WHERE version = 3 AND name LIKE 'stripe tables: defaults%';
ALTER TABLE stripe.products ALTER COLUMN _synced_at SET DEFAULT now()`); err != nil {
		t.Fatal(err)
	}
	if defs := columnDefaults(t, conn); defs["customers.id"] != "" {
		t.Fatalf("old install still has defaults: %v", defs["customers.id"])
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defs := columnDefaults(t, conn)
	if defs["products._synced_at"] != "now()" {
		t.Errorf("hand-set default replaced: %q", defs["products._synced_at"])
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE stripe.products ALTER COLUMN _synced_at SET DEFAULT `+mustDefault(t, "products", "_synced_at")); err != nil {
		t.Fatal(err)
	}
	checkSetByStripeDefaults(t, conn)
	_, err := conn.Exec(ctx, `INSERT INTO stripe.customers (email) VALUES ('a@example.com')`)
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Errorf("direct insert after upgrade: %v", err)
	}
	var steps []string
	if err := conn.QueryRow(ctx, `SELECT array(SELECT jsonb_array_elements_text(detail->'steps')) FROM stripe_sync.log WHERE kind = 'migrate' ORDER BY id DESC LIMIT 1`).Scan(&steps); err != nil || len(steps) != 1 || !strings.HasPrefix(steps[0], "3 ") {
		t.Errorf("logged steps %v, %v", steps, err)
	}
	var logged int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'migrate'`).Scan(&logged)
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var again int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.log WHERE kind = 'migrate'`).Scan(&again)
	if again != logged {
		t.Errorf("a no-op Migrate logged: %d → %d", logged, again)
	}
}

func mustDefault(t *testing.T, table, col string) string {
	t.Helper()
	tb, ok := schema.Lookup(table)
	if !ok {
		t.Fatal(table)
	}
	d := tb.SetByStripeDefault(col)
	if d == "" {
		t.Fatalf("%s.%s has no default", table, col)
	}
	return d
}
