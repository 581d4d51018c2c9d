// Package schema describes the tables of schema stripe and creates or upgrades
// them (Migrate).
//
// # Generated metadata
//
// tables_gen.go is generated from Stripe's OpenAPI spec for API 2023-10-16
// (stripe-mock v0.183.0, package embedded) by internal/gen:
//
//	go generate ./schema/...
//
// It rewrites tables_gen.go and the golden DDL testdata/ddl.sql; tests fail
// when either is stale. Which tables exist and the list endpoint each is named
// after are chosen by hand in internal/gen (CONTRACT §3); columns, types,
// endpoints, created filters, required list parameters, create/update
// parameters (with the places inside them that take only integers, or
// the empty string as an empty array) and expandable fields come from the
// spec. Also by hand, from the spec's descriptions: the create parameters,
// and the places below create and update parameters, taking an array but
// no empty string where leaving an empty array out means the same as
// sending it (Param.OmitEmpty, Param.OmitEmptyArrays); the generator
// fails when one of those decisions no longer fits the spec.
//
// Mapping (Kind): id text primary key; strings and enums text; integers
// bigint; numbers numeric; booleans boolean; unix times timestamptz (format
// unix-time, or an integer whose description says it is measured in
// seconds since the Unix epoch: subscription_item.created lacks the format);
// expandable references (anyOf string | object) text holding the id, also
// when expanded; objects, arrays and metadata jsonb. A JSON value of an
// unexpected type maps to NULL (never an error); _raw keeps it.
// Column.ConvertSQL is that mapping as SQL over a field's jsonb value
// (Column.ExtractSQL over the whole object), used both by store.Upsert and
// by Migrate when filling new columns: there is one mapping.
//
// Every table also has _raw jsonb (the object as last seen), _synced_at
// (our clock when written), _as_of (Stripe's clock when the stored state
// was current; see docs/DESIGN.md for ordering) and _params jsonb (always
// NULL: write-through's column for Stripe parameters without a column of
// their own, there so that Postgres can parse and describe such writes).
//
// Defaults: id (where it is a key column), _raw, _synced_at and _as_of
// default to SetByStripeFunc, stripe._set_by_stripe(table, NULL::type),
// which raises 0A000 ("stripe.customers is written only through
// pgstripe's proxy, by an INSERT statement of its own") when evaluated. They are
// there for model generators (Prisma, kysely-codegen, drizzle-kit), which
// demand a value on create for a NOT NULL column without a default; Stripe
// and sync fill these columns, and nothing of pgstripe's evaluates the
// default (see docs/DESIGN.md). Only an INSERT that bypasses the proxy does.
// The function must stay VOLATILE: the proxy forwards the Bind of a
// client's INSERT upstream, which plans it, and the planner evaluates
// IMMUTABLE calls.
//
// Guard: every table has the statement-level trigger LocalWriteGuardTrigger
// (BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE, function
// stripe._refuse_local_write, migration 8), which raises 0A000 ("writes to
// stripe.customers go through pgstripe's proxy: this UPDATE would change the
// local copy only") unless the session's LocalWriteSetting
// (pgstripe.local_write) is on. pgstripe's own connections set it
// (config.OwnSession), and Migrate sets it LOCAL in its own transaction; an
// operator repairing the local copy on purpose sets it too. A write that
// bypasses the proxy (a direct connection; a function, DO block, trigger,
// view or rule) is refused before any row changes, instead of changing the
// local copy behind Stripe's back. Not a security boundary: any session
// may set the placeholder.
//
// Keys: "id", except invoice_line_items, keyed by (invoice, id) because
// older API versions reused line item ids (ii_…, sub_…) across invoices, and
// upcoming_invoices (virtual, no id), keyed by customer.
//
// Paths in Table use {id} for the object's id and {parent} for the parent's
// (child tables); in NestedList.ListPath {id} is the parent's id.
//
// # Migrations
//
// Migrate runs in one transaction under an advisory lock (concurrent callers
// wait, then find nothing to do). It first applies the numbered migrations
// not yet recorded in stripe_sync.migrations, then reconciles the tables of
// schema stripe with Tables(): missing tables are created; columns a newer
// spec added are added and filled from _raw (no Stripe call); columns are
// never dropped, and retyped only from bigint to timestamptz, where an
// earlier pgstripe stored a unix time as seconds (subscription_items.created,
// before the generator recognised it by its description; each row keeps
// its instant, through the column's own mapping, so seconds beyond
// timestamptz's range become NULL as sync would store them, and a view,
// rule or policy using the column makes Migrate fail, naming it); any
// other type difference is left alone and noted in stripe_sync.log;
// the set_by_stripe defaults are set where a column has no default; the
// guard trigger is created where a table has none of that name (one an
// operator disabled stays disabled).
// A table in the way that pgstripe did not create (recognised by its table
// comment) is an error (ErrForeignTable) and nothing changes; a table with
// no comment at all but pgstripe's _raw, _synced_at and _as_of, in a
// database whose stripe_sync.migrations has steps, is pgstripe's own that
// a restore without comments (pg_dump or pg_restore --no-comments) left
// unmarked: it is taken back and its comment set again. A run that
// changed something leaves rows in stripe_sync.log: kind 'migrate' (steps run,
// tables created), 'migrate_add_columns' (table, columns, rows filled),
// 'migrate_retype_columns' (table, columns, from, to) and
// 'migrate_type_mismatch'. A run with nothing to do takes no locks on the
// stripe tables, so it never waits for (or deadlocks with) running writers.
// A run that alters a table waits at most 3 s for its lock (an ALTER that
// waits holds up every later query of the table), then rolls back and
// tries again, five times in all; so does a run that Postgres chose as a
// deadlock victim (a running instance writing the tables in another order).
//
// Adding your own state tables (backfill cursors, event cursors, …): append
// a Migration to builtin in migrate.go, or call Register from your package's
// init:
//
//	func init() {
//		schema.Register(schema.Migration{Version: 500, Name: "backfill: slices", SQL: `CREATE TABLE stripe_sync.…`})
//	}
//
// Steps run in (Version, Name) order after schema's own (1–99) and are
// recorded by version and name, so a clash of numbers between packages is
// harmless; still, take your own block (in use: 400 leader, 400–449
// sync/events, 500–599 sync/backfill). Never edit a released step, not even
// its name; append a new one. Put state tables in stripe_sync. Migrations
// run before the stripe tables are reconciled, so they must not depend on
// those.
//
// # Sync state
//
// stripe_sync.objects has one row per table (object = table name) with
// phase ('pending', 'backfilling', 'live', 'error'), backfill_started_at,
// backfill_completed_at, last_event_at, lag_seconds and last_error, kept by
// sync code; the view stripe_sync.status adds rows. rows is exact (count(*))
// while a table looks smaller than 50,000 rows, and an estimate above that,
// so the view stays cheap on millions of rows: the larger of the statistics'
// live tuple count (n_live_tup, kept by Postgres on every write, flushed
// within about a second, reset by a crash) and pg_class.reltuples (kept by
// VACUUM and ANALYZE). stripe_sync.log (id, at, kind, detail) records sync
// events; stripe_sync.tombstones (object, id, deleted_at) every id deleted
// within the last 37 days before the events window (Stripe's 30-day event
// retention and a week): older ones guard against nothing any more.
package schema
