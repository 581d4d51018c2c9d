package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/chaos"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/pgtest"
)

// stack is pgstripe serve (the built binary) in front of a database, talking
// to an in-process emulator through a fault injector, so a test can both
// force faults and look at the emulator's objects and counters.
type stack struct {
	e       *emulator.Emulator
	inj     *chaos.Injector
	emuURL  string
	dbURL   string // direct
	proxy   string // the same database through the proxy
	metrics string // http://host:port
	srv     *proc
	env     []string
}

const secKey = "sk_test_reliabilitySECRETvalue9876"

func startStack(t *testing.T, dbURL string, extraEnv ...string) *stack {
	t.Helper()
	e, err := emulator.New(emulator.Options{RateLimit: -1, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	inj := chaos.NewInjector(e, 0, 1)
	hs := httptest.NewServer(inj)
	t.Cleanup(func() { e.Close(); hs.CloseClientConnections(); hs.Close() })
	proxyAddr, metricsAddr := freeAddr(t), freeAddr(t)
	s := &stack{e: e, inj: inj, emuURL: hs.URL, dbURL: dbURL, metrics: "http://" + metricsAddr}
	s.env = append([]string{
		"DATABASE_URL=" + dbURL, "STRIPE_API_KEY=" + secKey, "STRIPE_API_BASE=" + hs.URL,
		"PGSTRIPE_LISTEN=" + proxyAddr, "PGSTRIPE_METRICS_LISTEN=" + metricsAddr,
		"PGSTRIPE_RATE_LIMIT=200", "PGSTRIPE_POLL_INTERVAL=200ms", "PGSTRIPE_LOG_FORMAT=json",
	}, extraEnv...)
	s.srv = start(t, s.env, "serve")
	waitHTTP(t, s.metrics+"/healthz", s.srv, 60*time.Second)
	u, _ := url.Parse(dbURL)
	u.Host = proxyAddr
	s.proxy = u.String()
	waitLiveURL(t, s.proxy, 60*time.Second)
	return s
}

func waitLiveURL(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := psql(t, url, "-c", "SELECT count(*) FILTER (WHERE phase <> 'live') FROM stripe_sync.status")
		if err == nil && strings.TrimSpace(out) == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync not live after %v: %v %s", timeout, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (s *stack) routeCount(route string) int64 { return s.e.Stats().ByRoute[route] }

// markerCount counts the emulator's customers with metadata.marker = m.
func (s *stack) markerCount(m string) (n int, ids []string) {
	for id, raw := range s.e.Objects("customers") {
		var c struct {
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(raw, &c) == nil && c.Metadata["marker"] == m {
			n++
			ids = append(ids, id)
		}
	}
	return n, ids
}

func hasMarker(m string) func(chaos.Request) bool {
	return func(r chaos.Request) bool {
		return r.Method == http.MethodPost && r.Path == "/v1/customers" && r.Form.Get("metadata[marker]") == m
	}
}

// Stripe performs the create but the response never arrives (twice):
// pgstripe retries with the same idempotency key, the client gets its row,
// and Stripe holds exactly one object.
func TestWriteThroughCreateResponseLost(t *testing.T) {
	s := startStack(t, pgtest.NewDB(t))
	ctx := context.Background()
	conn := connect(t, s.proxy)
	before := s.routeCount("POST /v1/customers")
	s.inj.Force(hasMarker("lost-1"), chaos.FaultDropAfter, chaos.FaultDropAfter)
	var id string
	err := conn.QueryRow(ctx, `INSERT INTO stripe.customers (email, metadata) VALUES ('lost@x.co', '{"marker":"lost-1"}') RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatalf("INSERT with two lost responses: %v", err)
	}
	n, ids := s.markerCount("lost-1")
	if n != 1 || ids[0] != id {
		t.Fatalf("Stripe holds %d objects %v for one INSERT (client got %s)", n, ids, id)
	}
	if got := s.routeCount("POST /v1/customers") - before; got != 3 {
		t.Errorf("POST /v1/customers reached Stripe %d times, want 3 (two lost, one replayed)", got)
	}
	var local int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE id = $1`, id).Scan(&local)
	if local != 1 {
		t.Errorf("the created row is not readable at once through the proxy")
	}

	// A timeout and a drop before the call: nothing performed, retried,
	// one object.
	s.inj.Force(hasMarker("lost-2"), chaos.FaultDrop, chaos.Fault503, chaos.FaultDropAfter)
	if err := conn.QueryRow(ctx, `INSERT INTO stripe.customers (email, metadata) VALUES ('lost2@x.co', '{"marker":"lost-2"}') RETURNING id`).Scan(&id); err != nil {
		t.Fatalf("INSERT after drop, 503 and lost response: %v", err)
	}
	if n, ids := s.markerCount("lost-2"); n != 1 || ids[0] != id {
		t.Fatalf("Stripe holds %d objects %v (client got %s)", n, ids, id)
	}
}

// Stripe performs a delete but the response is lost: the retry finds the
// object gone (404). The client asked for the object to be deleted and it
// is: it must not get "No such customer" for a DELETE that succeeded.
func TestWriteThroughDeleteResponseLost(t *testing.T) {
	s := startStack(t, pgtest.NewDB(t))
	ctx := context.Background()
	conn := connect(t, s.proxy)
	var id string
	if err := conn.QueryRow(ctx, `INSERT INTO stripe.customers (email) VALUES ('del@x.co') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	s.inj.Force(func(r chaos.Request) bool { return r.Method == http.MethodDelete && r.Path == "/v1/customers/"+id }, chaos.FaultDropAfter)
	tag, err := conn.Exec(ctx, `DELETE FROM stripe.customers WHERE id = $1`, id)
	if _, still := s.e.Objects("customers")[id]; still {
		t.Fatalf("the customer was not deleted in Stripe")
	}
	if err != nil {
		t.Fatalf("DELETE whose first response was lost (Stripe did delete): client got %v", err)
	}
	if tag.String() != "DELETE 1" {
		t.Errorf("tag %q, want DELETE 1", tag)
	}
	var local int
	conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE id = $1`, id).Scan(&local)
	if local != 0 {
		t.Errorf("the deleted row is still there locally")
	}
}

// A role without INSERT/UPDATE/DELETE on the table is refused with 42501,
// and Stripe never sees a request.
func TestWriteWithoutPrivilege(t *testing.T) {
	s := startStack(t, pgtest.NewDB(t))
	ctx := context.Background()
	admin := connect(t, s.dbURL)
	// Roles are the cluster's: one per run, so the test can run again.
	reader := fmt.Sprintf("reader_%d", time.Now().UnixNano())
	for _, q := range []string{
		`CREATE ROLE ` + reader + ` LOGIN`,
		`GRANT USAGE ON SCHEMA stripe TO ` + reader,
		`GRANT SELECT ON ALL TABLES IN SCHEMA stripe TO ` + reader,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var victim string
	if err := admin.QueryRow(ctx, `SELECT id FROM stripe.customers LIMIT 1`).Scan(&victim); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.proxy)
	u.User = url.User(reader)
	ro := connect(t, u.String())
	var n int
	if err := ro.QueryRow(ctx, `SELECT count(*) FROM stripe.customers`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("reader cannot read: %v (%d rows)", err, n)
	}
	before := s.e.Stats()
	for _, q := range []string{
		`INSERT INTO stripe.customers (email, metadata) VALUES ('nope@x.co', '{"marker":"noperm"}')`,
		`UPDATE stripe.customers SET name = 'nope' WHERE id = '` + victim + `'`,
		`DELETE FROM stripe.customers WHERE id = '` + victim + `'`,
	} {
		_, err := ro.Exec(ctx, q)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as a role without the privilege: %v, want SQLSTATE 42501", q, err)
		}
	}
	after := s.e.Stats()
	for _, r := range []string{"POST /v1/customers", "POST /v1/customers/{customer}", "DELETE /v1/customers/{customer}"} {
		if after.ByRoute[r] != before.ByRoute[r] {
			t.Errorf("Stripe saw %s although the role lacks the privilege", r)
		}
	}
	if n, _ := s.markerCount("noperm"); n != 0 {
		t.Errorf("a customer was created without the privilege")
	}
	if _, ok := s.e.Objects("customers")[victim]; !ok {
		t.Errorf("the customer was deleted without the privilege")
	}
}

// The API key (and the database password) appears nowhere a user or an
// operator can see: logs (with retries, Stripe errors, sync under faults),
// client errors, status, /metrics, /healthz, and the error lines of a bad
// configuration.
func TestAPIKeyNeverLeaks(t *testing.T) {
	s := startStack(t, pgtest.NewDB(t))
	ctx := context.Background()
	conn := connect(t, s.proxy)
	var seen []string

	// Stripe errors reach the client; faults make pgstripe log retries.
	s.inj.SetRate(0.5)
	for i := 0; i < 5; i++ {
		_, err := conn.Exec(ctx, `INSERT INTO stripe.prices (currency, unit_amount) VALUES ('usd', 100)`) // no product: Stripe's 400
		if err == nil {
			t.Fatal("a price without a product was accepted")
		}
		seen = append(seen, err.Error())
		if _, err := conn.Exec(ctx, `INSERT INTO stripe.customers (email) VALUES ('k@x.co')`); err != nil {
			seen = append(seen, err.Error())
		}
	}
	time.Sleep(2 * time.Second) // the events loop polls under faults
	s.inj.SetRate(0)
	// Bad keys, an unreachable database or API: the most talkative
	// errors. The runs are independent, so they run side by side.
	type run struct {
		env     []string
		timeout time.Duration
		args    []string
	}
	var runs []run
	for _, key := range []string{"sk_test_", "pk_test_reliabilitySECRETvalue9876", "sk_live_reliabilitySECRETvalue9876"} {
		runs = append(runs, run{[]string{"DATABASE_URL=" + s.dbURL, "STRIPE_API_KEY=" + key, "STRIPE_API_BASE=" + s.emuURL,
			"PGSTRIPE_LISTEN=" + freeAddr(t), "PGSTRIPE_METRICS_LISTEN=" + freeAddr(t)}, 4 * time.Second, []string{"serve"}})
	}
	runs = append(runs,
		run{[]string{"DATABASE_URL=postgres://nobody:dbSECRETpw@127.0.0.1:1/x", "STRIPE_API_KEY=" + secKey}, 4 * time.Second, []string{"serve"}},
		run{[]string{"DATABASE_URL=postgres://nobody:dbSECRETpw@127.0.0.1:1/x", "STRIPE_API_KEY=" + secKey}, 4 * time.Second, []string{"status"}},
		run{[]string{"DATABASE_URL=" + s.dbURL, "STRIPE_API_KEY=" + secKey, "STRIPE_API_BASE=http://127.0.0.1:1"}, 4 * time.Second, []string{"backfill", "--objects", "customers"}},
		run{[]string{"DATABASE_URL=" + s.dbURL, "STRIPE_API_KEY=" + secKey}, 10 * time.Second, []string{"status"}},
	)
	outs := make([]string, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i] = runOnce(t, r.env, r.timeout, r.args...) }()
	}
	wg.Wait()
	seen = append(seen, outs...)
	for _, path := range []string{"/metrics", "/healthz"} {
		res, err := http.Get(s.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		seen = append(seen, string(b))
	}
	s.srv.stop(t)
	seen = append(seen, s.srv.out.String())
	if !strings.Contains(s.srv.out.String(), "retry") && !strings.Contains(s.srv.out.String(), "fail") {
		t.Logf("note: no retry logged under 50%% faults; the log check is weaker than meant")
	}
	for i, text := range seen {
		for _, secret := range []string{secKey, "reliabilitySECRETvalue9876", "SECRETvalue", "dbSECRETpw"} {
			if strings.Contains(text, secret) {
				t.Errorf("output %d contains the API key (%q):\n%s", i, secret, tail(text, 20))
			}
		}
	}
}

// runOnce runs the binary to completion (or kills it after timeout) and
// returns its combined output.
func runOnce(t *testing.T, env []string, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// TLS on the proxy works with clients that require it: psql with
// sslmode=require and verify-full (against a CA made here), and pgx.
func TestTLSRequired(t *testing.T) {
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := makeCerts(t)
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for p, b := range map[string][]byte{ca: caPEM, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := startStack(t, pgtest.NewDB(t), "PGSTRIPE_TLS_CERT="+cert, "PGSTRIPE_TLS_KEY="+key)
	u, _ := url.Parse(s.proxy)
	for _, mode := range []string{"sslmode=require", "sslmode=verify-full&sslrootcert=" + url.QueryEscape(ca)} {
		v := *u
		v.RawQuery = mode
		out, err := psql(t, v.String(), "-c", `\conninfo`, "-c", "SELECT count(*) > 0 FROM stripe.customers")
		if err != nil || !strings.Contains(out, "SSL connection") || !strings.HasSuffix(strings.TrimSpace(out), "t") {
			t.Errorf("psql %s: %v\n%s", mode, err, out)
		}
	}
	v := *u
	v.RawQuery = "sslmode=verify-full&sslrootcert=" + url.QueryEscape(ca)
	conn := connect(t, v.String())
	if !isTLS(conn) {
		t.Errorf("pgx with verify-full: not a TLS connection")
	}
	var id string
	if err := conn.QueryRow(context.Background(), `INSERT INTO stripe.customers (email) VALUES ('tls@x.co') RETURNING id`).Scan(&id); err != nil || !strings.HasPrefix(id, "cus_") {
		t.Errorf("write-through over TLS: %v %q", err, id)
	}
	// A client that trusts another CA refuses the proxy.
	otherCA, _, _ := makeCerts(t)
	other := filepath.Join(dir, "other.pem")
	os.WriteFile(other, otherCA, 0o600)
	v.RawQuery = "sslmode=verify-full&sslrootcert=" + url.QueryEscape(other)
	if out, err := psql(t, v.String(), "-c", "SELECT 1"); err == nil {
		t.Errorf("verify-full against the wrong CA connected:\n%s", out)
	}
}

func isTLS(c *pgx.Conn) bool {
	_, ok := c.PgConn().Conn().(*tls.Conn)
	return ok
}

// makeCerts returns a CA and a server certificate for 127.0.0.1 and
// localhost signed by it, all PEM.
func makeCerts(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgstripe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// Every answer of a create is lost (Stripe performs it each time, the
// replays are lost too): the client gets a clear error once pgstripe gives
// up, and Stripe holds exactly one object, never two. Slow (pgstripe's
// retries back off for ~40 s): PGSTRIPE_SLOW_TESTS=1.
func TestWriteThroughEveryResponseLost(t *testing.T) {
	if os.Getenv("PGSTRIPE_SLOW_TESTS") == "" {
		t.Skip("slow: set PGSTRIPE_SLOW_TESTS=1")
	}
	s := startStack(t, pgtest.NewDB(t))
	ctx := context.Background()
	conn := connect(t, s.proxy)
	faults := make([]chaos.Fault, 30)
	for i := range faults {
		faults[i] = chaos.FaultDropAfter
	}
	s.inj.Force(hasMarker("never"), faults...)
	t0 := time.Now()
	_, err := conn.Exec(ctx, `INSERT INTO stripe.customers (email, metadata) VALUES ('never@x.co', '{"marker":"never"}')`)
	t.Logf("after %v: %v", time.Since(t0), err)
	if err == nil {
		t.Fatal("the INSERT succeeded although no answer ever arrived")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code == "" || !strings.Contains(strings.ToLower(pe.Message+pe.Detail+pe.Hint), "stripe") {
		t.Errorf("not a clear error: %#v", err)
	}
	if n, ids := s.markerCount("never"); n != 1 {
		t.Errorf("Stripe holds %d objects %v for one INSERT that failed", n, ids)
	}
	// The object Stripe made arrives through the events.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE metadata->>'marker' = 'never'`).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the object Stripe made never reached the table (%d rows)", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
