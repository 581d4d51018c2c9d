package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeConn reads from a fixed input and swallows writes: enough to drive the
// message handling of one side of a session without a network.
type fakeConn struct {
	r io.Reader
	w *bytes.Buffer // keeps the writes when set
}

func (c *fakeConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error) {
	if c.w != nil {
		c.w.Write(p)
	}
	return len(p), nil
}
func (c *fakeConn) Close() error                       { return nil }
func (c *fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

func fuzzSession(client, upstream []byte) *session {
	p := New(Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	s := &session{p: p, client: &fakeConn{r: bytes.NewReader(client)}, upstream: &fakeConn{r: bytes.NewReader(upstream)},
		done: make(chan struct{}), stmts: make(map[string]*stmtInfo)}
	s.cw.conn = &fakeConn{r: bytes.NewReader(nil)}
	return s
}

func enc(msgs ...interface {
	Encode([]byte) ([]byte, error)
}) []byte {
	var b []byte
	for _, m := range msgs {
		b, _ = m.Encode(b)
	}
	return b
}

var clientSeeds = [][]byte{
	enc(&pgproto3.Query{String: "SELECT 1"}),
	enc(&pgproto3.Parse{Name: "s", Query: "INSERT INTO stripe.x (v) VALUES ($1)", ParameterOIDs: []uint32{25}},
		&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("a")}, ParameterFormatCodes: []int16{0}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}),
	enc(&pgproto3.Parse{Query: "SELECT $1"}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Close{ObjectType: 'P'}, &pgproto3.Flush{}, &pgproto3.Sync{}),
	enc(&pgproto3.Query{String: "COPY t FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}),
	enc(&pgproto3.Query{String: "INSERT INTO stripe.x (v) VALUES ('a')"}),
	{'P', 0, 0, 0, 4},
	{'B', 0, 0, 0, 9, 0, 0, 0, 1, 0},
}

var upstreamSeeds = [][]byte{
	enc(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a"), DataTypeOID: 23}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	enc(&pgproto3.ParameterDescription{ParameterOIDs: []uint32{25}}, &pgproto3.NoData{}, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "22012"}, &pgproto3.ReadyForQuery{TxStatus: 'E'}),
	enc(&pgproto3.NotificationResponse{PID: 1, Channel: "c"}, &pgproto3.ParameterStatus{Name: "a", Value: "b"}, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01"}),
	enc(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}, &pgproto3.CloseComplete{}, &pgproto3.PortalSuspended{}),
	{'t', 0, 0, 0, 6, 0, 9},
}

var startupSeeds = [][]byte{
	enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "database": "d"}}),
	enc(&pgproto3.SSLRequest{}),
	append(enc(&pgproto3.GSSEncRequest{}), enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})...),
	enc(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}),
	{0, 0, 0, 8, 0, 2, 0, 0},
}

// FuzzClientMessages feeds arbitrary client bytes to the client loop: it
// must end with an error or EOF, never panic or hang; what it sends
// upstream is whole messages, each either one of the client's, in the
// client's order, or one of the proxy's own, and nothing of the client's
// from the first message Postgres would not take (a bad type byte, a
// length out of bounds) on; such a message ends the loop with a protocol
// error.
func FuzzClientMessages(f *testing.F) {
	for _, s := range clientSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzSession(data, nil)
		var up bytes.Buffer
		s.upstream.(*fakeConn).w = &up
		s.cr = newMsgReader(s.client)
		s.cr.limit = clientLimit
		s.cr.onBlock = s.flushUpstream
		s.uw.conn = s.upstream
		close(s.done) // interceptions end at once: there is no server loop
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			err = s.clientLoop()
			s.uw.flush()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("client loop hangs on %q", data)
		}
		frames, bad, badType := clientFrames(data)
		// An interception (which ends at once here) or Terminate ends the
		// loop before it reads further.
		early := err == nil || errors.Is(err, net.ErrClosed)
		var pe *protocolError
		if bad && !early && !errors.As(err, &pe) {
			t.Fatalf("%q: a message Postgres would not take, and the loop ended with %v", data, err)
		}
		if badType && !early && !pe.hasBadType {
			// Postgres refuses the type byte first (and the proxy leaves
			// that to Postgres): a bad length does not matter then.
			t.Fatalf("%q: a bad message type refused as %v", data, err)
		}
		sent := up.Bytes()
		for len(sent) > 0 {
			if len(sent) < 5 {
				t.Fatalf("%q: upstream got a cut message %q", data, sent)
			}
			n := int(binary.BigEndian.Uint32(sent[1:]))
			if n < 4 || 1+n > len(sent) || clientLimit(sent[0]) < n {
				t.Fatalf("%q: upstream got a malformed message %q", data, sent)
			}
			m := sent[:1+n]
			sent = sent[1+n:]
			if ownMessage(m) {
				continue
			}
			for len(frames) > 0 && !bytes.Equal(frames[0], m) {
				frames = frames[1:]
			}
			if len(frames) == 0 {
				t.Fatalf("%q: upstream got %q, which is neither the client's next messages nor the proxy's own", data, m)
			}
			frames = frames[1:]
		}
	})
}

// clientFrames splits client bytes into the messages Postgres would read,
// up to the first it would not take (bad reports one, badType one with a
// type byte Postgres refuses); a message cut off by the end is left out.
func clientFrames(data []byte) (frames [][]byte, bad, badType bool) {
	for len(data) > 0 {
		if clientLimit(data[0]) < 0 {
			return frames, true, true
		}
		if len(data) < 5 {
			return frames, false, false
		}
		n := int(int32(binary.BigEndian.Uint32(data[1:])))
		if n < 4 || n > clientLimit(data[0]) {
			return frames, true, false
		}
		if 1+n > len(data) {
			return frames, false, false
		}
		frames = append(frames, data[:1+n])
		data = data[1+n:]
	}
	return frames, false, false
}

// ownMessage reports whether m is one the proxy sends upstream of its own.
func ownMessage(m []byte) bool {
	for _, own := range [][]byte{barrier, forceError, closeUnnamedStmt, closeUnnamedPortal, syncMsg, terminateMsg} {
		for len(own) > 0 {
			n := 1 + int(binary.BigEndian.Uint32(own[1:]))
			if bytes.Equal(m, own[:n]) {
				return true
			}
			own = own[n:]
		}
	}
	return false
}

// FuzzUpstreamMessages feeds arbitrary upstream bytes to the server loop
// after a pipeline of requests has been queued.
func FuzzUpstreamMessages(f *testing.F) {
	for _, s := range upstreamSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzSession(nil, data)
		s.ur = newMsgReader(s.upstream)
		s.ur.onBlock = s.flushClient
		st := &stmtInfo{class: Intercept}
		for _, k := range []entryKind{kParse, kDescribeStmt, kBind, kDescribePortal, kExecute, kClose, kSync, kQuery, kSync} {
			s.q.push1(entry{kind: k, stmt: st})
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serverLoop()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("server loop hangs on %q", data)
		}
	})
}

// FuzzStartup feeds arbitrary bytes to the startup phase.
func FuzzStartup(f *testing.F) {
	for _, s := range startupSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzSession(data, nil)
		s.cw.conn = s.client
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.clientStartup()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("startup hangs on %q", data)
		}
	})
}

// TestWriteFuzzSeeds writes the seeds to testdata/fuzz when
// PROXY_WRITE_FUZZ_SEEDS is set (they are checked in).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PROXY_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set PROXY_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	for name, seeds := range map[string][][]byte{"FuzzClientMessages": clientSeeds, "FuzzUpstreamMessages": upstreamSeeds, "FuzzStartup": startupSeeds} {
		dir := filepath.Join("testdata", "fuzz", name)
		os.MkdirAll(dir, 0o755)
		for i, s := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
