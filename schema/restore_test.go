package schema_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// pg_dump or pg_restore --no-comments (and tools that copy no comments)
// restore pgstripe's tables without the comment that marks them as
// pgstripe's. Migrate on the restored database must take them back, not
// refuse them as someone else's tables, and put the comment back.
func TestMigrateAfterRestoreWithoutComments(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := store.Upsert(ctx, tx, "customers", []store.Object{
			{Raw: json.RawMessage(`{"id": "cus_1", "object": "customer", "email": "a@example.com", "created": 1700000000}`), AsOf: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// What a restore with --no-comments leaves: every table, no comment.
	var drop []string
	for _, tb := range schema.Tables() {
		drop = append(drop, fmt.Sprintf("COMMENT ON TABLE %s IS NULL", tb.QualifiedName()))
	}
	if _, err := conn.Exec(ctx, strings.Join(drop, ";\n")); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatalf("migrate after a restore without comments: %v", err)
	}
	var missing int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'stripe' AND c.relkind = 'r' AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'pgstripe:%'`).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Errorf("%d tables still without pgstripe's comment", missing)
	}
	var email string
	if err := conn.QueryRow(ctx, `SELECT email FROM stripe.customers WHERE id = 'cus_1'`).Scan(&email); err != nil || email != "a@example.com" {
		t.Errorf("customer after migrate: %q, %v", email, err)
	}
}

// Taking back tables without a comment is only for pgstripe's own: in a
// database pgstripe migrated before, a table of someone else's in the
// way (no comment, not pgstripe's columns), or one with another comment,
// is still refused and left alone.
func TestMigrateStillRefusesForeignTableWithoutComment(t *testing.T) {
	for name, ddl := range map[string]string{
		"no comment":    `CREATE TABLE stripe.charges (id int PRIMARY KEY, note text)`,
		"other comment": `CREATE TABLE stripe.charges (id text PRIMARY KEY, _raw jsonb, _synced_at timestamptz, _as_of timestamptz, note text); COMMENT ON TABLE stripe.charges IS 'ours, not pgstripe''s'`,
		"a view":        `CREATE VIEW stripe.charges AS SELECT 'x'::text AS id, NULL::jsonb AS _raw, now() AS _synced_at, now() AS _as_of, 'mine'::text AS note`,
	} {
		t.Run(name, func(t *testing.T) {
			conn, _ := connect(t)
			ctx := context.Background()
			if err := schema.Migrate(ctx, conn); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, `DROP TABLE stripe.charges; `+ddl); err != nil {
				t.Fatal(err)
			}
			if err := schema.Migrate(ctx, conn); !errors.Is(err, schema.ErrForeignTable) {
				t.Fatalf("err = %v, want ErrForeignTable", err)
			}
			var cols int
			conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'stripe' AND table_name = 'charges'`).Scan(&cols)
			if cols > 5 {
				t.Errorf("foreign charges altered: %d columns", cols)
			}
		})
	}
}

// A dump of schema stripe alone restores into an empty database: the
// defaults' function is in that schema, not in stripe_sync (a stripe-only
// dump failed on every CREATE TABLE, and its data was lost).
func TestStripeOnlyDumpRestores(t *testing.T) {
	for _, tool := range []string{"pg_dump", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/install-deps", tool)
		}
	}
	conn, url := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := store.Upsert(ctx, tx, "customers", []store.Object{
			{Raw: json.RawMessage(`{"id": "cus_1", "object": "customer", "email": "a@example.com", "created": 1700000000}`), AsOf: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	dump, err := exec.Command("pg_dump", "--schema=stripe", "--no-owner", url).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	_, empty := connect(t)
	restore := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", empty)
	restore.Stdin = bytes.NewReader(dump)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restoring a dump of schema stripe into an empty database: %v\n%s", err, out)
	}
	restored := pgtest.Connect(t, empty)
	var email string
	if err := restored.QueryRow(ctx, `SELECT email FROM stripe.customers WHERE id = 'cus_1'`).Scan(&email); err != nil || email != "a@example.com" {
		t.Fatalf("restored row: %q %v", email, err)
	}
	if err := schema.Migrate(ctx, restored); err != nil {
		t.Fatalf("migrate on the restored database: %v", err)
	}
}
