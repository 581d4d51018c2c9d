// Package integration holds end-to-end tests: the built pgstripe binary run
// as a user runs it (serve against the emulator and a throwaway Postgres),
// driven by real clients — psql, pgx, pgbench and node-postgres.
package integration
