package proxy

import (
	"bytes"
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
}

func (c *fakeConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fakeConn) Close() error                       { return nil }
func (c *fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

func fuzzSession(client, upstream []byte) *session {
	p := New(Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	s := &session{p: p, client: &fakeConn{bytes.NewReader(client)}, upstream: &fakeConn{bytes.NewReader(upstream)},
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
// must end with an error or EOF, never panic or hang.
func FuzzClientMessages(f *testing.F) {
	for _, s := range clientSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzSession(data, nil)
		s.cr = newMsgReader(s.client)
		s.cr.limit = clientLimit
		s.cr.onBlock = s.flushUpstream
		s.uw.conn = s.upstream
		close(s.done) // interceptions end at once: there is no server loop
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.clientLoop()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("client loop hangs on %q", data)
		}
	})
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
