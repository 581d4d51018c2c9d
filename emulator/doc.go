// Package emulator is a stateful, in-memory Stripe API (version 2023-10-16)
// that stripe-go v76 cannot tell from Stripe for everything pgstripe does.
// It is the Stripe of every test, of `pgstripe demo` and of the benchmarks.
//
// Layers, bottom up:
//
//   - spec.go: the OpenAPI spec and fixtures embedded in stripe-mock, parsed
//     once; routes are the spec's paths, so an unknown path is a 404 and every
//     request is validated (validate.go) against the operation's own schema
//     after stripe-mock's param parsing and coercion.
//   - store.go: one table per object type. Objects are kept pre-encoded (an
//     unexpanded GET is the stored bytes) in a slice ordered by
//     (created, insertion sequence), so newest-first pages, cursors and
//     created ranges are binary searches; the few fields lists filter on are
//     copied out as keys. Child tables (invoice lines, subscription items)
//     also index children by parent.
//   - objects.go: objects are built generically from the fixture of their
//     resource plus the request params; expand[] resolves ids in any table.
//   - kinds.go, billing.go, payments.go: per-type behaviour that matters —
//     statuses, totals, nested lists, deletes vs cancels, side effects
//     (a subscription bills its first invoice; paying creates a payment
//     intent, charge and balance transaction; refunds update the charge) and
//     events with Stripe's type names and previous_attributes. An event is
//     emitted only if Stripe has that type (no invoiceitem.updated, no
//     payment_method.created, none for subscription items or balance
//     transactions of their own).
//   - emulator.go: HTTP: auth (sk_/rk_ test and live keys), knobs (latency,
//     rate limit with Stripe's 429, injected faults), idempotency keys, the
//     Date header on the emulator's clock, Request-Id; admin.go serves the
//     knobs as JSON under /_emulator/.
//   - seed.go: a deterministic dataset around N customers, produced by
//     replaying API calls with the clock set to each object's `created`.
//     Seeded history has no events.
//
// Simplifications (by design): one dataset for test and live keys (livemode
// follows the key that created an object); plans and prices are separate
// (plan ids are plan_…); payments always succeed unless the payment method
// or source contains "createDispute", which succeeds and opens a dispute;
// subscription schedules keep no phases; customers on test clocks are not
// modelled.
package emulator
