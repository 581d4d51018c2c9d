package schema_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// guardedConn is a migrated database as users have it (no
// pgstripe.local_write), with one customer cus_1 stored by pgstripe's own
// upsert, and a plain connection to it.
func guardedConn(t *testing.T) (*pgx.Conn, string) {
	t.Helper()
	url := pgtest.NewGuardedDB(t)
	conn := pgtest.Connect(t, url)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// The store is pgstripe's writer; its connections set the marker.
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL pgstripe.local_write = on`); err != nil {
			return err
		}
		_, err := store.Upsert(ctx, tx, "customers", []store.Object{
			{Raw: json.RawMessage(`{"id": "cus_1", "object": "customer", "email": "a@example.com", "created": 1700000000}`), AsOf: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return conn, url
}

// refused checks that err is the guard's: 0A000, naming the table and the
// operation, with a hint naming the proxy and the escape hatch.
func refused(t *testing.T, what string, err error, table, op string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Errorf("%s: want the guard's 0A000, got %v", what, err)
		return
	}
	want := fmt.Sprintf("writes to stripe.%s go through pgstripe's proxy: this %s would change the local copy only", table, op)
	if pe.Code != "0A000" || pe.Message != want || !strings.Contains(pe.Hint, "6543") ||
		!strings.Contains(pe.Hint, "SET pgstripe.local_write = on") || !strings.Contains(pe.Detail, "Stripe would never hear of it") {
		t.Errorf("%s: got %s %q (detail %q, hint %q), want 0A000 %q", what, pe.Code, pe.Message, pe.Detail, pe.Hint, want)
	}
}

func customerState(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(string_agg(id || ':' || coalesce(email, '') || ':' || coalesce(name, ''), ',' ORDER BY id), '') FROM stripe.customers`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Every way of writing a stripe table outside pgstripe's own sessions is
// refused with 0A000 before anything changes: statements on a direct
// connection, COPY, MERGE, and writes from a function, DO block, view or
// rule (which the proxy passes on unparsed).
func TestLocalWriteGuardRefuses(t *testing.T) {
	conn, _ := guardedConn(t)
	ctx := context.Background()
	before := customerState(t, conn)
	// Every value given, so that it is the guard, not set_by_stripe's
	// defaults, that refuses.
	const full = `(id, email, _raw, _synced_at, _as_of) VALUES ('cus_local', 'x@example.com', '{}', now(), now())`
	for _, c := range []struct{ sql, table, op string }{
		{`INSERT INTO stripe.customers ` + full, "customers", "INSERT"},
		{`INSERT INTO stripe.customers (email) VALUES ('x@example.com')`, "customers", "INSERT"},
		{`INSERT INTO stripe.customers ` + full + ` ON CONFLICT (id) DO NOTHING`, "customers", "INSERT"},
		{`UPDATE stripe.customers SET name = 'local' WHERE id = 'cus_1'`, "customers", "UPDATE"},
		// Matching no row: refused all the same (a statement-level check).
		{`UPDATE stripe.customers SET name = 'local' WHERE false`, "customers", "UPDATE"},
		{`DELETE FROM stripe.customers WHERE id = 'cus_1'`, "customers", "DELETE"},
		{`TRUNCATE stripe.customers`, "customers", "TRUNCATE"},
		{`MERGE INTO stripe.customers c USING (SELECT 'cus_1' AS id) s ON c.id = s.id WHEN MATCHED THEN UPDATE SET name = 'merged'`, "customers", "UPDATE"},
		{`DO $$BEGIN UPDATE stripe.customers SET name = 'do' WHERE id = 'cus_1'; END$$`, "customers", "UPDATE"},
		{`CREATE FUNCTION pg_temp.rename_all() RETURNS void LANGUAGE sql AS $$ UPDATE stripe.customers SET name = 'fn' $$; SELECT pg_temp.rename_all()`, "customers", "UPDATE"},
		{`CREATE TEMP VIEW v AS SELECT id, name FROM stripe.customers; UPDATE v SET name = 'view'`, "customers", "UPDATE"},
		{`CREATE TEMP TABLE mine (id text); CREATE RULE mine_del AS ON INSERT TO mine DO ALSO DELETE FROM stripe.customers WHERE id = NEW.id; INSERT INTO mine VALUES ('cus_1')`, "customers", "DELETE"},
		{`WITH d AS (DELETE FROM stripe.customers RETURNING id) SELECT count(*) FROM d`, "customers", "DELETE"},
	} {
		// Each in a transaction of its own, rolled back: the temporary
		// objects go with it.
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, c.sql)
		tx.Rollback(ctx)
		refused(t, c.sql, err, c.table, c.op)
	}
	_, err := conn.CopyFrom(ctx, pgx.Identifier{"stripe", "customers"}, []string{"id", "_raw", "_synced_at", "_as_of"},
		pgx.CopyFromRows([][]any{{"cus_copy", map[string]any{}, time.Now(), time.Now()}}))
	refused(t, "COPY FROM", err, "customers", "INSERT")
	if after := customerState(t, conn); after != before {
		t.Errorf("customers changed from %q to %q", before, after)
	}

	// Every table has the guard, child tables and upcoming_invoices too.
	for _, tb := range schema.Tables() {
		_, err := conn.Exec(ctx, `DELETE FROM `+tb.QualifiedName())
		refused(t, "DELETE FROM "+tb.Name, err, tb.Name, "DELETE")
		_, err = conn.Exec(ctx, `TRUNCATE `+tb.QualifiedName())
		refused(t, "TRUNCATE "+tb.Name, err, tb.Name, "TRUNCATE")
	}
	// Reads are untouched, and so is SELECT … FOR UPDATE (no write).
	if _, err := conn.Exec(ctx, `SELECT * FROM stripe.customers FOR UPDATE`); err != nil {
		t.Errorf("SELECT FOR UPDATE: %v", err)
	}
}

// The escape hatch: a session (or a transaction, with SET LOCAL) that sets
// pgstripe.local_write writes the local copy; off, or once the
// transaction of a SET LOCAL ended, it is refused again.
func TestLocalWriteEscapeHatch(t *testing.T) {
	conn, _ := guardedConn(t)
	ctx := context.Background()
	exec := func(sql string) error {
		_, err := conn.Exec(ctx, sql)
		return err
	}
	const upd = `UPDATE stripe.customers SET name = $$repaired$$ WHERE id = 'cus_1'`
	for _, on := range []string{"on", "true", "TRUE", "yes", "1"} {
		if err := exec(`SET pgstripe.local_write = '` + on + `'; ` + upd); err != nil {
			t.Errorf("with pgstripe.local_write = %s: %v", on, err)
		}
	}
	for _, off := range []string{"off", "false", "0", "", "maybe"} {
		if err := exec(`SET pgstripe.local_write = '` + off + `'`); err != nil {
			t.Fatal(err)
		}
		refused(t, "pgstripe.local_write = '"+off+"'", exec(upd), "customers", "UPDATE")
	}
	if err := exec(`RESET pgstripe.local_write`); err != nil {
		t.Fatal(err)
	}
	refused(t, "after RESET", exec(upd), "customers", "UPDATE")

	// SET LOCAL lasts as long as its transaction, committed or not, and
	// a savepoint rolled back takes a SET LOCAL made inside it along.
	if err := exec(`BEGIN; SET LOCAL pgstripe.local_write = on; ` + upd + `; COMMIT`); err != nil {
		t.Errorf("SET LOCAL: %v", err)
	}
	refused(t, "after the SET LOCAL's transaction", exec(upd), "customers", "UPDATE")
	err := exec(`BEGIN; SAVEPOINT s; SET LOCAL pgstripe.local_write = on; ROLLBACK TO SAVEPOINT s; ` + upd)
	exec(`ROLLBACK`)
	refused(t, "after ROLLBACK TO SAVEPOINT", err, "customers", "UPDATE")

	// A whole local repair: delete, insert, truncate.
	if err := exec(`SET pgstripe.local_write = on; DELETE FROM stripe.customers WHERE id = 'cus_1';
INSERT INTO stripe.customers (id, email, _raw, _synced_at, _as_of) VALUES ('cus_2', 'b@example.com', '{}', now(), now());
TRUNCATE stripe.invoices, stripe.invoice_line_items`); err != nil {
		t.Errorf("repair: %v", err)
	}
	if got := customerState(t, conn); got != "cus_2:b@example.com:" {
		t.Errorf("customers after the repair: %q", got)
	}
}

// Migrate's own writes pass the guard on any session: a column a newer
// spec adds is filled from _raw on a connection without the marker. A
// database made before the guard (no function, no triggers, step 8 not
// recorded) gets it on every table, including one Migrate creates. A guard
// an operator disabled stays disabled.
func TestMigrateAddsLocalWriteGuard(t *testing.T) {
	conn, _ := guardedConn(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `ALTER TABLE stripe.customers DROP COLUMN email`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatalf("migrate with the guard in place: %v", err)
	}
	var email string
	if err := conn.QueryRow(ctx, `SELECT email FROM stripe.customers WHERE id = 'cus_1'`).Scan(&email); err != nil || email != "a@example.com" {
		t.Errorf("email filled from _raw: %q, %v", email, err)
	}

	if _, err := conn.Exec(ctx, `DROP FUNCTION stripe._refuse_local_write() CASCADE;
DELETE FROM stripe_sync.migrations WHERE version = 8;
DROP TABLE stripe.tax_ids`); err != nil {
		t.Fatal(err)
	}
	if n := guards(t, conn); n != 0 {
		t.Fatalf("%d guards left after dropping the function", n)
	}
	// As an older pgstripe left it: a local write passes.
	if _, err := conn.Exec(ctx, `UPDATE stripe.customers SET name = 'old' WHERE id = 'cus_1'`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if n := guards(t, conn); n != len(schema.Tables()) {
		t.Errorf("%d guards after migrate, want %d", n, len(schema.Tables()))
	}
	_, err := conn.Exec(ctx, `UPDATE stripe.customers SET name = 'new' WHERE id = 'cus_1'`)
	refused(t, "after migrate", err, "customers", "UPDATE")
	_, err = conn.Exec(ctx, `DELETE FROM stripe.tax_ids`)
	refused(t, "created table", err, "tax_ids", "DELETE")

	if _, err := conn.Exec(ctx, `ALTER TABLE stripe.products DISABLE TRIGGER _pgstripe_refuse_local_write`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM stripe.products`); err != nil {
		t.Errorf("a disabled guard was enabled again: %v", err)
	}
}

// guards counts the stripe tables carrying an enabled or disabled guard.
func guards(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = 'stripe' AND g.tgname = $1`, schema.LocalWriteGuardTrigger).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pgtest's cluster carries the marker (tests seed stripe.* directly), and
// NewGuardedDB takes it away: the name pgtest sets is the guard's.
func TestPgtestMarker(t *testing.T) {
	ctx := context.Background()
	var v string
	if err := pgtest.Connect(t, pgtest.NewDB(t)).QueryRow(ctx, `SELECT current_setting($1, true)`, schema.LocalWriteSetting).Scan(&v); err != nil || v != "on" {
		t.Errorf("pgtest.NewDB: %s = %q, %v", schema.LocalWriteSetting, v, err)
	}
	if err := pgtest.Connect(t, pgtest.NewGuardedDB(t)).QueryRow(ctx, `SELECT current_setting($1, true)`, schema.LocalWriteSetting).Scan(&v); err != nil || v != "off" {
		t.Errorf("pgtest.NewGuardedDB: %s = %q, %v", schema.LocalWriteSetting, v, err)
	}
}

// The README's restore paths on databases as users have them (no
// pgstripe.local_write anywhere): a dump that creates the tables restores
// its rows with no setting (pg_dump puts triggers after the data) and the
// restored tables carry the guard, enabled; a data-only restore into
// migrated tables is refused by the guard, before any row, unless the
// restoring session sets pgstripe.local_write (PGOPTIONS, as the README
// says).
func TestGuardedRestores(t *testing.T) {
	for _, tool := range []string{"pg_dump", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/install-deps", tool)
		}
	}
	ctx := context.Background()
	_, srcURL := guardedConn(t)
	restore := func(url string, dump []byte, env ...string) (string, error) {
		cmd := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url)
		cmd.Stdin = bytes.NewReader(dump)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	full, err := exec.Command("pg_dump", "--schema=stripe", "--no-owner", srcURL).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	fullURL := pgtest.NewGuardedDB(t)
	if out, err := restore(fullURL, full); err != nil {
		t.Fatalf("restoring a dump of schema stripe into a guarded database: %v\n%s", err, out)
	}
	restored := pgtest.Connect(t, fullURL)
	if s := customerState(t, restored); s != "cus_1:a@example.com:" {
		t.Errorf("restored rows %q", s)
	}
	var enabled, tables int
	if err := restored.QueryRow(ctx, `SELECT count(*) FILTER (WHERE g.tgenabled = 'O'), count(DISTINCT c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_trigger g ON g.tgrelid = c.oid AND g.tgname = $1
WHERE n.nspname = 'stripe' AND c.relkind = 'r'`, schema.LocalWriteGuardTrigger).Scan(&enabled, &tables); err != nil {
		t.Fatal(err)
	}
	if tables == 0 || enabled != tables {
		t.Errorf("restored: %d of %d tables carry the enabled guard", enabled, tables)
	}
	_, err = restored.Exec(ctx, `UPDATE stripe.customers SET name = 'local'`)
	refused(t, "direct UPDATE after a restore", err, "customers", "UPDATE")

	data, err := exec.Command("pg_dump", "--data-only", "--table=stripe.customers", srcURL).Output()
	if err != nil {
		t.Fatalf("pg_dump --data-only: %v", err)
	}
	dataURL := pgtest.NewGuardedDB(t)
	target := pgtest.Connect(t, dataURL)
	if err := schema.Migrate(ctx, target); err != nil {
		t.Fatal(err)
	}
	out, err := restore(dataURL, data)
	if err == nil || !strings.Contains(out, "writes to stripe.customers go through pgstripe's proxy: this INSERT would change the local copy only") {
		t.Errorf("a data-only restore without the setting: %v\n%s", err, out)
	}
	if s := customerState(t, target); s != "" {
		t.Errorf("a refused data-only restore left rows: %q", s)
	}
	if out, err := restore(dataURL, data, "PGOPTIONS=-c pgstripe.local_write=on"); err != nil {
		t.Fatalf("a data-only restore with PGOPTIONS: %v\n%s", err, out)
	}
	if s := customerState(t, target); s != "cus_1:a@example.com:" {
		t.Errorf("data-only restore: rows %q", s)
	}
}
