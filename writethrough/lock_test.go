package writethrough

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/emulator"
)

// Two sessions add to the same customer's balance at once. In Postgres,
// UPDATE … SET balance = balance + 100 from two sessions adds 200 (the row
// lock makes the second re-read the row); the write-through must not lose
// one of the increments by evaluating both from the old balance.
func TestConcurrentIncrement(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	a, b := e.client(u, pgx.QueryExecModeCacheStatement), e.client(u, pgx.QueryExecModeSimpleProtocol)
	var id string
	if err := a.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, balance) VALUES ('inc@b.co', 0) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	e.emu.Update(emulator.Options{RateLimit: -1, Latency: 200 * time.Millisecond})
	var wg sync.WaitGroup
	for _, c := range []*client{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Exec(e.ctx, `UPDATE stripe.customers SET balance = balance + 100 WHERE id = $1`, id); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got := e.stripeObj("customers", id)["balance"]
	local := e.local(`SELECT balance::text FROM stripe.customers WHERE id = $1`, id)
	if fmt.Sprint(got) != "200" || local != "200" {
		t.Fatalf("two concurrent +100 on balance 0: Stripe %v, local %s; want 200", got, local)
	}
}

// Inside a transaction block the object stays locked until COMMIT, as a
// row is in Postgres: another session's UPDATE of it waits, then sees the
// committed state. The session holding it can write it again.
func TestUpdateWaitsForTransactionHoldingObject(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	a, b := e.client(u, pgx.QueryExecModeCacheStatement), e.client(u, pgx.QueryExecModeCacheStatement)
	var id string
	if err := a.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, balance) VALUES ('tx@b.co', 0) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	tx, err := a.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := tx.Exec(e.ctx, `UPDATE stripe.customers SET balance = balance + 10 WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(e.ctx, `UPDATE stripe.customers SET balance = balance + 1 WHERE id = $1`, id)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("UPDATE of an object another transaction wrote did not wait: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("UPDATE still waiting after COMMIT")
	}
	if got := fmt.Sprint(e.stripeObj("customers", id)["balance"]); got != "21" {
		t.Fatalf("balance in Stripe = %s, want 21", got)
	}
}

// The apply runs again when Postgres aborts it for a deadlock (the events
// loop locking the same rows in another order): giving up would leave the
// client reading the old row right after its write.
func TestApplyRetriedAfterDeadlock(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email) VALUES ('dl@b.co') RETURNING id`).rows[0][0]
	// The first apply of the UPDATE fails as a deadlock victim would.
	for _, q := range []string{
		// A sequence: the aborted transaction doesn't take it back.
		`CREATE SEQUENCE public.deadlocks`,
		`CREATE FUNCTION public.deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('public.deadlocks') = 1 THEN
		RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01';
	END IF;
	RETURN NEW;
END $$`,
		`CREATE TRIGGER deadlock_once BEFORE UPDATE ON stripe.customers FOR EACH ROW EXECUTE FUNCTION public.deadlock_once()`,
	} {
		if _, err := e.conn.Exec(e.ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r := e.ok(`UPDATE stripe.customers SET name = 'after' WHERE id = $1`, id)
	if len(r.notices) != 0 {
		t.Fatalf("notices %v: the apply gave up", r.notices)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != "after" {
		t.Fatalf("local name %q right after the write", got)
	}
}

// A REPEATABLE READ transaction's UPDATE of an object another session
// changed after its snapshot fails with 40001, as in Postgres, before any
// Stripe call: computed from the snapshot, balance + 100 would overwrite
// the other session's +100 in Stripe.
func TestRepeatableReadUpdateOfChangedObject(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	a, b := e.client(u, pgx.QueryExecModeCacheStatement), e.client(u, pgx.QueryExecModeSimpleProtocol)
	var id string
	if err := a.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, balance) VALUES ('rr@b.co', 0) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	tx, err := a.BeginTx(e.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	var seen int64
	if err := tx.QueryRow(e.ctx, `SELECT balance FROM stripe.customers WHERE id = $1`, id).Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(e.ctx, `UPDATE stripe.customers SET balance = balance + 100 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(e.ctx, `UPDATE stripe.customers SET balance = balance + 100 WHERE id = $1`, id)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "40001" {
		t.Fatalf("UPDATE in REPEATABLE READ of an object changed since the snapshot: %v, want 40001", err)
	}
	if got := e.stripeObj("customers", id)["balance"]; fmt.Sprint(got) != "100" {
		t.Fatalf("Stripe balance %v, want 100 (the other session's update kept)", got)
	}
}
