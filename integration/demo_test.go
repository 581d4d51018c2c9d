package integration

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `pgstripe demo` as a new user runs it: it prints a ready psql command
// that works (reads and the example write), and Ctrl-C removes everything.
func TestDemo(t *testing.T) {
	proxyAddr, metricsAddr := freeAddr(t), freeAddr(t)
	p := start(t, nil, "demo", "--customers", "20", "--latency", "0", "--listen", proxyAddr, "--metrics-listen", metricsAddr)
	deadline := time.Now().Add(90 * time.Second)
	var url string
	for url == "" {
		if m := regexp.MustCompile(`psql '([^']+)'`).FindStringSubmatch(p.out.String()); m != nil {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no psql command after 90s:\n%s", tail(p.out.String(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(url, proxyAddr) {
		t.Fatalf("psql command %q does not point at the proxy %s", url, proxyAddr)
	}
	out, err := psql(t, url, "-c", "SELECT count(*) FROM stripe.customers")
	if err != nil || strings.TrimSpace(out) != "20" {
		t.Fatalf("demo query: %v %q", err, out)
	}
	out, err = psql(t, url, "-c", `INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', '{"tier":"gold"}') RETURNING email`,
		"-c", `SELECT metadata->>'tier' FROM stripe.customers WHERE email = 'a@b.co'`)
	if err != nil || strings.Join(lines(out), ",") != "a@b.co,INSERT 0 1,gold" {
		t.Fatalf("demo write: %v %q", err, out)
	}
	// The status command it prints works from another terminal: a built
	// binary names itself (go run names go run).
	direct := regexp.MustCompile(`(?m)DATABASE_URL='([^']+)' (\S+) status$`).FindStringSubmatch(p.out.String())
	if direct == nil || direct[2] != binary(t) {
		t.Fatalf("demo prints no status command of %s:\n%s", binary(t), tail(p.out.String(), 20))
	}
	st := exec.Command(direct[2], "status")
	st.Env = append(os.Environ(), "DATABASE_URL="+direct[1])
	if b, err := st.CombinedOutput(); err != nil || !strings.Contains(string(b), "customers") || !strings.Contains(string(b), "sync leader:") {
		t.Fatalf("status with the demo's DATABASE_URL: %v\n%s", err, b)
	}
	dir := regexp.MustCompile(`files in (\S+)`).FindStringSubmatch(p.out.String())
	if dir == nil {
		t.Fatalf("demo does not say where its files are:\n%s", p.out.String())
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("demo exit after Ctrl-C: %v\n%s", err, tail(p.out.String(), 20))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of Ctrl-C")
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Fatalf("demo left %s behind", dir[1])
	}
}
