package schema

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Beginner is what Migrate needs: *pgx.Conn and *pgxpool.Pool both fit.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migration is one numbered step of the stripe_sync schema (state tables of
// sync, write-through, …). Steps run once, in (Version, Name) order, inside
// Migrate's transaction; applied steps are recorded in stripe_sync.migrations
// by version and name, so two packages that picked the same number still
// both run. Never edit a released step, not even its name: append a new one.
type Migration struct {
	Version int
	Name    string
	SQL     string                                     // run if set
	Func    func(ctx context.Context, tx pgx.Tx) error // run if set, after SQL
}

// migrationLockKey is the advisory lock serializing concurrent Migrate calls
// (two processes starting together). Derived from "pgstripe.migrate".
const migrationLockKey int64 = 0x7067737472697065 // "pgstripe"

var (
	regMu      sync.Mutex
	registered []Migration
)

// Register adds migrations owned by another package (call it from that
// package's init). (Version, Name) must be unique across the program; by
// convention each package takes a block of numbers (see doc.go).
func Register(ms ...Migration) {
	regMu.Lock()
	defer regMu.Unlock()
	registered = append(registered, ms...)
}

// Migrations returns every known migration, sorted by version and name. It
// fails on a duplicate (version, name) or an empty name.
func Migrations() ([]Migration, error) {
	regMu.Lock()
	all := append(append([]Migration(nil), builtin...), registered...)
	regMu.Unlock()
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Version != all[j].Version {
			return all[i].Version < all[j].Version
		}
		return all[i].Name < all[j].Name
	})
	for i, m := range all {
		if m.Name == "" {
			return nil, fmt.Errorf("schema: migration %d has no name", m.Version)
		}
		if i > 0 && m.Version == all[i-1].Version && m.Name == all[i-1].Name {
			return nil, fmt.Errorf("schema: migration %d %q registered twice", m.Version, m.Name)
		}
	}
	return all, nil
}

// builtin are schema's own steps (versions 1–99).
var builtin = []Migration{
	{Version: 1, Name: "sync state: objects, status, log, tombstones", SQL: `
CREATE SCHEMA IF NOT EXISTS stripe;
CREATE TABLE stripe_sync.objects (
    object text PRIMARY KEY,
    phase text NOT NULL DEFAULT 'pending' CHECK (phase IN ('pending', 'backfilling', 'live', 'error')),
    backfill_started_at timestamptz,
    backfill_completed_at timestamptz,
    last_event_at timestamptz,
    lag_seconds double precision,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE stripe_sync.objects IS 'pgstripe: one row per table of schema stripe; sync code maintains it, stripe_sync.status shows it';

-- Row count for the status view without counting millions of rows per query:
-- the statistics' live tuple count (maintained by Postgres on every insert and
-- delete, flushed within about a second), made exact by count(*) when small.
CREATE FUNCTION stripe_sync.row_count(tbl text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    est bigint;
    n bigint;
BEGIN
    SELECT s.n_live_tup INTO est FROM pg_stat_user_tables s
    WHERE s.schemaname = 'stripe' AND s.relname = tbl;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF est < 50000 THEN
        EXECUTE format('SELECT count(*) FROM stripe.%I', tbl) INTO n;
        RETURN n;
    END IF;
    RETURN est;
END $$;

CREATE VIEW stripe_sync.status AS
SELECT o.object, o.phase, stripe_sync.row_count(o.object) AS rows,
       o.backfill_started_at, o.backfill_completed_at, o.last_event_at,
       o.lag_seconds, o.last_error
FROM stripe_sync.objects o;

CREATE TABLE stripe_sync.log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    detail jsonb
);
CREATE INDEX log_at_idx ON stripe_sync.log (at);

-- Every deleted object: store.Upsert skips these ids, so a late or replayed
-- event never brings a deleted object back (Stripe never reuses ids).
CREATE TABLE stripe_sync.tombstones (
    object text NOT NULL,
    id text NOT NULL,
    deleted_at timestamptz NOT NULL,
    PRIMARY KEY (object, id)
);
`},
	{Version: 2, Name: "status rows: trust pg_class.reltuples too (statistics are reset by a crash)", SQL: `
CREATE OR REPLACE FUNCTION stripe_sync.row_count(tbl text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    est bigint;
    n bigint;
BEGIN
    -- n_live_tup follows every write but restarts at 0 after a crash;
    -- reltuples survives but moves only with VACUUM/ANALYZE. The larger one
    -- decides whether counting is cheap enough to be exact.
    SELECT greatest(coalesce(s.n_live_tup, 0), c.reltuples::bigint) INTO est
    FROM pg_class c
    JOIN pg_namespace ns ON ns.oid = c.relnamespace
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE ns.nspname = 'stripe' AND c.relname = tbl AND c.relkind = 'r';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF est < 50000 THEN
        EXECUTE format('SELECT count(*) FROM stripe.%I', tbl) INTO n;
        RETURN n;
    END IF;
    RETURN est;
END $$;
`},
	{Version: 3, Name: "stripe tables: defaults that refuse a direct INSERT (set_by_stripe)", SQL: `
-- The default of the columns Stripe or sync fills (id, _raw, _synced_at,
-- _as_of; reconcileTables sets them): model generators then see them as
-- having a default and stop demanding them on create. Evaluated only by an
-- INSERT that bypasses the proxy. Never mark it IMMUTABLE: the planner
-- evaluates immutable calls while planning, and the proxy's Bind of a
-- client's INSERT (planned upstream, never executed) would then raise. In
-- schema stripe, so that pg_dump -n stripe alone restores.
CREATE OR REPLACE FUNCTION stripe._set_by_stripe(tbl text, type_of anyelement) RETURNS anyelement
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'stripe.% is written only through pgstripe''s proxy, by an INSERT statement of its own', tbl
        USING ERRCODE = 'feature_not_supported',
              DETAIL = 'This INSERT reached Postgres without the proxy''s write-through (on a direct connection, or inside a function, DO block or trigger): Stripe would never hear of the row. Stripe assigns id; pgstripe''s sync fills _raw, _synced_at and _as_of.',
              HINT = 'Connect to pgstripe''s proxy (PGSTRIPE_LISTEN, default port 6543) and send the INSERT as a statement, leaving these columns out or giving them as DEFAULT.';
END $$;
COMMENT ON FUNCTION stripe._set_by_stripe(text, anyelement) IS 'pgstripe: default of stripe.*.id, _raw, _synced_at, _as_of; raises 0A000 when evaluated (an INSERT that bypassed the proxy)';
-- The clear message, not "permission denied for function", also where
-- default privileges revoke EXECUTE from PUBLIC.
GRANT EXECUTE ON FUNCTION stripe._set_by_stripe(text, anyelement) TO PUBLIC;
`},
	{Version: 4, Name: "status: lag grows while no events poll completes (Stripe down, pgstripe stopped)", SQL: `
-- The events loop writes lag_seconds (the age of its newest complete poll)
-- and updated_at on every poll with events and every 2 s when idle, and
-- leaves updated_at alone when a poll fails. A status older than 10 s
-- means no poll completes: lag_seconds then grows with its age instead of
-- standing still. (An older pgstripe also bumps updated_at on a failing
-- poll: its lag stands still, as it always did, but never grows falsely.)
CREATE OR REPLACE VIEW stripe_sync.status AS
SELECT o.object, o.phase, stripe_sync.row_count(o.object) AS rows,
       o.backfill_started_at, o.backfill_completed_at, o.last_event_at,
       CASE WHEN o.phase = 'live' AND o.lag_seconds IS NOT NULL AND o.updated_at < now() - interval '10 seconds'
            THEN o.lag_seconds + extract(epoch FROM now() - o.updated_at)::double precision
            ELSE o.lag_seconds END AS lag_seconds,
       o.last_error
FROM stripe_sync.objects o;
`},
	{Version: 5, Name: "sync state: the Stripe mode (test or live) the tables hold", SQL: `
CREATE TABLE IF NOT EXISTS stripe_sync.account (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    livemode boolean NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE stripe_sync.account IS 'pgstripe: whether schema stripe holds test-mode or live-mode objects; a key of the other mode is refused';
`},
	{Version: 6, Name: "status rows: row_count resolves names in pg_catalog only", SQL: `
-- Whoever reads stripe_sync.status runs row_count with their own
-- search_path: a better-matching format() another role put in public would
-- run as the reader (pgstripe's own connections use pg_catalog, pg_temp).
ALTER FUNCTION stripe_sync.row_count(text) SET search_path = pg_catalog, pg_temp;
`},
	{Version: 7, Name: "tombstones: the created time of the object deleted", SQL: `
-- Ids of the user's choice (coupons, plans, products) may name a new object
-- created in the very second the old one was deleted: the deleted object's
-- own created time tells the two apart where the deletion's time can't.
ALTER TABLE stripe_sync.tombstones ADD COLUMN IF NOT EXISTS created timestamptz;
`},
	{Version: 8, Name: "stripe tables: refuse writes that bypass the proxy (local_write guard)", SQL: `
-- The function of the statement-level trigger reconcileTables puts on
-- every stripe table (LocalWriteGuardTrigger). A write that reaches
-- Postgres without the proxy (a direct connection; a function, DO block,
-- trigger, view or rule, even one called through the proxy) would change
-- the local copy only: Stripe never hears of it. pgstripe's own
-- connections set pgstripe.local_write (config.OwnSession); an operator
-- repairing the copy on purpose sets it too. Not a security boundary: any
-- session may set it. Invoker's rights and qualified names only, so that
-- it runs the same whatever the writer's search_path; no SET clause,
-- which would cost every statement of sync a configuration save and
-- restore. In schema stripe, so that pg_dump -n stripe alone restores.
CREATE OR REPLACE FUNCTION stripe._refuse_local_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.lower(pg_catalog.current_setting('pgstripe.local_write', true)) IN ('on', 'true', 'yes', '1') THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'writes to stripe.% go through pgstripe''s proxy: this % would change the local copy only', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'feature_not_supported',
              DETAIL = 'It reached Postgres without the proxy''s write-through (on a direct connection, or inside a function, DO block, trigger, view or rule): Stripe would never hear of it.',
              HINT = 'Send INSERT, UPDATE and DELETE on stripe.* through pgstripe''s proxy (PGSTRIPE_LISTEN, default port 6543), each as a statement of its own. To change the local copy only, on purpose (a repair, a data-only restore), SET pgstripe.local_write = on first.';
END $$;
COMMENT ON FUNCTION stripe._refuse_local_write() IS 'pgstripe: trigger refusing writes to stripe.* that bypass the proxy (0A000) unless pgstripe.local_write is on';
`},
}

// Migrate creates or upgrades the stripe and stripe_sync schemas, in one
// transaction under an advisory lock; running it again is a no-op.
//
//   - numbered migrations (Migrations) not yet applied run in order;
//   - every table of Tables() is created if missing; a table that exists gets
//     the columns a newer spec added, filled from _raw (no Stripe call);
//     columns the spec dropped are kept (no data loss);
//   - a table in the way that pgstripe did not create is an error, and
//     nothing is changed.
func Migrate(ctx context.Context, db Beginner) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	wait := time.Second
	for attempt := 1; ; attempt++ {
		err := migrate(ctx, db, ms)
		var pe *pgconn.PgError
		// A deadlock victim (a running instance's writer locked the tables
		// in another order) rolled back whole too.
		if !errors.As(err, &pe) || pe.Code != "55P03" && pe.Code != "40P01" {
			return err
		}
		if attempt == migrateAttempts {
			if pe.Code == "40P01" {
				return fmt.Errorf("%w (gave up after %d tries)", err, attempt)
			}
			return fmt.Errorf("%w (gave up after %d tries of %s each: a long transaction holds a table pgstripe must alter; migrate again once it ends)", err, attempt, migrateLockTimeout)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// An ALTER TABLE waiting for a lock holds up every later query of the
// table behind it: a long-running reader would turn pgstripe's start-up
// into an outage of the table. So Migrate's lock waits are bounded, and
// it tries again later (the transaction rolls back whole).
var (
	migrateLockTimeout = 3 * time.Second
	migrateAttempts    = 5
)

func migrate(ctx context.Context, db Beginner, ms []Migration) error {
	tx, err := beginReadCommitted(ctx, db)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("migrate: advisory lock: %w", err)
	}
	// Filling new columns is pgstripe's own write to stripe.*, whoever
	// opened db (the guard, LocalWriteGuardTrigger, lets it pass).
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL %s = on", migrateLockTimeout.Milliseconds(), LocalWriteSetting)); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// Stripe's text is Unicode. Another encoding refuses the first name
	// it can't hold (LATIN1: 東京; SQL_ASCII: any non-ASCII), with the sync
	// half done and failing again on every retry: say so before anything
	// is written.
	var enc string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.current_setting('server_encoding')").Scan(&enc); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if enc != "UTF8" {
		return fmt.Errorf("migrate: the database's encoding is %s: pgstripe needs a UTF8 database, as Stripe's text is Unicode (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)", enc)
	}
	if _, err := tx.Exec(ctx, `
CREATE SCHEMA IF NOT EXISTS stripe;
CREATE SCHEMA IF NOT EXISTS stripe_sync;
CREATE TABLE IF NOT EXISTS stripe_sync.migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, name)
)`); err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42501" {
			return fmt.Errorf("migrate: %s: the DATABASE_URL role must be allowed to create the schemas stripe and stripe_sync (GRANT CREATE ON DATABASE … TO it) or own them", pe.Message)
		}
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "25006" {
			// Waiting won't help: a hot standby stays read-only until it is
			// promoted, and so does a session default.
			return fmt.Errorf("migrate: %s: DATABASE_URL must lead to a writable primary, not a hot standby, nor a role or database with default_transaction_read_only = on (with several hosts, add target_session_attrs=read-write)", pe.Message)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	type step struct {
		v int
		n string
	}
	applied := map[step]bool{}
	rows, err := tx.Query(ctx, "SELECT version, name FROM stripe_sync.migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var st step
		if err := rows.Scan(&st.v, &st.n); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		applied[st] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var ran []string
	for _, m := range ms {
		if applied[step{m.Version, m.Name}] {
			continue
		}
		ran = append(ran, fmt.Sprintf("%d %s", m.Version, m.Name))
		if m.SQL != "" {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migrate: step %d (%s): %w", m.Version, m.Name, err)
			}
		}
		if m.Func != nil {
			if err := m.Func(ctx, tx); err != nil {
				return fmt.Errorf("migrate: step %d (%s): %w", m.Version, m.Name, err)
			}
		}
		if _, err := tx.Exec(ctx, "INSERT INTO stripe_sync.migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			return fmt.Errorf("migrate: record step %d: %w", m.Version, err)
		}
	}
	created, err := reconcileTables(ctx, tx, len(applied) > 0)
	if err != nil {
		return err
	}
	if len(ran) > 0 || len(created) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ('migrate', jsonb_build_object('api_version', $1::text, 'steps', $2::text[], 'created_tables', $3::text[]))`,
			APIVersion, ran, created); err != nil {
			return fmt.Errorf("migrate: log: %w", err)
		}
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Name
	}
	if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.objects (object) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, names); err != nil {
		return fmt.Errorf("migrate: objects: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// beginReadCommitted starts Migrate's transaction as READ COMMITTED, whatever
// the database's default_transaction_isolation: a Migrate that waited on the
// advisory lock must see, statement by statement, what the holder committed.
// Under REPEATABLE READ its snapshot predates the wait, it would miss the
// recorded steps and run them again ("relation already exists").
func beginReadCommitted(ctx context.Context, db Beginner) (pgx.Tx, error) {
	if b, ok := db.(interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	}); ok {
		return b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	}
	return db.Begin(ctx)
}

// ErrForeignTable is returned (wrapped) when a table pgstripe would manage
// already exists and was not created by pgstripe.
var ErrForeignTable = errors.New("table exists and was not created by pgstripe")

type existing struct {
	comment  string
	notTable bool              // a view or such
	cols     map[string]string // column → format_type
	defaults map[string]bool   // columns that have a default
	indexes  map[string]bool
	guarded  bool // has LocalWriteGuardTrigger (enabled or not)
}

// reconcileTables brings schema stripe in line with Tables() and returns the
// tables it created. migratedBefore: stripe_sync.migrations had steps
// before this run.
func reconcileTables(ctx context.Context, tx pgx.Tx, migratedBefore bool) (created []string, err error) {
	rows, err := tx.Query(ctx, `
SELECT c.relname, coalesce(obj_description(c.oid, 'pg_class'), ''), a.attname, format_type(a.atttypid, a.atttypmod), c.relkind::text, coalesce(a.atthasdef, false)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`, DataSchema)
	if err != nil {
		return nil, fmt.Errorf("migrate: read catalog: %w", err)
	}
	have := map[string]*existing{}
	for rows.Next() {
		var rel, comment, kind string
		var col, typ *string
		var hasDef bool
		if err := rows.Scan(&rel, &comment, &col, &typ, &kind, &hasDef); err != nil {
			return nil, fmt.Errorf("migrate: read catalog: %w", err)
		}
		e := have[rel]
		if e == nil {
			e = &existing{comment: comment, cols: map[string]string{}, defaults: map[string]bool{}}
			have[rel] = e
		}
		if kind != "r" && kind != "p" {
			e.comment, e.notTable = "", true // a view or such in the way is never ours
		}
		if col != nil {
			e.cols[*col] = *typ
			e.defaults[*col] = hasDef
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read catalog: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT tablename, indexname FROM pg_indexes WHERE schemaname = $1`, DataSchema)
	if err != nil {
		return nil, fmt.Errorf("migrate: read catalog: %w", err)
	}
	for rows.Next() {
		var rel, ix string
		if err := rows.Scan(&rel, &ix); err != nil {
			return nil, fmt.Errorf("migrate: read catalog: %w", err)
		}
		if e := have[rel]; e != nil {
			if e.indexes == nil {
				e.indexes = map[string]bool{}
			}
			e.indexes[ix] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read catalog: %w", err)
	}
	// By name only: a guard an operator disabled (ALTER TABLE … DISABLE
	// TRIGGER) stays as they left it.
	rows, err = tx.Query(ctx, `SELECT c.relname FROM pg_trigger g
JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND g.tgname = $2`, DataSchema, LocalWriteGuardTrigger)
	if err != nil {
		return nil, fmt.Errorf("migrate: read catalog: %w", err)
	}
	for rows.Next() {
		var rel string
		if err := rows.Scan(&rel); err != nil {
			return nil, fmt.Errorf("migrate: read catalog: %w", err)
		}
		if e := have[rel]; e != nil {
			e.guarded = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read catalog: %w", err)
	}
	// Check everything before changing anything.
	for _, t := range tables {
		if e := have[t.Name]; e != nil && !strings.HasPrefix(e.comment, commentPrefix) && !lostComment(e, migratedBefore) {
			return nil, fmt.Errorf("migrate: %s: %w; rename or drop it, then run migrate again (nothing was changed)", t.QualifiedName(), ErrForeignTable)
		}
	}
	for _, t := range tables {
		e := have[t.Name]
		if e == nil {
			if _, err := tx.Exec(ctx, t.CreateTableSQL()); err != nil {
				return nil, fmt.Errorf("migrate: create %s: %w", t.QualifiedName(), err)
			}
			created = append(created, t.Name)
			continue
		}
		if err := upgradeTable(ctx, tx, t, e); err != nil {
			return nil, err
		}
	}
	return created, nil
}

// lostComment: a table of pgstripe's whose comment a restore dropped
// (pg_dump or pg_restore --no-comments, tools that copy no comments), so
// the comment no longer tells it apart. It has no comment at all (another
// comment is someone else's), pgstripe's own columns, and pgstripe had
// migrated this database before (the restored stripe_sync.migrations).
// upgradeTable then puts the comment back.
func lostComment(e *existing, migratedBefore bool) bool {
	if !migratedBefore || e.comment != "" || e.notTable {
		return false
	}
	for _, m := range []struct{ name, typ string }{{ColRaw, "jsonb"}, {ColSyncedAt, "timestamptz"}, {ColAsOf, "timestamptz"}} {
		if typ, ok := e.cols[m.name]; !ok || !sameType(typ, m.typ) {
			return false
		}
	}
	return true
}

// upgradeTable adds columns a newer spec introduced and fills them from _raw,
// retypes unix times an earlier pgstripe stored as bigint (retypeUnixTimes),
// and adds missing indexes. Columns whose type changed otherwise are left
// alone (no data loss) and reported in stripe_sync.log.
func upgradeTable(ctx context.Context, tx pgx.Tx, t *Table, e *existing) error {
	var added, retyped []Column
	var stmts []string
	for _, c := range t.Columns {
		typ, ok := e.cols[c.Name]
		if !ok {
			added = append(added, c)
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", t.QualifiedName(), Ident(c.Name), c.PGType))
			continue
		}
		if c.Kind == KindTimestamp && typ == "bigint" {
			retyped = append(retyped, c)
			continue
		}
		if !sameType(typ, c.PGType) {
			// Noted once, not again on every start.
			if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) SELECT 'migrate_type_mismatch', d FROM (SELECT jsonb_build_object('table', $1::text, 'column', $2::text, 'have', $3::text, 'want', $4::text) d) n
WHERE NOT EXISTS (SELECT 1 FROM stripe_sync.log WHERE kind = 'migrate_type_mismatch' AND detail = n.d)`,
				t.Name, c.Name, typ, c.PGType); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
	}
	for _, m := range []struct{ name, typ string }{{ColRaw, "jsonb"}, {ColSyncedAt, "timestamptz"}, {ColAsOf, "timestamptz"}} {
		if _, ok := e.cols[m.name]; !ok {
			return fmt.Errorf("migrate: %s lacks pgstripe column %s; it cannot be upgraded in place", t.QualifiedName(), m.name)
		}
	}
	if _, ok := e.cols[ColParams]; !ok {
		stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s jsonb", t.QualifiedName(), Ident(ColParams)))
	}
	// Tables made before set_by_stripe existed. A default someone set by
	// hand is left alone; so is every table once done, as SET DEFAULT
	// takes an ACCESS EXCLUSIVE lock.
	var setDefaults []string
	for _, col := range t.SetByStripeColumns() {
		if _, ok := e.cols[col]; ok && !e.defaults[col] {
			setDefaults = append(setDefaults, fmt.Sprintf("ALTER COLUMN %s SET DEFAULT %s", Ident(col), t.SetByStripeDefault(col)))
		}
	}
	if len(setDefaults) > 0 {
		stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s %s", t.QualifiedName(), strings.Join(setDefaults, ", ")))
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("migrate: %s: %w", t.QualifiedName(), err)
		}
	}
	if err := retypeUnixTimes(ctx, tx, t, retyped); err != nil {
		return err
	}
	if len(added) > 0 {
		sets := make([]string, len(added))
		names := make([]string, len(added))
		for i, c := range added {
			sets[i] = fmt.Sprintf("%s = %s", Ident(c.Name), c.ExtractSQL(Ident(ColRaw)))
			names[i] = c.Name
		}
		tag, err := tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET %s", t.QualifiedName(), strings.Join(sets, ", ")))
		if err != nil {
			return fmt.Errorf("migrate: fill new columns of %s from _raw: %w", t.QualifiedName(), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ('migrate_add_columns', jsonb_build_object('table', $1::text, 'columns', $2::text[], 'rows_filled', $3::bigint))`,
			t.Name, names, tag.RowsAffected()); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	// Tables made before the guard existed.
	if !e.guarded {
		if _, err := tx.Exec(ctx, t.GuardSQL()); err != nil {
			return fmt.Errorf("migrate: %s: %w", t.QualifiedName(), err)
		}
	}
	// Only what is missing: CREATE INDEX IF NOT EXISTS and COMMENT lock the
	// table even when they change nothing, and a no-op Migrate (every
	// start of serve) must not stall, or deadlock with, running writers.
	for _, ix := range t.Indexes() {
		if e.indexes[ix.Name] {
			continue
		}
		if _, err := tx.Exec(ctx, ix.SQL); err != nil {
			return fmt.Errorf("migrate: %s: %w", t.QualifiedName(), err)
		}
	}
	if e.comment != t.comment() {
		if _, err := tx.Exec(ctx, fmt.Sprintf("COMMENT ON TABLE %s IS %s", t.QualifiedName(), quoteLiteral(t.comment()))); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// retypeUnixTimes turns cols, unix times that an earlier pgstripe (whose
// generator went by the spec's format unix-time alone) made bigint, into
// timestamptz in place: the column's own mapping (ConvertSQL) applied to
// the stored seconds, so every row keeps its instant and a value no
// timestamptz holds becomes NULL, as sync would store it, instead of
// failing the migration. One ALTER, so the table is rewritten once, under
// Migrate's lock_timeout like every other change here. A view, rule or
// policy using such a column stops it: Postgres can't retype a column
// they use, and keeping the bigint would fail every write of the table
// (sync's and the proxy's), so Migrate fails, rolled back, saying what to
// drop.
func retypeUnixTimes(ctx context.Context, tx pgx.Tx, t *Table, cols []Column) error {
	if len(cols) == 0 {
		return nil
	}
	alters := make([]string, len(cols))
	names := make([]string, len(cols))
	for i, c := range cols {
		alters[i] = fmt.Sprintf("ALTER COLUMN %s TYPE %s USING %s", Ident(c.Name), c.PGType, c.ConvertSQL("to_jsonb("+Ident(c.Name)+")"))
		names[i] = c.Name
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s %s", t.QualifiedName(), strings.Join(alters, ", "))); err != nil {
		var pe *pgconn.PgError
		// Lock waits and deadlocks are Migrate's to retry; a cancel of
		// ours (Ctrl-C) is no fault of the database's.
		if !errors.As(err, &pe) || pe.Code == "55P03" || pe.Code == "40P01" || ctx.Err() != nil {
			return fmt.Errorf("migrate: %s: %w", t.QualifiedName(), err)
		}
		what := "column " + names[0] + ", a unix time"
		if len(names) > 1 {
			what = "columns " + strings.Join(names, ", ") + ", unix times"
		}
		switch pe.Code {
		case "0A000", "42883", "42804":
			// Something of the user's depends on the column: a view, rule,
			// policy, trigger condition or generated column (0A000), an
			// index or constraint expression (42883) or a default (42804)
			// that has no meaning for timestamptz. pgconn leaves the
			// DETAIL out of the message, and it names what is in the way.
			detail := ""
			if pe.Detail != "" {
				detail = " (" + pe.Detail + ")"
			}
			return fmt.Errorf("migrate: %s: %s an earlier pgstripe stored as bigint, must become timestamptz, which Postgres refused: %w%s; drop what uses it, run pgstripe migrate, then create that again for timestamptz (nothing was changed)", t.QualifiedName(), what, err, detail)
		case "57014":
			// Not a lock wait (lock_timeout bounds those): the rewrite
			// itself outlasted the role's or database's statement_timeout,
			// and would again on every start.
			return fmt.Errorf("migrate: %s: %s an earlier pgstripe stored as bigint, must become timestamptz, which rewrites the table, and statement_timeout stopped it: %w; run pgstripe migrate once with a statement_timeout long enough for the rewrite (ALTER ROLE … SET statement_timeout, or options=-c statement_timeout=0 in DATABASE_URL) (nothing was changed)", t.QualifiedName(), what, err)
		}
		// Anything else (not the table's owner, disk full, …) is no
		// dependency to drop.
		return fmt.Errorf("migrate: %s: %s an earlier pgstripe stored as bigint, must become timestamptz, which Postgres refused: %w (nothing was changed)", t.QualifiedName(), what, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO stripe_sync.log (kind, detail) VALUES ('migrate_retype_columns', jsonb_build_object('table', $1::text, 'columns', $2::text[], 'from', 'bigint', 'to', 'timestamptz'))`,
		t.Name, names); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func sameType(have, want string) bool {
	switch want {
	case "timestamptz":
		return have == "timestamp with time zone"
	}
	return have == want
}
