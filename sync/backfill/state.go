package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
)

// Migrations of package backfill take versions 500–599.
func init() {
	schema.Register(schema.Migration{Version: 500, Name: "backfill state: slices, per-object progress, events cursor", SQL: `
CREATE TABLE stripe_sync.cursor (
    name text PRIMARY KEY,
    event_id text,
    event_created timestamptz,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE stripe_sync.cursor IS 'pgstripe: where the events loop resumes; row events is written by the backfill before it starts (newest event then)';

CREATE TABLE stripe_sync.backfill_objects (
    object text PRIMARY KEY,
    planned_at timestamptz NOT NULL DEFAULT now(),
    upper_bound bigint NOT NULL,
    requests bigint NOT NULL DEFAULT 0,
    rows bigint NOT NULL DEFAULT 0,
    completed_at timestamptz
);
COMMENT ON TABLE stripe_sync.backfill_objects IS 'pgstripe: one row per object type whose backfill was planned; completed_at set when all its slices are done';

CREATE TABLE stripe_sync.backfill_slices (
    id bigserial PRIMARY KEY,
    object text NOT NULL,
    gte bigint,
    lt bigint,
    after text,
    parent text,
    est_rows double precision,
    done boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX backfill_slices_parent_idx ON stripe_sync.backfill_slices (object, parent) WHERE parent IS NOT NULL;
CREATE INDEX backfill_slices_pending_idx ON stripe_sync.backfill_slices (object, id) WHERE NOT done;
COMMENT ON TABLE stripe_sync.backfill_slices IS 'pgstripe: what remains to fetch. A created range [gte, lt) after cursor "after", or the list of one parent object; rewritten in the same transaction as the rows fetched from it';
`})
	schema.Register(schema.Migration{Version: 501, Name: "backfill state: slices of test clocks", SQL: `
ALTER TABLE stripe_sync.backfill_slices ADD COLUMN test_clock text, ADD COLUMN clocks boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN stripe_sync.backfill_slices.test_clock IS 'pgstripe: the range lists the objects of this test clock (test_clock=), which the plain list leaves out';
COMMENT ON COLUMN stripe_sync.backfill_slices.clocks IS 'pgstripe: the row lists the test clocks (after: cursor) and queues a range per clock';
`})
	schema.Register(schema.Migration{Version: 502, Name: "backfill state: slices of inactive objects", SQL: `
ALTER TABLE stripe_sync.backfill_slices ADD COLUMN inactive boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN stripe_sync.backfill_slices.inactive IS 'pgstripe: the range lists inactive objects (active=false), which the plain list leaves out (prices)';
`})
	// The backfill leaves objects whose rows another transaction holds to
	// the events loop's re-fetch queue (held.go). The queue is sync/events'
	// (migrations 400 and 410, both idempotent, as this one): a program
	// with the backfill but without the events loop still gets it.
	schema.Register(schema.Migration{Version: 503, Name: "backfill state: the events loop's re-fetch queue, for rows held by other transactions", SQL: `
CREATE TABLE IF NOT EXISTS stripe_sync.events_refetch (
    object text NOT NULL,
    id text NOT NULL,
    not_before timestamptz NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (object, id)
);
ALTER TABLE stripe_sync.events_refetch ADD COLUMN IF NOT EXISTS queued_at timestamptz NOT NULL DEFAULT clock_timestamp();
`})
	// The state a page or the sweep left out of a held row (store.Held),
	// as sync/events' migration 420 adds it (idempotent).
	schema.Register(schema.Migration{Version: 504, Name: "backfill state: re-fetch queue entries carry the state left out of a held row", SQL: `
ALTER TABLE stripe_sync.events_refetch ADD COLUMN IF NOT EXISTS held jsonb, ADD COLUMN IF NOT EXISTS held_as_of timestamptz;
`})
}

// slice is one row of stripe_sync.backfill_slices: a unit of work.
type slice struct {
	id     int64
	object string
	rng    Range  // created range; zero for parent lists
	ranged bool   // rng is meaningful
	parent string // parent object id, for per-parent lists
	after  string // cursor for parent lists (ranges keep theirs in rng.After)
	est    float64
	clock  string // the range lists this test clock's objects (test_clock=)
	clocks bool   // lists the test clocks (after: cursor), queueing a range per clock
	// inactive: the range lists inactive objects (active=false), which
	// the plain list leaves out.
	inactive bool
}

func loadPending(ctx context.Context, q pgx.Tx, object string) ([]*slice, error) {
	rows, err := q.Query(ctx, `SELECT id, gte, lt, coalesce(after, ''), coalesce(parent, ''), coalesce(est_rows, 0), coalesce(test_clock, ''), clocks, inactive
FROM stripe_sync.backfill_slices WHERE object = $1 AND NOT done AND parent IS NULL ORDER BY id`, object)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*slice
	for rows.Next() {
		s := &slice{object: object}
		var gte, lt *int64
		var after string
		if err := rows.Scan(&s.id, &gte, &lt, &after, &s.parent, &s.est, &s.clock, &s.clocks, &s.inactive); err != nil {
			return nil, err
		}
		if gte != nil && lt != nil {
			s.ranged = true
			s.rng = Range{Gte: *gte, Lt: *lt, After: after}
		} else {
			s.after = after
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// insertSlices stores new slices and fills in their ids.
func insertSlices(ctx context.Context, tx pgx.Tx, ss []*slice) error {
	for _, s := range ss {
		var gte, lt *int64
		var after *string
		if s.ranged {
			gte, lt = &s.rng.Gte, &s.rng.Lt
			if s.rng.After != "" {
				after = &s.rng.After
			}
		} else if s.after != "" {
			after = &s.after
		}
		var clock *string
		if s.clock != "" {
			clock = &s.clock
		}
		if err := tx.QueryRow(ctx, `INSERT INTO stripe_sync.backfill_slices (object, gte, lt, after, est_rows, test_clock, clocks, inactive)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`, s.object, gte, lt, after, s.est, clock, s.clocks, s.inactive).Scan(&s.id); err != nil {
			return fmt.Errorf("backfill: insert slice: %w", err)
		}
	}
	return nil
}

// insertParents queues one parent list per id for each child object (ids
// seen twice are queued once). Rows go in sorted order: concurrent page
// transactions may queue the same parents (a customer's subscriptions on
// two slices), and each waits for the other's uncommitted row in the
// unique index, so unsorted orders could deadlock.
func insertParents(ctx context.Context, tx pgx.Tx, objects []string, parents []string) error {
	if len(parents) == 0 || len(objects) == 0 {
		return nil
	}
	objects = slices.Clone(objects)
	slices.Sort(objects)
	parents = slices.Clone(parents)
	slices.Sort(parents)
	parents = slices.Compact(parents)
	_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.backfill_slices (object, parent)
SELECT o, p FROM unnest($1::text[]) o, unnest($2::text[]) p ORDER BY o, p
ON CONFLICT (object, parent) WHERE parent IS NOT NULL DO NOTHING`, objects, parents)
	if err != nil {
		return fmt.Errorf("backfill: queue parents: %w", err)
	}
	return nil
}

func logEvent(ctx context.Context, tx pgx.Tx, kind string, detail any) error {
	b, err := json.Marshal(detail)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ($1, $2)`, kind, b)
	return err
}

func setPhase(ctx context.Context, tx pgx.Tx, object, phase, lastError string, started, completed *time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.objects (object, phase, last_error, backfill_started_at, backfill_completed_at, updated_at)
VALUES ($1, $2, NULLIF($3, ''), $4, $5, now())
ON CONFLICT (object) DO UPDATE SET phase = EXCLUDED.phase, last_error = EXCLUDED.last_error,
    backfill_started_at = coalesce(EXCLUDED.backfill_started_at, stripe_sync.objects.backfill_started_at),
    backfill_completed_at = CASE WHEN EXCLUDED.phase = 'backfilling' THEN NULL
        ELSE coalesce(EXCLUDED.backfill_completed_at, stripe_sync.objects.backfill_completed_at) END,
    updated_at = now()`, object, phase, lastError, started, completed)
	if err != nil {
		return fmt.Errorf("backfill: set phase of %s: %w", object, err)
	}
	return nil
}

// Cursor is where the events loop resumes (stripe_sync.cursor, row
// "events"), recorded when the backfill was first planned: Created is
// Stripe's time then (a response Date; stored in column event_created),
// EventID the newest event then, empty when the account had none.
type Cursor struct {
	EventID string
	Created time.Time
}

// LoadCursor reads the events cursor; ok is false when none is recorded.
func LoadCursor(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (c Cursor, ok bool, err error) {
	var id *string
	var created *time.Time
	err = q.QueryRow(ctx, `SELECT event_id, event_created FROM stripe_sync.cursor WHERE name = 'events'`).Scan(&id, &created)
	if err == pgx.ErrNoRows {
		return Cursor{}, false, nil
	}
	if err != nil {
		return Cursor{}, false, err
	}
	if id != nil {
		c.EventID = *id
	}
	if created != nil {
		c.Created = created.UTC()
	}
	return c, true, nil
}
