package emulator

import (
	"net/http/httptest"
	"runtime"
	"strings"
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

// BenchmarkListPage measures one 100-item page (no latency, no limit)
// through ServeHTTP: parsing, validation, the created-range binary search
// and the response.
func BenchmarkListPage(b *testing.B) {
	e, err := New(Options{RateLimit: -1, Seed: 2000})
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{
		"/v1/customers?limit=100&created[gte]=1300000000",
		"/v1/invoices?limit=100&created[gte]=1300000000", // ~9 KB objects: 10 embedded lines each
		"/v1/charges?limit=100&starting_after=",
	} {
		name := path[4:strings.Index(path, "?")]
		b.Run(name, func(b *testing.B) {
			if strings.HasSuffix(path, "=") {
				for id := range e.Objects("charges") {
					path += id
					break
				}
			}
			for i := 0; i < b.N; i++ {
				r := httptest.NewRequest("GET", path, nil)
				r.Header.Set("Authorization", "Bearer sk_test_x")
				w := httptest.NewRecorder()
				e.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
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
