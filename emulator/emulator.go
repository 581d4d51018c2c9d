package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-mock/param"
	"github.com/stripe/stripe-mock/param/coercer"
	"golang.org/x/time/rate"
)

// APIVersion is the Stripe API version the emulator speaks (that of the
// embedded spec and of stripe-go v76).
const APIVersion = "2023-10-16"

// apiVersionRe is the shape of a Stripe API version: a date, with a
// release name since 2024 (2024-09-30.acacia).
var apiVersionRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$`)

// Options are the emulator's knobs. The zero value is an empty, fast
// emulator with Stripe's default rate limits.
type Options struct {
	RateLimit    int           // test-mode requests/s before 429, live mode four times it (and RateLimit per endpoint); 0 = Stripe's (25, so 100 live); <0 = unlimited
	Latency      time.Duration // fixed added latency, or the minimum when LatencyMax > Latency
	LatencyMax   time.Duration
	Faults       float64       // share of requests answered with a fault: 500, 503, 429 lock_timeout, dropped connection, timeout, or performed but response lost (equal shares)
	EventDelay   time.Duration // max random visibility delay of events
	Seed         int           // customers to seed at start (0 = empty)
	Distribution string        // uniform | spike | same-second
}

// Stats counts requests.
type Stats struct {
	Total    int64            `json:"total"`
	ByRoute  map[string]int64 `json:"by_route"`  // "GET /v1/customers" -> n
	ByStatus map[int]int64    `json:"by_status"` // 200 -> n; 0 = connection dropped (injected)
	Objects  map[string]int   `json:"objects"`   // table -> live objects
	Events   int              `json:"events"`
}

// Emulator is a stateful in-memory Stripe API. It is an http.Handler.
type Emulator struct {
	api *apiSpec

	optMu   sync.Mutex
	opts    Options
	limTest *rate.Limiter
	limLive *rate.Limiter
	// limEndpoint: live mode's per-endpoint buckets ("GET
	// /v1/customers/{customer}"), made on first use at the test-mode rate;
	// nil when unlimited.
	limEndpoint map[string]*rate.Limiter
	rnd         *rand.Rand // knobs' randomness (faults, latency, event delay); guarded by optMu

	offset atomic.Int64 // clock offset in nanoseconds

	mu         sync.RWMutex // guards everything below
	tables     map[string]*table
	seq        uint64
	idRand     *rand.Rand
	idem       map[string]*idemEntry
	seeding    bool                         // suppresses events while seeding
	detached   map[string]bool              // payment methods detached: never attached again
	prePending map[string]string            // a pending update's invoice -> its subscription's latest invoice before it (pending.go)
	pmCards    map[string]*declineCard      // payment methods and cards (sources.go) made of a declining test card number or token
	disputers  map[string]bool              // cards of tok_createDispute: saved, or made for one charge until it is done with them (forgetTokenCard)
	unlisted   map[string]bool              // payment methods made of a test card and never attached: no list or event shows them (testPMClone)
	cardMeta   map[string]cardMeta          // saved cards: what their payment method view shows besides the card (cardpm.go)
	tombstones map[string][]byte            // id -> deleted stub (retrieve of deleted customers, expansion)
	scratch    []byte                       // encoding buffer of store (guarded by mu)
	csItems    map[string][]json.RawMessage // checkout session -> its line items (not part of the session object)
	holds      map[string]int64             // uncaptured charge -> when its authorization expires (capture_before)
	nextHold   atomic.Int64                 // earliest of holds, pending updates and send_invoice due dates off test clocks (pending.go, clocks.go) (MaxInt64: none); read without mu

	idemMu   sync.Mutex
	inflight map[string]bool // API key + idempotency key of POSTs being served

	statMu    sync.Mutex
	total     int64
	byRoute   map[string]int64
	byStatus  map[int]int64
	reqSeq    atomic.Uint64
	reqPrefix string

	closed    chan struct{} // closed by Close: releases requests held by latency or timeout faults
	closeOnce sync.Once
}

// Close releases requests that are being held (latency, injected
// timeouts) so that an http.Server in front of the emulator can shut down
// promptly. The emulator keeps answering new requests.
func (e *Emulator) Close() {
	e.closeOnce.Do(func() { close(e.closed) })
}

type idemEntry struct {
	path   string // the endpoint a key was first used for
	hash   string
	status int
	body   []byte
	at     time.Time
}

// New builds an emulator, seeding it when opts.Seed > 0.
func New(opts Options) (*Emulator, error) {
	api, err := getSpec()
	if err != nil {
		return nil, err
	}
	e := &Emulator{
		api:      api,
		rnd:      rand.New(rand.NewSource(time.Now().UnixNano())),
		idRand:   rand.New(rand.NewSource(time.Now().UnixNano())),
		idem:     map[string]*idemEntry{},
		inflight: map[string]bool{},
		byRoute:  map[string]int64{},
		byStatus: map[int]int64{},
		closed:   make(chan struct{}),
	}
	e.reqPrefix = randAlnum(e.rnd, 6)
	e.reset()
	e.Update(opts)
	if opts.Seed > 0 {
		if err := e.Seed(opts.Seed, opts.Distribution); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// reset empties the store. Callers hold mu (or own e exclusively).
func (e *Emulator) reset() {
	e.tables = map[string]*table{}
	for _, k := range kinds {
		t := newTable(k.table, k.keys, k.indexed...)
		t.keyFunc = k.keyFunc
		e.tables[k.table] = t
	}
	e.idem = map[string]*idemEntry{}
	e.tombstones = map[string][]byte{}
	e.detached = map[string]bool{}
	e.prePending = map[string]string{}
	e.pmCards = map[string]*declineCard{}
	e.disputers = map[string]bool{}
	e.unlisted = map[string]bool{}
	e.cardMeta = map[string]cardMeta{}
	e.csItems = map[string][]json.RawMessage{}
	e.holds = map[string]int64{}
	e.nextHold.Store(math.MaxInt64)
	e.seq = 0
}

// DefaultRateLimit is Stripe's test-mode rate limit (requests/s); live
// mode allows four times it.
const DefaultRateLimit = 25

// Update changes the knobs at run time. Seed and Distribution are ignored
// (use Seed).
func (e *Emulator) Update(o Options) {
	e.optMu.Lock()
	defer e.optMu.Unlock()
	e.opts = o
	// Stripe allows live mode four times test mode's rate (100 and 25
	// requests/s): RateLimit sets test mode's, live mode gets four times it.
	mk := func(scale int) *rate.Limiter {
		n := o.RateLimit
		if n == 0 {
			n = DefaultRateLimit
		}
		if n < 0 {
			return nil
		}
		return rate.NewLimiter(rate.Limit(n*scale), n*scale)
	}
	e.limTest, e.limLive = mk(1), mk(4)
	e.limEndpoint = nil
	if e.limTest != nil {
		e.limEndpoint = map[string]*rate.Limiter{}
	}
}

// endpointLimiter is live mode's bucket of one endpoint: Stripe gives each
// named operation (method and path template, so GET /v1/customers/{id}
// for every id) a default of 25 requests/s, counted besides the global
// limit (docs.stripe.com/rate-limits). Test mode needs none: its global
// limit is the endpoint's, and an endpoint's requests are a subset of all,
// so its bucket would never run dry before the global one. Callers hold
// optMu.
func (e *Emulator) endpointLimiter(endpoint string) *rate.Limiter {
	if e.limEndpoint == nil {
		return nil
	}
	l := e.limEndpoint[endpoint]
	if l == nil {
		n := e.opts.RateLimit
		if n == 0 {
			n = DefaultRateLimit
		}
		l = rate.NewLimiter(rate.Limit(n), n)
		e.limEndpoint[endpoint] = l
	}
	return l
}

func (e *Emulator) options() Options {
	e.optMu.Lock()
	defer e.optMu.Unlock()
	return e.opts
}

// SetClockOffset moves the emulator's "now" by d (relative to the wall
// clock), either way (the admin API only moves it forward, as Stripe's
// clock). Authorizations whose time has come expire at once.
func (e *Emulator) SetClockOffset(d time.Duration) {
	e.offset.Store(int64(d))
	e.releaseDue()
}

// advanceClock sets the clock offset to d unless that moves "now" back
// (d below the current offset), which Stripe's clock never does, and
// returns the offset it found. The admin API's clock moves through it; a
// test in Go may still set any offset (SetClockOffset).
func (e *Emulator) advanceClock(d time.Duration) (cur time.Duration, moved bool) {
	for {
		c := e.offset.Load()
		if int64(d) < c {
			return time.Duration(c), false
		}
		// Compare-and-swap: two moves at once can't leave the earlier.
		if e.offset.CompareAndSwap(c, int64(d)) {
			e.releaseDue()
			return time.Duration(c), true
		}
	}
}

func (e *Emulator) wallNow() int64 { return time.Now().UnixNano() }

// Now is the emulator's clock.
func (e *Emulator) Now() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }

// Stats returns request counters and object counts.
func (e *Emulator) Stats() Stats {
	s := Stats{ByRoute: map[string]int64{}, ByStatus: map[int]int64{}, Objects: map[string]int{}}
	e.statMu.Lock()
	s.Total = e.total
	for k, v := range e.byRoute {
		s.ByRoute[k] = v
	}
	for k, v := range e.byStatus {
		s.ByStatus[k] = v
	}
	e.statMu.Unlock()
	e.mu.RLock()
	for name, t := range e.tables {
		if name == "events" {
			s.Events = len(t.byID)
			continue
		}
		s.Objects[name] = len(t.byID)
	}
	e.mu.RUnlock()
	return s
}

// UnlistedPaymentMethods returns the ids of the payment methods Stripe
// made of one of its test payment methods (pm_card_visa, ...) for a
// payment or setup and never attached to a customer. Stripe lists
// payment methods per customer and announces none of these (no
// payment_method.created), so no sync can know them, though Objects has
// them and a GET answers them.
func (e *Emulator) UnlistedPaymentMethods() map[string]bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[string]bool, len(e.unlisted))
	for id := range e.unlisted {
		out[id] = true
	}
	return out
}

// Objects returns the current objects of a CONTRACT §3 table by id, each as
// an unexpanded GET returns it (read-only: don't modify the bytes). Unknown
// tables give an empty map; "upcoming_invoices" is computed, keyed by
// customer.
func (e *Emulator) Objects(tableName string) map[string]json.RawMessage {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := map[string]json.RawMessage{}
	if tableName == "upcoming_invoices" {
		// Virtual: one per customer with a live subscription, keyed by
		// customer (as in the CONTRACT's table).
		now := e.Now().Unix()
		for cus := range e.tables["customers"].byID {
			if inv, _ := e.upcoming(now, cus, ""); inv != nil {
				b, _ := json.Marshal(inv)
				out[cus] = b
			}
		}
		return out
	}
	t := e.tables[tableName]
	if t == nil {
		return out
	}
	// Stored encodings are never modified in place (a change stores a new
	// slice), so they are shared rather than copied: for a large dataset a
	// copy would double the memory. Callers must not modify them.
	for id, r := range t.byID {
		out[id] = r.raw
	}
	if tableName == "payment_methods" {
		// Saved cards are listed among their customer's payment
		// methods (cardpm.go).
		for id, raw := range e.cardPMs() {
			out[id] = raw
		}
	}
	return out
}

// Included returns every element of the list that a GET of the object id
// of tableName includes when expanded (expand[]=field) and has no table of
// its own: a checkout session's line_items. ok is false for a field the
// emulator has no such list for. Like Objects, for comparisons: no request
// is made, so no latency, fault or rate limit applies.
func (e *Emulator) Included(tableName, id, field string) (items []json.RawMessage, ok bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if tableName != "checkout_sessions" || field != "line_items" {
		return nil, false
	}
	return append([]json.RawMessage(nil), e.csItems[id]...), true
}

// apiError is a Stripe error response.
type apiError struct {
	status      int
	Type        string `json:"type"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message"`
	Param       string `json:"param,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
	Charge      string `json:"charge,omitempty"`
	// PaymentIntent is the intent a card error left behind, as Stripe's
	// error carries it (api_errors.payment_intent).
	PaymentIntent json.RawMessage `json:"payment_intent,omitempty"`
	// SetupIntent is the setup intent a card error left behind
	// (api_errors.setup_intent).
	SetupIntent json.RawMessage `json:"setup_intent,omitempty"`
	shouldRetry string
}

func (a *apiError) Error() string { return a.Message }

func invalid(code, param, format string, args ...any) *apiError {
	return &apiError{status: 400, Type: "invalid_request_error", Code: code, Param: param, Message: fmt.Sprintf(format, args...)}
}

func notFound(param, what, id string) *apiError {
	return &apiError{status: 404, Type: "invalid_request_error", Code: "resource_missing", Param: param,
		Message: fmt.Sprintf("No such %s: '%s'", what, id)}
}

// reqCtx is one API request being served.
type reqCtx struct {
	r         *http.Request
	route     *route
	path      map[string]string
	params    map[string]any
	live      bool
	now       int64
	wall      int64 // emulator time when now is a test clock's (clockNow); events and Date use it
	requestID string
	idemKey   string
	result    map[string]any // the stored object, when a handler has it decoded (saves seeding a decode)
	// schedule is the subscription schedule creating this subscription: set
	// before the subscription is stored, so customer.subscription.created
	// carries it as in Stripe (no later event would).
	schedule string
	// createdEmitted: the create handler stored the object and sent its
	// .created event itself, before events of objects it made for it (an
	// intent confirmed on creation, before its charge's).
	createdEmitted bool
	// card is the card a customer create or update saves from its source
	// param (sources.go): made by the hook, stored around the customer.
	card map[string]any
	// pmClone is the id of the copy of a test payment method
	// (testPMClone) a customer create attaches from its payment_method
	// param: given by the hook, so invoice_settings can name it, and made
	// once the customer is stored.
	pmClone string
	// automatic: a step of a test clock's advance, not a request's doing;
	// a payment attempt it makes is one of the retry schedule's
	// (countsAsAttempt).
	automatic bool
}

// wallTime is the emulator's time of the request.
func (c *reqCtx) wallTime() int64 {
	if c.wall != 0 {
		return c.wall
	}
	return c.now
}

type handlerFunc func(e *Emulator, c *reqCtx) (any, *apiError)

// ServeHTTP serves Stripe's REST API and the admin API under /_emulator/.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := fmt.Sprintf("req_%s%010d", e.reqPrefix, e.reqSeq.Add(1))
	h := w.Header()
	h.Set("Request-Id", reqID)
	h.Set("Date", e.Now().UTC().Format(http.TimeFormat))
	h.Set("Content-Type", "application/json")
	h.Set("Stripe-Version", APIVersion)
	r.URL.Path = strings.ReplaceAll(r.URL.Path, "//", "/")

	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		e.serveAdmin(w, r)
		return
	}

	status, routeName := e.serveAPI(w, r, reqID)
	e.statMu.Lock()
	e.total++
	e.byRoute[routeName]++
	e.byStatus[status]++
	e.statMu.Unlock()
}

// serveAPI returns the status written and the route name for stats.
func (e *Emulator) serveAPI(w http.ResponseWriter, r *http.Request, reqID string) (int, string) {
	live, ok := checkAuth(r)
	routeName := r.Method + " " + r.URL.Path
	logURL := requestLogURL(reqID, live, e.Now().Unix())
	if !ok {
		return writeError(w, logURL, &apiError{status: 401, Type: "invalid_request_error",
			Message: "Invalid API Key provided. Use a key that starts with sk_test_ or rk_test_ (or sk_live_/rk_live_)."}), routeName
	}

	// Stripe refuses a Stripe-Version that isn't a version (stripe-go
	// always sends 2023-10-16; the emulator answers in that version).
	if v := r.Header.Get("Stripe-Version"); v != "" && !apiVersionRe.MatchString(v) {
		return writeError(w, logURL, invalid("", "", "Invalid Stripe API version: %s", v)), routeName
	}

	// Stripe holds an idempotency key while its request runs: the same key
	// arriving meanwhile gets 409 idempotency_key_in_use and nothing is
	// saved for it ("the request conflicts with another that's executing
	// concurrently"). The emulator's run of a request spans its latency,
	// which stands for Stripe's processing time.
	inUse := false
	if k := r.Header.Get("Idempotency-Key"); k != "" && r.Method == http.MethodPost {
		if len(k) > maxIdempotencyKeyLen {
			return writeError(w, logURL, invalid("", "", "Invalid Idempotency-Key: keys can be at most %d characters long, this one has %d.", maxIdempotencyKeyLen, len(k))), routeName
		}
		ik := authKey(r) + "\x00" + k
		e.idemMu.Lock()
		inUse = e.inflight[ik]
		if !inUse {
			e.inflight[ik] = true
		}
		e.idemMu.Unlock()
		if !inUse {
			defer func() {
				e.idemMu.Lock()
				delete(e.inflight, ik)
				e.idemMu.Unlock()
			}()
		}
	}

	// Knobs: latency, rate limit, faults — in Stripe's order of appearance to
	// a client (a slow network, then the limiter, then failures).
	rt, pathParams := e.api.match(r.Method, r.URL.Path)
	o := e.options()
	e.optMu.Lock()
	lat := o.Latency
	if o.LatencyMax > o.Latency {
		lat += time.Duration(e.rnd.Int63n(int64(o.LatencyMax - o.Latency)))
	}
	fault := o.Faults > 0 && e.rnd.Float64() < o.Faults
	faultKind := e.rnd.Intn(6)
	lim := e.limTest
	var limEP *rate.Limiter
	if live {
		lim = e.limLive
		if rt != nil {
			limEP = e.endpointLimiter(r.Method + " " + rt.path)
		}
	}
	e.optMu.Unlock()
	if lat > 0 {
		select {
		case <-time.After(lat):
		case <-r.Context().Done():
			return 499, routeName
		case <-e.closed:
			return 499, routeName
		}
	}
	if inUse {
		return writeError(w, logURL, &apiError{status: 409, Type: "idempotency_error", Code: "idempotency_key_in_use",
			Message: fmt.Sprintf("There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): %s. Please try again later.", r.Header.Get("Idempotency-Key"))}), routeName
	}
	if lim != nil && !lim.Allow() {
		w.Header().Set("Stripe-Rate-Limited-Reason", "global-rate")
		mode := "test"
		if live {
			mode = "live"
		}
		return writeError(w, logURL, &apiError{status: 429, Type: "invalid_request_error", Code: "rate_limit",
			Message: fmt.Sprintf("Request rate limit exceeded. You can make up to %v requests per second in %s mode. Learn more about rate limits here https://stripe.com/docs/rate-limits.", lim.Limit(), mode)}), routeName
	}
	// The global check comes first: a request it refuses takes no token of
	// its endpoint's, one the endpoint refuses has counted globally (as
	// Stripe counts every request against the global limit).
	if limEP != nil && !limEP.Allow() {
		w.Header().Set("Stripe-Rate-Limited-Reason", "endpoint-rate")
		return writeError(w, logURL, &apiError{status: 429, Type: "invalid_request_error", Code: "rate_limit",
			Message: fmt.Sprintf("Request rate limit exceeded for this endpoint (%s %s). You can make up to %v requests per second to an endpoint. Learn more about rate limits here https://stripe.com/docs/rate-limits.", r.Method, rt.path, limEP.Limit())}), routeName
	}
	// Kind 5, a lost response, happens after the request is performed
	// (below); the others before anything is done.
	if fault && faultKind != 5 {
		switch faultKind {
		case 0:
			return writeError(w, logURL, &apiError{status: 500, Type: "api_error", Message: "An unknown error occurred (injected fault)."}), routeName
		case 1:
			return writeError(w, logURL, &apiError{status: 503, Type: "api_error", Message: "The service is temporarily unavailable (injected fault).", shouldRetry: "true"}), routeName
		case 2:
			return writeError(w, logURL, &apiError{status: 429, Type: "invalid_request_error", Code: "lock_timeout",
				Message: "This object cannot be accessed right now because another API request or Stripe process is currently accessing it (injected fault)."}), routeName
		case 3:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return 0, routeName
				}
			}
			return writeError(w, logURL, &apiError{status: 500, Type: "api_error", Message: "An unknown error occurred (injected fault)."}), routeName
		default:
			// A timeout: hold the request until the client gives up (or
			// timeoutHold passes), then drop it. net/http watches for
			// the client closing only once the body has been read to
			// its end: unread, a POST was held for all of timeoutHold,
			// its idempotency key in use, and the client's retries met
			// 409 idempotency_key_in_use for seconds.
			io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<20))
			select {
			case <-r.Context().Done():
			case <-time.After(timeoutHold):
			case <-e.closed:
			}
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
				}
			}
			return 0, routeName
		}
	}

	if rt == nil {
		return writeError(w, logURL, &apiError{status: 404, Type: "invalid_request_error",
			Message: fmt.Sprintf("Unrecognized request URL (%s: %s). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.", r.Method, r.URL.Path)}), routeName
	}
	routeName = r.Method + " " + rt.path
	h := handlers[rt.verb+" "+rt.path]
	if h == nil {
		return writeError(w, logURL, &apiError{status: 404, Type: "invalid_request_error",
			Message: fmt.Sprintf("Unrecognized request URL (%s: %s). The emulator does not implement this endpoint.", r.Method, r.URL.Path)}), routeName
	}
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		if ct := strings.Split(r.Header.Get("Content-Type"), ";")[0]; ct != "" && ct != "application/x-www-form-urlencoded" && ct != "multipart/form-data" {
			return writeError(w, logURL, invalid("", "", "Invalid request: unsupported Content-Type %s. If error persists and you need assistance, please contact support@stripe.com.", ct)), routeName
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<20)
	if ae := checkFormDepth(r); ae != nil {
		return writeError(w, logURL, ae), routeName
	}
	params, err := param.ParseParams(r)
	if err != nil {
		return writeError(w, logURL, invalid("", "", "Invalid request: could not parse parameters: %v", err)), routeName
	}
	if params == nil {
		params = map[string]any{}
	}
	if paramDepth(params, 0) > maxParamDepth {
		return writeError(w, logURL, tooDeep()), routeName
	}
	if rt.reqSchema != nil {
		if err := coercer.CoerceParams(rt.reqSchema, params); err != nil {
			return writeError(w, logURL, invalid("", "", "Invalid request: %v", err)), routeName
		}
		if ae := e.validateParams(rt.reqSchema, params); ae != nil {
			return writeError(w, logURL, ae), routeName
		}
		if p := e.requiredUnset(rt, params); p != "" {
			return writeError(w, logURL, emptyNotAllowed(p)), routeName
		}
	} else if len(params) > 0 {
		for k := range params {
			return writeError(w, logURL, invalid("parameter_unknown", k, "Received unknown parameter: %s", k)), routeName
		}
	}

	// "Expansions have a maximum depth of four levels" (a list's data.
	// counts as one); Stripe refuses the whole request.
	for _, p := range expandsOf(params) {
		if strings.Count(p, ".") >= 4 {
			return writeError(w, logURL, invalid("property_expansion_max_depth", "", "You cannot expand more than 4 levels of a property. Property: %s", p)), routeName
		}
	}

	if p := unmodelledParam(rt.verb+" "+rt.path, params); p != "" {
		what := "this discount"
		if strings.HasPrefix(p, "tax_amounts") {
			what = "a line's own tax amounts"
		}
		return writeError(w, logURL, invalid("", p, "The emulator does not model %s: %s is refused rather than ignored, since Stripe would apply it.", what, p)), routeName
	}

	c := &reqCtx{r: r, route: rt, path: pathParams, params: params, live: live, now: e.Now().Unix(), requestID: reqID,
		idemKey: r.Header.Get("Idempotency-Key")}

	// Idempotency applies to POSTs (Stripe ignores the header on GET, and
	// DELETE is idempotent by nature). Lookup and execution happen under
	// the same write lock, so concurrent requests with one key run once.
	var idemK, idemHash string
	if c.idemKey != "" && r.Method == http.MethodPost {
		w.Header().Set("Idempotency-Key", c.idemKey)
		idemK = authKey(r) + "\x00" + c.idemKey
		sum := sha256.Sum256([]byte(canonical(params)))
		idemHash = hex.EncodeToString(sum[:])
	}
	status, body, replayed := e.execute(h, c, idemK, idemHash)
	if fault && faultKind == 5 {
		// The request took effect but its response never arrives: the
		// case idempotency keys exist for.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return 0, routeName
			}
		}
	}
	// The Date of a response is the emulator-clock time at which its state
	// was read (under the lock), which is what pgstripe orders states by.
	w.Header().Set("Date", time.Unix(c.wallTime(), 0).UTC().Format(http.TimeFormat))
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if status == 500 {
		w.Header().Set("Stripe-Should-Retry", "false")
	}
	if strings.HasPrefix(r.Header.Get("User-Agent"), "curl/") {
		// Readable for people, as Stripe and stripe-mock do for curl.
		var out bytes.Buffer
		if json.Indent(&out, body, "", "  ") == nil {
			body = append(out.Bytes(), '\n')
		}
	}
	w.WriteHeader(status)
	w.Write(body)
	return status, routeName
}

// execute runs a handler under the store lock (read lock for GET) and
// turns a handler panic into Stripe's 500 instead of a stuck lock.
func (e *Emulator) execute(h handlerFunc, c *reqCtx, idemK, idemHash string) (status int, body []byte, replayed bool) {
	e.releaseDue()
	if c.r.Method == http.MethodGet {
		e.mu.RLock()
		defer e.mu.RUnlock()
	} else {
		e.mu.Lock()
		defer e.mu.Unlock()
	}
	c.now = e.Now().Unix()
	e.clockNow(c)
	logURL := requestLogURL(c.requestID, c.live, c.wallTime())
	defer func() {
		if p := recover(); p != nil {
			status, body, replayed = 500, errorBody(&apiError{Type: "api_error", Message: fmt.Sprintf("An unknown error occurred in the emulator: %v", p)}, logURL), false
		}
	}()
	if idemK != "" {
		if ent, ok := e.idem[idemK]; ok && time.Since(ent.at) < 24*time.Hour {
			if ent.path != c.r.URL.Path {
				return 400, errorBody(&apiError{Type: "idempotency_error",
					Message: fmt.Sprintf("Keys for idempotent requests can only be used for the same endpoint they were first used for ('%s' vs '%s'). Try using a key other than '%s' if you meant to execute a different request.", c.r.URL.Path, ent.path, c.idemKey)}, logURL), false
			}
			if ent.hash != idemHash {
				return 400, errorBody(&apiError{Type: "idempotency_error",
					Message: fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.", c.idemKey)}, logURL), false
			}
			return ent.status, ent.body, true
		}
	}
	res, ae := h(e, c)
	if ae != nil {
		status, body = ae.status, errorBody(ae, logURL)
	} else {
		status, body = 200, e.encodeResult(res)
	}
	if idemK != "" && status != 429 && status < 500 {
		if len(e.idem) >= maxIdempotencyKeys {
			e.pruneIdempotency()
		}
		e.idem[idemK] = &idemEntry{path: c.r.URL.Path, hash: idemHash, status: status, body: body, at: time.Now()}
	}
	return status, body, false
}

// timeoutHold is how long an injected timeout holds a request before
// dropping it (sooner if the client gives up): long enough to look like a
// stuck request, short enough that clients with stripe-go's 80 s default
// timeout don't stall a benchmark for minutes.
const timeoutHold = 10 * time.Second

// maxIdempotencyKeyLen is Stripe's limit: "Idempotency keys are up to 255
// characters long."
const maxIdempotencyKeyLen = 255

// maxIdempotencyKeys bounds the remembered keys (each holds its response):
// Stripe keeps keys 24 hours; a long benchmark run shouldn't grow without
// bound.
const maxIdempotencyKeys = 100_000

// pruneIdempotency forgets keys older than 24 hours, and if that isn't
// enough, the older half.
func (e *Emulator) pruneIdempotency() {
	cut := time.Now().Add(-24 * time.Hour)
	for k, v := range e.idem {
		if v.at.Before(cut) {
			delete(e.idem, k)
		}
	}
	if len(e.idem) < maxIdempotencyKeys*9/10 {
		return
	}
	ats := make([]time.Time, 0, len(e.idem))
	for _, v := range e.idem {
		ats = append(ats, v.at)
	}
	sort.Slice(ats, func(i, j int) bool { return ats[i].Before(ats[j]) })
	median := ats[len(ats)/2]
	for k, v := range e.idem {
		if v.at.Before(median) {
			delete(e.idem, k)
		}
	}
}

func (e *Emulator) encodeResult(res any) []byte {
	switch x := res.(type) {
	case []byte:
		return x
	case json.RawMessage:
		return x
	default:
		b, err := marshal(x)
		if err != nil {
			return errorBody(&apiError{Type: "api_error", Message: "encode: " + err.Error()}, "")
		}
		return b
	}
}

func errorBody(ae *apiError, logURL string) []byte {
	type body struct {
		Type          string          `json:"type"`
		Code          string          `json:"code,omitempty"`
		DeclineCode   string          `json:"decline_code,omitempty"`
		Charge        string          `json:"charge,omitempty"`
		PaymentIntent json.RawMessage `json:"payment_intent,omitempty"`
		SetupIntent   json.RawMessage `json:"setup_intent,omitempty"`
		DocURL        string          `json:"doc_url,omitempty"`
		Message       string          `json:"message"`
		Param         string          `json:"param,omitempty"`
		RequestLogURL string          `json:"request_log_url"`
	}
	// Stripe links every coded error to its page of the error-codes
	// reference (resource_missing -> .../error-codes/resource-missing);
	// clients show it (pgstripe's proxy puts it in the HINT).
	var doc string
	if ae.Code != "" {
		doc = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(ae.Code, "_", "-")
	}
	b, _ := json.Marshal(map[string]body{"error": {Type: ae.Type, Code: ae.Code, DeclineCode: ae.DeclineCode, Charge: ae.Charge,
		PaymentIntent: ae.PaymentIntent, SetupIntent: ae.SetupIntent, DocURL: doc, Message: ae.Message, Param: ae.Param, RequestLogURL: logURL}})
	return b
}

// requestLogURL is the Dashboard page of one request, as Stripe links it
// from an error: https://dashboard.stripe.com/test/logs/req_…?t=… (no
// /test in live mode).
func requestLogURL(reqID string, live bool, at int64) string {
	mode := "/test"
	if live {
		mode = ""
	}
	return fmt.Sprintf("https://dashboard.stripe.com%s/logs/%s?t=%d", mode, reqID, at)
}

func writeError(w http.ResponseWriter, logURL string, ae *apiError) int {
	if ae.shouldRetry != "" {
		w.Header().Set("Stripe-Should-Retry", ae.shouldRetry)
	}
	w.WriteHeader(ae.status)
	w.Write(errorBody(ae, logURL))
	return ae.status
}

// authKey extracts the API key (Bearer or Basic user).
func authKey(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(auth, "Bearer "):
		return strings.TrimSpace(auth[len("Bearer "):])
	case strings.HasPrefix(auth, "Basic "):
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth[len("Basic "):]))
		if err != nil {
			return ""
		}
		user, _, _ := strings.Cut(string(b), ":")
		return user
	}
	return ""
}

// checkAuth accepts sk_/rk_ test and live keys with a non-empty tail.
func checkAuth(r *http.Request) (live, ok bool) {
	key := authKey(r)
	for _, p := range []string{"sk_test_", "rk_test_"} {
		if strings.HasPrefix(key, p) && len(key) > len(p) {
			return false, true
		}
	}
	for _, p := range []string{"sk_live_", "rk_live_"} {
		if strings.HasPrefix(key, p) && len(key) > len(p) {
			return true, true
		}
	}
	return false, false
}

// canonical renders params deterministically for idempotency comparison.
func canonical(v any) string {
	var sb strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			sb.WriteByte('{')
			for _, k := range keys {
				sb.WriteString(k)
				sb.WriteByte(':')
				walk(x[k])
				sb.WriteByte(',')
			}
			sb.WriteByte('}')
		case []any:
			sb.WriteByte('[')
			for _, y := range x {
				walk(y)
				sb.WriteByte(',')
			}
			sb.WriteByte(']')
		default:
			fmt.Fprintf(&sb, "%T:%v", x, x)
		}
	}
	walk(v)
	return sb.String()
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randAlnum(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[r.Intn(len(alnum))]
	}
	return string(b)
}

// unmodelled lists, per route, the parameters that apply discounts the
// emulator does not model (those of checkout sessions, invoices, invoice
// items and, in unmodelledParam, subscription schedule phases; a
// customer's or subscription's coupon is modelled): ignoring them would
// answer with amounts and a discount (none) that Stripe would not.
var unmodelled = map[string][]string{
	"POST /v1/checkout/sessions":          {"discounts"},
	"POST /v1/invoices":                   {"discounts"},
	"POST /v1/invoices/{invoice}":         {"discounts"},
	"POST /v1/invoiceitems":               {"discounts"},
	"POST /v1/invoiceitems/{invoiceitem}": {"discounts"},
	// A line's own tax amounts (tax_rate_data) are not modelled either.
	"POST /v1/invoices/{invoice}/lines/{line_item_id}": {"discounts", "tax_amounts"},
}

// unmodelledParam names the first discount parameter of the request that
// would apply a discount; "" (which unsets) and an empty list are fine.
func unmodelledParam(route string, params map[string]any) string {
	if route == "POST /v1/subscription_schedules" || route == "POST /v1/subscription_schedules/{schedule}" {
		// A phase's coupon would discount the subscription the schedule
		// makes; phases don't carry one here.
		ph, _ := params["phases"].([]any)
		for i, x := range ph {
			if m, _ := x.(map[string]any); m != nil && m["coupon"] != nil && m["coupon"] != "" {
				return fmt.Sprintf("phases[%d][coupon]", i)
			}
		}
	}
	for _, p := range unmodelled[route] {
		switch v := params[p].(type) {
		case nil:
		case string:
			if v != "" {
				return p
			}
		case []any:
			if len(v) > 0 {
				return p
			}
		default:
			return p
		}
	}
	return ""
}

// maxParamDepth bounds the nesting of a parameter (brackets in its key).
// Stripe's deepest parameters have about six levels; a key nested a million
// levels deep built as many nested maps (hundreds of MB) and then
// overflowed the stack formatting the value into an error message, a fatal
// error that no recover catches, which took the whole emulator down.
const maxParamDepth = 32

func tooDeep() *apiError {
	return invalid("", "", "Invalid request: parameters may be nested at most %d levels deep.", maxParamDepth)
}

// checkFormDepth refuses, before they are parsed, a query or form body
// with a key nested deeper than maxParamDepth. The body is read here (it is
// bounded by the MaxBytesReader) and put back for the parser.
func checkFormDepth(r *http.Request) *apiError {
	if formTooDeep(r.URL.RawQuery) {
		return tooDeep()
	}
	if r.Method == http.MethodGet || strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return nil // multipart: checked on the parsed params
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return invalid("", "", "Invalid request: could not parse parameters: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if formTooDeep(string(body)) {
		return tooDeep()
	}
	return nil
}

// formTooDeep reports whether a key of the form string s has more than
// maxParamDepth opening brackets, escaped or not (an upper bound of its
// nesting).
func formTooDeep(s string) bool {
	n, inKey := 0, true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '&':
			n, inKey = 0, true
		case !inKey:
		case c == '=':
			inKey = false
		case c == '[':
			n++
		case c == '%' && i+2 < len(s) && s[i+1] == '5' && (s[i+2] == 'B' || s[i+2] == 'b'):
			n++
		}
		if n > maxParamDepth {
			return true
		}
	}
	return false
}

// paramDepth is the nesting depth of v, counted no further than
// maxParamDepth+1.
func paramDepth(v any, d int) int {
	if d > maxParamDepth {
		return d
	}
	deepest := d
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			deepest = max(deepest, paramDepth(e, d+1))
		}
	case []any:
		for _, e := range x {
			deepest = max(deepest, paramDepth(e, d+1))
		}
	}
	return deepest
}
