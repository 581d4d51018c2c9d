package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/metrics"
	"github.com/pgstripe/pgstripe/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// serve runs Run in the background until the test ends and returns the
// metrics address.
func serve(t *testing.T, dbURL, base, instance string) (metricsAddr string, logs *logtest.Buffer) {
	t.Helper()
	_, m, logs, err := startServe(t, dbURL, base, instance)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return m, logs
}

// startServe runs Run in the background until the test ends and returns
// the proxy's and the metrics' addresses once it is ready, or the error
// Run returned before that.
func startServe(t *testing.T, dbURL, base, instance string) (proxyAddr, metricsAddr string, logs *logtest.Buffer, err error) {
	t.Helper()
	logs = &logtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	opts := Options{Config: &config.Config{DatabaseURL: dbURL, StripeAPIKey: "sk_test_review", StripeAPIBase: base,
		Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", RateLimit: 200, PollInterval: 100 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Ready:  func(p, m string) { ready <- [2]string{p, m} }}
	opts.Instance.Instance, opts.Instance.Host = instance, "h"
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of its cancel")
		}
		if t.Failed() {
			t.Logf("logs of %s:\n%s", instance, logs.String())
		}
	})
	select {
	case a := <-ready:
		return a[0], a[1], logs, nil
	case err := <-done:
		done <- err
		return "", "", logs, err
	case <-time.After(60 * time.Second):
		t.Fatal("Run never became ready")
	}
	return "", "", logs, nil
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// customersCounted is pgstripe_backfill_rows_total{table="customers"} now.
func customersCounted(t *testing.T) int64 {
	t.Helper()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "pgstripe_backfill_rows_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" && l.GetValue() == "customers" {
					return int64(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// pgstripe_backfill_rows_total is documented on /metrics ("Rows written by
// the backfill, by table") and must count what serve's backfill wrote.
func TestBackfillRowsMetric(t *testing.T) {
	// The counter is the process's: count from what earlier tests (or
	// -count runs) left in it.
	before := customersCounted(t)
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 5})
	m, _ := serve(t, dbURL, base, "rows")
	conn := pgtest.Connect(t, dbURL)
	deadline := time.Now().Add(60 * time.Second)
	re := regexp.MustCompile(`(?m)^pgstripe_backfill_rows_total\{table="customers"\} (\d+)$`)
	for {
		var phase string
		var n int64
		conn.QueryRow(context.Background(), `SELECT phase, rows FROM stripe_sync.status WHERE object = 'customers'`).Scan(&phase, &n)
		if phase == "live" && n > 0 {
			_, body := get(t, "http://"+m+"/metrics")
			got := re.FindStringSubmatch(body)
			if got != nil && got[1] == strconv.FormatInt(before+n, 10) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("customers backfilled: %d rows; metric: %v, %d before", n, got, before)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("customers never went live (phase %q)", phase)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// An instance whose term ended with a sync error (here: deposed by a newer
// epoch) and that another instance has since replaced as the sync leader is a
// healthy follower: its /healthz must not report the old term's failure for
// ever.
func TestHealthzAfterLosingLeadership(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 2})
	m, logs := serve(t, dbURL, base, "a")
	ctx := context.Background()
	other := pgtest.Connect(t, dbURL) // plays instance "b"
	deadline := time.Now().Add(60 * time.Second)
	logs.WaitLine(t, "elected sync leader", 60*time.Second)
	for {
		var notLive int
		other.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE phase <> 'live'`).Scan(&notLive)
		if notLive == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backfill never completed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// "b" is elected while a's lock connection is (as far as a knows) fine:
	// the epoch moves on, and a's next apply is fenced out.
	if _, err := other.Exec(ctx, `UPDATE stripe_sync.leader SET epoch = epoch + 1, instance = 'b', pid = pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"email": {"x@y.z"}}
	req, _ := http.NewRequest("POST", base+"/v1/customers", strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "Bearer sk_test_review")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// a steps down; b takes the lock a releases.
	for {
		var got bool
		if err := other.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(0x70677374726c6472)).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a never released the leader lock")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if code, body := get(t, "http://"+m+"/healthz"); code != 200 {
		t.Fatalf("follower a's /healthz = %d %s while b leads", code, body)
	}
}

// The proxy reaches Postgres with TLS as DATABASE_URL's sslmode asks:
// prefer (the default) uses it when offered.
func TestUpstreamTLSFromSSLMode(t *testing.T) {
	for mode, want := range map[string]struct{ tls, optional bool }{
		"disable": {false, false}, "allow": {false, false}, "": {true, true}, "prefer": {true, true},
		"require": {true, false}, "verify-full": {true, false},
	} {
		dsn := "postgres://u@db.example:5432/x"
		if mode != "" {
			dsn += "?sslmode=" + mode
		}
		c, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		hosts, _, err := hostsOf(c)
		if err != nil || len(hosts) != 1 {
			t.Fatalf("sslmode=%q: hosts %v, %v", mode, hosts, err)
		}
		if (hosts[0].TLS != nil) != want.tls || hosts[0].TLSOptional != want.optional {
			t.Errorf("sslmode=%q: TLS %v optional %v, want %v %v", mode, hosts[0].TLS != nil, hosts[0].TLSOptional, want.tls, want.optional)
		}
	}
}

// A database that refuses for good (no such role, no such database) is
// reported at once, not after the 30 s wait meant for one still starting.
func TestOpenDatabaseRefusedForGood(t *testing.T) {
	good := pgtest.NewDB(t)
	u, err := url.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	noRole, noDB := *u, *u
	noRole.User = url.User("nosuchrole")
	noDB.Path = "/nosuchdb"
	for _, bad := range []string{noRole.String(), noDB.String()} {
		start := time.Now()
		_, err := openDatabase(context.Background(), bad, "test", slog.New(slog.DiscardHandler))
		if err == nil || time.Since(start) > 10*time.Second || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s: %v after %v", bad, err, time.Since(start))
		}
	}
}

// A proxy or metrics port already taken fails serve at once, before it
// waits for the database or migrates it: here the database can't be
// reached, which would otherwise hold start-up for half a minute.
func TestPortInUseFailsBeforeDatabase(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // nothing listens here: the database is unreachable
	for _, which := range []string{"PGSTRIPE_LISTEN", "PGSTRIPE_METRICS_LISTEN"} {
		cfg := keyCheckConfig("postgres://u@"+closed.Addr().String()+"/db?connect_timeout=1", "http://127.0.0.1:1", "sk_test_x")
		if which == "PGSTRIPE_LISTEN" {
			cfg.Listen = taken.Addr().String()
		} else {
			cfg.MetricsListen = taken.Addr().String()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		err := Run(ctx, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), which+": ") || time.Since(start) > 5*time.Second {
			t.Errorf("%s taken: %v after %v, want a %s error at once", which, err, time.Since(start).Round(time.Millisecond), which)
		}
	}
}

// stripeDo is a request to the emulator at base as sk_test_review; it
// returns the status and the decoded body.
func stripeDo(t *testing.T, method, base, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "Bearer sk_test_review")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var body map[string]any
	json.Unmarshal(raw, &body)
	return res.StatusCode, body
}

// proxyConn connects to pgstripe's proxy at proxyAddr as dbURL's role.
func proxyConn(t *testing.T, dbURL, proxyAddr string) *pgx.Conn {
	t.Helper()
	u, _ := url.Parse(dbURL)
	u.Host = proxyAddr
	q := u.Query()
	q.Del("host")
	q.Del("port")
	q.Del("options")
	// pgx speaks UTF-8 whatever the role's client_encoding says.
	q.Set("client_encoding", "UTF8")
	u.RawQuery = q.Encode()
	c, err := pgx.Connect(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
