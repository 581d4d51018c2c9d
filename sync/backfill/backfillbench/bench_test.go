package backfillbench

import (
	"context"
	"testing"
	"time"
)

// A small run of the whole scenario: emulator, throwaway Postgres,
// backfill, verification and the sequential baseline.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Postgres cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Objects: 400, Distribution: "spike", Rate: 400, SequentialBudget: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Missing+res.Extra+res.Stale != 0 {
		t.Errorf("wrong rows: %v", res.Wrong)
	}
	if res.Objects < 200 || res.Requests == 0 || res.Seconds <= 0 || res.SequentialSeconds <= 0 || res.Utilization <= 0 {
		t.Errorf("implausible result %+v", res)
	}
}
