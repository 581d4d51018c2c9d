// Command sockmap is an experiment, not part of pgstripe: the fastest
// forwarder a proxy could be on this kernel, to measure how close to direct
// any proxy can come (docs/BENCHMARKS.md, "What was tried").
//
// It relays a connection's startup in user space until the first
// ReadyForQuery (trust authentication only), then puts both sockets into a
// BPF sockhash whose sk_skb verdict program redirects every byte received
// on one socket to the other: from then on no user-space code runs in the
// data path. -mode user instead forwards with two io.Copy goroutines, the
// plainest user-space forwarder. Needs root (CAP_BPF, CAP_NET_ADMIN) and a
// kernel with CONFIG_BPF_STREAM_PARSER.
//
// It is its own module so that pgstripe does not depend on cilium/ebpf.
//
//	go run . -listen 127.0.0.1:16000 -upstream 127.0.0.1:5432
//	pgbench -S -c1 -T5 -h 127.0.0.1 -p 16000 …   # against -p 5432 for direct
package main

import (
	"encoding/binary"
	"flag"
	"io"
	"log"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:16000", "address to accept clients on")
	upstream := flag.String("upstream", "127.0.0.1:5432", "Postgres (trust authentication)")
	mode := flag.String("mode", "bpf", "bpf: in-kernel redirect; user: io.Copy both ways")
	flag.Parse()
	var peers *ebpf.Map
	if *mode == "bpf" {
		var err error
		if peers, err = redirector(); err != nil {
			log.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			if err := serve(c.(*net.TCPConn), *upstream, peers); err != nil {
				log.Print(err)
			}
		}()
	}
}

// redirector loads the verdict program: it looks the receiving socket up
// by its (local port, remote port) in the sockhash, whose value is the
// peer socket, and redirects the skb to that socket's egress.
func redirector() (*ebpf.Map, error) {
	peers, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.SockHash, KeySize: 4, ValueSize: 8, MaxEntries: 4096})
	if err != nil {
		return nil, err
	}
	const (
		remotePort = 132 // offsetof(struct __sk_buff, remote_port): network order, in the upper 16 bits
		localPort  = 136 // offsetof(struct __sk_buff, local_port): host order
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SkSKB, License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R1, localPort, asm.Word),
			asm.LoadMem(asm.R3, asm.R1, remotePort, asm.Word),
			asm.Or.Reg(asm.R2, asm.R3),
			asm.StoreMem(asm.RFP, -4, asm.R2, asm.Word),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.LoadMapPtr(asm.R2, peers.FD()),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -4),
			asm.Mov.Imm(asm.R4, 0), // egress of the peer
			asm.FnSkRedirectHash.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, err
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{Target: peers.FD(), Program: prog, Attach: ebpf.AttachSkSKBVerdict})
	return peers, err
}

// key is the verdict program's lookup key for socket c.
func key(c *net.TCPConn) uint32 {
	l, r := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	var be [2]byte
	binary.BigEndian.PutUint16(be[:], uint16(r.Port))
	return uint32(l.Port) | uint32(binary.NativeEndian.Uint16(be[:]))<<16
}

func serve(c *net.TCPConn, upstream string, peers *ebpf.Map) error {
	defer c.Close()
	uc, err := net.Dial("tcp", upstream)
	if err != nil {
		return err
	}
	u := uc.(*net.TCPConn)
	defer u.Close()
	// The startup message, after an SSLRequest answered 'N'.
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		msg := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c, msg[4:]); err != nil {
			return err
		}
		if len(msg) == 8 && binary.BigEndian.Uint32(msg[4:]) == 80877103 {
			c.Write([]byte("N"))
			continue
		}
		if _, err := u.Write(msg); err != nil {
			return err
		}
		break
	}
	// Server messages up to the first ReadyForQuery.
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(u, hdr[:]); err != nil {
			return err
		}
		msg := make([]byte, 1+binary.BigEndian.Uint32(hdr[1:]))
		copy(msg, hdr[:])
		if _, err := io.ReadFull(u, msg[5:]); err != nil {
			return err
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if hdr[0] == 'Z' {
			break
		}
	}
	if peers == nil {
		go func() { io.Copy(u, c); u.CloseWrite() }()
		_, err := io.Copy(c, u)
		return err
	}
	for _, p := range [][2]*net.TCPConn{{c, u}, {u, c}} {
		f, err := p[1].File() // a dup: the map holds its own reference
		if err != nil {
			return err
		}
		err = peers.Update(key(p[0]), uint64(f.Fd()), ebpf.UpdateAny)
		f.Close()
		if err != nil {
			return err
		}
	}
	// Nothing reaches user space any more; wait for the client to go.
	_, err = c.Read(make([]byte, 1))
	if err == io.EOF {
		err = nil
	}
	peers.Delete(key(c))
	peers.Delete(key(u))
	return err
}
