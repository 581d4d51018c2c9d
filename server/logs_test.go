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
