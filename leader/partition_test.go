package leader

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blackhole forwards TCP to upstream until cut, then keeps every socket
// open but moves no more bytes: a network partition as the two ends see it
// (no FIN, no RST).
type blackhole struct {
	ln       net.Listener
	cut      atomic.Bool
	released chan struct{}
	once     sync.Once
}

func newBlackhole(t *testing.T, upstream string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, released: make(chan struct{})}
	t.Cleanup(func() { b.once.Do(func() { close(b.released) }); ln.Close() })
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
			go b.pipe(c, u)
			go b.pipe(u, c)
		}
	}()
	return b
}

func (b *blackhole) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if b.cut.Load() {
			<-b.released
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

// The leader's host drops off the network (no FIN, no RST): its Postgres
// backend, and with it the advisory lock, lingers until TCP keepalive gives
// up (hours by default). Another instance must still take over promptly.
func TestFailoverWhenLeaderIsPartitioned(t *testing.T) {
	cfg := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bh := newBlackhole(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	viaBH := cfg.Copy()
	viaBH.Host, viaBH.Port = "127.0.0.1", uint16(bh.ln.Addr().(*net.TCPAddr).Port)

	led := make(chan string, 4)
	run := func(name string, c *Elector) {
		go c.Run(ctx, func(lctx context.Context, epoch int64) error {
			led <- name
			<-lctx.Done()
			return nil
		})
	}
	run("a", &Elector{ConnConfig: viaBH, Info: Info{Instance: "a", Host: "h"}, Poll: 100 * time.Millisecond})
	if who := <-led; who != "a" {
		t.Fatalf("%s led first", who)
	}
	run("b", &Elector{ConnConfig: cfg, Info: Info{Instance: "b", Host: "h"}, Poll: 100 * time.Millisecond})
	time.Sleep(500 * time.Millisecond)
	bh.cut.Store(true)
	start := time.Now()
	select {
	case who := <-led:
		if who != "b" {
			t.Fatalf("%s led after the partition", who)
		}
		t.Logf("b took over after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("nobody took over within 30s of the leader's partition")
	}
}
