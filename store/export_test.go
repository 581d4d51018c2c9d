package store

import "time"

// TypeOK exposes typeOK to the external tests.
var TypeOK = typeOK

// SetRetry shortens Retry's attempts and backoff for a test.
func SetRetry(attempts int, base time.Duration) (restore func()) {
	a, b, m := retryAttempts, retryBase, retryMax
	retryAttempts, retryBase, retryMax = attempts, base, base
	return func() { retryAttempts, retryBase, retryMax = a, b, m }
}
