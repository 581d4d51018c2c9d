// Package emulator is a stateful, in-memory Stripe API (version 2023-10-16)
// that stripe-go v76 cannot tell from Stripe for everything pgstripe does.
// It is the Stripe of every test, of `pgstripe demo` and of the benchmarks.
//
// Layers, bottom up:
//
//   - spec.go: the OpenAPI spec and fixtures embedded in stripe-mock, parsed
//     once; routes are the spec's paths, so an unknown path is a 404 and every
//     request is validated (validate.go) against the operation's own schema
//     after stripe-mock's param parsing and coercion. The empty string
//     (key=, Stripe's "unset") is taken at any depth only where that schema
//     takes it (a string without an enum, an enum with "", the unset
//     alternative anyOf [..., enum [""]]), else refused as Stripe does
//     (parameter_invalid_empty, param the form key), arrays, hashes,
//     numbers, booleans and an array's elements included.
//   - store.go: one table per object type. Objects are kept pre-encoded (an
//     unexpanded GET is the stored bytes) in a slice ordered by
//     (created, insertion sequence), so newest-first pages, cursors and
//     created ranges are binary searches; the few fields lists filter on are
//     copied out as keys. Child tables (invoice lines, subscription items)
//     also index children by parent, and tables with a customer field index
//     records by customer (a customer's payment methods or invoices are a page
//     of that slice, not a scan); invoices on a retry schedule are indexed by
//     their subscription too, so a clock's advance finds the retries due
//     without decoding every open invoice at each step; subscriptions are
//     indexed by their test clock and keep the times a step reads (period
//     end, trial end, cancel_at) as keys, so a step decodes only the
//     subscription that acts.
//   - objects.go: objects are built generically from the fixture of their
//     resource plus the request params; expand[] resolves ids in any table.
//   - kinds.go, billing.go, payments.go: per-type behaviour that matters —
//     statuses, totals, nested lists, deletes vs cancels, side effects
//     (a subscription bills its first invoice; finalizing an invoice
//     applies the customer's balance (balance.go) and creates its payment
//     intent, paying it a charge and balance transaction; refunds update
//     the charge) and events with Stripe's type names and
//     previous_attributes. An event is emitted only if Stripe has that
//     type (no invoiceitem.updated, no payment_method.created, none for
//     subscription items, balance transactions or customer balance
//     transactions of their own).
//   - emulator.go: HTTP: auth (sk_/rk_ test and live keys), knobs (latency,
//     rate limit with Stripe's 429: the test-mode rate, live mode four
//     times it, as Stripe's 25 and 100, and in live mode each endpoint
//     (method and path template) also at the test-mode rate, as Stripe's
//     default 25 per endpoint, refused with Stripe-Rate-Limited-Reason
//     endpoint-rate instead of global-rate; injected faults), idempotency keys
//     (at most 255 characters; a replay, 400 idempotency_error on another
//     endpoint or other params, 409 idempotency_key_in_use while the first
//     request still runs — its latency counts as running), the Date header
//     on the emulator's clock, Request-Id, and errors with doc_url and a
//     request_log_url naming the request; admin.go serves the knobs as JSON
//     under /_emulator/.
//   - seed.go: a deterministic dataset around N customers, produced by
//     replaying API calls with the clock set to each object's `created`.
//     Seeded history has no events.
//
// Running it: `pgstripe emulator [--listen 127.0.0.1:12111] [--seed N]
// [--distribution uniform|spike|same-second] [--latency 250ms|50ms-300ms]
// [--rate-limit N] [--faults F] [--event-delay D]`, then e.g.
// `curl -u sk_test_x: localhost:12111/v1/customers?limit=3`. The same knobs
// at run time, as JSON: GET/POST /_emulator/options ({"latency":
// "50ms-300ms", "rate_limit": 25, "faults": 0.1, "event_delay": "2s"}),
// POST /_emulator/seed ({"customers": 1000, "distribution": "spike"}),
// POST /_emulator/reset, GET/POST /_emulator/clock ({"offset": "720h"};
// forward only, as Stripe's clock: an offset below the current one is a 400),
// GET /_emulator/stats. In Go tests use emulatortest.Start. The emulator
// is for tests and demos: any sk_test_ key is accepted and the admin API
// has no authentication, so it listens on loopback by default and must not
// be exposed; pgstripe serve never serves it.
//
// Faults are split evenly between 500, 503, 429 lock_timeout (stripe-go
// retries these), a dropped connection, a timeout (held until the client
// gives up, at most 10 s, then dropped), and a response lost after the
// request took effect. Rate-limit 429s carry code rate_limit and no
// Stripe-Should-Retry, as in Stripe, so stripe-go does not retry them by
// itself.
//
// Simplifications (by design): one dataset for test and live keys (livemode
// follows the key that created an object); plans and prices are separate
// (plan ids are plan_…); payments succeed unless the payment method or
// source is one of Stripe's declining test cards (declines.go: its
// PaymentMethod or token, or a payment method made of its card number
// or token), each with its error code, decline_code, param and message, the
// failed charge's failure_code, failure_message and outcome
// (issuer_declined, or blocked by Radar), and the intent's
// last_payment_error; other ids containing "chargeDeclined" or
// "chargeCustomerFail" decline generically. The card error is a 402
// card_error; an intent created with confirm=true is kept, and a legacy
// charge too, with its failed charge, as in Stripe; a failed charge can
// be neither captured nor refunded; a declining card other than
// chargeCustomerFail's can't be saved for a customer (the same card
// error, no charge, nothing made or changed): not by
// /v1/payment_methods/{id}/attach, nor a customer created with it as
// payment_method or source, or updated with it as source, nor by POST
// /v1/customers/{customer}/sources, nor a setup intent, which is kept in
// requires_payment_method with last_setup_error and without the payment
// method (setup_intent.setup_failed; the error carries it); a setup
// intent refuses, as attaching does and before the card is checked, a
// payment method of another customer or one that was detached (400,
// nothing made or changed); a card
// number failing the Luhn check makes no payment method
// (incorrect_number); or
// "createDispute" (which succeeds and, once captured, opens a dispute for
// the captured amount, withdrawing it and a $15 fee; submitting evidence
// whose uncategorized_text is winning_evidence or losing_evidence closes
// it at once as won, reinstating the amount (and the fee, for a dispute
// opened before June 17, 2025: Stripe's US pricing since keeps it; its
// counter fee is not modelled), or lost; until it is
// won, a refund of the charge is refused with charge_disputed), and never need
// customer action (3D Secure);
// capture_method=manual (and a charge's capture=false) only authorizes
// until a capture, partial or whole (the rest counts as refunded), or a
// cancel or a refund of the whole amount, which releases it (a partial
// refund of an authorization is refused, as Stripe does); an
// authorization left uncaptured expires seven days after its charge was
// created (its capture_before), at the
// first API request or clock move on or after that time (charge.expired,
// the intent canceled with cancellation_reason automatic);
// payment_behavior=error_if_incomplete refuses (402, nothing created) a first invoice without a payment method or with a
// declining one, and on an update (also by the subscription item
// endpoints) whose invoice is billed at once (always_invoice, a cycle
// reset) and left unpaid, takes the whole update back (its items,
// prorations, invoice, charge and events: pending.go) before answering
// the card error; payment_behavior=pending_if_incomplete on POST
// /v1/subscriptions/{id} (only with the parameters pending updates
// support, not on send_invoice subscriptions, refused on create and on
// the item endpoints) leaves such an update in the subscription's
// pending_update (billing_cycle_anchor, expires_at: 23 hours on, or the
// period's or trial's end if sooner, subscription_items, trial_end,
// trial_from_plan), its items, cycle and status as they were and the
// invoice open (retried as any subscription_update invoice); paying that
// invoice applies it
// (customer.subscription.pending_update_applied), voiding it cancels it
// (customer.subscription.updated), a new pending update replaces it
// (the old invoice voided), and past expires_at (on the test clock, or
// the emulator's clock at the first request after it) or at a schedule's
// phase change its invoice is voided and it is discarded
// (customer.subscription.pending_update_expired); the voided invoice
// stays latest_invoice, and a past_due subscription is settled by the
// invoice before it, paid then or already while the update waited;
// while one waits, other
// changes of the items or cycle are refused with 400; a coupon or promotion code applied to a customer or
// subscription discounts its invoices (one discount per invoice, the
// subscription's before the customer's; a once coupon ends with the first
// invoice it discounts, a repeating one after its months, unnoticed until
// the next invoice), but discounts of invoices, invoice items, checkout
// sessions and subscription schedule phases, and promotion code
// restrictions, are not modelled and refused with 400 rather than ignored
// (so are an invoice line's own tax_amounts);
// tax rates (default_tax_rates, tax_rates) of subscriptions and their
// items, schedule phases, invoices, invoice items and invoice lines are
// checked (an unknown id is 400 resource_missing) and kept as the tax
// rate objects Stripe returns, handed from a schedule's starting phase to
// its subscription, from a subscription to its invoices and from items to
// invoice lines, but no tax is computed: amounts and totals are without
// tax (tax, total_tax_amounts and tax_amounts stay empty), and the
// embedded objects are copies as of when they were set (a tax rate
// archived later still shows active there);
// decimal amounts (decimal.go: unit_amount_decimal of prices, price_data
// and invoice items, a plan's amount_decimal; at most 12 places) are kept
// exactly, without trailing zeros, the integer field null unless the
// amount is whole, and a line bills quantity × unit rounded to the cent,
// halves away from zero, before lines are summed (docs.stripe.com/billing/
// subscriptions/decimal-amounts); tiered prices are not billed;
// a change of an active (or past_due) subscription's items' prices or
// quantities, or an item added or removed, mid-period (POST
// /v1/subscriptions/{id}, /v1/subscription_items, schedule phases) is
// prorated (prorations.go) to the second on the current period, from
// the request's time (its clock's) or proration_date, rounded to the
// nearest cent: create_prorations (the default) makes pending proration
// invoice items (invoiceitem.created) that the upcoming invoice shows and
// the subscription's next renewal bills, always_invoice bills them at
// once (a subscription_update invoice, finalized and paid as a first
// invoice, a failed charge leaving the subscription past_due), none
// makes none; proration amounts are net of the
// subscription's (else the customer's) discount as the request leaves it,
// each item's discount taken as on an invoice of that item alone, then
// prorated (Stripe's classic billing mode), and stay not discountable, so
// an invoice discounts only its other lines; a change to a price of
// another billing period (interval and interval_count of the first item),
// from only free prices to a paid one (unless billing_cycle_anchor=unchanged),
// or billing_cycle_anchor=now on an update resets the billing cycle of an
// active (or past_due) subscription: the anchor and a new period start at
// the change, the unused time of the old items is credited (unless
// proration_behavior=none) and a subscription_update invoice of the new
// period and the pending items is finalized and charged at once, a
// failed charge leaving the subscription past_due (a schedule phase of
// another period entered mid-period does the same; one entered at the
// period's end is billed by that renewal); a subscription keeps at
// least one item (removing its last one is refused with 400, Stripe's
// docs being silent), and its prices one currency, interval and
// interval_count, as before flexible billing mode (billing.go,
// mixedItems: a create, update, item endpoint request or schedule phase
// that would mix them is refused with 400 and changes nothing); an
// update's trial_end (trials.go) on a trialing subscription: now ends the
// trial at the request (active, trial_end, anchor and a new period
// starting then, a subscription_update invoice of the new period charged
// at once as a cycle reset's, under the request's payment_behavior, and
// customer.subscription.trial_will_end), a timestamp moves the trial's
// end (trial_end, billing_cycle_anchor and current_period_end, no
// invoice); one not in the future or more than 730 days ahead is refused
// with Stripe's messages; not modelled: a trial's or an incomplete
// subscription's changes (no prorations; billing_cycle_anchor=now on one
// is refused with 400), trial_end on a subscription that is not trialing
// (a trial added to an active one; trial_end=now there changes nothing) or with
// billing_cycle_anchor (refused with 400 on trial_end),
// billing_cycle_anchor=unchanged with a new billing
// period (refused with 400, Stripe's docs being silent),
// proration_details.credited_items (null), the
// upcoming invoice's preview params (subscription_items,
// subscription_proration_date); a negative invoice
// total (a downgrade's) is due 0 and credited to the customer's balance
// at finalization, which the next invoices finalized apply (balance.go:
// customer.balance, starting_balance, ending_balance, customer balance
// transactions, voiding gives back what an invoice applied); a
// subscription's first invoice, its renewals and subscription_update
// invoices take the pending invoice items of the subscription and of no
// subscription;
// subscriptions renew, retry failed renewals and expire only on a test
// clock (SetClockOffset and the admin API's clock move "now" for
// timestamps, event retention, authorization expiry, pending updates'
// expiry and due dates only: a send_invoice subscription off test clocks
// whose latest invoice is open past its due_date on the emulator's clock
// turns past_due, as on a clock below, at the first request or clock
// move on or after it); updating
// the current phase of an active subscription schedule applies it to the
// subscription at once (items matched by price, kept, updated, deleted
// or created; quantities, tax rates, metadata, and the phase's collection_method, description and
// days_until_due), prorated (or its cycle reset, as above) as the request's proration_behavior says (a
// phase entered on a clock: the phase's); a schedule created or updated with phases starting in
// the past starts in the phase current now (no backdated invoice); a
// schedule moves through its phases only on a test clock: advancing the clock starts a not_started schedule, enters each
// next phase at the previous one's end_date (applied as above) and, past
// the last phase, releases the schedule (end_behavior release: status
// released, subscription_schedule.released) or cancels its subscription
// (end_behavior cancel: the schedule completed,
// subscription_schedule.completed); a phase's trial_end, coupon,
// billing_cycle_anchor=phase_start, default_payment_method (checked, as
// below, not applied) and add_invoice_items, the schedule's
// default_settings (the same) and subscription_schedule.expiring are not
// modelled, and schedules off a clock never advance; test clocks
// (clocks.go) are objects with a frozen_time that customers attach to at
// creation, with Stripe's list exclusions, whose objects live on its
// frozen_time (created, and what requests change: canceled_at,
// status_transitions, ...); advancing one does, in time
// order and each at its own moment of the clock, what falls due over the
// advanced time, at a shared moment in this order: schedules' phase
// boundaries (as above), customer.subscription.trial_will_end three days
// before a trial_end, cancel_at (also cancel_at_period_end's: canceled
// with customer.subscription.deleted, no invoice), a send_invoice
// subscription's open latest invoice passing its due_date (past_due,
// with customer.subscription.updated alone: 2023-10-16 has no
// invoice.overdue, and the invoice does not change; paying it makes the
// subscription active again),
// an incomplete subscription 23 hours old (incomplete_expired, with
// canceled_at and ended_at, customer.subscription.updated, then its first
// invoice voided), a failed renewal's retry, and renewals at
// current_period_end, once per period passed: the period
// moves on (a trial's end makes it active) and a subscription_cycle
// invoice bills the new period as a first invoice is billed
// (invoice.created, then customer.subscription.updated), finalized at
// once rather than an hour later (renewSubscription says why), then
// charge_automatically paid with the default payment method, or left
// open with the subscription past_due when the card declines or there
// is none, send_invoice left
// open, due days_until_due later; periods keep to the
// billing_cycle_anchor, the creation or a trial's trial_end, on its day
// of the month or the month's last (an anchor on the 31st renews on
// February 29, then March 31); a failed renewal is dunned as with
// Stripe's default Smart Retries, "8 tries within 2 weeks", taken as 8
// retries evenly spaced over the 14 days after the first attempt (every
// 42 hours: Smart Retries' own timing is not modelled), each with the
// payment method the subscription would be charged with then
// (next_payment_attempt, attempt_count, charge.failed,
// payment_intent.payment_failed, invoice.payment_failed; with no payment
// method an attempt fails without a charge, and so does one with the
// payment method whose last charge failed with one of Stripe's
// non-retryable decline codes, lost_card, stolen_card, highest_risk_level
// and the rest (declines.go, hardDeclined); a retry that pays makes the
// subscription active again, as paying its latest invoice does; when
// the last fails the subscription is canceled (cancellation_details
// reason payment_failed, customer.subscription.deleted), the setting
// the emulator takes for "canceled or unpaid (depending on your
// subscriptions settings)" (spec, subscription.status): "Cancel the
// subscription" is the Dashboard's default as merchants' guides report
// it (Stripe's pages found don't name one), and there are no settings
// here, so never unpaid; the invoice stays open; a subscription whose
// latest invoice (not void) is paid or uncollectible by then, its
// retries having outlasted a period, is left as it is (Stripe's support,
// "Retry schedules longer than a subscription's billing period");
// canceling a subscription
// in any way stops the automatic collection of the customer's open
// invoices (auto_advance false, no next_payment_attempt,
// invoice.updated), as the spec's cancel says; voiding a past_due
// subscription's invoice or marking it uncollectible makes the
// subscription active when its most recent invoice that is not void is
// then paid or uncollectible, as paying that invoice does (billing.go,
// settleWrittenOff); only renewal and
// subscription_update invoices (a cycle reset's, always_invoice's) are
// retried (not first or one-off ones, nor send_invoice ones, which also
// never go from past_due to canceled or unpaid: the spec's "canceled or
// unpaid if it is still not paid by an additional deadline after that"
// is the Dashboard's "Manage invoices sent to customers" setting, which
// can also leave it past_due, and whose default Stripe's pages found
// don't name; with no settings here it stays past_due); a manual payment attempt after the first leaves attempt_count
// and the schedule alone (spec, invoice.attempt_count); POST
// /v1/invoices/{id}/send finalizes a draft and sends invoice.sent, no
// email (spec: "Requests made in test-mode result in no emails being
// sent, despite sending an invoice.sent event"), and nothing sends it on
// its own (Stripe's automatic emails of finalized send_invoice invoices
// are a setting); a credit note (open or paid invoices only; all of an
// invoice's together at most its total) reduces an open invoice's
// amount_due and amount_remaining (not below 0; its payment intent's
// amount follows) and adds to its
// pre_payment_credit_notes_amount, or a paid one's
// post_payment_credit_notes_amount, with invoice.updated; voiding it
// takes that back (payments.go, creditInvoice; not modelled: an open
// invoice credited to zero turning paid, and the refund or balance credit
// of a post-payment one); pause_collection is ignored by
// renewals; a trial shorter than three days gets no trial_will_end; a
// cancel_at inside a period doesn't shorten or prorate it; an advance
// goes at most two intervals of the clock's shortest renewing
// subscription (advanceLimit); a clock's events are on the emulator's clock (those of its
// advance with no request), and so is the payment side of its invoices
// (payment intents, charges, balance transactions), as in Stripe; a clock
// never deletes itself after deletes_after, and deleting it deletes its
// customers as DELETE /v1/customers would (subscriptions canceled, the
// other objects kept); cards are a customer's sources the legacy way
// (sources.go): saved from Stripe's test tokens (tok_visa, tok_amex, ...,
// the declining ones as above) or a card hash by source on a customer's
// create (its default_source) or update (the new default, replacing and
// deleting the old one, and retrying the latest open invoice of each
// past_due charge_automatically subscription at once, as the spec says),
// or by POST /v1/customers/{customer}/sources (or /cards; the default only
// if there is none), listed, retrieved, updated (name, address, expiry,
// metadata) and deleted there (a deleted default hands over to the most
// recently added card, else null), with customer.source.created, .updated
// and .deleted, customer.updated when default_source changes, and
// customer.sources only when expanded; a card id pays as a payment method
// does (a charge's source, an intent's payment_method, an invoice's
// source, a subscription's default_source before its customer's
// defaults), only for its own customer ("does not have a linked source";
// a subscription's default_source that is not is refused with 400);
// a subscription's or invoice's default_payment_method, as the
// customer's invoice_settings.default_payment_method and a subscription
// schedule's default_settings[default_payment_method] and
// phases[i][default_payment_method] (checked only: a phase's is not
// handed to its subscription), must be a payment method (or saved card)
// attached to its customer (400 resource_missing: "No such
// PaymentMethod" for an unknown id, else "The customer does not have a
// payment method with the ID …"); Stripe's test payment methods
// (pm_card_visa, the declining ones) are refused there too, as Stripe
// does, naming a new pm_ (each use makes a new, unattached payment
// method), and taken as the card they name where a payment takes one
// (an intent's payment_method, an invoice's pay, whose payment_method
// is otherwise held to the same rule before anything is finalized or
// charged: spec, "belonging to the customer associated with the
// invoice"): the intent (created, updated or confirmed with one, or
// paying an invoice) and its charge name a new, stored pm_ of the card, unattached
// and on no list (UnlistedPaymentMethods), whose card the charge's
// payment_method_details describe; an intent's other payment methods
// must exist ("No such PaymentMethod", also on create and update) and belong to
// its customer or to none ("The PaymentMethod … does not belong to the
// Customer you supplied …", or without a customer "The `payment_method`
// parameter supplied … belongs to the Customer …", both before anything
// is charged), and with setup_future_usage (create or confirm) a paid
// intent attaches its payment method to its customer; attaching one (POST
// /v1/payment_methods/pm_card_…/attach, a customer created with
// payment_method=pm_card_…, whose invoice_settings naming it then names
// the copy, a setup intent given one, whose payment_method then names
// the copy, attached if the intent has a customer: savedTestPM) attaches
// a new pm_ of its card that pays, declines or
// disputes as it (payments.go, testPMClone), except the declining ones
// Stripe won't attach (their card error); detaching a payment method
// (or deleting a saved card) that is its customer's
// invoice_settings.default_payment_method clears that
// (customer.updated), while a subscription's or invoice's own
// default_payment_method keeps it and its next payment fails as a
// detached payment method's does (sources.go, handOverDefault);
// a saved card is also a payment method of its card_ id (cardpm.go:
// Stripe's "compatible" cards), a view built from the card, never
// stored: GET /v1/payment_methods/{id} and the customer's retrieve
// answer it (type card, the card's details, name and address as
// billing_details), the customer's payment method lists (type card or
// none, both endpoints, cursors either id) show it among its payment
// methods, Objects("payment_methods") has it, and it may be its
// customer's invoice_settings.default_payment_method; its changes come as
// the card's customer.source.* events, also when made through the Payment
// Methods API, which changes the card: an update sets its name and
// address (billing_details), expiry (card[exp_month], card[exp_year]) and
// metadata (billing_details' email and phone, which a card can't hold,
// are refused with 400), attaching it to its own customer changes
// nothing and to another is refused as for any attached payment method,
// and detaching it deletes the card as the Sources API's delete does,
// with payment_method.detached besides (the answer: the view with
// customer null; a retrieve then is 404); a deleted customer's cards go
// with it, without events; a charge
// describes the card it used (payment_method_details.card from the saved
// card, payment method, token or test card; source is the card object
// when a card_ paid), and a payment that names no card uses what the spec
// says: the Charges API and an intent confirmed without one the
// customer's default_source ("Cannot charge a customer that has no
// active card" without it), an invoice its own default payment method or
// source, then its subscription's, then its customer's
// invoice_settings.default_payment_method and default_source; a token
// with customer, or a card_ without one, is refused as Stripe does; bank accounts,
// Source objects (src_) and POST /v1/tokens are not modelled (400, or 404
// "not implemented"), nor are search endpoints (404).
// Retrieving a deleted customer answers its deleted stub, as Stripe does;
// other deleted objects are 404.
package emulator
