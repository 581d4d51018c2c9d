package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A 200 whose body is cut off by a dropped connection (reset mid-body) is a
// network failure, not an answer: the GET must be retried like any other
// dropped connection instead of failing as a non-retryable "HTTP 200" error.
func TestTruncated200BodyIsRetried(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Error("not hijackable")
				return
			}
			conn, buf, err := hj.Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprint(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"id\":\"cus_1\",\"obj")
			buf.Flush()
			conn.Close()
			return
		}
		fmt.Fprint(w, `{"id":"cus_1","object":"customer"}`)
	}, Config{})
	resp, err := c.Get(context.Background(), "/v1/customers/cus_1", nil)
	if err != nil {
		t.Fatalf("truncated body not retried: %v (retryable %v)", err, Retryable(err))
	}
	if calls.Load() != 2 || resp.Attempts != 2 {
		t.Errorf("calls %d attempts %d, want 2", calls.Load(), resp.Attempts)
	}
}

// Stripe-Should-Retry is honoured also when the error body is not Stripe's
// JSON (the header is there; the body is a proxy's page or empty).
func TestShouldRetryWithNonJSONBody(t *testing.T) {
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Stripe-Should-Retry", "false")
		w.Header().Set("Request-Id", "req_x")
		w.WriteHeader(503)
		fmt.Fprint(w, `<html>unavailable</html>`)
	}, Config{MaxRetries: 3})
	_, err := c.Post(context.Background(), "/v1/customers", nil, "")
	var se *Error
	if !errors.As(err, &se) || se.HTTPStatus != 503 {
		t.Fatalf("err = %T %v", err, err)
	}
	if se.ShouldRetry != "false" || Retryable(err) {
		t.Errorf("ShouldRetry %q, Retryable %v", se.ShouldRetry, Retryable(err))
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls despite Stripe-Should-Retry: false", calls.Load())
	}
}

// Timeout bounds one HTTP attempt; time spent queued at the shared limiter is
// not part of the attempt. A request that waited its turn must not fail (or
// be retried) without ever reaching Stripe.
func TestLimiterWaitNotCountedInTimeout(t *testing.T) {
	// At 2/s the last two wait 1 s and 1.5 s for their tokens, well past the
	// attempt timeout, which still leaves a busy machine time for the round
	// trip itself.
	var calls atomic.Int32
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		fmt.Fprint(w, `{"id":"cus_1","object":"customer"}`)
	}, Config{RateLimit: 2, Timeout: 800 * time.Millisecond, MaxRetries: -1})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Get(context.Background(), "/v1/customers/cus_1", nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if calls.Load() != 4 {
		t.Errorf("%d of 4 requests reached the server", calls.Load())
	}
}

// The attempt timeout still applies once the request is sent: to the headers
// and to the body.
func TestAttemptTimeoutStillApplies(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/slowbody" {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			fmt.Fprint(w, `{"id":`)
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, Config{Timeout: 200 * time.Millisecond, MaxRetries: -1})
	for _, p := range []string{"/v1/slow", "/v1/slowbody"} {
		start := time.Now()
		_, err := c.Get(context.Background(), p, nil)
		var ne *NetworkError
		if !errors.As(err, &ne) || !Retryable(err) {
			t.Errorf("%s: err = %T %v", p, err, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: timeout took %v", p, d)
		}
	}
}

// A retried write whose first attempt took effect but lost its answer gets
// Stripe's idempotent replay: the body is the object as of the first attempt,
// while the Date header is the replay's. AsOf must not claim the replayed
// (older) state is as new as the replay, or the store lets it overwrite a
// change made in between.
func TestIdempotentReplayAsOf(t *testing.T) {
	var calls atomic.Int32
	var stateAt atomic.Int64
	const body = `{"id":"cus_1","object":"customer","name":"v1"}`
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// The write takes effect now; the answer is lost.
			stateAt.Store(time.Now().Unix())
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		time.Sleep(1100 * time.Millisecond) // the replay answers in a later second
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		fmt.Fprint(w, body)
	}, Config{})
	resp, err := c.Post(context.Background(), "/v1/customers/cus_1", nil, "key_1")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempts != 2 {
		t.Fatalf("attempts %d", resp.Attempts)
	}
	if got, want := resp.AsOf.Unix(), stateAt.Load(); got > want {
		t.Errorf("replayed state has AsOf %d, but it was current at %d", got, want)
	}
}

// A replayed create is dated no earlier than the object's created: Stripe
// may have performed the first attempt well after it went out, and a date
// from before then would put a live object before a backfill's bound.
func TestIdempotentReplayAsOfNotBeforeCreated(t *testing.T) {
	var calls atomic.Int32
	var created atomic.Int64
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			time.Sleep(1100 * time.Millisecond) // Stripe is slow to perform it
			created.Store(time.Now().Unix())
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
		fmt.Fprintf(w, `{"id":"cus_1","object":"customer","created":%d}`, created.Load())
	}, Config{})
	resp, err := c.Post(context.Background(), "/v1/customers", nil, "key_2")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempts != 2 {
		t.Fatalf("attempts %d", resp.Attempts)
	}
	if got, want := resp.AsOf.Unix(), created.Load(); got < want {
		t.Errorf("replayed create has AsOf %d, before its created %d", got, want)
	}
}
