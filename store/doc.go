// Package store is the one way rows get into schema stripe: sync (backfill,
// events) and write-through all call Upsert and Delete, inside their own
// transaction (pgx.Tx), so progress and rows commit together.
//
// # Upsert
//
// One statement per table and batch (up to 2,000 objects): the raw objects
// go up as a text[] with their _as_of, and the typed columns are computed in
// SQL from the jsonb (jsonb_to_record splits each object once, then
// schema.Column.ConvertSQL converts each field) — the same mapping Migrate
// uses to fill columns added by an upgrade, so there is exactly one. Go only
// validates an object (json.Valid, UTF-8) and splits its top level (scan.go)
// to find its key, its nested lists and fields whose JSON type doesn't fit
// their column (logged through log/slog, the first time and then once per
// 1,000 per column; the column is NULL, _raw keeps the value). Invalid JSON
// is an error naming the object, found before anything reaches Postgres, so
// the caller's transaction stays usable.
//
// Ordering (docs/DESIGN.md): a row is replaced only when the incoming _as_of
// is strictly newer. On equal _as_of with different _raw (compared as
// jsonb), the row is left alone and the id is reported Ambiguous: the caller
// re-fetches the object after the second has passed. Identical content is
// Stale. Ids in stripe_sync.tombstones are skipped (Tombstoned), unless the
// object was created after the (latest) deleted object, or, where that
// one's created is unknown, after its deletion: coupons, plans and
// products take ids of the user's choice, which Stripe lets a new object
// reuse, also in the deletion's own second; a deletion of an older object
// leaves the stored one. An object
// {"deleted": true} is turned into Delete. Within one call the newest object
// per id wins.
//
// Children: for an applied parent, the nested list (invoice.lines →
// invoice_line_items, subscription.items → subscription_items) is stored in
// the same transaction. Children get the parent's _as_of; stored children
// absent from the new list are removed unless they were written later than
// the parent state (a write-through of the child). Pass complete lists in
// Object.Children when the embedded list had has_more; otherwise the parent
// is reported Incomplete and no child is removed.
//
// Included lists (schema.IncludedList: a checkout session's line_items)
// are stored whole in their own column and in _raw. Stripe sends them only
// when asked and they never change, so an incoming state without one (an
// event's object) keeps the stored one (column and _raw), and a stored
// state differs from it only if more than that list differs (ties).
// An applied object whose row lacks such a list, or holds it cut at
// has_more, is reported Incomplete: the caller fetches it with the list.
//
// Concurrency: rows are written in key order so two transactions upserting
// overlapping ids can't deadlock. A writer that waited on another
// transaction's row of the same id re-reads it before answering, so a tie
// with a concurrent writer is reported Ambiguous too (READ COMMITTED; under
// REPEATABLE READ Postgres reports a serialization failure instead). A
// transaction writing several tables writes them in LockOrder (parents,
// then nested lists, prices last), the order Upsert itself locks in.
// Users' transactions lock in any order, so sync runs its transactions
// through Retry, which runs one again whole when Postgres rolled it back
// for a deadlock, a serialization failure or a lock_timeout (Retryable).
//
// A Delete that commits while an Upsert of the same id waits on the row it
// removes wins: the Upsert's tombstone check ran in its older snapshot and
// Postgres re-inserts the row, so a second statement in the same round trip,
// with a fresh snapshot, takes tombstoned rows out again (Tombstoned). What
// remains is a Delete of an id that was not stored, committing between that
// second statement and the commit of the Upsert's transaction: the Delete
// can't see the uncommitted row. Sync never does that (the backfill
// finishes before events replay; the events loop runs its poll and
// re-fetch transactions one at a time; write-through deletes stored rows
// only).
//
// Embedded prices: the price that subscription items, invoice lines and
// invoice items carry whole (PriceCarriers) is inserted into prices when
// that table has no row for it (Stripe's price lists leave out prices
// created inline). It never replaces a stored row and is dated a second
// before the price's creation, so any fetched or evented state replaces
// it; it is not reported in Result.
//
// # Delete
//
// Delete removes the row and its children and records a tombstone, in the
// caller's transaction; upcoming_invoices rows are removed without one.
package store
