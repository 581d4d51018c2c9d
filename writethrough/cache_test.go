package writethrough

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/translate"
)

// TestClassCacheBoundedInBytes: the write-through's classification
// cache is keyed by statement text; a stream of distinct long writes
// (bulk INSERTs with inlined values) must not pin more than 8 MB of text.
func TestClassCacheBoundedInBytes(t *testing.T) {
	ic := New(Config{})
	row := "('" + strings.Repeat("a", 200) + "@example.com', '{\"k\":\"" + strings.Repeat("v", 200) + "\"}'),"
	pad := strings.Repeat(row, 40) // ~17 KB, few rows: parsing costs by the node
	const bound = 8 << 20
	for i := range 700 { // ~12 MB of distinct texts
		sql := fmt.Sprintf("INSERT INTO stripe.customers (email, metadata) VALUES %s('n%d@example.com', '{}')", pad, i)
		if c := ic.Classify(sql); c.Action != translate.Write {
			t.Fatalf("statement %d: action %v, want Write (%v)", i, c.Action, c.Err)
		}
		ic.cache.mu.Lock()
		n := 0
		for k := range ic.cache.m {
			n += len(k)
		}
		entries := len(ic.cache.m)
		ic.cache.mu.Unlock()
		if n > bound {
			t.Fatalf("after %d statements the cache keeps %d entries, %d bytes of text (bound %d)", i+1, entries, n, bound)
		}
	}
	// A text too long to keep is classified all the same.
	long := "INSERT INTO stripe.customers (email) VALUES ('" + strings.Repeat("z", 200<<10) + "@example.com')"
	for range 2 {
		if c := ic.Classify(long); c.Action != translate.Write {
			t.Fatalf("long text: action %v, want Write (%v)", c.Action, c.Err)
		}
	}
}
