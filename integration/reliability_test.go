package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/chaos"
)

// The short chaos run of issue 10: pgstripe serve SIGKILLed 3 times (during
// the backfill, right after Stripe performed a write-through, during the
// events loop), Postgres restarted twice, 5% of Stripe requests faulted,
// while a workload and writers through the proxy run; the tables must end
// equal to the emulator, with no duplicate or lost write.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run: -short")
	}
	logPath := filepath.Join(t.TempDir(), "serve.log")
	serveLog, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer serveLog.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := chaos.Run(ctx, chaos.Options{
		Binary: binary(t), Kills: 3, PGRestarts: 2, Faults: 0.05, Duration: 15 * time.Second,
		Log: testLogWriter{t}, ServeLog: serveLog,
	})
	out, _ := json.Marshal(res)
	t.Logf("result: %s", out)
	if err != nil {
		t.Fatalf("chaos run: %v", err)
	}
	if !res.OK() {
		b, _ := os.ReadFile(logPath)
		t.Logf("pgstripe output (tail):\n%s", tail(string(b), 80))
		t.Fatalf("chaos run failed: %+v", res)
	}
	if res.Kills != 3 || res.PGRestarts != 2 || res.FaultsInjected == 0 || res.WritesOK == 0 || res.WorkloadOps < 50 {
		t.Fatalf("the run was not as hard as asked: %+v", res)
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
