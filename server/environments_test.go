package server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/verify"
)

// createLimitedRole creates a login role that is neither a superuser nor the
// database's owner, with only CREATE on the database (what the README asks
// of DATABASE_URL's role), and returns its URL.
func createLimitedRole(t *testing.T, dbURL string) (roleURL, role string) {
	t.Helper()
	ctx := context.Background()
	admin := pgtest.Connect(t, dbURL)
	role = fmt.Sprintf("pgs_%d", time.Now().UnixNano())
	u, _ := url.Parse(dbURL)
	db := strings.TrimPrefix(u.Path, "/")
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT CREATE ON DATABASE ` + pgx.Identifier{db}.Sanitize() + ` TO ` + role,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		admin.Exec(ctx, `DROP OWNED BY `+role)
		admin.Exec(ctx, `DROP ROLE `+role)
	})
	u.User = url.User(role)
	return u.String(), role
}

// serveEnv is startServe as the instance "review".
func serveEnv(t *testing.T, dbURL, base string) (proxyAddr string, logs *logtest.Buffer, err error) {
	t.Helper()
	p, _, logs, err := startServe(t, dbURL, base, "review")
	return p, logs, err
}

// waitLive waits until every object type is live.
func waitLive(t *testing.T, conn *pgx.Conn, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var notLive int
		var phases string
		err := conn.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE phase <> 'live'),
			coalesce(string_agg(object || ':' || phase || coalesce(' ' || last_error, ''), ', ') FILTER (WHERE phase <> 'live'), '')
			FROM stripe_sync.status`).Scan(&notLive, &phases)
		if err == nil && notLive == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync never went live: %v %s", err, phases)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stripePost(t *testing.T, base, path string, form url.Values) {
	t.Helper()
	if status, body := stripeDo(t, "POST", base, path, form); status != 200 {
		t.Fatalf("POST %s: %d %v", path, status, body["error"])
	}
}

// exercise runs sync and the write-through under DATABASE_URL (dbURL for the
// superuser's checks) and checks that the tables end exact.
func exercise(t *testing.T, adminURL, dbURL string) {
	t.Helper()
	e, base := emulatortest.Start(t, emulator.Options{Seed: 3})
	exerciseOn(t, e, base, adminURL, dbURL, "東京 Zoë")
}

// exerciseOn is exercise against the emulator e at base, which may hold
// other tests' objects (seeding one takes seconds under the race
// detector): the customer it creates is named tokyo, which must be
// unique to the test and hold text beyond Latin-1.
func exerciseOn(t *testing.T, e *emulator.Emulator, base, adminURL, dbURL, tokyo string) {
	t.Helper()
	ctx := context.Background()
	proxyAddr, logs, err := serveEnv(t, dbURL, base)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	admin := pgtest.Connect(t, adminURL)
	waitLive(t, admin, 90*time.Second)

	// An event with text beyond Latin-1.
	stripePost(t, base, "/v1/customers", url.Values{"name": {tokyo}, "email": {"tokyo@example.com"}})

	// A write through the proxy, as DATABASE_URL's role.
	client := proxyConn(t, dbURL, proxyAddr)
	var id, name string
	var created time.Time
	if err := client.QueryRow(ctx, `INSERT INTO stripe.customers (email, name, metadata) VALUES ('w@example.com', 'Zoë 東京', '{"k":"v"}') RETURNING id, name, created`).Scan(&id, &name, &created); err != nil {
		t.Fatalf("write through the proxy: %v", err)
	}
	if name != "Zoë 東京" || time.Since(created) > time.Hour || time.Since(created) < -time.Hour {
		t.Errorf("RETURNING name %q created %v", name, created)
	}

	waitInSync(t, ctx, adminURL, e)
	var n int
	admin.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE name = $1`, tokyo).Scan(&n)
	if n != 1 {
		t.Errorf("the event's customer is there %d times", n)
	}
	if s := logs.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("errors logged:\n%s", s)
	}
}

// Settings users put on their database or on DATABASE_URL's role apply to
// every pgstripe connection; sync, migrate and the write-through must work
// under each of them.
func TestRoleSettings(t *testing.T) {
	// One emulator for all: each subtest's fresh database backfills it
	// whole, earlier subtests' objects included.
	e, base := emulatortest.Start(t, emulator.Options{Seed: 3})
	for _, setting := range []string{
		"statement_timeout = '1s'",
		"lock_timeout = '1s'",
		"idle_in_transaction_session_timeout = '1s'",
		"default_transaction_isolation = 'serializable'",
		"DateStyle = 'SQL, DMY'",
		"TimeZone = 'Pacific/Chatham'",
		"IntervalStyle = 'iso_8601'",
		"extra_float_digits = -15",
		"bytea_output = 'escape'",
		"search_path = 'nowhere'",
		"synchronous_commit = off",
		"client_encoding = 'LATIN1'",
		"session_replication_role = replica",
	} {
		t.Run(strings.Fields(setting)[0], func(t *testing.T) {
			adminURL := pgtest.NewDB(t)
			roleURL, role := createLimitedRole(t, adminURL)
			admin := pgtest.Connect(t, adminURL)
			u, _ := url.Parse(adminURL)
			db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
			if _, err := admin.Exec(context.Background(), `ALTER ROLE `+role+` IN DATABASE `+db+` SET `+setting); err != nil {
				t.Fatal(err)
			}
			exerciseOn(t, e, base, adminURL, roleURL, "東京 Zoë "+strings.Fields(setting)[0])
		})
	}
}

// A database pgstripe can't write to (default_transaction_read_only on the
// role, as on a hot standby) stops serve at start-up with one line saying
// so, instead of a sync that fails and retries for ever.
func TestReadOnlyDatabase(t *testing.T) {
	adminURL := pgtest.NewDB(t)
	roleURL, role := createLimitedRole(t, adminURL)
	admin := pgtest.Connect(t, adminURL)
	u, _ := url.Parse(adminURL)
	db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	if _, err := admin.Exec(context.Background(), `ALTER ROLE `+role+` IN DATABASE `+db+` SET default_transaction_read_only = on`); err != nil {
		t.Fatal(err)
	}
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	start := time.Now()
	_, logs, err := serveEnv(t, roleURL, base)
	if err == nil || time.Since(start) > 20*time.Second || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), "writable primary") {
		t.Fatalf("serve on a read-only database: %v after %v\n%s", err, time.Since(start), logs.String())
	}
	t.Log(err)
}

// Under default_transaction_isolation = serializable on DATABASE_URL's
// role, the backfill's concurrent slices and the events loop write the
// same tables and status rows: none of their transactions may fail with a
// serialization failure (40001).
func TestSerializableSync(t *testing.T) {
	adminURL := pgtest.NewDB(t)
	roleURL, role := createLimitedRole(t, adminURL)
	admin := pgtest.Connect(t, adminURL)
	u, _ := url.Parse(adminURL)
	db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	if _, err := admin.Exec(context.Background(), `ALTER ROLE `+role+` IN DATABASE `+db+` SET default_transaction_isolation = 'serializable'`); err != nil {
		t.Fatal(err)
	}
	e, base := emulatortest.Start(t, emulator.Options{Seed: 60})
	_, logs, err := serveEnv(t, roleURL, base)
	if err != nil {
		t.Fatal(err)
	}
	waitLive(t, admin, 120*time.Second)
	pool, err := pgxpool.New(context.Background(), adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if d, err := verify.Compare(context.Background(), pool, e); err != nil || d.Total() != 0 {
		t.Errorf("tables differ from Stripe: %v %v", err, d.Details)
	}
	if s := logs.String(); strings.Contains(s, "40001") || strings.Contains(s, "level=ERROR") {
		t.Errorf("sync failed:\n%s", s)
	}
}

// newEncodedDB creates a database of the given encoding (the C locale
// accepts any) and returns its URL.
func newEncodedDB(t *testing.T, encoding string) string {
	t.Helper()
	adminURL := pgtest.NewDB(t)
	u, _ := url.Parse(adminURL)
	name := strings.TrimPrefix(u.Path, "/") + "_" + strings.ToLower(encoding)
	admin := pgtest.Connect(t, strings.Replace(adminURL, u.Path, "/postgres", 1))
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 ENCODING '`+encoding+`' LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`) })
	u.Path = "/" + name
	return u.String()
}

// A database whose encoding can't hold every Unicode character (Stripe's
// text is Unicode: a customer named 東京) is refused at start-up with one
// line naming the encoding, before anything is written: not a backfill that
// fails on the first such object and is retried for ever.
func TestNonUTF8Database(t *testing.T) {
	for _, enc := range []string{"LATIN1", "SQL_ASCII"} {
		t.Run(enc, func(t *testing.T) {
			dbURL := newEncodedDB(t, enc)
			_, base := emulatortest.Start(t, emulator.Options{Seed: 2})
			stripePost(t, base, "/v1/customers", url.Values{"name": {"東京"}, "description": {"line\u2028sep"}})
			start := time.Now()
			_, logs, err := serveEnv(t, dbURL, base)
			if err != nil && time.Since(start) < 20*time.Second && strings.Contains(err.Error(), "encoding is "+enc) {
				admin := pgtest.Connect(t, dbURL)
				var n int
				admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE nspname IN ('stripe', 'stripe_sync')`).Scan(&n)
				if n != 0 {
					t.Errorf("refused, yet %d schemas created", n)
				}
				return
			}
			t.Errorf("%s: %v after %v", enc, err, time.Since(start))
			if err == nil {
				admin := pgtest.Connect(t, dbURL)
				time.Sleep(10 * time.Second)
				var status string
				admin.QueryRow(context.Background(), `SELECT string_agg(object || ':' || phase || coalesce(' ' || last_error, ''), E'\n') FROM stripe_sync.status WHERE phase <> 'live'`).Scan(&status)
				t.Fatalf("serve started on a %s database; not live: %s\n%s", enc, status, logs.String())
			}
		})
	}
}

// startPgBouncer runs PgBouncer in front of the test cluster in the given
// pool mode and returns DATABASE_URL through it.
func startPgBouncer(t *testing.T, dbURL, mode string) string {
	t.Helper()
	u, _ := url.Parse(dbURL)
	port, stop, err := pgcluster.StartPgBouncer(context.Background(), pgtest.Cluster(t), pgcluster.PgBouncerOptions{Mode: mode, Users: []string{u.User.Username()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return u.String()
}

// Through PgBouncer in session mode pgstripe works as on Postgres itself
// (PgBouncer refuses startup parameters it doesn't know, such as
// search_path, unless told to ignore them).
func TestPgBouncerSession(t *testing.T) {
	adminURL := pgtest.NewDB(t)
	exercise(t, adminURL, startPgBouncer(t, adminURL, "session"))
}

// In transaction mode the leader's session advisory lock, session
// settings and prepared statements don't hold: serve refuses at start-up
// with one line naming transaction pooling.
func TestPgBouncerTransaction(t *testing.T) {
	adminURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	start := time.Now()
	_, logs, err := serveEnv(t, startPgBouncer(t, adminURL, "transaction"), base)
	if err == nil || time.Since(start) > 30*time.Second || !strings.Contains(err.Error(), "transaction pooling") {
		t.Fatalf("serve through PgBouncer in transaction mode: %v after %v\n%s", err, time.Since(start), logs.String())
	}
	t.Log(err)
}

// DATABASE_URL's connection options: the proxy must reach the same server
// pgstripe's own connections reach.
func TestURLOptions(t *testing.T) {
	c := pgtest.Cluster(t)
	t.Run("sslmode=require without TLS", func(t *testing.T) {
		dbURL := strings.Replace(pgtest.NewDB(t), "sslmode=disable", "sslmode=require", 1)
		_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
		start := time.Now()
		_, _, err := serveEnv(t, dbURL, base)
		if err == nil || time.Since(start) > 10*time.Second || !strings.Contains(err.Error(), "server refused TLS") {
			t.Fatalf("%v after %v", err, time.Since(start))
		}
		t.Log(err)
	})
	t.Run("unix socket", func(t *testing.T) {
		adminURL := pgtest.NewDB(t)
		u, _ := url.Parse(adminURL)
		exercise(t, adminURL, fmt.Sprintf("postgres://postgres@%s?host=%s&port=%d&application_name=mine&options=-c%%20search_path%%3Dnowhere", u.Path, url.QueryEscape(c.Dir), c.Port))
	})
	t.Run("two hosts, the first down", func(t *testing.T) {
		adminURL := pgtest.NewDB(t)
		dead := pgtest.RefusingPort(t)
		u, _ := url.Parse(adminURL)
		u.Host = fmt.Sprintf("127.0.0.1:%d,%s", dead, u.Host)
		q := u.Query()
		q.Set("target_session_attrs", "read-write")
		u.RawQuery = q.Encode()
		exercise(t, adminURL, u.String())
	})
}

// waitInSync waits up to 30 s until every stripe.* table at dbURL equals
// the emulator e (verify.Compare).
func waitInSync(t *testing.T, ctx context.Context, dbURL string, e *emulator.Emulator) {
	t.Helper()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := verify.Compare(ctx, pool, e)
		if err == nil && d.Total() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tables differ from Stripe: %v %+v", err, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
