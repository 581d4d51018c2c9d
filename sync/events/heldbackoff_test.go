package events

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
)

// onMessage is a slog handler that calls fn (once) when a record whose
// message contains substr is logged, at any level.
type onMessage struct {
	substr string
	once   *sync.Once
	fn     func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.once.Do(h.fn)
	}
	return nil
}
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }

// A held row's backoff counts the re-fetcher's looks at it, not the
// attempts of the transaction that postpones its entry: when that
// transaction meets a lock (a user holding the queue entry's row past
// lock_timeout) and store.Retry runs it again, the row was still found
// held once. Before, each attempt doubled the backoff.
func TestHeldBackoffCountsLooksNotAttempts(t *testing.T) {
	ctx := context.Background()
	pool, db := pgtest.NewMigratedDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: []byte(`{"id":"cus_held","object":"customer","created":1700000000}`), AsOf: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason) VALUES ('customers', 'cus_held', $1, $2)`, now, reasonLocked); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pgtest.HoldRows(t, db, "customers", "cus_held")
	// Another session holds the queue entry's row, until the first
	// attempt to postpone it has failed on its lock_timeout.
	qtx, err := pgtest.Connect(t, db).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qtx.Exec(ctx, `SELECT 1 FROM stripe_sync.events_refetch WHERE id = 'cus_held' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	conflicted := make(chan struct{})
	log := slog.New(onMessage{substr: "transaction conflicted", once: &sync.Once{}, fn: func() { close(conflicted) }})
	released := make(chan error, 1)
	go func() {
		select {
		case <-conflicted:
			released <- qtx.Rollback(ctx)
		case <-time.After(30 * time.Second):
			released <- qtx.Rollback(ctx)
		}
	}()

	const poll = 100 * time.Millisecond
	p := &poller{cfg: Config{Pool: pool, PollInterval: poll, Logger: log}, log: log}
	p.clock.observe(now)
	k := refetchKey{"customers", "cus_held"}
	due := []refetch{{refetchKey: k, NotBefore: now, Reason: reasonLocked}}
	kept, err := p.skipHeld(ctx, due)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	select {
	case <-conflicted:
	default:
		t.Fatal("the postponing transaction never conflicted: the test did not exercise a retry")
	}
	if len(kept) != 0 {
		t.Fatalf("skipHeld kept %v for a fetch, though its row is held", kept)
	}
	if got := p.locked[k].backoff; got != poll {
		t.Errorf("after one look that found the row held (its transaction run twice), backoff %s, want %s", got, poll)
	}
	// The next look, which finds it held again, doubles it.
	if _, err := p.skipHeld(ctx, due[:1:1]); err != nil {
		t.Fatal(err)
	}
	if got := p.locked[k].backoff; got != 2*poll {
		t.Errorf("after a second look, backoff %s, want %s", got, 2*poll)
	}
}
