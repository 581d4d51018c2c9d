// Package leader elects the one pgstripe instance of a fleet that runs sync
// (backfill and events); every instance runs the proxy.
//
// Election goes through Postgres itself: the leader holds a session advisory
// lock on a dedicated connection. When the leader dies (kill -9, lost
// connection) Postgres releases the lock and a follower, polling every
// second, takes over. A leader whose host vanishes without closing its
// connection is ended by Postgres after 10 idle seconds
// (idle_session_timeout; a live leader pings every second), so failover
// never waits for TCP keepalive.
//
// A leader whose sync fails at once (a key Stripe stopped accepting after
// start-up, where serve checks it) resigns and campaigns again after a wait
// that doubles up to a minute.
//
// A deposed leader may not notice at once (a paused process, a half-open
// connection), so each election bumps an epoch in stripe_sync.leader, and
// every transaction that applies sync results calls Fence first: Fence takes
// a share lock on the leader row and fails with ErrDeposed when the epoch has
// moved on. A new leader's epoch update waits for in-flight fenced
// transactions, so no two leaders ever commit applies interleaved.
package leader
