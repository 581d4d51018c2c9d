package writethrough

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/proxy"
)

// proxied starts a proxy with the interceptor in front of the env's
// database and returns a URL through it.
func (e *env) proxied() string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := url.Parse(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	p := proxy.New(proxy.Config{Upstream: u.Host, Classify: ProxyClassify, Interceptor: e.ic})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			e.t.Error("proxy did not stop")
		}
	})
	u.Host = ln.Addr().String()
	return u.String()
}

// client connects through the proxy, keeping every notice whole.
type client struct {
	*pgx.Conn
	mu      sync.Mutex
	notices []*pgconn.Notice
}

func (e *env) client(u string, mode pgx.QueryExecMode) *client {
	e.t.Helper()
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	c := &client{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		c.mu.Lock()
		c.notices = append(c.notices, n)
		c.mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(e.ctx, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close(context.Background()) })
	c.Conn = conn
	return c
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

var modes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"simple", pgx.QueryExecModeSimpleProtocol},
	{"extended", pgx.QueryExecModeCacheStatement},
	{"describe-exec", pgx.QueryExecModeExec},
}

func TestThroughProxy(t *testing.T) {
	e := setup(t)
	u := e.proxied()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := e.client(u, m.mode)
			email := m.name + "@b.co"
			// The done-when statement, then read it back at once.
			var id, gotEmail string
			var created time.Time
			err := c.QueryRow(e.ctx, `INSERT INTO stripe.customers (email, metadata) VALUES ($1, '{"tier":"gold"}') RETURNING id, email, created`, email).
				Scan(&id, &gotEmail, &created)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(id, "cus_") || gotEmail != email || time.Since(created) > time.Hour {
				t.Fatalf("returning %q %q %v", id, gotEmail, created)
			}
			var tier string
			if err := c.QueryRow(e.ctx, `SELECT metadata->>'tier' FROM stripe.customers WHERE email = $1`, email).Scan(&tier); err != nil || tier != "gold" {
				t.Fatalf("read back: %q %v", tier, err)
			}
			// Binary parameters of several types, RETURNING in binary.
			var bal int64
			var md map[string]any
			var patch any = `{"plan":"pro"}`
			if m.mode == pgx.QueryExecModeCacheStatement {
				patch = map[string]any{"plan": "pro"} // jsonb in binary
			}
			err = c.QueryRow(e.ctx, `UPDATE stripe.customers SET balance = $1, metadata = metadata || $2, name = $3 WHERE id = $4 RETURNING balance, metadata`,
				int64(-250), patch, "Name "+m.name, id).Scan(&bal, &md)
			if err != nil {
				t.Fatal(err)
			}
			if bal != -250 || md["plan"] != "pro" || md["tier"] != "gold" {
				t.Fatalf("update returning %d %v", bal, md)
			}
			tag, err := c.Exec(e.ctx, `UPDATE stripe.customers SET name = $1 WHERE email = $2`, "Again", email)
			if err != nil || tag.String() != "UPDATE 1" {
				t.Fatalf("tag %q %v", tag, err)
			}
			tag, err = c.Exec(e.ctx, `DELETE FROM stripe.customers WHERE id = $1`, id)
			if err != nil || tag.String() != "DELETE 1" {
				t.Fatalf("tag %q %v", tag, err)
			}
			var n int
			if err := c.QueryRow(e.ctx, `SELECT count(*) FROM stripe.customers WHERE id = $1`, id).Scan(&n); err != nil || n != 0 {
				t.Fatalf("after delete: %d %v", n, err)
			}
			// Errors come back with their SQLSTATE and the session goes on.
			if _, err := c.Exec(e.ctx, `INSERT INTO stripe.customers (email, livemode) VALUES ($1, $2)`, "x@b.co", true); sqlstate(err) != "42703" {
				t.Fatalf("read-only column: %v", err)
			}
			if _, err := c.Exec(e.ctx, `DELETE FROM stripe.prices WHERE id = $1`, "price_x"); sqlstate(err) != "0A000" {
				t.Fatalf("prices delete: %v", err)
			}
			if err := c.QueryRow(e.ctx, `SELECT 1`).Scan(&n); err != nil {
				t.Fatalf("session broken: %v", err)
			}
		})
	}
}

func TestThroughProxyTransaction(t *testing.T) {
	e := setup(t)
	c := e.client(e.proxied(), pgx.QueryExecModeCacheStatement)
	tx, err := c.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if err := tx.QueryRow(e.ctx, `INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`, "tx@b.co").Scan(&id); err != nil {
		t.Fatal(err)
	}
	// Read-your-write inside the client's transaction.
	var n int
	if err := tx.QueryRow(e.ctx, `SELECT count(*) FROM stripe.customers WHERE id = $1`, id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("in tx: %d %v", n, err)
	}
	// A Stripe error aborts the transaction, as any error would.
	if _, err := e.pool.Exec(e.ctx, `INSERT INTO stripe.customers (id, _raw, _as_of, _synced_at) VALUES ('cus_ghost', '{"id":"cus_ghost"}', now(), now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(e.ctx, `UPDATE stripe.customers SET name = 'x' WHERE id = 'cus_ghost'`); sqlstate(err) != "P0002" {
		t.Fatalf("missing object: %v", err)
	}
	if _, err := tx.Exec(e.ctx, `INSERT INTO stripe.customers (email) VALUES ('after@b.co')`); sqlstate(err) != "25P02" {
		t.Fatalf("in failed tx: %v", err)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	_, all := c.pipelineNotices()
	notices := strings.Join(all, "|")
	if !strings.Contains(notices, "ROLLBACK cannot undo") {
		t.Fatalf("notices %q", notices)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers WHERE id = $1`, id); got != "1" {
		t.Fatalf("after ROLLBACK: %s", got)
	}
	if e.stripeObj("customers", id) == nil {
		t.Fatal("not in Stripe")
	}
}

func TestThroughProxyUnqualifiedElsewhere(t *testing.T) {
	e := setup(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE public.customers (id serial, email text)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range modes {
		c := e.client(e.proxied(), m.mode)
		var id int
		if err := c.QueryRow(e.ctx, `INSERT INTO customers (email) VALUES ($1) RETURNING id`, "p@b.co").Scan(&id); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	if got := e.local(`SELECT count(*)::text FROM public.customers`); got != "3" {
		t.Fatalf("public rows %s", got)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers`); got != "0" {
		t.Fatalf("stripe rows %s", got)
	}
}

// TestThroughProxyUnqualifiedUnrelayable: a multi-statement Query or COPY
// FROM naming a stripe table without its schema is refused like its
// qualified form when search_path leads to stripe, and runs untouched when
// it leads to the client's own table.
func TestThroughProxyUnqualifiedUnrelayable(t *testing.T) {
	e := setup(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE public.customers (id serial, email text)`); err != nil {
		t.Fatal(err)
	}
	c := e.client(e.proxied(), pgx.QueryExecModeCacheStatement)
	pg := c.PgConn()
	calls := e.calls()

	if _, err := c.Exec(e.ctx, `SET search_path = stripe, public`); err != nil {
		t.Fatal(err)
	}
	_, err := pg.Exec(e.ctx, `INSERT INTO customers (email) VALUES ('m@b.co'); SELECT 1`).ReadAll()
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "statement of its own") {
		t.Fatalf("multi-statement into stripe.customers: %v", err)
	}
	_, err = pg.CopyFrom(e.ctx, strings.NewReader("c@b.co\n"), `COPY customers (email) FROM STDIN`)
	if sqlstate(err) != "0A000" || !strings.Contains(err.Error(), "COPY FROM into stripe.customers") {
		t.Fatalf("COPY into stripe.customers: %v", err)
	}
	if pg.TxStatus() != 'I' {
		t.Fatalf("tx status %c", pg.TxStatus())
	}

	if _, err := c.Exec(e.ctx, `SET search_path = public`); err != nil {
		t.Fatal(err)
	}
	res, err := pg.Exec(e.ctx, `INSERT INTO customers (email) VALUES ('m@b.co'); SELECT count(*) FROM customers`).ReadAll()
	if err != nil || len(res) != 2 || string(res[1].Rows[0][0]) != "1" {
		t.Fatalf("multi-statement into public.customers: %+v %v", res, err)
	}
	tag, err := pg.CopyFrom(e.ctx, strings.NewReader("c1@b.co\nc2@b.co\n"), `COPY customers (email) FROM STDIN`)
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("COPY into public.customers: %v %v", tag, err)
	}

	if got := e.local(`SELECT count(*)::text FROM public.customers`); got != "3" {
		t.Fatalf("public rows %s", got)
	}
	if got := e.local(`SELECT count(*)::text FROM stripe.customers`); got != "0" {
		t.Fatalf("stripe rows %s", got)
	}
	if got := e.calls() - calls; got != 0 {
		t.Fatalf("%d Stripe calls", got)
	}
}
