package schema_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
)

// An upgrade that must ALTER a table read by a long transaction neither
// blocks the table's other readers behind its wait for long (they queue
// behind an ALTER that waits) nor fails for good: its lock waits are
// bounded, and it tries again.
func TestMigrateLockWaitBounded(t *testing.T) {
	defer schema.SetMigrateLockWait(300*time.Millisecond, 20)()
	conn, url := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// An older install: no default on _raw, so Migrate must ALTER customers.
	if _, err := conn.Exec(ctx, `ALTER TABLE stripe.customers ALTER COLUMN _raw DROP DEFAULT`); err != nil {
		t.Fatal(err)
	}
	open := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	long, reader := open(), open()
	tx, err := long.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM stripe.customers`); err != nil {
		t.Fatal(err)
	}
	migrated := make(chan error, 1)
	go func() { migrated <- schema.Migrate(ctx, conn) }()
	waitForLock(t, url, conn.PgConn().PID(), "stripe.customers")
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := reader.Exec(rctx, `SELECT count(*) FROM stripe.customers`); err != nil {
		t.Fatalf("reader: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a reader waited %s behind the migration's lock wait", d)
	}
	select {
	case err := <-migrated:
		t.Fatalf("Migrate ended while the table was held: %v", err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-migrated; err != nil {
		t.Fatalf("Migrate after the long transaction ended: %v", err)
	}
	var def bool
	if err := conn.QueryRow(ctx, `SELECT atthasdef FROM pg_attribute WHERE attrelid = 'stripe.customers'::regclass AND attname = '_raw'`).Scan(&def); err != nil || !def {
		t.Fatalf("default not set: %v %v", def, err)
	}

	// Held for good: Migrate says why.
	defer schema.SetMigrateLockWait(100*time.Millisecond, 2)()
	if _, err := conn.Exec(ctx, `ALTER TABLE stripe.customers ALTER COLUMN _raw DROP DEFAULT`); err != nil {
		t.Fatal(err)
	}
	tx, err = long.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM stripe.customers`); err != nil {
		t.Fatal(err)
	}
	err = schema.Migrate(ctx, conn)
	if err == nil || !strings.Contains(err.Error(), "long transaction") || !strings.Contains(err.Error(), "55P03") {
		t.Fatalf("Migrate with the table held: %v", err)
	}
}

// waitForLock waits until backend pid waits for a lock on table.
func waitForLock(t *testing.T, url string, pid uint32, table string) {
	t.Helper()
	c := pgtest.Connect(t, url)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting bool
		if err := c.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 AND NOT granted AND relation = $2::regclass)`, int32(pid), table).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d never waited for a lock on %s", pid, table)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
