// Package sync groups the two halves of pgstripe's Stripe → Postgres
// replication (CONTRACT §4); it holds no code itself.
//
//   - sync/backfill copies every object once, concurrently under the shared
//     rate limit, resumably. Before it fetches anything it records the
//     newest event (stripe_sync.cursor), the handoff point.
//   - sync/events then follows /v1/events from that point forever: it
//     replays what changed during the backfill, re-reads a look-back window
//     for events Stripe lists late, orders states by _as_of (re-fetching
//     what one second can't order), and re-backfills when its cursor falls
//     out of Stripe's 30-day retention.
//
// Both write only through store.Upsert / store.Delete, in transactions
// fenced by the leader epoch (leader.Fence), so one instance of a fleet
// syncs at a time and a deposed one can't write.
package sync
