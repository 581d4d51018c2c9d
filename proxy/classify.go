package proxy

import "sync"

// classCache memoizes the caller's classifier by statement text: parsing
// costs tens of microseconds, and reads must not pay it on every execution.
type classCache struct {
	fn  func(string) Class
	max int
	// maxBytes bounds the texts kept, not only their number: a cap of 10,000
	// entries alone let bulk statements with inlined literals (multi-row
	// VALUES of tens of kilobytes each) pin hundreds of megabytes.
	maxBytes int

	mu    sync.RWMutex
	m     map[string]Class
	bytes int // sum of the lengths of m's keys
}

// Bounds of the proxy's cache. A text longer than
// maxBytes/classCacheLargeShare (64 KB) is classified each time instead of
// kept: the scan that tells a read costs little beside sending that much,
// and one such text must not flush the hot small ones.
const (
	classCacheEntries    = 10000
	classCacheBytes      = 16 << 20
	classCacheLargeShare = 256
)

func newClassCache(fn func(string) Class, max, maxBytes int) *classCache {
	return &classCache{fn: fn, max: max, maxBytes: maxBytes, m: make(map[string]Class)}
}

func (c *classCache) get(sql []byte) Class {
	c.mu.RLock()
	cl, ok := c.m[string(sql)] // no allocation for the lookup
	c.mu.RUnlock()
	if ok {
		return cl
	}
	text := string(sql)
	cl = c.call(text)
	if len(text) > c.maxBytes/classCacheLargeShare {
		return cl
	}
	c.mu.Lock()
	if _, ok := c.m[text]; !ok {
		if len(c.m) >= c.max || c.bytes+len(text) > c.maxBytes {
			// Statement texts with inlined literals can be endless; start
			// over rather than grow without bound.
			clear(c.m)
			c.bytes = 0
		}
		c.bytes += len(text)
	}
	c.m[text] = cl
	c.mu.Unlock()
	return cl
}

// call runs the classifier; a panic counts as Intercept, so that a statement
// the classifier chokes on reaches the interceptor (which reports an error)
// rather than silently running upstream.
func (c *classCache) call(sql string) (cl Class) {
	defer func() {
		if recover() != nil {
			cl = Intercept
		}
	}()
	return c.fn(sql)
}
