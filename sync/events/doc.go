// Package events keeps the stripe schema current after the backfill by
// following Stripe's /v1/events (CONTRACT §4): it is the replication stream
// of the sync layer, between stripeapi (calls, one shared limiter and,
// with live keys, one per endpoint) and store (the one upsert path with
// the ordering guard and tombstones).
//
// # Handoff and cursor
//
// Before a backfill starts, the newest event and Stripe's clock are recorded
// (EnsureCursor here, or the backfill's own stripe_sync.cursor row
// 'events', which Run adopts when it has no cursor of its own). Run starts
// from there: every event since (and a look-back before) is replayed, so
// nothing that changed during the backfill is lost. Replaying what the
// backfill already saw is harmless: an event's state is as of its created
// second, the backfill's as of its response Date, and the store keeps the
// newer.
//
// The durable position (stripe_sync.events_cursor) is a time, not an event
// id: checked_through is the Date of the first page of the last complete
// poll. Stripe's list is eventually consistent (an event can become
// visible after newer ones), so what a poll reads depends on the rate:
//
//   - while the last 3 s of events fit in one page, every poll re-reads
//     created >= checked_through - 3 s (it costs what any poll costs, and
//     a late event is caught at the next poll);
//   - above that, polls list only the events after the newest one seen
//     (ending_before, paging toward newer ones), and once a second an
//     overlap re-read covers from 3 s before where the previous one began,
//     or the last poll that re-read by time (so overlaps leave no gap
//     however they are scheduled, however long that poll took);
//   - every SweepEvery (default LookBack/2) a sweep re-reads from LookBack
//     (default 60 s) before checked_through.
//
// Re-reads run a page at a time in what is left of each poll cycle
// (overlap first), so a sweep of a busy minute against Stripe's latency
// never delays a poll by more than one request, or by one more cycle
// while its pages hold only events applied already: those cost no
// transaction, and after a burst the head polls caught up with, reading
// them a step each would leave the late events at the window's far end
// waiting for as many steps (seconds each on a loaded machine).
//
// Events already applied are skipped by id: stripe_sync.applied_events is
// written in the apply transaction and pruned past the window, and an
// in-memory copy holds only the window's ids.
//
// # Applying
//
// A batch of new events is applied in one transaction (fenced with the
// leader epoch): the objects, the applied ids, the re-fetch queue, the
// cursor and the status. A crash anywhere re-applies the batch as a whole
// or not at all. Batches need no global order: each object state carries
// _as_of = event.created, the store replaces a row only with a strictly
// newer state, deletes tombstone, so applying events newest-first or
// replaying them changes nothing.
//
// What the guard can't order are two different states of one object in the
// same second (created has one-second resolution). Such an object, found
// inside a batch or reported Ambiguous by the store, is queued in
// stripe_sync.events_refetch and fetched once Stripe's clock (the response
// Date) has passed that second; the fetched state's _as_of is its response
// Date, strictly newer, so it wins. The same queue completes nested lists
// cut at has_more (subscription items, invoice lines) and checkout
// sessions that an event brought before any fetch stored their line items
// (events never carry them; fetches expand them), re-fetches owners
// changed by events of objects not stored (customer.discount.*: the
// customer or subscription, and the redeemed coupon and promotion code,
// whose times_redeemed has no event of its own), a dispute's or a refund's
// charge, and refreshes a customer's upcoming invoice when its
// subscriptions, invoices, invoice items, discount, tax ids or the
// customer itself change (404 removes the row), and re-fetches the draft
// invoices of an updated customer (a draft copies the customer's email,
// name, address… until it is finalized, with no invoice event) and invoice
// items that an invoice took in or let go (Stripe sends no invoice item
// event for that). A draft also shows its customer's tax ids
// (customer_tax_ids), which change with customer.tax_id.* events only;
// as a deleted tax id leaves no row naming its customer, states are
// compared rather than times: after a batch with tax id events (or a
// re-fetch of a tax id), and for each draft a batch stores, a draft whose
// {type, value} set differs from its customer's stored tax ids is
// re-fetched, and so is one whose customer is not stored (a deleted
// customer's drafts keep the tax ids and details it had, while its tax
// ids leave the table with it: nothing to compare with). So is a draft
// the re-fetcher fetched before a change of its customer's tax ids whose
// apply committed first (that apply could not compare it yet).
// A re-fetch Stripe refuses for good (a 4xx a retry can't change; 404
// means gone, above) of an object not held (below) stays queued too,
// 'unresolved', whatever queued it: the row may be stale (a same-second
// tie, a cut list, an event in another API version…), and the table's
// last_error in stripe_sync.status says so ("re-fetch: ", the object, how
// many more of the table, why, what to do) until none is left, each
// retried every 10 minutes; one whose row a newer state took since it was
// queued, or whose object was deleted, is settled then. A 403 (a
// restricted key without the read permission) is taken for the whole
// table's: its re-fetches are answered from it without a request for 10
// minutes. A table not known readable (since the process began, such a
// refusal's end, a 5xx or timeout, or a 403 of a table Stripe answered
// before: the key may have lost the permission while running) is probed
// with one re-fetch, another object than the one refused or failed last
// if one is due, and its other due entries follow in the same drain once
// Stripe answers the probe: a key that can never read a table costs one
// request per 10 minutes, not one per object, an outage one per table
// per drain, and a readable table waits for no further drain
// (refused.go).
// A re-fetch of a charge also lists its refunds, and one of a coupon its
// promotion codes (a used-up coupon deactivates them, with no promotion
// code event). The queue is durable, so a crash loses none of it; an entry
// queued again while its fetch is in flight (queued_at moved) stays for
// another round. An entry leaves the queue only in the transaction that
// writes its row, and a fetched state orders as any other (its response
// Date), so a result may be written late without loss or inversion: at
// the loop's end (shutdown, a lost leadership) fetches under way are cut
// off and stay queued, and those finished but not yet written are written
// then, fenced, within 2 s (as long as the fleet's own last write; with
// Postgres gone they stay queued). A separate goroutine drains the queue
// (8 requests in flight, 6 of one table at most, through the shared
// limiter), so a burst of re-fetches never delays a poll. A drain's batch
// (100) is shared among the tables due, and objects whose re-fetch Stripe
// failed come after the others of their table, so entries Stripe keeps
// failing never fill it; a fetch may outlive its drain, so one table
// whose re-fetches Stripe answers slowly (a 5xx retried for up to a
// minute) delays no other.
//
// # Rows held by other transactions
//
// The loop's transactions run one at a time, so none of them may wait for
// a user's (a psql session idle in transaction after SELECT … FOR UPDATE,
// a long UPDATE): every other object would stop syncing. Each transaction
// first locks the rows it will write with SKIP LOCKED (an object's row,
// its nested lists' rows, and for a deletion the rows it owns); an object
// with a row held elsewhere is not written but queued for re-fetch
// (reason 'locked') in the same transaction, so its event still counts as
// applied, the cursor moves on, and a crash loses nothing. The entry also
// keeps the state left out (events_refetch.held: the event's object, or
// its deletion; the newer one when queued again). The re-fetcher
// checks such entries without a Stripe request and postpones them
// (backoff from the poll interval up to 5 s, doubling once per look at
// the row, not per attempt of a transaction store.Retry runs again);
// once the lock is gone it fetches Stripe's current state, at least as
// new as the event's. A 404 removes the row (tombstoned), as a deletion
// event would: Stripe says the object is gone. A refusal for good (403 of
// a restricted key without retrieve rights, another 4xx that a retry
// can't change) writes the kept state instead, as the event would have
// been without the lock, under the usual ordering guard: nothing newer
// can be had, and nothing is lost (before, the entry was dropped). A kept
// state whose nested list an event cut at has_more gets the rest paged
// from the list's own endpoint. Where it still can't be written exactly
// (that list refused too, or a state of the stored state's own second
// and other: no order can be told, and the re-fetch that tells it
// without a lock is what Stripe refused), nothing is written; the entry
// stays queued (reason 'unresolved', tried again every 10 minutes, or
// at once when the object is queued anew), with a warning and the
// table's last_error in stripe_sync.status ("re-fetch: " and the
// object) until the table has no such entry left. An
// object held 3 s is named in one warning with the backends holding it
// (pg_blocking_pids, found by queueing for the row for at most 500 ms on
// a connection of its own), and an info line when it is synced. Other
// lock waits (LOCK TABLE, a row another transaction is inserting) end
// after lock_timeout 2 s (or the role's, if shorter) and the transaction
// runs again (store.Retry); one that outlasts the retries fails the poll.
// DrainHeld is this re-fetcher restricted to the 'locked' entries, for a
// one-shot backfill (which has no loop to leave them to): it runs until
// none is left or its time is up, logging every 5 s the count by table
// and the backends holding them, and returns what stays queued. An object
// whose rows were free at the last look but whose re-fetch Stripe did not
// answer or refused (5xx, 401, 409, a timeout) is reported with Stripe's
// last error, not as held: no transaction to end would help it; so is an
// unresolved one, and DrainHeld does not wait for those alone.
//
// stripe_sync.status: every table goes live when Run starts (except those
// whose backfill failed: phase error); last_event_at is the newest event
// applied per table; lag_seconds is the age of the newest complete poll
// when the status was written (Stripe's own visibility delay can't be
// seen), and, once no poll has completed for 10 s, its age now (the view
// adds the age of updated_at, which a failing poll leaves alone); a
// failing poll shows in last_error ("events: …") until the next success
// clears it. Metrics: pgstripe_events_applied_total{type},
// pgstripe_event_lag_seconds (commit − event.created, whole seconds, so up
// to 1 s high) and pgstripe_events_polled_timestamp_seconds (when the
// newest complete poll began).
//
// Event routing (RouteEvent) uses data.object.object through
// schema.ByObject; *.deleted removes the row and its children with a
// tombstone, except customer.subscription.deleted, which means canceled
// (the subscription still exists and is updated). Types whose object isn't
// stored are ignored, except a saved card's customer.source.created,
// .updated and .deleted: Stripe's Payment Methods API shows the card as a
// payment method of its card_ id (retrieved, and listed among the
// customer's, so the backfill stores it) and sends no payment_method.*
// event for its creation or change, so these re-fetch it as a payment
// method, or remove its row (sourceRoute). Its detach through the Payment
// Methods API deletes the card and sends payment_method.detached, whose
// object (customer null) Stripe no longer holds: for a card_ (or src_) id
// that event removes the row too.
//
// A customer's deletion (however the sync learns of it: customer.deleted,
// a re-fetch, a backfill's sweep, a write-through) also removes its upcoming
// invoice, its tax ids (deleted with it, tombstoned; Stripe sends no
// customer.tax_id.deleted for them) and its payment methods (store.Owned).
// Stripe keeps those payment methods, still naming the customer, and keeps
// sending their events (mozilla/fxa#12380: card_automatically_updated for
// deleted customers), but lists payment methods per customer only, so no
// backfill could find them again: the tables hold what the lists show, the
// same after events as after a backfill. A payment method or tax id event
// naming a deleted customer is skipped while the customer's tombstone
// stands; after it is pruned, such an event queues the customer's
// re-fetch, whose "deleted" answer removes the row again.
//
// # What has no events
//
// A charge's refund: under 2023-10-16 refund.created and refund.updated
// are sent only for refunds without a charge, and charge.refunded carries
// the charge, which no longer embeds its refunds. charge.refunded queues
// the charge, and every re-fetch of a charge lists its refunds
// (/v1/refunds?charge=…); a refund's later changes come as
// charge.refund.updated, which carries the refund, and re-fetch its charge
// too (a failed refund gives its amount back, with no charge event
// documented).
//
// balance_transactions and checkout_sessions (Stripe has no
// checkout.session.created) are listed by created every BalanceEvery (from
// the last check minus LookBack), and pending balance transactions past their available_on are
// re-fetched, each at most hourly, until they turn available. Gaps,
// documented: a balance transaction changing otherwise is not seen until
// the next backfill; upcoming invoices change with time (proration, clocks) without
// any event and are refreshed only on the events above, and their lines
// beyond the first 10 are not paged (the lines column holds what Stripe
// embeds); an invoice item updated in place sends no event of its own
// (Stripe has no invoiceitem.updated; handled if it comes): on a draft
// invoice its amount or quantity shows in invoice.updated's line and the
// item is re-fetched, but a pending item's change, or a metadata-only
// one, is not seen; nor is a setup intent's update (its metadata or
// description: Stripe has no setup_intent.updated) until the intent's next
// event (succeeded, canceled, …). Events rendered in another API version than
// 2023-10-16 (the account's default at the event's time) are not stored
// as they are: their object is re-fetched.
//
// # Retention
//
// Stripe keeps events 30 days. When the cursor's window reaches past that
// (pgstripe was down), Run calls Config.Backfill for a complete fresh
// backfill, removes (and tombstones) rows the backfill did not write, and
// restarts from the time the re-backfill began; it is durable
// (events_cursor.rebackfill_since), so a crash during it resumes it. Both
// steps are logged in stripe_sync.log (rebackfill_started,
// rebackfill_complete, whose removed counts per table the rows removed).
// A row the backfill's sweep found held by another transaction is left to
// the re-fetcher, which removes it once the lock is gone and logs that
// (swept_removed): the re-backfill waits up to 11 s for such rows, counts
// them among the removed, and lists those still held (held) instead. Without Config.Backfill, Run returns
// ErrCursorExpired for the orchestrator to handle.
package events
