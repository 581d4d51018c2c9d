package chaos

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Fault is one kind of failure the Injector puts between a client and the
// Stripe API.
type Fault int

const (
	Fault500       Fault = iota // 500 api_error, nothing performed
	Fault503                    // 503 with Stripe-Should-Retry: true, nothing performed
	Fault429                    // 429 rate_limit, nothing performed
	FaultDrop                   // connection closed before the request is performed
	FaultDropAfter              // request performed, then the connection closed before the response
	FaultTimeout                // request held (Injector.Hold), then the connection closed; nothing performed
	numFaults
)

var faultNames = [numFaults]string{"500", "503", "429", "drop", "drop_after_perform", "timeout"}

func (f Fault) String() string {
	if f >= 0 && f < numFaults {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// Request is what a Force matcher or an OnPerformed hook sees of a request:
// its form body is already read (and handed on intact).
type Request struct {
	Method, Path string
	Form         url.Values
}

// Injector is an http.Handler that answers a share of requests with a fault
// instead of passing them to the next handler (the emulator). Its point over
// the emulator's own --faults is FaultDropAfter: the write happens in
// Stripe but the client never hears of it, which is the case idempotency
// keys exist for. It also lets a test force faults on chosen requests and
// act (kill a process) at the moment a write has been performed.
type Injector struct {
	next http.Handler

	mu        sync.Mutex
	rate      float64
	hold      time.Duration
	rnd       *rand.Rand
	forced    []forced
	counts    [numFaults]int64
	performed func(Request)
}

type forced struct {
	match  func(Request) bool
	faults []Fault
}

// NewInjector wraps next; rate is the share of requests answered with a
// random fault (0 = none until Force). seed makes the choice repeatable.
func NewInjector(next http.Handler, rate float64, seed uint64) *Injector {
	return &Injector{next: next, rate: rate, hold: 3 * time.Second, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// SetRate changes the share of requests given a random fault.
func (in *Injector) SetRate(rate float64) {
	in.mu.Lock()
	in.rate = rate
	in.mu.Unlock()
}

// SetHold changes how long FaultTimeout holds a request before dropping it
// (default 3 s; a client with a shorter timeout gives up first).
func (in *Injector) SetHold(d time.Duration) {
	in.mu.Lock()
	in.hold = d
	in.mu.Unlock()
}

// Force gives the next requests that match the faults, one per request, in
// order; random faults don't apply to a request a Force rule takes.
func (in *Injector) Force(match func(Request) bool, faults ...Fault) {
	in.mu.Lock()
	in.forced = append(in.forced, forced{match: match, faults: faults})
	in.mu.Unlock()
}

// OnPerformed sets a hook called after a POST or DELETE was performed by the
// next handler and before its response goes out (or is dropped). It runs on
// the request's goroutine: a hook that kills the client makes "killed after
// Stripe did the write, before it heard back" happen exactly.
func (in *Injector) OnPerformed(hook func(Request)) {
	in.mu.Lock()
	in.performed = hook
	in.mu.Unlock()
}

// Counts is how many faults of each kind were injected.
func (in *Injector) Counts() map[string]int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := map[string]int64{}
	for f, n := range in.counts {
		if n > 0 {
			m[Fault(f).String()] = n
		}
	}
	return m
}

// Total is the number of faults injected.
func (in *Injector) Total() int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	var n int64
	for _, c := range in.counts {
		n += c
	}
	return n
}

func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := Request{Method: r.Method, Path: r.URL.Path}
	if r.Body != nil && r.Method != http.MethodGet {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client went away
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		req.Form, _ = url.ParseQuery(string(body))
	}
	if req.Form == nil {
		req.Form = url.Values{}
	}
	mutation := r.Method == http.MethodPost || r.Method == http.MethodDelete

	in.mu.Lock()
	fault, hit := Fault(-1), false
	for i := range in.forced {
		f := &in.forced[i]
		if len(f.faults) > 0 && f.match(req) {
			fault, hit = f.faults[0], true
			f.faults = f.faults[1:]
			break
		}
	}
	if !hit && in.rate > 0 && in.rnd.Float64() < in.rate {
		fault, hit = Fault(in.rnd.IntN(int(numFaults))), true
	}
	if hit {
		in.counts[fault]++
	}
	hold, hook := in.hold, in.performed
	in.mu.Unlock()

	if !hit {
		if !mutation || hook == nil {
			in.next.ServeHTTP(w, r)
			return
		}
		rec := newRecorder()
		in.next.ServeHTTP(rec, r)
		hook(req)
		rec.replay(w)
		return
	}
	switch fault {
	case Fault500:
		stripeError(w, 500, "", `{"error":{"type":"api_error","message":"An unknown error occurred (chaos fault)."}}`)
	case Fault503:
		stripeError(w, 503, "true", `{"error":{"type":"api_error","message":"The service is temporarily unavailable (chaos fault)."}}`)
	case Fault429:
		stripeError(w, 429, "", `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Request rate limit exceeded (chaos fault)."}}`)
	case FaultDrop:
		drop(w)
	case FaultDropAfter:
		rec := newRecorder()
		in.next.ServeHTTP(rec, r)
		if mutation && hook != nil {
			hook(req)
		}
		drop(w)
	case FaultTimeout:
		select {
		case <-r.Context().Done():
		case <-time.After(hold):
		}
		drop(w)
	}
}

func stripeError(w http.ResponseWriter, status int, shouldRetry, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_chaos")
	if shouldRetry != "" {
		w.Header().Set("Stripe-Should-Retry", shouldRetry)
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// drop closes the connection without an answer; the client sees EOF.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	// Not hijackable (HTTP/2): the closest thing is an aborted handler.
	panic(http.ErrAbortHandler)
}

// recorder keeps a response to send (or drop) after a hook ran.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) replay(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == 0 {
		r.status = 200
	}
	w.WriteHeader(r.status)
	w.Write(r.body.Bytes())
}
