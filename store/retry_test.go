package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/store"
)

// A transaction that lost a lock wait (here to a lock_timeout, 55P03) is
// run again whole, until the lock is free; other errors come back at once,
// and a conflict that outlasts the attempts comes back too.
func TestRetryRunsTransactionAgain(t *testing.T) {
	conn := setup(t)
	ctx := context.Background()
	upsert(t, conn, "customers", store.Object{Raw: customer("cus_a", ""), AsOf: t0})
	other, err := pgx.Connect(ctx, conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	held, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	if _, err := held.Exec(ctx, `SELECT 1 FROM stripe.customers WHERE id = 'cus_a' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	write := func(attempts *int) func() error {
		return func() error {
			*attempts++
			return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL lock_timeout = 50"}, func(tx pgx.Tx) error {
				// A row of its own first: a retry must not find it from
				// the attempt before (that attempt rolled back whole).
				if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ('review', '{}')`); err != nil {
					return err
				}
				_, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: customer("cus_a", `"name": "new"`), AsOf: t0.Add(time.Second)}})
				return err
			})
		}
	}

	restore := store.SetRetry(3, 10*time.Millisecond)
	var n int
	err = store.Retry(ctx, nil, "test", write(&n))
	restore()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55P03" || n != 3 {
		t.Fatalf("lock held throughout: %d attempts, err %v; want 3 attempts and 55P03", n, err)
	}

	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(400 * time.Millisecond)
		held.Rollback(ctx)
	}()
	n = 0
	err = store.Retry(ctx, nil, "test", write(&n))
	<-released
	if err != nil {
		t.Fatalf("Retry = %v after %d attempts", err, n)
	}
	if n < 2 {
		t.Fatalf("%d attempts: the lock was never met", n)
	}
	var name string
	var logged int
	if err := conn.QueryRow(ctx, `SELECT name, (SELECT count(*) FROM stripe_sync.log WHERE kind = 'review') FROM stripe.customers WHERE id = 'cus_a'`).Scan(&name, &logged); err != nil {
		t.Fatal(err)
	}
	if name != "new" || logged != 1 {
		t.Fatalf("name %q, %d log rows; want new, 1", name, logged)
	}

	n = 0
	err = store.Retry(ctx, nil, "test", func() error {
		n++
		_, err := conn.Exec(ctx, `SELECT 1/0`)
		return err
	})
	if !errors.As(err, &pe) || pe.Code != "22012" || n != 1 {
		t.Fatalf("division by zero: %d attempts, err %v; want 1 attempt", n, err)
	}
}
