package writethrough

import (
	"os"
	"strconv"
	"testing"
)

// TestBenchWrite runs a short BenchWrite (set WRITE_BENCH_N for a real
// measurement; pgstripe-bench write is the supported way).
func TestBenchWrite(t *testing.T) {
	e := setup(t)
	n := 20
	if s := os.Getenv("WRITE_BENCH_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	res, err := BenchWrite(e.ctx, WriteBench{DatabaseURL: e.url, Stripe: e.api, N: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.N != n || res.Missing != 0 || res.P50Ms <= 0 || res.StripeP50Ms <= 0 || res.P99Ms < res.P50Ms {
		t.Fatalf("result %+v", res)
	}
}
