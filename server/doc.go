// Package server is `pgstripe serve`: one process that migrates the schemas,
// serves the proxy and the metrics endpoint, campaigns for sync leadership
// and, while leader, runs the backfill (where needed) and then the events
// loop. Every instance of a fleet serves the proxy; one runs sync.
//
// Before it listens, serve (and Backfill, before it waits for leadership)
// asks Stripe for the newest event: a key Stripe refuses (401, or 403 on
// events) is a configuration error and ends the command. Start-up waits at
// most 3 s for that answer, so a slow or unreachable Stripe never keeps the
// proxy down; a refusal that comes later still stops serve.
//
// Shutdown (context cancelled, i.e. SIGINT/SIGTERM): the proxy stops
// accepting and drains its sessions, sync stops at a transaction boundary
// (its progress is committed with its rows, so a restart resumes), the
// metrics server stops last.
package server
