package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/pgstripe into dir and returns the binary's path. It
// must run inside the module (go run ./cmd/pgstripe-bench, go test).
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "pgstripe")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/pgstripe/pgstripe/cmd/pgstripe")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pgstripe (outside pgstripe's source tree, pass --binary PATH to a built pgstripe): %v\n%s", err, out)
	}
	return bin, nil
}

// serveProc supervises `pgstripe serve` as a subprocess: SIGKILL on
// demand, restart, and a count of exits nobody asked for (a crash, or an
// exit when Postgres went away), after which it is restarted too.
type serveProc struct {
	bin     string
	env     []string
	out     io.Writer // serialised by lockedWriter
	healthz string
	name    string

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	expected   bool // the current process is being killed or stopped on purpose
	closing    bool
	starts     int
	unexpected int
	lastExit   string
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (s *serveProc) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *serveProc) startLocked() error {
	if s.done != nil {
		select {
		case <-s.done:
		default:
			return nil // already running (restarted after an exit of its own)
		}
	}
	s.starts++
	fmt.Fprintf(s.out, "=== chaos: %s: pgstripe serve start #%d at %s\n", s.name, s.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.bin, "serve")
	cmd.Env = append(os.Environ(), s.env...)
	tail := &tailBuffer{}
	cmd.Stdout = io.MultiWriter(s.out, tail)
	cmd.Stderr = cmd.Stdout
	// Its own process group, so nothing it starts outlives a SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pgstripe serve: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done, s.expected = cmd, done, false
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		close(done)
		if s.expected || s.closing || s.cmd != cmd {
			return
		}
		s.unexpected++
		s.lastExit = fmt.Sprintf("%v; last output: %s", err, tail.String())
		fmt.Fprintf(s.out, "=== chaos: pgstripe serve exited on its own (%v); restarting\n", err)
		go func() {
			time.Sleep(500 * time.Millisecond)
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.cmd == cmd && !s.closing {
				s.startLocked()
			}
		}()
	}()
	return nil
}

// kill sends SIGKILL to the process group and waits for the exit.
func (s *serveProc) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.expected = true
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	fmt.Fprintf(s.out, "=== chaos: %s: SIGKILL at %s\n", s.name, time.Now().Format(time.RFC3339Nano))
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM and waits up to 30 s for a clean exit.
func (s *serveProc) stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.closing, s.expected = true, true
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if cmd.ProcessState != nil && !cmd.ProcessState.Success() {
			return fmt.Errorf("pgstripe serve exited with %v after SIGTERM", cmd.ProcessState)
		}
		return nil
	case <-time.After(30 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return errors.New("pgstripe serve did not exit within 30s of SIGTERM")
	}
}

// waitReady waits until /healthz answers (any status: the process is up and
// serving; a sync error shows as 503 and is not ours to judge here).
func (s *serveProc) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		res, err := client.Get(s.healthz)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgstripe serve not answering %s after %v", s.healthz, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *serveProc) counts() (starts, unexpected int, last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts, s.unexpected, s.lastExit
}

// tailBuffer keeps the last few KB a process wrote, for the report of an
// exit nobody asked for.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = append(t.b[:0:0], t.b[len(t.b)-2048:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
