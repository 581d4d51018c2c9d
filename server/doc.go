// Package server is `pgstripe serve`: one process that migrates the schemas,
// serves the proxy and the metrics endpoint, campaigns for sync leadership
// and, while leader, runs the backfill (where needed) and then the events
// loop. Every instance of a fleet serves the proxy; one runs sync.
//
// Shutdown (context cancelled, i.e. SIGINT/SIGTERM): the proxy stops
// accepting and drains its sessions, sync stops at a transaction boundary
// (its progress is committed with its rows, so a restart resumes), the
// metrics server stops last.
package server
