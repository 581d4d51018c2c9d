// Package pgtest gives tests a real PostgreSQL: one throwaway cluster per test
// binary (started by Main in TestMain) and one fresh database per test (NewDB).
//
// Databases are created from template0 with CREATE DATABASE, which takes a few
// milliseconds, so tests never share state and can run in parallel. The
// cluster is removed when the test binary exits, also when a test panics (see
// package pgcluster).
//
// The cluster runs with pgstripe.local_write = on (Settings), so that
// tests may seed and change stripe.* on any connection, past the guard
// that refuses such writes outside pgstripe's own connections (see
// schema.LocalWriteGuardTrigger). NewGuardedDB gives a database without
// it, as users have theirs, for tests of the guard and of pgstripe's
// writers under it.
package pgtest
