// Package chaos is pgstripe's reliability run: it checks the contract's
// "kill -9 at any moment, restart, and the tables end exactly equal to
// Stripe" and "a retried call never makes two objects" under the failures
// production sees, all at once.
//
// Run starts a throwaway Postgres (package pgcluster), an in-process
// emulator behind a fault Injector (429, 500, 503, dropped connections,
// timeouts, and a write performed whose response is dropped), and the
// pgstripe binary as a subprocess (`serve`). A random workload (package
// workload, all its operations: every table's objects created, changed
// and deleted) changes things through the Stripe API while writers
// INSERT, UPDATE and DELETE through the proxy. pgstripe is SIGKILLed during the backfill, right
// after Stripe performed a write-through (before pgstripe heard back) and at
// random moments of the events loop, and restarted; Postgres is restarted
// (cleanly, then by a crash). When the load stops and sync catches up, the
// tables are compared with the emulator (package verify) and the emulator's
// customers are grouped by the unique marker each write-through create
// carried: two objects for one marker are a duplicate create.
//
// Options widen the run: several serve instances sharing the database (a
// fleet; kills then hit the sync leader, the instance that made a call, or
// any), an eventually consistent events list, latency, the emulator's own
// rate limit.
//
// The short run is a test (integration/reliability_test.go); the long one is
// `go run ./cmd/pgstripe-bench chaos --kills 20 --faults 0.05`, and its
// figures are in docs/RELIABILITY.md. The Injector is also used on its own
// by tests that need a specific fault on a specific request.
package chaos
