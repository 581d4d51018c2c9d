package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgcluster"
	"github.com/pgstripe/pgstripe/pgtest"
)

// silentUpstream accepts TCP connections and never answers.
func silentUpstream(t *testing.T) string { return stuckUpstream(t, nil) }

// stuckUpstream accepts TCP connections, writes greeting to each (after
// the client's first bytes), and then answers nothing.
func stuckUpstream(t *testing.T, greeting []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			if greeting != nil {
				go func() {
					c.Read(make([]byte, 1024))
					c.Write(greeting)
				}()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func startupMsg(params map[string]string) []byte {
	return encode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
}

// readError reads backend messages until an ErrorResponse (or the end).
func readError(t *testing.T, c net.Conn) *pgproto3.ErrorResponse {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	for {
		msg, err := fe.Receive()
		if err != nil {
			return nil
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			return e
		}
	}
}

// TestShutdownDuringStartup: sessions that have not finished startup
// (a silent client; an upstream that accepted the connection but has not
// answered) hold nothing a client is waiting on: shutdown closes them at
// once rather than after DrainTimeout. Under -race this also checks that
// the shutdown goroutines read the session's connections safely while
// startup sets them.
func TestShutdownDuringStartup(t *testing.T) {
	t.Run("upstream silent", func(t *testing.T) { testShutdownDuringStartup(t, nil) })
	// The client has been asked for a password and has not answered yet.
	t.Run("mid-auth", func(t *testing.T) {
		testShutdownDuringStartup(t, encode(&pgproto3.AuthenticationCleartextPassword{}))
	})
}

func testShutdownDuringStartup(t *testing.T, greeting []byte) {
	tp := startProxy(t, Config{Upstream: stuckUpstream(t, greeting), DrainTimeout: 5 * time.Second})
	silent, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waiting, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	waiting.Write(startupMsg(map[string]string{"user": "postgres", "database": "postgres"}))
	tp.waitSessions(t, 2)
	time.Sleep(200 * time.Millisecond) // the proxy has dialled upstream and waits
	if d := tp.stop(t); d > 2*time.Second {
		t.Errorf("Serve took %v to return with only sessions in startup", d)
	}
	if e := readError(t, waiting); e == nil || !strings.HasPrefix(e.Code, "57P0") {
		t.Errorf("client waiting for upstream during shutdown got %+v, want a 57P0x error", e)
	}
}

// TestUpstreamNeverAnswers: an upstream that accepts TCP and never
// answers gets the client an error once StartupTimeout expires.
func TestUpstreamNeverAnswers(t *testing.T) {
	tp := startProxy(t, Config{Upstream: silentUpstream(t), StartupTimeout: 500 * time.Millisecond})
	ctx := ctxT(t)
	start := time.Now()
	_, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", tp.addr))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "timeout") {
		t.Fatalf("connect: %v, want 08006 naming the timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	tp.waitSessions(t, 0)
}

// TestStartupErrorsRelayed: Postgres's own startup refusals reach the
// client unchanged (code and message), as they would directly.
func TestStartupErrorsRelayed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := pgcluster.Options{
		Settings: map[string]string{"max_connections": "4", "superuser_reserved_connections": "0", "reserved_connections": "0"},
		HBA: `
local all all trust
host all rejected 127.0.0.1/32 reject
host all pwuser 127.0.0.1/32 password
host all all 127.0.0.1/32 trust
`}
	c, err := pgcluster.Start(ctx, opts)
	if err != nil {
		// reserved_connections is Postgres 16+.
		delete(opts.Settings, "reserved_connections")
		if c, err = pgcluster.Start(ctx, opts); err != nil {
			t.Fatal(err)
		}
	}
	defer c.Stop()
	admin, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE ROLE rejected LOGIN`, `CREATE ROLE pwuser LOGIN PASSWORD 'pw'`} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close(ctx)
	tp := startProxy(t, Config{Upstream: c.Addr()})

	both := func(t *testing.T, url string) (direct, proxied *pgconn.PgError) {
		t.Helper()
		for i, u := range []string{url, tp.via(t, url)} {
			conn, err := pgx.Connect(ctx, u)
			if err == nil {
				conn.Close(ctx)
				t.Fatalf("connect %d succeeded", i)
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("connect %d: %v", i, err)
			}
			if i == 0 {
				direct = pe
			} else {
				proxied = pe
			}
		}
		return direct, proxied
	}
	check := func(t *testing.T, code string, direct, proxied *pgconn.PgError) {
		t.Helper()
		if direct.Code != code || proxied.Code != direct.Code || proxied.Message != direct.Message || proxied.Severity != direct.Severity {
			t.Errorf("direct %s %s %q, proxied %s %s %q (want %s)", direct.Severity, direct.Code, direct.Message, proxied.Severity, proxied.Code, proxied.Message, code)
		}
	}
	base := strings.Replace(c.URL("postgres"), "postgres@", "%s@", 1)
	t.Run("no database", func(t *testing.T) {
		d, p := both(t, strings.Replace(fmt.Sprintf(base, "postgres"), "/postgres?", "/nosuchdb?", 1))
		check(t, "3D000", d, p)
	})
	t.Run("hba reject", func(t *testing.T) {
		d, p := both(t, fmt.Sprintf(base, "rejected"))
		check(t, "28000", d, p)
	})
	t.Run("wrong password", func(t *testing.T) {
		d, p := both(t, fmt.Sprintf(base, "pwuser:bad"))
		check(t, "28P01", d, p)
	})
	t.Run("no such role", func(t *testing.T) {
		d, p := both(t, fmt.Sprintf(base, "nobody"))
		check(t, "28000", d, p)
	})
	t.Run("mid-auth disconnect", func(t *testing.T) {
		raw, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		raw.Write(startupMsg(map[string]string{"user": "pwuser", "database": "postgres"}))
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		fe := pgproto3.NewFrontend(raw, raw)
		msg, err := fe.Receive()
		if _, ok := msg.(*pgproto3.AuthenticationCleartextPassword); !ok {
			t.Fatalf("got %T %v", msg, err)
		}
		raw.Close()
		tp.waitSessions(t, 0)
	})
	t.Run("not a password", func(t *testing.T) {
		answer := func(addr string) string {
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			raw.Write(startupMsg(map[string]string{"user": "pwuser", "database": "postgres"}))
			fe := pgproto3.NewFrontend(raw, raw)
			if msg, err := fe.Receive(); err != nil {
				t.Fatal(err)
			} else if _, ok := msg.(*pgproto3.AuthenticationCleartextPassword); !ok {
				t.Fatalf("got %T", msg)
			}
			raw.Write(encode(&pgproto3.Query{String: "SELECT 1"}))
			e := readError(t, raw)
			if e == nil {
				return "no error"
			}
			return e.Severity + " " + e.Code + " " + e.Message
		}
		if d, p := answer(c.Addr()), answer(tp.addr); d != p {
			t.Errorf("Query instead of password: direct %q, proxied %q", d, p)
		}
	})
	t.Run("too many connections", func(t *testing.T) {
		var held []*pgx.Conn
		defer func() {
			for _, h := range held {
				h.Close(ctx)
			}
		}()
		for i := 0; i < 10; i++ {
			conn, err := pgx.Connect(ctx, c.URL("postgres"))
			if err != nil {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "53300" {
					t.Fatalf("direct: %v", err)
				}
				break
			}
			held = append(held, conn)
		}
		_, err := pgx.Connect(ctx, tp.via(t, c.URL("postgres")))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53300" {
			t.Fatalf("proxied: %v, want 53300", err)
		}
	})
	tp.waitSessions(t, 0)
}

// TestStartupParameters: the client's startup parameters reach
// Postgres (and interception sees the same session settings).
func TestStartupParameters(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	url := tp.via(t, pgtest.NewDB(t)) + "&application_name=revapp&options=-c%20search_path%3Dfoo%2Cpublic%20-c%20statement_timeout%3D1234"
	conn := pgtest.Connect(t, url)
	var app, sp, st string
	if err := conn.QueryRow(ctxT(t), `SELECT current_setting('application_name'), current_setting('search_path'), current_setting('statement_timeout')`).Scan(&app, &sp, &st); err != nil {
		t.Fatal(err)
	}
	if app != "revapp" || sp != "foo,public" || st != "1234ms" {
		t.Fatalf("application_name %q search_path %q statement_timeout %q", app, sp, st)
	}
	if got := conn.PgConn().ParameterStatus("application_name"); got != "revapp" {
		t.Fatalf("ParameterStatus application_name = %q", got)
	}
}

// TestReplicationConnection: replication=database passes through like
// any startup parameter: a walsender answers replication commands.
func TestReplicationConnection(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	url := tp.via(t, pgtest.NewDB(t)) + "&replication=database"
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgconn.ConnectConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	res, err := pc.Exec(ctxT(t), `IDENTIFY_SYSTEM`).ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		t.Fatalf("IDENTIFY_SYSTEM: %v %v", res, err)
	}
	res, err = pc.Exec(ctxT(t), `SELECT 1`).ReadAll()
	if err != nil || string(res[0].Rows[0][0]) != "1" {
		t.Fatalf("SELECT 1 on a replication connection: %v", err)
	}
}

// TestCancelEdges: cancel over client TLS, a cancel for a session
// that has ended, and the upstream's own key sent to the proxy.
func TestCancelEdges(t *testing.T) {
	tp := startProxy(t, Config{TLSConfig: selfSignedTLS(t)})
	url := tp.via(t, pgtest.NewDB(t))
	ctx := ctxT(t)

	sendCancel := func(useTLS bool, pid uint32, secret uint32) {
		t.Helper()
		raw, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		var c net.Conn = raw
		if useTLS {
			raw.Write(encode(&pgproto3.SSLRequest{}))
			var b [1]byte
			if _, err := io.ReadFull(raw, b[:]); err != nil || b[0] != 'S' {
				t.Fatalf("SSLRequest: %q %v", b, err)
			}
			tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			c = tc
		}
		key := []byte{byte(secret >> 24), byte(secret >> 16), byte(secret >> 8), byte(secret)}
		c.Write(encode(&pgproto3.CancelRequest{ProcessID: pid, SecretKey: key}))
		io.ReadAll(c) // the proxy closes when it has handled it
	}

	conn := pgtest.Connect(t, url)
	pid, secret := conn.PgConn().PID(), binary.BigEndian.Uint32(conn.PgConn().SecretKey())
	var upstreamPID uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&upstreamPID); err != nil {
		t.Fatal(err)
	}
	if pid != upstreamPID {
		t.Errorf("proxy hands out pid %d, upstream's is %d", pid, upstreamPID)
	}

	run := func(d string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(context.Background(), `SELECT pg_sleep(`+d+`)`)
			done <- err
		}()
		waitSleeping(t, upstreamPID)
		return done
	}

	// Over TLS.
	done := run("20")
	sendCancel(true, pid, secret)
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("cancel over TLS: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel over TLS did not arrive")
	}

	// The pid with another secret cancels nothing.
	done = run("0.6")
	sendCancel(false, pid, secret+1)
	sendCancel(false, pid^1, secret)
	if err := <-done; err != nil {
		t.Fatalf("wrong keys cancelled the query: %v", err)
	}

	// A cancel for a session that has ended is ignored; the proxy serves on.
	conn.Close(ctx)
	tp.waitSessions(t, 0)
	sendCancel(false, pid, secret)
	other := pgtest.Connect(t, url)
	if _, err := other.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
}

// TestDrainInTransaction: a session idle in a transaction at
// shutdown may finish it; it is closed once idle.
func TestDrainInTransaction(t *testing.T) {
	tp := startProxy(t, Config{DrainTimeout: 5 * time.Second})
	url := tp.via(t, pgtest.NewDB(t))
	ctx := ctxT(t)
	conn := pgtest.Connect(t, url)
	if _, err := conn.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan time.Duration, 1)
	go func() { stopped <- tp.stop(t) }()
	time.Sleep(200 * time.Millisecond)
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE x (v int)`); err != nil {
		t.Fatalf("statement in the transaction during drain: %v", err)
	}
	if _, err := conn.Exec(ctx, `COMMIT`); err != nil {
		t.Fatalf("COMMIT during drain: %v", err)
	}
	if d := <-stopped; d > 3*time.Second {
		t.Errorf("Serve returned %v after shutdown, want soon after COMMIT", d)
	}
	_, err := conn.Exec(ctx, `SELECT 1`)
	var pe *pgconn.PgError
	if err == nil {
		t.Fatal("session open after drain")
	}
	if errors.As(err, &pe) && pe.Code != "57P01" {
		t.Fatalf("after drain: %v", err)
	}
	// Refused now.
	if _, err := pgx.Connect(ctx, url); err == nil {
		t.Fatal("connect after shutdown succeeded")
	}
}

// TestRepeatedSSLRequest: Postgres accepts one SSLRequest (and one
// GSSENCRequest); a second is refused as an unsupported protocol.
func TestRepeatedSSLRequest(t *testing.T) {
	tp := startProxy(t, Config{})
	transcript := func(addr string) string {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		var out []string
		for i := 0; i < 2; i++ {
			raw.Write(encode(&pgproto3.SSLRequest{}))
			var b [1]byte
			if _, err := io.ReadFull(raw, b[:]); err != nil {
				out = append(out, "EOF")
				break
			}
			if b[0] != 'N' {
				// An ErrorResponse.
				rest, _ := io.ReadAll(raw)
				e := readErrorBytes(append(b[:], rest...))
				out = append(out, "E:"+e)
				break
			}
			out = append(out, "N")
		}
		return strings.Join(out, " ")
	}
	direct := transcript(pgtest.Cluster(t).Addr())
	proxied := transcript(tp.addr)
	if direct != proxied {
		t.Errorf("two SSLRequests: direct %q, proxied %q", direct, proxied)
	}
}

func readErrorBytes(b []byte) string {
	if len(b) < 5 || b[0] != 'E' {
		return fmt.Sprintf("%q", b)
	}
	var e pgproto3.ErrorResponse
	if err := e.Decode(b[5:]); err != nil {
		return err.Error()
	}
	return e.Code
}

// TestRegisterWhileDraining: a connection accepted just before
// shutdown whose goroutine registers after shutdown collected the sessions
// to drain is refused rather than served until DrainTimeout.
func TestRegisterWhileDraining(t *testing.T) {
	p := New(Config{Upstream: "127.0.0.1:1"})
	p.mu.Lock()
	p.draining = true
	p.mu.Unlock()
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan struct{})
	go func() { defer close(done); p.serveConn(server) }()
	if e := readError(t, client); e == nil || e.Code != "57P01" {
		t.Fatalf("got %+v, want 57P01", e)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("serveConn still running")
	}
	if p.Sessions() != 0 {
		t.Fatalf("Sessions() = %d", p.Sessions())
	}
}

// TestStartupTimeout: a client that stops inside its startup
// (half a startup packet, one sent a byte at a time, an SSLRequest and
// no handshake) is closed once Config.StartupTimeout has passed since it
// connected, as Postgres's authentication_timeout closes it (without a
// word: Postgres's startup packet timeout sends nothing either), and no
// longer counts against maxStartingConns.
func TestStartupTimeout(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	tp := startProxy(t, Config{StartupTimeout: timeout, TLSConfig: selfSignedTLS(t)})
	startup := startupMsg(map[string]string{"user": "postgres", "database": "postgres"})
	for _, tc := range []struct {
		name string
		send func(c net.Conn)
	}{
		{"half a startup packet", func(c net.Conn) { c.Write(startup[:len(startup)/2]) }},
		{"length only", func(c net.Conn) { c.Write(startup[:4]) }},
		{"a byte at a time", func(c net.Conn) {
			for i := 0; i < len(startup)-1; i++ {
				if _, err := c.Write(startup[i : i+1]); err != nil {
					return
				}
				time.Sleep(timeout / 8)
			}
		}},
		{"SSLRequest, then no handshake", func(c net.Conn) {
			c.Write(encode(&pgproto3.SSLRequest{}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tp.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			go tc.send(c)
			c.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
			got, err := io.ReadAll(c)
			took := time.Since(start)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("still open after %v", took)
			}
			if took < timeout-100*time.Millisecond {
				t.Errorf("closed after %v, before the startup timeout", took)
			}
			if strings.HasPrefix(tc.name, "SSLRequest") {
				got = []byte(strings.TrimPrefix(string(got), "S"))
			}
			if len(got) != 0 {
				t.Errorf("got %q before the close", got)
			}
		})
	}
	tp.waitSessions(t, 0)
	if n := tp.starting.Load(); n != 0 {
		t.Errorf("%d connections still count as starting", n)
	}
}

// TestOversizedStartup: a startup packet whose length is out of
// bounds (negative, under 8, over 10004, 1 GiB) is refused at once,
// before its body arrives, as Postgres refuses it (it closes without an
// answer: "invalid length of startup packet" is only logged), and the
// proxy does not allocate the claimed size.
func TestOversizedStartup(t *testing.T) {
	tp := startProxy(t, Config{})
	for _, n := range []int32{-1, -1 << 31, 0, 7, 10005, 1 << 30} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pkt := binary.BigEndian.AppendUint32(nil, uint32(n))
			pkt = binary.BigEndian.AppendUint32(pkt, 3<<16)
			for _, target := range []string{pgtest.Cluster(t).Addr(), tp.addr} {
				base := heapInUse()
				c, err := net.Dial("tcp", target)
				if err != nil {
					t.Fatal(err)
				}
				c.Write(pkt)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, err := io.ReadAll(c)
				c.Close()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s: no answer, still open", target)
				}
				if len(got) != 0 {
					t.Errorf("%s: got %q", target, got)
				}
				if target == tp.addr {
					if grew := heapInUse() - base; grew > 1<<20 {
						t.Errorf("heap grew %d KB", grew>>10)
					}
				}
			}
		})
	}
	tp.waitSessions(t, 0)
}

// TestStartupPacketLimit: Postgres's limit on a startup packet
// (MAX_STARTUP_PACKET_LENGTH, 10000) does not count its length word: a
// packet of 10004 bytes starts a session, one of 10005 is refused. The
// proxy refused 10001 to 10004.
func TestStartupPacketLimit(t *testing.T) {
	tp := startProxy(t, Config{})
	for _, total := range []int{10004, 10005} {
		name := "application_name"
		pad := total - len(rawStartup(3, 0, "user", "postgres", "database", "postgres", name, ""))
		pkt := rawStartup(3, 0, "user", "postgres", "database", "postgres", name, strings.Repeat("a", pad))
		if len(pkt) != total {
			t.Fatalf("packet of %d bytes, want %d", len(pkt), total)
		}
		direct := rawTranscript(t, pgtest.Cluster(t).Addr(), pkt)
		proxied := rawTranscript(t, tp.addr, pkt)
		sameTranscript(t, fmt.Sprintf("%d bytes, proxied vs direct", total), proxied, direct)
		if want := total == 10004; (direct[0] == "AuthenticationOk") != want {
			t.Errorf("%d bytes: direct %v", total, direct)
		}
	}
}
