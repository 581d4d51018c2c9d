package leader

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/pgtest"
)

// The leader's host drops off the network (no FIN, no RST): its Postgres
// backend, and with it the advisory lock, lingers until TCP keepalive gives
// up (hours by default). Another instance must still take over promptly.
func TestFailoverWhenLeaderIsPartitioned(t *testing.T) {
	cfg := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bh := pgtest.NewPartition(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	viaBH := cfg.Copy()
	viaBH.Host, viaBH.Port = "127.0.0.1", uint16(bh.Addr().Port)

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
	bh.Cut()
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
