package writethrough

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/pgtest"
)

// performThenWait lets the emulator do a request's work at once, runs
// between (if any), then sends the emulator's answer: a Stripe that made
// the object while something else happened on the client's side.
func (e *env) performThenWait(w http.ResponseWriter, r *http.Request, between func()) bool {
	rec := httptest.NewRecorder()
	e.emu.ServeHTTP(rec, r)
	if between != nil {
		between()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
	return true
}

// TestRestartAfterStripeAnswered: Postgres restarts (fast shutdown)
// while a write's Stripe call is out; Stripe made the object. The apply
// reconnects and stores it, but the client's own session is gone. The
// client must get an error naming what reached Stripe, or it takes the
// write for undone and repeats it. Without RETURNING it got CommandComplete
// and then the bare FATAL; with RETURNING in the simple protocol the
// proxy closed the session (08006, no detail) before the interceptor's
// error reached the client.
func TestRestartAfterStripeAnswered(t *testing.T) {
	ctx := context.Background()
	cl, err := pgcluster.Start(ctx, pgcluster.Options{Settings: pgtest.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Stop() })
	admin, err := pgx.Connect(ctx, cl.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Exec(ctx, `CREATE DATABASE r`)
	admin.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := setupOn(t, cl.URL("r"))
	u := e.proxied()
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url.Values) bool {
		if r.Method != http.MethodPost || !strings.HasPrefix(form.Get("email"), "restart") {
			return false
		}
		return e.performThenWait(w, r, func() {
			if err := cl.Restart(ctx); err != nil {
				t.Errorf("restart: %v", err)
			}
		})
	}
	e.fault.Store(&f)

	check := func(t *testing.T, email, msg string) {
		t.Helper()
		var id string
		if err := e.pool.QueryRow(e.ctx, `SELECT id FROM stripe.customers WHERE email = $1`, email).Scan(&id); err != nil {
			t.Fatalf("%s not applied locally: %v", email, err)
		}
		if !strings.Contains(msg, id) || !strings.Contains(msg, "reached Stripe") || !strings.Contains(msg, "do not repeat") {
			t.Fatalf("the client is not told that %s (%s) reached Stripe: %s", email, id, msg)
		}
	}
	for _, m := range modes[:2] {
		for _, ret := range []string{"", " RETURNING id"} {
			t.Run(m.name+ret, func(t *testing.T) {
				c := e.client(u, m.mode)
				email := "restart-" + m.name + strings.ReplaceAll(ret, " ", "-") + "@b.co"
				rows, err := c.Query(e.ctx, `INSERT INTO stripe.customers (email) VALUES ($1)`+ret, email)
				if err == nil {
					for rows.Next() {
					}
					rows.Close()
					err = rows.Err()
				}
				var pe *pgconn.PgError
				if !asPgError(err, &pe) {
					t.Fatalf("want a Postgres error, got %v", err)
				}
				check(t, email, pe.Message+" "+pe.Detail)
			})
		}
	}
	t.Run("psql", func(t *testing.T) {
		out, err := exec.CommandContext(e.ctx, "psql", u, "-X", "-v", "VERBOSITY=verbose",
			"-c", `INSERT INTO stripe.customers (email) VALUES ('restart-psql@b.co')`).CombinedOutput()
		if err == nil {
			t.Fatalf("psql succeeded: %s", out)
		}
		check(t, "restart-psql@b.co", string(out))
	})
}

// inStripe counts the customers with this email in Stripe.
func (e *env) inStripe(email string) int {
	n := 0
	for _, raw := range e.emu.Objects("customers") {
		if strings.Contains(string(raw), `"`+email+`"`) {
			n++
		}
	}
	return n
}

func asPgError(err error, pe **pgconn.PgError) bool {
	p, ok := err.(*pgconn.PgError)
	if !ok {
		return false
	}
	*pe = p
	return true
}

// TestCancelMidStatement: the client cancels a three-row INSERT
// while Stripe works on row 2 (and makes it). The client gets 57014 at
// once, naming row 1, which is applied, and saying row 2 may have taken
// effect; row 3 never reaches Stripe; the next statement is not hit by the
// cancel.
func TestCancelMidStatement(t *testing.T) {
	e := setup(t, func(c *Config) { c.Concurrency = 1 })
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	// The cancel goes out once Stripe has made row 2, not after a fixed
	// delay: on a busy machine row 1 alone could outlast one.
	performed := make(chan time.Time, 1)
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url.Values) bool {
		if r.Method != http.MethodPost || !strings.HasPrefix(form.Get("email"), "slow") {
			return false
		}
		return e.performThenWait(w, r, func() {
			select {
			case performed <- time.Now():
			default:
			}
			time.Sleep(time.Second)
		})
	}
	e.fault.Store(&f)
	for attempt := range 3 {
		email := func(row string) string { return fmt.Sprintf("%s-%d@b.co", row, attempt) }
		execDone, cancelDone := make(chan struct{}), make(chan struct{})
		var cancelledAt time.Time
		go func() {
			defer close(cancelDone)
			select {
			case cancelledAt = <-performed:
				c.PgConn().CancelRequest(context.Background())
			case <-execDone:
			}
		}()
		_, err := c.Exec(e.ctx, `INSERT INTO stripe.customers (email) VALUES ($1), ($2), ($3)`, email("one"), email("slow"), email("three"))
		close(execDone)
		<-cancelDone
		if err == nil {
			t.Logf("attempt %d: the cancel came too late", attempt)
			continue
		}
		// Stripe answers row 2 a second after making it: the client's error
		// must come well before.
		var pe *pgconn.PgError
		if !asPgError(err, &pe) || pe.Code != "57014" || time.Since(cancelledAt) > 900*time.Millisecond {
			t.Fatalf("cancelled INSERT: %v %v after Stripe made row 2", err, time.Since(cancelledAt))
		}
		one := e.local(`SELECT id FROM stripe.customers WHERE email = $1`, email("one"))
		if !strings.Contains(pe.Detail, "row 2 of 3 failed") || !strings.Contains(pe.Detail, one) ||
			!strings.Contains(pe.Detail, mayHaveTakenEffect) {
			t.Fatalf("detail %q", pe.Detail)
		}
		time.Sleep(time.Second) // row 2's answer comes, to no one
		if e.inStripe(email("slow")) != 1 || e.inStripe(email("three")) != 0 {
			t.Fatalf("Stripe has row 2: %d times, row 3: %d times", e.inStripe(email("slow")), e.inStripe(email("three")))
		}
		if _, err := c.Exec(e.ctx, `SELECT pg_sleep(0.3)`); err != nil {
			t.Fatalf("the next statement: %v", err)
		}
		return
	}
	t.Fatal("no cancel took effect")
}

// TestTerminateBeforeReply: a client sends a multi-row write and
// Terminate, and closes its socket, before Stripe answers. Postgres would
// run the statement to its end: so does the proxy, every row reaches
// Stripe and is applied locally, and the upstream session ends.
func TestTerminateBeforeReply(t *testing.T) {
	e := setup(t, func(c *Config) { c.Concurrency = 1 })
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url.Values) bool {
		return r.Method == http.MethodPost && e.performThenWait(w, r, func() { time.Sleep(200 * time.Millisecond) })
	}
	e.fault.Store(&f)
	c := e.client(e.proxied(), pgx.QueryExecModeSimpleProtocol)
	pid := c.PgConn().PID() // the upstream backend's (see proxy's BackendKeyData)
	hj, err := c.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	hj.Frontend.Send(&pgproto3.Query{String: `INSERT INTO stripe.customers (email) VALUES ('t1@b.co'), ('t2@b.co'), ('t3@b.co')`})
	hj.Frontend.Send(&pgproto3.Terminate{})
	if err := hj.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
	hj.Conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		local := e.local(`SELECT count(*)::text FROM stripe.customers`)
		upstream := e.local(`SELECT count(*)::text FROM pg_stat_activity WHERE pid = $1`, int32(pid))
		if local == "3" && len(e.emu.Objects("customers")) == 3 && upstream == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stripe has %d customers, %s local rows, upstream session open: %s", len(e.emu.Objects("customers")), local, upstream)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPipelineStopsAtError: a pipeline of three INSERTs (one Sync)
// whose second Stripe declines: the third never reaches Stripe, the
// first stays (in Stripe and locally), the session goes on.
func TestPipelineStopsAtError(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	var f faultFunc = func(w http.ResponseWriter, r *http.Request, form url.Values) bool {
		return strings.HasPrefix(form.Get("email"), "p2") && stripeAnswer(w, 402, cardDeclined)
	}
	e.fault.Store(&f)
	for _, m := range modes[1:] {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u, m.mode)
			b := &pgx.Batch{}
			for _, p := range []string{"p1", "p2", "p3"} {
				b.Queue(`INSERT INTO stripe.customers (email) VALUES ($1)`, p+m.name+"@b.co")
			}
			if err := c.SendBatch(e.ctx, b).Close(); sqlstate(err) != "P0001" {
				t.Fatalf("batch: %v", err)
			}
			for p, want := range map[string]string{"p1": "1", "p3": "0"} {
				if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE email = $1`, p+m.name+"@b.co"); got != want {
					t.Errorf("%s: %s local rows", p, got)
				}
				if n := e.inStripe(p + m.name + "@b.co"); want == "0" && n != 0 || want == "1" && n != 1 {
					t.Errorf("%s: %d in Stripe", p, n)
				}
			}
			var one int
			if err := c.QueryRow(e.ctx, `SELECT 1`).Scan(&one); err != nil {
				t.Fatal(err)
			}
		})
	}
}
