// Package heaptest measures how much a piece of work makes the Go heap
// grow, for tests that bound the memory one client can make pgstripe hold
// (a slow reader, a huge result, a large write).
package heaptest

import (
	"runtime"
	"sync"
	"time"
)

// PeakGrowth runs f and returns how far the heap (HeapAlloc) rose above
// where it was before, sampled every 5 ms meanwhile. A garbage collection
// comes first, so that garbage left by earlier work is not counted as
// room. The heap is also read once f has returned. Sampling can miss a
// peak shorter than 5 ms in between; the bounds tests set are far above
// what a missed instant could hide.
func PeakGrowth(f func()) int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := int64(m.HeapAlloc)
	peak := base
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, int64(m.HeapAlloc))
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	// The sampler may last have looked up to 5 ms before f returned: what
	// f still holds at its end counts too.
	runtime.ReadMemStats(&m)
	peak = max(peak, int64(m.HeapAlloc))
	return peak - base
}
