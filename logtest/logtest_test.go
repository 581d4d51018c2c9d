package logtest_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pgstripe/pgstripe/logtest"
)

// Run with -race: concurrent writes and reads must not race, and no write
// may be lost.
func TestBufferConcurrent(t *testing.T) {
	var b logtest.Buffer
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				fmt.Fprintf(&b, "w%d.%d\n", w, i)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 400 {
		t.Fatalf("got %d lines, want 400", n)
	}
	if !strings.Contains(b.String(), "w3.99\n") {
		t.Fatalf("last write of writer 3 missing")
	}
}
