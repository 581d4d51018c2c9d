package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
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
	var javac []string
	for _, o := range jvmQuickStart {
		javac = append(javac, "-J"+o)
	}
	javac = append(javac, "-d", classes, "-cp", jdbcJar, filepath.Join("testdata", "jdbc", "Probe.java"))
	if out, err := exec.CommandContext(ctx, "javac", javac...).CombinedOutput(); err != nil {
		t.Fatalf("javac Probe.java: %v\n%s", err, out)
	}
	run := func(mode, pgURL string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := append(slices.Clone(jvmQuickStart), "-cp", jdbcJar+string(os.PathListSeparator)+classes, "Probe", mode, jdbcURL(t, pgURL))
		cmd := exec.CommandContext(ctx, "java", args...)
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

// jvmQuickStart makes javac and the short Probe runs cheaper: the JIT's
// optimising tier and the parallel collector's threads cost more CPU than
// they save in a few seconds' run (javac: 2.8 s of CPU instead of 1.6).
// What pgjdbc sends is the same.
var jvmQuickStart = []string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"}

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

// postgres.js, Drizzle and lib/pq are subtests of TestClients (on its
// stack, which costs more to start than they take to run): clients with
// protocol implementations of their own, beside those TestClients had.
// postgres.js pipelines, names its statements and describes them before
// it executes them (with a Flush, not a Sync, in between), and has
// sql.unsafe, sql.begin, COPY streams, LISTEN and cancel; Drizzle runs on
// it; lib/pq goes through database/sql with text or binary parameters,
// CopyIn and Listener. Statements that pass through give the same output
// through the proxy as directly; writes to stripe.* give what the README
// promises and exactly the expected Stripe calls.

// testPostgresJS runs testdata/node/postgresjs.js, as testPsycopg2 runs
// its probe: pass through the proxy and directly, compared; write
// through the proxy, against the golden file.
func testPostgresJS(t *testing.T, s *clientStack) {
	dir := nodeModules(t)
	run := func(mode, pgURL string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", "postgresjs.js", mode, pgURL)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node postgresjs.js %s: %v\n%s%s", mode, err, out, stderr.String())
		}
		return string(out)
	}
	proxied, direct := run("pass", s.proxy), run("pass", s.dbURL)
	if proxied != direct {
		t.Errorf("postgres.js through the proxy and directly differ:\n%s", lineDiff(direct, proxied))
	}
	before := s.stats(t)
	compareGolden(t, filepath.Join("testdata", "node", "postgresjs.golden"), normalise(run("write", s.proxy)))
	want := map[string]int64{
		// the two INSERTs, sql(rows)'s 2, the pipeline of 3 and the
		// prepared burst of 1 + 5 (Stripe refuses one of each), the one
		// in sql.begin
		"POST /v1/customers": 2 + 2 + 3 + 6 + 1,
		// 5 single UPDATEs, 3 pipelined, 3 unsafe, 1 simple, 1 refused;
		// in sql.begin: the refused one in a savepoint and the next, the
		// rolled back one, the refused one before 25P02, 2 pipelined
		"POST /v1/customers/{customer}":   5 + 3 + 3 + 1 + 1 + 2 + 1 + 1 + 2,
		"DELETE /v1/customers/{customer}": 12,
		"POST /v1/products":               1,
		"POST /v1/prices":                 1,
		// the missing customer, then the subscription
		"POST /v1/subscriptions":                             2,
		"DELETE /v1/subscriptions/{subscription_exposed_id}": 1,
	}
	if got := s.writesSince(t, before); !maps.Equal(got, want) {
		t.Errorf("Stripe calls made by postgresjs.js write:\n got %v\nwant %v", got, want)
	}
}

// drizzleResult is what testdata/node/drizzle.js prints.
type drizzleResult struct {
	Insert struct {
		ID, Email         string
		Metadata          map[string]string
		Balance           int
		Created, Livemode bool
	}
	Multi  []struct{ Email, Name string }
	Update []struct {
		Description string
		Balance     int
	}
	With []struct {
		Email    string
		Metadata map[string]string
	}
	Transaction struct{ Inner, After string }
	Errors      struct{ Computed, Stripe, Upsert string }
	Deleted     []string
}

// testDrizzle runs testdata/node/drizzle.js and checks what it saw and the
// Stripe calls it made.
func testDrizzle(t *testing.T, s *clientStack) {
	before := s.stats(t)
	out := node(t, s.proxy, "drizzle")
	var r drizzleResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node drizzle.js printed %q: %v", out, err)
	}
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("drizzle %s: got %+v", what, got)
		}
	}
	check("insert … returning (DEFAULT for the columns not given)", strings.HasPrefix(r.Insert.ID, "cus_") && r.Insert.Email == "node-drizzle@example.test" &&
		r.Insert.Metadata["source"] == "drizzle" && r.Insert.Balance == 0 && r.Insert.Created && !r.Insert.Livemode, r.Insert)
	check("multi-row insert", len(r.Multi) == 2 && r.Multi[0].Name == "" && r.Multi[1].Name == "M2", r.Multi)
	check("update … returning", len(r.Update) == 1 && r.Update[0].Description == "from drizzle" && r.Update[0].Balance == 100, r.Update)
	check("update under db.with()", len(r.With) == 1 && r.With[0].Email == "node-drizzle-m2@example.test" && r.With[0].Metadata["plan"] == "pro", r.With)
	check("Stripe refusal in a nested transaction", r.Transaction.Inner == "22023" && r.Transaction.After == "In tx", r.Transaction)
	check("errors", r.Errors.Computed == "42703" && r.Errors.Stripe == "22023" && r.Errors.Upsert == "0A000", r.Errors)
	check("delete … returning", strings.Join(r.Deleted, ",") == "node-drizzle-m1@example.test,node-drizzle-m2@example.test,node-drizzle@example.test", r.Deleted)
	want := map[string]int64{
		"POST /v1/customers": 3, "DELETE /v1/customers/{customer}": 3,
		// update, with, the refused one in the savepoint, name, the refused one
		"POST /v1/customers/{customer}": 5,
	}
	if got := s.writesSince(t, before); !maps.Equal(got, want) {
		t.Errorf("Stripe calls made by drizzle.js:\n got %v\nwant %v", got, want)
	}
}

// libpqPass runs, with lib/pq through database/sql on one connection,
// statements that pass through the proxy untouched, and returns one line
// per step with nothing that changes from run to run: the test runs it
// through the proxy and directly and compares. binary sets lib/pq's
// binary_parameters (one round trip per query with arguments, []byte
// sent in binary) instead of its default (Parse and Describe, then Bind
// and Execute, every argument in text).
func libpqPass(t *testing.T, pgURL string, binary bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, notices := libpqOpen(t, pgURL, binary)
	defer db.Close()
	var out []string
	p := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("lib/pq %s (binary_parameters %v): %v", what, binary, err)
		}
	}
	code := func(err error) string {
		var pe *pq.Error
		if errors.As(err, &pe) {
			return string(pe.Code) + " " + pe.Message
		}
		if err == nil {
			return "no error"
		}
		return "not a pq.Error: " + err.Error()
	}
	table := fmt.Sprintf("libpq_t_%v", binary)
	// Dropped at the end: the run through the proxy and the direct one
	// share the database.
	_, err := db.ExecContext(ctx, `CREATE TABLE `+table+` (id serial PRIMARY KEY, name text UNIQUE, n bigint, b bytea, a int8[], j jsonb, t timestamptz)`)
	must("create", err)
	_, err = db.ExecContext(ctx, `DO $$BEGIN RAISE NOTICE 'from lib/pq %', 1; END$$`)
	must("notice", err)

	// Arguments: text, NULL, bytea (with a zero byte and 0xff), an array,
	// jsonb as a string, a time.
	ins, err := db.PrepareContext(ctx, `INSERT INTO `+table+` (name, n, b, a, j, t) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`)
	must("prepare", err)
	for i := range 5 {
		var n any = int64(i)
		if i == 3 {
			n = nil
		}
		var id int
		err := ins.QueryRowContext(ctx, fmt.Sprintf("r%d", i), n, []byte{byte(i), 0, 255}, pq.Array([]int64{int64(i), -1}),
			fmt.Sprintf(`{"i": %d}`, i), time.Date(2024, 1, 1, 0, 0, i, 0, time.UTC)).Scan(&id)
		must("prepared insert", err)
		p("prepared insert %d", id)
	}
	must("close", ins.Close())
	rows, err := db.QueryContext(ctx, `SELECT name, n, b, a, j, t FROM `+table+` WHERE name <> $1 ORDER BY id`, "r0")
	must("query", err)
	for rows.Next() {
		var (
			name string
			n    sql.NullInt64
			b    []byte
			a    []int64
			j    string
			ts   time.Time
		)
		must("scan", rows.Scan(&name, &n, &b, pq.Array(&a), &j, &ts))
		p("row %s %v %x %v %s %s", name, n, b, a, j, ts.UTC().Format(time.RFC3339))
	}
	must("rows", rows.Err())
	// A NULL read back, and one sent.
	var s sql.NullString
	must("null", db.QueryRowContext(ctx, `SELECT $1::text`, nil).Scan(&s))
	p("null param %v", s.Valid)
	// Simple protocol (no arguments), several statements in one string.
	res, err := db.ExecContext(ctx, `UPDATE `+table+` SET n = n + 1 WHERE n IS NOT NULL; UPDATE `+table+` SET n = 0 WHERE n IS NULL`)
	must("multi-statement", err)
	ra, _ := res.RowsAffected()
	p("multi-statement rows affected %d", ra)

	// Errors, and the connection after them.
	_, err = db.ExecContext(ctx, `SELECT 1/0`)
	p("division by zero: %s", code(err))
	_, err = db.ExecContext(ctx, `INSERT INTO `+table+` (name) VALUES ($1)`, "r1")
	p("unique violation: %s", code(err))
	_, err = db.ExecContext(ctx, `SELEC 1`)
	p("syntax error: %s", code(err))
	_, err = db.ExecContext(ctx, `SELECT $1::int`, "abc")
	p("bad argument: %s", code(err))

	// A transaction rolled back, one in a failed state, one committed.
	tx, err := db.BeginTx(ctx, nil)
	must("begin", err)
	_, err = tx.ExecContext(ctx, `INSERT INTO `+table+` (name) VALUES ($1)`, "tx1")
	must("insert in tx", err)
	must("rollback", tx.Rollback())
	tx, err = db.BeginTx(ctx, nil)
	must("begin", err)
	_, err = tx.ExecContext(ctx, `INSERT INTO `+table+` (name) VALUES ($1)`, "r1")
	p("in tx: %s", code(err))
	_, err = tx.ExecContext(ctx, `SELECT 1`)
	p("after it in tx: %s", code(err))
	must("rollback", tx.Rollback())
	tx, err = db.BeginTx(ctx, nil)
	must("begin", err)
	_, err = tx.ExecContext(ctx, `INSERT INTO `+table+` (name) VALUES ($1)`, "tx2")
	must("insert in tx", err)
	must("commit", tx.Commit())

	// COPY FROM STDIN: pq.CopyIn, rows buffered by Exec, sent on the last
	// Exec; then one Postgres refuses, and the connection goes on.
	tx, err = db.BeginTx(ctx, nil)
	must("begin", err)
	cp, err := tx.PrepareContext(ctx, pq.CopyIn(table, "name", "n", "b"))
	must("copy in", err)
	for i := range 3 {
		_, err = cp.ExecContext(ctx, fmt.Sprintf("c%d", i), int64(i), []byte{0xde, 0xad, byte(i)})
		must("copy row", err)
	}
	_, err = cp.ExecContext(ctx)
	must("copy flush", err)
	must("copy close", cp.Close())
	must("commit copy", tx.Commit())
	tx, err = db.BeginTx(ctx, nil)
	must("begin", err)
	cp, err = tx.PrepareContext(ctx, `COPY `+table+` (name, n) FROM STDIN`)
	must("copy in", err)
	_, err = cp.ExecContext(ctx, "bad", "notanumber")
	if err == nil {
		_, err = cp.ExecContext(ctx)
	}
	p("copy refused: %s", code(err))
	cp.Close()
	tx.Rollback()
	var copied string
	must("after copy", db.QueryRowContext(ctx, `SELECT string_agg(name || ':' || n || ':' || encode(b, 'hex'), ',' ORDER BY name) FROM `+table+` WHERE name LIKE 'c%'`).Scan(&copied))
	p("copied %s", copied)

	// LISTEN on pq.Listener's own connection, NOTIFY from the pool's.
	l := pq.NewListener(pgURL, 10*time.Millisecond, time.Second, nil)
	defer l.Close()
	must("listen", l.Listen("libpq_chan"))
	must("listener ping", l.Ping())
	_, err = db.ExecContext(ctx, `SELECT pg_notify('libpq_chan', $1)`, "hello")
	must("notify", err)
	_, err = db.ExecContext(ctx, `NOTIFY libpq_chan, 'world'`)
	must("notify", err)
	for range 2 {
		select {
		case n := <-l.Notify:
			if n == nil {
				t.Fatalf("lib/pq listener reconnected (a nil notification)")
			}
			p("notification %s %s", n.Channel, n.Extra)
		case <-ctx.Done():
			t.Fatalf("lib/pq listener: no notification")
		}
	}

	// A statement cancelled by its context (lib/pq sends a CancelRequest).
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = db.ExecContext(cctx, `SELECT pg_sleep(10)`)
	ccancel()
	p("cancelled: %s", code(err))
	var one int
	must("after cancel", db.QueryRowContext(ctx, `SELECT 1`).Scan(&one))

	// The seeded account, read through stripe.*.
	var customers int
	var created time.Time
	must("stripe.customers", db.QueryRowContext(ctx, `SELECT count(*), min(created) FROM stripe.customers WHERE email LIKE $1`, "%@%").Scan(&customers, &created))
	p("stripe.customers read %v %v", customers > 0, !created.IsZero())

	_, err = db.ExecContext(ctx, `DROP TABLE `+table)
	must("drop", err)
	p("notices %q", notices())
	return out
}

// testLibPQ runs libpqPass through the proxy and directly (in both of lib/pq's
// parameter modes) and compares, then writes to stripe.* with lib/pq and
// checks what it saw and the Stripe calls made.
func testLibPQ(t *testing.T, s *clientStack) {
	for _, binary := range []bool{false, true} {
		proxied, direct := libpqPass(t, s.proxy, binary), libpqPass(t, s.dbURL, binary)
		if p, d := strings.Join(proxied, "\n"), strings.Join(direct, "\n"); p != d {
			t.Errorf("lib/pq (binary_parameters %v) through the proxy and directly differ:\n%s", binary, lineDiff(d, p))
		}
	}
	before := s.stats(t)
	for _, binary := range []bool{false, true} {
		libpqWrites(t, s, binary)
	}
	want := map[string]int64{
		// per mode: insert, prepared insert ×2, the refused tax_exempt,
		// the one in BEGIN
		"POST /v1/customers": 2 * 5,
		// per mode: metadata, NULL description, preferred_locales,
		// the refused tax_exempt
		"POST /v1/customers/{customer}":   2 * 4,
		"DELETE /v1/customers/{customer}": 2 * 4,
		"POST /v1/subscriptions":          2 * 1, // the missing customer
	}
	if got := s.writesSince(t, before); !maps.Equal(got, want) {
		t.Errorf("Stripe calls made by lib/pq:\n got %v\nwant %v", got, want)
	}
}

// libpqWrites writes to stripe.* through the proxy with lib/pq, on one
// connection, and checks each answer.
func libpqWrites(t *testing.T, s *clientStack, binary bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mode := map[bool]string{false: "text", true: "binary"}[binary]
	db, notices := libpqOpen(t, s.proxy, binary)
	defer db.Close()
	fail := func(what string, err error) {
		t.Helper()
		t.Fatalf("lib/pq (%s) %s: %v", mode, what, err)
	}
	wantCode := func(what string, err error, code string) {
		t.Helper()
		var pe *pq.Error
		if !errors.As(err, &pe) || string(pe.Code) != code {
			t.Errorf("lib/pq (%s) %s: %v, want SQLSTATE %s", mode, what, err, code)
		}
	}
	email := "libpq-" + mode + "@example.test"

	var cus string
	var meta []byte
	if err := db.QueryRowContext(ctx, `INSERT INTO stripe.customers (email, name, metadata) VALUES ($1, $2, $3) RETURNING id, metadata`,
		email, "Lib PQ", `{"source": "lib/pq"}`).Scan(&cus, &meta); err != nil || !strings.HasPrefix(cus, "cus_") || string(meta) != `{"source": "lib/pq"}` {
		fail("INSERT … RETURNING", fmt.Errorf("%v: %q %s", err, cus, meta))
	}
	res, err := db.ExecContext(ctx, `UPDATE stripe.customers SET metadata = metadata || $1::jsonb WHERE id = $2`, `{"plan": "pro"}`, cus)
	if n, _ := rowsAffected(res); err != nil || n != 1 {
		fail("UPDATE metadata", fmt.Errorf("%v, %d rows", err, n))
	}
	// NULL unsets the description. preferred_locales is jsonb: a JSON
	// array (pq.Array would send a Postgres array literal, which jsonb
	// refuses, directly as well).
	var desc sql.NullString
	if err := db.QueryRowContext(ctx, `UPDATE stripe.customers SET description = $1 WHERE id = $2 RETURNING description`, nil, cus).Scan(&desc); err != nil || desc.Valid {
		fail("UPDATE description = NULL", fmt.Errorf("%v: %+v", err, desc))
	}
	var locales []byte
	if err := db.QueryRowContext(ctx, `UPDATE stripe.customers SET preferred_locales = $1 WHERE id = $2 RETURNING preferred_locales`,
		`["en", "fr"]`, cus).Scan(&locales); err != nil || string(locales) != `["en", "fr"]` {
		fail("UPDATE preferred_locales", fmt.Errorf("%v: %s", err, locales))
	}
	var got struct {
		meta, locales []byte
		desc          sql.NullString
	}
	if err := db.QueryRowContext(ctx, `SELECT metadata, description, preferred_locales FROM stripe.customers WHERE id = $1`, cus).
		Scan(&got.meta, &got.desc, &got.locales); err != nil || string(got.meta) != `{"plan": "pro", "source": "lib/pq"}` ||
		got.desc.Valid || string(got.locales) != `["en", "fr"]` {
		fail("read after the UPDATEs", fmt.Errorf("%v: %s %+v %s", err, got.meta, got.desc, got.locales))
	}

	// A named prepared statement executed twice.
	stmt, err := db.PrepareContext(ctx, `INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`)
	if err != nil {
		fail("Prepare", err)
	}
	var prepared []string
	for i := range 2 {
		var id string
		if err := stmt.QueryRowContext(ctx, fmt.Sprintf("libpq-%s-p%d@example.test", mode, i)).Scan(&id); err != nil || !strings.HasPrefix(id, "cus_") {
			fail("prepared INSERT", fmt.Errorf("%v: %q", err, id))
		}
		prepared = append(prepared, id)
	}
	stmt.Close()

	// Errors with their SQLSTATE; the connection goes on.
	_, err = db.ExecContext(ctx, `INSERT INTO stripe.customers (email, nonsense) VALUES ($1, $2)`, email, "x")
	wantCode("unknown column", err, "42703")
	_, err = db.ExecContext(ctx, `INSERT INTO stripe.customers (email, tax_exempt) VALUES ($1, $2)`, email, "bogus")
	wantCode("Stripe's refusal of an INSERT", err, "22023")
	_, err = db.ExecContext(ctx, `UPDATE stripe.customers SET tax_exempt = $1 WHERE id = $2`, "bogus", cus)
	wantCode("Stripe's refusal of an UPDATE", err, "22023")
	_, err = db.ExecContext(ctx, `INSERT INTO stripe.subscriptions (customer, items) VALUES ($1, $2)`, "cus_doesnotexist", `[{"price": "price_nope"}]`)
	wantCode("missing customer", err, "P0002")
	_, err = db.ExecContext(ctx, `UPDATE stripe.customers SET balance = $1 WHERE id = $2`, "lots", cus)
	wantCode("wrong type", err, "22P02")
	_, err = db.ExecContext(ctx, `DELETE FROM stripe.balance_transactions WHERE id = $1`, "txn_x")
	wantCode("read-only table", err, "0A000")
	_, err = db.ExecContext(ctx, `UPDATE stripe.customers SET name = 'x' WHERE id = '`+cus+`'; SELECT 1`)
	wantCode("write in a multi-statement query", err, "0A000")
	// COPY into a stripe table is refused before any row; the connection
	// goes on.
	if tx, err := db.BeginTx(ctx, nil); err != nil {
		fail("BEGIN", err)
	} else {
		_, err := tx.PrepareContext(ctx, pq.CopyInSchema("stripe", "customers", "email"))
		wantCode("COPY stripe.customers FROM STDIN", err, "0A000")
		tx.Rollback()
	}

	// Inside a transaction: the write goes to Stripe at once with a
	// NOTICE, and ROLLBACK leaves it; after a refusal, 25P02.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		fail("BEGIN", err)
	}
	var txCus string
	if err := tx.QueryRowContext(ctx, `INSERT INTO stripe.customers (email) VALUES ($1) RETURNING id`, "libpq-"+mode+"-tx@example.test").Scan(&txCus); err != nil {
		fail("INSERT in BEGIN", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE stripe.customers SET tax_exempt = $1 WHERE id = $2`, "bogus", txCus)
	wantCode("Stripe's refusal in BEGIN", err, "22023")
	_, err = tx.ExecContext(ctx, `UPDATE stripe.customers SET name = $1 WHERE id = $2`, "never", txCus)
	wantCode("write after the refusal in BEGIN", err, "25P02")
	if err := tx.Rollback(); err != nil {
		fail("ROLLBACK", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM stripe.customers WHERE id = $1 AND name IS NULL`, txCus).Scan(&n); err != nil || n != 1 {
		fail("the write in the rolled back transaction", fmt.Errorf("%v: %d rows", err, n))
	}

	// DELETE with an array argument, then nothing left.
	ids := append([]string{cus, txCus}, prepared...)
	res, err = db.ExecContext(ctx, `DELETE FROM stripe.customers WHERE id = ANY($1)`, pq.Array(ids))
	if n, _ := rowsAffected(res); err != nil || n != 4 {
		fail("DELETE … ANY($1)", fmt.Errorf("%v, %d rows", err, n))
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM stripe.customers WHERE id = ANY($1)`, pq.Array(ids)).Scan(&n); err != nil || n != 0 {
		fail("after DELETE", fmt.Errorf("%v: %d rows", err, n))
	}
	if notices := notices(); len(notices) != 1 || !strings.HasPrefix(notices[0], "01000 ") || !strings.Contains(notices[0], "ROLLBACK cannot undo") {
		t.Errorf("lib/pq (%s) notices: %q, want the one of the write in BEGIN", mode, notices)
	}
}

func rowsAffected(res sql.Result) (int64, error) {
	if res == nil {
		return 0, errors.New("no result")
	}
	return res.RowsAffected()
}

// libpqOpen opens url with lib/pq (binary_parameters when binary) on one
// connection, so that session state (a failed transaction, a COPY) stays
// on it, as the connection staying usable is part of what is compared.
// notices returns the NOTICEs received so far, as "code message". The
// caller closes db.
func libpqOpen(t *testing.T, url string, binary bool) (db *sql.DB, notices func() []string) {
	t.Helper()
	if binary {
		url += "&binary_parameters=yes"
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	base, err := pq.NewConnector(url)
	if err != nil {
		t.Fatal(err)
	}
	db = sql.OpenDB(pq.ConnectorWithNoticeHandler(base, func(e *pq.Error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, string(e.Code)+" "+e.Message)
	}))
	db.SetMaxOpenConns(1)
	return db, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}
