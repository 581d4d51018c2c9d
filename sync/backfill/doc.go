// Package backfill copies every object of a Stripe account into the stripe
// schema, concurrently, under the client's shared rate limit, and resumably.
//
// # How the work is cut
//
// Lists that accept a created filter are cut into time ranges (slicer.go).
// Each range starts as [Stripe's founding, 2100) (not "now": objects of
// customers on test clocks are created ahead of Stripe's clock); its first
// page (100
// objects, newest first) is a density sample, and what remains of the range
// is split into as many pieces as pages expected, as long as the shared
// queue is short of work (twice the worker target); otherwise the range
// simply continues with starting_after and full pages. A page whose first
// and last created are equal reveals a second with more than a page: that
// second is paged on its own with starting_after.
//
// Lists without a created filter are paged with starting_after, per parent
// where the API demands it: payment methods per customer (the parents are
// the customers this run fetches, plus those already stored unless the
// customers are backfilled from scratch; naming a per-parent table brings
// its parent into the run); tax ids come
// included with the customer pages (expand[]=data.tax_ids), per customer
// only when a customer has more than the included page. upcoming_invoices
// (virtual) is one GET /v1/invoices/upcoming per customer with a live
// subscription. Invoice items accept a created filter but show the time as
// "date", so they are paged whole. Nested lists (invoice.lines,
// subscription.items) are completed before their parent is stored, so child
// tables are complete. A cursor whose object was deleted meanwhile
// (starting_after refused) is dropped and the slice continues without it.
//
// Stripe leaves customers on test clocks, and their subscriptions, out of
// GET /v1/customers and /v1/subscriptions unless test_clock= names the
// clock. With a test-mode key those two tables also get a slice that pages
// GET /v1/test_helpers/test_clocks and queues, in the same transaction as
// its cursor moves, one created range per clock, listed with test_clock=
// (a clock deleted meanwhile drops its range; a key refused the clocks
// list, 403, leaves them out with a log entry). Clocks created after that
// page are covered by the events. Live keys have no clocks.
//
// GET /v1/prices lists active prices only; prices get a second created
// range listed with active=false, so archived prices (which old
// subscriptions and invoices use) are backfilled too. Prices created
// inline are in neither list; store.Upsert takes them from the
// subscription items, invoice lines and invoice items that embed them.
//
// # Concurrency
//
// One scheduler goroutine owns the queue and launches tasks (one page each)
// up to a worker target sized by Little's law: the effective rate times the
// measured time a request keeps a worker busy (HTTP round trip plus its
// share of the database write), times 1.5, plus 2: task times vary, and a
// worker too few idles the limiter while one too many only waits at it.
// Every request waits at the client's limiter, so more workers never means
// more than the rate.
//
// With live keys the client also limits each endpoint (Stripe allows 25
// requests/s per endpoint, 100/s overall; stripeapi.Limiter), and the
// scheduler caps the tasks in flight per endpoint the same way (Little's
// law at the endpoint's rate): it launches the first queued slice whose
// endpoint is under its cap, so a dominant table, or the per-customer
// lists of payment methods, never takes every worker to wait at one
// endpoint while the other tables' slices wait in the queue. With test
// keys (one limit for all) there is no cap.
//
// # Resumability
//
// What remains to fetch lives in stripe_sync.backfill_slices and is
// rewritten in the same transaction as the rows a page brought: the finished
// slice is deleted (or its cursor moved) and its successors inserted. A
// kill at any moment loses at most the pages in flight; the next Run loads
// the pending slices and continues, without fetching finished ones again.
// Before the first slice, Run records the newest event in
// stripe_sync.cursor (row "events") for the events loop, which replays
// everything after it.
//
// # Objects that are gone
//
// When a table's backfill completes, the rows it did not write (older than
// its planning bound, Stripe's time when it was planned) belong to objects
// that no longer exist: rows restored from a dump of schema stripe without
// stripe_sync, or left from before a --restart or a re-backfill. They are
// removed and tombstoned in the completion's transaction (store.Sweep).
// So are the payment methods and tax ids of deleted customers, which no
// customer's list shows: the events loop removes them with their customer
// (store.Owned), so both paths end with the same rows.
//
// # Rows held by other transactions
//
// A page never waits for a row a user's transaction holds (a psql session
// idle in transaction after SELECT … FOR UPDATE, a long UPDATE): its table
// would not complete, nor serve start the events loop, until that
// transaction ended. A page's transaction first locks the rows it writes
// with SKIP LOCKED (store.LockRows: each object's row, its nested lists'
// rows, and the included tax ids' rows), writes the other objects, and
// queues the held ones in the same transaction in the events loop's
// re-fetch queue (stripe_sync.events_refetch, reason 'locked', due from
// the page's time), with the page's state of the object (held). The loop
// already handles such entries: it checks them without a Stripe request,
// backs off up to 5 s, warns once with the holding backends
// (pg_blocking_pids), and once the lock is gone stores Stripe's current
// state, newer than the page's; if Stripe refuses that re-fetch for good
// (403, another 4xx), it stores the page's state instead (or, when that
// state is of the stored one's second and other, keeps the entry queued
// and says so: sync/events, "Rows held by other transactions"). So the table
// completes while the row is held, the queue is durable (a kill loses
// nothing), and nothing waits before the loop, which runs next anyway.
// A one-shot `pgstripe backfill` has no loop after it: after its pages it
// drains those entries itself (events.DrainHeld) for up to 30 s, and if
// rows are still held then, fails naming them and the holding backends
// (and, apart, those whose rows are free but whose re-fetch Stripe did
// not answer or refused, with its error); they stay queued for the next
// serve. The completion's sweep leaves
// every queued id to its re-fetch (which stores the object, the page's
// state if refused, or removes and tombstones it on a 404; a row the
// page's state was stored for is as new as the sweep's bound, so a later
// sweep keeps it too), and rows it would remove that are held it queues
// the same way instead of waiting, with the sweep's verdict: refused for
// good, the row is removed as the sweep would have, unless a newer state
// was stored meanwhile or the sweep would spare it now (store.Sweep's
// rules, with the run's test clock verdict: a price a stored object
// came to embed, a row on a test clock a refused key could not list).
//
// # State and errors
//
// stripe_sync.objects carries each table's phase (backfilling, then live
// when complete; error with last_error when Stripe refused the list with a
// 4xx other than 429, while the other tables carry on), and stripe_sync.log
// the events backfill_started (its tables, those planned afresh and those
// resumed from an earlier run), backfill_object_complete, backfill_error
// and backfill_complete. 429, 5xx and network errors are retried (by the
// client, then by requeueing the slice) and are never fatal. A transaction that
// Postgres rolls back for a conflict (deadlock, serialization failure, a
// role's lock_timeout: store.Retryable) runs again whole after a backoff
// (store.Retry); other database errors, and a conflict that outlasts the
// retries, end the run; it resumes on the next.
package backfill
