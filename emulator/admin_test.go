package emulator_test

import (
	"bytes"
	"context"
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
