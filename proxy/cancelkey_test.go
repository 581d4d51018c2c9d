package proxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

// keylessUpstream forwards TCP to a Postgres and drops the BackendKeyData
// of each session's startup, as poolers that issue no cancel keys do (every
// Postgres sends one). dropped counts the keys it dropped.
type keylessUpstream struct {
	addr    string
	dropped atomic.Int32
}

func startKeylessUpstream(t *testing.T, upstream string) *keylessUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &keylessUpstream{addr: ln.Addr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() {
				<-done
				c.Close()
				u.Close()
			}()
			go func() {
				io.Copy(u, c)
				u.Close()
			}()
			go func() {
				defer c.Close()
				if k.startup(c, u) == nil {
					io.Copy(c, u)
				}
			}()
		}
	}()
	return k
}

// startup passes upstream's startup replies on, up to the first
// ReadyForQuery, without BackendKeyData.
func (k *keylessUpstream) startup(dst io.Writer, src io.Reader) error {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return err
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(src, body); err != nil {
			return err
		}
		if hdr[0] == 'K' {
			k.dropped.Add(1)
			continue
		}
		if _, err := dst.Write(append(hdr[:], body...)); err != nil {
			return err
		}
		if hdr[0] == 'Z' {
			return nil
		}
	}
}

// rawToEnd reads what the client gets until the close: one line per
// message ("FATAL 54000 …" for errors), "EOF" for the close, "hang" when
// nothing comes for wait.
func rawToEnd(rc *rawConn, wait time.Duration) []string {
	var got []string
	for {
		rc.conn.SetReadDeadline(time.Now().Add(wait))
		msg, err := rc.fe.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return append(got, "hang")
			}
			return append(got, "EOF")
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			got = append(got, e.Severity+" "+e.Code)
			continue
		}
		got = append(got, describeMsg(msg))
	}
}

// TestNoCancelKeyOverLimit: an interceptor's query past its limit
// (an endless WITH query, to the write-through) is cancelled upstream; an
// upstream that gave no BackendKeyData can't be, and the proxy read and
// dropped rows until statement_timeout (never, with none), the client
// waiting. Now it closes the upstream connection: the client gets the
// interceptor's reply at once, as FATAL, then the close, and the backend
// ends (its transaction rolled back) instead of running on.
func TestNoCancelKeyOverLimit(t *testing.T) {
	relay := startKeylessUpstream(t, pgtest.Cluster(t).Addr())
	tp := startProxy(t, Config{Upstream: relay.addr, Classify: classifyLimit, Interceptor: limitInterceptor})
	db := pgtest.NewDB(t)
	rc := dialRaw(t, tp.via(t, db))
	if relay.dropped.Load() != 1 {
		t.Fatalf("the relay dropped %d BackendKeyData, want 1", relay.dropped.Load())
	}
	rc.send(&pgproto3.Query{String: "SET statement_timeout = 0"})
	rc.until("ReadyForQuery", 1)
	// 10^9 rows of 100 bytes: minutes of rows, whose start is past the
	// limit within milliseconds.
	rc.send(&pgproto3.Query{String: limitMark + "1048576 */ SELECT repeat('x', 100), generate_series(1, 1000000007)"})
	start := time.Now()
	got := rawToEnd(rc, 20*time.Second)
	t.Logf("%v in %v", got, time.Since(start).Round(time.Millisecond))
	wantLines(t, got, "FATAL 54000", "EOF")

	admin := pgtest.Connect(t, pgtest.Cluster(t).URL("postgres"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(ctxT(t), `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 1000000007)%' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Logf("backend gone after %v", time.Since(start))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backend still runs the query after the session ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
