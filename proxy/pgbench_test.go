package proxy

import (
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/pgstripe/pgstripe/pgtest"
)

// TestPgbenchThroughProxy runs pgbench's TPC-B-like read-write workload
// through the proxy in every query mode, several clients at once, and
// checks that no transaction failed.
func TestPgbenchThroughProxy(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Skip("pgbench not installed")
	}
	tp := startProxy(t, Config{})
	u, _ := url.Parse(tp.via(t, pgtest.NewDB(t)))
	db := u.Path[1:]
	pgbench := func(args ...string) string {
		t.Helper()
		args = append(args, "-h", u.Hostname(), "-p", u.Port(), "-U", "postgres", db)
		cmd := exec.Command("pgbench", args...)
		cmd.Env = append(os.Environ(), "PGSSLMODE=disable")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	pgbench("-i", "-s", "1", "-q")
	for _, mode := range []string{"simple", "extended", "prepared"} {
		out := pgbench("-n", "-M", mode, "-c", "4", "-j", "2", "-t", "50")
		if !regexp.MustCompile(`number of transactions actually processed: 200/200`).MatchString(out) ||
			!regexp.MustCompile(`number of failed transactions: 0`).MatchString(out) {
			t.Errorf("pgbench -M %s:\n%s", mode, out)
		}
	}
}
