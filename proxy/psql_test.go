package proxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/pgtest"
)

// runPsql runs testdata/psql_script.sql against url and returns psql's
// output.
func runPsql(t *testing.T, url string) string {
	t.Helper()
	script, err := os.ReadFile("testdata/psql_script.sql")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyFile := filepath.Join(dir, "t.csv")
	path := filepath.Join(dir, "script.sql")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(script), "COPYFILE", copyFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("psql", "-X", "-f", path, "-d", url)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "PAGER=")
	out, _ := cmd.CombinedOutput()
	return strings.ReplaceAll(string(out), path, "SCRIPT")
}

func TestPsqlThroughProxyMatchesDirect(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	tp := startProxy(t, Config{})
	direct := runPsql(t, pgtest.NewDB(t))
	proxied := runPsql(t, tp.via(t, pgtest.NewDB(t)))
	if direct != proxied {
		t.Errorf("through the proxy:\n%s\n\ndirect:\n%s", proxied, direct)
	}
	for _, want := range []string{"2000 | 2001000", "5002 | copied too", "invalid input syntax for type json", "division by zero", "a notice 42", "psql-through", "row 42", "42\n", "COPY 2000"} {
		if !strings.Contains(direct, want) {
			t.Errorf("psql output lacks %q:\n%s", want, direct)
		}
	}
	if m := regexp.MustCompile(`(?i)server closed|could not|FATAL`).FindString(proxied); m != "" {
		t.Errorf("psql through proxy: %s", proxied)
	}
}
