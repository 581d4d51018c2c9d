package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

// TestCopyDataOutsideCopy: Postgres accepts and ignores CopyData,
// CopyDone and CopyFail outside COPY (a client that pipelined its COPY
// data after a COPY that failed to start). The Syncs before them were
// answered, so the proxy must not take them for Syncs that copy-in mode
// swallowed: its reply queue then falls behind upstream, and an
// intercepted statement that follows is skipped (no reply: the client
// hangs).
func TestCopyDataOutsideCopy(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	for i, tc := range []struct {
		name  string
		batch []pgproto3.FrontendMessage
		want  []string
	}{
		{"after a query", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.CopyData{Data: []byte("stray\n")},
		}, []string{"ParseComplete", "BindComplete", "DataRow(1)", "CommandComplete(SELECT 1)", "ReadyForQuery(I)"}},
		// The COPY fails at Parse: Postgres never enters copy-in mode,
		// answers the Sync and ignores the data the client pipelined.
		{"after a COPY that failed to start", []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "COPY no_such_table FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{},
		}, []string{"ParseComplete", "BindComplete", "ErrorResponse(42P01 relation \"no_such_table\" does not exist)", "ReadyForQuery(I)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []struct{ name, url string }{{"direct", direct}, {"proxy", url}} {
				rc := dialRaw(t, target.url)
				rc.send(tc.batch...)
				sameTranscript(t, target.name+": batch", rc.until("ReadyForQuery", 1), tc.want)
				rc.send(&pgproto3.Query{String: "SELECT 2"})
				sameTranscript(t, target.name+": next query", rc.until("ReadyForQuery", 1),
					[]string{"RowDescription", "DataRow(2)", "CommandComplete(SELECT 1)", "ReadyForQuery(I)"})
			}
			// Through the proxy, the same followed by an intercepted write,
			// before reading any reply.
			rc := dialRaw(t, url)
			interceptedWrite(t, rc, ti, fmt.Sprint("w", i), func(write pgproto3.FrontendMessage) {
				rc.send(append(tc.batch, write)...)
				sameTranscript(t, "batch", rc.until("ReadyForQuery", 1), tc.want)
			})
		})
	}
}

// interceptedWrite has send put an intercepted INSERT of v on the wire
// (after whatever it sends first, whose replies it reads) and checks that
// the write gets its turn: its reply, one interceptor call.
func interceptedWrite(t *testing.T, rc *rawConn, ti *testInterceptor, v string, send func(write pgproto3.FrontendMessage)) {
	t.Helper()
	before := ti.count()
	send(&pgproto3.Query{String: "INSERT INTO stripe.x (v) VALUES ('" + v + "') RETURNING v"})
	sameTranscript(t, "intercepted write", rc.until("ReadyForQuery", 1),
		[]string{"RowDescription", "DataRow(x_" + strings.ToUpper(v) + "," + v + ")", "CommandComplete(INSERT 0 1)", "ReadyForQuery(I)"})
	if ti.count() != before+1 {
		t.Errorf("interceptor calls %d → %d", before, ti.count())
	}
}

// TestCopyInSyncsPipelined: the Syncs a client sends in copy-in
// mode get no reply, whether they reach the proxy before upstream's
// CopyInResponse (a fully pipelined COPY) or after it; the Sync after
// CopyDone does. An intercepted write pipelined after it gets its turn.
func TestCopyInSyncsPipelined(t *testing.T) {
	tp, ti, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	admin := pgtest.Connect(t, direct)
	if _, err := admin.Exec(ctxT(t), `CREATE TABLE t (id int)`); err != nil {
		t.Fatal(err)
	}
	copyExec := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "COPY t FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}}
	copyRest := []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.Sync{}, &pgproto3.CopyDone{}, &pgproto3.Sync{}}
	want := []string{"ParseComplete", "BindComplete", "CopyInResponse", "CommandComplete(COPY 1)", "ReadyForQuery(I)"}
	for i, waitCopyIn := range []bool{false, true} {
		for _, target := range []struct{ name, url string }{{"direct", direct}, {"proxy", url}} {
			rc := dialRaw(t, target.url)
			var got []string
			if waitCopyIn {
				rc.send(append(copyExec, &pgproto3.Flush{})...)
				got = rc.until("CopyInResponse", 1)
				rc.send(append([]pgproto3.FrontendMessage{&pgproto3.Sync{}}, copyRest...)...)
			} else {
				rc.send(append(append(copyExec, &pgproto3.Sync{}), copyRest...)...)
			}
			got = append(got, rc.until("ReadyForQuery", 1)...)
			sameTranscript(t, fmt.Sprintf("%s, wait for CopyInResponse %v", target.name, waitCopyIn), got, want)
			if target.name == "direct" {
				continue
			}
			interceptedWrite(t, rc, ti, fmt.Sprint("c", i), func(write pgproto3.FrontendMessage) { rc.send(write) })
		}
	}
}

// TestCopyInSyncsFillQueue: a COPY whose client sends more Syncs
// than maxInFlight before its data (each ignored in copy-in mode) fills the
// reply queue; the proxy stops reading the client until room is made. The
// CopyInResponse drops those Syncs from the queue and must make that room,
// or the data behind them is never read and client and server wait on
// each other.
func TestCopyInSyncsFillQueue(t *testing.T) {
	tp, _, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	admin := pgtest.Connect(t, direct)
	if _, err := admin.Exec(ctxT(t), `CREATE TABLE tf (id int)`); err != nil {
		t.Fatal(err)
	}
	// The sleep holds upstream's answers back until the proxy has read
	// (and queued) every Sync.
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT pg_sleep(0.5)"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "COPY tf FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}}
	for range maxInFlight + 10 {
		msgs = append(msgs, &pgproto3.Sync{})
	}
	msgs = append(msgs, &pgproto3.CopyData{Data: []byte("7\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	want := []string{"ParseComplete", "BindComplete", "DataRow()", "CommandComplete(SELECT 1)",
		"ParseComplete", "BindComplete", "CopyInResponse", "CommandComplete(COPY 1)", "ReadyForQuery(I)"}
	for _, target := range []struct{ name, url string }{{"direct", direct}, {"proxy", url}} {
		rc := dialRaw(t, target.url)
		// Sent from another goroutine (the proxy stops reading until
		// replies are read), which must not call t.Fatal.
		sent := make(chan error, 1)
		go func() {
			for _, m := range msgs {
				rc.fe.Send(m)
			}
			sent <- rc.fe.Flush()
		}()
		sameTranscript(t, target.name, rc.until("ReadyForQuery", 1), want)
		if err := <-sent; err != nil {
			t.Fatalf("%s: send: %v", target.name, err)
		}
	}
}

// TestLongPipelineMemory: a client that streams a long pipeline
// (one Sync at the very end) and reads the replies as it goes keeps only
// a little in flight, and Postgres serves it in constant memory. The
// proxy's reply queue must not keep an entry for every request of the
// pipeline, answered ones included: it grew by ~100 bytes a request (a
// GB-sized pipelined load would take GBs), and kept that after the
// pipeline ended.
func TestLongPipelineMemory(t *testing.T) {
	tp, _, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	unit := enc(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{})
	// BindComplete, DataRow(1), CommandComplete(SELECT 1).
	reply := enc(&pgproto3.BindComplete{}, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	units := (64 << 10) / len(unit)
	block := bytes.Repeat(unit, units)
	blockReply := len(reply) * units
	// ~550k requests, 13 MB. The queue that kept every answered entry
	// grew to 35 MB by the end (83 MB at twice the blocks, which took
	// twice the time): over twice the bound below.
	const blocks = 200
	for _, target := range []struct{ name, url string }{{"direct", direct}, {"proxy", url}} {
		rc := dialRaw(t, target.url)
		rc.send(&pgproto3.Parse{Name: "s", Query: "SELECT 1"}, &pgproto3.Flush{})
		rc.until("ParseComplete", 1)
		base := heapInUse()
		peak := base
		rc.conn.SetDeadline(time.Now().Add(2 * time.Minute))
		buf := make([]byte, blockReply)
		if _, err := rc.conn.Write(block); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < blocks; i++ {
			// The next block goes out before this one's replies are read:
			// the queue never runs empty, and holds two blocks at most.
			next := block
			if i == blocks-1 {
				next = enc(&pgproto3.Sync{})
			}
			if _, err := rc.conn.Write(next); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(rc.conn, buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:len(reply)], reply) {
				t.Fatalf("%s: block %d: reply %q", target.name, i, buf[:len(reply)])
			}
			if i%50 == 49 {
				peak = max(peak, heapInUse())
			}
		}
		sameTranscript(t, target.name+": end", rc.until("ReadyForQuery", 1), []string{"ReadyForQuery(I)"})
		after := heapInUse()
		t.Logf("%s: heap %d MB, peak %d MB, after %d MB", target.name, base>>20, peak>>20, after>>20)
		if peak-base > 16<<20 || after-base > 8<<20 {
			t.Errorf("%s: heap grew from %d MB to %d MB during the pipeline, %d MB after", target.name, base>>20, peak>>20, after>>20)
		}
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestQueueReusesAnsweredRoom: the queue's memory follows what is in
// flight, not how many requests went through it since it last ran empty.
func TestQueueReusesAnsweredRoom(t *testing.T) {
	var q replyQueue
	q.push1(entry{kind: kSync})
	for range 1_000_000 {
		q.push1(entry{kind: kExecute})
		q.pop()
	}
	if c := cap(q.entries); c > 64 {
		t.Fatalf("queue capacity %d with 1 entry in flight", c)
	}
	for range 100_000 {
		q.push1(entry{kind: kExecute})
	}
	for q.len() > 0 {
		q.pop()
	}
	if c := cap(q.entries); c > maxIdleEntries {
		t.Fatalf("empty queue keeps capacity %d", c)
	}
}

// rawStartup builds a StartupMessage for any protocol version, its
// parameters given as name, value, ….
func rawStartup(major, minor uint16, params ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = binary.BigEndian.AppendUint16(b, major)
	b = binary.BigEndian.AppendUint16(b, minor)
	for _, p := range params {
		b = append(append(b, p...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// rawTranscript writes each step to a fresh connection to addr and
// reads what comes back until ReadyForQuery, an error, or EOF.
func rawTranscript(t *testing.T, addr string, steps ...[]byte) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fe := pgproto3.NewFrontend(c, c)
	var out []string
	for _, step := range steps {
		c.Write(step)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for done := false; !done; {
			msg, err := fe.Receive()
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return append(out, "no answer")
				}
				return append(out, "EOF")
			}
			name := strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
			switch m := msg.(type) {
			case *pgproto3.ErrorResponse:
				name += "(" + m.Severity + " " + m.Code + ")"
				done = true
			case *pgproto3.NegotiateProtocolVersion:
				name += fmt.Sprintf("(%d.%d %v)", m.NewestMinorProtocol>>16, m.NewestMinorProtocol&0xffff, m.UnrecognizedOptions)
			case *pgproto3.ReadyForQuery:
				done = true
			case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData:
				continue
			}
			out = append(out, name)
		}
	}
	return out
}

// TestStartupVersions: Postgres answers a startup packet of a newer
// 3.x minor version, or with _pq_ options it lacks, with
// NegotiateProtocolVersion and goes on; the proxy refused any version but
// 3.0 and 3.2 as "invalid startup packet layout", and a packet without
// parameters likewise, where Postgres asks for the user name.
func TestStartupVersions(t *testing.T) {
	tp := startProxy(t, Config{})
	db := pgtest.NewDB(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	query := encode(&pgproto3.Query{String: "SELECT 1"})
	for _, tc := range []struct {
		name    string
		startup []byte
		want    string
	}{
		{"3.2 with a _pq_ option", rawStartup(3, 2, "user", "postgres", "database", dbname, "_pq_.pgstripe_test", "1"), "NegotiateProtocolVersion"},
		{"3.99", rawStartup(3, 99, "user", "postgres", "database", dbname), "NegotiateProtocolVersion"},
		{"no parameters", rawStartup(3, 0), "ErrorResponse(FATAL 28000)"},
		{"no terminator", rawStartup(3, 0, "user", "postgres", "database")[:20], "ErrorResponse(FATAL 08P01)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "no terminator" {
				binary.BigEndian.PutUint32(tc.startup, 20)
			}
			direct := rawTranscript(t, pgtest.Cluster(t).Addr(), tc.startup, query)
			proxied := rawTranscript(t, tp.addr, tc.startup, query)
			sameTranscript(t, "proxied vs direct", proxied, direct)
			if !strings.HasPrefix(direct[0], tc.want) {
				t.Errorf("direct: %v, want %s first", direct, tc.want)
			}
		})
	}
}

// TestMessageLimits: Postgres's message length limits count the
// length field itself (10000 for small messages, MaxAllocSize-1 for
// large ones), and it refuses a bad message type as soon as it reads the
// type byte. The proxy let lengths up to 4 bytes over the limit through
// (Postgres then dropped the connection and the client got a misleading
// 08006 "lost connection"), waited for a whole 1 GiB Query that
// Postgres refuses at once, and waited for a length after a bad type byte
// (also during authentication): it must answer at once, with 08P01.
func TestMessageLimits(t *testing.T) {
	tp := startProxy(t, Config{})
	db := pgtest.NewDB(t)
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"Sync of 10001", append(binary.BigEndian.AppendUint32([]byte{'S'}, 10001), make([]byte, 9997)...)},
		{"Query of 1 GiB", binary.BigEndian.AppendUint32([]byte{'Q'}, 1<<30)},
		{"bad type byte", []byte{'!'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []struct{ name, url string }{{"direct", db}, {"proxy", tp.via(t, db)}} {
				rc := dialRaw(t, target.url)
				rc.conn.Write(tc.msg)
				rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				msg, err := rc.fe.Receive()
				switch e, _ := msg.(*pgproto3.ErrorResponse); {
				case errors.Is(err, os.ErrDeadlineExceeded):
					t.Errorf("%s: no answer", target.name)
				case target.name == "direct" && err != nil:
					// Postgres drops an oversized message without a word.
				case e == nil || e.Code != "08P01":
					t.Errorf("%s: got %#v, %v; want an 08P01 error", target.name, msg, err)
				}
			}
		})
	}
	// The proxy still serves.
	conn := pgtest.Connect(t, tp.via(t, db))
	if _, err := conn.Exec(ctxT(t), `SELECT 1`); err != nil {
		t.Fatal(err)
	}

	// During authentication only a password message may come.
	auth := startProxy(t, Config{Upstream: stuckUpstream(t, encode(&pgproto3.AuthenticationCleartextPassword{}))})
	c, err := net.Dial("tcp", auth.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(startupMsg(map[string]string{"user": "postgres"}))
	fe := pgproto3.NewFrontend(c, c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if msg, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := msg.(*pgproto3.AuthenticationCleartextPassword); !ok {
		t.Fatalf("got %#v", msg)
	}
	c.Write([]byte{'Q'})
	if e := readError(t, c); e == nil || e.Code != "08P01" {
		t.Fatalf("bad message type during authentication: got %+v, want 08P01", e)
	}
}

// TestPipelineBackpressure: a client that pipelines requests and
// reads no replies is stopped by Postgres once the socket buffers are
// full. Through the proxy it must be stopped about as soon, not after
// the proxy has queued an entry for every request its two extra socket
// buffers let through (~1M requests, 40-50 MB of heap for one session).
func TestPipelineBackpressure(t *testing.T) {
	tp, _, url := setupIntercept(t)
	direct := strings.Replace(url, tp.addr, pgtest.Cluster(t).Addr(), 1)
	block := bytes.Repeat(enc(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}), (1<<20)/29)
	for _, target := range []struct{ name, url string }{{"direct", direct}, {"proxy", url}} {
		rc := dialRaw(t, target.url)
		rc.send(&pgproto3.Parse{Name: "s", Query: "SELECT 1"}, &pgproto3.Flush{})
		rc.until("ParseComplete", 1)
		base := heapInUse()
		sent := 0
		for start := time.Now(); time.Since(start) < 30*time.Second; {
			rc.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			n, err := rc.conn.Write(block)
			sent += n
			if err != nil {
				break
			}
		}
		grew := heapInUse() - base
		t.Logf("%s: %d MB accepted before the client was blocked; heap grew %d MB", target.name, sent>>20, grew>>20)
		if grew > 16<<20 {
			t.Errorf("%s: heap grew %d MB for one client that does not read", target.name, grew>>20)
		}
		rc.conn.Close()
	}
	tp.waitSessions(t, 0)
	conn := pgtest.Connect(t, url)
	if _, err := conn.Exec(ctxT(t), `SELECT 1`); err != nil {
		t.Fatal(err)
	}
}

// TestOversizedMessages: after startup, a length out of bounds
// for its message type (negative, under 4, over Postgres's limits: 10000
// for a small message, 1 GiB for one that carries data) gets FATAL 08P01
// and the close at once, without the proxy allocating the claimed size;
// Postgres refuses the same messages (at least by closing).
func TestOversizedMessages(t *testing.T) {
	tp := startProxy(t, Config{})
	db := pgtest.NewDB(t)
	for _, tc := range []struct {
		typ byte
		n   int32
	}{
		{'Q', -1}, {'Q', -1 << 31}, {'Q', 3}, {'Q', 1<<30 - 1}, {'Q', 1 << 30}, {'Q', 1<<31 - 1},
		{'d', 1 << 30}, {'P', 1 << 30}, {'B', 1<<31 - 1},
		{'S', 10001}, {'H', 1 << 30}, {'X', -4}, {'E', 10001},
	} {
		t.Run(fmt.Sprintf("%c %d", tc.typ, tc.n), func(t *testing.T) {
			msg := binary.BigEndian.AppendUint32([]byte{tc.typ}, uint32(tc.n))
			for _, target := range []struct{ name, url string }{{"direct", db}, {"proxy", tp.via(t, db)}} {
				rc := dialRaw(t, target.url)
				base := heapInUse()
				rc.conn.Write(msg)
				rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				reply, err := io.ReadAll(rc.conn)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s: no answer, still open", target.name)
				}
				if target.name == "direct" {
					continue // Postgres refuses some with 08P01, others by closing
				}
				if grew := heapInUse() - base; grew > 1<<20 {
					t.Errorf("heap grew %d KB", grew>>10)
				}
				if !strings.Contains(string(reply), "08P01") || reply[0] != 'E' {
					t.Errorf("reply %q, want FATAL 08P01", reply)
				}
			}
		})
	}
	tp.waitSessions(t, 0)
}
