package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/pgcluster"
)

// TestFailoverHosts: with several hosts (DATABASE_URL's host=a,b,
// target_session_attrs=read-write), each session goes to the host that
// works now, not the one pgstripe reached at start-up: the first host
// stopped, then a standby (demoted) while the other was promoted.
func TestFailoverHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all app 127.0.0.1/32 scram-sha-256\n"
	var cs [2]*pgcluster.Cluster
	for i := range cs {
		c, err := pgcluster.Start(ctx, pgcluster.Options{HBA: hba})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		admin, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(ctx, `CREATE ROLE app LOGIN PASSWORD 'secret'`); err != nil {
			t.Fatal(err)
		}
		admin.Close(ctx)
		cs[i] = c
	}
	a, b := cs[0], cs[1]
	tp := startProxy(t, Config{Hosts: []UpstreamHost{{Addr: a.Addr()}, {Addr: b.Addr()}}, Primary: true})
	port := func(user string) (int, error) {
		conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:secret@%s/postgres?sslmode=disable", user, tp.addr))
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		var p int
		err = conn.QueryRow(ctx, `SELECT pg_catalog.inet_server_port()`).Scan(&p)
		return p, err
	}
	want := func(step, user string, c *pgcluster.Cluster) {
		t.Helper()
		p, err := port(user)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if p != c.Port {
			t.Fatalf("%s: session on port %d, want %d", step, p, c.Port)
		}
	}
	demote := func(c *pgcluster.Cluster) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(c.Dir, "data", "standby.signal"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want("both up", "app", a)

	// A down: connection refused, B takes over.
	a.Kill()
	want("first host down", "postgres", b)
	want("first host down, again", "app", b)

	// B demoted, A back as primary: a trust session moves transparently.
	demote(b)
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	want("second host demoted (trust)", "postgres", a)

	// A demoted, B promoted: a SCRAM session has answered A's
	// authentication, which B cannot take: it ends with 08006, and the
	// next one goes to B.
	demote(a)
	promote, err := pgx.Connect(ctx, b.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := promote.Exec(ctx, `SELECT pg_catalog.pg_promote(true, 30)`); err != nil {
		t.Fatal(err)
	}
	promote.Close(ctx)
	_, err = port("app")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" {
		t.Fatalf("session authenticated on a standby: %v, want 08006", err)
	}
	want("first host demoted, second promoted (scram)", "app", b)
	want("and again", "postgres", b)

	// Everything on standbys: no session.
	demote(b)
	if _, err := port("postgres"); !errors.As(err, &pe) || pe.Code != "08006" {
		t.Fatalf("with no primary: %v, want 08006", err)
	}
}

// BenchmarkConnect: a session's startup through the proxy (connect,
// trust authentication, close), the path Config.Hosts changed.
func BenchmarkConnect(b *testing.B) {
	tp := startProxy(b, Config{})
	url := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", tp.addr)
	ctx := context.Background()
	for b.Loop() {
		pc, err := pgconn.Connect(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		pc.Close(ctx)
	}
}
