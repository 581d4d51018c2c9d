package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// tcpPair returns the two ends of a loopback TCP connection: real sockets,
// so that a peer's close is an EOF or (with SO_LINGER 0) a reset, as from
// a crashed Postgres.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// crashMode is how the fake upstream dies: a closed socket (the proxy reads
// EOF) or a reset one (it reads ECONNRESET, and its writes fail at once),
// in either case without the FATAL Postgres sends when it ends a session
// itself; or, with crashFatal, as Postgres ends a session it was told to
// end (pg_terminate_backend): FATAL 57P01, then the close.
type crashMode int

const (
	crashEOF crashMode = iota
	crashReset
	crashFatal
)

func (m crashMode) String() string { return [...]string{"eof", "reset", "fatal"}[m] }

// fakeUpstream answers the proxy as a Postgres backend would, for the few
// requests these tests make (every statement succeeds), until crashAt
// reports true for a request it read, or crash is called: then it dies at
// once, with that request and whatever came with it unanswered.
type fakeUpstream struct {
	conn *net.TCPConn
	mode crashMode
	once sync.Once
	dead chan struct{} // closed once it has crashed
	// onMsg, when set, sees each request before it is answered.
	onMsg func(pgproto3.FrontendMessage)
}

func startFakeUpstream(t *testing.T, conn *net.TCPConn, mode crashMode, crashAt func(pgproto3.FrontendMessage) bool) *fakeUpstream {
	return startFakeUpstreamWith(t, conn, mode, crashAt, nil)
}

func startFakeUpstreamWith(t *testing.T, conn *net.TCPConn, mode crashMode, crashAt func(pgproto3.FrontendMessage) bool, onMsg func(pgproto3.FrontendMessage)) *fakeUpstream {
	f := &fakeUpstream{conn: conn, mode: mode, dead: make(chan struct{}), onMsg: onMsg}
	go func() {
		be := pgproto3.NewBackend(conn, conn)
		for {
			msg, err := be.Receive()
			if err != nil {
				return
			}
			if crashAt != nil && crashAt(msg) {
				f.crash()
				return
			}
			if f.onMsg != nil {
				f.onMsg(msg)
			}
			switch m := msg.(type) {
			case *pgproto3.Parse:
				if isForcedError(m) {
					be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42601", Message: `syntax error at or near "pgstripe"`})
					break
				}
				be.Send(&pgproto3.ParseComplete{})
			case *pgproto3.Bind:
				be.Send(&pgproto3.BindComplete{})
			case *pgproto3.Describe:
				be.Send(&pgproto3.NoData{})
			case *pgproto3.Execute:
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")})
			case *pgproto3.Close:
				be.Send(&pgproto3.CloseComplete{})
			case *pgproto3.Sync:
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			case *pgproto3.Query:
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			case *pgproto3.Terminate:
				conn.Close()
				return
			case *pgproto3.Flush:
			default:
				t.Errorf("fake upstream: unexpected %T", m)
			}
			if err := be.Flush(); err != nil {
				return
			}
		}
	}()
	return f
}

// crash kills the fake upstream (see crashMode).
func (f *fakeUpstream) crash() {
	f.once.Do(func() {
		switch f.mode {
		case crashReset:
			f.conn.SetLinger(0)
		case crashFatal:
			f.conn.Write(enc(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
				Message: "terminating connection due to administrator command"}))
		}
		f.conn.Close()
		close(f.dead)
	})
}

// isForcedError reports whether msg is the proxy's Parse that puts
// upstream in the failed state after an interceptor's error (forceError).
func isForcedError(msg pgproto3.FrontendMessage) bool {
	p, ok := msg.(*pgproto3.Parse)
	return ok && p.Name == "pgstripe_proxy_failed"
}

// endOrder is how the test lets a session's two loops end: as run() does
// (each loop's end right after it, the two goroutines as scheduled), or
// with both loops returned first and then one side's end before the
// other's. The last two are schedules run() allows too; they make the
// outcome of a race deterministic.
type endOrder int

const (
	endAsRun endOrder = iota
	endClientFirst
	endServerFirst
)

func (o endOrder) String() string { return [...]string{"run", "client-first", "server-first"}[o] }

// sessionHarness is a session past startup between a test client and a
// fake upstream, both over loopback TCP: what serveConn and
// connectUpstream set up, without the handshake.
type sessionHarness struct {
	s      *session
	client *net.TCPConn // the test's end of the client connection
	fe     *pgproto3.Frontend
	up     *net.TCPConn // the fake upstream's end
	ended  chan struct{}
}

func newSessionHarness(t *testing.T, ic Interceptor) *sessionHarness {
	t.Helper()
	clientEnd, proxyClient := tcpPair(t)
	proxyUp, upEnd := tcpPair(t)
	p := New(Config{Classify: classifyTest, Interceptor: ic})
	s := &session{p: p, client: proxyClient, upstream: proxyUp, done: make(chan struct{}), stmts: make(map[string]*stmtInfo)}
	s.ctx, s.ctxCancel = context.WithCancel(context.Background())
	s.txStatus.Store('I')
	s.cw.conn, s.uw.conn = proxyClient, proxyUp
	s.cr, s.ur = newMsgReader(proxyClient), newMsgReader(proxyUp)
	s.cr.limit = clientLimit
	h := &sessionHarness{s: s, client: clientEnd, fe: pgproto3.NewFrontend(clientEnd, clientEnd), up: upEnd, ended: make(chan struct{})}
	t.Cleanup(func() {
		s.close()
		select {
		case <-h.ended:
		case <-time.After(10 * time.Second):
			t.Error("session loops still running after close")
		}
	})
	return h
}

// start runs the session's loops, ending them in the given order.
func (h *sessionHarness) start(t *testing.T, order endOrder) {
	s := h.s
	if order == endAsRun {
		go func() {
			defer close(h.ended)
			s.run()
		}()
		return
	}
	s.cr.onBlock = s.flushUpstream
	s.ur.onBlock = s.flushClient
	clientErr, serverErr := make(chan error, 1), make(chan error, 1)
	go func() { clientErr <- s.clientLoop() }()
	go func() { serverErr <- s.serverLoop() }()
	go func() {
		defer close(h.ended)
		var cerr, serr error
		for range 2 {
			select {
			case cerr = <-clientErr:
				clientErr = nil
			case serr = <-serverErr:
				serverErr = nil
			case <-time.After(10 * time.Second):
				// A loop that never ends by itself here is a hang
				// (the client reads until the deadline and fails).
				s.close()
				if clientErr != nil {
					cerr = <-clientErr
				}
				if serverErr != nil {
					serr = <-serverErr
				}
			}
		}
		if order == endClientFirst {
			s.endFromClient(cerr)
			s.endFromServer(serr)
		} else {
			s.endFromServer(serr)
			s.endFromClient(cerr)
		}
	}()
}

// send writes the client's messages in one go, as a pipelining client does.
func (h *sessionHarness) send(t *testing.T, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	for _, m := range msgs {
		h.fe.Send(m)
	}
	if err := h.fe.Flush(); err != nil {
		t.Fatal(err)
	}
}

// readToEnd returns what the client receives until the proxy closes the
// connection: one line per message, and "EOF" for the close, or "hang"
// when the proxy neither writes nor closes for 10 seconds.
func (h *sessionHarness) readToEnd(t *testing.T) []string {
	t.Helper()
	h.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []string
	for {
		msg, err := h.fe.Receive()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				return append(got, "hang")
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
				strings.Contains(err.Error(), "connection reset"):
				return append(got, "EOF")
			}
			return append(got, "error: "+err.Error())
		}
		got = append(got, describeMsg(msg))
	}
}

func describeMsg(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.ErrorResponse:
		return fmt.Sprintf("%s %s %s", m.Severity, m.Code, m.Message)
	case *pgproto3.CommandComplete:
		return "CommandComplete " + string(m.CommandTag)
	case *pgproto3.ReadyForQuery:
		return "ReadyForQuery " + string(m.TxStatus)
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
}

// failingWrite is an interceptor whose write Stripe refuses.
var failingWrite = InterceptorFunc(func(ctx context.Context, call *Call) error {
	return &pgconn.PgError{Code: "P0001", Message: "stripe said no", Detail: "request req_123"}
})

// writeRequest is the client's request of an intercepted write,
// simple or extended (pipelined up to Sync).
func writeRequest(simple bool) []pgproto3.FrontendMessage {
	if simple {
		return []pgproto3.FrontendMessage{&pgproto3.Query{String: "INSERT INTO stripe.x (v) VALUES ('a')"}}
	}
	return []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "INSERT INTO stripe.x (v) VALUES ($1)", ParameterOIDs: []uint32{25}},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("a")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
}

// wantLines compares a client's transcript with what it must be.
func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the client got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

var extendedHead = []string{"ParseComplete", "BindComplete", "NoData"}

// TestUpstreamCrashAfterInterceptorError: the interceptor answers
// with an ERROR (Stripe refused the write) and upstream crashes just then,
// so that the request putting upstream in the failed state (forceError)
// meets the dead connection. The client must get the interceptor's ERROR,
// then the proxy's FATAL 08006 for the lost upstream, then the close:
// before, the interception returned upstream's EOF (or reset) to the
// client loop, which took it for the client's own end (EOF: as if the
// client had closed its side; reset: as if it had vanished) and closed the
// session without the FATAL whenever its end came before the server
// loop's, and a client then reported a bare EOF after an ERROR.
func TestUpstreamCrashAfterInterceptorError(t *testing.T) {
	for _, simple := range []bool{true, false} {
		for _, mode := range []crashMode{crashEOF, crashReset} {
			for _, order := range []endOrder{endClientFirst, endServerFirst, endAsRun} {
				t.Run(fmt.Sprintf("simple=%v/%v/%v", simple, mode, order), func(t *testing.T) {
					crashAfterInterceptorError(t, simple, mode, order, "FATAL 08006 pgstripe proxy: lost connection to upstream Postgres")
				})
			}
		}
	}
}

// TestUpstreamFatalAfterInterceptorError: Postgres ends the session
// itself (pg_terminate_backend, a shutdown) just as the interceptor
// answers with an ERROR, so that its FATAL answers the request putting
// upstream in the failed state. The client must get that FATAL after the
// interceptor's ERROR, as from Postgres: before, the proxy took it for the
// expected refusal of its own request and dropped it, and the client got
// the proxy's 08006 in its place.
func TestUpstreamFatalAfterInterceptorError(t *testing.T) {
	for _, simple := range []bool{true, false} {
		t.Run(fmt.Sprintf("simple=%v", simple), func(t *testing.T) {
			crashAfterInterceptorError(t, simple, crashFatal, endAsRun, "FATAL 57P01 terminating connection due to administrator command")
		})
	}
}

// crashAfterInterceptorError sends a write the interceptor refuses, with
// upstream failing (mode) at the request that puts it in the failed state,
// and wants the interceptor's ERROR, then fatal, then the close.
func crashAfterInterceptorError(t *testing.T, simple bool, mode crashMode, order endOrder, fatal string) {
	h := newSessionHarness(t, failingWrite)
	up := startFakeUpstream(t, h.up, mode, isForcedError)
	h.start(t, order)
	h.send(t, writeRequest(simple)...)
	got := h.readToEnd(t)
	<-up.dead
	var want []string
	if !simple {
		want = append(want, extendedHead...)
	}
	want = append(want, "ERROR P0001 stripe said no", fatal, "EOF")
	wantLines(t, got, want...)
}

// TestUpstreamGoneWhileInterceptorRuns: upstream crashes while the
// interceptor is out calling Stripe, and the interceptor then answers
// without using upstream again: Stripe refused the write, or took it. A
// refusal ends the session as a FATAL (Call.Send); a write that went
// through gets its CommandComplete, then the proxy's 08006. The client's
// own requests after the intercepted one (the simple Query's Sync of the
// proxy's own, a pipelined Sync) then meet the dead connection: with a
// reset one their write fails in the client loop, which before closed the
// session as if the client had vanished, cutting the 08006 off whenever
// its end came first.
func TestUpstreamGoneWhileInterceptorRuns(t *testing.T) {
	var up *fakeUpstream
	ic := InterceptorFunc(func(ctx context.Context, call *Call) error {
		up.crash()
		// The Stripe call takes until the proxy has seen the crash.
		select {
		case <-call.ic.gone:
		case <-ctx.Done():
			return ctx.Err()
		}
		if strings.Contains(call.SQL, "refused") {
			return &pgconn.PgError{Code: "P0001", Message: "stripe said no"}
		}
		return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")})
	})
	for _, refused := range []bool{false, true} {
		for _, simple := range []bool{true, false} {
			for _, mode := range []crashMode{crashEOF, crashReset} {
				orders := []endOrder{endAsRun}
				if mode == crashReset {
					// Both loops end by themselves only when the write
					// fails: after a plain close the first one succeeds.
					orders = append(orders, endClientFirst, endServerFirst)
				}
				for _, order := range orders {
					t.Run(fmt.Sprintf("refused=%v/simple=%v/%v/%v", refused, simple, mode, order), func(t *testing.T) {
						h := newSessionHarness(t, ic)
						up = startFakeUpstream(t, h.up, mode, nil)
						h.start(t, order)
						req := writeRequest(simple)
						if refused {
							if simple {
								req[0] = &pgproto3.Query{String: "INSERT INTO stripe.x (v) VALUES ('refused')"}
							} else {
								req[0] = &pgproto3.Parse{Query: "INSERT INTO stripe.x (v) VALUES ($1) -- refused", ParameterOIDs: []uint32{25}}
							}
						}
						h.send(t, req...)
						got := h.readToEnd(t)
						var want []string
						if !simple {
							want = append(want, extendedHead...)
						}
						if refused {
							want = append(want, "FATAL P0001 stripe said no", "EOF")
						} else {
							want = append(want, "CommandComplete INSERT 0 1",
								"FATAL 08006 pgstripe proxy: lost connection to upstream Postgres", "EOF")
						}
						wantLines(t, got, want...)
					})
				}
			}
		}
	}
}

// TestTerminateAndUpstreamCrash: the client ends its session just
// as upstream crashes. A Terminate the proxy has read (and passed on) is
// the end the client asked for: the client gets no FATAL after it, even
// if upstream dies without reading it. A Terminate sent with an
// intercepted write whose reply is an ERROR, upstream crashing before the
// client loop gets to it: the proxy has read it all the same, so the
// client gets the interceptor's ERROR, then the close; never a FATAL, a
// hang or ReadyForQuery.
func TestTerminateAndUpstreamCrash(t *testing.T) {
	for _, order := range []endOrder{endAsRun, endClientFirst, endServerFirst} {
		t.Run("terminate read/"+order.String(), func(t *testing.T) {
			ok := InterceptorFunc(func(ctx context.Context, call *Call) error {
				return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")})
			})
			h := newSessionHarness(t, ok)
			up := startFakeUpstream(t, h.up, crashReset, func(msg pgproto3.FrontendMessage) bool {
				_, ok := msg.(*pgproto3.Terminate)
				return ok
			})
			h.start(t, order)
			h.send(t, writeRequest(true)...)
			h.send(t, &pgproto3.Terminate{})
			got := h.readToEnd(t)
			<-up.dead
			wantLines(t, got, "CommandComplete INSERT 0 1", "ReadyForQuery I", "EOF")
		})
		for _, simple := range []bool{true, false} {
			t.Run(fmt.Sprintf("terminate pipelined/simple=%v/%v", simple, order), func(t *testing.T) {
				h := newSessionHarness(t, failingWrite)
				up := startFakeUpstream(t, h.up, crashReset, isForcedError)
				h.start(t, order)
				h.send(t, append(writeRequest(simple), &pgproto3.Terminate{})...)
				got := h.readToEnd(t)
				<-up.dead
				var want []string
				if !simple {
					want = append(want, extendedHead...)
				}
				wantLines(t, got, append(want, "ERROR P0001 stripe said no", "EOF")...)
			})
		}
	}
}

// TestCancelAfterInterceptorAnswered: a CancelRequest that arrives
// once the interceptor has answered, while the proxy still puts upstream
// in the failed state after its ERROR, changes nothing the client sees:
// the reply stays the interceptor's (not 57014), the session goes on.
func TestCancelAfterInterceptorAnswered(t *testing.T) {
	for _, simple := range []bool{true, false} {
		t.Run(fmt.Sprintf("simple=%v", simple), func(t *testing.T) {
			h := newSessionHarness(t, failingWrite)
			var cancelled atomic.Bool
			startFakeUpstreamWith(t, h.up, crashEOF, nil, func(msg pgproto3.FrontendMessage) {
				if isForcedError(msg) {
					// The reply is out (flushed before this request):
					// the client's cancel may come now.
					h.s.cancelRequest()
					cancelled.Store(true)
				}
			})
			h.start(t, endAsRun)
			h.send(t, writeRequest(simple)...)
			h.send(t, &pgproto3.Query{String: "SELECT 1"})
			h.client.SetReadDeadline(time.Now().Add(10 * time.Second))
			var got []string
			for rfq := 0; rfq < 2; {
				msg, err := h.fe.Receive()
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					rfq++
				}
				got = append(got, describeMsg(msg))
			}
			if !cancelled.Load() {
				t.Fatal("the proxy did not put upstream in the failed state")
			}
			var want []string
			if !simple {
				want = append(want, extendedHead...)
			}
			wantLines(t, got, append(want, "ERROR P0001 stripe said no", "ReadyForQuery I", "CommandComplete SELECT 0", "ReadyForQuery I")...)
		})
	}
}

// TestTerminateReadGetsNoFatal: the client pipelines an intercepted
// write and its Terminate in one write, and upstream dies before the
// session gets to the Terminate: at the request that puts upstream in the
// failed state after the interceptor's ERROR, or while the interceptor
// runs (its write then goes through). The proxy has read the Terminate
// (the interceptor checks that it sits in the client's buffer), so, as
// Postgres after a Terminate, it sends nothing after the write's own
// reply: no FATAL 08006, in every end order of the two loops. Before, the
// FATAL followed whenever the server loop ended the session before the
// client loop got to the Terminate.
func TestTerminateReadGetsNoFatal(t *testing.T) {
	for _, gone := range []bool{false, true} {
		for _, simple := range []bool{true, false} {
			for _, mode := range []crashMode{crashEOF, crashReset} {
				for _, order := range []endOrder{endAsRun, endClientFirst, endServerFirst} {
					t.Run(fmt.Sprintf("gone=%v/simple=%v/%v/%v", gone, simple, mode, order), func(t *testing.T) {
						var h *sessionHarness
						var up *fakeUpstream
						ic := InterceptorFunc(func(ctx context.Context, call *Call) error {
							// The interceptor runs in the client loop, which
							// owns the reader: the Terminate came with the
							// write and waits there.
							if !bytes.HasSuffix(h.s.cr.buf[h.s.cr.r:h.s.cr.w], terminateMsg) {
								t.Error("the Terminate is not in the proxy's buffer while the write is intercepted")
							}
							if !gone {
								return &pgconn.PgError{Code: "P0001", Message: "stripe said no"}
							}
							up.crash()
							select {
							case <-call.ic.gone:
							case <-ctx.Done():
								return ctx.Err()
							}
							return call.Send(&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")})
						})
						h = newSessionHarness(t, ic)
						var crashAt func(pgproto3.FrontendMessage) bool
						if !gone {
							crashAt = isForcedError
						}
						up = startFakeUpstream(t, h.up, mode, crashAt)
						h.start(t, order)
						h.send(t, append(writeRequest(simple), &pgproto3.Terminate{})...)
						got := h.readToEnd(t)
						<-up.dead
						var want []string
						if !simple {
							want = append(want, extendedHead...)
						}
						if gone {
							want = append(want, "CommandComplete INSERT 0 1")
						} else {
							want = append(want, "ERROR P0001 stripe said no")
						}
						wantLines(t, got, append(want, "EOF")...)
					})
				}
			}
		}
	}
}

// TestTerminateNotYetReadGetsFatal: the same failure without a
// Terminate in the proxy's buffer (the client has not ended its session)
// still ends with the proxy's FATAL 08006, in every end order.
func TestTerminateNotYetReadGetsFatal(t *testing.T) {
	for _, simple := range []bool{true, false} {
		for _, order := range []endOrder{endAsRun, endClientFirst, endServerFirst} {
			t.Run(fmt.Sprintf("simple=%v/%v", simple, order), func(t *testing.T) {
				crashAfterInterceptorError(t, simple, crashReset, order, "FATAL 08006 pgstripe proxy: lost connection to upstream Postgres")
			})
		}
	}
}

// TestTerminateBuffered: what counts as a Terminate the proxy has
// read: a whole one, at a message boundary, not behind a message the proxy
// would refuse or one cut off.
func TestTerminateBuffered(t *testing.T) {
	x := terminateMsg
	sync := enc(&pgproto3.Sync{})
	query := enc(&pgproto3.Query{String: "SELECT 1"})
	cases := []struct {
		name string
		buf  []byte
		want bool
	}{
		{"empty", nil, false},
		{"terminate", x, true},
		{"after requests", cat(query, sync, x), true},
		{"cut off", x[:4], false},
		{"behind a cut-off message", cat(query[:len(query)-1]), false},
		{"request after it", cat(x, query), true},
		{"inside copy data", enc(&pgproto3.CopyData{Data: x}), false},
		{"behind a bad type", cat([]byte{'x', 0, 0, 0, 4}, x), false},
		{"behind a bad length", cat([]byte{'Q', 0, 0, 0, 3}, x), false},
		{"behind an oversized message", cat([]byte{'S', 0, 0, 0x7f, 0xff}, x), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &session{cr: newMsgReader(nil)}
			s.cr.limit = clientLimit
			// Unread bytes after some already handled, as in the reader.
			s.cr.w = copy(s.cr.buf, cat(query, c.buf))
			s.cr.r = len(query)
			if got := s.terminateBuffered(); got != c.want {
				t.Errorf("terminateBuffered() = %v, want %v", got, c.want)
			}
			if s.cr.r != len(query) || s.cr.w != len(query)+len(c.buf) {
				t.Error("terminateBuffered moved the reader")
			}
		})
	}
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// TestTerminateBehindBarrier: upstream dies while the client loop
// waits, in front of a Terminate the proxy has read, for a reply that
// never comes: the barrier of an intercepted write sent behind a query
// upstream dies at (simple or extended protocol), or room in a full
// pipeline (maxInFlight requests unanswered). As after a Terminate the
// client loop got to, the client gets nothing of the proxy's own, only the
// close. Without the Terminate the proxy's FATAL 08006 comes as before,
// also when the client loop waits on the client (idle); upstream's own
// FATAL comes either way. Before, the server loop sent the 08006 whenever
// the client loop still waited in front of the Terminate.
func TestTerminateBehindBarrier(t *testing.T) {
	const lost = "FATAL 08006 pgstripe proxy: lost connection to upstream Postgres"
	const admin = "FATAL 57P01 terminating connection due to administrator command"
	cases := []struct {
		name      string
		run       func(t *testing.T, mode crashMode, terminate bool) []string
		terminate bool
		want      []string // when upstream dies without a word
	}{
		{"barrier/simple", barrierCase(true, true, false), true, []string{"EOF"}},
		{"barrier/simple", barrierCase(true, true, false), false, []string{lost, "EOF"}},
		{"barrier/extended", barrierCase(false, true, false), true, []string{"EOF"}},
		{"barrier/extended", barrierCase(false, true, false), false, []string{lost, "EOF"}},
		{"full pipeline", fullQueueCase, true, []string{"EOF"}},
		{"full pipeline", fullQueueCase, false, []string{lost, "EOF"}},
		{"idle", barrierCase(true, false, false), false, []string{lost, "EOF"}},
		// The client loop's wait on the client ends with a deadline,
		// which must leave a TLS connection able to send the FATAL.
		{"tls/barrier", barrierCase(true, true, true), true, []string{"EOF"}},
		{"tls/barrier", barrierCase(true, true, true), false, []string{lost, "EOF"}},
		{"tls/idle", barrierCase(true, false, true), false, []string{lost, "EOF"}},
	}
	for _, c := range cases {
		for _, mode := range []crashMode{crashEOF, crashReset, crashFatal} {
			t.Run(fmt.Sprintf("%s/terminate=%v/%v", c.name, c.terminate, mode), func(t *testing.T) {
				want := c.want
				if mode == crashFatal {
					// Postgres sends its FATAL before it has read the
					// Terminate; the proxy passes it on, and adds none.
					want = []string{admin, "EOF"}
				}
				wantLines(t, c.run(t, mode, c.terminate), want...)
			})
		}
	}
}

// noInterceptor fails the test if an interception runs: none of these
// barriers is ever answered.
func noInterceptor(t *testing.T) Interceptor {
	return InterceptorFunc(func(context.Context, *Call) error {
		t.Error("the interceptor ran")
		return nil
	})
}

// barrierCase sends, in one write, a pass-through query that upstream dies
// at, then (with write) an intercepted write, then (with terminate) a
// Terminate. Without the write the client loop waits on the client.
// With overTLS the client speaks TLS.
func barrierCase(simple, write, overTLS bool) func(t *testing.T, mode crashMode, terminate bool) []string {
	return func(t *testing.T, mode crashMode, terminate bool) []string {
		h := wrappedHarness(t, overTLS)
		up := startFakeUpstream(t, h.up, mode, func(m pgproto3.FrontendMessage) bool {
			q, ok := m.(*pgproto3.Query)
			return ok && q.String == "SELECT 1"
		})
		h.start(t, endAsRun)
		msgs := []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}}
		if write {
			msgs = append(msgs, writeRequest(simple)...)
		}
		if terminate {
			msgs = append(msgs, &pgproto3.Terminate{})
		}
		h.send(t, msgs...)
		got := h.readToEnd(t)
		<-up.dead
		return got
	}
}

// fullQueueCase fills the pipeline: maxInFlight Syncs that upstream reads
// and never answers, the last one sent with the Terminate, so that the
// client loop waits for room with the Terminate in its buffer; upstream
// dies once it has read them all.
func fullQueueCase(t *testing.T, mode crashMode, terminate bool) []string {
	h := wrappedHarness(t, false)
	up := &fakeUpstream{conn: h.up, mode: mode, dead: make(chan struct{})}
	readFirst := make(chan struct{})
	go func() {
		be := pgproto3.NewBackend(h.up, h.up)
		for n := 0; ; {
			msg, err := be.Receive()
			if err != nil {
				t.Errorf("fake upstream: %v", err)
				up.crash()
				return
			}
			if _, ok := msg.(*pgproto3.Sync); !ok {
				t.Errorf("fake upstream: unexpected %T", msg)
				continue
			}
			switch n++; n {
			case maxInFlight - 1:
				close(readFirst)
			case maxInFlight:
				up.crash()
				return
			}
		}
	}()
	h.start(t, endAsRun)
	first := make([]pgproto3.FrontendMessage, maxInFlight-1)
	for i := range first {
		first[i] = &pgproto3.Sync{}
	}
	h.send(t, first...)
	// The client loop has forwarded them all, one short of a full queue,
	// and waits on the client: the last Sync and the Terminate arrive
	// together, so that it reads the Terminate before the queue is full.
	select {
	case <-readFirst:
	case <-up.dead:
		t.Fatal("the fake upstream died before it read the pipeline")
	}
	last := []pgproto3.FrontendMessage{&pgproto3.Sync{}}
	if terminate {
		last = append(last, &pgproto3.Terminate{})
	}
	h.send(t, last...)
	got := h.readToEnd(t)
	<-up.dead
	return got
}

// TestClientEndThenUpstreamCrash: the client sends a query and
// closes its sending side (which Postgres takes as a Terminate), and
// upstream dies at the query without a word. The client loop has read the
// end of input, so the client gets no FATAL of the proxy's, whichever
// session end runs first; upstream's own FATAL it gets. Before, the
// proxy's 08006 came when the server loop's end ran before the client
// loop's (endFromClient noted the end only then). Only orders in which
// both loops have returned: as run, the server loop may stop the client
// loop before it reads the end (not read, so the FATAL), which no signal
// orders.
func TestClientEndThenUpstreamCrash(t *testing.T) {
	for _, mode := range []crashMode{crashEOF, crashReset, crashFatal} {
		for _, order := range []endOrder{endClientFirst, endServerFirst} {
			t.Run(fmt.Sprintf("%v/%v", mode, order), func(t *testing.T) {
				h := wrappedHarness(t, false)
				up := startFakeUpstream(t, h.up, mode, func(m pgproto3.FrontendMessage) bool {
					_, ok := m.(*pgproto3.Query)
					return ok
				})
				h.start(t, order)
				h.send(t, &pgproto3.Query{String: "SELECT 1"})
				if err := h.client.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got := h.readToEnd(t)
				<-up.dead
				want := []string{"EOF"}
				if mode == crashFatal {
					want = []string{"FATAL 57P01 terminating connection due to administrator command", "EOF"}
				}
				wantLines(t, got, want...)
			})
		}
	}
}

// wrappedHarness is a session harness whose sockets are wrapped as
// serveConn and connectUpstream wrap them (raw system calls, except under
// the race detector: withRawIO), where a deadline must end a blocked read
// or write as well; with overTLS the client speaks TLS, which the proxy
// terminates.
func wrappedHarness(t *testing.T, overTLS bool) *sessionHarness {
	h := newSessionHarness(t, noInterceptor(t))
	s := h.s
	s.uw.setConn(withRawIO(s.upstream))
	s.ur = newMsgReader(s.uw.conn)
	if overTLS {
		clientTLS(t, h)
		return h
	}
	s.cw.setConn(withRawIO(s.client))
	s.cr = newMsgReader(s.cw.conn)
	s.cr.limit = clientLimit
	return h
}

// clientTLS makes the harness's client connection speak TLS.
func clientTLS(t *testing.T, h *sessionHarness) {
	server := tls.Server(h.s.client, selfSignedTLS(t))
	client := tls.Client(h.client, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	h.s.setClient(server)
	h.s.cr = newMsgReader(server)
	h.s.cr.limit = clientLimit
	h.fe = pgproto3.NewFrontend(client, client)
}

// badLength is a message Postgres refuses for its length (not its type,
// which it would refuse itself): the client loop stops at it, and the
// proxy ends the session with its own FATAL 08P01.
var badLength = []byte{'Q', 0, 0, 0, 3}

const (
	lostFatal      = "FATAL 08006"
	adminFatal     = "FATAL 57P01"
	violationFatal = "FATAL 08P01"
)

// errorCodes shortens the errors of a transcript to severity and code.
func errorCodes(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if f := strings.Fields(l); len(f) >= 2 && (f[0] == "FATAL" || f[0] == "ERROR") {
			l = f[0] + " " + f[1]
		}
		out[i] = l
	}
	return out
}

// countFatal counts the FATAL errors in a transcript.
func countFatal(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "FATAL ") {
			n++
		}
	}
	return n
}

// isBarrier reports whether msg is answerForwarded's barrier.
func isBarrier(msg pgproto3.FrontendMessage) bool {
	c, ok := msg.(*pgproto3.Close)
	return ok && c.Name == "pgstripe_proxy_barrier"
}

// orderedLoops runs a harness's two loops as sessionHarness.start does for
// its ordered ends, but tells the test when each loop has returned, so
// that it can order the loops' own ends (upstream's end met before the
// client loop reads a violation, say) as well as the session ends.
type orderedLoops struct {
	h              *sessionHarness
	client, server chan error
	cerr, serr     error
}

func startOrderedLoops(h *sessionHarness) *orderedLoops {
	s := h.s
	s.cr.onBlock = s.flushUpstream
	s.ur.onBlock = s.flushClient
	l := &orderedLoops{h: h, client: make(chan error, 1), server: make(chan error, 1)}
	go func() { l.client <- s.clientLoop() }()
	go func() { l.server <- s.serverLoop() }()
	return l
}

func (l *orderedLoops) waitServer(t *testing.T) {
	t.Helper()
	select {
	case l.serr = <-l.server:
	case <-time.After(10 * time.Second):
		t.Fatal("the server loop did not return")
	}
}

func (l *orderedLoops) waitClient(t *testing.T) {
	t.Helper()
	select {
	case l.cerr = <-l.client:
	case <-time.After(10 * time.Second):
		t.Fatal("the client loop did not return")
	}
}

// end runs the session ends in order, once both loops have returned.
func (l *orderedLoops) end(order endOrder) {
	s := l.h.s
	go func() {
		defer close(l.h.ended)
		if order == endClientFirst {
			s.endFromClient(l.cerr)
			s.endFromServer(l.serr)
		} else {
			s.endFromServer(l.serr)
			s.endFromClient(l.cerr)
		}
	}()
}

// TestUpstreamEndBeforeViolation: upstream ends (a crash, a reset,
// or Postgres's own FATAL 57P01) before the proxy reads the client's
// protocol violation, with a request before it unanswered or with all of
// them answered: Postgres would never have read the bad message, so the
// client gets upstream's FATAL or the proxy's 08006, and no 08P01, in
// either order of the session ends. Before, the client loop's end sent
// the 08P01 whenever it ran first (after an answered batch's error the
// barrier is skipped at once), also after upstream's FATAL: two FATALs.
func TestUpstreamEndBeforeViolation(t *testing.T) {
	for _, pending := range []bool{true, false} {
		for _, mode := range []crashMode{crashEOF, crashReset, crashFatal} {
			for _, order := range []endOrder{endClientFirst, endServerFirst} {
				if pending && mode != crashReset && order == endClientFirst {
					// The barrier write to an upstream that closed
					// cleanly succeeds, and the client loop's end waits
					// for the server loop's (run() has them concurrent).
					continue
				}
				t.Run(fmt.Sprintf("pending=%v/%v/%v", pending, mode, order), func(t *testing.T) {
					h := newSessionHarness(t, noInterceptor(t))
					var up *fakeUpstream
					if pending {
						up = startFakeUpstream(t, h.up, mode, func(m pgproto3.FrontendMessage) bool {
							q, ok := m.(*pgproto3.Query)
							return ok && q.String == "SELECT 1"
						})
					} else {
						up = startFakeUpstream(t, h.up, mode, nil)
					}
					l := startOrderedLoops(h)
					var want []string
					if pending {
						h.send(t, &pgproto3.Query{String: "SELECT 1"})
					} else {
						// A failed batch, answered: upstream skips until
						// Sync, and the barrier is skipped as soon as
						// the client loop queues it.
						h.send(t, &pgproto3.Parse{Name: "pgstripe_proxy_failed", Query: "x"}, &pgproto3.Flush{})
						h.client.SetReadDeadline(time.Now().Add(10 * time.Second))
						msg, err := h.fe.Receive()
						if err != nil {
							t.Fatal(err)
						}
						if got := describeMsg(msg); !strings.HasPrefix(got, "ERROR 42601") {
							t.Fatalf("got %s, want the Parse's error", got)
						}
						up.crash()
					}
					<-up.dead
					l.waitServer(t) // upstream's end met
					if _, err := h.client.Write(badLength); err != nil {
						t.Fatal(err)
					}
					l.waitClient(t)
					l.end(order)
					got := errorCodes(h.readToEnd(t))
					if mode == crashFatal {
						want = append(want, adminFatal, "EOF")
					} else {
						want = append(want, lostFatal, "EOF")
					}
					wantLines(t, got, want...)
				})
			}
		}
	}
}

// TestViolationBeforeUpstreamEnd: the client loop stops at a
// protocol violation, and upstream ends as it reads the barrier that
// follows the requests before it (a crash, a reset, or a shutdown's FATAL
// 57P01), as run() ends the session. When upstream had answered every
// request before the violation (a query, or a failed batch whose barrier
// upstream skips), Postgres would have read the bad message and refused
// it: the client gets the FATAL 08P01, alone. When a request was still
// unanswered, Postgres would never have read it: upstream's FATAL or the
// proxy's 08006, alone. Before, upstream's end won whenever the server
// loop met it before the client loop's end sent the 08P01 (a 08006, or
// the 57P01 passed on), and with a skipped barrier both FATALs could go
// out.
func TestViolationBeforeUpstreamEnd(t *testing.T) {
	for _, c := range []string{"answered", "failed batch", "pending"} {
		for _, mode := range []crashMode{crashEOF, crashReset, crashFatal} {
			t.Run(fmt.Sprintf("%s/%v", c, mode), func(t *testing.T) {
				h := newSessionHarness(t, noInterceptor(t))
				var up *fakeUpstream
				if c == "pending" {
					// Reads the query and ends at the Flush that comes
					// after it: the proxy's, which asks whether the query
					// started a COPY (copyInRunning) once the client loop
					// stopped at the violation.
					up = &fakeUpstream{conn: h.up, mode: mode, dead: make(chan struct{})}
					go func() {
						be := pgproto3.NewBackend(h.up, h.up)
						for {
							msg, err := be.Receive()
							if err != nil {
								t.Errorf("fake upstream: %v", err)
								up.crash()
								return
							}
							if _, ok := msg.(*pgproto3.Flush); ok {
								up.crash()
								return
							}
						}
					}()
				} else {
					up = startFakeUpstream(t, h.up, mode, isBarrier)
				}
				h.start(t, endAsRun)
				var want []string
				var before []byte
				switch c {
				case "answered":
					h.send(t, &pgproto3.Query{String: "SELECT 1"})
					h.client.SetReadDeadline(time.Now().Add(10 * time.Second))
					for _, w := range []string{"CommandComplete SELECT 0", "ReadyForQuery I"} {
						msg, err := h.fe.Receive()
						if err != nil {
							t.Fatal(err)
						}
						if got := describeMsg(msg); got != w {
							t.Fatalf("got %s, want %s", got, w)
						}
					}
					want = []string{violationFatal}
				case "failed batch":
					before = enc(&pgproto3.Parse{Name: "pgstripe_proxy_failed", Query: "x"})
					want = []string{"ERROR 42601", violationFatal}
				case "pending":
					before = enc(&pgproto3.Query{String: "SELECT 1"})
					want = []string{lostFatal}
					if mode == crashFatal {
						want = []string{adminFatal}
					}
				}
				// The bad message in the same write as the requests before
				// it (if any): the client loop meets it before it flushes
				// them, and the barrier carries them upstream.
				if _, err := h.client.Write(cat(before, badLength)); err != nil {
					t.Fatal(err)
				}
				got := errorCodes(h.readToEnd(t))
				<-up.dead
				wantLines(t, got, append(want, "EOF")...)
			})
		}
	}
}

// TestShutdownAfterTerminate: shutdown drains a session whose
// client loop has handled the client's Terminate (or its end of input):
// idle, or at the ReadyForQuery that answers the last request before the
// Terminate. As Postgres after a Terminate, the proxy sends nothing more:
// no FATAL 57P01, only the close. Without a Terminate the 57P01 still
// comes. Before, drain and the ReadyForQuery branch sent it regardless.
func TestShutdownAfterTerminate(t *testing.T) {
	const shutdownFatal = "FATAL 57P01 terminating connection because the pgstripe proxy is shutting down"
	cases := []struct {
		name string
		// busy: the drain comes while a query waits for its reply.
		busy bool
		end  string // "terminate", "half-close" or "" (the session goes on)
		want []string
	}{
		{"idle/terminate", false, "terminate", []string{"EOF"}},
		{"idle/half-close", false, "half-close", []string{"EOF"}},
		{"idle/open", false, "", []string{shutdownFatal, "EOF"}},
		{"busy/terminate", true, "terminate", []string{"CommandComplete SELECT 0", "ReadyForQuery I", "EOF"}},
		{"busy/half-close", true, "half-close", []string{"CommandComplete SELECT 0", "ReadyForQuery I", "EOF"}},
		{"busy/open", true, "", []string{"CommandComplete SELECT 0", "ReadyForQuery I", shutdownFatal, "EOF"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newSessionHarness(t, noInterceptor(t))
			// The fake upstream tells when it has read what the client
			// sent (a Terminate, the end of input, or the query alone),
			// answers the query only when released, and never closes
			// first: the session stays open until the proxy closes it.
			seen, release := make(chan struct{}), make(chan struct{})
			upDone := make(chan struct{})
			go func() {
				defer close(upDone)
				be := pgproto3.NewBackend(h.up, h.up)
				queries := 0
				for c.end != "" || c.busy {
					msg, err := be.Receive()
					if err != nil {
						if c.end == "half-close" {
							close(seen) // the proxy passed the end of input on
						} else {
							t.Errorf("fake upstream: %v", err)
						}
						break
					}
					if _, ok := msg.(*pgproto3.Query); ok {
						queries++
						if c.end == "" {
							close(seen)
							break
						}
						continue
					}
					if _, ok := msg.(*pgproto3.Terminate); ok && c.end == "terminate" {
						close(seen)
						break
					}
					t.Errorf("fake upstream: unexpected %T", msg)
					break
				}
				<-release
				for range queries {
					be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")})
					be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				}
				be.Flush()
				// Hold the connection until the proxy closes it.
				h.up.SetReadDeadline(time.Now().Add(10 * time.Second))
				var b [1]byte
				h.up.Read(b[:])
			}()
			h.start(t, endAsRun)
			var msgs []pgproto3.FrontendMessage
			if c.busy {
				msgs = append(msgs, &pgproto3.Query{String: "SELECT 1"})
			}
			if c.end == "terminate" {
				msgs = append(msgs, &pgproto3.Terminate{})
			}
			if len(msgs) > 0 {
				h.send(t, msgs...)
			}
			if c.end == "half-close" {
				if err := h.client.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			if c.end == "" && !c.busy {
				close(seen) // nothing to wait for: the session is idle
			}
			select {
			case <-seen:
			case <-time.After(10 * time.Second):
				t.Fatal("the fake upstream did not get the client's requests")
			}
			// Busy: only marks the session, which closes at its next
			// ReadyForQuery. Idle: closes it now.
			h.s.drain()
			close(release)
			got := h.readToEnd(t)
			wantLines(t, got, c.want...)
			if n := countFatal(got); n > 1 {
				t.Errorf("%d FATALs", n)
			}
			h.s.close()
			<-upDone
		})
	}
}
