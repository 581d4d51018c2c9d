package writethrough

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
)

// The proxy opens each session on the database the client names, and any
// role may own a database of its own on the same server with a schema
// named stripe in it (pgstripe migrate makes one). A write there is not a
// write to pgstripe's tables: it must never reach Stripe, whose objects
// belong to the database pgstripe syncs. Here a role with no privilege at
// all in pgstripe's database tries to delete a customer it does not own
// and to create one.
func TestOtherDatabaseNeverReachesStripe(t *testing.T) {
	e := setup(t)
	victim := e.ok(`INSERT INTO stripe.customers (email) VALUES ('victim@b.co') RETURNING id`).rows[0][0]

	role := fmt.Sprintf("evil_%d", time.Now().UnixNano())
	admin := pgtest.Connect(t, pgtest.Cluster(t).URL("postgres"))
	own := "evil_db_" + fmt.Sprint(time.Now().UnixNano())
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`CREATE DATABASE ` + own + ` OWNER ` + role + ` TEMPLATE template0`,
	} {
		if _, err := admin.Exec(e.ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		admin.Exec(e.ctx, `DROP DATABASE IF EXISTS `+own+` WITH (FORCE)`)
		admin.Exec(e.ctx, `DROP ROLE IF EXISTS `+role)
	})

	// The role builds pgstripe's schema in its own database, as itself.
	u, _ := url.Parse(pgtest.Cluster(t).URL(own))
	u.User = url.User(role)
	pool, err := pgxpool.New(e.ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(e.ctx, pool); err != nil {
		t.Fatalf("migrate as %s: %v", role, err)
	}
	// A row naming the victim's id, written directly (not through the
	// proxy): the _set_by_stripe defaults only guard columns left out.
	if _, err := pool.Exec(e.ctx, `INSERT INTO stripe.customers (id, email, _raw, _synced_at, _as_of) VALUES ($1, 'x', '{}', now(), now())`, victim); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	pu, _ := url.Parse(e.proxied())
	pu.User = url.User(role)
	pu.Path = "/" + own
	c := e.client(pu.String(), pgx.QueryExecModeExec)
	before := e.calls()
	for _, q := range []string{
		`DELETE FROM stripe.customers WHERE id = '` + victim + `'`,
		`UPDATE stripe.customers SET name = 'pwned' WHERE id = '` + victim + `'`,
		`INSERT INTO stripe.customers (email) VALUES ('evil@b.co')`,
	} {
		if _, err := c.Exec(e.ctx, q); sqlstate(err) != "0A000" {
			t.Errorf("%s on another database: %v, want SQLSTATE 0A000", q, err)
		}
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("a session on another database made %d Stripe calls", n)
	}
	if o := e.stripeObj("customers", victim); o == nil || o["name"] != nil {
		t.Errorf("the victim customer was changed or deleted in Stripe: %v", o)
	}
	if got := e.local(`SELECT string_agg(email, ',') FROM stripe.customers`); got != "victim@b.co" {
		t.Errorf("pgstripe's own table changed: %s", got)
	}
}

// Values and metadata keys that look like form syntax reach Stripe as
// exactly the parameter they are, byte for byte: text columns carrying
// "&amount=1", metadata keys and values with '&', '=', '%', '+', newlines.
func TestFormValuesNotSmuggled(t *testing.T) {
	e := setup(t)
	var mu sync.Mutex
	var bodies []url.Values
	var raws []string
	f := faultFunc(func(w http.ResponseWriter, r *http.Request, form url.Values) bool {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			mu.Lock()
			bodies, raws = append(bodies, form), append(raws, string(body))
			mu.Unlock()
		}
		return false
	})
	e.fault.Store(&f)
	name := "x&amount=1&metadata[evil]=1\n%00%26+;"
	md := map[string]any{"k&description=pwned": "v=1&w=2", "pct%41": "100%", "line\nbreak": "a\r\nb", "plus+ sign": "+ +"}
	id := e.ok(`INSERT INTO stripe.customers (email, name, metadata) VALUES ('f@b.co', $1, $2) RETURNING id`, name, md).rows[0][0]
	if len(bodies) != 1 {
		t.Fatalf("%d POSTs", len(bodies))
	}
	got := bodies[0]
	want := url.Values{"email": {"f@b.co"}, "name": {name}}
	for k, v := range md {
		want["metadata["+k+"]"] = []string{v.(string)}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Stripe got %v (body %q), want %v", got, raws[0], want)
	}
	o := e.stripeObj("customers", id)
	if o["name"] != name || o["description"] != nil || !reflect.DeepEqual(o["metadata"], md) {
		t.Errorf("stripe object: name %q description %v metadata %v", o["name"], o["description"], o["metadata"])
	}
}

// An id goes into the URL path escaped, but no escaping gives an empty id,
// "." or ".." a path of their own: /v1/customers/ is the create endpoint
// (a POST there makes a new customer), and servers and proxies on the way
// may resolve dot segments (/v1/invoices/../pay). Stripe never makes such
// ids (its custom ids are letters, digits, '_' and '-'); a local row can
// still have one, written directly on Postgres.
func TestUnaddressableIDsNeverCalled(t *testing.T) {
	e := setup(t)
	for _, id := range []string{"", ".", ".."} {
		if _, err := e.pool.Exec(e.ctx, `INSERT INTO stripe.customers (id, email, _raw, _synced_at, _as_of) VALUES ($1, 'dot@b.co', '{}', now(), now())`, id); err != nil {
			t.Fatal(err)
		}
	}
	before := e.calls()
	for _, q := range []string{
		`UPDATE stripe.customers SET name = 'n' WHERE id = ''`,
		`UPDATE stripe.customers SET name = 'n' WHERE id = '.'`,
		`UPDATE stripe.customers SET metadata = '{"a":"b"}' WHERE email = 'dot@b.co'`,
		`DELETE FROM stripe.customers WHERE id = '..'`,
	} {
		e.fails("22023", q)
	}
	if n := e.calls() - before; n != 0 {
		t.Errorf("%d Stripe calls for ids no Stripe object has", n)
	}
	if n := len(e.emu.Objects("customers")); n != 0 {
		t.Errorf("the emulator has %d customers, want none", n)
	}
}

// When pgstripe's own database can't be reached, the client hears that,
// not pgstripe's role, database name, password or the server's internal
// address (a pgx connect error names all but the password).
func TestOwnDatabaseFailureNamesNothingInternal(t *testing.T) {
	const bad = "postgres://pgstripe_internal_role:hunter2@127.0.0.1:1/internal_db_name?connect_timeout=2"
	unreachable, err := pgxpool.New(context.Background(), bad)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unreachable.Close)
	e := setup(t, func(c *Config) { c.Pool = unreachable })
	leaks := func(r reply) bool {
		var all []string
		if r.err != nil {
			all = append(all, r.err.Message, r.err.Detail, r.err.Hint)
		}
		all = append(all, r.notices...)
		s := strings.Join(all, "\n")
		return strings.Contains(s, "pgstripe_internal_role") || strings.Contains(s, "internal_db_name") ||
			strings.Contains(s, "hunter2") || strings.Contains(s, "127.0.0.1")
	}
	// Before any call: the database pgstripe syncs can't be told.
	before := e.calls()
	r := e.fails("08006", `INSERT INTO stripe.customers (email) VALUES ('a@b.co')`)
	if leaks(r) || e.calls() != before {
		t.Errorf("reply %q / %q, %d calls", r.err.Message, r.err.Detail, e.calls()-before)
	}
	// After the call: the apply fails, the client gets a NOTICE.
	e.ic.db = e.local(`SELECT current_database()`)
	r = e.ok(`INSERT INTO stripe.customers (email) VALUES ('b@b.co')`)
	if len(r.notices) == 0 || leaks(r) {
		t.Errorf("notices %q", r.notices)
	}
}

// A write the parser here gives up on for its nesting, which Postgres
// runs, must not change the local copy behind Stripe's back.
func TestTooDeepWriteNotPassedThrough(t *testing.T) {
	e := setup(t)
	id := e.ok(`INSERT INTO stripe.customers (email) VALUES ('deep@b.co') RETURNING id`).rows[0][0]
	q := `UPDATE stripe.customers SET name = 'local only' WHERE ` + strings.Repeat("NOT ", 5000) + `(id = '` + id + `')`
	if r := e.run(q); r.pass || r.err == nil || r.err.Code != "54001" {
		t.Errorf("pass %v, err %+v; want 54001", r.pass, r.err)
	}
	// Postgres itself runs it (so passing it on would have).
	tx, err := e.conn.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := tx.Exec(e.ctx, q)
	tx.Rollback(e.ctx)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("directly on Postgres: %v %v", tag, err)
	}
	if got := e.local(`SELECT coalesce(name, '') FROM stripe.customers WHERE id = $1`, id); got != "" {
		t.Errorf("local name %q", got)
	}
}
