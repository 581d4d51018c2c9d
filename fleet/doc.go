// Package fleet shares one Stripe rate budget among the pgstripe instances
// that point at the same database (and so, by assumption, the same Stripe
// account).
//
// Every instance heartbeats into stripe_sync.instances each second with the
// request rate it used and the time of its last 429. From the others' rows
// each instance sets its own limiter to what is left of the fleet's budget:
//
//	own limit = max(floor, total − Σ others' recent rates − reserve)
//
// where the sync leader keeps a reserve (10% of the budget) free for the
// followers' write-through calls, so a user's INSERT on a follower never waits
// long behind the leader's backfill: within a heartbeat the leader yields what
// the followers use. A 429 seen by any instance is fed to every instance's
// limiter, so the whole fleet slows down together; except a 429 of one
// endpoint's limit (Stripe-Rate-Limited-Reason endpoint-rate), which only
// slows that endpoint in the instance that saw it. With live keys each
// instance also limits every endpoint; SetRate scales that rate with the
// instance's own, so each instance's endpoint rate is its share of the
// fleet's (20/s × own limit / total). Shares follow each instance's
// recent use and may briefly add up to more than the total, so instances
// together can pass Stripe's 25/s on one endpoint for a moment; the 429
// that follows slows that endpoint in the instance that got it.
package fleet
