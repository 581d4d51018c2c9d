package stripeapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/logtest"
)

const testKey = "sk_test_supersecretkey123"

func newTestClient(t *testing.T, h http.HandlerFunc, cfg Config) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg.APIKey = testKey
	cfg.BaseURL = srv.URL
	if cfg.RateLimit == 0 && cfg.Limiter == nil {
		cfg.RateLimit = 1000
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	return c
}

func TestRawBodyDateAndRequestID(t *testing.T) {
	body := `{"id":"cus_1","object":"customer","metadata":{"b":"2","a":"1"},"x":1.50}`
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer "+testKey {
			t.Errorf("Authorization = %q", got)
		}
		if got := r.Header.Get("Stripe-Version"); got != "2023-10-16" {
			t.Errorf("Stripe-Version = %q", got)
		}
		if r.URL.Query().Get("expand[]") != "x" {
			t.Errorf("query = %q", r.URL.RawQuery)
		}
		w.Header().Set("Date", "Mon, 23 Nov 2026 10:00:07 GMT")
		w.Header().Set("Request-Id", "req_abc")
		fmt.Fprint(w, body)
	}, Config{})
	resp, err := c.Get(context.Background(), "/v1/customers/cus_1", url.Values{"expand[]": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != body {
		t.Errorf("body changed: %s", resp.Body)
	}
	if want := time.Date(2026, 11, 23, 10, 0, 7, 0, time.UTC); !resp.AsOf.Equal(want) {
		t.Errorf("AsOf = %v, want %v", resp.AsOf, want)
	}
	if resp.RequestID != "req_abc" {
		t.Errorf("RequestID = %q", resp.RequestID)
	}
}

func TestStripeErrorIsTypedAndNotRetried(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Request-Id", "req_bad")
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"parameter_unknown","message":"Received unknown parameter: foo","param":"foo"}}`)
	}, Config{})
	_, err := c.Post(context.Background(), "/v1/customers", url.Values{"foo": {"1"}}, "")
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %T %v", err, err)
	}
	if se.HTTPStatus != 400 || se.Type != "invalid_request_error" || se.Code != "parameter_unknown" ||
		se.Param != "foo" || se.RequestID != "req_bad" || !strings.Contains(se.Message, "unknown parameter") {
		t.Errorf("error = %+v", se)
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls, want 1 (4xx is not retried)", calls.Load())
	}
	if Retryable(err) {
		t.Error("400 reported retryable")
	}
	if strings.Contains(err.Error(), testKey) {
		t.Error("error text contains the key")
	}
}

func TestRetries429And5xxWithOneIdempotencyKey(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	keys := map[string]bool{}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		mu.Lock()
		keys[r.Header.Get("Idempotency-Key")] = true
		mu.Unlock()
		switch n {
		case 1:
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"}}`)
		case 2:
			w.WriteHeader(502)
			fmt.Fprint(w, `<html>bad gateway</html>`)
		case 3:
			w.WriteHeader(503)
			fmt.Fprint(w, `{"error":{"type":"api_error","message":"try later"}}`)
		default:
			fmt.Fprint(w, `{"id":"cus_9","object":"customer"}`)
		}
	}, Config{RateLimit: 100})
	resp, err := c.Post(context.Background(), "/v1/customers", url.Values{"email": {"a@b.c"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 4 {
		t.Errorf("%d calls, want 4", calls.Load())
	}
	if len(keys) != 1 || keys[""] {
		t.Errorf("idempotency keys across retries: %v (want one, non-empty)", keys)
	}
	if resp.Attempts != 4 || resp.Latency <= 0 {
		t.Errorf("attempts %d latency %v", resp.Attempts, resp.Latency)
	}
	if !keys[resp.IdempotencyKey] {
		t.Errorf("response key %q not the one sent", resp.IdempotencyKey)
	}
	if eff := c.Limiter().Effective(); eff >= 100 {
		t.Errorf("effective rate %v after a 429, want < 100", eff)
	}
}

func TestRetriesGiveUpWithLastError(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(500)
		fmt.Fprint(w, `{"error":{"type":"api_error","message":"boom"}}`)
	}, Config{MaxRetries: 3})
	_, err := c.Get(context.Background(), "/v1/customers", nil)
	var se *Error
	if !errors.As(err, &se) || se.HTTPStatus != 500 || !Retryable(err) {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 4 {
		t.Errorf("%d calls, want 1 + 3 retries", calls.Load())
	}
}

func TestNetworkErrorAndKeyNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	c, err := New(Config{APIKey: testKey, BaseURL: "http://127.0.0.1:1", MaxRetries: 2,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = func(context.Context, time.Duration) error { return nil }
	_, err = c.Get(context.Background(), "/v1/customers", nil)
	var ne *NetworkError
	if !errors.As(err, &ne) || !Retryable(err) {
		t.Fatalf("err = %T %v", err, err)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("no retry logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), testKey) || strings.Contains(err.Error(), testKey) {
		t.Error("API key leaked into logs or error")
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New(Config{APIKey: "pk_test_x"}); err == nil {
		t.Error("publishable key accepted")
	}
	if _, err := New(Config{APIKey: testKey, BaseURL: "ftp://x"}); err == nil {
		t.Error("ftp base accepted")
	}
	c, err := New(Config{APIKey: "rk_live_x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Limiter().Rate() != 80 {
		t.Errorf("live default rate %v", c.Limiter().Rate())
	}
	c, _ = New(Config{APIKey: testKey})
	if c.Limiter().Rate() != 20 || c.BaseURL() != DefaultBaseURL {
		t.Errorf("test default rate %v base %s", c.Limiter().Rate(), c.BaseURL())
	}
	if _, err := c.Get(context.Background(), "/v1/customers?limit=3", nil); err == nil {
		t.Error("path with query accepted")
	}
}

func TestListAllPages(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		q := r.URL.Query()
		if q.Get("limit") != "100" {
			t.Errorf("limit = %q", q.Get("limit"))
		}
		switch q.Get("starting_after") {
		case "":
			fmt.Fprint(w, `{"object":"list","data":[{"id":"a","created":3},{"id":"b","created":2}],"has_more":true,"url":"/v1/x"}`)
		case "b":
			fmt.Fprint(w, `{"object":"list","data":[{"id":"c","created":1}],"has_more":false,"url":"/v1/x"}`)
		default:
			t.Errorf("starting_after = %q", q.Get("starting_after"))
		}
	}, Config{})
	var ids []string
	err := c.ListAll(context.Background(), "/v1/x", nil, func(p *Page) error {
		for _, o := range p.Data {
			id, _, err := ObjectHeader(o)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "a,b,c" || calls.Load() != 2 {
		t.Errorf("ids %v after %d calls", ids, calls.Load())
	}
}

type countingObserver struct {
	mu       sync.Mutex
	requests map[string]int
	limited  int
	waits    int
}

func (o *countingObserver) Request(e string, s int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests[fmt.Sprintf("%s %d", e, s)]++
}
func (o *countingObserver) RateLimited(string, string) { o.mu.Lock(); o.limited++; o.mu.Unlock() }
func (o *countingObserver) LimiterWait(Priority, time.Duration) {
	o.mu.Lock()
	o.waits++
	o.mu.Unlock()
}

func TestObserverSeesEveryAttempt(t *testing.T) {
	var calls atomic.Int32
	obs := &countingObserver{requests: map[string]int{}}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(429)
			fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"slow down"}}`)
			return
		}
		fmt.Fprint(w, `{"object":"list","data":[],"has_more":false}`)
	}, Config{Observer: obs})
	if _, err := c.List(context.Background(), "/v1/customers/cus_AbC123/tax_ids", nil); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.requests["GET /v1/customers/{id}/tax_ids 429"] != 1 || obs.requests["GET /v1/customers/{id}/tax_ids 200"] != 1 {
		t.Errorf("requests %v", obs.requests)
	}
	if obs.limited != 1 || obs.waits != 2 {
		t.Errorf("limited %d waits %d", obs.limited, obs.waits)
	}
}

func TestEndpointPattern(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/customers":                        "/v1/customers",
		"/v1/customers/cus_Nx9":                "/v1/customers/{id}",
		"/v1/customers/cus_abc1/tax_ids":       "/v1/customers/{id}/tax_ids",
		"/v1/invoices/in_1AbC/lines":           "/v1/invoices/{id}/lines",
		"/v1/subscription_items":               "/v1/subscription_items",
		"/v1/customers/cus_x1/payment_methods": "/v1/customers/{id}/payment_methods",
		// Stripe counts GET /v1/coupons/{id} for every coupon as one
		// endpoint; coupon ids (Stripe's own "Z4OV52SU" or a caller's
		// "SUMMER25"), and plan and product ids given at creation, have
		// no prefix_.
		"/v1/coupons/Z4OV52SU":                           "/v1/coupons/{id}",
		"/v1/coupons/SUMMER25":                           "/v1/coupons/{id}",
		"/v1/coupons/free-month":                         "/v1/coupons/{id}",
		"/v1/plans/gold":                                 "/v1/plans/{id}",
		"/v1/products/widget":                            "/v1/products/{id}",
		"/v1/products/search":                            "/v1/products/search",
		"/v1/coupons":                                    "/v1/coupons",
		"/v1/customers/cus_X1/sources/card_Y2":           "/v1/customers/{id}/sources/{id}",
		"/v1/invoices/upcoming":                          "/v1/invoices/upcoming",
		"/v1/invoices/upcoming/lines":                    "/v1/invoices/upcoming/lines",
		"/v1/test_helpers/test_clocks/clock_1Ab/advance": "/v1/test_helpers/test_clocks/{id}/advance",
	} {
		if got := EndpointPattern(in); got != want {
			t.Errorf("EndpointPattern(%q) = %q, want %q", in, got, want)
		}
	}
}

// A retry that could not start before the context's deadline is not
// waited for: the caller gets Stripe's last answer (a 500 is 58000 to a
// write-through client), not a timeout that hides it.
func TestRetryStopsBeforeDeadline(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		fmt.Fprint(w, `{"error":{"type":"api_error","message":"boom"}}`)
	}, Config{})
	c.sleep = sleepCtx
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Post(ctx, "/v1/customers", url.Values{"email": {"a@b.c"}}, "")
	var se *Error
	if !errors.As(err, &se) || se.HTTPStatus != 500 {
		t.Fatalf("err = %v, want Stripe's 500", err)
	}
	if d := time.Since(start); d >= 1500*time.Millisecond {
		t.Errorf("returned after %v, at the deadline", d)
	}
}

// refusedURL is an address nothing listens on: every dial is refused.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// A write none of whose attempts got a connection is known not to have
// taken effect, and an interactive one gives up within UnreachedBudget of
// backoff instead of the whole schedule; sync's (background) calls keep it.
func TestRefusedWriteNotSent(t *testing.T) {
	for _, tc := range []struct {
		p        Priority
		attempts int // 0: fewer than the full schedule's
	}{{Interactive, 0}, {Background, 9}} {
		c, err := New(Config{APIKey: testKey, BaseURL: refusedURL(t), RateLimit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var slept time.Duration
		c.sleep = func(ctx context.Context, d time.Duration) error { slept += d; return ctx.Err() }
		_, err = c.Post(WithPriority(context.Background(), tc.p), "/v1/customers/cus_1", nil, "k")
		var ns *NotSentError
		if !errors.As(err, &ns) || !NotSent(err) {
			t.Fatalf("%v: refused call: %T %v, want a NotSentError", tc.p, err, err)
		}
		var ne *NetworkError
		if !errors.As(err, &ne) || !Retryable(err) {
			t.Errorf("%v: the NetworkError is no longer found in %v", tc.p, err)
		}
		switch {
		case tc.attempts != 0 && ns.Attempts != tc.attempts:
			t.Errorf("%v: %d attempts, want %d", tc.p, ns.Attempts, tc.attempts)
		case tc.attempts == 0 && (ns.Attempts < 2 || ns.Attempts >= 9 || slept > UnreachedBudget):
			t.Errorf("%v: %d attempts after %v of backoff, want 2..8 within %v", tc.p, ns.Attempts, slept, UnreachedBudget)
		}
	}
}

// Once an attempt got a connection (the request may have been read), a
// later refused one doesn't make the call "not sent", and the interactive
// call keeps its full schedule: only the idempotent retry can settle it.
func TestReachedThenRefusedIsUncertain(t *testing.T) {
	srv, calls := hangUpServer(t)
	c, err := New(Config{APIKey: testKey, BaseURL: srv.URL, RateLimit: 1000, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = func(ctx context.Context, d time.Duration) error {
		srv.Close() // Stripe goes away after the first attempt
		return ctx.Err()
	}
	_, err = c.Post(WithPriority(context.Background(), Interactive), "/v1/customers/cus_1", nil, "k")
	var ne *NetworkError
	if err == nil || NotSent(err) || !errors.As(err, &ne) {
		t.Fatalf("err = %T %v, want a NetworkError not marked NotSent", err, err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("the last attempt was not refused: %v", err)
	}
	if calls.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", calls.Load())
	}
}

// After "retrying" warnings, the first success logs one Info line; later
// successes and the successes of other requests don't repeat it.
func TestRecoveryLoggedOnce(t *testing.T) {
	var calls atomic.Int32
	var buf logtest.Buffer
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte(`{"id":"cus_1","object":"customer"}`))
	}, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	ctx := context.Background()
	if _, err := c.Get(ctx, "/v1/customers/cus_1", nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Get(ctx, "/v1/customers/cus_1", nil); err != nil {
			t.Fatal(err)
		}
	}
	log := buf.String()
	if n := strings.Count(log, "failed, retrying"); n != 2 {
		t.Fatalf("%d retry warnings, want 2:\n%s", n, log)
	}
	if n := strings.Count(log, "succeed again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, log)
	}
	if !strings.Contains(log, "level=INFO msg=\"stripe requests succeed again\"") {
		t.Errorf("recovery not logged at Info:\n%s", log)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// http.Transport sends a request with an Idempotency-Key on an idle
// connection and, when that fails as the server closes it, redials: a
// refused redial then ends an attempt whose request may have been read.
// The connection it got (GotConn) counts, not the last dial error.
func TestRefusedRedialAfterConnIsSent(t *testing.T) {
	for _, gotConn := range []bool{false, true} {
		c, err := New(Config{APIKey: testKey, BaseURL: "http://127.0.0.1:1", RateLimit: 1000, MaxRetries: -1,
			Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if tr := httptrace.ContextClientTrace(r.Context()); gotConn && tr != nil && tr.GotConn != nil {
					tr.GotConn(httptrace.GotConnInfo{Reused: true})
				}
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
			})})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Post(context.Background(), "/v1/customers", nil, "k")
		if NotSent(err) == gotConn {
			t.Errorf("GotConn %v: NotSent(%v) = %v", gotConn, err, NotSent(err))
		}
	}
}

// hangUpServer reads each request and closes the connection without an
// answer: a request Stripe may have acted on. It counts the requests.
func hangUpServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}
