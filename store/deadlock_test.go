package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/store"
)

// Deletion stubs are applied in key order, as upserts lock rows: a
// write-through's DELETE of many customers (stubs in the order its WHERE
// found them) and the events loop's upsert of the same customers used to
// deadlock, and the write-through's apply gave up on the local rows.
func TestDeletionsLockInKeyOrder(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	upsert(t, conn, "customers", store.Object{Raw: customer("cus_a", ""), AsOf: t0}, store.Object{Raw: customer("cus_b", ""), AsOf: t0})
	other, err := pgx.Connect(ctx, conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	for _, c := range []*pgx.Conn{conn, other} {
		if _, err := c.Exec(ctx, `SET deadlock_timeout = '100ms'`); err != nil {
			t.Fatal(err)
		}
	}

	// The other transaction holds cus_a, as an upsert in key order would
	// after its first row.
	held, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	if _, err := held.Exec(ctx, `UPDATE stripe.customers SET email = 'x' WHERE id = 'cus_a'`); err != nil {
		t.Fatal(err)
	}
	stub := func(id string) store.Object {
		return store.Object{Raw: json.RawMessage(`{"id": "` + id + `", "object": "customer", "deleted": true}`), AsOf: t0.Add(time.Second)}
	}
	done := make(chan error, 1)
	go func() {
		done <- pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := store.Upsert(ctx, tx, "customers", []store.Object{stub("cus_b"), stub("cus_a")})
			return err
		})
	}()
	time.Sleep(300 * time.Millisecond) // the deletes wait for cus_a
	// The other transaction goes on to cus_b: if the deletes took it
	// first, this is a deadlock and one side fails.
	if _, err := held.Exec(ctx, `UPDATE stripe.customers SET email = 'y' WHERE id = 'cus_b'`); err != nil {
		t.Fatalf("upsert after the deletes began: %v", err)
	}
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("deletes: %v", err)
	}
	var n int
	if err := other.QueryRow(ctx, `SELECT count(*) FROM stripe.customers`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows left (%v)", n, err)
	}
}
