package writethrough

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
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

// holdObjectLock has a role with no privilege at all on stripe.* take the
// advisory lock pgstripe's UPDATE of the object waits for; it is released
// when the test ends.
func (e *env) holdObjectLock(table, id string) {
	e.t.Helper()
	role := fmt.Sprintf("nobody_%d", time.Now().UnixNano())
	if _, err := e.pool.Exec(e.ctx, `CREATE ROLE `+role+` LOGIN`); err != nil {
		e.t.Fatal(err)
	}
	u, _ := url.Parse(e.url)
	u.User = url.User(role)
	c, err := pgx.Connect(e.ctx, u.String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		c.Close(e.ctx)
		e.pool.Exec(e.ctx, `DROP ROLE `+role)
	})
	if _, err := c.Exec(e.ctx, `SELECT count(*) FROM stripe.customers`); err == nil {
		e.t.Fatal("the role reads stripe.customers")
	}
	if _, err := c.Exec(e.ctx, `SELECT pg_advisory_lock(hashtextextended('pgstripe:' || $1 || ':' || $2, 0))`, table, id); err != nil {
		e.t.Fatal(err)
	}
}

// within runs f, failing the test if it takes longer than d (an
// UPDATE stuck for good on the lock).
func within(t *testing.T, d time.Duration, f func() reply) reply {
	t.Helper()
	done := make(chan reply, 1)
	go func() { done <- f() }()
	select {
	case r := <-done:
		return r
	case <-time.After(d):
		t.Fatalf("still waiting after %s", d)
	}
	return reply{}
}

// A role with no privilege on stripe.* can't hold a row lock there, so in
// Postgres it can't make an UPDATE of a customer wait. It can take the
// advisory lock pgstripe's UPDATE waits for: the wait is bounded
// (Config.LockWait when the session has no lock_timeout), and the UPDATE
// fails with 55P03 naming the object, before any Stripe call.
func TestObjectLockWaitBounded(t *testing.T) {
	e := setup(t, func(c *Config) { c.LockWait = 500 * time.Millisecond })
	id := e.one(`INSERT INTO stripe.customers (email) VALUES ('lock@b.co') RETURNING id`)
	other := e.one(`INSERT INTO stripe.customers (email) VALUES ('other@b.co') RETURNING id`)
	e.holdObjectLock("customers", id)
	before := e.calls()
	start := time.Now()
	r := within(t, 15*time.Second, func() reply {
		return e.run(`UPDATE stripe.customers SET name = 'stalled' WHERE id = $1`, id)
	})
	if r.err == nil || r.err.Code != "55P03" || !strings.Contains(r.err.Message, id) || !strings.Contains(r.err.Detail, "Stripe was not called") {
		t.Fatalf("UPDATE of an object another role holds: %+v, want 55P03 naming %s", r.err, id)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("gave up after %s, before LockWait", d)
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("Stripe got %d calls", n)
	}
	// Other objects are not held up; and inside a transaction block the
	// session's lock_timeout is as it was after our wait.
	for _, q := range []string{`BEGIN`, `SET LOCAL lock_timeout = 0`} {
		if _, err := e.conn.Exec(e.ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	e.ok(`UPDATE stripe.customers SET name = 'fine' WHERE id = $1`, other)
	var lt string
	if err := e.conn.QueryRow(e.ctx, `SHOW lock_timeout`).Scan(&lt); err != nil || lt != "0" {
		t.Errorf("lock_timeout after the UPDATE: %q %v, want 0", lt, err)
	}
	if _, err := e.conn.Exec(e.ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if got := e.stripeObj("customers", other)["name"]; got != "fine" {
		t.Errorf("other customer's name in Stripe: %v", got)
	}
}

// Through the proxy (the lock is taken in the client's implicit
// transaction there), in each protocol: bounded by the session's own
// lock_timeout when it has one, as a row lock is, else by LockWait; the
// session's lock_timeout is left as it was.
func TestObjectLockWaitThroughProxy(t *testing.T) {
	e := setup(t, func(c *Config) { c.LockWait = 700 * time.Millisecond })
	id := e.one(`INSERT INTO stripe.customers (email) VALUES ('lock@b.co') RETURNING id`)
	free := e.one(`INSERT INTO stripe.customers (email) VALUES ('free@b.co') RETURNING id`)
	e.holdObjectLock("customers", id)
	u := e.proxied()
	for _, m := range modes {
		for _, lt := range []string{"300ms", "0"} {
			t.Run(m.name+"/"+lt, func(t *testing.T) {
				c := e.client(u, m.mode)
				if _, err := c.Exec(e.ctx, `SET lock_timeout = '`+lt+`'`); err != nil {
					t.Fatal(err)
				}
				bound := "lock_timeout (300ms)"
				if lt == "0" {
					bound = "pgstripe's bound (700ms"
				}
				before := e.calls()
				start := time.Now()
				done := make(chan error, 1)
				go func() {
					_, err := c.Exec(e.ctx, `UPDATE stripe.customers SET name = $1 WHERE id = $2`, m.name, id)
					done <- err
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(8 * time.Second):
					t.Fatal("UPDATE still waiting for a lock a role without privileges holds")
				}
				if sqlstate(err) != "55P03" || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), bound) {
					t.Errorf("UPDATE of a held object: %v, want 55P03 naming %s and %s", err, id, bound)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("took %s", d)
				}
				if n := e.calls() - before; n != 0 {
					t.Errorf("Stripe got %d calls", n)
				}
				// The session is usable, and its lock_timeout is as it
				// was after an UPDATE inside a transaction block.
				tx, err := c.Begin(e.ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(e.ctx, `UPDATE stripe.customers SET name = $1 WHERE id = $2`, m.name+lt, free); err != nil {
					t.Fatal(err)
				}
				var got string
				if err := tx.QueryRow(e.ctx, `SHOW lock_timeout`).Scan(&got); err != nil || got != lt {
					t.Errorf("lock_timeout after an UPDATE: %q %v, want %s", got, err, lt)
				}
				if err := tx.Commit(e.ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
