package schema_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
)

// TestMigrateDeadlockRetried: a rolling upgrade alters tables while
// the old instance's events loop writes them in its own order. When
// Postgres picks Migrate as a deadlock victim, its transaction rolled back
// whole, as after a lock timeout: Migrate tries again instead of failing
// the start-up.
func TestMigrateDeadlockRetried(t *testing.T) {
	defer schema.SetMigrateLockWait(30*time.Second, 5)() // the deadlock, not the timeout
	conn, url := connect(t)
	ctx := context.Background()
	if err := schema.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	first, second := schema.Tables()[0].QualifiedName(), schema.Tables()[1].QualifiedName()
	// An older install: Migrate must ALTER both, first then second.
	for _, tb := range []string{first, second} {
		if _, err := conn.Exec(ctx, `ALTER TABLE `+tb+` ALTER COLUMN _raw DROP DEFAULT`); err != nil {
			t.Fatal(err)
		}
	}
	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(context.Background())
	// Postgres checks for a deadlock in the backend whose deadlock_timeout
	// runs out first, and that one is the victim. Migrate waits first, but
	// on a loaded machine the two checks (1 s each by default) can run in
	// either order: the writer's comes much later, so Migrate is the one.
	if _, err := writer.Exec(ctx, `SET deadlock_timeout = '20s'`); err != nil {
		t.Fatal(err)
	}
	tx, err := writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// The writer has written the second table…
	if _, err := tx.Exec(ctx, `LOCK TABLE `+second+` IN ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	migrated := make(chan error, 1)
	go func() { migrated <- schema.Migrate(ctx, conn) }()
	// Migrate holds the first and waits for the second. Were the writer to
	// wait first instead, Postgres would pick it as the victim.
	waitForLock(t, url, conn.PgConn().PID(), second)
	// … and now writes the first: a deadlock, which Postgres notices on
	// Migrate's side first (it has waited longer).
	if _, err := tx.Exec(ctx, `LOCK TABLE `+first+` IN ROW EXCLUSIVE MODE`); err != nil {
		tx.Rollback(ctx)
		<-migrated // conn is Migrate's until it returns
		t.Fatalf("writer: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-migrated:
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Migrate did not finish")
	}
}
