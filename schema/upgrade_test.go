package schema_test

import (
	"context"
	"encoding/json"
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
