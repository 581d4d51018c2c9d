package writethrough

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/translate"
)

var sqlStateRe = regexp.MustCompile(`^[0-9A-Z]{5}$`)

// FuzzExecute runs statement text with random $n values, each in text or
// binary format, through Execute as the proxy does (only what Classify
// intercepts), against a migrated database and the emulator. Whatever
// arrives: no panic, an answer within the timeout (a reply or an
// ErrorResponse with a SQLSTATE), and a Stripe write only for an INSERT,
// UPDATE or DELETE of a stripe table.
//
// params holds the values separated by \x1f ("\x00" alone is NULL);
// formats' bits pick binary (1) or text (0) per parameter.
func FuzzExecute(f *testing.F) {
	files, _ := filepath.Glob("../translate/testdata/*.sql")
	for _, file := range files {
		src, _ := os.ReadFile(file)
		for _, c := range strings.Split(string(src), "-- case:") {
			if i := strings.IndexByte(c, '\n'); i >= 0 {
				var sql []string
				for _, l := range strings.Split(c[i+1:], "\n") {
					if !strings.HasPrefix(l, "--") {
						sql = append(sql, l)
					}
				}
				f.Add(strings.TrimSpace(strings.Join(sql, "\n")), "a@b.co\x1f{\"k\": \"v\"}\x1fcus_1\x1f2", uint8(0))
			}
		}
	}
	f.Add(`INSERT INTO stripe.customers (email, metadata) VALUES ($1, $2)`, "x@y.co\x1f{\"a]\": \"b\"}", uint8(0))
	f.Add(`INSERT INTO stripe.products (name, active) VALUES ($1, $2)`, "p\x1f\x01", uint8(2))
	f.Add(`UPDATE stripe.customers SET balance = $1 WHERE id = $2`, "\x00\x00\x00\x00\x00\x00\x00\x07\x1fcus_1", uint8(1))
	f.Add(`INSERT INTO stripe.customers (email, name) VALUES ($1, $2)`, "a\x1f\xff\xfe", uint8(3))

	ctx := context.Background()
	url := pgtest.NewDB(f)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		f.Fatal(err)
	}
	emu, err := emulator.New(emulator.Options{RateLimit: -1, Seed: 2})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	f.Cleanup(srv.Close)
	api, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_fuzz", BaseURL: srv.URL, RateLimit: 1e6, MaxRetries: 1})
	if err != nil {
		f.Fatal(err)
	}
	ic := New(Config{Stripe: api, Pool: pool, Timeout: 5 * time.Second})
	var conn *pgx.Conn
	connect := func(t testing.TB) {
		if conn != nil && !conn.IsClosed() {
			return
		}
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		// A random WHERE may be slow (a cross join of generate_series):
		// bounded like a client would bound it.
		if _, err := c.Exec(ctx, "SET statement_timeout = '2s'; SET lock_timeout = '2s'"); err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	// A few rows, in Stripe and local, for UPDATE and DELETE to find.
	connect(f)
	for _, sql := range []string{
		`INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', '{"k": "v"}'), ('c@d.co', NULL)`,
		`INSERT INTO stripe.products (name) VALUES ('p')`,
	} {
		r := ic.Execute(ctx, PgConnUpstream(conn.PgConn()), Request{SQL: sql, TxStatus: 'I'})
		for _, m := range r.Messages {
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				f.Fatalf("%s: %s", sql, e.Message)
			}
		}
	}
	writes := func() int64 {
		var n int64
		for route, k := range emu.Stats().ByRoute {
			if !strings.HasPrefix(route, "GET ") {
				n += k
			}
		}
		return n
	}
	f.Fuzz(func(t *testing.T, sql, params string, formats uint8) {
		c := translate.Classify(sql)
		if c.Action != translate.Write {
			return // not intercepted: Postgres answers it
		}
		connect(t)
		req := Request{SQL: sql, Stmt: c.Stmt, TxStatus: conn.PgConn().TxStatus(), Describe: true}
		if params != "" {
			for i, p := range strings.Split(params, "\x1f") {
				if i >= 8 {
					break
				}
				if p == "\x00" {
					req.Params = append(req.Params, nil)
				} else {
					req.Params = append(req.Params, []byte(p))
				}
				req.ParamFormats = append(req.ParamFormats, int16(formats>>i&1))
			}
			req.ParamOIDs = make([]uint32, len(req.Params))
		}
		before := writes()
		ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		done := make(chan Reply, 1)
		go func() { done <- ic.Execute(ectx, PgConnUpstream(conn.PgConn()), req) }()
		var r Reply
		select {
		case r = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%q %q: Execute hangs", sql, params)
		}
		called := writes() > before
		for _, m := range r.Messages {
			if e, ok := m.(*pgproto3.ErrorResponse); ok && !sqlStateRe.MatchString(e.Code) {
				t.Fatalf("%q %q: error without a SQLSTATE: %+v", sql, params, e)
			}
		}
		if called {
			tree, err := pg_query.ParseToJSON(sql)
			if err != nil || !(strings.Contains(tree, `"InsertStmt"`) || strings.Contains(tree, `"UpdateStmt"`) || strings.Contains(tree, `"DeleteStmt"`)) {
				t.Fatalf("%q: Stripe written for a statement that is no INSERT, UPDATE or DELETE", sql)
			}
			if r.Pass {
				t.Fatalf("%q: Stripe written, then passed through to Postgres", sql)
			}
		}
		// Leave the session as a client would find it next.
		if conn.IsClosed() {
			return
		}
		if s := conn.PgConn().TxStatus(); s == 'T' || s == 'E' {
			conn.Exec(ctx, "ROLLBACK")
		}
	})
}
