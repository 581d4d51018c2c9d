package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/workload"
)

// helperProcess is the events loop TestKillAndResume kills with SIGKILL.
func helperProcess() int {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("EVENTS_DB"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := stripeapi.New(stripeapi.Config{APIKey: "sk_test_helper", BaseURL: os.Getenv("EVENTS_API"), RateLimit: 500})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	err = events.Run(ctx, events.Config{Pool: pool, Client: c, PollInterval: 30 * time.Millisecond,
		LookBack: 5 * time.Second, SweepEvery: 500 * time.Millisecond})
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// TestKillAndResume kills the loop with SIGKILL at random moments while
// the workload runs (mid-poll, mid-apply, mid-re-fetch), restarts it, and
// requires the tables to end exactly equal to the emulator.
func TestKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess kills")
	}
	v := setup(t, emulator.Options{EventDelay: 300 * time.Millisecond})
	ctx := context.Background()
	w := workload.New(v.mut, 99)
	for range 10 {
		w.Do(ctx, "createCustomer")
		w.Do(ctx, "createProduct")
	}
	if _, _, err := events.EnsureCursor(ctx, v.pool, v.client, 0); err != nil {
		t.Fatal(err)
	}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Run(wctx, workload.Ops, 100)
		}()
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const kills = 6
	for i := range kills {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "EVENTS_HELPER=1", "EVENTS_DB="+v.db, "EVENTS_API="+v.base)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		t.Logf("kill %d/%d done", i+1, kills)
	}
	stopWork()
	wg.Wait()
	t.Logf("workload: %s", w.Summary())
	// Items past the 10 an event embeds arrive only through re-fetches of
	// the subscription (TestItemBeyondFirstPage): say when the run had some.
	per := map[string]int{}
	for _, raw := range v.e.Objects("subscription_items") {
		var it struct{ Subscription string }
		json.Unmarshal(raw, &it)
		per[it.Subscription]++
	}
	most := 0
	for _, n := range per {
		most = max(most, n)
	}
	t.Logf("subscriptions: %d, most items on one: %d", len(per), most)
	// Let the events of the last mutations land, then restart once more.
	stop := v.loop(t, events.Config{})
	v.converge(t, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var dup int
	v.pool.QueryRow(ctx, `SELECT count(*) - count(DISTINCT id) FROM stripe_sync.applied_events`).Scan(&dup)
	if dup != 0 {
		t.Errorf("%d events recorded twice", dup)
	}
}
