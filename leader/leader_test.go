package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func setup(t *testing.T) *pgx.ConnConfig {
	url := pgtest.NewDB(t)
	conn := pgtest.Connect(t, url)
	if err := schema.Migrate(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Three electors: exactly one leads at a time; when the leader's process
// goes away, another takes over within a few polls, with a higher epoch, and
// the old epoch is fenced out.
func TestOneLeaderAndFailover(t *testing.T) {
	cfg := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var leading atomic.Int32
	var maxLeading atomic.Int32
	type term struct {
		who   int
		epoch int64
	}
	terms := make(chan term, 10)
	cancels := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		ictx, icancel := context.WithCancel(ctx)
		cancels[i] = icancel
		e := &Elector{ConnConfig: cfg, Info: Info{Instance: string(rune('a' + i)), Host: "h"}, Poll: 100 * time.Millisecond}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.Run(ictx, func(lctx context.Context, epoch int64) error {
				n := leading.Add(1)
				if n > maxLeading.Load() {
					maxLeading.Store(n)
				}
				terms <- term{i, epoch}
				<-lctx.Done()
				leading.Add(-1)
				return nil
			})
		}()
	}
	first := <-terms
	// Another instance starting up migrates while a leader holds its lock.
	mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
	if err := schema.Migrate(mctx, pgtest.Connect(t, cfg.ConnString())); err != nil {
		t.Fatalf("Migrate while a leader is elected: %v", err)
	}
	mcancel()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	cancels[first.who]() // the leader's process "dies": its lock connection closes
	second := <-terms
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("takeover took %v", took)
	}
	if second.who == first.who || second.epoch <= first.epoch {
		t.Fatalf("second term %+v after %+v", second, first)
	}
	if maxLeading.Load() != 1 {
		t.Fatalf("%d instances led at once", maxLeading.Load())
	}

	conn := pgtest.Connect(t, cfg.ConnString())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := Fence(ctx, tx, first.epoch); !errors.Is(err, ErrDeposed) {
		t.Fatalf("Fence(old epoch) = %v, want ErrDeposed", err)
	}
	tx.Rollback(ctx)
	tx, _ = conn.Begin(ctx)
	if err := Fence(ctx, tx, second.epoch); err != nil {
		t.Fatalf("Fence(current epoch) = %v", err)
	}
	tx.Rollback(ctx)

	cur, ok, err := Lookup(ctx, conn)
	if err != nil || !ok || cur.Epoch != second.epoch || !cur.Alive {
		t.Fatalf("Lookup = %+v, %v, %v", cur, ok, err)
	}
	cancel()
	wg.Wait()
}

// A lead that fails at once (a wrong Stripe key) is retried with a growing
// wait, not every Poll.
func TestFailingLeadBacksOff(t *testing.T) {
	cfg := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var terms atomic.Int32
	e := &Elector{ConnConfig: cfg, Info: Info{Instance: "a", Host: "h"}, Poll: 20 * time.Millisecond}
	e.Run(ctx, func(context.Context, int64) error {
		terms.Add(1)
		return errors.New("stripe: invalid API key")
	})
	// Every 20 ms would be dozens of terms; doubling waits (20, 40, … 640
	// ms) allow at most 7 in 1.5 s.
	if n := terms.Load(); n < 2 || n > 8 {
		t.Fatalf("%d terms in 1.5 s", n)
	}
}

// With the database refusing connections, the election's warning is one
// log line carrying pgx's error once, not its "\n\t"-separated attempts.
func TestElectionErrorOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://app@127.0.0.1:%d/app?sslmode=prefer&connect_timeout=5", port))
	if err != nil {
		t.Fatal(err)
	}
	var buf logtest.Buffer
	e := &Elector{ConnConfig: cfg, Info: Info{Instance: "a", Host: "h"}, Poll: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(context.Context, int64) error { t.Error("elected without a database"); return nil })
	}()
	line := buf.WaitLine(t, "leader election", 10*time.Second)
	cancel()
	<-done
	// slog's text handler escapes a newline as \n in the quoted value.
	if strings.Contains(line, `\n`) || strings.Contains(line, `\t`) {
		t.Errorf("multi-line error: %s", line)
	}
	if n := strings.Count(line, "connection refused"); n != 1 {
		t.Errorf("connection refused %d times: %s", n, line)
	}
}
