package emulator

import (
	"net/http/httptest"
	"runtime"
	"testing"
)

var seedN = 2000

func BenchmarkSeed1000(b *testing.B) {
	for i := 0; i < b.N; i++ {
		e, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Seed(seedN, DistUniform); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListPage measures one 100-item page of customers (no latency, no
// limit) through ServeHTTP.
func BenchmarkListPage(b *testing.B) {
	e, err := New(Options{RateLimit: -1, Seed: 2000})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest("GET", "/v1/invoices?limit=100&created[gte]=1300000000", nil)
		r.Header.Set("Authorization", "Bearer sk_test_x")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// BenchmarkSeed20k seeds 20,000 customers and reports the heap per stored
// object (go test -run X -bench Seed20k -benchtime 1x ./emulator).
func BenchmarkSeed20k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		e, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Seed(20000, DistUniform); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		n := 0
		for _, c := range e.Stats().Objects {
			n += c
		}
		b.ReportMetric(float64(n), "objects")
		b.ReportMetric(float64(ms.HeapAlloc)/float64(n), "heap-B/object")
		b.StartTimer()
	}
}
