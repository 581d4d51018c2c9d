package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
)

func TestLimiterRate(t *testing.T) {
	l := NewLimiter(50)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 21; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Wait(context.Background(), Background); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// 21 tokens at 50/s with a burst of 5: 16 more take 0.32 s.
	if d := time.Since(start); d < 300*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("21 tokens at 50/s took %v", d)
	}
}

func TestLimiterInteractiveFirst(t *testing.T) {
	// One token per 200 ms: the reserved token the write may wait for and
	// the six queued background ones (1.2 s) stay far apart even when a
	// busy machine delays each wake-up by a few hundred milliseconds.
	l := NewLimiter(5)
	ctx := context.Background()
	for i := 0; i < burstFor(5); i++ {
		_ = l.Wait(ctx, Background) // drain the burst
	}

	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.Wait(ctx, Background)
			mu.Lock()
			order = append(order, "bg")
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Waiting(Background) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("background requests never queued (%d waiting)", l.Waiting(Background))
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := l.Wait(ctx, Interactive); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	mu.Lock()
	before := len(order)
	mu.Unlock()
	wg.Wait()
	// The write may wait for the one token the dispatcher already reserved,
	// never for the six queued background requests (1.2 s).
	if before > 1 || waited > 700*time.Millisecond {
		t.Errorf("interactive waited %v behind %d background requests", waited, before)
	}
}

func TestLimiterCancel(t *testing.T) {
	l := NewLimiter(1)
	_ = l.Wait(context.Background(), Background)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx, Background); err == nil {
		t.Fatal("wait past deadline succeeded")
	}
	// Without the cancel the wait ends with the next token, a second after
	// the first: half of that tells the two apart on a busy machine.
	if time.Since(start) > 500*time.Millisecond {
		t.Errorf("cancel took %v", time.Since(start))
	}
	// The canceled waiter must not swallow the next token forever.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := l.Wait(ctx2, Interactive); err != nil {
		t.Errorf("next wait: %v", err)
	}
}

func TestLimiterAdapts(t *testing.T) {
	l := NewLimiter(100)
	now := time.Now()
	l.Observe429(now)
	l.Observe429(now.Add(10 * time.Millisecond)) // same overload: counted once
	if got := l.Effective(); got < 69 || got > 71 {
		t.Errorf("after one 429: %v, want 70", got)
	}
	for i := 1; i <= 30; i++ {
		l.Observe429(now.Add(time.Duration(i) * time.Second))
	}
	if got := l.Effective(); got != 10 {
		t.Errorf("floor: %v, want 10", got)
	}
	t0 := now.Add(30 * time.Second)
	l.ObserveOK(t0.Add(500 * time.Millisecond)) // too soon
	if got := l.Effective(); got != 10 {
		t.Errorf("recovered too fast: %v", got)
	}
	for i := 1; i <= 40; i++ {
		l.ObserveOK(t0.Add(time.Duration(i) * time.Second))
	}
	if got := l.Effective(); got != 100 {
		t.Errorf("after recovery: %v, want 100", got)
	}
}

// frontedEmulator serves the emulator behind a handler that answers the
// requests front picks itself (Stripe's answers the emulator gives only
// at random, as injected faults).
func frontedEmulator(t *testing.T, front func(w http.ResponseWriter, r *http.Request) bool) string {
	t.Helper()
	e, err := emulator.New(emulator.Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !front(w, r) {
			e.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(e.Close)
	return srv.URL
}

// A lock_timeout 429 (another request holds the object) is retried, but
// is not the account's rate limit: it must not cut the shared rate, which
// every other call (the sync's, other clients' writes) would pay for.
func TestLockTimeoutDoesNotCutRate(t *testing.T) {
	var locked atomic.Int32
	base := frontedEmulator(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || locked.Add(1) > 3 {
			return false
		}
		// The emulator's own lock_timeout (emulator.go, injected faults).
		w.Header().Set("Request-Id", fmt.Sprintf("req_lock%d", locked.Load()))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"lock_timeout","message":"This object cannot be accessed right now because another API request or Stripe process is currently accessing it."}}`)
		return true
	})
	obs := &countingObserver{requests: map[string]int{}}
	c, err := New(Config{APIKey: "sk_test_review", BaseURL: base, RateLimit: 50, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	resp, err := c.Post(context.Background(), "/v1/customers", url.Values{"email": {"lock@example.com"}}, "")
	if err != nil {
		t.Fatalf("write after lock_timeouts: %v", err)
	}
	if resp.Attempts != 4 {
		t.Errorf("attempts %d, want 4 (3 lock_timeouts retried)", resp.Attempts)
	}
	if id, _ := ObjectID(resp.Body); id == "" {
		t.Errorf("no object: %s", resp.Body)
	}
	if eff := c.Limiter().Effective(); eff != 50 {
		t.Errorf("effective rate %v after lock_timeout 429s, want the configured 50 (not a rate limit)", eff)
	}
	// The Observer's RateLimited is what a fleet shares (fleet.Counter):
	// a lock_timeout must not slow the other instances either.
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.limited != 0 || obs.requests["POST /v1/customers 429"] != 3 {
		t.Errorf("rate-limited %d (want 0), requests %v", obs.limited, obs.requests)
	}
}

// Stripe's rate-limit 429 still cuts the rate, whatever the order of the
// answers around it, and a lock_timeout's body reaches the caller whole.
func TestRateLimit429StillCutsAndLockErrorIsTyped(t *testing.T) {
	var n atomic.Int32
	base := frontedEmulator(t, func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		switch n.Add(1) {
		case 1:
			w.Header().Set("Stripe-Rate-Limited-Reason", "global-rate")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Request rate limit exceeded."}}`)
			return true
		case 2:
			return false
		default:
			w.Header().Set("Request-Id", "req_locked")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"lock_timeout","message":"This object cannot be accessed right now."}}`)
			return true
		}
	})
	obs := &countingObserver{requests: map[string]int{}}
	c, err := New(Config{APIKey: "sk_test_review", BaseURL: base, RateLimit: 50, MaxRetries: -1, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "/v1/customers", nil); err == nil {
		t.Fatal("rate-limited call succeeded with retries off")
	}
	if eff := c.Limiter().Effective(); eff >= 50 {
		t.Fatalf("effective rate %v after a rate-limit 429, want < 50", eff)
	}
	if _, err := c.Get(context.Background(), "/v1/customers", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Post(context.Background(), "/v1/customers", nil, "")
	var se *Error
	if !errors.As(err, &se) || se.HTTPStatus != 429 || se.Code != "lock_timeout" || se.RequestID != "req_locked" || !Retryable(err) {
		t.Fatalf("lock_timeout error = %#v", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.limited != 1 {
		t.Errorf("rate-limited %d, want 1 (the rate_limit 429 only)", obs.limited)
	}
}

// optionsEmulator serves an emulator with opts until the test ends.
func optionsEmulator(t *testing.T, opts emulator.Options) (*emulator.Emulator, string) {
	t.Helper()
	e, err := emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	t.Cleanup(e.Close)
	return e, srv.URL
}

type reasonObserver struct {
	nopObserver
	mu      sync.Mutex
	reasons []string
}

func (o *reasonObserver) RateLimited(endpoint, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reasons = append(o.reasons, endpoint+" "+reason)
}

// TestEndpointRateDefaults: live keys get 80% of Stripe's 25/s per
// endpoint when their rate exceeds it; test keys (Stripe's test-mode
// global limit is the endpoint's) and live keys configured at or below
// it get none.
func TestEndpointRateDefaults(t *testing.T) {
	for _, tc := range []struct {
		key  string
		rate float64
		want float64
	}{
		{"sk_live_review", 0, 20},
		{"rk_live_review", 50, 20},
		{"sk_live_review", 15, 0},
		{"sk_test_review", 0, 0},
		{"sk_test_review", 200, 0},
	} {
		c, err := New(Config{APIKey: tc.key, BaseURL: "http://127.0.0.1:1", RateLimit: tc.rate})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Limiter().EndpointRate(); got != tc.want {
			t.Errorf("%s at %v/s: endpoint rate %v, want %v", tc.key, tc.rate, got, tc.want)
		}
		if got := c.Limiter().Endpoint("GET /v1/customers") != nil; got != (tc.want > 0) {
			t.Errorf("%s at %v/s: endpoint limiter %v", tc.key, tc.rate, got)
		}
	}
}

// TestEndpointRateFollowsShare: a fleet sets each instance's rate to
// its share (SetRate); its endpoints' rate follows in proportion, so the
// instances together stay under Stripe's endpoint limit.
func TestEndpointRateFollowsShare(t *testing.T) {
	l := NewLimiter(80)
	l.SetEndpointRate(20)
	ep := l.Endpoint("GET /v1/customers")
	l.SetRate(40)
	if l.EndpointRate() != 10 || ep.Rate() != 10 || l.Endpoint("GET /v1/prices").Rate() != 10 {
		t.Fatalf("at half the rate: endpoint rate %v, existing limiter %v", l.EndpointRate(), ep.Rate())
	}
	l.SetRate(80)
	if l.EndpointRate() != 20 || ep.Rate() != 20 {
		t.Fatalf("back at the full rate: endpoint rate %v, limiter %v", l.EndpointRate(), ep.Rate())
	}
	if l.Endpoint("GET /v1/customers") != ep {
		t.Fatal("a second limiter for the same endpoint")
	}
}

// TestEndpoint429CutsTheEndpointOnly: Stripe's 429 for one
// endpoint's limit (Stripe-Rate-Limited-Reason endpoint-rate; here the
// emulator's, in live mode) slows that endpoint, not every call: the
// global rate stays, and the Observer hears the reason (a fleet does not
// pass it on). Without an endpoint limiter it cuts the global rate, the
// safe side.
func TestEndpoint429CutsTheEndpointOnly(t *testing.T) {
	// Live mode at RateLimit 1: 4/s globally, 1/s per endpoint.
	_, base := optionsEmulator(t, emulator.Options{RateLimit: 1})
	obs := &reasonObserver{}
	c, err := New(Config{APIKey: "sk_live_review", BaseURL: base, RateLimit: 50, EndpointRate: 40, MaxRetries: -1, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Get(ctx, "/v1/customers", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, "/v1/customers", nil)
	if se, ok := err.(*Error); !ok || se.HTTPStatus != 429 || se.RateLimitedReason != "endpoint-rate" {
		t.Fatalf("second request: %v, want the endpoint's 429", err)
	}
	if eff := c.Limiter().Effective(); eff != 50 {
		t.Errorf("global effective rate %v after an endpoint 429, want 50", eff)
	}
	if eff := c.Limiter().Endpoint("GET /v1/customers").Effective(); eff >= 40 {
		t.Errorf("endpoint effective rate %v after its 429, want < 40", eff)
	}
	if eff := c.Limiter().Endpoint("GET /v1/products").Effective(); eff != 40 {
		t.Errorf("another endpoint's rate %v, want 40", eff)
	}
	obs.mu.Lock()
	if fmt.Sprint(obs.reasons) != "[GET /v1/customers endpoint-rate]" {
		t.Errorf("observer heard %v", obs.reasons)
	}
	obs.mu.Unlock()

	noEP, err := New(Config{APIKey: "sk_live_review", BaseURL: base, RateLimit: 50, EndpointRate: -1, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noEP.Get(ctx, "/v1/customers", nil); err == nil {
		t.Fatal("no 429 from an exhausted endpoint")
	}
	if eff := noEP.Limiter().Effective(); eff >= 50 {
		t.Errorf("without endpoint limiters an endpoint 429 left the rate at %v", eff)
	}
}

// TestEndpointHeldHoldsNoGlobalToken: requests held back by their
// endpoint's limiter do not queue at the global one, so requests to other
// endpoints get the rest of the global rate instead of waiting behind
// them. Global 10/s, 5/s per endpoint: 40 requests to one endpoint (8 s
// of them) and then 10 to five others; those 10 get the other 5/s and
// finish in about 2 s, not after the 40 (4 s at the global rate).
func TestEndpointHeldHoldsNoGlobalToken(t *testing.T) {
	e, base := optionsEmulator(t, emulator.Options{RateLimit: -1})
	c, err := New(Config{APIKey: "sk_live_review", BaseURL: base, RateLimit: 10, EndpointRate: 5})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Get(ctx, fmt.Sprintf("/v1/customers/cus_Review%d", i), nil)
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Limiter().Endpoint("GET /v1/customers/{id}").Waiting(Background)+c.Limiter().Waiting(Background) < 30 {
		if time.Now().After(deadline) {
			t.Fatal("the 40 requests never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	var others sync.WaitGroup
	lists := []string{"products", "prices", "coupons", "tax_rates", "invoices"}
	for i := 0; i < 10; i++ {
		others.Add(1)
		go func() {
			defer others.Done()
			if _, err := c.Get(ctx, "/v1/"+lists[i%len(lists)], nil); err != nil {
				t.Error(err)
			}
		}()
	}
	others.Wait()
	took := time.Since(start)
	cancel()
	wg.Wait()
	if took > 3*time.Second {
		t.Errorf("10 requests to other endpoints took %v behind one endpoint's queue, want about 2 s", took)
	}
	if n := e.Stats().ByRoute["GET /v1/customers/{customer}"]; n > 25 {
		t.Errorf("%d requests to one endpoint in about %v at 5/s", n, took)
	}
}

// TestCouponsShareOneEndpointLimit: requests to several coupons
// wait at one endpoint limiter, so Stripe's (the emulator's, live mode)
// limit of the endpoint GET /v1/coupons/{coupon} is never exceeded.
// Before, each coupon id had a limiter of its own and the requests went
// at the global rate into 429s.
func TestCouponsShareOneEndpointLimit(t *testing.T) {
	// Live mode at RateLimit 3: 12/s globally, 3/s per endpoint.
	e, base := optionsEmulator(t, emulator.Options{RateLimit: 3})
	c, err := New(Config{APIKey: "sk_live_review", BaseURL: base, RateLimit: 12, EndpointRate: 2, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		_, err := c.Get(context.Background(), fmt.Sprintf("/v1/coupons/REVIEW%dX", i), nil)
		if se, ok := err.(*Error); !ok || se.HTTPStatus != 404 {
			t.Fatalf("coupon %d: %v, want No such coupon (404)", i, err)
		}
	}
	if n := e.Stats().ByStatus[429]; n != 0 {
		t.Errorf("%d requests to GET /v1/coupons/{coupon} answered 429", n)
	}
}

// TestShareKeepsEndpointCut: an endpoint's 429 cuts only its
// limiter and no other instance hears of it; a fleet's new share
// (SetRate) scales the endpoint's rate and must keep that cut, not
// start the endpoint at its full rate again.
func TestShareKeepsEndpointCut(t *testing.T) {
	l := NewLimiter(80)
	l.SetEndpointRate(20)
	ep := l.Endpoint("GET /v1/customers/{id}")
	ep.Observe429(time.Now())
	if got := ep.Effective(); got != 14 {
		t.Fatalf("after a 429: %v, want 14", got)
	}
	l.SetRate(40)
	if ep.Rate() != 10 || ep.Effective() != 7 {
		t.Errorf("at half the share: endpoint rate %v effective %v, want 10 and 7 (the cut kept)", ep.Rate(), ep.Effective())
	}
	other := l.Endpoint("GET /v1/prices")
	if other.Effective() != 10 {
		t.Errorf("an endpoint without 429s: %v, want 10", other.Effective())
	}
}
