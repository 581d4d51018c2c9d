package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/pgtest"
)

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestTLS(t *testing.T) {
	tp := startProxy(t, Config{TLSConfig: selfSignedTLS(t)})
	url := tp.via(t, pgtest.NewDB(t))
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, strings.Replace(url, "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", conn.PgConn().Conn())
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT $1::int`, 7).Scan(&n); err != nil || n != 7 {
		t.Fatalf("query over TLS: %d %v", n, err)
	}

	// Direct TLS negotiation (PostgreSQL 17 clients).
	direct, err := pgx.Connect(ctx, strings.Replace(url, "sslmode=disable", "sslmode=require&sslnegotiation=direct", 1))
	if err != nil {
		t.Fatalf("sslnegotiation=direct: %v", err)
	}
	if _, ok := direct.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("direct connection is %T, not TLS", direct.PgConn().Conn())
	}
	if err := direct.QueryRow(ctx, `SELECT 8`).Scan(&n); err != nil || n != 8 {
		t.Fatalf("query over direct TLS: %d %v", n, err)
	}
	direct.Close(ctx)

	// Plaintext sent right behind the SSLRequest is refused.
	raw, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	sslReq := encode(&pgproto3.SSLRequest{})
	startup := encode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "postgres"}})
	raw.Write(append(sslReq, startup...))
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(raw)
	if !strings.Contains(string(reply), "unencrypted data after SSL request") {
		t.Fatalf("reply to SSLRequest+plaintext: %q", reply)
	}
}

func TestNoTLSAndGSSENC(t *testing.T) {
	tp := startProxy(t, Config{})
	url := tp.via(t, pgtest.NewDB(t))
	ctx := ctxT(t)
	// sslmode=prefer falls back to plaintext on 'N'.
	conn, err := pgx.Connect(ctx, strings.Replace(url, "sslmode=disable", "sslmode=prefer", 1))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if _, err := pgx.Connect(ctx, strings.Replace(url, "sslmode=disable", "sslmode=require", 1)); err == nil {
		t.Fatal("sslmode=require succeeded without TLS configured")
	}
	// GSSENCRequest gets 'N', then a normal startup works on the same
	// connection.
	raw, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	raw.Write(encode(&pgproto3.GSSEncRequest{}))
	var b [1]byte
	if _, err := io.ReadFull(raw, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENCRequest reply %q %v", b, err)
	}
	raw.Write(encode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "postgres", "database": "postgres"}}))
	fe := pgproto3.NewFrontend(raw, raw)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
}

func TestCancel(t *testing.T) {
	block := make(chan struct{})
	ic := InterceptorFunc(func(ctx context.Context, call *Call) error {
		close(block)
		<-ctx.Done()
		return ctx.Err()
	})
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: ic})
	url := tp.via(t, pgtest.NewDB(t))
	conn := pgtest.Connect(t, url)

	// pgx cancels a query when its context ends, with the key the proxy gave.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := conn.Exec(ctx, `SELECT pg_sleep(20)`)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		// pgx may report the context error; the server must still have
		// been cancelled quickly.
		if time.Since(start) > 5*time.Second {
			t.Fatalf("cancel did not reach upstream: %v after %v", err, time.Since(start))
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
	// The cancel hits the right session only.
	a, b := pgtest.Connect(t, url), pgtest.Connect(t, url)
	bDone := make(chan error, 1)
	go func() {
		_, err := b.Exec(context.Background(), `SELECT pg_sleep(1)`)
		bDone <- err
	}()
	aDone := make(chan error, 1)
	go func() {
		_, err := a.Exec(context.Background(), `SELECT pg_sleep(20)`)
		aDone <- err
	}()
	waitSleeping(t, a.PgConn().PID())
	if err := a.PgConn().CancelRequest(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-aDone:
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("cancelled session: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not reach the session")
	}
	if err := <-bDone; err != nil {
		t.Fatalf("the other session was disturbed: %v", err)
	}

	conn = pgtest.Connect(t, url)
	// A cancel also reaches an interceptor that is waiting (on Stripe).
	pc := conn.PgConn()
	go func() {
		<-block
		time.Sleep(50 * time.Millisecond)
		pc.CancelRequest(context.Background())
	}()
	_, err = pc.Exec(context.Background(), `INSERT INTO stripe.x (v) VALUES ('slow')`).ReadAll()
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("cancelled interception: %v", err)
	}
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	// A wrong key cancels nothing and does not disturb the proxy.
	raw, _ := net.Dial("tcp", tp.addr)
	raw.Write(encode(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(raw)
	raw.Close()
}

func TestUpstreamGoneAndBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	tp := startProxy(t, Config{Upstream: c.Addr()})
	url := tp.via(t, c.URL("postgres"))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill()
	_, err = conn.Exec(ctx, `SELECT 1`)
	if err == nil {
		t.Fatal("query succeeded with upstream killed")
	}
	tp.waitSessions(t, 0)
	_, err = pgx.Connect(ctx, url)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "cannot connect to upstream") {
		t.Fatalf("connect with upstream down: %v", err)
	}
	// Before authentication the client learns why, not where.
	if _, port, _ := net.SplitHostPort(c.Addr()); strings.Contains(pe.Message, port) || !strings.Contains(pe.Message, "connection refused") {
		t.Errorf("message %q: want the cause without the upstream's address", pe.Message)
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect after upstream restart: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT 5`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("query after restart: %d %v", n, err)
	}
}

// rawSession opens a proxied connection and returns it after startup.
func rawSession(t *testing.T, tp *testProxy) net.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	raw.Write(encode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "postgres", "database": "postgres"}}))
	fe := pgproto3.NewFrontend(raw, raw)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return raw
		}
	}
}

func TestMalformedMessages(t *testing.T) {
	tp := startProxy(t, Config{})
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"unknown type", []byte{'!', 0, 0, 0, 4}, "invalid frontend message type"},
		{"short length", []byte{'Q', 0, 0, 0, 2}, "malformed message"},
		{"oversized", []byte{'S', 0x7f, 0xff, 0xff, 0xff}, "message too large"},
		// Postgres answers this one itself and stays open; Terminate closes.
		{"unterminated query", []byte{'Q', 0, 0, 0, 6, 'x', 'y', 'X', 0, 0, 0, 4}, ""},
		// Like Postgres, an ERROR; the session goes on.
		{"bad describe", []byte{'D', 0, 0, 0, 4, 'X', 0, 0, 0, 4}, "no data left in message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := rawSession(t, tp)
			raw.Write(tc.msg)
			reply, _ := io.ReadAll(raw) // the proxy closes the connection
			if tc.want != "" && !strings.Contains(string(reply), tc.want) {
				t.Fatalf("reply %q lacks %q", reply, tc.want)
			}
		})
	}
	// Garbage before startup.
	raw, _ := net.Dial("tcp", tp.addr)
	raw.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(raw)
	raw.Close()
	tp.waitSessions(t, 0)
	// The proxy still serves.
	conn := pgtest.Connect(t, tp.via(t, pgtest.NewDB(t)))
	if _, err := conn.Exec(ctxT(t), `SELECT 1`); err != nil {
		t.Fatal(err)
	}
}

func TestIdleClientsAndGoroutines(t *testing.T) {
	// Short, to drop the silent client soon, but not so short that a busy
	// machine (-race) fails the clients' own startups.
	tp := startProxy(t, Config{StartupTimeout: 1500 * time.Millisecond})
	url := tp.via(t, pgtest.NewDB(t))
	time.Sleep(50 * time.Millisecond)
	base := runtime.NumGoroutine()
	// A client that never sends its startup packet is dropped.
	silent, _ := net.Dial("tcp", tp.addr)
	defer silent.Close()
	// Clients that vanish without Terminate, mid-query and idle.
	for i := 0; i < 5; i++ {
		conn, err := pgx.Connect(ctxT(t), url)
		if err != nil {
			t.Fatal(err)
		}
		conn.PgConn().Conn().Close()
	}
	raw := rawSession(t, tp)
	raw.Write(encode(&pgproto3.Query{String: "SELECT pg_sleep(0.2)"}))
	raw.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent client not closed")
	}
	tp.waitSessions(t, 0)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, before %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGracefulShutdown(t *testing.T) {
	url := pgtest.NewDB(t)
	tp := startProxy(t, Config{DrainTimeout: 5 * time.Second})
	idle := pgtest.Connect(t, tp.via(t, url))
	busy := pgtest.Connect(t, tp.via(t, url))
	busyDone := make(chan error, 1)
	go func() {
		_, err := busy.Exec(context.Background(), `SELECT pg_sleep(0.5)`)
		busyDone <- err
	}()
	waitSleeping(t, busy.PgConn().PID())
	stopped := make(chan time.Duration, 1)
	go func() { stopped <- tp.stop(t) }()
	if err := <-busyDone; err != nil {
		t.Fatalf("busy query during shutdown: %v", err)
	}
	if d := <-stopped; d > 5*time.Second {
		t.Fatalf("Serve returned %v after shutdown", d)
	}
	_, err := idle.Exec(context.Background(), `SELECT 1`)
	if err == nil {
		t.Fatal("idle session still open after shutdown")
	}
	if _, err := net.DialTimeout("tcp", tp.addr, time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
	if tp.Sessions() != 0 {
		t.Fatalf("Sessions() = %d", tp.Sessions())
	}
	_ = binary.BigEndian
}

// tlsOnlyCluster starts a cluster that accepts TCP connections only over
// TLS (a self-signed certificate).
func tlsOnlyCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	// Not t.TempDir: its parent is private, and Postgres (run as user
	// postgres under root) must read the files.
	dir, err := os.MkdirTemp("", "pgstripe-proxy-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cfg := selfSignedTLS(t)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.Certificates[0].Certificate[0]})
	keyDER, err := x509.MarshalPKCS8PrivateKey(cfg.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			os.Chown(keyFile, uid, gid)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{
		Settings: map[string]string{"ssl": "on", "ssl_cert_file": "'" + certFile + "'", "ssl_key_file": "'" + keyFile + "'"},
		HBA:      "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

func TestUpstreamTLS(t *testing.T) {
	c := tlsOnlyCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plain := startProxy(t, Config{Upstream: c.Addr()})
	if _, err := pgx.Connect(ctx, plain.via(t, c.URL("postgres"))); err == nil {
		t.Fatal("plain upstream connection accepted by a hostssl-only server")
	}
	tp := startProxy(t, Config{Upstream: c.Addr(), UpstreamTLS: &tls.Config{InsecureSkipVerify: true}})
	conn, err := pgx.Connect(ctx, tp.via(t, c.URL("postgres")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ssl bool
	if err := conn.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Fatalf("upstream ssl = %v, %v", ssl, err)
	}
	// Cancel goes over TLS too.
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer qcancel()
	start := time.Now()
	conn.Exec(qctx, `SELECT pg_sleep(20)`)
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cancel over upstream TLS took %v", time.Since(start))
	}
}

// sslmode=prefer (UpstreamTLSOptional): TLS when Postgres offers it, plain
// text when it declines.
func TestUpstreamTLSOptional(t *testing.T) {
	ctx := ctxT(t)
	sslOf := func(tp *testProxy, url string) bool {
		t.Helper()
		conn, err := pgx.Connect(ctx, tp.via(t, url))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var ssl bool
		if err := conn.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil {
			t.Fatal(err)
		}
		return ssl
	}
	cfg := Config{UpstreamTLS: &tls.Config{InsecureSkipVerify: true}, UpstreamTLSOptional: true}
	tlsCluster := tlsOnlyCluster(t)
	cfg.Upstream = tlsCluster.Addr()
	if !sslOf(startProxy(t, cfg), tlsCluster.URL("postgres")) {
		t.Error("prefer against a server with TLS: plain text")
	}
	plain := pgtest.Cluster(t)
	cfg.Upstream = plain.Addr()
	if sslOf(startProxy(t, cfg), plain.URL("postgres")) {
		t.Error("prefer against a server without TLS: ssl reported")
	}
	cfg.UpstreamTLSOptional = false
	if _, err := pgx.Connect(ctx, startProxy(t, cfg).via(t, plain.URL("postgres"))); err == nil {
		t.Error("require against a server without TLS connected")
	}
}

// TestShutdownWithStuckClient: a client that requested a large result and
// stopped reading cannot keep Serve from returning.
func TestShutdownWithStuckClient(t *testing.T) {
	tp := startProxy(t, Config{DrainTimeout: 300 * time.Millisecond})
	raw := rawSession(t, tp)
	raw.Write(encode(&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"}))
	time.Sleep(300 * time.Millisecond) // the proxy fills the socket buffers and blocks
	if d := tp.stop(t); d > 5*time.Second {
		t.Fatalf("Serve took %v to return with a client that stopped reading", d)
	}
	if tp.Sessions() != 0 {
		t.Fatalf("Sessions() = %d", tp.Sessions())
	}
}

// TestBackendTerminated: when Postgres ends one session (pg_terminate_backend),
// that client gets Postgres's FATAL error and the others carry on.
func TestBackendTerminated(t *testing.T) {
	tp := startProxy(t, Config{})
	url := tp.via(t, pgtest.NewDB(t))
	ctx := ctxT(t)
	victim := pgtest.Connect(t, url)
	other := pgtest.Connect(t, url)
	var pid int
	if err := victim.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	_, err := victim.Exec(ctx, `SELECT 1`)
	var pe *pgconn.PgError
	if err == nil || (errors.As(err, &pe) && pe.Code != "57P01") {
		t.Fatalf("query on terminated session: %v", err)
	}
	var n int
	if err := other.QueryRow(ctx, `SELECT 3`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("other session: %d %v", n, err)
	}
	tp.waitSessions(t, 1)
}

// captureConn records what the proxy writes to a client.
type captureConn struct {
	fakeConn
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

// TestTerminateThenUpstreamEOF: Postgres closes its end as soon as it reads
// the client's Terminate, which the server loop may see before the client
// loop has closed the session. That EOF is the end the client asked for,
// not a lost connection: the client must get no FATAL after its Terminate
// (node-postgres raises it as an unhandled error). Without Terminate, the
// same EOF is reported as 08006.
func TestTerminateThenUpstreamEOF(t *testing.T) {
	for _, terminated := range []bool{true, false} {
		cc := &captureConn{fakeConn: fakeConn{r: bytes.NewReader(nil)}}
		s := &session{p: New(Config{}), client: cc, upstream: &fakeConn{r: bytes.NewReader(nil)}, done: make(chan struct{})}
		s.cw.conn = cc
		s.ctx, s.ctxCancel = context.WithCancel(context.Background())
		s.terminated.Store(terminated)
		s.endFromServer(io.EOF)
		cc.mu.Lock()
		got := cc.out.Bytes()
		cc.mu.Unlock()
		if terminated && len(got) != 0 {
			t.Errorf("after Terminate the client got %q", got)
		}
		if !terminated && !bytes.Contains(got, []byte("08006")) {
			t.Errorf("upstream EOF without Terminate: client got %q, want a FATAL 08006", got)
		}
		select {
		case <-s.done:
		default:
			t.Errorf("terminated=%v: session not closed", terminated)
		}
	}
}

// TestIdleCost: what idle connections cost the proxy, in
// goroutines and heap: 1000 that connected and sent nothing (still in
// startup), and sessions that ran a query with a 1 MB result and went idle
// (upstream's max_connections bounds how many; the proxy's buffers
// shrink back after the result). The bounds are generous; the numbers are
// logged.
func TestIdleCost(t *testing.T) {
	tp := startProxy(t, Config{})
	db := pgtest.NewDB(t)
	url := tp.via(t, db)
	goroutines := runtime.NumGoroutine()
	base := heapInUse()
	const silent = 1000
	conns := make([]net.Conn, 0, silent)
	for range silent {
		c, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tp.Sessions() != silent {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections accepted", tp.Sessions(), silent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	g, heap := runtime.NumGoroutine()-goroutines, heapInUse()-base
	t.Logf("%d silent connections: %.2f goroutines, %.1f KB of heap each", silent, float64(g)/silent, float64(heap)/silent/1024)
	if g > silent || heap > silent*64<<10 {
		t.Errorf("%d silent connections: %d goroutines, %d MB of heap", silent, g, heap>>20)
	}
	for _, c := range conns {
		c.Close()
	}
	tp.waitSessions(t, 0)
	waitGoroutines(t, goroutines)

	const sessions = 50
	base = heapInUse()
	for range sessions {
		pc := connectPg(t, url)
		res := pc.ExecParams(ctxT(t), "SELECT repeat('x', 1000) FROM generate_series(1, 1000)", nil, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1000 {
			t.Fatalf("%d rows, %v", len(res.Rows), res.Err)
		}
	}
	g, heap = runtime.NumGoroutine()-goroutines, heapInUse()-base
	t.Logf("%d idle sessions: %.2f goroutines, %.1f KB of heap each (client side included)", sessions, float64(g)/sessions, float64(heap)/sessions/1024)
	if g > 2*sessions+sessions || heap > sessions*400<<10 {
		t.Errorf("%d idle sessions: %d goroutines, %d MB of heap", sessions, g, heap>>20)
	}
}
