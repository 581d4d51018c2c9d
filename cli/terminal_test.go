package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

// JSON logs carry durations as text, like the text format, not as bare
// nanoseconds.
func TestJSONLogDurations(t *testing.T) {
	var b bytes.Buffer
	newLogger(&b, "json").Warn("sync failed; resigned, campaigning again", "retry_in", 2*time.Second)
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, b.String())
	}
	if line["retry_in"] != "2s" {
		t.Errorf("retry_in = %#v, want \"2s\" (%s)", line["retry_in"], b.String())
	}
}

// serve with a key Stripe refuses exits non-zero with one line naming the
// key, and without the key in it.
func TestServeRefusedKey(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	for k, v := range map[string]string{"DATABASE_URL": dbURL, "STRIPE_API_KEY": "sk_test_", "STRIPE_API_BASE": base,
		"PGSTRIPE_RATE_LIMIT": "", "PGSTRIPE_LISTEN": "127.0.0.1:0", "PGSTRIPE_METRICS_LISTEN": "127.0.0.1:0"} {
		t.Setenv(k, v)
	}
	done := make(chan struct{})
	var code int
	var stderr bytes.Buffer
	go func() {
		defer close(done)
		code = Main([]string{"serve"}, &bytes.Buffer{}, &stderr)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve with a refused key still runs after 30 s")
	}
	errs := stderr.String()
	last := strings.TrimSpace(errs)
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	if code == 0 || !strings.HasPrefix(last, "pgstripe serve: STRIPE_API_KEY was refused by Stripe") {
		t.Fatalf("exit %d, last line %q; stderr:\n%s", code, last, errs)
	}
}

// screen is what a terminal shows after out: lines, with the cursor-up and
// erase-below escapes the progress table uses.
func screen(out string) []string {
	var lines []string
	cur := 0
	for out != "" {
		if strings.HasPrefix(out, "\x1b[") {
			end := strings.IndexAny(out, "AJ")
			switch out[end] {
			case 'A':
				n, _ := strconv.Atoi(out[2:end])
				cur = max(cur-n, 0)
			case 'J':
				lines = lines[:cur]
			}
			out = out[end+1:]
			continue
		}
		i := strings.IndexAny(out, "\n\x1b")
		if i < 0 || out[i] == '\x1b' {
			panic("screen: a line without its newline")
		}
		if cur < len(lines) {
			lines[cur] = out[:i]
		} else {
			lines = append(lines, out[:i])
		}
		cur++
		out = out[i+1:]
	}
	return lines
}

// Log lines written to the terminal while the backfill table is drawn
// there stay readable and leave no stale piece of the table behind.
func TestProgressTableAndLogs(t *testing.T) {
	var term bytes.Buffer
	tty := &ttyTable{w: &term}
	log := slog.New(slog.NewTextHandler(tty.above(&term), nil))
	show := progressPrinter(&term, tty, log)
	progress := func(rows int64, done bool) backfill.Progress {
		phase := "backfilling"
		if done {
			phase = "live"
		}
		return backfill.Progress{Elapsed: time.Duration(rows) * time.Second, Requests: rows, Done: done, Objects: []backfill.ObjectProgress{
			{Object: "customers", Phase: phase, Rows: rows}, {Object: "invoices", Phase: phase, Rows: rows}}}
	}
	show(progress(1, false))
	log.Info("backfill: object complete", "object", "products")
	show(progress(2, false))
	log.Info("backfill: object complete", "object", "prices")
	show(progress(3, true))
	log.Warn("after the end")
	got := screen(term.String())
	text := strings.Join(got, "\n")
	headers := 0
	for _, l := range got {
		if strings.HasPrefix(l, "backfill ") {
			headers++
		}
	}
	if headers != 1 || !strings.Contains(text, "backfill 3s") {
		t.Errorf("the screen shows %d tables, want the last one only:\n%s", headers, text)
	}
	for _, want := range []string{"object=products", "object=prices", "after the end"} {
		if !strings.Contains(text, want) {
			t.Errorf("log line %q is gone from the screen:\n%s", want, text)
		}
	}
	if i, j := strings.Index(text, "backfill 3s"), strings.Index(text, "after the end"); i < 0 || j < i {
		t.Errorf("the finished table was erased or drawn after later logs:\n%s", text)
	}
}
