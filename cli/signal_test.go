package cli

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// init makes the test binary, started with PGSTRIPE_TEST_SIGNAL_CHILD=1,
// the child process of TestSecondSignalForcesExit: it takes the first
// signal as a shutdown request, then hangs as a slow shutdown would.
func init() {
	if os.Getenv("PGSTRIPE_TEST_SIGNAL_CHILD") != "1" {
		return
	}
	ctx, stop := signalContext()
	defer stop()
	os.Stdout.WriteString("ready\n")
	<-ctx.Done()
	os.Stdout.WriteString("shutting down\n")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// A second SIGINT during a slow shutdown kills the process, as operators
// expect from a second Ctrl-C; before, it was swallowed and the shutdown
// ran its course (up to the proxy's 10 s drain).
func TestSecondSignalForcesExit(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PGSTRIPE_TEST_SIGNAL_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		for lines.Scan() {
			if strings.TrimSpace(lines.Text()) == want {
				return
			}
		}
		t.Fatalf("child never printed %q", want)
	}
	expect("ready")
	cmd.Process.Signal(syscall.SIGINT)
	expect("shutting down")
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
			t.Fatalf("child ended with %v, want killed by SIGINT", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second SIGINT did not end the process")
	}
}
