package proxy

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// hotPathCases are pgbench -S round trips in its three protocol modes: the
// client's batch and upstream's replies.
var hotPathCases = []struct {
	name             string
	client, upstream []byte
}{
	{"simple",
		enc(&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;"}),
		enc(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("0")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})},
	{"extended",
		enc(&pgproto3.Parse{Query: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("4242")}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}},
			&pgproto3.DataRow{Values: [][]byte{[]byte("0")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})},
	{"prepared",
		enc(&pgproto3.Bind{PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("4242")}}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(&pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{[]byte("0")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
			&pgproto3.ReadyForQuery{TxStatus: 'I'})},
	// A statement Postgres refuses (a serialization failure a client
	// retries in a loop): the reply is read for its severity (isFatal).
	{"error",
		enc(&pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 1/0;"}),
		enc(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "22012", Message: "division by zero",
			File: "int.c", Line: 841, Routine: "int4div"}, &pgproto3.ReadyForQuery{TxStatus: 'I'})},
}

// hotPathSession is a session whose two sides read from resettable inputs,
// so that one round trip can be replayed through the real loops.
func hotPathSession(classify bool) (*session, *bytes.Reader, *bytes.Reader) {
	cfg := Config{}
	if classify {
		cfg.Classify, cfg.Interceptor = classifyTest, &testInterceptor{}
	}
	cin, uin := bytes.NewReader(nil), bytes.NewReader(nil)
	s := &session{p: New(cfg), client: &fakeConn{r: cin}, upstream: &fakeConn{r: uin},
		done: make(chan struct{}), stmts: make(map[string]*stmtInfo)}
	s.cw.conn, s.uw.conn = s.client, s.upstream
	s.cr, s.ur = newMsgReader(s.client), newMsgReader(s.upstream)
	s.cr.onBlock, s.ur.onBlock = s.flushUpstream, s.flushClient
	return s, cin, uin
}

// roundTrip replays one request batch and its replies; both loops end at
// the end of their input.
func roundTrip(tb testing.TB, s *session, cin, uin *bytes.Reader, client, upstream []byte) {
	cin.Reset(client)
	if err := s.clientLoop(); err == nil {
		tb.Fatal("client loop did not stop at the end of its input")
	}
	uin.Reset(upstream)
	if err := s.serverLoop(); err == nil {
		tb.Fatal("server loop did not stop at the end of its input")
	}
	if n := s.q.len(); n != 0 {
		tb.Fatalf("%d replies still expected after the round trip", n)
	}
}

// TestHotPathAllocs: forwarding a pgbench -S round trip allocates nothing
// in the proxy, with or without statement classification.
func TestHotPathAllocs(t *testing.T) {
	for _, c := range hotPathCases {
		for _, classify := range []bool{false, true} {
			s, cin, uin := hotPathSession(classify)
			roundTrip(t, s, cin, uin, c.client, c.upstream) // warm the classification cache and buffers
			if n := testing.AllocsPerRun(100, func() { roundTrip(t, s, cin, uin, c.client, c.upstream) }); n != 0 {
				t.Errorf("%s (classify %v): %.1f allocations per round trip, want 0", c.name, classify, n)
			}
		}
	}
}

// BenchmarkHotPath is the proxy's own CPU per round trip, without the
// system calls (go test -bench HotPath -benchmem ./proxy/).
func BenchmarkHotPath(b *testing.B) {
	for _, c := range hotPathCases {
		for _, classify := range []bool{false, true} {
			name := c.name
			if classify {
				name += "/classify"
			}
			b.Run(name, func(b *testing.B) {
				s, cin, uin := hotPathSession(classify)
				b.ReportAllocs()
				for b.Loop() {
					roundTrip(b, s, cin, uin, c.client, c.upstream)
				}
			})
		}
	}
}
