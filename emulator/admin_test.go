package emulator_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
)

func TestAdminAPI(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	post := func(path, body string) apiResp {
		return doJSON(t, "POST", base+path, body)
	}
	if r := post("/_emulator/seed", `{"customers": 20, "distribution": "spike"}`); r.status != 200 {
		t.Fatalf("seed: %d %s", r.status, r.raw)
	}
	if n := len(e.Objects("customers")); n != 20 {
		t.Fatalf("customers after admin seed: %d", n)
	}
	if r := post("/_emulator/options", `{"latency": "5ms-10ms", "rate_limit": 7, "faults": 0, "event_delay": "1s"}`); r.status != 200 || r.body["rate_limit"] != float64(7) || r.body["event_delay"] != "1s" {
		t.Fatalf("options: %d %s", r.status, r.raw)
	}
	if r := post("/_emulator/options", `{"faults": 2}`); r.status != 400 {
		t.Fatalf("bad faults accepted: %s", r.raw)
	}
	if r := post("/_emulator/options", `{"fault": 0.5}`); r.status != 400 || !strings.Contains(r.raw, "fault") {
		t.Fatalf("misspelt knob accepted: %d %s", r.status, r.raw)
	}
	// What GET answers can be posted back.
	got := doJSON(t, "GET", base+"/_emulator/options", "")
	if r := post("/_emulator/options", string(got.raw)); r.status != 200 || r.body["latency"] != "5ms-10ms" {
		t.Fatalf("options posted back: %d %s", r.status, r.raw)
	}
	if r := post("/_emulator/clock", `{"offset": "48h"}`); r.status != 200 || time.Until(e.Now()) < 47*time.Hour {
		t.Fatalf("clock: %s", r.raw)
	}
	if r := doJSON(t, "GET", base+"/_emulator/stats", ""); r.status != 200 || r.body["objects"] == nil {
		t.Fatalf("stats: %s", r.raw)
	}
	if r := post("/_emulator/reset", `{}`); r.status != 200 || len(e.Objects("customers")) != 0 {
		t.Fatalf("reset: %s", r.raw)
	}
	if r := post("/_emulator/seed", `{"customers": 1, "distribution": "weekly"}`); r.status != 400 {
		t.Fatalf("bad distribution: %s", r.raw)
	}
}

func doJSON(t *testing.T, method, u, body string) apiResp {
	return do(t, method, u, "", body, "Content-Type", "application/json")
}

func TestCommand(t *testing.T) {
	for _, args := range [][]string{{"--latency", "fast"}, {"--faults", "1.5"}, {"--seed", "-1"}, {"extra"}, {"--distribution", "x", "--seed", "1"}} {
		if err := emulator.Command(context.Background(), append([]string{"--listen", "127.0.0.1:0"}, args...), &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- emulator.Command(ctx, []string{"--listen", "127.0.0.1:0", "--seed", "5"}, out, out) }()
	// Seeding takes seconds under -race on a busy machine.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "listening on") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	line := out.String()
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("no listen line: %q", line)
	}
	u := strings.Fields(line[i:])[0]
	if r := do(t, "GET", u+"/v1/customers?limit=3", "sk_test_x", ""); r.status != 200 || len(r.body["data"].([]any)) != 3 {
		t.Fatalf("serve: %d %s", r.status, r.raw)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The admin API moves the clock forward only, as Stripe's moves: a move
// back is refused with a 400 saying so, and leaves the clock where it was
// (a sync that saw the later time would keep the states stamped then over
// newer changes). Forward moves, and the same offset again, still work.
func TestAdminClockMovesForwardOnly(t *testing.T) {
	e, base := emulatortest.Start(t, emulator.Options{})
	post := func(offset string) apiResp {
		return doJSON(t, "POST", base+"/_emulator/clock", `{"offset": "`+offset+`"}`)
	}
	for _, c := range []struct {
		offset string
		status int
		want   time.Duration // the offset after the request
	}{
		{"48h", 200, 48 * time.Hour},
		{"1h", 400, 48 * time.Hour},
		{"-24h", 400, 48 * time.Hour},
		{"48h", 200, 48 * time.Hour},
		{"72h", 200, 72 * time.Hour},
		{"71h59m59s", 400, 72 * time.Hour},
	} {
		r := post(c.offset)
		if r.status != c.status {
			t.Errorf("offset %s: status %d %s, want %d", c.offset, r.status, r.raw, c.status)
		}
		if c.status == 400 {
			if msg, _ := r.body["error"].(string); !strings.Contains(msg, "back") || !strings.Contains(msg, c.want.String()) {
				t.Errorf("offset %s refused with %q, want it to say the clock would go back from %s", c.offset, msg, c.want)
			}
		}
		got := doJSON(t, "GET", base+"/_emulator/clock", "")
		if got.body["offset"] != c.want.String() {
			t.Errorf("after offset %s: clock offset %v, want %s", c.offset, got.body["offset"], c.want)
		}
		if ahead := time.Until(e.Now()); ahead < c.want-time.Minute || ahead > c.want+time.Minute {
			t.Errorf("after offset %s: now is %s ahead, want about %s", c.offset, ahead.Round(time.Second), c.want)
		}
	}
}

// --rate-limit 0 is the default (Stripe's 25), not "none allowed": the
// help says so.
func TestCommandHelpRateLimitZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := emulator.Command(context.Background(), []string{"--help"}, &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	_, help, ok := strings.Cut(stderr.String(), "-rate-limit")
	if !ok {
		t.Fatalf("no --rate-limit in the help:\n%s", stderr.String())
	}
	help, _, _ = strings.Cut(help, "\n  -") // up to the next flag
	if !strings.Contains(help, "0 = the default, 25") || !strings.Contains(help, "negative = unlimited") {
		t.Errorf("--rate-limit help %q: want it to say 0 means the default, 25", strings.TrimSpace(help))
	}
}
