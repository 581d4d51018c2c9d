// Package translate turns SQL writes on stripe.* tables into Stripe write
// plans. It is pure: no I/O, no Stripe calls, no Postgres connection.
//
// Classify decides, from the statement text alone, whether the proxy passes
// a statement through, hands it to writethrough, or refuses it. It is cheap
// for reads (a keyword pre-check skips the parser) and its result depends on
// the text only, so the proxy caches it by text.
//
// A write becomes a Statement: a plan that lets Postgres evaluate every
// expression. Values, SET expressions and WHERE are not interpreted here;
// they are moved, as parse nodes, into a SELECT (Statement.Eval, built with
// pg_query.Deparse, never by splicing values into SQL) that runs on the
// client's own connection with the client's parameters. Statement.Build
// turns the rows it returns into Stripe calls with Stripe's bracketed form
// parameters, checking every row first so that a bad value means no call
// at all. That includes Stripe's metadata limits (50 keys, keys of 40
// characters without square brackets, values of 500), which Stripe would
// apply only when the row's call comes: an UPDATE's metadata counts the
// keys the synced row has, as Stripe merges metadata key by key, also an
// item's named by its id in items (from the column the statement
// assigns, metadata or items, or for what it gives in _params only from
// the row's stored copy, which writethrough reads for the rows
// Statement.Objects names).
// RETURNING becomes a SELECT of the same target list over the freshly
// applied local rows (Statement.Returning).
//
// A read-only WITH clause on the write (SELECT queries only, at any depth;
// RECURSIVE and [NOT] MATERIALIZED kept) goes into every one of these
// queries as the client wrote it, so each query is evaluated as the
// statement would be, but each evaluates the WITH queries it reads anew:
// a volatile one would give each query its own result. So Eval is the one
// query that evaluates VALUES, WHERE and SET (and a DELETE's RETURNING);
// the others select by id, and the WITH queries that RETURNING of an
// INSERT or UPDATE reads (Statement.Once) are evaluated first, alone, and
// given to every query as data (Statement.WithOnce). An
// unqualified target shadowed by a WITH query's name is written as
// stripe.<name> in them, which Resolve has confirmed it is. Refused:
// a WITH query that writes, FOR UPDATE/SHARE in WITH (it would block our
// own apply), and RETURNING of an INSERT or UPDATE that reads a stripe
// table by name, in a subquery or through a WITH query (RETURNING runs
// after the apply, and would see the table's new state; a view or
// function over one is not detected).
//
// Unqualified table names are resolved by writethrough at execution time
// (Statement.Resolve): classification depends on the text only. So does
// the reading of string literals, with one exception: the parser here reads
// text with standard_conforming_strings on, and an ordinary literal with a
// backslash ('C:\dir', 'it\'s') means something else with it off. Such a
// text (when it may write to a stripe table) keeps both readings
// (Statement.Strings; the second from NonConforming, which makes those
// literals E'…'), and writethrough picks the session's.
//
// Columns map to Stripe parameters of the same name (Ops and the schema's
// create/update parameters decide which are accepted). Stripe parameters
// without a column go in the jsonb pseudo-column _params
// ('{"payment_behavior": "default_incomplete"}'); on an UPDATE that changes
// status, keys the update endpoint doesn't take go to the status endpoint
// (/pay, /cancel, …). Its expand is refused (0A000): Stripe's answer is
// applied to the table and given to RETURNING, and expanded it would carry
// whole objects of other tables to roles that may read only this one.
//
// A column that holds a list object where Stripe's request takes an array
// (subscriptions.items, credit_notes.lines: schema.Param.List) can be
// written back as read, e.g. with jsonb_set, as the list object or as the
// array of its elements (items->'data': an array with an element that is
// a Stripe object, or that names a stored element by id with a key the
// request doesn't take): its elements are cut down to the keys the
// request takes, stored objects go as their ids, and an UPDATE sends only
// what changed: a changed element by id with its changed keys, a new one
// whole, and one left out as {id, deleted: true}. A changed key the
// request doesn't take (created, a price's unit_amount) is refused.
//
// Where the request takes an object by its id (Param.Refs, a parameter
// that takes only a string, a discount), the object goes as its id only
// if its content is as stored: as a copy the column's current value
// holds, or as its own table's row, which writethrough reads for the
// objects Statement.Objects names and gives to BuildStored (keys the
// object's own update takes are not compared with that row: the copy may
// be older). Else it is refused (42703), in any form and on an INSERT
// too: the id would drop the change.
// Written as the request's array instead, it is sent whole; an element
// that names an object by its id updates that object by the keys it
// gives, so a key given as null or {} there is an unset ("" where the
// spec takes it, refused elsewhere), not a key left out.
package translate
