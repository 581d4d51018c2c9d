package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/schema"
)

var (
	cluster *pgcluster.Cluster
	dbSeq   atomic.Int64

	lazyOnce sync.Once
	lazyErr  error
)

// Main runs the tests of a package against one throwaway cluster. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// The cluster starts lazily on the first NewDB, so packages whose tests are
// filtered out by -run don't pay for it.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit, for a TestMain that has its own clean-up to
// do afterwards (deferred calls don't run past os.Exit): it runs the tests,
// stops the cluster and returns the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	return code
}

// Cluster returns the package's cluster, starting it if needed.
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	lazyOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cluster, lazyErr = pgcluster.Start(ctx, pgcluster.Options{Settings: Settings()})
	})
	if lazyErr != nil {
		t.Fatalf("pgtest: %v", lazyErr)
	}
	return cluster
}

// Settings are the postgresql.conf settings of the cluster pgtest starts:
// pgstripe.local_write on (schema.LocalWriteSetting), so that tests may
// seed and inspect stripe.* on any connection, as an operator may with
// that setting; pgstripe's own connections set it themselves. A test that
// starts a cluster of its own and writes stripe.* that way passes them
// too; NewGuardedDB gives a database without it.
func Settings() map[string]string {
	return map[string]string{schema.LocalWriteSetting: "on"}
}

// NewDB creates an empty database for this test and returns its URL
// (superuser postgres, trust authentication). The database is dropped when
// the test ends.
func NewDB(t testing.TB) string {
	t.Helper()
	return newDB(t, false)
}

// NewGuardedDB is NewDB for a database as users have it: pgstripe.local_write
// is off (ALTER DATABASE … SET), so a write to stripe.* made on a
// connection that does not set it itself is refused, as it is outside
// tests.
func NewGuardedDB(t testing.TB) string {
	t.Helper()
	return newDB(t, true)
}

func newDB(t testing.TB, guarded bool) string {
	t.Helper()
	c := Cluster(t)
	name := fmt.Sprintf("t%d_%s", dbSeq.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	if guarded {
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" SET "+schema.LocalWriteSetting+" = off"); err != nil {
			t.Fatalf("pgtest: guard database: %v", err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return c.URL(name)
}

// Connect opens a connection to url that is closed when the test ends.
func Connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// HoldRows opens a user's transaction on url holding the rows of
// stripe.table whose id is among ids (SELECT … FOR UPDATE, then idle, as
// a psql session left idle in transaction) and returns it with its
// backend pid; it fails the test unless every id has a row. The
// transaction is rolled back at the test's end.
func HoldRows(t testing.TB, url, table string, ids ...string) (pgx.Tx, int) {
	t.Helper()
	ctx := context.Background()
	tx, err := Connect(t, url).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx) })
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM stripe.`+pgx.Identifier{table}.Sanitize()+` WHERE id = ANY($1) FOR UPDATE) l`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ids) {
		t.Fatalf("locked %d rows of %s, want %d", n, table, len(ids))
	}
	var pid int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return tx, pid
}

// NewMigratedDB is NewDB with pgstripe's schema migrated, and a pool on
// it that closes when the test ends.
func NewMigratedDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	url := NewDB(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	return pool, url
}

// RefusingPort returns a port on 127.0.0.1 that refuses every connection
// until the test ends: a socket bound to it that never listens holds it,
// so no other process (a parallel test's listener) can take it meanwhile,
// as it can take a port found free and closed.
func RefusingPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
