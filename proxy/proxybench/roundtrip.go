package proxybench

import (
	"context"
	"encoding/binary"
	"io"
	"net"
)

// serveRoundTrip is an experiment, not a proxy: the smallest forwarder in
// the "one goroutine per session does the whole round trip" design (read
// the client's batch up to Query or Sync, write it upstream, read the
// replies up to ReadyForQuery, write them to the client), with no startup
// handling beyond relaying, no queue, no async traffic. It bounds what that
// design could gain over the proxy's two loops (Options.CompareRoundTrip).
func serveRoundTrip(ctx context.Context, ln net.Listener, upstream string) {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				return
			}
			defer u.Close()
			// Startup and authentication: the first packet has no type byte.
			if err := relayStartup(c, u); err != nil {
				return
			}
			cb, ub := make([]byte, 32<<10), make([]byte, 32<<10)
			for {
				n, err := readUntil(c, cb, func(t byte) bool { return t == 'Q' || t == 'S' || t == 'X' })
				if err != nil {
					return
				}
				if _, err := u.Write(cb[:n]); err != nil {
					return
				}
				if cb[0] == 'X' {
					return
				}
				m, err := readUntil(u, ub, func(t byte) bool { return t == 'Z' })
				if err != nil {
					return
				}
				if _, err := c.Write(ub[:m]); err != nil {
					return
				}
			}
		}()
	}
}

// relayStartup forwards the startup packet, then upstream's replies and the
// client's authentication messages (trust: none) until ReadyForQuery.
func relayStartup(c, u net.Conn) error {
	var pkt []byte
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		if code := binary.BigEndian.Uint32(hdr[4:]); code == 80877103 || code == 80877104 {
			// SSLRequest or GSSENCRequest: no.
			if _, err := c.Write([]byte{'N'}); err != nil {
				return err
			}
			continue
		}
		pkt = make([]byte, binary.BigEndian.Uint32(hdr[:]))
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(c, pkt[8:]); err != nil {
			return err
		}
		break
	}
	if _, err := u.Write(pkt); err != nil {
		return err
	}
	buf := make([]byte, 32<<10)
	n, err := readUntil(u, buf, func(t byte) bool { return t == 'Z' })
	if err != nil {
		return err
	}
	_, err = c.Write(buf[:n])
	return err
}

// readUntil reads whole messages into buf until one of type last is
// complete (and nothing is left over: pgbench -S never pipelines past it).
func readUntil(r io.Reader, buf []byte, last func(byte) bool) (int, error) {
	w, off := 0, 0
	for {
		for w-off >= 5 {
			n := 1 + int(binary.BigEndian.Uint32(buf[off+1:]))
			if w-off < n {
				break
			}
			if last(buf[off]) && off+n == w {
				return w, nil
			}
			off += n
		}
		if w == len(buf) {
			return 0, io.ErrShortBuffer
		}
		k, err := r.Read(buf[w:])
		w += k
		if err != nil {
			return 0, err
		}
	}
}
