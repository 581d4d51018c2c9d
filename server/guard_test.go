package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/pgtest"
)

// On a database as users have it (no pgstripe.local_write anywhere but on
// pgstripe's own connections), serve's writers pass the guard on stripe.*:
// migrate, the backfill, the events loop and the write-through's apply,
// with DATABASE_URL's role neither superuser nor owner. A client's write
// that bypasses the write-through is refused, also when it comes through
// the proxy inside a DO block or a function, and nothing of it reaches
// Stripe or the table; a client that sets the escape hatch writes the
// local copy only.
func TestLocalWriteGuardServe(t *testing.T) {
	ctx := context.Background()
	adminURL := pgtest.NewGuardedDB(t)
	roleURL, _ := createLimitedRole(t, adminURL)
	e, base := emulatortest.Start(t, emulator.Options{Seed: 3})
	proxyAddr, logs, err := serveEnv(t, roleURL, base)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	admin := pgtest.Connect(t, adminURL)
	waitLive(t, admin, 90*time.Second)

	client := proxyConn(t, roleURL, proxyAddr)
	var id string
	if err := client.QueryRow(ctx, `INSERT INTO stripe.customers (email, name) VALUES ('guard@example.com', 'first') RETURNING id`).Scan(&id); err != nil {
		t.Fatalf("write-through INSERT: %v", err)
	}
	if _, err := client.Exec(ctx, `UPDATE stripe.customers SET name = 'second' WHERE id = $1`, id); err != nil {
		t.Fatalf("write-through UPDATE: %v", err)
	}
	var gone string
	if err := client.QueryRow(ctx, `SELECT id FROM stripe.customers WHERE id <> $1 ORDER BY id LIMIT 1`, id).Scan(&gone); err != nil {
		t.Fatal(err)
	}
	if tag, err := client.Exec(ctx, `DELETE FROM stripe.customers WHERE id = $1`, gone); err != nil || tag.String() != "DELETE 1" {
		t.Fatalf("write-through DELETE: %v %v", tag, err)
	}
	localName := func() string {
		t.Helper()
		var n string
		if err := admin.QueryRow(ctx, `SELECT name FROM stripe.customers WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := localName(); n != "second" {
		t.Errorf("applied name %q, want second", n)
	}

	// An event: Stripe changed the object, the events loop applies it.
	stripePost(t, base, "/v1/customers/"+id, url.Values{"name": {"from stripe"}})
	deadline := time.Now().Add(30 * time.Second)
	for localName() != "from stripe" {
		if time.Now().After(deadline) {
			t.Fatalf("the event never applied: name %q", localName())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Stripe's writes only: sync keeps reading events meanwhile.
	writes := func() int64 {
		var n int64
		for route, c := range e.Stats().ByRoute {
			if !strings.HasPrefix(route, "GET ") {
				n += c
			}
		}
		return n
	}
	calls := writes()
	refusedHere := func(what string, err error) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || pe.Message != "writes to stripe.customers go through pgstripe's proxy: this UPDATE would change the local copy only" {
			t.Errorf("%s: want the guard's 0A000, got %v", what, err)
		}
	}
	_, err = client.Exec(ctx, `DO $$BEGIN UPDATE stripe.customers SET name = 'local' WHERE id = '`+id+`'; END$$`)
	refusedHere("DO block through the proxy", err)
	_, err = client.Exec(ctx, `CREATE FUNCTION pg_temp.rename(c text) RETURNS void LANGUAGE sql AS $$ UPDATE stripe.customers SET name = 'local' WHERE id = c $$`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Exec(ctx, `SELECT pg_temp.rename($1)`, id)
	refusedHere("function through the proxy", err)
	_, err = admin.Exec(ctx, `UPDATE stripe.customers SET name = 'local' WHERE id = $1`, id)
	refusedHere("direct connection", err)
	if n := localName(); n != "from stripe" {
		t.Errorf("a refused write changed the row: %q", n)
	}
	if c := writes(); c != calls {
		t.Errorf("refused writes made %d Stripe calls", c-calls)
	}

	waitInSync(t, ctx, adminURL, e)

	// The escape hatch, through the proxy too: the local copy only.
	if _, err := client.Exec(ctx, `SET pgstripe.local_write = on`); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Exec(ctx, `SELECT pg_temp.rename($1)`, id); err != nil {
		t.Fatalf("with pgstripe.local_write on: %v", err)
	}
	if n := localName(); n != "local" {
		t.Errorf("escape hatch: name %q, want local", n)
	}
	var inStripe struct{ Name string }
	json.Unmarshal(e.Objects("customers")[id], &inStripe)
	if inStripe.Name != "from stripe" || writes() != calls {
		t.Errorf("a local write reached Stripe: name %q, %d calls", inStripe.Name, writes()-calls)
	}
	if s := logs.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("errors logged:\n%s", s)
	}
}

// Through PgBouncer in session mode on a database as users have it (the
// other PgBouncer tests run on pgtest's cluster, which marks every
// session, so they would pass if the mark were lost on the way): the
// backfill, the events loop and the write-through's apply pass the guard
// (exercise waits for live, compares with Stripe and writes through the
// proxy). And the mark does not outlive pgstripe's connection: the server
// connection PgBouncer hands the next client (LIFO, the same backend)
// went through its server_reset_query, so a client's direct write there
// is refused.
func TestPgBouncerSessionGuarded(t *testing.T) {
	ctx := context.Background()
	adminURL := pgtest.NewGuardedDB(t)
	bouncerURL := startPgBouncer(t, adminURL, "session")
	exercise(t, adminURL, bouncerURL)

	cfg, err := pgx.ParseConfig(bouncerURL)
	if err != nil {
		t.Fatal(err)
	}
	config.OwnSession(&cfg.Config)
	own, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ownPid int32
	var mark string
	if err := own.QueryRow(ctx, `SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('pgstripe.local_write')`).Scan(&ownPid, &mark); err != nil || mark != "on" {
		t.Fatalf("pgstripe's session through PgBouncer: mark %q, %v", mark, err)
	}
	if err := own.Close(ctx); err != nil {
		t.Fatal(err)
	}

	client := pgtest.Connect(t, bouncerURL)
	var pid int32
	var setting *string
	if err := client.QueryRow(ctx, `SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('pgstripe.local_write', true)`).Scan(&pid, &setting); err != nil {
		t.Fatal(err)
	}
	if pid != ownPid {
		t.Fatalf("PgBouncer gave the next client backend %d, not pgstripe's %d: the reset is not observed", pid, ownPid)
	}
	if setting != nil && *setting == "on" {
		t.Errorf("a client on pgstripe's former server connection has pgstripe.local_write = %q", *setting)
	}
	_, err = client.Exec(ctx, `UPDATE stripe.customers SET name = 'local'`)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Errorf("a direct write on pgstripe's former server connection: want the guard's 0A000, got %v", err)
	}
}
