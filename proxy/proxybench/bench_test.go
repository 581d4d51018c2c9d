package proxybench

import (
	"context"
	"math"
	"os/exec"
	"testing"
	"time"
)

// A one-second run of the benchmark: pgbench directly, through the proxy
// (and PgBouncer, where installed), with the proxy's costs counted.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Postgres cluster and pgbench")
	}
	for _, bouncer := range []bool{false, true} {
		name := "proxy"
		if bouncer {
			name = "pgbouncer"
		}
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath("pgbouncer"); bouncer && err != nil {
				t.Skip("pgbouncer not installed (the benchmark's -pgbouncer needs it)")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := Run(ctx, Options{Clients: []int{2}, Modes: []string{"prepared"}, Seconds: 1, Rounds: 2, PgBouncer: bouncer})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Cases) != 1 {
				t.Fatalf("cases: %+v", res.Cases)
			}
			c := res.Cases[0]
			t.Logf("%+v", c)
			// No bound on the ratio: in a one-second run beside the rest of
			// the suite either side can be starved (direct 1,139 TPS against
			// proxy 6,461 once).
			if c.DirectTPS <= 0 || c.ProxyTPS <= 0 || c.Ratio <= 0 {
				t.Errorf("implausible TPS: %+v", c)
			}
			// An acceptance check recomputes the ratio from the TPS figures;
			// the median of the rounds has its own field.
			if want := c.ProxyTPS / c.DirectTPS; math.Abs(c.Ratio-want) > 0.0015 {
				t.Errorf("ratio %v, proxy_tps ÷ direct_tps = %v", c.Ratio, want)
			}
			if want := (c.Ratios[0] + c.Ratios[1]) / 2; len(c.Ratios) != 2 || math.Abs(c.MedianRatio-want) > 0.0015 {
				t.Errorf("median_round_ratio %v of rounds %v", c.MedianRatio, c.Ratios)
			}
			if c.ProxyCost == nil || c.ProxyCost.Syscalls < 2 || c.ProxyCost.CPUMicros <= 0 {
				t.Errorf("proxy cost not counted: %+v", c.ProxyCost)
			}
			if bouncer && (c.PgBouncerTPS <= 0 || c.ProxyVsPgBouncer <= 0) {
				t.Errorf("PgBouncer not measured: %+v", c)
			}
		})
	}
}
