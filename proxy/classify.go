package proxy

import "sync"

// classCache memoizes the caller's classifier by statement text: parsing
// costs tens of microseconds, and reads must not pay it on every execution.
type classCache struct {
	fn  func(string) Class
	max int

	mu sync.RWMutex
	m  map[string]Class
}

func newClassCache(fn func(string) Class, max int) *classCache {
	return &classCache{fn: fn, max: max, m: make(map[string]Class)}
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
	c.mu.Lock()
	if len(c.m) >= c.max {
		// Statement texts with inlined literals can be endless; start over
		// rather than grow without bound.
		clear(c.m)
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
