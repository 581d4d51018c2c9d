// Package verify compares the stripe schema of a database with the objects
// an emulator holds: the check behind every "tables end exact" claim (tests,
// benchmarks, the chaos run). A row is missing when the emulator has the
// object and the table doesn't, extra the other way round, and stale when
// both have it but the row's _raw differs from the object as a GET returns
// it (compared as JSON values), with its included lists whole (a checkout
// session's line_items, which sync asks for on every fetch: Expected).
// Payment methods whose customer was deleted are left out of the
// emulator's side: Stripe keeps them, but on no list, and sync removes
// them with their customer (store.Owned).
package verify
