package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/pgtest"
)

// The events loop's log lines carry component=events once: twice made
// every JSON line of it an object with a duplicate key.
func TestEventsLogComponentOnce(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	e, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	_, logs := serve(t, dbURL, base, "component")
	deadline := time.Now().Add(60 * time.Second)
	conn := pgtest.Connect(t, dbURL)
	for {
		var done bool
		conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM stripe_sync.log WHERE kind = 'backfill_complete')`).Scan(&done)
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backfill never completed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Past Stripe's event retention: the events loop says so (and
	// re-backfills).
	e.SetClockOffset(31 * 24 * time.Hour)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "event retention") {
				if n := strings.Count(line, "component="); n != 1 {
					t.Fatalf("%d components in %q", n, line)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no retention warning")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serve's log says when sync is live: after the first backfill, with what
// it fetched, and on a restart whose backfill completed earlier. Before,
// the log of a first start ended at the last "object complete" line, and a
// restart's at "elected sync leader".
func TestServeLogsSyncLive(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 2, RateLimit: -1})
	for _, tc := range []struct{ name, want, not string }{
		{"first start", `msg="backfill complete; sync is live: following Stripe's events" rows=`, "completed earlier"},
		{"restart", `msg="sync is live: following Stripe's events (backfill completed earlier)"`, "backfill complete;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, logs := serve(t, dbURL, base, "live-"+strings.ReplaceAll(tc.name, " ", "-"))
			line := logs.WaitLine(t, "sync is live", 60*time.Second)
			if !strings.Contains(line, tc.want) || strings.Contains(line, tc.not) {
				t.Errorf("log line %q, want %q", line, tc.want)
			}
			if tc.name == "first start" && strings.Contains(line, " rows=0 ") {
				t.Errorf("the first backfill fetched no rows: %q", line)
			}
		})
	}
}
