// Package integration holds end-to-end tests: the built pgstripe binary run
// as a user runs it (serve against the emulator and a throwaway Postgres),
// driven by real clients — psql, pgx, pgbench, node-postgres, postgres.js,
// lib/pq and the others TestClients lists.
package integration
