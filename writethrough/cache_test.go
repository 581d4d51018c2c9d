package writethrough

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/translate"
)

// TestClassCacheBoundedInBytes: the write-through's classification
// cache is keyed by statement text; a stream of distinct long writes
// (bulk INSERTs with inlined values) must not pin more than its byte
// budget of text (8 MB by default).
func TestClassCacheBoundedInBytes(t *testing.T) {
	ic := New(Config{})
	// 1 MB instead of the 8 MB default: the bound is kept all the same,
	// for an eighth of the parsing (and of the test's time).
	const bound = 1 << 20
	ic.cache.maxBytes = bound
	row := "('" + strings.Repeat("a", 200) + "@example.com', '{\"k\":\"" + strings.Repeat("v", 200) + "\"}'),"
	pad := strings.Repeat(row, 20) // ~8.6 KB, under bound/64; few rows: parsing costs by the node
	const texts = 175              // ~1.5 MB of distinct texts
	for i := range texts {
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
	// The texts were kept (and evicted), not all refused as too long.
	ic.cache.mu.Lock()
	kept := ic.cache.bytes
	ic.cache.mu.Unlock()
	if kept < bound/2 {
		t.Fatalf("the cache keeps %d bytes of %d distinct texts (bound %d)", kept, texts, bound)
	}
	// A text too long to keep is classified all the same.
	long := "INSERT INTO stripe.customers (email) VALUES ('" + strings.Repeat("z", 200<<10) + "@example.com')"
	for range 2 {
		if c := ic.Classify(long); c.Action != translate.Write {
			t.Fatalf("long text: action %v, want Write (%v)", c.Action, c.Err)
		}
	}
}
