// Package stripeapi is pgstripe's one way to Stripe: every call of the
// backfill, the events loop and write-through goes through a Client.
//
// A Client wraps stripe-go's backend (so requests carry the Stripe-Version
// stripe-go v76 speaks, its headers and error decoding) pointed at
// STRIPE_API_BASE, but hands objects back as raw JSON: the store keeps
// `_raw` exactly as Stripe sent it. Each Response carries the Date header as
// the Stripe-clock time of the state (DESIGN.md, `_as_of`) and the
// Request-Id; Stripe errors come back as *Error.
//
// All HTTP requests of a process share one Limiter (golang.org/x/time/rate
// underneath), enforced in the http.RoundTripper so nothing bypasses it.
// It has two classes: Interactive (write-through, a client is waiting)
// always gets the next token before Background (sync). With live keys
// each endpoint (method and path template) also has a limiter of its own
// at 20/s, 80% of Stripe's default 25/s per endpoint, waited at before
// the shared one. Rate-limit 429s cut the effective rate (an endpoint's
// 429, Stripe-Rate-Limited-Reason endpoint-*, only that endpoint's;
// lock_timeout 429s none) and it recovers slowly; 429, 409, 5xx and network errors are retried with jittered
// backoff, writes with one idempotency key across retries. A call none
// of whose attempts got a connection (refused, no such host, a proxy down
// or refusing the CONNECT) fails with a *NotSentError: it can't have
// taken effect; an Interactive one gives up after UnreachedBudget of
// backoff. The first success after "retrying" warnings is logged once,
// at Info. The API key is never logged.
package stripeapi
