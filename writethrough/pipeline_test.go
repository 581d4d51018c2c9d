package writethrough

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pipelineNotices returns the notices so far that warn of writes a
// pipeline's error does not undo, and forgets every notice.
func (c *client) pipelineNotices() (kept []*pgconn.Notice, all []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.notices {
		all = append(all, n.Message)
		if strings.Contains(n.Message, "in this pipeline went to Stripe") {
			kept = append(kept, n)
		}
	}
	c.notices = nil
	return kept, all
}

// badTaxExempt is a value Stripe refuses and pgstripe leaves to Stripe
// (not one of exempt, none, reverse).
const badTaxExempt = "sometimes"

// TestPipelineNotice: in an autocommit pipeline (pgx Batch: Bind and
// Execute per statement, one Sync), an error after a write to Stripe rolls
// back the pipeline's implicit transaction, and the driver reports every
// statement as failed, but the write stays in Stripe. The client gets a
// NOTICE before that error, so that it does not resend the write.
func TestPipelineNotice(t *testing.T) {
	e := setup(t)
	u := e.proxied()

	// failing runs a batch of an INSERT of email, then second, which
	// fails; it returns the notices the client had when second's error
	// reached it.
	failing := func(t *testing.T, c *client, email, second string, args ...any) ([]*pgconn.Notice, []string) {
		t.Helper()
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO stripe.customers (email) VALUES ($1)`, email)
		b.Queue(second, args...)
		calls := e.calls()
		br := c.SendBatch(e.ctx, b)
		if _, err := br.Exec(); err != nil {
			t.Fatalf("first insert: %v", err)
		}
		_, err := br.Exec()
		if strings.HasPrefix(second, "INSERT") && (sqlstate(err) != "22023" || e.calls()-calls != 2) {
			t.Fatalf("second insert: %v, %d Stripe calls", err, e.calls()-calls)
		} else if err == nil {
			t.Fatal("second statement succeeded")
		}
		kept, all := c.pipelineNotices()
		if err := br.Close(); err == nil {
			t.Fatal("batch succeeded")
		}
		if late, _ := c.pipelineNotices(); len(late) > 0 {
			t.Fatalf("notice after the error: %+v", late[0])
		}
		return kept, all
	}
	inStripe := func(t *testing.T, email string) {
		t.Helper()
		if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = $1`, email); got != "1" {
			t.Fatalf("local rows for %s: %s", email, got)
		}
		n := 0
		for _, raw := range e.emu.Objects("customers") {
			if strings.Contains(string(raw), `"`+email+`"`) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d customers %s in Stripe", n, email)
		}
	}
	checkNotice := func(t *testing.T, kept []*pgconn.Notice) {
		t.Helper()
		if len(kept) != 1 {
			t.Fatalf("pipeline notices %+v", kept)
		}
		n := kept[0]
		if n.Severity != "NOTICE" || n.Code != "01000" ||
			!strings.HasPrefix(n.Message, "1 earlier write to stripe.* in this pipeline went to Stripe") ||
			n.Detail != "INSERT 0 1 on stripe.customers" || !strings.Contains(n.Hint, "resend") {
			t.Fatalf("notice %+v", n)
		}
	}

	t.Run("stripe refuses the second write", func(t *testing.T) {
		c := e.client(u, pgx.QueryExecModeCacheStatement)
		kept, _ := failing(t, c, "pipe1@b.co", `INSERT INTO stripe.customers (email, tax_exempt) VALUES ($1, $2)`, "pipe1b@b.co", badTaxExempt)
		checkNotice(t, kept)
		inStripe(t, "pipe1@b.co")
	})
	t.Run("an ordinary statement fails", func(t *testing.T) {
		c := e.client(u, pgx.QueryExecModeCacheStatement)
		kept, _ := failing(t, c, "pipe2@b.co", `SELECT 1/0`)
		checkNotice(t, kept)
		inStripe(t, "pipe2@b.co")
		// The count starts over at the next pipeline.
		kept, _ = failing(t, c, "pipe3@b.co", `SELECT 1/0`)
		checkNotice(t, kept)
	})
	t.Run("two writes, then an error", func(t *testing.T) {
		c := e.client(u, pgx.QueryExecModeCacheStatement)
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO stripe.customers (email) VALUES ($1), ($2)`, "pipe4@b.co", "pipe5@b.co")
		b.Queue(`SELECT 1`)
		b.Queue(`UPDATE stripe.customers SET name = 'n' WHERE email = $1`, "pipe4@b.co")
		b.Queue(`SELECT 1/0`)
		if err := c.SendBatch(e.ctx, b).Close(); sqlstate(err) != "22012" {
			t.Fatalf("batch: %v", err)
		}
		kept, _ := c.pipelineNotices()
		if len(kept) != 1 || !strings.HasPrefix(kept[0].Message, "2 earlier writes to stripe.*") ||
			kept[0].Detail != "INSERT 0 2 on stripe.customers; UPDATE 1 on stripe.customers" {
			t.Fatalf("notices %+v", kept)
		}
	})
	t.Run("all succeed", func(t *testing.T) {
		c := e.client(u, pgx.QueryExecModeCacheStatement)
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO stripe.customers (email) VALUES ($1)`, "pipe6@b.co")
		b.Queue(`SELECT 1`)
		if err := c.SendBatch(e.ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		// An error in a later pipeline is not this one's.
		if _, err := c.Exec(e.ctx, `SELECT 1/0`); err == nil {
			t.Fatal("division by zero succeeded")
		}
		if kept, all := c.pipelineNotices(); len(kept) > 0 || len(all) > 0 {
			t.Fatalf("notices %v", all)
		}
	})
	t.Run("a write that made no call", func(t *testing.T) {
		c := e.client(u, pgx.QueryExecModeCacheStatement)
		b := &pgx.Batch{}
		b.Queue(`UPDATE stripe.customers SET name = 'x' WHERE email = 'nobody@b.co'`)
		b.Queue(`SELECT 1/0`)
		if err := c.SendBatch(e.ctx, b).Close(); sqlstate(err) != "22012" {
			t.Fatalf("batch: %v", err)
		}
		if kept, all := c.pipelineNotices(); len(kept) > 0 || len(all) > 0 {
			t.Fatalf("notices %v", all)
		}
	})
	t.Run("inside BEGIN", func(t *testing.T) {
		c := e.client(u, pgx.QueryExecModeCacheStatement)
		tx, err := c.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO stripe.customers (email) VALUES ($1)`, "pipe7@b.co")
		b.Queue(`SELECT 1/0`)
		if err := tx.SendBatch(e.ctx, b).Close(); sqlstate(err) != "22012" {
			t.Fatalf("batch: %v", err)
		}
		tx.Rollback(e.ctx)
		kept, all := c.pipelineNotices()
		if len(kept) > 0 || len(all) != 1 || !strings.Contains(all[0], "ROLLBACK cannot undo") {
			t.Fatalf("notices %v", all)
		}
	})
	t.Run("client_min_messages = warning", func(t *testing.T) {
		c := e.client(u, pgx.QueryExecModeCacheStatement)
		if _, err := c.Exec(e.ctx, `SET client_min_messages = warning`); err != nil {
			t.Fatal(err)
		}
		kept, all := failing(t, c, "pipe8@b.co", `SELECT 1/0`)
		if len(kept) > 0 || len(all) > 0 {
			t.Fatalf("notices %v", all)
		}
		kept, all = failing(t, c, "pipe9@b.co", `INSERT INTO stripe.customers (email, tax_exempt) VALUES ($1, $2)`, "pipe9b@b.co", badTaxExempt)
		if len(kept) > 0 || len(all) > 0 {
			t.Fatalf("notices %v", all)
		}
		inStripe(t, "pipe8@b.co")
	})
}
