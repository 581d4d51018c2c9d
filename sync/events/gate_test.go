package events_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// gate sits between the sync's client and the emulator: it can hide or
// edit events of /v1/events (as Stripe's eventually consistent list may
// hide them), and run a hook on a request after the emulator answered it but before
// the answer reaches the client (a change made while the answer is on
// its way).
type gate struct {
	mu sync.Mutex
	// events decides whether an event is listed; it may edit it.
	events func(ev map[string]any) bool
	after  func(r *http.Request)
}

func (g *gate) set(events func(map[string]any) bool, after func(*http.Request)) {
	g.mu.Lock()
	g.events, g.after = events, after
	g.mu.Unlock()
}

// syncThroughGate points the sync's client at a gate in front of the
// emulator.
func (v *env) syncThroughGate(t *testing.T) *gate {
	t.Helper()
	g := &gate{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		filter, after := g.events, g.after
		g.mu.Unlock()
		rec := httptest.NewRecorder()
		v.e.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if filter != nil && r.Method == http.MethodGet && r.URL.Path == "/v1/events" && rec.Code == http.StatusOK {
			var list map[string]any
			d := json.NewDecoder(bytes.NewReader(body))
			d.UseNumber()
			if err := d.Decode(&list); err != nil {
				t.Errorf("gate: %v", err)
			}
			var kept []any
			for _, e := range list["data"].([]any) {
				if ev := e.(map[string]any); filter(ev) {
					kept = append(kept, ev)
				}
			}
			list["data"] = kept
			body, _ = json.Marshal(list)
		}
		if after != nil {
			after(r)
		}
		for k, vs := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = vs
			}
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_events", BaseURL: srv.URL, RateLimit: 500, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	v.client = c
	return g
}

// eventObject is an event's type and data.object.
func eventObject(ev map[string]any) (string, map[string]any) {
	obj, _ := ev["data"].(map[string]any)["object"].(map[string]any)
	typ, _ := ev["type"].(string)
	return typ, obj
}
