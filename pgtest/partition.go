package pgtest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Partition forwards TCP to a Postgres until Cut, then moves no more bytes
// and closes nothing: a network partition as both ends see it (no FIN, no
// RST), the case that only a deadline or keepalive ends. Connect to Addr.
type Partition struct {
	ln       net.Listener
	cut      atomic.Bool
	released chan struct{}
	once     sync.Once
}

// NewPartition listens on a free local port and forwards each connection
// to upstream (host:port). The test's end releases every held socket.
func NewPartition(t testing.TB, upstream string) *Partition {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Partition{ln: ln, released: make(chan struct{})}
	t.Cleanup(p.Release)
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
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	return p
}

// Addr is the address to connect to instead of upstream.
func (p *Partition) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// Cut stops all traffic, on open and new connections alike.
func (p *Partition) Cut() { p.cut.Store(true) }

// Release closes the held sockets and the listener (a pool whose sockets
// hang can then be closed).
func (p *Partition) Release() {
	p.once.Do(func() { close(p.released) })
	p.ln.Close()
}

func (p *Partition) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.cut.Load() {
			<-p.released
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
