package backfill_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// endpointTimeline notes when each endpoint's requests reached the
// emulator (a recorder's reject hook that rejects nothing).
type endpointTimeline struct {
	mu    sync.Mutex
	start time.Time
	at    map[string][]time.Duration
}

func (tl *endpointTimeline) note(r *http.Request) (int, string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	ep := r.Method + " " + stripeapi.EndpointPattern(r.URL.Path)
	tl.at[ep] = append(tl.at[ep], time.Since(tl.start))
	return 0, ""
}

// TestLiveKeysEndpointLimits: a backfill with live keys against
// Stripe's live-mode limits (the emulator's: 100/s overall, 25/s per
// endpoint). Its dominant endpoint is the per-customer payment methods
// list (one request per customer: 150 of the run's ~290). The client keeps
// every endpoint at 20/s, so no 429 comes and no endpoint sees more than
// 25 in any second; and the scheduler does not give every worker to that
// endpoint: the other per-customer list (upcoming invoices, queued
// behind it) starts before its 40th request (2 s at 20/s). Before, all
// 80/s went to one endpoint and drew 429s; with the client's endpoint
// limit alone, the workers queued at payment methods while upcoming
// invoices (and the last pages of invoices and invoice items) waited:
// upcoming invoices started about 5 s in, 2 s after the 40th.
func TestLiveKeysEndpointLimits(t *testing.T) {
	v := setup(t, emulator.Options{})
	if err := v.e.Seed(150, "uniform"); err != nil {
		t.Fatal(err)
	}
	v.e.Update(emulator.Options{RateLimit: emulator.DefaultRateLimit, Latency: 100 * time.Millisecond, LatencyMax: 200 * time.Millisecond})
	tl := &endpointTimeline{start: time.Now(), at: map[string][]time.Duration{}}
	v.rec.hooks(nil, tl.note)
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_live_review", BaseURL: v.base})
	if err != nil {
		t.Fatal(err)
	}
	if err := backfill.Run(context.Background(), backfill.Config{Pool: v.pool, Client: c}); err != nil {
		t.Fatal(err)
	}
	v.rec.hooks(nil, nil)
	for _, table := range backfilledTables() {
		v.compare(t, table)
	}
	if n := v.e.Stats().ByStatus[429]; n != 0 {
		t.Errorf("%d requests answered 429", n)
	}

	tl.mu.Lock()
	defer tl.mu.Unlock()
	for ep, a := range tl.at {
		for i := range a {
			j := i
			for j < len(a) && a[j]-a[i] < time.Second {
				j++
			}
			if j-i > emulator.DefaultRateLimit {
				t.Errorf("%s: %d requests within a second from %v", ep, j-i, a[i])
				break
			}
		}
	}
	const dominant, upcoming = "GET /v1/customers/{id}/payment_methods", "GET /v1/invoices/upcoming"
	pm := tl.at[dominant]
	if len(pm) < 150 || len(tl.at[upcoming]) == 0 {
		t.Fatalf("%d payment method lists, %d upcoming invoices", len(pm), len(tl.at[upcoming]))
	}
	by := pm[39]
	if first := tl.at[upcoming][0]; first > by {
		t.Errorf("upcoming invoices started at %v, after the 40th payment methods list (%v)", first, by)
	}
}
