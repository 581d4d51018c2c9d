package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The re-fetcher stores an object that was not stored yet (what an event
// rendered in another API version queues: the object is fetched instead of
// taken from the event) while the poll applies that object's deletion. The
// poll's Delete finds no row to remove (the re-fetcher's insert is not
// committed) and records the tombstone; the re-fetcher then commits its
// row. A row of a deleted object stays for ever: later upserts skip
// tombstoned ids and no other delete comes. A lock on the re-fetch queue
// entry holds the re-fetcher between its upsert and its commit, the window
// in which the poll's commit lands.
func TestRefetchInsertRacesDelete(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	id := v.post(t, "/v1/coupons", url.Values{"percent_off": {"10"}, "duration": {"once"}})
	// Past the loop's first re-read windows (LookBack 1 s): its creation
	// event is not replayed.
	time.Sleep(2100 * time.Millisecond)
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.events_refetch (object, id, not_before, reason)
VALUES ('coupons', $1, now() - interval '1 hour', 'version')`, id); err != nil {
		t.Fatal(err)
	}
	hold, err := v.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `SELECT 1 FROM stripe_sync.events_refetch WHERE object = 'coupons' AND id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	stop := v.loop(t, events.Config{LookBack: time.Second, SweepEvery: time.Second})
	waitFor(t, "the re-fetcher to store the coupon", func() bool {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return n > 0
	})
	if _, err := v.mut.Delete(ctx, "/v1/coupons/"+id, nil); err != nil {
		t.Fatal(err)
	}
	tombstoned := func() bool {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.tombstones WHERE object = 'coupons' AND id = $1`, id).Scan(&n)
		return n == 1
	}
	// Give the poll time to apply the deletion (it polls every 100 ms)
	// while the re-fetch is held.
	for end := time.Now().Add(2 * time.Second); !tombstoned() && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the re-fetch to commit and the deletion to be applied", func() bool {
		var n int
		v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.events_refetch WHERE object = 'coupons'`).Scan(&n)
		return n == 0 && tombstoned()
	})
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := v.rows(t, "coupons"); n != 0 {
		t.Errorf("coupons has %d rows; %s was deleted", n, id)
	}
}
