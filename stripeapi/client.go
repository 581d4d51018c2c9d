package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"
)

// DefaultBaseURL is Stripe's API.
const DefaultBaseURL = "https://api.stripe.com"

// Config configures a Client.
type Config struct {
	// APIKey is the secret or restricted key. It is sent as a Bearer token
	// and never logged or included in errors.
	APIKey string
	// BaseURL is STRIPE_API_BASE (default DefaultBaseURL).
	BaseURL string
	// RateLimit is requests per second for all calls together; 0 means 80%
	// of Stripe's limit for the key's mode (20/s test, 80/s live).
	RateLimit float64
	// EndpointRate is requests per second to one endpoint (method and
	// path template; Limiter.SetEndpointRate). 0 means 80% of Stripe's
	// default endpoint limit of 25/s, so 20/s, for live keys when
	// RateLimit exceeds it; none for test keys (test mode's global limit
	// is the endpoint's: an emulator run at a higher test-mode rate
	// allows it per endpoint too). Negative: none.
	EndpointRate float64
	// Limiter, when set, is used instead of a new one (share one limiter
	// between several clients of the same account); RateLimit and
	// EndpointRate are then the limiter's business.
	Limiter *Limiter
	// MaxRetries bounds the retries of one call on 429, 409, 5xx and network
	// errors (default 8; backoff is jittered, 0.25 s doubling up to 20 s).
	// Negative disables retries.
	MaxRetries int
	// Timeout bounds one HTTP attempt, from when the limiter lets it go
	// until its body is read (default 80 s, as stripe-go).
	Timeout time.Duration
	// Transport is the underlying transport (default http.DefaultTransport).
	Transport http.RoundTripper
	// Observer receives metrics; nil means none.
	Observer Observer
	// Logger receives retry warnings; nil discards them.
	Logger *slog.Logger
}

// Client calls the Stripe API through stripe-go's backend and hands results
// back as raw JSON, exactly as Stripe sent them.
type Client struct {
	key        string
	baseURL    string
	backend    stripe.Backend
	limiter    *Limiter
	maxRetries int
	obs        Observer
	log        *slog.Logger
	// tracedConns: the transport is an *http.Transport, which announces
	// getting a connection (httptrace GetConn) and reports the one it got
	// (GotConn) before writing a request on it; see attempt.notSent.
	tracedConns bool
	// failingSince is when the first "retrying" warning of the current
	// run of failures was logged (UnixNano; 0: none), so that the first
	// success after it is logged once, not every success.
	failingSince atomic.Int64
	// sleep is replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

// KeyMode tells test keys from live keys.
func KeyMode(key string) (live bool, err error) {
	switch {
	case strings.HasPrefix(key, "sk_test_"), strings.HasPrefix(key, "rk_test_"):
		return false, nil
	case strings.HasPrefix(key, "sk_live_"), strings.HasPrefix(key, "rk_live_"):
		return true, nil
	}
	return false, errors.New("stripe API key must start with sk_test_, rk_test_, sk_live_ or rk_live_")
}

// DefaultRate is 80% of Stripe's rate limit for the key's mode.
func DefaultRate(key string) float64 {
	if live, _ := KeyMode(key); live {
		return 80
	}
	return 20
}

// DefaultEndpointRate is 80% of Stripe's default limit per endpoint
// (25 requests/s in either mode; docs.stripe.com/rate-limits).
const DefaultEndpointRate = 20

// New returns a client. It fails only on an unusable configuration.
func New(cfg Config) (*Client, error) {
	if _, err := KeyMode(cfg.APIKey); err != nil {
		return nil, err
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("stripe API base %q is not an http(s) URL", cfg.BaseURL)
	}
	lim := cfg.Limiter
	if lim == nil {
		r := cfg.RateLimit
		if r <= 0 {
			r = DefaultRate(cfg.APIKey)
		}
		lim = NewLimiter(r)
		ep := cfg.EndpointRate
		if live, _ := KeyMode(cfg.APIKey); ep == 0 && live {
			ep = DefaultEndpointRate
		}
		lim.SetEndpointRate(ep)
	}
	maxRetries := cfg.MaxRetries
	switch {
	case maxRetries == 0:
		maxRetries = 8
	case maxRetries < 0:
		maxRetries = 0
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 80 * time.Second
	}
	tr := cfg.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	_, tracedConns := tr.(*http.Transport)
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// No http.Client.Timeout: it would also run while the request queues at
	// the limiter (which can take long when the rate is cut or interactive
	// traffic goes first), failing requests that never reached Stripe. The
	// transport starts the clock once the request may be sent.
	hc := &http.Client{
		Transport: &limitedTransport{base: tr, limiter: lim, obs: obs, timeout: timeout},
	}
	// stripe-go's own retries are off: they sleep without watching the
	// context, never retry rate-limit 429s, and would pick a new idempotency
	// key per call. Retrying here keeps one key per logical call. Should
	// anyone turn them on, they still pass through limitedTransport.
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(base),
		HTTPClient:        hc,
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	return &Client{
		key:         cfg.APIKey,
		baseURL:     base,
		backend:     backend,
		limiter:     lim,
		maxRetries:  maxRetries,
		obs:         obs,
		log:         logger,
		tracedConns: tracedConns,
		sleep:       sleepCtx,
	}, nil
}

// Limiter is the client's shared limiter.
func (c *Client) Limiter() *Limiter { return c.limiter }

// Live reports whether the client's key is a live-mode key.
func (c *Client) Live() bool {
	live, _ := KeyMode(c.key)
	return live
}

// BaseURL is the API base the client talks to.
func (c *Client) BaseURL() string { return c.baseURL }

// Response is one successful API answer.
type Response struct {
	// Body is the JSON object exactly as Stripe sent it.
	Body json.RawMessage
	// AsOf is the response's Date header: the Stripe-clock second at which
	// the returned state was current (docs/DESIGN.md, _as_of). When the
	// header is missing it is the local time, truncated to the second.
	AsOf time.Time
	// RequestID is Stripe's Request-Id header.
	RequestID string
	// StatusCode is the HTTP status.
	StatusCode int
	// IdempotencyKey is the key a write was sent with.
	IdempotencyKey string
	// Latency is the HTTP round trip of the successful attempt; Waited is
	// the time all attempts spent waiting at the limiter. Callers sizing
	// their concurrency by Little's law need the two apart.
	Latency, Waited time.Duration
	// Attempts is 1 plus the retries it took.
	Attempts int

	replayed bool // Idempotent-Replayed: true
}

// Request is one API call.
type Request struct {
	Method string // GET, POST or DELETE
	// Path starts with /v1/; it must not carry a query string.
	Path string
	// Params are query parameters for GET, the form body otherwise, in
	// Stripe's bracketed form (metadata[k], items[0][price], expand[]).
	Params url.Values
	// IdempotencyKey for writes; empty means one is generated, and kept
	// across retries of this call.
	IdempotencyKey string
	// Priority overrides the class marked on the context.
	Priority *Priority
}

// Get retrieves path with query q.
func (c *Client) Get(ctx context.Context, path string, q url.Values) (*Response, error) {
	return c.Do(ctx, Request{Method: http.MethodGet, Path: path, Params: q})
}

// Post sends a write; key may be empty.
func (c *Client) Post(ctx context.Context, path string, body url.Values, idempotencyKey string) (*Response, error) {
	return c.Do(ctx, Request{Method: http.MethodPost, Path: path, Params: body, IdempotencyKey: idempotencyKey})
}

// Delete sends a DELETE.
func (c *Client) Delete(ctx context.Context, path string, body url.Values) (*Response, error) {
	return c.Do(ctx, Request{Method: http.MethodDelete, Path: path, Params: body})
}

// Do performs r, retrying 429, 409, 5xx and network errors with jittered
// backoff. Errors from Stripe are *Error; others wrap the transport error.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?#") {
		return nil, fmt.Errorf("stripe request path %q must start with / and carry no query", r.Path)
	}
	if r.Priority != nil {
		ctx = WithPriority(ctx, *r.Priority)
	}
	var fv *form.Values
	if len(r.Params) > 0 {
		fv = Form(r.Params)
	}
	idem := r.IdempotencyKey
	if idem == "" && method != http.MethodGet {
		idem = stripe.NewIdempotencyKey()
	}
	var waited, backedOff time.Duration
	var firstSent time.Time
	// reached: some attempt may have got to Stripe. Until one does, the
	// call can't have taken effect, and a failure says so (NotSentError).
	reached := false
	for attempt := 0; ; attempt++ {
		resp, at, err := c.once(ctx, method, r.Path, fv, idem)
		waited += at.waited
		if err == nil || !at.notSent(err) {
			reached = true
		}
		fail := func(err error) error {
			if reached {
				return err
			}
			return &NotSentError{Err: err, Attempts: attempt + 1}
		}
		if firstSent.IsZero() && !at.sent.IsZero() {
			// The call can't have taken effect at Stripe before its first
			// attempt went out.
			firstSent = at.sent
		}
		if err == nil {
			if since := c.failingSince.Swap(0); since != 0 {
				c.log.Info("stripe requests succeed again", "method", method, "path", r.Path,
					"failing_for", time.Since(time.Unix(0, since)).Round(time.Millisecond))
			}
			resp.Waited, resp.Attempts = waited, attempt+1
			if resp.replayed {
				// An idempotent replay carries the object as of the attempt
				// that took effect, possibly an earlier one whose answer was
				// lost, while Date is the replay's. Date minus the time since
				// the first attempt went out is a Stripe-clock time no later
				// than that state, so the store never lets it overwrite a
				// change made in between (it may judge it stale instead; the
				// object's event brings it then).
				resp.AsOf = resp.AsOf.Add(-time.Since(firstSent)).Truncate(time.Second)
				// Never before the object was created: the state is at
				// least that recent. Otherwise a create whose first
				// attempt went out before a backfill was planned, and
				// which Stripe performed after it, would be dated before
				// that backfill's bound, outside all its lists: its sweep
				// would take the object for gone.
				var obj struct {
					Created int64 `json:"created"`
				}
				if json.Unmarshal(resp.Body, &obj) == nil && obj.Created > resp.AsOf.Unix() {
					resp.AsOf = time.Unix(obj.Created, 0).UTC()
				}
			}
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fail(ctx.Err())
		}
		if attempt >= c.maxRetries || !Retryable(err) {
			return nil, fail(err)
		}
		d := backoff(attempt, err)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d+max(2*at.latency, 100*time.Millisecond) {
			// No time for another attempt and its answer (as long as
			// twice this one's, at least 100 ms): Stripe's answer says
			// more than the deadline would.
			return nil, fail(err)
		}
		if !reached && PriorityFrom(ctx) == Interactive && backedOff+d > UnreachedBudget {
			// A client waits, and Stripe refuses even the connection:
			// the full schedule (about 40 s) would hold the client for
			// nothing. Nothing was sent, so giving up is safe.
			return nil, fail(err)
		}
		c.log.Warn("stripe request failed, retrying", "method", method, "path", r.Path,
			"attempt", attempt+1, "in", d.Round(time.Millisecond), "err", err)
		c.failingSince.CompareAndSwap(0, time.Now().UnixNano())
		if err := c.sleep(ctx, d); err != nil {
			return nil, fail(err)
		}
		backedOff += d
	}
}

// UnreachedBudget bounds the backoff of an Interactive call none of whose
// attempts could reach Stripe (connection refused, no such host, a proxy
// that is down or refuses the CONNECT to Stripe). Once one attempt may
// have reached Stripe, the call keeps the full retry schedule: retrying
// with its idempotency key is what settles its outcome.
const UnreachedBudget = 5 * time.Second

// attempt carries what the transport saw back to Do, since stripe-go turns
// a non-JSON error body into a plain error without the status.
type attempt struct {
	status  int
	header  http.Header
	latency time.Duration
	waited  time.Duration
	sent    time.Time // when the limiter let the request go (zero if it never did)
	// bodyErr is the error reading the response body failed with (the
	// connection dropped mid-body): the answer never fully arrived.
	bodyErr error
	// connected: the transport got a connection for the request
	// (httptrace GotConn), so bytes of it may have been sent.
	connected atomic.Bool
	// getConn: the transport started getting a connection of its own
	// (httptrace GetConn); see notSent.
	getConn atomic.Bool
	// tracedConns: the transport reports GotConn before it writes (see
	// Client.tracedConns).
	tracedConns bool
}

// notSent reports whether the attempt, which failed with err, certainly
// sent nothing to Stripe: the limiter never let it go, or no connection
// was had for it. A transport that reuses a connection and redials after
// a failure on it reports GotConn for the first, so a refused redial still
// counts as sent.
//
// Behind an HTTP(S) proxy, an https request gets its connection only once
// the proxy has accepted the CONNECT and the TLS handshake with Stripe is
// done: a proxy that is down fails the dial ("proxyconnect" *net.OpError),
// one that can't reach Stripe answers the CONNECT with 502/503/504, which
// net/http turns into a bare error with the status text and no GotConn.
// Neither sent anything to Stripe. A plain-http request goes to the proxy
// on a connection of its own (GotConn), so the proxy's 502 to it may come
// after Stripe read it: sent.
func (at *attempt) notSent(err error) bool {
	if at.sent.IsZero() {
		return true
	}
	if at.connected.Load() {
		return false
	}
	if at.tracedConns && at.getConn.Load() {
		// http.Transport writes only on a connection it reported; the
		// errors it fails with before having one (a refused CONNECT, a
		// failed TLS handshake, a canceled dial) carry no type to go by.
		// Without GetConn the request went elsewhere: to a protocol
		// registered on the Transport (RegisterProtocol), which reports
		// no connection even when it writes.
		return true
	}
	// Any other transport, or a registered protocol: only errors that
	// can't come after a write.
	var oe *net.OpError
	if errors.As(err, &oe) && (oe.Op == "dial" || oe.Op == "proxyconnect") {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de)
}

type attemptKey struct{}

func (c *Client) once(ctx context.Context, method, path string, fv *form.Values, idem string) (*Response, *attempt, error) {
	at := &attempt{tracedConns: c.tracedConns}
	ctx = context.WithValue(ctx, attemptKey{}, at)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { at.getConn.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { at.connected.Store(true) },
	})
	params := &stripe.Params{Context: ctx}
	if idem != "" {
		params.IdempotencyKey = stripe.String(idem)
	}
	var raw rawResult
	err := c.backend.CallRaw(method, path, c.key, fv, params, &raw)
	if err != nil {
		return nil, at, c.convertError(err, at)
	}
	if raw.resp == nil {
		return nil, at, errors.New("stripe: empty response")
	}
	return &Response{
		Latency:        at.latency,
		Body:           json.RawMessage(raw.resp.RawJSON),
		AsOf:           dateOf(raw.resp.Header),
		RequestID:      raw.resp.RequestID,
		StatusCode:     raw.resp.StatusCode,
		IdempotencyKey: idem,
		replayed:       raw.resp.Header.Get("Idempotent-Replayed") == "true",
	}, at, nil
}

func dateOf(h http.Header) time.Time {
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		return t.UTC()
	}
	return time.Now().UTC().Truncate(time.Second)
}

// rawResult keeps stripe-go from decoding the body: the store needs the
// object byte for byte.
type rawResult struct{ resp *stripe.APIResponse }

func (r *rawResult) SetLastResponse(resp *stripe.APIResponse) { r.resp = resp }
func (r *rawResult) UnmarshalJSON([]byte) error               { return nil }

func (c *Client) convertError(err error, at *attempt) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		e := &Error{
			HTTPStatus:  se.HTTPStatusCode,
			Type:        string(se.Type),
			Code:        string(se.Code),
			DeclineCode: string(se.DeclineCode),
			Message:     se.Msg,
			Param:       se.Param,
			RequestID:   se.RequestID,
			DocURL:      se.DocURL,
		}
		if se.LastResponse != nil {
			e.ShouldRetry = se.LastResponse.Header.Get("Stripe-Should-Retry")
			e.RateLimitedReason = se.LastResponse.Header.Get("Stripe-Rate-Limited-Reason")
		}
		return e
	}
	if at.bodyErr != nil {
		// Headers came but the body was cut off: as much a network failure
		// as a connection dropped before the headers, whatever the status.
		return &NetworkError{Err: scrubKey(fmt.Errorf("reading HTTP %d response: %w", at.status, at.bodyErr))}
	}
	if at.status != 0 {
		// An error status with a body that is not Stripe's error JSON (a
		// proxy's 502 page, say), or a success whose body is not JSON.
		// Stripe-Should-Retry still counts.
		msg := fmt.Sprintf("HTTP %d with a body that is not a Stripe error", at.status)
		if at.status < 400 {
			msg = fmt.Sprintf("HTTP %d with a body that is not JSON: the request may have taken effect", at.status)
		}
		return &Error{
			HTTPStatus:        at.status,
			Type:              "api_error",
			NotStripe:         true,
			Message:           msg,
			RequestID:         at.header.Get("Request-Id"),
			ShouldRetry:       at.header.Get("Stripe-Should-Retry"),
			RateLimitedReason: at.header.Get("Stripe-Rate-Limited-Reason"),
		}
	}
	return &NetworkError{Err: scrubKey(err)}
}

// scrubKey drops anything that could echo the URL's credentials; stripe-go
// sends the key in a header, but be safe with wrapped url.Errors.
func scrubKey(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, redactURL(ue.URL), ue.Err)
	}
	return err
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(url)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// Error is an error answer from Stripe.
type Error struct {
	HTTPStatus        int
	Type              string // invalid_request_error, api_error, card_error, idempotency_error, rate_limit_error…
	Code              string
	DeclineCode       string
	Message           string
	Param             string
	RequestID         string
	DocURL            string
	ShouldRetry       string // Stripe-Should-Retry header, "" if absent
	RateLimitedReason string // Stripe-Rate-Limited-Reason header on 429
	// NotStripe: the body was not Stripe's JSON (an HTML page, a proxy's
	// answer), so the server may not be Stripe at all.
	NotStripe bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stripe: %s", e.Type)
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	fmt.Fprintf(&b, ": %s", e.Message)
	if e.Param != "" {
		fmt.Fprintf(&b, " [param %s]", e.Param)
	}
	fmt.Fprintf(&b, " (HTTP %d", e.HTTPStatus)
	if e.RequestID != "" {
		fmt.Fprintf(&b, ", request %s", e.RequestID)
	}
	b.WriteString(")")
	return b.String()
}

// NetworkError is a failure to get any HTTP answer (connection refused,
// reset, timeout).
type NetworkError struct{ Err error }

func (e *NetworkError) Error() string { return "stripe: network error: " + e.Err.Error() }
func (e *NetworkError) Unwrap() error { return e.Err }

// NotSentError is a failed call none of whose attempts reached Stripe:
// each failed before a connection was had (refused, no such host, an
// HTTP(S) proxy down or refusing the CONNECT to Stripe) or never left the
// limiter. It can't have taken effect. Err is the last error (a
// *NetworkError, or the context's when it ended first).
type NotSentError struct {
	Err      error
	Attempts int
}

func (e *NotSentError) Error() string {
	return fmt.Sprintf("%v (Stripe not reached in %d attempts)", e.Err, e.Attempts)
}
func (e *NotSentError) Unwrap() error { return e.Err }

// NotSent reports whether err is a call that never reached Stripe (see
// NotSentError).
func NotSent(err error) bool {
	var ns *NotSentError
	return errors.As(err, &ns)
}

// Retryable reports whether err may succeed when the same call is repeated:
// network errors, 429, 409, 5xx, unless Stripe said Stripe-Should-Retry:
// false.
func Retryable(err error) bool {
	var ne *NetworkError
	if errors.As(err, &ne) {
		return true
	}
	var se *Error
	if !errors.As(err, &se) {
		return false
	}
	if se.ShouldRetry == "false" {
		return false
	}
	if se.ShouldRetry == "true" {
		return true
	}
	return se.HTTPStatus == http.StatusTooManyRequests || se.HTTPStatus == http.StatusConflict ||
		se.HTTPStatus >= 500
}

// IsNotFound reports a 404 from Stripe (resource_missing).
func IsNotFound(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.HTTPStatus == http.StatusNotFound
}

// backoff is exponential with full jitter in [d/2, d]: 0.25 s, 0.5 s, 1 s…
// up to 20 s. A 429 starts higher: an immediate retry would hit the same
// rate window (which the limiter is already cutting the rate for), or the
// same lock (lock_timeout) held by another request.
func backoff(attempt int, err error) time.Duration {
	base := 250 * time.Millisecond
	var se *Error
	if errors.As(err, &se) && se.HTTPStatus == http.StatusTooManyRequests {
		base = time.Second
	}
	d := base << min(attempt, 10)
	if d > 20*time.Second {
		d = 20 * time.Second
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
