package events_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// TestOldTombstonesPruned: tombstones past Stripe's event retention (and
// a week) guard against nothing and go; younger ones, and the deletions
// the loop itself records, stay.
func TestOldTombstonesPruned(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.pool.Exec(ctx, `INSERT INTO stripe_sync.tombstones (object, id, deleted_at) VALUES
('customers', 'cus_old', now() - interval '40 days'),
('customers', 'cus_month', now() - interval '31 days')`); err != nil {
		t.Fatal(err)
	}
	cus := v.post(t, "/v1/customers", url.Values{"email": {"gone@x.co"}})
	if _, err := v.mut.Delete(ctx, "/v1/customers/"+cus, nil); err != nil {
		t.Fatal(err)
	}
	v.loop(t, events.Config{PollInterval: 50 * time.Millisecond})
	waitFor(t, "the old tombstone's pruning and the deletion's tombstone", func() bool {
		var old, kept bool
		v.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE id = 'cus_old'),
EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE id = $1)`, cus).Scan(&old, &kept)
		return !old && kept
	})
	var month bool
	if err := v.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE id = 'cus_month')`).Scan(&month); err != nil {
		t.Fatal(err)
	}
	if !month {
		t.Error("a 31-day-old tombstone was pruned; only those 37 days before the events window may go")
	}
}
