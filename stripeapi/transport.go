package stripeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// limitedTransport makes every HTTP request (whoever issues it, retries
// included) wait at its endpoint's limiter (live keys) and then at the
// shared limiter, reports it to the Observer, and feeds rate-limit 429s
// back into the adaptive rate of the limiter they name: an endpoint 429
// the endpoint's, any other the shared one's, a lock_timeout 429 none.
type limitedTransport struct {
	base    http.RoundTripper
	limiter *Limiter
	obs     Observer
	// timeout bounds one attempt from the moment the limiter lets it go
	// until its body is read (0: none).
	timeout time.Duration
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	p := PriorityFrom(ctx)
	start := time.Now()
	endpoint := req.Method + " " + EndpointPattern(req.URL.Path)
	// The endpoint's limiter first: a request it holds back takes no
	// global token meanwhile, which another endpoint's request could use.
	ep := t.limiter.Endpoint(endpoint)
	err := error(nil)
	if ep != nil {
		err = ep.Wait(ctx, p)
	}
	if err == nil {
		err = t.limiter.Wait(ctx, p)
	}
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	waited := time.Since(start)
	t.obs.LimiterWait(p, waited)
	at, _ := ctx.Value(attemptKey{}).(*attempt)
	if at != nil {
		at.waited = waited
	}

	cancel := context.CancelFunc(func() {})
	if t.timeout > 0 {
		var tctx context.Context
		tctx, cancel = context.WithTimeoutCause(ctx, t.timeout, errAttemptTimeout)
		req = req.WithContext(tctx)
	}
	sent := time.Now()
	if at != nil {
		at.sent = sent
	}
	resp, err := t.base.RoundTrip(req)
	status := 0
	now := time.Now()
	if err != nil {
		if ctx.Err() == nil && context.Cause(req.Context()) == errAttemptTimeout {
			err = fmt.Errorf("%w after %v: %w", errAttemptTimeout, t.timeout, err)
		}
		cancel()
	} else {
		status = resp.StatusCode
		if at != nil {
			at.status, at.header, at.latency = status, resp.Header, now.Sub(sent)
		}
		// The attempt lasts until its body is read.
		resp.Body = &attemptBody{ReadCloser: resp.Body, cancel: cancel, at: at}
	}
	t.obs.Request(endpoint, status, now.Sub(sent))
	reason := ""
	if resp != nil {
		reason = resp.Header.Get("Stripe-Rate-Limited-Reason")
	}
	switch {
	case status == http.StatusTooManyRequests && lockTimeout(resp):
		// Stripe answers lock_timeout with 429 when another request or a
		// Stripe process holds the object: the account is not over its
		// rate, so cutting the rate of every call (the sync's, the other
		// clients' writes, through the Observer a fleet's other
		// instances') would only slow them. The call itself is retried
		// as any 429.
		t.limiter.ObserveOK(now)
	case status == http.StatusTooManyRequests && ep != nil && EndpointScoped(reason):
		// Over this endpoint's limit, not the account's: slow the
		// endpoint, and leave every other call its rate.
		ep.Observe429(now)
		t.limiter.ObserveOK(now)
		t.obs.RateLimited(endpoint, reason)
	case status == http.StatusTooManyRequests:
		t.limiter.Observe429(now)
		t.obs.RateLimited(endpoint, reason)
	case status > 0 && status < 500:
		t.limiter.ObserveOK(now)
		if ep != nil {
			ep.ObserveOK(now)
		}
	}
	return resp, err
}

// EndpointScoped reports whether a 429's Stripe-Rate-Limited-Reason names
// a limit of the request's endpoint (endpoint-rate, endpoint-concurrency)
// rather than of the account (global-rate, global-concurrency) or of one
// object (resource-specific) (docs.stripe.com/rate-limits).
func EndpointScoped(reason string) bool {
	return reason == "endpoint-rate" || reason == "endpoint-concurrency"
}

// lockTimeout reports whether resp, a 429, is Stripe's lock_timeout
// rather than its rate limit. The status alone doesn't tell; the error's
// code does, so the start of the body is read and put back for stripe-go.
// A body that can't be read or isn't Stripe's error counts as the rate
// limit: cutting the rate is the safe side.
func lockTimeout(resp *http.Response) bool {
	const peek = 16 << 10 // Stripe's error bodies are a few hundred bytes
	buf, err := io.ReadAll(io.LimitReader(resp.Body, peek))
	rest := io.Reader(resp.Body)
	if err != nil {
		rest = errReader{err}
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), rest), resp.Body}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	return err == nil && json.Unmarshal(buf, &e) == nil && e.Error.Code == "lock_timeout"
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

var errAttemptTimeout = errors.New("stripe request timed out")

// attemptBody is a response body that ends the attempt's timeout context
// once closed, and notes a failed read in the attempt (at, when set), so
// that Do can tell a response cut off mid-body (retryable) from a complete
// one that is not JSON; stripe-go reports both as plain errors.
type attemptBody struct {
	io.ReadCloser
	cancel context.CancelFunc
	at     *attempt
}

func (b *attemptBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.at != nil && b.at.bodyErr == nil {
		b.at.bodyErr = err
	}
	return n, err
}

func (b *attemptBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// EndpointPattern replaces object ids in an API path with {id}, so metrics
// have one label per endpoint instead of one per object:
// /v1/customers/cus_123/tax_ids → /v1/customers/{id}/tax_ids.
func EndpointPattern(path string) string {
	parts := strings.Split(path, "/")
	for i, s := range parts {
		if looksLikeID(s) || (i == 3 && parts[1] == "v1" && choosableIDs[parts[2]] && s != "" && s != "search") {
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

// choosableIDs are the collections whose ids need not look like ids: a
// coupon, plan or product may be created with an id of the caller's
// choosing ("gold", "SUMMER25"), and Stripe's own coupon ids have no
// prefix ("Z4OV52SU"). Left as they are, each such id would be an
// endpoint of its own: a limiter per coupon, none holding the endpoint
// under Stripe's limit, and the limiter's table filled for good. Only
// GET /v1/products/search names an operation in that place.
var choosableIDs = map[string]bool{"coupons": true, "plans": true, "products": true}

// looksLikeID: Stripe ids are prefix_random (cus_…, in_…, si_…); path words
// with underscores (tax_ids, payment_methods, line_items) are lower-case
// without digits.
func looksLikeID(s string) bool {
	if s == "" || s == "v1" {
		return false
	}
	if _, err := strconv.Atoi(s); err == nil {
		return true
	}
	hasUnderscore, hasDigitOrUpper := false, false
	for _, r := range s {
		switch {
		case r == '_':
			hasUnderscore = true
		case r >= '0' && r <= '9', r >= 'A' && r <= 'Z':
			hasDigitOrUpper = true
		}
	}
	return hasUnderscore && hasDigitOrUpper
}
