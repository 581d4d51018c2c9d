package events_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/sync/events"
)

// An overlap re-read must reach back to 3 s before the overlap-mode poll
// that preceded it. The first poll re-reads by time (here: more than a
// page) and sets the anchor that head polls list from; an event late for
// it and older than that anchor is left to the next overlap re-read. Head
// polls moved checked_through on meanwhile (a slow first step: a backlog
// to apply), and that re-read started 3 s before where they had got to,
// after the late event: no read but a sweep would ever list it.
func TestOverlapAfterOverlapPoll(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	g := v.syncThroughGate(t)
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	for range 150 {
		v.post(t, "/v1/customers", url.Values{"email": {"b@x.co"}})
	}
	// The sweep re-reads from 3 s (LookBack) before the first poll: it
	// finds the late event's second, but not the backlog, so it ends in
	// one page, before the event shows.
	time.Sleep(3100 * time.Millisecond)
	var mu sync.Mutex
	hidden := true
	var late string
	g.set(func(ev map[string]any) bool {
		mu.Lock()
		defer mu.Unlock()
		_, obj := eventObject(ev)
		return !hidden || obj["id"] != late
	}, nil)
	mu.Lock()
	late = v.post(t, "/v1/customers", url.Values{"email": {"late@x.co"}})
	mu.Unlock()
	time.Sleep(1100 * time.Millisecond)
	v.post(t, "/v1/customers", url.Values{"email": {"anchor@x.co"}})
	byTime := 0
	g.set(g.events, func(r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/v1/events" || q.Has("starting_after") || q.Has("ending_before") {
			return
		}
		if byTime++; byTime != 2 {
			return
		}
		// The sweep's page has been answered without the late event;
		// the first step takes 3.5 s more (as a large batch does), then
		// the event shows, and another change moves the head on.
		time.Sleep(3500 * time.Millisecond)
		mu.Lock()
		hidden = false
		mu.Unlock()
		if _, err := v.mut.Post(ctx, "/v1/customers", url.Values{"email": {"head@x.co"}}, ""); err != nil {
			t.Error(err)
		}
	})
	stop := v.loop(t, events.Config{PollInterval: 100 * time.Millisecond, LookBack: 3 * time.Second, SweepEvery: time.Hour, BalanceEvery: -1})
	waitFor(t, "the first step", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !hidden
	})
	v.converge(t, 5*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
