package integration

import (
	"bytes"
	"context"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jdbcJar is where Debian's libpostgresql-jdbc-java puts the driver.
const jdbcJar = "/usr/share/java/postgresql.jar"

// testJDBC compiles testdata/jdbc/Probe.java and runs it: statements that
// pass through give the same output through the proxy as directly; writes
// to stripe.* give the golden output and exactly the expected Stripe calls.
func testJDBC(t *testing.T, s *clientStack) {
	for _, tool := range []string{"javac", "java"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/install-deps (apt-get install default-jdk-headless)", tool)
		}
	}
	if _, err := os.Stat(jdbcJar); err != nil {
		t.Fatalf("the PostgreSQL JDBC driver is not installed (%v): run scripts/install-deps (apt-get install libpostgresql-jdbc-java)", err)
	}
	classes := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "javac", "-d", classes, "-cp", jdbcJar, filepath.Join("testdata", "jdbc", "Probe.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac Probe.java: %v\n%s", err, out)
	}
	run := func(mode, pgURL string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "java", "-cp", jdbcJar+string(os.PathListSeparator)+classes, "Probe", mode, jdbcURL(t, pgURL))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("java Probe %s: %v\n%s%s", mode, err, out, stderr.String())
		}
		return string(out)
	}

	proxied, direct := run("pass", s.proxy), run("pass", s.dbURL)
	if proxied != direct {
		t.Errorf("pgjdbc through the proxy and directly differ:\n%s", lineDiff(direct, proxied))
	}

	before := s.stats(t)
	compareGolden(t, filepath.Join("testdata", "jdbc", "writes.golden"), normalise(run("write", s.proxy)))
	// Per driver setting: INSERT … RETURNING 7, generated keys 2, batch
	// insert 4, the refused batch 2 (its third row is never sent) or, in
	// simple mode, 3 (each row its own Query), the transaction 3 (two of
	// them refused), autosave=always one more (the transaction goes on),
	// the multi-statement string 2 (refused whole in simple mode), jsonb 1;
	// the updatable ResultSet (defaults only) 1. Updates: 9 (batch) + 4
	// (fetch size) + 4 (max rows: every row, as in Postgres) each, plus
	// updateRow. Deletes: what each setting made, plus deleteRow.
	want := map[string]int64{
		"POST /v1/customers":              22 + 21 + 20 + 22,
		"POST /v1/customers/{customer}":   4*17 + 1,
		"DELETE /v1/customers/{customer}": 19 + 18 + 17 + 19,
	}
	if got := s.writesSince(t, before); !maps.Equal(got, want) {
		t.Errorf("Stripe calls made by Probe write:\n got %v\nwant %v", got, want)
	}

	// A Stripe that takes 3 s: setQueryTimeout(1) cancels the write.
	before = s.stats(t)
	s.emuOptions(t, `{"latency": "3s"}`)
	defer s.emuOptions(t, `{"latency": "0"}`)
	compareGolden(t, filepath.Join("testdata", "jdbc", "slow.golden"), normalise(run("slow", s.proxy)))
	// The emulator counts a request once its latency is over, client gone
	// or not: wait for the two cancelled creates, so that they are not
	// counted in the next subtest's calls.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got := s.writesSince(t, before)["POST /v1/customers"]; got >= 2 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the emulator saw %d of the 2 cancelled creates", got)
		}
	}
}

// jdbcURL turns a postgres:// URL into pgjdbc's form.
func jdbcURL(t *testing.T, pgURL string) string {
	t.Helper()
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{}
	q.Set("user", u.User.Username())
	if pw, ok := u.User.Password(); ok {
		q.Set("password", pw)
	}
	if m := u.Query().Get("sslmode"); m != "" {
		q.Set("sslmode", m)
	}
	return "jdbc:postgresql://" + u.Host + u.Path + "?" + q.Encode()
}

// testPsycopg2 runs testdata/psycopg2/probe.py with Debian's python3 (the
// one python3-psycopg2 is for), as testJDBC does the Java program.
func testPsycopg2(t *testing.T, s *clientStack) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import psycopg2").CombinedOutput(); err != nil {
		t.Fatalf("psycopg2 is not installed for %s (%v: %s): run scripts/install-deps (apt-get install python3-psycopg2)", python, err, strings.TrimSpace(string(out)))
	}
	run := func(mode, pgURL string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "psycopg2", "probe.py"), mode, pgURL)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("probe.py %s: %v\n%s%s", mode, err, out, stderr.String())
		}
		return string(out)
	}
	proxied, direct := run("pass", s.proxy), run("pass", s.dbURL)
	if proxied != direct {
		t.Errorf("psycopg2 through the proxy and directly differ:\n%s", lineDiff(direct, proxied))
	}
	before := s.stats(t)
	compareGolden(t, filepath.Join("testdata", "psycopg2", "writes.golden"), normalise(run("write", s.proxy)))
	want := map[string]int64{
		"POST /v1/customers":              1 + 3 + 3 + 1, // insert, executemany, execute_values, bad tax_exempt
		"POST /v1/customers/{customer}":   2,             // metadata, the Latin-1 expression
		"POST /v1/subscriptions":          1,             // the missing customer
		"DELETE /v1/customers/{customer}": 7,
	}
	if got := s.writesSince(t, before); !maps.Equal(got, want) {
		t.Errorf("Stripe calls made by probe.py write:\n got %v\nwant %v", got, want)
	}
}
