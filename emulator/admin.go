package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// adminOptions is the JSON shape of the knobs in the admin API. Durations
// are Go duration strings ("250ms"); latency also takes "MIN-MAX".
type adminOptions struct {
	RateLimit  *int     `json:"rate_limit,omitempty"`
	Latency    *string  `json:"latency,omitempty"`
	Faults     *float64 `json:"faults,omitempty"`
	EventDelay *string  `json:"event_delay,omitempty"`
}

// serveAdmin answers /_emulator/...:
//
//	GET  /_emulator/options           current knobs
//	POST /_emulator/options           change knobs (JSON adminOptions)
//	POST /_emulator/reset             empty the store
//	POST /_emulator/seed              {"customers": N, "distribution": "uniform"}
//	POST /_emulator/clock             {"offset": "720h"} moves now (forward only)
//	GET  /_emulator/stats             request and object counts
func (e *Emulator) serveAdmin(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, format string, args ...any) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
	}
	ok := func(v any) {
		json.NewEncoder(w).Encode(v)
	}
	// A misspelt knob is refused, not ignored: a test that sets
	// "fault" would otherwise run without the faults it asked for.
	decode := func(v any) bool {
		d := json.NewDecoder(r.Body)
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			fail(400, "bad JSON: %v", err)
			return false
		}
		return true
	}
	path := strings.TrimPrefix(r.URL.Path, "/_emulator/")
	switch {
	case path == "options" && r.Method == http.MethodGet:
		ok(e.optionsJSON())
	case path == "options" && r.Method == http.MethodPost:
		var a adminOptions
		if !decode(&a) {
			return
		}
		o := e.options()
		if a.RateLimit != nil {
			o.RateLimit = *a.RateLimit
		}
		if a.Faults != nil {
			if *a.Faults < 0 || *a.Faults > 1 {
				fail(400, "faults must be between 0 and 1")
				return
			}
			o.Faults = *a.Faults
		}
		if a.Latency != nil {
			lo, hi, err := ParseLatency(*a.Latency)
			if err != nil {
				fail(400, "%v", err)
				return
			}
			o.Latency, o.LatencyMax = lo, hi
		}
		if a.EventDelay != nil {
			d, err := time.ParseDuration(*a.EventDelay)
			if err != nil || d < 0 {
				fail(400, "bad event_delay %q", *a.EventDelay)
				return
			}
			o.EventDelay = d
		}
		e.Update(o)
		ok(e.optionsJSON())
	case path == "reset" && r.Method == http.MethodPost:
		e.mu.Lock()
		e.reset()
		e.mu.Unlock()
		ok(map[string]bool{"ok": true})
	case path == "seed" && r.Method == http.MethodPost:
		var a struct {
			Customers    int    `json:"customers"`
			Distribution string `json:"distribution"`
		}
		if !decode(&a) {
			return
		}
		if err := e.Seed(a.Customers, a.Distribution); err != nil {
			fail(400, "%v", err)
			return
		}
		ok(e.Stats())
	case path == "clock" && r.Method == http.MethodPost:
		var a struct {
			Offset string `json:"offset"`
		}
		if !decode(&a) {
			return
		}
		d, err := time.ParseDuration(a.Offset)
		if err != nil {
			fail(400, "bad offset %q", a.Offset)
			return
		}
		if cur, moved := e.advanceClock(d); !moved {
			// Stripe's clock never goes back: a sync that saw the later
			// time keeps the states stamped then over those made after
			// the move, which looks like lost writes.
			fail(400, "offset %s would move the clock back (it is %s now, relative to the wall clock): Stripe's clock only moves forward; give an offset of at least %s, or restart the emulator to start over",
				d, cur, cur)
			return
		}
		ok(map[string]any{"now": e.Now().Unix(), "offset": d.String()})
	case path == "clock" && r.Method == http.MethodGet:
		ok(map[string]any{"now": e.Now().Unix(), "offset": time.Duration(e.offset.Load()).String()})
	case path == "stats" && r.Method == http.MethodGet:
		ok(e.Stats())
	default:
		fail(404, "unknown admin route %s %s", r.Method, r.URL.Path)
	}
}

func (e *Emulator) optionsJSON() map[string]any {
	o := e.options()
	// In the form POST takes (and --latency): what GET answers can be
	// posted back.
	lat := o.Latency.String()
	if o.LatencyMax > o.Latency {
		lat += "-" + o.LatencyMax.String()
	}
	return map[string]any{"rate_limit": o.RateLimit, "latency": lat, "faults": o.Faults, "event_delay": o.EventDelay.String()}
}

// ParseLatency reads "250ms" (fixed) or "50ms-300ms" (uniform range).
func ParseLatency(s string) (lo, hi time.Duration, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err = time.ParseDuration(a)
	if err != nil || lo < 0 {
		return 0, 0, fmt.Errorf("bad latency %q: want a duration like 250ms or a range like 50ms-300ms", s)
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err = time.ParseDuration(b)
	if err != nil || hi < lo {
		return 0, 0, fmt.Errorf("bad latency %q: want a duration like 250ms or a range like 50ms-300ms", s)
	}
	return lo, hi, nil
}
