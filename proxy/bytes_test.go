package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

// clientBytesSeeds are whole client byte streams after startup: valid
// conversations and the malformed ones the proxy must treat as Postgres
// does.
var clientBytesSeeds = [][]byte{
	enc(&pgproto3.Query{String: "SELECT 1"}),
	enc(&pgproto3.Query{String: "SELECT v FROM t ORDER BY id; SELECT 1/0"}, &pgproto3.Query{String: "SELECT 2"}),
	enc(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "SELECT 1/0"}, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "ROLLBACK"}),
	enc(&pgproto3.Parse{Name: "s", Query: "SELECT v FROM t WHERE id = $1", ParameterOIDs: []uint32{23}},
		&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}, ParameterFormatCodes: []int16{0}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}),
	enc(&pgproto3.Parse{Query: "SELECT generate_series(1, 5)"}, &pgproto3.Bind{DestinationPortal: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 2},
		&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Flush{}, &pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Sync{}),
	enc(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Parse{Query: "SELECT 2"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}),
	enc(&pgproto3.Query{String: "CREATE TEMP TABLE c (a int); COPY c FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{}, &pgproto3.Query{String: "COPY c TO STDOUT"}),
	enc(&pgproto3.Query{String: "CREATE TEMP TABLE c (a int)"}, &pgproto3.Parse{Query: "COPY c FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.CopyFail{Message: "no"}, &pgproto3.Sync{}),
	enc(&pgproto3.Query{String: "LISTEN c; NOTIFY c, 'x'"}, &pgproto3.Query{String: "SET application_name = 'f'"}),
	enc(&pgproto3.Query{String: "PREPARE q AS SELECT 1; EXECUTE q; DEALLOCATE q"}, &pgproto3.Query{String: "DISCARD ALL"}),
	enc(&pgproto3.FunctionCall{Function: 1, ResultFormatCode: 0}, &pgproto3.Query{String: "SELECT 1"}),
	append(enc(&pgproto3.Query{String: "SELECT 1"}), '!', 0, 0, 0, 4),
	append(enc(&pgproto3.Query{String: "SELECT 1"}), 'Q', 0, 0, 0, 2),
	append(enc(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}), 'Q', 0, 0, 0, 9, 'x'),
	append(enc(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "SELECT pg_sleep(0.2)"}), 'Q', 0, 0, 0, 9, 'x'),
	{'D', 0, 0, 0, 4, 'S', 0, 0, 0, 4},
	{'B', 0, 0, 0, 9, 0, 0, 0, 1, 0, 'S', 0, 0, 0, 4},
	{'Q', 0, 0, 0, 7, 'x', 0, 'y', 'S', 0, 0, 0, 4},
	{'d', 0, 0, 0, 5, 'x', 'c', 0, 0, 0, 4, 'S', 0, 0, 0, 4},
	enc(&pgproto3.Terminate{}, &pgproto3.Query{String: "SELECT 1"}),
}

// FuzzClientBytes sends the same arbitrary bytes, after startup, to
// Postgres directly and through the proxy (with a classifier, so that
// the proxy tracks statements, portals and COPY as it does in
// production), then closes its sending side and reads until the end.
// The replies must be Postgres's own, as the contract promises for
// everything that is not a write to stripe.*: the same messages in the
// same order, except what the proxy documents: for a message whose
// length is out of bounds it says why (its own FATAL 08P01, after
// replies Postgres may leave unflushed when it drops the connection).
//
// The session's role has no privileges beyond reading one table, so
// nothing a run does outlives it (temporary objects die with the
// session) and each run meets the same database.
func FuzzClientBytes(f *testing.F) {
	for _, s := range clientBytesSeeds {
		f.Add(s)
	}
	direct := fuzzRoleDB(f,
		`CREATE TABLE t (id int, v text)`,
		`INSERT INTO t VALUES (1, 'a'), (2, NULL)`,
		`GRANT SELECT ON t TO fuzz`,
	).String()
	tp := startProxy(f, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	proxied := tp.via(f, direct)

	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte("stripe.x")) || bytes.Contains(data, []byte(strings.TrimSpace(forwardMark))) {
			return // the test interceptor answers these itself
		}
		want, wantReset := bytesTranscript(t, direct, data)
		got, gotReset := bytesTranscript(t, proxied, data)
		if n := len(got); n >= 2 && got[n-1] == "EOF" && strings.HasPrefix(got[n-2], "ErrorResponse(FATAL 08P01 invalid message from client") {
			// A length out of bounds: Postgres drops the connection
			// without a word, and may leave replies unflushed.
			got = got[: n-2 : n-2]
			if len(want) > 0 && want[len(want)-1] == "EOF" {
				want = want[:len(want)-1]
			}
			if len(want) > len(got) || !equalStrings(want, got[:len(want)]) {
				t.Fatalf("%q:\nproxied (less its FATAL): %v\ndirect:                   %v", data, got, want)
			}
			return
		}
		if wantReset || gotReset {
			// A reset may drop replies already on their way: compare what
			// both sides got.
			n := min(len(want), len(got))
			want, got = want[:n], got[:n]
		}
		if !equalStrings(want, got) {
			t.Fatalf("%q:\nproxied: %v\ndirect:  %v", data, got, want)
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// bytesTranscript connects to dbURL, writes data, closes its sending side
// and returns every reply up to the end ("EOF"), and whether the
// connection was reset.
func bytesTranscript(t *testing.T, dbURL string, data []byte) ([]string, bool) {
	t.Helper()
	conn := dialRaw(t, dbURL).conn
	go func() {
		conn.Write(data)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	fe := pgproto3.NewFrontend(conn, io.Discard)
	var out []string
	for {
		msg, err := fe.Receive()
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return append(out, "EOF"), false
		case isReset(err):
			return out, true
		default:
			t.Fatalf("%q: after %v: %v", data, out, err)
		}
		out = append(out, fullMsgName(msg))
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}

// fullMsgName is msgName with the whole content of the messages whose
// content the proxy could get wrong, less what legitimately differs (the
// backend PID of a notification).
func fullMsgName(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.NotificationResponse:
		return fmt.Sprintf("NotificationResponse(%s,%s)", m.Channel, m.Payload)
	case *pgproto3.RowDescription:
		var fs []string
		for _, fd := range m.Fields {
			fs = append(fs, fmt.Sprintf("%s:%d:%d", fd.Name, fd.DataTypeOID, fd.Format))
		}
		return "RowDescription(" + strings.Join(fs, ",") + ")"
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("ParameterDescription(%v)", m.ParameterOIDs)
	case *pgproto3.CopyData:
		return fmt.Sprintf("CopyData(%q)", m.Data)
	case *pgproto3.NoticeResponse:
		return "NoticeResponse(" + m.Severity + " " + m.Code + " " + m.Message + ")"
	case *pgproto3.ParameterStatus:
		return "ParameterStatus(" + m.Name + "=" + m.Value + ")"
	case *pgproto3.FunctionCallResponse:
		return fmt.Sprintf("FunctionCallResponse(%q)", m.Result)
	}
	return msgName(msg, true)
}

// TestRepliesBeforeCutMessage: a client that sends requests, then
// the start of a message, and closes its sending side gets Postgres's
// replies to the requests (Postgres answers them, then meets the end of
// input and closes without a word, or in copy-in mode fails the COPY).
// The proxy took the cut-off message for a vanished client and closed at
// once: the statements ran, the replies were lost. Found by
// FuzzClientBytes.
func TestRepliesBeforeCutMessage(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	db := pgtest.NewDB(t)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"queries", append(enc(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "SELECT pg_sleep(0.2)"}), 'Q', 0, 0, 0, 9, 'x')},
		{"cut in the length", append(enc(&pgproto3.Query{String: "SELECT 1"}), 'Q', 0, 0)},
		{"synced pipeline", append(enc(&pgproto3.Parse{Query: "SELECT 2"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}), 'P', 0, 0, 0, 40, 'x')},
		// In copy-in mode Postgres refuses a type byte other than COPY's
		// at once (ERROR, then FATAL), before it reads on.
		{"copy-in, a Query's type byte", append(enc(&pgproto3.Query{String: "CREATE TEMP TABLE c (a int); COPY c FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n")}), 'Q')},
		{"copy-in, cut CopyData", append(enc(&pgproto3.Query{String: "CREATE TEMP TABLE c (a int); COPY c FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n")}), 'd', 0, 0, 0, 9, '2')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := bytesTranscript(t, db, tc.data)
			got, _ := bytesTranscript(t, tp.via(t, db), tc.data)
			if !equalStrings(got, want) || len(want) < 2 {
				t.Errorf("proxied: %v\ndirect:  %v", got, want)
			}
		})
	}
}

// FuzzStartupBytes sends the same arbitrary bytes from the very
// start of a connection (SSLRequest, GSSENCRequest, StartupMessage,
// cancel requests, authentication, then messages) to Postgres directly
// and through a proxy without TLS, closes its sending side and reads
// until the end. The replies must be Postgres's, less what differs by
// design: the cancel key (BackendKeyData), and the text and fields of the
// errors the proxy composes itself (only severity and SQLSTATE are
// compared for a FATAL, which the proxy may say in its own words).
func FuzzStartupBytes(f *testing.F) {
	u := fuzzRoleDB(f)
	dbname := strings.TrimPrefix(u.Path, "/")
	query := enc(&pgproto3.Query{String: "SELECT 1"})
	start := rawStartup(3, 0, "user", "fuzz", "database", dbname)
	for _, s := range [][]byte{
		append(append([]byte(nil), start...), query...),
		append(append(enc(&pgproto3.SSLRequest{}), start...), query...),
		append(enc(&pgproto3.SSLRequest{}), 0),
		append(enc(&pgproto3.SSLRequest{}), enc(&pgproto3.SSLRequest{})...),
		rawStartup(3, 2, "user", "fuzz", "database", dbname, "_pq_.x", "1"),
		rawStartup(3, 0, "user", "fuzz", "database", dbname, "options", "-c statement_timeout=1s", "application_name", "x"),
		rawStartup(3, 0, "user", "fuzz"),
		rawStartup(3, 0, "database", dbname),
		rawStartup(2, 0, "user", "fuzz"),
		rawStartup(1234, 5678),
		enc(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}),
		{0, 0, 0, 8, 4, 210, 22, 47},
		{0, 0, 0, 3},
		append(append([]byte(nil), start...), 'p', 0, 0, 0, 5, 0),
	} {
		f.Add(s)
	}
	tp := startProxy(f, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	addr := pgtest.Cluster(f).Addr()
	gssenc := enc(&pgproto3.GSSEncRequest{})[4:]
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte("stripe.x")) || bytes.Contains(data, []byte(strings.TrimSpace(forwardMark))) {
			return // the test interceptor answers these itself
		}
		if bytes.Contains(data, gssenc) {
			return // the proxy declines GSS encryption ('N'), a Postgres with GSSAPI accepts it ('G')
		}
		want, wantReset := rawBytesTranscript(t, addr, data)
		got, gotReset := rawBytesTranscript(t, tp.addr, data)
		if wantReset || gotReset {
			n := min(len(want), len(got))
			want, got = want[:n], got[:n]
		}
		if n := len(got); n >= 2 && got[n-2] == "E(FATAL 08P01)" && len(want) == n-1 && equalStrings(want[:n-2], got[:n-2]) {
			// A length out of bounds after startup: Postgres drops the
			// connection without a word, the proxy says why.
			return
		}
		if !equalStrings(want, got) {
			t.Fatalf("%q:\nproxied: %v\ndirect:  %v", data, got, want)
		}
	})
}

// rawBytesTranscript writes data on a new connection to addr, closes its
// sending side, and reads everything until the end: single-byte answers
// to SSLRequest and GSSENCRequest, then messages.
func rawBytesTranscript(t *testing.T, addr string, data []byte) ([]string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	all, err := io.ReadAll(c)
	reset := err != nil && isReset(err)
	if err != nil && !reset {
		t.Fatalf("%q: read: %v", data, err)
	}
	var out []string
	for len(all) > 0 {
		typ := all[0]
		var n int
		if len(all) >= 5 {
			n = int(int32(binary.BigEndian.Uint32(all[1:])))
		}
		if (typ == 'N' || typ == 'S') && (n < 4 || n > 1<<20 || 1+n > len(all)) {
			out = append(out, "answer "+string(typ))
			all = all[1:]
			continue
		}
		if typ == 'E' && bytes.HasPrefix(all[1:], []byte("FATAL:  unsupported frontend protocol")) {
			// Postgres refuses a protocol before 3.0 in that protocol's
			// format (a bare string), and names its own newest minor
			// version, which the proxy can't know before it connects.
			out = append(out, "E(FATAL 0A000)")
			break
		}
		if n < 4 || 1+n > len(all) {
			out = append(out, fmt.Sprintf("cut %q", all))
			break
		}
		body := all[5 : 1+n]
		all = all[1+n:]
		switch typ {
		case 'K':
			out = append(out, "BackendKeyData")
		case 'E', 'N':
			var e pgproto3.ErrorResponse
			if e.Decode(body) != nil {
				out = append(out, fmt.Sprintf("%c %q", typ, body))
				continue
			}
			if e.Severity == "FATAL" {
				out = append(out, fmt.Sprintf("%c(%s %s)", typ, e.Severity, e.Code))
			} else {
				out = append(out, fmt.Sprintf("%c(%s %s %s)", typ, e.Severity, e.Code, e.Message))
			}
		default:
			out = append(out, fmt.Sprintf("%c %q", typ, body))
		}
	}
	if !reset {
		out = append(out, "EOF")
	}
	return out, reset
}

// TestAnswerBeforeUnencryptedRefusal: plaintext sent right behind
// an SSLRequest or GSSENCRequest is refused, but Postgres first sends the
// one-byte answer the client waits for ('N', or 'S' when it has TLS),
// then its FATAL. The proxy sent the FATAL alone, which a client reads as
// the answer byte 'E'. Found by FuzzStartupBytes.
func TestAnswerBeforeUnencryptedRefusal(t *testing.T) {
	plain := startProxy(t, Config{})
	withTLS := startProxy(t, Config{TLSConfig: selfSignedTLS(t)})
	start := rawStartup(3, 0, "user", "postgres")
	fatal := "E(FATAL 08P01)"
	for _, tc := range []struct {
		name string
		addr string
		req  []byte
		want []string
	}{
		{"SSLRequest, no TLS", plain.addr, enc(&pgproto3.SSLRequest{}), []string{"answer N", fatal, "EOF"}},
		{"SSLRequest, TLS", withTLS.addr, enc(&pgproto3.SSLRequest{}), []string{"answer S", fatal, "EOF"}},
		{"GSSENCRequest", plain.addr, enc(&pgproto3.GSSEncRequest{}), []string{"answer N", fatal, "EOF"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := rawBytesTranscript(t, tc.addr, append(append([]byte(nil), tc.req...), start...))
			if !equalStrings(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	// As Postgres does (it has no TLS here).
	if got, _ := rawBytesTranscript(t, pgtest.Cluster(t).Addr(), append(enc(&pgproto3.SSLRequest{}), start...)); !equalStrings(got, []string{"answer N", fatal, "EOF"}) {
		t.Errorf("Postgres: %v", got)
	}
}

// TestBadTypeBeforeBadLength: Postgres reads a message's type byte
// before its length, so a bad type with a bad length gets its FATAL
// "invalid frontend message type". The proxy checked the length first
// when the five header bytes had arrived together, and answered its own
// FATAL about the length instead. Found by FuzzClientBytes.
func TestBadTypeBeforeBadLength(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	db := pgtest.NewDB(t)
	for _, bad := range [][]byte{{0xff, 0xff, 0xff, 0, 9}, {'!', 0, 0, 0, 0}, {0, 0x7f, 0xff, 0xff, 0xff}} {
		data := append(enc(&pgproto3.Query{String: "SELECT 1"}), bad...)
		want, _ := bytesTranscript(t, db, data)
		got, _ := bytesTranscript(t, tp.via(t, db), data)
		if !equalStrings(got, want) {
			t.Errorf("%q:\nproxied: %v\ndirect:  %v", bad, got, want)
		}
	}
}

// TestBadLengthDuringCopyIn: a message with a bad length right
// behind a COPY FROM STDIN, before upstream said the COPY started. The
// proxy, to answer the requests before the bad message, sent its barrier
// (a Close), which failed the COPY with "unexpected message type 0x43
// during COPY from stdin", a message the client never sent. Now it waits
// for upstream's answer to the statement and, in copy-in mode, gives
// upstream the bytes as the client sent them: Postgres fails the COPY as
// it would directly. Found by FuzzClientBytes.
func TestBadLengthDuringCopyIn(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	db := pgtest.NewDB(t)
	create := enc(&pgproto3.Query{String: "CREATE TEMP TABLE c (a int)"})
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"extended", append(append(create, enc(&pgproto3.Parse{Query: "COPY c FROM STDIN"}, &pgproto3.Bind{}, &pgproto3.Execute{})...), 'S', 0, 0, 0, 1)},
		{"simple", append(append(create, enc(&pgproto3.Query{String: "COPY c FROM STDIN"})...), 'd', 0, 0, 0, 2)},
		{"after data", append(append(create, enc(&pgproto3.Query{String: "COPY c FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n")})...), 'd', 0x7f, 0, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := bytesTranscript(t, db, tc.data)
			got, _ := bytesTranscript(t, tp.via(t, db), tc.data)
			if !equalStrings(got, want) {
				t.Errorf("proxied: %v\ndirect:  %v", got, want)
			}
		})
	}
}

// TestStartupLastByte: Postgres reads a startup packet's parameters
// as if a NUL followed it and requires only that the last name start at
// the packet's last byte, so a packet ending in a one-byte name instead
// of its terminator is accepted. The proxy refused it ("expected
// terminator as last byte"). Found by FuzzStartupBytes.
func TestStartupLastByte(t *testing.T) {
	tp := startProxy(t, Config{})
	db := pgtest.NewDB(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	query := enc(&pgproto3.Query{String: "SELECT 1"})
	for _, tail := range []string{".", "ab", "x\x00", "\x00"} {
		b := rawStartup(3, 0, "user", "postgres", "database", dbname)
		b = append(b[:len(b)-1], tail...) // the tail in place of the terminator
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		data := append(b, query...)
		want, _ := rawBytesTranscript(t, pgtest.Cluster(t).Addr(), data)
		got, _ := rawBytesTranscript(t, tp.addr, data)
		if !equalStrings(got, want) {
			t.Errorf("packet ending in %q:\nproxied: %v\ndirect:  %v", tail, got, want)
		}
	}
}

// fuzzRoleDB makes a throwaway database and the role fuzz, which may
// create nothing there (and gets what extra grants, run after), so that
// every fuzz run meets the same database; it returns the database's URL
// for that role.
func fuzzRoleDB(f *testing.F, extra ...string) *url.URL {
	f.Helper()
	db := pgtest.NewDB(f)
	admin := pgtest.Connect(f, db)
	ctx := ctxT(f)
	for _, sql := range append([]string{
		`DO $$BEGIN CREATE ROLE fuzz LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$`,
		`REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
		`ALTER ROLE fuzz SET statement_timeout = '2s'`,
	}, extra...) {
		if _, err := admin.Exec(ctx, sql); err != nil {
			f.Fatalf("%s: %v", sql, err)
		}
	}
	u, err := url.Parse(db)
	if err != nil {
		f.Fatal(err)
	}
	u.User = url.User("fuzz")
	return u
}
