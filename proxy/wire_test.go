package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestMsgWriterErrorSticks: a write that failed (here a timeout,
// after which the connection works again) must fail every later write and
// flush. Several callers skip the write's error and check the flush; the
// failed write had dropped its buffer (or sent a large message straight
// through), so the flush found nothing to send and reported success, and
// the next message went out with the failed ones missing before it.
func TestMsgWriterErrorSticks(t *testing.T) {
	small := enc(&pgproto3.Query{String: "SELECT 1"})
	large := enc(&pgproto3.Query{String: string(bytes.Repeat([]byte("x"), flushThreshold))})
	for _, tc := range []struct {
		name string
		fail func(mw *msgWriter) // queues messages until one write fails
	}{
		{"large message", func(mw *msgWriter) { mw.write(large) }},
		{"buffer reaching the threshold", func(mw *msgWriter) {
			for range flushThreshold/len(small) + 1 {
				mw.write(small)
			}
		}},
		{"encoded message reaching the threshold", func(mw *msgWriter) {
			for range flushThreshold/len(small) + 1 {
				mw.send(&pgproto3.Query{String: "SELECT 1"})
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, remote := net.Pipe()
			defer local.Close()
			defer remote.Close()
			mw := &msgWriter{conn: local}
			// Nobody reads yet: the write times out.
			local.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
			tc.fail(mw)
			local.SetWriteDeadline(time.Time{})
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(remote)
				got <- b
			}()
			if err := mw.flush(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("flush after a failed write: %v, want the write's timeout", err)
			}
			if err := mw.write(small); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write after a failed write: %v", err)
			}
			if err := mw.send(&pgproto3.Sync{}); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("send after a failed write: %v", err)
			}
			if err := mw.flush(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("second flush: %v", err)
			}
			local.Close()
			if b := <-got; len(b) != 0 {
				t.Fatalf("%d bytes sent after the failed write", len(b))
			}
			// A new connection (TLS upgrade, next host) starts clean.
			next, peer := net.Pipe()
			defer next.Close()
			defer peer.Close()
			mw.setConn(next)
			go io.Copy(io.Discard, peer)
			if err := mw.write(small); err != nil {
				t.Fatal(err)
			}
			if err := mw.flush(); err != nil {
				t.Fatalf("flush on the new connection: %v", err)
			}
		})
	}
}
