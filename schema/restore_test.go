package schema_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
