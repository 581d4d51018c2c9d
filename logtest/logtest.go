// Package logtest captures what code under test logs or prints.
//
// Servers, subprocesses and their goroutines write logs concurrently while a
// test reads them, so the capture must be safe for both at once; a plain
// bytes.Buffer is not.
package logtest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer is an io.Writer whose contents may be read with String while
// writers are still writing. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitLine waits up to d for a line containing s and returns it; the test
// fails with everything written so far when none comes.
func (b *Buffer) WaitLine(t testing.TB, s string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, line := range strings.Split(b.String(), "\n") {
			if strings.Contains(line, s) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q after %v:\n%s", s, d, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
