package integration

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// scripts/install-deps run by a user who is not root and has no sudo, on a
// machine where PostgreSQL's client, Node.js and a JDK are missing (hidden
// from PATH here): it must not die on "sudo: command not found" but say what
// is missing and the one command that installs it.
func TestInstallDepsWithoutRoot(t *testing.T) {
	script, err := os.ReadFile("../scripts/install-deps")
	if err != nil {
		t.Fatal(err)
	}
	// A copy in a directory anyone can read: when the tests run as root the
	// script runs as "nobody", who may not read the checkout.
	// (t.TempDir's parent is 0700.)
	repo, err := os.MkdirTemp("", "pgstripe-deps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(repo) })
	os.Chmod(repo, 0o755)
	os.Mkdir(filepath.Join(repo, "scripts"), 0o755)
	if err := os.WriteFile(filepath.Join(repo, "scripts", "install-deps"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(repo, "bin")
	os.Mkdir(bin, 0o755)
	for _, tool := range []string{"bash", "dirname", "id", "ls", "sed", "apt-get"} {
		if path, err := exec.LookPath(tool); err == nil {
			os.Symlink(path, filepath.Join(bin, tool))
		}
	}
	cmd := exec.Command(filepath.Join(repo, "scripts", "install-deps"))
	cmd.Dir = repo
	cmd.Env = []string{"PATH=" + bin, "HOME=" + repo, "LANG=C"}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("running as root and there is no user nobody to run the script as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	b, err := cmd.CombinedOutput()
	out := string(b)
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatalf("install-deps succeeded with psql, node and javac missing:\n%s", out)
	}
	if strings.Contains(out, "command not found") {
		t.Fatalf("install-deps fails on a missing command instead of naming what to install:\n%s", out)
	}
	want := "apt-get update && apt-get install -y postgresql postgresql-contrib pgbouncer nodejs npm default-jdk-headless"
	if !strings.Contains(out, want) || !strings.Contains(out, "as root") {
		t.Fatalf("install-deps does not tell a user without root what to run as root (%q):\n%s", want, out)
	}
}

// The test binary builds cmd/pgstripe into a temporary directory, which must
// be gone when it exits: pgtest.Main's os.Exit skipped TestMain's deferred
// RemoveAll, leaving ~30 MB in $TMPDIR per run of this package.
func TestTestMainRemovesItsBinaryDir(t *testing.T) {
	if os.Getenv("PGSTRIPE_TESTMAIN_CHILD") != "" {
		binary(t)
		return
	}
	tmp := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTestMainRemovesItsBinaryDir$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "PGSTRIPE_TESTMAIN_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child test binary: %v\n%s", err, out)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "pgstripe-it-*"))
	if len(left) > 0 {
		t.Fatalf("the test binary left %v behind", left)
	}
}
