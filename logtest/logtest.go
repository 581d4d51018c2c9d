// Package logtest captures what code under test logs or prints.
//
// Servers, subprocesses and their goroutines write logs concurrently while a
// test reads them, so the capture must be safe for both at once; a plain
// bytes.Buffer is not.
package logtest

import (
	"bytes"
	"sync"
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
