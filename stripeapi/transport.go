package stripeapi

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// limitedTransport makes every HTTP request (whoever issues it, retries
// included) wait at the shared limiter, reports it to the Observer, and
// feeds 429s back into the limiter's adaptive rate.
type limitedTransport struct {
	base    http.RoundTripper
	limiter *Limiter
	obs     Observer
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	p := PriorityFrom(ctx)
	start := time.Now()
	if err := t.limiter.Wait(ctx, p); err != nil {
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

	endpoint := req.Method + " " + EndpointPattern(req.URL.Path)
	sent := time.Now()
	resp, err := t.base.RoundTrip(req)
	status := 0
	now := time.Now()
	if err == nil {
		status = resp.StatusCode
		if at != nil {
			at.status, at.header, at.latency = status, resp.Header, now.Sub(sent)
		}
	}
	t.obs.Request(endpoint, status, now.Sub(sent))
	switch {
	case status == http.StatusTooManyRequests:
		t.limiter.Observe429(now)
		t.obs.RateLimited(endpoint)
	case status > 0 && status < 500:
		t.limiter.ObserveOK(now)
	}
	return resp, err
}

// EndpointPattern replaces object ids in an API path with {id}, so metrics
// have one label per endpoint instead of one per object:
// /v1/customers/cus_123/tax_ids → /v1/customers/{id}/tax_ids.
func EndpointPattern(path string) string {
	parts := strings.Split(path, "/")
	for i, s := range parts {
		if looksLikeID(s) {
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

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

func sortedKeys(v map[string][]string) []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
