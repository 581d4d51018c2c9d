package emulator

// KeyInFlight reports whether a POST with idempotency key key, made with
// API key apiKey, is being served: tests wait for it instead of guessing
// how long the request takes to arrive.
func KeyInFlight(e *Emulator, apiKey, key string) bool {
	e.idemMu.Lock()
	defer e.idemMu.Unlock()
	return e.inflight[apiKey+"\x00"+key]
}
