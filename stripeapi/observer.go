package stripeapi

import (
	"strconv"
	"time"

	"github.com/pgstripe/pgstripe/metrics"
)

// Observer receives one call per HTTP request and per limiter wait. It must
// be cheap and safe for concurrent use.
type Observer interface {
	// Request: endpoint is "METHOD /v1/path/{id}", status 0 for a network
	// error, d the HTTP round trip.
	Request(endpoint string, status int, d time.Duration)
	// RateLimited is called for every 429 of Stripe's rate limit (not
	// for lock_timeout, also a 429: Request has those). reason is its
	// Stripe-Rate-Limited-Reason ("" when absent): with EndpointScoped
	// reasons only that endpoint was over its limit, not the account.
	RateLimited(endpoint, reason string)
	// LimiterWait is how long a request waited for a token.
	LimiterWait(p Priority, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Request(string, int, time.Duration)  {}
func (nopObserver) RateLimited(string, string)          {}
func (nopObserver) LimiterWait(Priority, time.Duration) {}

// Observers fans calls out to several observers.
type Observers []Observer

func (o Observers) Request(e string, s int, d time.Duration) {
	for _, x := range o {
		x.Request(e, s, d)
	}
}

func (o Observers) RateLimited(e, reason string) {
	for _, x := range o {
		x.RateLimited(e, reason)
	}
}

func (o Observers) LimiterWait(p Priority, d time.Duration) {
	for _, x := range o {
		x.LimiterWait(p, d)
	}
}

// PrometheusObserver feeds the collectors of package metrics
// (pgstripe_stripe_requests_total, pgstripe_stripe_rate_limited_total,
// pgstripe_limiter_wait_seconds).
type PrometheusObserver struct{}

func (PrometheusObserver) Request(endpoint string, status int, _ time.Duration) {
	metrics.StripeRequests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
}

func (PrometheusObserver) RateLimited(string, string) { metrics.StripeRateLimited.Inc() }

func (PrometheusObserver) LimiterWait(p Priority, d time.Duration) {
	metrics.LimiterWait.WithLabelValues(p.String()).Observe(d.Seconds())
}
