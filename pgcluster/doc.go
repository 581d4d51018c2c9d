// Package pgcluster starts a throwaway PostgreSQL cluster from the system's
// PostgreSQL binaries in a temporary directory on a free loopback port.
//
// It serves three callers: the tests (through package pgtest), the benchmarks
// and `pgstripe demo`. The cluster is tuned for speed over durability (fsync
// off), so it must never hold data anyone cares about.
//
// When the process runs as root, the server runs as the "postgres" user,
// because PostgreSQL refuses to run as root. The postmaster is started with a
// parent-death signal, so a test binary that panics or is killed does not leave
// a server behind; Start also removes clusters left by dead processes.
package pgcluster
