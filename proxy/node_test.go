package proxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/pgtest"
)

// nodeClient makes sure testdata/node has its node_modules (installed from
// the checked-in package-lock.json) and returns the path of client.js.
func nodeClient(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs("testdata/node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pg")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatal("node-postgres test: npm is not installed (needed once to install testdata/node/node_modules)")
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return filepath.Join(dir, "client.js")
}

func runNode(t *testing.T, script, url string) string {
	t.Helper()
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node client: %v\n%s", err, out)
	}
	return string(out)
}

func TestNodePostgresThroughProxyMatchesDirect(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node-postgres test: node is not installed")
	}
	script := nodeClient(t)
	tp := startProxy(t, Config{})
	direct := runNode(t, script, pgtest.NewDB(t))
	proxied := runNode(t, script, tp.via(t, pgtest.NewDB(t)))
	if direct != proxied {
		t.Errorf("through the proxy:\n%s\ndirect:\n%s", proxied, direct)
	}
	for _, want := range []string{`insert 30`, `"23505"`, `notice "hi from node"`, `notification ["nchan","payload"]`, `big 1000000`, `pipelined [2,4,6,8,10]`, `aborted "25P02"`} {
		if !strings.Contains(direct, want) {
			t.Errorf("node transcript lacks %q:\n%s", want, direct)
		}
	}
}
