package schema_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
)

func connect(t *testing.T) (*pgx.Conn, string) {
	t.Helper()
	url := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, url
}

func columnTypes(t *testing.T, conn *pgx.Conn, table string) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'stripe' AND table_name = $1`, table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var c, ty string
		if err := rows.Scan(&c, &ty); err != nil {
			t.Fatal(err)
		}
		out[c] = ty
	}
	return out
}

func TestMigrateEmptyTwice(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := schema.Migrate(ctx, conn); err != nil {
			t.Fatalf("migrate #%d: %v", i+1, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'stripe'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(schema.Tables()) {
		t.Errorf("%d tables in schema stripe, want %d", n, len(schema.Tables()))
	}
	cols := columnTypes(t, conn, "customers")
	for c, want := range map[string]string{
		"id": "text", "created": "timestamp with time zone", "email": "text", "metadata": "jsonb",
		"balance": "bigint", "delinquent": "boolean", "_raw": "jsonb", "_synced_at": "timestamp with time zone", "_as_of": "timestamp with time zone",
	} {
		if cols[c] != want {
			t.Errorf("customers.%s is %q, want %q", c, cols[c], want)
		}
	}
	// Reserved words as columns work.
	if _, err := conn.Exec(ctx, `SELECT "object", "type", "value" FROM stripe.tax_ids LIMIT 0`); err != nil {
		t.Errorf("reserved-word columns: %v", err)
	}
	rows, err := conn.Query(ctx, `SELECT object, phase, rows FROM stripe_sync.status ORDER BY object`)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for rows.Next() {
		var obj, phase string
		var r *int64
		if err := rows.Scan(&obj, &phase, &r); err != nil {
			t.Fatal(err)
		}
		if phase != "pending" || r == nil || *r != 0 {
			t.Errorf("status %s: phase %s rows %v", obj, phase, r)
		}
		count++
	}
	if count != len(schema.Tables()) {
		t.Errorf("status has %d rows, want %d", count, len(schema.Tables()))
	}
	var versions int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.migrations`).Scan(&versions); err != nil || versions < 1 {
		t.Errorf("migrations recorded: %d, %v", versions, err)
	}
	// The first run logged what it did; the second, which did nothing, didn't.
	var logged int
	var created []string
	if err := conn.QueryRow(ctx, `SELECT count(*), min(detail->>'created_tables') FROM stripe_sync.log WHERE kind = 'migrate'`).Scan(&logged, new(*string)); err != nil || logged != 1 {
		t.Errorf("%d migrate log entries, %v", logged, err)
	}
	if err := conn.QueryRow(ctx, `SELECT array(SELECT jsonb_array_elements_text(detail->'created_tables')) FROM stripe_sync.log WHERE kind = 'migrate'`).Scan(&created); err != nil || len(created) != len(schema.Tables()) {
		t.Errorf("logged created tables %v, %v", created, err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ('test', '{}'); INSERT INTO stripe_sync.tombstones VALUES ('customers', 'cus_x', now())`); err != nil {
		t.Errorf("sync tables: %v", err)
	}
}

// startMigrators runs n Migrates at once, each on its own connection;
// wait returns their errors.
func startMigrators(ctx context.Context, url string, n int) (wait func() []error) {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close(ctx)
			errs[i] = schema.Migrate(ctx, c)
		}()
	}
	return func() []error { wg.Wait(); return errs }
}

func TestMigrateConcurrent(t *testing.T) {
	_, url := connect(t)
	for i, err := range startMigrators(context.Background(), url, 3)() {
		if err != nil {
			t.Errorf("migrate %d: %v", i, err)
		}
	}
}

// Two instances starting together on a database whose default isolation is
// REPEATABLE READ (or SERIALIZABLE): the one that waited on the advisory
// lock must still see what the first committed, and find nothing to do.
func TestMigrateConcurrentRepeatableReadDefault(t *testing.T) {
	conn, url := connect(t)
	ctx := context.Background()
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET default_transaction_isolation = 'repeatable read'"); err != nil {
		t.Fatal(err)
	}
	// Hold Migrate's advisory lock so both migrators start (and take their
	// snapshot) before either can proceed.
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	const key int64 = 0x7067737472697065
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	wait := startMigrators(ctx, url, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n)
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d migrators waiting", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		t.Fatal(err)
	}
	for i, err := range wait() {
		if err != nil {
			t.Errorf("migrate %d: %v", i, err)
		}
	}
}

func TestMigrateRefusesForeignTable(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA stripe; CREATE TABLE stripe.charges (id int primary key, note text); INSERT INTO stripe.charges VALUES (1, 'mine')`); err != nil {
		t.Fatal(err)
	}
	err := schema.Migrate(ctx, conn)
	if !errors.Is(err, schema.ErrForeignTable) {
		t.Fatalf("err = %v, want ErrForeignTable", err)
	}
	t.Logf("error text: %v", err)
	var note string
	if err := conn.QueryRow(ctx, `SELECT note FROM stripe.charges WHERE id = 1`).Scan(&note); err != nil || note != "mine" {
		t.Errorf("foreign table changed: %q %v", note, err)
	}
	var n int
	conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('stripe', 'stripe_sync')`).Scan(&n)
	if n != 1 {
		t.Errorf("%d tables exist after a refused migrate, want only the foreign one", n)
	}
}

// rows in stripe_sync.status: exact for small tables, the statistics'
// estimate for large ones.
func TestStatusRows(t *testing.T) {
	conn, _ := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO stripe.coupons (id, _raw, _synced_at, _as_of) SELECT 'c' || g, '{}', now(), now() FROM generate_series(1, 3) g`); err != nil {
		t.Fatal(err)
	}
	var rows int64
	if err := conn.QueryRow(ctx, `SELECT rows FROM stripe_sync.status WHERE object = 'coupons'`).Scan(&rows); err != nil || rows != 3 {
		t.Fatalf("coupons rows %d, %v", rows, err)
	}
	// A big table whose statistics say so is estimated, not counted.
	if _, err := conn.Exec(ctx, `INSERT INTO stripe.charges (id, _raw, _synced_at, _as_of) SELECT 'ch' || g, '{}', now(), now() FROM generate_series(1, 60000) g; ANALYZE stripe.charges; DELETE FROM stripe.charges WHERE id = 'ch1'`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT rows FROM stripe_sync.status WHERE object = 'charges'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 60000 {
		t.Fatalf("charges rows %d, want the estimate 60000 (exact would be 59999)", rows)
	}
}

// Migrating an up-to-date database (every start of serve) takes no lock a
// running writer holds up: it finishes while another transaction has
// written rows and not committed.
func TestNoOpMigrateDoesNotWaitForWriters(t *testing.T) {
	conn, url := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, tb := range schema.Tables() {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+tb.QualifiedName()+" IN ROW EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
	}
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "SET lock_timeout = '2s'"); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, other); err != nil {
		t.Fatalf("no-op migrate blocked by a writer: %v", err)
	}
}

// A role that may not create schemas gets told what it needs.
func TestMigrateWithoutCreatePrivilege(t *testing.T) {
	conn, url := connect(t)
	ctx := context.Background()
	// Roles are the cluster's: one name per run, so the test can run again.
	role := fmt.Sprintf("nocreate_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'pw'; REVOKE CREATE ON DATABASE `+pgx.Identifier{conn.Config().Database}.Sanitize()+` FROM PUBLIC`); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, "pw"
	weak, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer weak.Close(ctx)
	err = schema.Migrate(ctx, weak)
	if err == nil || !strings.Contains(err.Error(), "GRANT CREATE ON DATABASE") || strings.Count(err.Error(), "migrate:") != 1 {
		t.Fatalf("Migrate as a role without CREATE: %v", err)
	}
}
