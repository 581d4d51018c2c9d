package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
)

// Migrations of sync/events take versions 400–449 (schema.Register);
// released steps are never edited, new ones are appended.
func init() {
	schema.Register(schema.Migration{Version: 400, Name: "events: cursor, applied events, refetch queue", SQL: `
-- The events loop's position. checked_through is the Stripe-clock time (a
-- response Date) up to which every event visible at that time has been
-- applied; each poll re-reads from a little before it, each sweep from
-- LookBack before it. Written in the same transaction as the last apply of
-- a poll, so a restart resumes exactly there.
CREATE TABLE IF NOT EXISTS stripe_sync.events_cursor (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    checked_through timestamptz NOT NULL,
    last_event_id text,
    last_event_at timestamptz,
    -- balance_transactions have no events: they are listed by created from here.
    balance_checked_through timestamptz,
    -- set while a re-backfill (cursor past Stripe's 30-day retention) runs:
    -- a restart resumes the re-backfill instead of polling a stale cursor.
    rebackfill_since timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE stripe_sync.events_cursor IS 'pgstripe: events loop position (sync/events)';

-- Ids of applied events, so re-read windows never apply one twice. Pruned
-- past the look-back window; written in the apply transaction.
CREATE TABLE IF NOT EXISTS stripe_sync.applied_events (
    id text PRIMARY KEY,
    created timestamptz NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS applied_events_created_idx ON stripe_sync.applied_events (created);

-- Objects to re-fetch from Stripe: same-second states that can't be ordered
-- (not before the second has passed), nested lists cut at has_more, owners
-- changed by events of objects not stored (customer.discount.*), and
-- customers whose upcoming invoice must be refreshed (object
-- 'upcoming_invoices', id = customer). Durable, so a crash loses none.
CREATE TABLE IF NOT EXISTS stripe_sync.events_refetch (
    object text NOT NULL,
    id text NOT NULL,
    not_before timestamptz NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (object, id)
);
`}, schema.Migration{Version: 410, Name: "events: re-fetch queue entries carry when they were last queued", SQL: `
-- The drain deletes an entry only if it wasn't queued again while its
-- fetch was in flight; not_before alone can't tell (same second).
ALTER TABLE stripe_sync.events_refetch ADD COLUMN IF NOT EXISTS queued_at timestamptz NOT NULL DEFAULT clock_timestamp();
`}, schema.Migration{Version: 420, Name: "events: re-fetch queue entries carry the state left out of a held row", SQL: heldColumns},
		schema.Migration{Version: 430, Name: "events: re-fetch queue index for a drain's read by table", SQL: `
-- A drain reads each table's first due entries in its order (readDue):
-- without this, every drain sorted all due entries (seconds with 100k
-- queued, say upcoming invoices after a re-backfill).
CREATE INDEX IF NOT EXISTS events_refetch_due_idx ON stripe_sync.events_refetch (object, (reason = 'upcoming'), not_before);
`})
}

// heldColumns keep, in an entry queued because another transaction held
// the object's row (reason 'locked'), the state the writer left out
// (store.Held), written if Stripe refuses the re-fetch for good.
// Idempotent: sync/backfill, which queues such entries too, runs it as
// well (migration 504).
const heldColumns = `
ALTER TABLE stripe_sync.events_refetch ADD COLUMN IF NOT EXISTS held jsonb, ADD COLUMN IF NOT EXISTS held_as_of timestamptz;
`

// Cursor is the events loop's durable position.
type Cursor struct {
	// CheckedThrough is the Stripe-clock time up to which every visible
	// event has been applied.
	CheckedThrough time.Time
	LastEventID    string
	LastEventAt    time.Time
	// BalanceCheckedThrough: balance transactions and checkout sessions
	// created before it are stored.
	BalanceCheckedThrough time.Time
	// RebackfillSince is set while a re-backfill is under way.
	RebackfillSince time.Time
}

// ErrNoCursor means no handoff cursor was recorded: nothing tells the events
// loop where to start. Call SetCursor before the backfill.
var ErrNoCursor = errors.New("events: no cursor recorded (run SetCursor before the backfill)")

// LoadCursor reads the cursor; ErrNoCursor when none was recorded.
func LoadCursor(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (Cursor, error) {
	var c Cursor
	var id *string
	var lastAt, bal, reb *time.Time
	err := q.QueryRow(ctx, `SELECT checked_through, last_event_id, last_event_at, balance_checked_through, rebackfill_since
FROM stripe_sync.events_cursor`).Scan(&c.CheckedThrough, &id, &lastAt, &bal, &reb)
	if errors.Is(err, pgx.ErrNoRows) {
		return Cursor{}, ErrNoCursor
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("events: read cursor: %w", err)
	}
	if id != nil {
		c.LastEventID = *id
	}
	if lastAt != nil {
		c.LastEventAt = *lastAt
	}
	if bal != nil {
		c.BalanceCheckedThrough = *bal
	}
	if reb != nil {
		c.RebackfillSince = *reb
	}
	return c, nil
}

// saveCursor writes c inside tx (the apply transaction).
func saveCursor(ctx context.Context, tx pgx.Tx, c Cursor) error {
	_, err := tx.Exec(ctx, `INSERT INTO stripe_sync.events_cursor AS e
    (checked_through, last_event_id, last_event_at, balance_checked_through, rebackfill_since, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (singleton) DO UPDATE SET checked_through = excluded.checked_through,
    last_event_id = excluded.last_event_id, last_event_at = excluded.last_event_at,
    balance_checked_through = excluded.balance_checked_through,
    rebackfill_since = excluded.rebackfill_since, updated_at = now()`,
		c.CheckedThrough, nullStr(c.LastEventID), nullTime(c.LastEventAt), nullTime(c.BalanceCheckedThrough), nullTime(c.RebackfillSince))
	if err != nil {
		return fmt.Errorf("events: save cursor: %w", err)
	}
	return nil
}

func nullStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
