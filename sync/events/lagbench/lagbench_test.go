package lagbench_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/sync/events/lagbench"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestLag is a short run of the benchmark: every mutation's event must be
// applied and the tables must end exact. With LAGBENCH_DURATION (e.g. 30s),
// LAGBENCH_RATE (mutations/s) and LAGBENCH_DELAY (visibility delay) it is
// the full measurement; the JSON result is logged either way.
func TestLag(t *testing.T) {
	o := lagbench.Options{Duration: 3 * time.Second, MutationsPerSec: 20, EventDelay: time.Second, Objects: 10,
		DatabaseURL: pgtest.NewDB(t)}
	if d, err := time.ParseDuration(os.Getenv("LAGBENCH_DURATION")); err == nil {
		o.Duration = d
	}
	if d, err := time.ParseDuration(os.Getenv("LAGBENCH_DELAY")); err == nil {
		o.EventDelay = d
	}
	if d, err := time.ParseDuration(os.Getenv("LAGBENCH_LATENCY")); err == nil {
		o.Latency = d
	}
	if r := os.Getenv("LAGBENCH_RATE"); r != "" {
		json.Unmarshal([]byte(r), &o.MutationsPerSec)
	}
	res, err := lagbench.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	if res.Missing != 0 || res.Stale != 0 || res.Extra != 0 {
		t.Errorf("missing %d, stale %d, extra %d", res.Missing, res.Stale, res.Extra)
	}
	if res.Events != res.Mutations || res.Mutations < int(o.MutationsPerSec*o.Duration.Seconds()/2) {
		t.Errorf("%d of %d mutations applied", res.Events, res.Mutations)
	}
}

// TestLagWithWorkload: with the random workload alongside (every
// object type), the measured mutations all arrive and every table still
// ends equal to the emulator.
func TestLagWithWorkload(t *testing.T) {
	res, err := lagbench.Run(context.Background(), lagbench.Options{Duration: 3 * time.Second, MutationsPerSec: 10,
		EventDelay: 500 * time.Millisecond, Objects: 6, Workload: 20, DatabaseURL: pgtest.NewDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Missing != 0 || res.Stale != 0 || res.Extra != 0 || res.Events != res.Mutations {
		t.Errorf("missing %d, stale %d, extra %d, %d of %d mutations applied", res.Missing, res.Stale, res.Extra, res.Events, res.Mutations)
	}
	if res.WorkloadOps < 20 || res.WorkloadFailed != 0 {
		t.Errorf("workload: %d ok, %d failed", res.WorkloadOps, res.WorkloadFailed)
	}
}
