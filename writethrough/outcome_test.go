package writethrough

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	url2 "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// performThen lets the emulator do the work of a request, then answers the
// client with status and body in place of the emulator's answer: a Stripe
// (or something in between) that did the write but sent back something
// unexpected.
func (e *env) performThen(w http.ResponseWriter, r *http.Request, status int, body string) bool {
	rec := httptest.NewRecorder()
	e.emu.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		e.t.Errorf("emulator refused %s %s: %d %s", r.Method, r.URL.Path, rec.Code, rec.Body)
	}
	w.Header().Set("Request-Id", "req_odd")
	w.WriteHeader(status)
	io.WriteString(w, body)
	return true
}

// TestReturningFailsAfterStripeWrite: RETURNING can only run once
// Stripe has answered. When it fails at run time (a division by zero, a
// cast), the object exists in Stripe and locally, and the client must be
// told so, or it retries and makes a second one.
func TestReturningFailsAfterStripeWrite(t *testing.T) {
	e := setup(t)
	r := e.fails("22012", `INSERT INTO stripe.customers (email, balance) VALUES ('div@b.co', 0) RETURNING 1 / balance`)
	if n := len(e.emu.Objects("customers")); n != 1 {
		t.Fatalf("Stripe has %d customers", n)
	}
	id := e.local(`SELECT id FROM stripe.customers WHERE email = 'div@b.co'`)
	if !strings.Contains(r.err.Detail, id) || !strings.Contains(r.err.Detail, "reached Stripe") {
		t.Fatalf("the error hides that %s was created in Stripe and applied locally: %s (detail %q)", id, r.err.Message, r.err.Detail)
	}

	// The same for an UPDATE. A DELETE's RETURNING runs before any call
	// (the rows as they were): its error leaves the object in place.
	r = e.fails("22012", `UPDATE stripe.customers SET name = 'N' WHERE id = $1 RETURNING 1 / balance`, id)
	if !strings.Contains(r.err.Detail, id) || !strings.Contains(r.err.Detail, "reached Stripe") {
		t.Fatalf("update: detail %q", r.err.Detail)
	}
	if got := e.local(`SELECT name FROM stripe.customers WHERE id = $1`, id); got != "N" {
		t.Fatalf("local name %q", got)
	}
	e.fails("22012", `DELETE FROM stripe.customers WHERE id = $1 RETURNING 1 / balance`, id)
	if e.stripeObj("customers", id) == nil || e.local(`SELECT count(*)::text FROM stripe.customers`) != "1" {
		t.Fatal("a DELETE whose RETURNING failed happened")
	}
}

// TestDeleteReturningWhileEventsApply: the events loop may apply Stripe's
// customer.deleted events, removing the local rows, while a DELETE's
// later calls are still out. RETURNING shows every deleted row all the
// same (psycopg2 saw "DELETE 7" with 3 rows under load).
func TestDeleteReturningWhileEventsApply(t *testing.T) {
	e := setup(t, func(c *Config) { c.Concurrency = 1 })
	for _, m := range []string{"r1@b.co", "r2@b.co", "r3@b.co"} {
		e.ok(`INSERT INTO stripe.customers (email) VALUES ($1)`, m)
	}
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "DELETE" {
			// As the events loop would, once Stripe has deleted it.
			id := strings.TrimPrefix(r.URL.Path, "/v1/customers/")
			if _, err := e.pool.Exec(e.ctx, `DELETE FROM stripe.customers WHERE id = $1`, id); err != nil {
				t.Errorf("events loop stand-in: %v", err)
			}
		}
		return false
	}
	e.fault.Store(&f)
	r := e.ok(`DELETE FROM stripe.customers WHERE email LIKE 'r%@b.co' RETURNING email`)
	if r.tag != "DELETE 3" || len(r.rows) != 3 {
		t.Fatalf("DELETE RETURNING: tag %q, rows %v", r.tag, r.rows)
	}
}

// TestUpstreamDiesAfterStripeWrite: the client's own Postgres
// connection is lost while Stripe creates the object. RETURNING can't be
// answered, but the object exists in Stripe and locally: the error must say
// so.
func TestUpstreamDiesAfterStripeWrite(t *testing.T) {
	e := setup(t)
	pid := e.conn.PgConn().PID()
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "POST" && r.URL.Path == "/v1/customers" {
			if _, err := e.pool.Exec(e.ctx, `SELECT pg_terminate_backend($1, 5000)`, pid); err != nil {
				t.Errorf("terminate: %v", err)
			}
		}
		return false
	}
	e.fault.Store(&f)
	r := e.run(`INSERT INTO stripe.customers (email) VALUES ('lost@b.co') RETURNING id`)
	if r.err == nil {
		t.Fatalf("reply %+v", r)
	}
	id := e.local(`SELECT id FROM stripe.customers WHERE email = 'lost@b.co'`)
	if !strings.Contains(r.err.Detail, id) || !strings.Contains(r.err.Detail, "reached Stripe") {
		t.Fatalf("the error hides that %s was created: %s %s (detail %q)", id, r.err.Code, r.err.Message, r.err.Detail)
	}
}

// TestOKAnswerNotJSON: Stripe (or a proxy on the way) answers 200
// with a body that is not JSON. The write took effect; the error must not
// read as a definite failure.
func TestOKAnswerNotJSON(t *testing.T) {
	e := setup(t, func(c *Config) { c.Concurrency = 1 })
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "POST" && form.Get("email") == "html@b.co" {
			return e.performThen(w, r, 200, "<html><body>OK</body></html>")
		}
		return false
	}
	e.fault.Store(&f)
	r := e.run(`INSERT INTO stripe.customers (email) VALUES ('first@b.co'), ('html@b.co')`)
	if r.err == nil {
		t.Fatalf("reply %+v", r)
	}
	if n := len(e.emu.Objects("customers")); n != 2 {
		t.Fatalf("Stripe has %d customers", n)
	}
	if !strings.Contains(r.err.Detail, mayHaveTakenEffect) {
		t.Fatalf("HTTP 200 reported as a failure that did not take effect: %s %s (detail %q)", r.err.Code, r.err.Message, r.err.Detail)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = 'first@b.co'`); got != "1" {
		t.Fatalf("row 1 not applied: %s", got)
	}
}

// TestOKAnswerWithoutID: Stripe answers 200 with JSON that is not
// an object with an id. The rows of the statement that did get a proper
// answer must still be applied, and the reply must not claim success for
// a row it could not store (tag INSERT 0 2 with RETURNING rows missing).
func TestOKAnswerWithoutID(t *testing.T) {
	e := setup(t, func(c *Config) { c.Concurrency = 1 })
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "POST" && form.Get("email") == "noid@b.co" {
			return e.performThen(w, r, 200, `{"object":"customer","email":"noid@b.co"}`)
		}
		return false
	}
	e.fault.Store(&f)
	r := e.run(`INSERT INTO stripe.customers (email) VALUES ('good@b.co'), ('noid@b.co') RETURNING id`)
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = 'good@b.co'`); got != "1" {
		t.Errorf("the row Stripe answered properly was not applied locally (reply %+v)", r)
	}
	if r.err == nil && len(r.rows) != 2 {
		t.Errorf("success %q with %d RETURNING rows", r.tag, len(r.rows))
	}
	if r.err != nil && !strings.Contains(r.err.Detail, mayHaveTakenEffect) {
		t.Errorf("detail %q", r.err.Detail)
	}
	// An update answered so: the row stays as it was, the error says the
	// update may have happened.
	id := e.ok(`INSERT INTO stripe.customers (email, name) VALUES ('upd@b.co', 'A') RETURNING id`).rows[0][0]
	f = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "POST" && form.Get("name") == "B" {
			return e.performThen(w, r, 200, `[]`)
		}
		return false
	}
	e.fault.Store(&f)
	r = e.run(`UPDATE stripe.customers SET name = 'B' WHERE id = $1`, id)
	if r.err == nil || !strings.Contains(r.err.Detail, mayHaveTakenEffect) {
		t.Errorf("update answered [] : %+v", r)
	}
}

// TestConcurrentRowsFailUnknown: rows run four at a time. When two
// rows in flight both fail with an unknown outcome (Stripe's 500s during an
// outage), DETAIL must not say that the second one did not reach Stripe:
// it may have, and here it did.
func TestConcurrentRowsFailUnknown(t *testing.T) {
	e := setup(t)
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "POST" && r.URL.Path == "/v1/customers" {
			time.Sleep(100 * time.Millisecond) // both rows are in flight
			return e.performThen(w, r, 500, `{"error":{"type":"api_error","message":"An unknown error occurred"}}`)
		}
		return false
	}
	e.fault.Store(&f)
	r := e.fails("58000", `INSERT INTO stripe.customers (email) VALUES ('o1@b.co'), ('o2@b.co')`)
	if n := len(e.emu.Objects("customers")); n != 2 {
		t.Fatalf("Stripe has %d customers", n)
	}
	if strings.Contains(r.err.Detail, "no row reached Stripe") || strings.Contains(r.err.Detail, "were not changed") ||
		!strings.Contains(r.err.Detail, "row 2") {
		t.Fatalf("detail claims row 2 did not reach Stripe: %q", r.err.Detail)
	}
}

// TestCancelAfterStripeAnswered: the client cancels while the answer
// is being applied (another session holds the row for a moment). The
// proxy must not leave a cancel in flight that lands on the client's next,
// unrelated statement.
func TestCancelAfterStripeAnswered(t *testing.T) {
	e := setup(t)
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	var id string
	if err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, name) VALUES ('c@b.co', 'A') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	stray := 0
	for i := range 8 {
		lock, err := e.pool.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lock.Exec(e.ctx, `SELECT 1 FROM stripe.customers WHERE id = $1 FOR UPDATE`, id); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(300 * time.Millisecond) // Stripe has answered; the apply waits on the lock
			c.PgConn().CancelRequest(context.Background())
			time.Sleep(200 * time.Millisecond)
			lock.Commit(context.Background())
		}()
		var name string
		start := time.Now()
		err = c.QueryRow(e.ctx, `UPDATE stripe.customers SET name = $1 WHERE id = $2 RETURNING name`, fmt.Sprint("N", i), id).Scan(&name)
		wg.Wait()
		t.Logf("round %d: cancelled UPDATE: %q %v (%v)", i, name, err, time.Since(start).Round(time.Millisecond))
		// The next statement has nothing to do with the cancel.
		if _, err := c.Exec(e.ctx, `SELECT pg_sleep(0.3)`); err != nil {
			t.Logf("round %d: the next statement was cancelled: %v", i, err)
			stray++
		}
	}
	if stray > 0 {
		t.Fatalf("%d of 8 statements after a cancelled write were cancelled by a stray upstream cancel", stray)
	}
}

// TestNoRollbackNoticeForRefusedWrite: inside BEGIN, a write that
// Stripe refuses outright changed nothing there: the client must not be
// told that it went to Stripe and that ROLLBACK cannot undo it. When the
// outcome is unknown (a 5xx) it may have, and the NOTICE stays.
func TestNoRollbackNoticeForRefusedWrite(t *testing.T) {
	e := setup(t)
	id := e.newCustomers("r@b.co")[0]
	const noticeText = "ROLLBACK cannot undo it"
	for _, tc := range []struct {
		status int
		body   string
		code   string
		notice bool
	}{
		{400, `{"error":{"type":"invalid_request_error","param":"name","message":"Invalid string"}}`, "22023", false},
		{402, cardDeclined, "P0001", false},
		{500, `{"error":{"type":"api_error","message":"Something went wrong"}}`, "58000", true},
	} {
		f := faultFunc(func(w http.ResponseWriter, r *http.Request, _ url2.Values) bool {
			return r.Method == http.MethodPost && stripeAnswer(w, tc.status, tc.body)
		})
		e.fault.Store(&f)
		if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
			t.Fatal(err)
		}
		r := e.fails(tc.code, `UPDATE stripe.customers SET name = 'New' WHERE id = $1`, id)
		if got := strings.Contains(strings.Join(r.notices, "|"), noticeText); got != tc.notice {
			t.Errorf("HTTP %d: notices %q, want the ROLLBACK notice: %v", tc.status, r.notices, tc.notice)
		}
		if _, err := e.conn.Exec(e.ctx, `ROLLBACK`); err != nil {
			t.Fatal(err)
		}
	}
	e.fault.Store(nil)
	// Multi-row: the first row, started before the second fails, reached
	// Stripe.
	f := faultFunc(func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		return form.Get("email") == "bad@b.co" && stripeAnswer(w, 400, `{"error":{"type":"invalid_request_error","message":"No"}}`)
	})
	e.fault.Store(&f)
	if _, err := e.conn.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	defer e.conn.Exec(e.ctx, `ROLLBACK`)
	r := e.fails("55000", `INSERT INTO stripe.customers (email) VALUES ('good@b.co'), ('bad@b.co')`)
	if !strings.Contains(strings.Join(r.notices, "|"), noticeText) {
		t.Errorf("multi-row, one row reached Stripe: notices %q", r.notices)
	}
}

// TestApplyAfterPostgresRestart: Postgres restarted (or crashed) while a
// write's Stripe call was out, ending pgstripe's pooled connections; the
// client, on a connection made since, must read its write at once. The
// apply took a dead connection from the pool ("conn closed", 57P01) and
// gave up, leaving the row to the events loop: the chaos test's
// read-your-write check caught it.
func TestApplyAfterPostgresRestart(t *testing.T) {
	e := setup(t)
	e.ok(`INSERT INTO stripe.customers (email) VALUES ('warm@b.co')`) // the pool has a connection
	killer, err := pgx.Connect(e.ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(e.ctx)
	client := e.conn.PgConn().PID()
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url2.Values) bool {
		if r.Method == "POST" && form.Get("email") == "after@b.co" {
			if _, err := killer.Exec(e.ctx, `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), $1)`, client); err != nil {
				t.Errorf("terminate: %v", err)
			}
		}
		return false
	}
	e.fault.Store(&f)
	r := e.ok(`INSERT INTO stripe.customers (email) VALUES ('after@b.co') RETURNING id`)
	if len(r.notices) > 0 {
		t.Errorf("notices: %v", r.notices)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = 'after@b.co'`); got != "1" {
		t.Fatalf("the write is not readable at once: %s local rows", got)
	}
}
