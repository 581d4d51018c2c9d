//go:build race

package proxy

// raceEnabled: the race detector learns of the ordering between a socket
// write and the peer's read from the syscall package's own Read and Write;
// sockConn's raw system calls would hide it (see withRawIO).
const raceEnabled = true
