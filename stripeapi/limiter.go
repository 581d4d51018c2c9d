package stripeapi

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Priority is the class a request waits in at the shared limiter.
type Priority int

const (
	// Background is sync traffic (backfill, events, re-fetches): it takes
	// whatever rate the interactive class leaves.
	Background Priority = iota
	// Interactive is write-through traffic: a client is waiting on it, so it
	// never queues behind background requests.
	Interactive
)

func (p Priority) String() string {
	if p == Interactive {
		return "interactive"
	}
	return "background"
}

type priorityKey struct{}

// WithPriority marks ctx so that requests made with it wait in class p.
// Requests without a mark are Background.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityFrom reports the class ctx was marked with (Background if none).
func PriorityFrom(ctx context.Context) Priority {
	p, _ := ctx.Value(priorityKey{}).(Priority)
	return p
}

// Limiter is the one rate limiter in front of every Stripe request of a
// process. It hands tokens from a golang.org/x/time/rate limiter to waiters
// strictly by class (interactive first), FIFO within a class.
//
// Why a dispatcher instead of calling rate.Limiter.Wait from each request: a
// rate.Limiter reserves future slots first come, first served, so with a
// dozen backfill workers holding reservations a write would wait behind all
// of them. Here only the dispatcher holds a reservation (at most one token
// ahead); the token goes to whoever is at the head of the queues when it
// becomes available.
//
// The limit adapts: each 429 cuts the effective rate (never below
// MinFraction of the configured rate), and it recovers slowly while no 429s
// arrive, so a client that shares its Stripe account with other software
// settles below the real limit instead of hammering it.
//
// Stripe also limits each endpoint (a method and path template: GET
// /v1/customers/{id} for every id) to 25 requests/s by default, below live
// mode's global 100/s. With SetEndpointRate, each endpoint gets a Limiter
// of its own (the same kind: classes, adaptive rate) that a request waits
// at before this one, so a request held by its endpoint holds no global
// token that requests to other endpoints could use.
type Limiter struct {
	mu         sync.Mutex
	lim        *rate.Limiter
	configured float64
	effective  float64
	last429    time.Time
	lastRaise  time.Time
	queues     [2][]*waiter
	running    bool
	spare      int // tokens taken by the dispatcher that found no waiter

	// Per endpoint (SetEndpointRate): epFull requests/s per endpoint while
	// the configured rate is epAt, scaled down with it (a fleet's share).
	epFull, epAt float64
	endpoints    map[string]*Limiter

	// Tunables; set before first use.
	CutFactor    float64       // multiply the effective rate by this on a 429 (default 0.7)
	MinFraction  float64       // floor as a share of the configured rate (default 0.1)
	RecoverStep  float64       // share of the configured rate regained per RecoverEvery (default 0.05)
	RecoverEvery time.Duration // default 1s
}

type waiter struct {
	ready    chan struct{}
	granted  bool
	canceled bool
}

// NewLimiter returns a limiter for perSecond requests per second. The burst is
// a tenth of a second's worth (at least one token): enough that a moment
// with nobody waiting isn't lost for good, small enough that no one-second
// window sees more than 110% of the rate — at 80% of Stripe's limit that
// stays under it.
func NewLimiter(perSecond float64) *Limiter {
	if perSecond <= 0 || math.IsNaN(perSecond) || math.IsInf(perSecond, 0) {
		perSecond = 20
	}
	return &Limiter{
		lim:          rate.NewLimiter(rate.Limit(perSecond), burstFor(perSecond)),
		configured:   perSecond,
		effective:    perSecond,
		CutFactor:    0.7,
		MinFraction:  0.1,
		RecoverStep:  0.05,
		RecoverEvery: time.Second,
	}
}

func burstFor(perSecond float64) int {
	return max(1, int(perSecond/10))
}

// Rate is the configured rate (requests per second).
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.configured
}

// Effective is the current rate after 429 cuts.
func (l *Limiter) Effective() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.effective
}

// SetRate changes the configured rate; the effective rate restarts there.
func (l *Limiter) SetRate(perSecond float64) {
	if perSecond <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.configured, l.effective = perSecond, perSecond
	l.lim.SetLimit(rate.Limit(perSecond))
	l.lim.SetBurst(burstFor(perSecond))
	if ep := l.endpointRateLocked(); ep > 0 {
		for _, e := range l.endpoints {
			e.rescale(ep)
		}
	}
}

// rescale changes the configured rate of an endpoint's limiter and keeps
// its cut in proportion: the cut came from that endpoint's own 429s,
// which a new share of the fleet's rate says nothing about (and which no
// other instance passes on), so restarting at the full rate would only
// draw them again.
func (l *Limiter) rescale(perSecond float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.effective = perSecond * l.effective / l.configured
	l.configured = perSecond
	l.lim.SetLimit(rate.Limit(l.effective))
	l.lim.SetBurst(burstFor(perSecond))
}

// maxEndpoints bounds the per-endpoint limiters kept: ids are collapsed
// (EndpointPattern), so Stripe's API has a few hundred endpoints; a path
// that escapes the collapsing must not grow the map for ever. Beyond it,
// requests wait at the global limiter only.
const maxEndpoints = 1000

// SetEndpointRate limits each endpoint to perSecond requests per second
// at the current configured rate; SetRate scales it in proportion (a fleet
// instance's endpoint rate follows its share of the fleet's rate, so that
// the instances together stay under Stripe's endpoint limit). A rate of 0,
// or one not below the configured rate (which alone keeps every endpoint
// under it), means no per-endpoint limit.
func (l *Limiter) SetEndpointRate(perSecond float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if perSecond <= 0 || math.IsNaN(perSecond) || perSecond >= l.configured {
		l.epFull, l.epAt, l.endpoints = 0, 0, nil
		return
	}
	l.epFull, l.epAt = perSecond, l.configured
	for _, e := range l.endpoints {
		e.rescale(perSecond)
	}
}

// EndpointRate is the per-endpoint rate now (0: none).
func (l *Limiter) EndpointRate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.endpointRateLocked()
}

func (l *Limiter) endpointRateLocked() float64 {
	if l.epFull <= 0 {
		return 0
	}
	return l.epFull * math.Min(1, l.configured/l.epAt)
}

// Endpoint is the limiter of one endpoint ("GET /v1/customers/{id}", as
// the Observer names them), or nil when endpoints are not limited.
func (l *Limiter) Endpoint(name string) *Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	ep := l.endpointRateLocked()
	if ep <= 0 {
		return nil
	}
	e := l.endpoints[name]
	if e == nil {
		if len(l.endpoints) >= maxEndpoints {
			return nil
		}
		e = NewLimiter(ep)
		e.CutFactor, e.MinFraction, e.RecoverStep, e.RecoverEvery = l.CutFactor, l.MinFraction, l.RecoverStep, l.RecoverEvery
		if l.endpoints == nil {
			l.endpoints = map[string]*Limiter{}
		}
		l.endpoints[name] = e
	}
	return e
}

// Waiting reports how many requests wait in class p.
func (l *Limiter) Waiting(p Priority) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, w := range l.queues[p] {
		if !w.canceled {
			n++
		}
	}
	return n
}

// Wait blocks until the caller may send one request in class p, or ctx ends.
func (l *Limiter) Wait(ctx context.Context, p Priority) error {
	if p != Interactive {
		p = Background
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	if l.spare > 0 {
		l.spare--
		l.mu.Unlock()
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	l.queues[p] = append(l.queues[p], w)
	if !l.running {
		l.running = true
		go l.dispatch()
	}
	l.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if w.granted {
			// The token arrived as we gave up: keep it for the next caller.
			l.spare++
			return ctx.Err()
		}
		w.canceled = true
		return ctx.Err()
	}
}

// dispatch runs while anyone waits: it takes one token at a time from the
// rate limiter and gives it to the head of the highest non-empty class.
func (l *Limiter) dispatch() {
	for {
		l.mu.Lock()
		if !l.hasWaiter() {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()

		_ = l.lim.Wait(context.Background()) // never fails: burst ≥ 1, no deadline

		l.mu.Lock()
		w := l.pop()
		if w == nil {
			if l.spare < 1 {
				l.spare++
			}
			l.running = false
			l.mu.Unlock()
			return
		}
		w.granted = true
		close(w.ready)
		l.mu.Unlock()
	}
}

func (l *Limiter) hasWaiter() bool {
	for p := range l.queues {
		for _, w := range l.queues[p] {
			if !w.canceled {
				return true
			}
		}
	}
	return false
}

func (l *Limiter) pop() *waiter {
	for _, p := range []Priority{Interactive, Background} {
		q := l.queues[p]
		for len(q) > 0 {
			w := q[0]
			q[0] = nil
			q = q[1:]
			if !w.canceled {
				l.queues[p] = q
				return w
			}
		}
		l.queues[p] = q
	}
	return nil
}

// Observe429 cuts the effective rate after Stripe answered 429. Several 429s
// from requests that were in flight together count once (they reflect the
// same overload), so a burst of them doesn't collapse the rate.
func (l *Limiter) Observe429(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last429.IsZero() && now.Sub(l.last429) < 250*time.Millisecond {
		return
	}
	l.last429 = now
	l.lastRaise = now
	l.effective = math.Max(l.effective*l.CutFactor, l.configured*l.MinFraction)
	l.lim.SetLimitAt(now, rate.Limit(l.effective))
}

// ObserveOK lets the effective rate recover toward the configured rate while
// no 429s arrive.
func (l *Limiter) ObserveOK(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.effective >= l.configured {
		return
	}
	if now.Sub(l.lastRaise) < l.RecoverEvery {
		return
	}
	l.lastRaise = now
	l.effective = math.Min(l.configured, l.effective+l.configured*l.RecoverStep)
	l.lim.SetLimitAt(now, rate.Limit(l.effective))
}
