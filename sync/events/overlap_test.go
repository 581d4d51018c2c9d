package events_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// On a busy account (an overlap window of more than a page: polls read
// the head only) and with every step outlasting the poll cycle (a slow
// Stripe or machine: here each events request takes 400 ms), every step
// reads an overlap page past its deadline. The sweep must still get a
// page every other step: a sweep of several pages that never ends never
// lists an event late beyond the overlap window.
func TestSweepProgressesWhenStepsAreSlow(t *testing.T) {
	t.Parallel() // mostly waits: see "Parallel tests" in events_test.go
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	g := v.syncThroughGate(t)
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	late := v.post(t, "/v1/customers", url.Values{"email": {"late@x.co"}})
	var created struct{ Created int64 }
	if err := json.Unmarshal(v.e.Objects("customers")[late], &created); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	hidden := true
	past := 0 // re-reads by time that began after the late event's second
	g.set(func(ev map[string]any) bool {
		mu.Lock()
		defer mu.Unlock()
		_, obj := eventObject(ev)
		return !hidden || obj["id"] != late
	}, func(r *http.Request) {
		if r.URL.Path != "/v1/events" {
			return
		}
		time.Sleep(400 * time.Millisecond)
		if from, err := strconv.ParseInt(r.URL.Query().Get("created[gte]"), 10, 64); err == nil && from > created.Created {
			mu.Lock()
			past++
			mu.Unlock()
		}
	})
	busy, quiet := context.WithCancel(ctx)
	defer quiet()
	go func() {
		// 40 changes a second.
		for tick := time.NewTicker(25 * time.Millisecond); busy.Err() == nil; <-tick.C {
			v.mut.Post(busy, "/v1/customers", url.Values{"email": {"busy@x.co"}}, "")
		}
	}()
	v.loop(t, events.Config{PollInterval: 100 * time.Millisecond, LookBack: 20 * time.Second, SweepEvery: time.Second, BalanceEvery: -1})
	// Shown once the overlap windows have passed it: only a sweep can
	// list it then.
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		if past >= 3 {
			hidden = false
		}
		shown := !hidden
		mu.Unlock()
		if shown {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no overlap re-read passed the late event in 30 s")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM stripe.customers WHERE id = $1`, late).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late customer's event was not applied 30 s after it showed: the sweep made no progress")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// After a burst that head polls caught up with, the overlap re-read lists
// the same events again: pages holding nothing new, which need no
// transaction. When every step outlasts the poll cycle (a loaded machine;
// here each head poll takes 800 ms of a 1 s cycle), such pages must not
// be read one per step: the late events at the far end of the re-read
// would wait a step per page (in a failing TestRandomWorkload run, 25
// pages at 1–3 s a step). A re-read of pages already applied ends in the
// step it began, before the next head poll.
func TestSeenPagesReadInOneStep(t *testing.T) {
	v := setup(t, emulator.Options{})
	ctx := context.Background()
	g := v.syncThroughGate(t)
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	// Four pages of events, applied by the first poll (which re-reads by
	// time); the overlap re-read of the next step lists them again.
	for range 350 {
		v.post(t, "/v1/customers", url.Values{"email": {"burst@x.co"}})
	}
	var mu sync.Mutex
	var reqs []string // "H" for a head poll, else the created[gte] of a re-read ("+" for a next page)
	heads := 0
	g.set(nil, func(r *http.Request) {
		if r.URL.Path != "/v1/events" {
			return
		}
		q := r.URL.Query()
		if q.Has("ending_before") {
			time.Sleep(800 * time.Millisecond)
			mu.Lock()
			reqs = append(reqs, "H")
			heads++
			mu.Unlock()
			return
		}
		k := q.Get("created[gte]")
		if q.Has("starting_after") {
			k += "+"
		}
		mu.Lock()
		reqs = append(reqs, k)
		mu.Unlock()
	})
	stop := v.loop(t, events.Config{PollInterval: time.Second, LookBack: 10 * time.Second, SweepEvery: time.Hour, BalanceEvery: -1})
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := heads
		mu.Unlock()
		if n >= 7 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("only %d head polls in 30 s", n)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Each re-read that began after the head polls did: the head polls
	// that came between its pages.
	type scan struct {
		pages, between int
	}
	var scans []*scan
	current := map[string]*scan{}
	pending := map[*scan]int{} // head polls since the scan's last page
	seenHead := false
	for _, r := range reqs {
		switch {
		case r == "H":
			seenHead = true
			for sc := range pending {
				pending[sc]++
			}
		case !strings.HasSuffix(r, "+"):
			delete(current, r)
			if seenHead {
				sc := &scan{pages: 1}
				scans, current[r] = append(scans, sc), sc
				pending[sc] = 0
			}
		default:
			if sc := current[strings.TrimSuffix(r, "+")]; sc != nil {
				sc.pages++
				sc.between += pending[sc]
				pending[sc] = 0
			}
		}
	}
	long := 0
	for _, sc := range scans {
		if sc.pages < 2 {
			continue
		}
		long++
		// In one step as a rule; a step per page was the bug. A machine
		// loaded enough that a page of applied events takes longer than
		// the grace of a cycle may split the re-read once or twice, but
		// never into a page per step.
		if sc.between > 0 && sc.between >= sc.pages-1 {
			t.Errorf("a re-read of %d pages of applied events spanned %d head polls: a page per step (requests: %v)", sc.pages, sc.between, reqs)
		} else if sc.between > 0 {
			t.Logf("a re-read of %d pages of applied events spanned %d head polls (a loaded machine?)", sc.pages, sc.between)
		}
	}
	if long == 0 {
		t.Fatalf("no re-read of several pages after the head polls began (requests: %v)", reqs)
	}
	v.converge(t, 5*time.Second)
}
