package proxy

import (
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// sockConn reads and writes a plain TCP or Unix socket with raw system
// calls inside the netpoller's RawConn hooks.
//
// Why: a read or write through net.Conn enters the runtime's syscall state,
// and when the whole process was idle (every round trip of a lone busy
// session ends that way) that entry wakes the runtime's monitor thread
// (sysmon), which sleeps 20 µs and goes back to its deep sleep: three more
// system calls and two context switches per round trip, on a machine whose
// cores pgbench and Postgres need. The socket is non-blocking, so the call
// can't block and the syscall state buys nothing; waiting for readiness
// still goes through the netpoller, so deadlines and Close work as before.
//
// Each direction keeps its call's state here, under its own lock, rather
// than in a closure that would be allocated per call.
type sockConn struct {
	net.Conn
	rc syscall.RawConn

	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool
}

// withRawIO wraps plain sockets; anything else (TLS) is returned as it is.
// Under the race detector it wraps nothing: the detector orders a socket
// write before the peer's read through the syscall package's Read and
// Write, which raw system calls bypass, so it would report the data a
// message carries between goroutines as a race.
func withRawIO(c net.Conn) net.Conn {
	if raceEnabled {
		return c
	}
	if s := newSockConn(c); s != nil {
		return s
	}
	return c
}

// newSockConn wraps a plain TCP or Unix socket; nil for anything else.
func newSockConn(c net.Conn) *sockConn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	s := &sockConn{Conn: c, rc: rc}
	s.readFn, s.writeFn = s.doRead, s.doWrite
	return s
}

func (c *sockConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err // already a *net.OpError
	case c.rerr != 0:
		return 0, c.opError("read", c.rerr)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

func (c *sockConn) doRead(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the netpoller, then call again
		case 0:
			c.rn = int(r)
		default:
			c.rerr = e
		}
		return true
	}
}

func (c *sockConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case c.werr != 0:
		return n, c.opError("write", c.werr)
	}
	return n, nil
}

func (c *sockConn) doWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

func (c *sockConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
