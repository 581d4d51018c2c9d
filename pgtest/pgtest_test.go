package pgtest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDBIsolated(t *testing.T) {
	ctx := context.Background()
	a := pgtest.Connect(t, pgtest.NewDB(t))
	b := pgtest.Connect(t, pgtest.NewDB(t))
	if _, err := a.Exec(ctx, "CREATE TABLE x (id int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("table created in one test database is visible in another")
	}
	var user string
	if err := a.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != "postgres" {
		t.Fatalf("current_user = %q, want postgres", user)
	}
}

// A test binary that panics must not leave a server behind.
func TestNoLeftoverAfterPanic(t *testing.T) {
	if os.Getenv("PGTEST_PANIC_CHILD") == "1" {
		pgtest.NewDB(t)
		dir := pgtest.Cluster(t).Dir
		os.WriteFile(os.Getenv("PGTEST_DIR_FILE"), []byte(dir), 0o644)
		panic("deliberate panic with a running cluster")
	}
	dirFile := filepath.Join(t.TempDir(), "dir")
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoLeftoverAfterPanic$")
	cmd.Env = append(os.Environ(), "PGTEST_PANIC_CHILD=1", "PGTEST_DIR_FILE="+dirFile)
	if err := cmd.Run(); err == nil {
		t.Fatal("child test should have failed with a panic")
	}
	dir, err := os.ReadFile(dirFile)
	if err != nil {
		t.Fatalf("child did not start a cluster: %v", err)
	}
	pidFile := filepath.Join(string(dir), "data", "postmaster.pid")
	// The parent-death signal makes the postmaster exit; give it a moment.
	for i := 0; i < 100; i++ {
		out, _ := exec.Command("pgrep", "-f", string(dir)).Output()
		if len(out) == 0 {
			return
		}
		exec.Command("sleep", "0.1").Run()
	}
	t.Fatalf("postgres of the panicked test binary still running (%s)", pidFile)
}

// TestRefusingPort: the port refuses connections, and no listener can
// take it while the test runs.
func TestRefusingPort(t *testing.T) {
	p := pgtest.RefusingPort(t)
	_, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatal(err)
	}
	if _, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
		t.Fatal("port taken by another listener")
	}
}
