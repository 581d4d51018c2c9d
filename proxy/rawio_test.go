package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// socketPair returns the two ends of a loopback connection of the network
// ("tcp" or "unix"), the first wrapped in a sockConn.
func socketPair(t *testing.T, network string) (*sockConn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	w := newSockConn(c)
	if w == nil {
		t.Fatalf("newSockConn(%T) did not wrap", c)
	}
	t.Cleanup(func() { w.Close(); peer.Close() })
	return w, peer
}

// sockConn must behave as the net.Conn it wraps: every byte in order
// through partial writes (a write larger than the socket buffers), EOF,
// deadlines, and Close of a blocked Read.
func TestSockConn(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			c, peer := socketPair(t, network)

			big := make([]byte, 2<<20)
			rand.Read(big)
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
				got <- b
			}()
			if n, err := c.Write(big); n != len(big) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if b := <-got; !bytes.Equal(b, big) {
				t.Fatalf("peer read %d bytes, not what was written", len(b))
			}

			go peer.Write(big)
			buf := make([]byte, 64<<10)
			var back []byte
			for len(back) < len(big) {
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("Read after %d bytes: %v", len(back), err)
				}
				back = append(back, buf[:n]...)
			}
			if !bytes.Equal(back, big) {
				t.Fatal("read bytes differ from the peer's")
			}

			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			var ne net.Error
			if _, err := c.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("Read past the deadline: %v, want a timeout", err)
			}
			c.SetReadDeadline(time.Time{})

			done := make(chan error, 1)
			go func() { _, err := c.Read(buf); done <- err }()
			time.Sleep(20 * time.Millisecond)
			c.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Read when closed: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not end a blocked Read")
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write when closed: %v", err)
			}
		})
	}
}

func TestSockConnEOF(t *testing.T) {
	c, peer := socketPair(t, "tcp")
	peer.Write([]byte("last"))
	peer.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "last" {
		t.Fatalf("ReadAll = %q, %v; want the bytes, then EOF", b, err)
	}
}

// The point of sockConn is the hot path: no allocation per call.
func TestSockConnAllocs(t *testing.T) {
	c, peer := socketPair(t, "tcp")
	msg := []byte("Q\x00\x00\x00\x0dSELECT 1\x00")
	buf := make([]byte, 64)
	pb := make([]byte, 64)
	if n := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		n, _ := peer.Read(pb)
		peer.Write(pb[:n])
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%.1f allocations per write+read, want 0", n)
	}
}

func TestWithRawIOLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if withRawIO(a) != a || newSockConn(a) != nil {
		t.Error("a pipe (no socket) was wrapped")
	}
}
