package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every pgstripe collector.
var Registry = prometheus.NewRegistry()

var (
	StripeRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgstripe_stripe_requests_total",
		Help: "Stripe API requests by endpoint (method and path pattern) and HTTP status (0 = network error).",
	}, []string{"endpoint", "status"})
	StripeRateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pgstripe_stripe_rate_limited_total",
		Help: "Stripe answers with HTTP 429 for its rate limit (not lock_timeout).",
	})
	LimiterWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pgstripe_limiter_wait_seconds",
		Help:    "Time a Stripe request waited for the shared rate limiter, by priority class.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"class"})
	BackfillRows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgstripe_backfill_rows_total",
		Help: "Rows written by the backfill, by table.",
	}, []string{"table"})
	EventsApplied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgstripe_events_applied_total",
		Help: "Stripe events applied, by event type.",
	}, []string{"type"})
	EventLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pgstripe_event_lag_seconds",
		Help:    "Time from an event's creation in Stripe to its application in Postgres.",
		Buckets: []float64{.1, .25, .5, .75, 1, 2, 5, 10, 30, 60, 300},
	})
	EventsPolled = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pgstripe_events_polled_timestamp_seconds",
		Help: "Unix time at which the newest complete poll of Stripe's events began: alert on time() minus it (sync stalled: Stripe unreachable, key revoked, database errors).",
	})
	ProxyConnections = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pgstripe_proxy_connections",
		Help: "Client connections open on the proxy.",
	}, func() float64 {
		if f := proxySessions.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	ProxyConnectionsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pgstripe_proxy_connections_total",
		Help: "Client connections accepted by the proxy.",
	})
	// ProxyStatements counts statements by kind: passthrough (read from the
	// proxy's own counter at scrape time, so the hot path pays one atomic
	// add), write and rejected (counted by the write-through; rejected is
	// a statement refused before any Stripe call: privileges, a failed
	// transaction, a column Stripe doesn't take).
	ProxyStatements = &statements{desc: prometheus.NewDesc("pgstripe_proxy_statements_total",
		"Statements seen by the proxy (simple queries and extended-protocol executions), by kind: passthrough, write, rejected.",
		[]string{"kind"}, nil)}
	WriteThroughSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pgstripe_writethrough_seconds",
		Help:    "Time to execute a write-through statement (Stripe calls, local apply, reply), by table and operation.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"table", "op"})
	SyncLeader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pgstripe_sync_leader",
		Help: "1 when this instance runs sync (holds the leader lock), else 0.",
	})
)

var proxySessions atomic.Pointer[func() int]

// statements is pgstripe_proxy_statements_total.
type statements struct {
	desc            *prometheus.Desc
	write, rejected atomic.Uint64
	passthrough     atomic.Pointer[func() uint64]
	passedOn        atomic.Uint64 // intercepted, then not the write-through's
}

// Inc counts one intercepted statement: kind "write", "rejected", or
// "passthrough" (one that named no stripe table in this session after
// all: an unqualified name that resolves elsewhere, SQL EXECUTE of a read).
func (s *statements) Inc(kind string) {
	switch kind {
	case "rejected":
		s.rejected.Add(1)
	case "passthrough":
		s.passedOn.Add(1)
	default:
		s.write.Add(1)
	}
}

// SetPassthrough names the function counting passed-through statements.
func (s *statements) SetPassthrough(f func() uint64) { s.passthrough.Store(&f) }

func (s *statements) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *statements) Collect(ch chan<- prometheus.Metric) {
	var pass uint64
	if f := s.passthrough.Load(); f != nil {
		pass = (*f)()
	}
	pass += s.passedOn.Load()
	ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(pass), "passthrough")
	ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(s.write.Load()), "write")
	ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(s.rejected.Load()), "rejected")
}

// SetProxySessions names the function that counts open proxy sessions
// (pgstripe_proxy_connections reads it at scrape time).
func SetProxySessions(f func() int) { proxySessions.Store(&f) }

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		StripeRequests, StripeRateLimited, LimiterWait, BackfillRows, EventsApplied, EventLag, EventsPolled,
		ProxyConnections, ProxyConnectionsTotal, ProxyStatements, WriteThroughSeconds, SyncLeader,
	)
}

// Check is one health check: nil means healthy.
type Check func(ctx context.Context) error

// Handler serves /metrics and /healthz. /healthz answers 200 with
// {"status":"ok"} when every check passes, else 503 naming the failures.
func Handler(checks map[string]Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		failures := map[string]string{}
		for name, check := range checks {
			if err := check(ctx); err != nil {
				failures[name] = err.Error()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if len(failures) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]any{"status": "unhealthy", "failures": failures})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"status": "ok"})
	})
	return mux
}
