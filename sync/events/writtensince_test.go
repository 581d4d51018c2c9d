package events

import (
	"context"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/store"
)

// An unresolved held entry (Stripe refuses its re-fetch) whose row is
// gone, tombstoned after the held state's time (a sweep whose bound
// follows it), is settled: the guard would never write that state, and
// Stripe's answer can't change that. Before, writtenSince never settled a
// held entry, which was then fetched again every unresolvedRetry for good.
// A tombstone older than the held state (a recreated id, say), or a row
// still there, settles nothing.
func TestWrittenSinceHeldSwept(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewMigratedDB(t)
	asOf := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	held := &store.Held{Object: &store.Object{Raw: []byte(`{"id":"cus_x","object":"customer","created":1700000000}`), AsOf: asOf}, AsOf: asOf}
	for _, tc := range []struct {
		name      string
		row       bool
		tombstone time.Time // zero: none
		want      bool
	}{
		{name: "swept after the held state", tombstone: asOf.Add(time.Minute), want: true},
		{name: "tombstoned before the held state", tombstone: asOf.Add(-time.Minute), want: false},
		{name: "tombstoned in the held state's second", tombstone: asOf, want: false},
		{name: "no tombstone", want: false},
		{name: "row still stored", row: true, tombstone: asOf.Add(time.Minute), want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if tc.row {
				if _, err := store.Upsert(ctx, tx, "customers", []store.Object{{Raw: []byte(`{"id":"cus_x","object":"customer","created":1700000000}`), AsOf: asOf.Add(-time.Hour)}}); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.tombstone.IsZero() {
				if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.tombstones (object, id, deleted_at) VALUES ('customers', 'cus_x', $1)
ON CONFLICT (object, id) DO UPDATE SET deleted_at = excluded.deleted_at`, tc.tombstone); err != nil {
					t.Fatal(err)
				}
			}
			f := fetched{refetch: refetch{refetchKey: refetchKey{Table: "customers", ID: "cus_x"}, Reason: reasonUnresolved,
				queuedAt: asOf.Add(time.Second), held: held}}
			got, err := writtenSince(ctx, tx, f)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("writtenSince = %v, want %v", got, tc.want)
			}
		})
	}
}
