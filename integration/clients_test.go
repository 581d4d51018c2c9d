package integration

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/pgstripe/pgstripe/pgtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/psql and testdata/node")

// clientStack is what a user runs: `pgstripe emulator` and `pgstripe serve`
// (both the built binary) in front of a throwaway database. One stack is
// shared by the client subtests, which run one after another so that the
// emulator's request counters can be read per subtest.
type clientStack struct {
	emuBase string // http://host:port of the emulator
	dbURL   string // direct, as the superuser
	proxy   string // the same database through the proxy
	srv     *proc
}

func startClientStack(t *testing.T) *clientStack {
	t.Helper()
	dbURL := pgtest.NewDB(t)
	emuAddr := freeAddr(t)
	emu := start(t, nil, "emulator", "--listen", emuAddr, "--seed", "3", "--rate-limit", "-1")
	s := &clientStack{emuBase: "http://" + emuAddr, dbURL: dbURL}
	waitHTTP(t, s.emuBase+"/_emulator/stats", emu, 30*time.Second)
	proxyAddr, metricsAddr := freeAddr(t), freeAddr(t)
	s.srv = start(t, []string{
		"DATABASE_URL=" + dbURL, "STRIPE_API_KEY=" + apiKey, "STRIPE_API_BASE=" + s.emuBase,
		"PGSTRIPE_LISTEN=" + proxyAddr, "PGSTRIPE_METRICS_LISTEN=" + metricsAddr,
		"PGSTRIPE_RATE_LIMIT=500", "PGSTRIPE_POLL_INTERVAL=200ms", "PGSTRIPE_LOG_FORMAT=json",
	}, "serve")
	waitHTTP(t, "http://"+metricsAddr+"/healthz", s.srv, 60*time.Second)
	u, _ := url.Parse(dbURL)
	u.Host = proxyAddr
	s.proxy = u.String()
	waitLiveURL(t, s.proxy, 60*time.Second)
	return s
}

// as returns the proxy URL with another user name.
func (s *clientStack) as(user string) string {
	u, _ := url.Parse(s.proxy)
	u.User = url.User(user)
	return u.String()
}

type emuStats struct {
	Total   int64            `json:"total"`
	ByRoute map[string]int64 `json:"by_route"`
	Objects map[string]int   `json:"objects"`
}

// stats reads the emulator's request and object counters (its admin API).
func (s *clientStack) stats(t *testing.T) emuStats {
	t.Helper()
	res, err := http.Get(s.emuBase + "/_emulator/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st emuStats
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// emuOptions changes the emulator's knobs (latency, faults) at run time.
func (s *clientStack) emuOptions(t *testing.T, opts string) {
	t.Helper()
	res, err := http.Post(s.emuBase+"/_emulator/options", "application/json", strings.NewReader(opts))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("emulator options %s: HTTP %d", opts, res.StatusCode)
	}
}

// writesSince gives, per route, the requests that can change Stripe (all
// but GET) made since before: sync only reads, so these are the proxy's.
func (s *clientStack) writesSince(t *testing.T, before emuStats) map[string]int64 {
	t.Helper()
	after := s.stats(t)
	d := map[string]int64{}
	for r, n := range after.ByRoute {
		if !strings.HasPrefix(r, "GET ") && n != before.ByRoute[r] {
			d[r] = n - before.ByRoute[r]
		}
	}
	return d
}

// The clients of issue 8 other than pgx (covered in writethrough/) against
// the real binary: psql, node-postgres, knex, Sequelize, JDBC, psycopg2,
// postgres.js, Drizzle, lib/pq and GORM, plus a role without
// privileges and a Stripe that does not answer in time.
func TestClients(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("psql is not installed: run scripts/install-deps")
	}
	s := startClientStack(t)
	ctx := context.Background()
	admin := pgtest.Connect(t, s.dbURL)
	for _, q := range []string{
		// Roles are the cluster's, shared by every database of this test
		// binary (-count=2 runs this again).
		`DO $$BEGIN CREATE ROLE app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$`,
		`GRANT USAGE ON SCHEMA stripe TO app`,
		`GRANT SELECT ON stripe.customers TO app`,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	t.Run("psql", func(t *testing.T) {
		before := s.stats(t)
		runPSQLGolden(t, s.proxy, "writes")
		// Exactly the calls the script's statements make, failed ones included.
		want := map[string]int64{
			"POST /v1/customers":                                 4, // psql@, psql-tx@, psql-rollback@, bad tax_exempt
			"POST /v1/customers/{customer}":                      4, // metadata ||, metadata -, metadata =, name in BEGIN
			"DELETE /v1/customers/{customer}":                    3,
			"POST /v1/products":                                  1,
			"POST /v1/prices":                                    2, // the price, the NULL product
			"POST /v1/prices/{price}":                            1, // active = false
			"POST /v1/subscriptions":                             2, // the subscription, the missing customer
			"POST /v1/subscriptions/{subscription_exposed_id}":   1,
			"DELETE /v1/subscriptions/{subscription_exposed_id}": 1,
			"POST /v1/invoices":                                  1,
			"POST /v1/invoiceitems":                              1,
			"POST /v1/invoices/{invoice}/finalize":               1,
			"POST /v1/invoices/{invoice}/pay":                    1,
		}
		if got := s.writesSince(t, before); !maps.Equal(got, want) {
			t.Errorf("Stripe calls made by writes.sql:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("psql every table", func(t *testing.T) {
		runPSQLGolden(t, s.proxy, "tables")
	})

	t.Run("psql refused before any call", func(t *testing.T) {
		// 101 local rows for one UPDATE's WHERE, written directly (they
		// don't exist in Stripe, which is fine: no call may be made).
		if _, err := admin.Exec(ctx, `INSERT INTO stripe.customers (id, email, _raw, _synced_at, _as_of)
			SELECT 'cus_bulk' || i, 'bulk-' || i || '@example.test', '{}', now(), now() FROM generate_series(1, 101) i`); err != nil {
			t.Fatal(err)
		}
		defer admin.Exec(ctx, `DELETE FROM stripe.customers WHERE id LIKE 'cus_bulk%'`)
		before := s.stats(t)
		runPSQLGolden(t, s.proxy, "refused")
		if got := s.writesSince(t, before); len(got) != 0 {
			t.Errorf("the emulator saw %v while every write of refused.sql should be refused before any call", got)
		}
	})

	t.Run("node-postgres", func(t *testing.T) {
		before := s.stats(t)
		testNode(t, s.proxy)
		want := map[string]int64{
			"POST /v1/customers": 4, "POST /v1/customers/{customer}": 1, "DELETE /v1/customers/{customer}": 4,
			"POST /v1/products": 1, "POST /v1/prices": 1,
			"POST /v1/subscriptions": 2, "POST /v1/subscriptions/{subscription_exposed_id}": 1,
			"DELETE /v1/subscriptions/{subscription_exposed_id}": 1,
		}
		if got := s.writesSince(t, before); !maps.Equal(got, want) {
			t.Errorf("Stripe calls made by writes.js:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("node-postgres every table", func(t *testing.T) {
		compareGolden(t, filepath.Join("testdata", "node", "tables.golden"), normalise(string(node(t, s.proxy, "tables"))))
	})

	t.Run("knex", func(t *testing.T) {
		before := s.stats(t)
		testKnex(t, s.proxy)
		want := map[string]int64{
			// 4 made, 2 refused by Stripe (bad tax_exempt), 1 in BEGIN
			"POST /v1/customers": 7, "POST /v1/customers/{customer}": 2, "DELETE /v1/customers/{customer}": 5,
		}
		if got := s.writesSince(t, before); !maps.Equal(got, want) {
			t.Errorf("Stripe calls made by knex.js:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("kysely", func(t *testing.T) { testKysely(t, s) })

	t.Run("sequelize", func(t *testing.T) {
		before := s.stats(t)
		testSequelize(t, s.proxy)
		want := map[string]int64{
			// 3 made; a 41-character metadata key is refused before any call
			"POST /v1/customers": 3, "POST /v1/customers/{customer}": 2, "DELETE /v1/customers/{customer}": 3,
		}
		if got := s.writesSince(t, before); !maps.Equal(got, want) {
			t.Errorf("Stripe calls made by sequelize.js:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("jdbc", func(t *testing.T) { testJDBC(t, s) })

	t.Run("psycopg2", func(t *testing.T) { testPsycopg2(t, s) })

	t.Run("postgres.js", func(t *testing.T) { testPostgresJS(t, s) })

	t.Run("drizzle", func(t *testing.T) { testDrizzle(t, s) })

	t.Run("lib-pq", func(t *testing.T) { testLibPQ(t, s) })

	t.Run("pgx through the binary", func(t *testing.T) {
		testPGX(t, s)
	})

	t.Run("gorm", func(t *testing.T) {
		for _, simple := range []bool{false, true} {
			testGORM(t, s, simple)
		}
	})

	t.Run("role without privilege", func(t *testing.T) {
		// app logs in through the proxy (trust auth) and may only read.
		app := s.as("app")
		out, err := psql(t, app, "-c", "SELECT current_user, count(*) > 0 FROM stripe.customers")
		if err != nil || strings.TrimSpace(out) != "app|t" {
			t.Fatalf("app reading through the proxy: %v %q", err, out)
		}
		var victim string
		if err := admin.QueryRow(ctx, `SELECT id FROM stripe.customers WHERE id NOT LIKE 'cus_bulk%' ORDER BY id LIMIT 1`).Scan(&victim); err != nil {
			t.Fatal(err)
		}
		before := s.stats(t)
		for _, q := range []string{
			`INSERT INTO stripe.customers (email) VALUES ('app@example.test')`,
			`UPDATE stripe.customers SET name = 'app' WHERE id = '` + victim + `'`,
			`DELETE FROM stripe.customers WHERE id = '` + victim + `'`,
		} {
			out, err := psql(t, app, "-v", "VERBOSITY=verbose", "-c", q)
			if err == nil || !strings.Contains(out, "ERROR:  42501:") {
				t.Errorf("%s as app: %v %q, want ERROR 42501", q, err, out)
			}
		}
		if got := s.writesSince(t, before); len(got) != 0 {
			t.Errorf("Stripe saw %v from a role without the privilege", got)
		}
	})

	t.Run("stripe too slow: cancel", func(t *testing.T) {
		testCancel(t, s)
	})

	t.Run("stripe too slow: statement_timeout", func(t *testing.T) {
		testStatementTimeout(t, s)
	})

	t.Run("stripe slower than idle_in_transaction_session_timeout", func(t *testing.T) {
		testIdleTimeout(t, s)
	})
}

// runPSQLGolden runs testdata/psql/NAME.sql through psql and compares the
// normalised output with NAME.golden.
func runPSQLGolden(t *testing.T, proxyURL, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", proxyURL, "-X", "-a", "-v", "ON_ERROR_STOP=0", "-f", name+".sql")
	cmd.Dir = filepath.Join("testdata", "psql")
	cmd.Env = append(os.Environ(), "PGTZ=UTC", "LC_ALL=C", "PGCLIENTENCODING=UTF8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql -f %s.sql: %v\n%s", name, err, out)
	}
	compareGolden(t, filepath.Join("testdata", "psql", name+".golden"), normalise(string(out)))
}

// compareGolden compares got with the golden file (-update rewrites it).
func compareGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./integration -run TestClients -update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("the output differs from %s (go test ./integration -run TestClients -update rewrites it; review the diff):\n%s",
			golden, lineDiff(string(want), got))
	}
}

var (
	// Stripe ids and request ids: a prefix and a random part with at least
	// one capital or digit (so column names and codes are left alone).
	idPattern   = regexp.MustCompile(`\b([a-z]+)_([A-Za-z0-9]{12,})\b`)
	timePattern = regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?)?`)
	// LOCATION names Postgres's source file and line: it changes with the
	// server version, so only its presence is kept. That tells Postgres's
	// own errors, which the proxy must pass on whole, from pgstripe's.
	locationLine = regexp.MustCompile(`(?m)^LOCATION:  .*\n`)
	// psql's LINE 1: echo cuts a long statement after ~40 characters,
	// sometimes inside an id, which the seed's random ids then change.
	cutID = regexp.MustCompile(`(?m)\b([a-z]+)_[A-Za-z0-9]+\.\.\.$`)
)

// normalise replaces ids by <prefix>_<n> (numbered by first appearance, so
// the same object keeps its name) and timestamps by <time>.
func normalise(s string) string {
	s = locationLine.ReplaceAllString(s, "LOCATION:  <source>\n")
	s = cutID.ReplaceAllStringFunc(s, func(m string) string { return cutID.FindStringSubmatch(m)[1] + "_<cut>..." })
	seen := map[string]string{}
	count := map[string]int{}
	s = idPattern.ReplaceAllStringFunc(s, func(m string) string {
		p := idPattern.FindStringSubmatch(m)
		if !strings.ContainsAny(p[2], "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") {
			return m
		}
		if n, ok := seen[m]; ok {
			return n
		}
		count[p[1]]++
		n := fmt.Sprintf("%s_<%d>", p[1], count[p[1]])
		seen[m] = n
		return n
	})
	return timePattern.ReplaceAllString(s, "<time>")
}

// lineDiff shows the first differing line with some context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	line := func(l []string, i int) string {
		if i < len(l) {
			return l[i]
		}
		return "(end of output)"
	}
	for i := 0; i < len(w) || i < len(g); i++ {
		if i < len(w) && i < len(g) && w[i] == g[i] {
			continue
		}
		var b strings.Builder
		for j := max(0, i-4); j < i; j++ {
			fmt.Fprintf(&b, "      %4d: %s\n", j+1, w[j])
		}
		fmt.Fprintf(&b, "-want %4d: %s\n+got  %4d: %s\n", i+1, line(w, i), i+1, line(g, i))
		return b.String()
	}
	return "(no line differs)"
}

// nodeResult is what testdata/node/writes.js prints.
type nodeResult struct {
	Notices []struct{ Code, Message string }
	Insert  struct {
		Command  string
		RowCount int
		Row      struct {
			ID, Email, Name string
			Metadata        map[string]string
		}
	}
	Update struct {
		Command  string
		RowCount int
		Row      struct {
			Metadata    map[string]string
			Description string
		}
	}
	ReadBack struct {
		Metadata    map[string]string
		Description string
	}
	Price struct {
		ID         string
		UnitAmount string `json:"unit_amount"` // bigint: node-postgres gives a string
		Recurring  struct{ Interval string }
	}
	Subscription struct {
		Command, ID, Customer, Status, ItemPrice, Price string
		ItemQuantity                                    int
	}
	SubscriptionUpdate struct {
		Command  string
		RowCount int
		Metadata map[string]string
	}
	SubscriptionItems  int
	SubscriptionCancel struct {
		Command  string
		RowCount int
	}
	SubscriptionAfterCancel struct{ Status string }
	AfterRollback           struct {
		ID        string
		LocalRows int
	}
	Prepared []struct {
		ID, Email string
	}
	PreparedDelete struct {
		RowCount int
		Emails   []string
	}
	Errors map[string]struct {
		OK                          bool
		Code, Message, Detail, Hint string
	}
	Delete struct {
		Command  string
		RowCount int
	}
	AfterDelete int
}

// node runs testdata/node/NAME.js with the machine's node (installing
// the packages from the lock file first if needed) and returns its stdout.
func node(t *testing.T, proxyURL, name string) []byte {
	t.Helper()
	dir := nodeModules(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", name+".js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PGSTRIPE_PROXY_URL="+proxyURL, "PGSTRIPE_TAG=node")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s.js: %v\n%s%s", name, err, out, stderr.String())
	}
	return out
}

// nodeModules makes sure node and testdata/node's packages (node-postgres,
// knex, Sequelize, Kysely, postgres.js, Drizzle) are there, running
// `npm ci` when one is missing (a checkout whose node_modules predates a
// package added to the lock file), and returns that directory.
func nodeModules(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/install-deps")
	}
	dir := filepath.Join("testdata", "node")
	missing := false
	for _, pkg := range []string{"pg", "knex", "sequelize", "kysely", "postgres", "drizzle-orm"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg)); err != nil {
			missing = true
		}
	}
	if missing {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the node packages are not installed and `npm ci` failed (run scripts/install-deps, or `cd integration/testdata/node && npm ci`): %v\n%s", err, out)
		}
	}
	return dir
}

// knexResult is what testdata/node/knex.js prints.
type knexResult struct {
	Insert struct {
		ID, Email, Created string
		Metadata           map[string]string
		Raw                bool
	}
	Multi  []struct{ ID, Email, Name string }
	Update struct {
		Metadata    map[string]string
		Description string
	}
	Commit struct {
		ID      string
		Updated int
	}
	Savepoint struct {
		Inner struct{ Code, Message, Detail string }
		After string
	}
	Aborted        struct{ Code string }
	Timeout        struct{ Message string }
	AfterTimeoutMs int
	Deleted        int
}

// testKnex runs testdata/node/knex.js (the SQL an ORM sends) and checks
// what it saw.
func testKnex(t *testing.T, proxyURL string) {
	out := node(t, proxyURL, "knex")
	var r knexResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node knex.js printed %q: %v", out, err)
	}
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("knex %s: got %+v", what, got)
		}
	}
	check("insert … returning *", strings.HasPrefix(r.Insert.ID, "cus_") && r.Insert.Email == "node-knex@example.test" &&
		r.Insert.Metadata["source"] == "knex" && r.Insert.Created != "" && r.Insert.Raw, r.Insert)
	check("multi-row insert with DEFAULT", len(r.Multi) == 2 && strings.HasPrefix(r.Multi[0].ID, "cus_") && r.Multi[0].Name == "" &&
		r.Multi[1].Email == "node-knex-m2@example.test" && r.Multi[1].Name == "M2", r.Multi)
	check("update … returning", r.Update.Metadata["plan"] == "pro" && r.Update.Description == "from knex", r.Update)
	check("transaction", strings.HasPrefix(r.Commit.ID, "cus_") && r.Commit.Updated == 1, r.Commit)
	check("Stripe refusal in a savepoint", r.Savepoint.Inner.Code == "22023" && strings.Contains(r.Savepoint.Inner.Message, "tax_exempt") &&
		strings.Contains(r.Savepoint.Inner.Detail, "req_") && r.Savepoint.After == "node-knex-sp@example.test", r.Savepoint)
	check("statement after a refusal in a transaction", r.Aborted.Code == "25P02", r.Aborted)
	check("query timeout", strings.Contains(r.Timeout.Message, "timeout"), r.Timeout)
	// pg_sleep(20) still running would hold the only connection.
	check("query after the timeout's cancel", r.AfterTimeoutMs < 5000, r.AfterTimeoutMs)
	check("delete", r.Deleted == 5, r.Deleted)
}

// sequelizeResult is what testdata/node/sequelize.js prints.
type sequelizeResult struct {
	Create struct {
		ID, Email, Name string
		Metadata        map[string]string
	}
	Bulk   []struct{ ID, Email, Name string }
	Update struct {
		Count         int
		Name, Balance string
	}
	Locked struct {
		Before, After string
		Count         int
	}
	Refused, StripeError struct{ Code, Message string }
	Found                []string
	Destroyed, Left      int
}

// testSequelize runs testdata/node/sequelize.js (a hand-written model of
// stripe.customers) and checks what it saw.
func testSequelize(t *testing.T, proxyURL string) {
	out := node(t, proxyURL, "sequelize")
	var r sequelizeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node sequelize.js printed %q: %v", out, err)
	}
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("sequelize %s: got %+v", what, got)
		}
	}
	check("create", strings.HasPrefix(r.Create.ID, "cus_") && r.Create.Email == "node-sequelize@example.test" && r.Create.Name == "Seq" &&
		r.Create.Metadata["source"] == "sequelize", r.Create)
	check("bulkCreate", len(r.Bulk) == 2 && strings.HasPrefix(r.Bulk[0].ID, "cus_") && strings.HasPrefix(r.Bulk[1].ID, "cus_") &&
		r.Bulk[0].ID != r.Bulk[1].ID && r.Bulk[1].Name == "B2", r.Bulk)
	check("update … returning", r.Update.Count == 1 && r.Update.Name == "Renamed" && r.Update.Balance == "250", r.Update)
	check("update … returning after findByPk with lock", r.Locked.Before == "Renamed" && r.Locked.Count == 1 && r.Locked.After == "After lock", r.Locked)
	check("upsert refused", r.Refused.Code == "0A000" && strings.Contains(r.Refused.Message, "ON CONFLICT"), r.Refused)
	check("metadata key refused", r.StripeError.Code == "22023" && strings.Contains(r.StripeError.Message, "metadata keys of at most 40"), r.StripeError)
	check("findAll", strings.Join(r.Found, ",") == "node-sequelize-b1@example.test,node-sequelize-b2@example.test,node-sequelize@example.test", r.Found)
	check("destroy", r.Destroyed == 3 && r.Left == 0, []int{r.Destroyed, r.Left})
}

// testNode runs testdata/node/writes.js and checks what it saw.
func testNode(t *testing.T, proxyURL string) {
	out := node(t, proxyURL, "writes")
	var r nodeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node writes.js printed %q: %v", out, err)
	}
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("node-postgres %s: got %+v", what, got)
		}
	}
	check("INSERT … RETURNING", r.Insert.Command == "INSERT" && r.Insert.RowCount == 1 && strings.HasPrefix(r.Insert.Row.ID, "cus_") &&
		r.Insert.Row.Email == "node@example.test" && r.Insert.Row.Metadata["source"] == "node", r.Insert)
	check("UPDATE metadata || $1", r.Update.Command == "UPDATE" && r.Update.RowCount == 1 && r.Update.Row.Metadata["plan"] == "pro" &&
		r.Update.Row.Metadata["source"] == "node" && r.Update.Row.Description == "updated from node", r.Update)
	check("read after UPDATE", r.ReadBack.Metadata["plan"] == "pro" && r.ReadBack.Description == "updated from node", r.ReadBack)
	check("price", strings.HasPrefix(r.Price.ID, "price_") && r.Price.UnitAmount == "900" && r.Price.Recurring.Interval == "month", r.Price)
	check("subscription INSERT", r.Subscription.Command == "INSERT" && strings.HasPrefix(r.Subscription.ID, "sub_") &&
		r.Subscription.Customer == r.Insert.Row.ID && r.Subscription.ItemPrice == r.Subscription.Price && r.Subscription.ItemQuantity == 2 &&
		r.Subscription.Status != "", r.Subscription)
	check("subscription UPDATE", r.SubscriptionUpdate.Command == "UPDATE" && r.SubscriptionUpdate.RowCount == 1 &&
		r.SubscriptionUpdate.Metadata["step"] == "updated", r.SubscriptionUpdate)
	check("subscription items synced with the subscription", r.SubscriptionItems == 1, r.SubscriptionItems)
	check("subscription DELETE (cancel)", r.SubscriptionCancel.Command == "DELETE" && r.SubscriptionCancel.RowCount == 1 &&
		r.SubscriptionAfterCancel.Status == "canceled", []any{r.SubscriptionCancel, r.SubscriptionAfterCancel})
	check("a named prepared INSERT executed twice", len(r.Prepared) == 2 && strings.HasPrefix(r.Prepared[0].ID, "cus_") &&
		strings.HasPrefix(r.Prepared[1].ID, "cus_") && r.Prepared[0].ID != r.Prepared[1].ID &&
		r.Prepared[0].Email == "node-p1@example.test" && r.Prepared[1].Email == "node-p2@example.test", r.Prepared)
	check("DELETE … RETURNING of both", r.PreparedDelete.RowCount == 2 && strings.Join(r.PreparedDelete.Emails, ",") == "node-p1@example.test,node-p2@example.test", r.PreparedDelete)
	check("ROLLBACK after a write (the row stays)", strings.HasPrefix(r.AfterRollback.ID, "cus_") && r.AfterRollback.LocalRows == 1, r.AfterRollback)
	check("NOTICE inside BEGIN", len(r.Notices) == 1 && r.Notices[0].Code == "01000" && strings.Contains(r.Notices[0].Message, "ROLLBACK cannot undo"), r.Notices)
	for name, code := range map[string]string{
		"unknownColumn": "42703", "readOnlyColumn": "42703", "wrongType": "22P02", "unsupported": "0A000",
		"tooManyRows": "54000", "resourceMissing": "P0002",
	} {
		e, ok := r.Errors[name]
		check("error "+name, ok && !e.OK && e.Code == code && e.Message != "", e)
	}
	check("resource missing DETAIL", strings.Contains(r.Errors["resourceMissing"].Detail, "resource_missing") &&
		strings.Contains(r.Errors["resourceMissing"].Detail, "request req_"), r.Errors["resourceMissing"])
	check("unsupported HINT", strings.Contains(r.Errors["unsupported"].Hint, "active = false"), r.Errors["unsupported"])
	check("DELETE", r.Delete.Command == "DELETE" && r.Delete.RowCount == 2 && r.AfterDelete == 0, []any{r.Delete, r.AfterDelete})
}

// jsonMap is a Stripe metadata column for GORM (jsonb).
type jsonMap map[string]string

func (m jsonMap) Value() (driver.Value, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	return string(b), err
}

func (m *jsonMap) Scan(v any) error { return scanJSON(v, m) }

// jsonValue is any other jsonb column (items, …) for GORM.
type jsonValue struct{ V any }

func (j jsonValue) Value() (driver.Value, error) {
	if j.V == nil {
		return nil, nil
	}
	b, err := json.Marshal(j.V)
	return string(b), err
}

func (j *jsonValue) Scan(v any) error { return scanJSON(v, &j.V) }

func scanJSON(v, dst any) error {
	switch b := v.(type) {
	case nil:
		return nil
	case []byte:
		return json.Unmarshal(b, dst)
	case string:
		return json.Unmarshal([]byte(b), dst)
	}
	return fmt.Errorf("cannot scan %T into JSON", v)
}

// The models a GORM user writes for pgstripe's tables: Stripe computes id
// (default:null makes GORM leave it out and read it back with RETURNING),
// the other computed columns are pointers so that GORM's INSERT, which lists
// every field, sends NULL for them (README: NULL/DEFAULT is accepted).
type gormCustomer struct {
	ID          string `gorm:"primaryKey;default:null"`
	Email       string
	Name        string
	Description *string
	Metadata    jsonMap    `gorm:"type:jsonb"`
	Created     *time.Time // computed by Stripe
	Livemode    *bool      // computed by Stripe
	Delinquent  *bool      // computed by Stripe
}

func (gormCustomer) TableName() string { return "stripe.customers" }

type gormSubscription struct {
	ID                string `gorm:"primaryKey;default:null"`
	Customer          string
	Items             jsonValue `gorm:"type:jsonb"` // [{"price": …}] on create; Stripe's list when read
	Metadata          jsonMap   `gorm:"type:jsonb"`
	CancelAtPeriodEnd *bool
	Status            *string    // computed by Stripe
	Created           *time.Time // computed by Stripe
}

func (gormSubscription) TableName() string { return "stripe.subscriptions" }

type gormProduct struct {
	ID   string `gorm:"primaryKey;default:null"`
	Name string
}

func (gormProduct) TableName() string { return "stripe.products" }

type gormPrice struct {
	ID         string `gorm:"primaryKey;default:null"`
	Product    string
	Currency   string
	UnitAmount int64
	Recurring  jsonValue `gorm:"type:jsonb"`
}

func (gormPrice) TableName() string { return "stripe.prices" }

// gormLivemode is the model many would write first: Livemode as a plain
// bool, which GORM sends as false on create.
type gormLivemode struct {
	ID       string `gorm:"primaryKey;default:null"`
	Email    string
	Livemode bool
}

func (gormLivemode) TableName() string { return "stripe.customers" }

// testGORM creates, updates and deletes a customer and a subscription with
// GORM (which wraps each write in BEGIN … COMMIT and uses RETURNING), over
// pgx's extended protocol or, with simple, the simple one.
func testGORM(t *testing.T, s *clientStack, simple bool) {
	mode := map[bool]string{false: "extended", true: "simple"}[simple]
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: s.proxy, PreferSimpleProtocol: simple}),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("gorm (%s): %v", mode, err)
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	before := s.stats(t)
	email := "gorm-" + mode + "@example.test"

	c := gormCustomer{Email: email, Name: "Gorm User", Metadata: jsonMap{"source": "gorm"}}
	if err := db.Create(&c).Error; err != nil {
		t.Fatalf("gorm (%s) Create customer: %v", mode, err)
	}
	if !strings.HasPrefix(c.ID, "cus_") {
		t.Fatalf("gorm (%s) Create did not read the id back (RETURNING): %+v", mode, c)
	}
	var got gormCustomer
	if err := db.First(&got, "id = ?", c.ID).Error; err != nil || got.Email != email || got.Metadata["source"] != "gorm" ||
		got.Created == nil || got.Livemode == nil || *got.Livemode {
		t.Fatalf("gorm (%s) read after Create: %v %+v", mode, err, got)
	}

	res := db.Model(&gormCustomer{ID: c.ID}).Updates(map[string]any{"metadata": jsonMap{"plan": "pro"}, "description": "from gorm"})
	if res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("gorm (%s) Updates: %v (%d rows)", mode, res.Error, res.RowsAffected)
	}
	got = gormCustomer{}
	if err := db.First(&got, "id = ?", c.ID).Error; err != nil || len(got.Metadata) != 1 || got.Metadata["plan"] != "pro" ||
		got.Description == nil || *got.Description != "from gorm" {
		t.Fatalf("gorm (%s) read after Updates (metadata replaced by {plan: pro}): %v %+v", mode, err, got)
	}

	// Save writes every column back, Stripe's computed ones with the values
	// just read: unchanged, they are accepted and not sent.
	// Over the simple protocol pgx inlines the loaded values: a constant
	// equal to the current value of a computed column is accepted.
	{
		got.Name = "Saved Name"
		if err := db.Save(&got).Error; err != nil {
			t.Errorf("gorm (%s) Save (every column, computed ones unchanged): %v", mode, err)
		} else {
			var saved gormCustomer
			if err := db.First(&saved, "id = ?", c.ID).Error; err != nil || saved.Name != "Saved Name" || saved.Metadata["plan"] != "pro" {
				t.Fatalf("gorm (%s) read after Save: %v %+v", mode, err, saved)
			}
		}
	}

	// A subscription: product and price first, items as jsonb.
	prod := gormProduct{Name: "Gorm Plan " + mode}
	if err := db.Create(&prod).Error; err != nil {
		t.Fatalf("gorm (%s) Create product: %v", mode, err)
	}
	price := gormPrice{Product: prod.ID, Currency: "usd", UnitAmount: 2000, Recurring: jsonValue{map[string]string{"interval": "month"}}}
	if err := db.Create(&price).Error; err != nil {
		t.Fatalf("gorm (%s) Create price: %v", mode, err)
	}
	sub := gormSubscription{Customer: c.ID, Items: jsonValue{[]map[string]any{{"price": price.ID, "quantity": 1}}}, Metadata: jsonMap{"orm": "gorm"}}
	if err := db.Create(&sub).Error; err != nil {
		t.Fatalf("gorm (%s) Create subscription: %v", mode, err)
	}
	var gotSub gormSubscription
	if err := db.First(&gotSub, "id = ?", sub.ID).Error; err != nil || gotSub.Customer != c.ID || gotSub.Status == nil || *gotSub.Status == "canceled" {
		t.Fatalf("gorm (%s) read after Create subscription: %v %+v", mode, err, gotSub)
	}
	if items, _ := gotSub.Items.V.(map[string]any); items == nil || len(items["data"].([]any)) != 1 {
		t.Errorf("gorm (%s) subscription items: %+v", mode, gotSub.Items.V)
	}
	res = db.Model(&gormSubscription{ID: sub.ID}).Updates(map[string]any{"metadata": jsonMap{"orm": "gorm", "step": "2"}, "cancel_at_period_end": true})
	if res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("gorm (%s) Updates subscription: %v (%d rows)", mode, res.Error, res.RowsAffected)
	}
	gotSub = gormSubscription{}
	if err := db.First(&gotSub, "id = ?", sub.ID).Error; err != nil || gotSub.Metadata["step"] != "2" ||
		gotSub.CancelAtPeriodEnd == nil || !*gotSub.CancelAtPeriodEnd {
		t.Fatalf("gorm (%s) read after Updates subscription: %v %+v", mode, err, gotSub)
	}
	// Delete cancels a subscription: the row stays, canceled.
	if res := db.Delete(&gormSubscription{ID: sub.ID}); res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("gorm (%s) Delete subscription: %v (%d rows)", mode, res.Error, res.RowsAffected)
	}
	gotSub = gormSubscription{}
	if err := db.First(&gotSub, "id = ?", sub.ID).Error; err != nil || gotSub.Status == nil || *gotSub.Status != "canceled" {
		t.Fatalf("gorm (%s) subscription after Delete: %v %+v", mode, err, gotSub)
	}

	// A Stripe error reaches GORM as the pgconn error, with its SQLSTATE.
	bad := gormSubscription{Customer: "cus_doesnotexist", Items: jsonValue{[]map[string]any{{"price": price.ID}}}}
	var pe *pgconn.PgError
	if err := db.Create(&bad).Error; !errors.As(err, &pe) || pe.Code != "P0002" {
		t.Errorf("gorm (%s) Create subscription for a missing customer: %v, want SQLSTATE P0002", mode, err)
	}
	// A plain bool for a computed column is sent as false: refused with a
	// message naming the column, before any call.
	if err := db.Create(&gormLivemode{Email: "gorm-livemode@example.test"}).Error; !errors.As(err, &pe) || pe.Code != "42703" ||
		!strings.Contains(pe.Message, `"livemode"`) || !strings.Contains(pe.Hint, "NULL/DEFAULT") {
		t.Errorf("gorm (%s) Create with Livemode false: %v, want 42703 naming livemode", mode, err)
	}

	if res := db.Delete(&gormCustomer{ID: c.ID}); res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("gorm (%s) Delete customer: %v (%d rows)", mode, res.Error, res.RowsAffected)
	}
	var n int64
	if err := db.Model(&gormCustomer{}).Where("id = ?", c.ID).Count(&n).Error; err != nil || n != 0 {
		t.Fatalf("gorm (%s) customer after Delete: %v, %d rows", mode, err, n)
	}
	want := map[string]int64{
		"POST /v1/customers": 1, "POST /v1/customers/{customer}": 2, "DELETE /v1/customers/{customer}": 1,
		"POST /v1/products": 1, "POST /v1/prices": 1,
		"POST /v1/subscriptions": 2, "POST /v1/subscriptions/{subscription_exposed_id}": 1,
		"DELETE /v1/subscriptions/{subscription_exposed_id}": 1,
	}
	if got := s.writesSince(t, before); !maps.Equal(got, want) {
		t.Errorf("gorm (%s) Stripe calls:\n got %v\nwant %v", mode, got, want)
	}
}

// testPGX is a short pass of pgx through the built binary, in each query
// mode (writethrough/ walks every table with pgx against the proxy in
// process): binary int8 and jsonb parameters (cache_statement), text ones
// with unspecified types (exec), inlined ones (simple_protocol). The jsonb
// value is JSON text: pgx cannot encode a Go map for an unknown type.
func testPGX(t *testing.T, s *clientStack) {
	ctx := context.Background()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		cfg, err := pgx.ParseConfig(s.proxy)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = mode
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("pgx (%v): %v", mode, err)
		}
		defer conn.Close(ctx)
		email := fmt.Sprintf("pgx-%d@example.test", mode)
		var cus string
		var meta map[string]string
		if err := conn.QueryRow(ctx, `INSERT INTO stripe.customers (email, balance, metadata) VALUES ($1, $2, $3) RETURNING id, metadata`,
			email, int64(-250), `{"mode": "`+mode.String()+`"}`).Scan(&cus, &meta); err != nil || !strings.HasPrefix(cus, "cus_") || meta["mode"] != mode.String() {
			t.Fatalf("pgx (%v) INSERT … RETURNING: %v %q %v", mode, err, cus, meta)
		}
		var balance int64
		if err := conn.QueryRow(ctx, `UPDATE stripe.customers SET balance = balance + $1 WHERE id = $2 RETURNING balance`, int64(100), cus).Scan(&balance); err != nil || balance != -150 {
			t.Fatalf("pgx (%v) UPDATE balance = balance + $1: %v, balance %d (want -150)", mode, err, balance)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO stripe.customers (email, nonsense) VALUES ($1, $2)`, email, 1); pgCode(err) != "42703" {
			t.Errorf("pgx (%v) unknown column: %v, want 42703", mode, err)
		}
		tag, err := conn.Exec(ctx, `DELETE FROM stripe.customers WHERE id = $1`, cus)
		if err != nil || tag.String() != "DELETE 1" {
			t.Fatalf("pgx (%v) DELETE: %v %q", mode, err, tag)
		}
	}
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// A Stripe that does not answer: the client cancels (CancelRequest through
// the proxy) and gets 57014 at once; nothing is applied; the next statement,
// sent at once as a client does, is not hit by the cancel.
func testCancel(t *testing.T, s *clientStack) {
	ctx := context.Background()
	conn := connect(t, s.proxy)
	s.emuOptions(t, `{"latency": "5s"}`)
	defer s.emuOptions(t, `{"latency": "0"}`)
	// On a loaded machine a cancel may come before the proxy has started
	// the statement (then it cancels nothing, as with Postgres): try again,
	// cancelling later.
	for attempt, delay := range []time.Duration{300 * time.Millisecond, time.Second, 2 * time.Second} {
		email := fmt.Sprintf("slow-%d@example.test", attempt)
		sent := make(chan struct{})
		time.AfterFunc(delay, func() {
			defer close(sent)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := conn.PgConn().CancelRequest(cctx); err != nil {
				t.Errorf("CancelRequest: %v", err)
			}
		})
		t0 := time.Now()
		// Without arguments pgx sends a simple Query, like psql.
		_, err := conn.Exec(ctx, `INSERT INTO stripe.customers (email) VALUES ('`+email+`')`)
		took := time.Since(t0)
		if err == nil {
			<-sent
			t.Logf("the cancel after %v came before the statement started; again, later", delay)
			continue
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("INSERT cancelled while Stripe is slow: %v (after %v), want SQLSTATE 57014", err, took)
		}
		if took > delay+2500*time.Millisecond {
			t.Errorf("the cancelled INSERT returned after %v: the client waited for Stripe", took)
		}
		var n int
		// (pg_sleep: a late cancel forwarded upstream would surely hit it)
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM stripe.customers, pg_sleep(0.3) WHERE email = '`+email+`'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("the statement right after the cancelled one: %v, %d local rows (want it unaffected by the cancel, and nothing applied)", err, n)
		}
		<-sent
		return
	}
	t.Fatal("no cancel took effect")
}

// A write is one statement: the wait for Stripe is not the client idling in
// a transaction, so the session's idle_in_transaction_session_timeout must
// not end it (Postgres counts only the time it waits for the client).
func testIdleTimeout(t *testing.T, s *clientStack) {
	s.emuOptions(t, `{"latency": "1500ms"}`)
	defer s.emuOptions(t, `{"latency": "0"}`)
	for _, tx := range []bool{false, true} {
		q := "INSERT INTO stripe.customers (email) VALUES ('idle@example.test') RETURNING email"
		args := []string{"-v", "VERBOSITY=verbose", "-v", "ON_ERROR_STOP=1", "-c", "SET idle_in_transaction_session_timeout = '500ms'"}
		if tx {
			args = append(args, "-c", "BEGIN", "-c", q, "-c", "SELECT 'still open' AS s", "-c", "COMMIT")
		} else {
			args = append(args, "-c", q, "-c", "SELECT 'still open' AS s")
		}
		out, err := psql(t, s.proxy, args...)
		if err != nil || !strings.Contains(out, "idle@example.test") || !strings.Contains(out, "still open") {
			t.Errorf("%s with idle_in_transaction_session_timeout 500ms against a Stripe taking 1.5s: %v\n%s", q, err, out)
		}
	}
}

// The session's statement_timeout bounds a write-through statement as it
// bounds any other statement.
func testStatementTimeout(t *testing.T, s *clientStack) {
	// The bound includes psql's start and its connection, which a busy
	// machine slows down; Stripe's 6 s keeps a statement that waits for it
	// well past the bound all the same.
	s.emuOptions(t, `{"latency": "6s"}`)
	defer s.emuOptions(t, `{"latency": "0"}`)
	t0 := time.Now()
	out, err := psql(t, s.proxy, "-v", "VERBOSITY=verbose", "-c", "SET statement_timeout = '500ms'",
		"-c", "INSERT INTO stripe.customers (email) VALUES ('timeout@example.test')")
	if err == nil || !strings.Contains(out, "57014") || time.Since(t0) > 4*time.Second {
		t.Errorf("INSERT with statement_timeout 500ms against a Stripe taking 6s: %v after %v\n%s", err, time.Since(t0), out)
	}
}

// kyselyResult is what testdata/node/kysely.js prints.
type kyselyResult struct {
	Insert struct {
		ID, Email, Balance string
		Locales            []string
		Created            bool
	}
	Multi   []struct{ Email, Name string }
	With    []struct{ Metadata map[string]string }
	Product struct{ Images []string }
	// The refusals: Code is "" when the statement succeeded.
	EmptyTypes, Upsert struct{ Code, Message string }
	Savepoint          struct{ Inner, After string }
	Deleted            int
}

// testKysely runs testdata/node/kysely.js and checks what it saw and the
// Stripe calls it made:
// Kysely's inserts without an id, returningAll, a multi-row insert with
// different keys, an UPDATE under a read-only .with(), a savepoint around a
// Stripe refusal, onConflict (0A000), and a JavaScript [] for
// payment_method_types, which node-postgres sends as '{}': it must be
// refused before any call, as '[]' is, not create a payment intent with
// Stripe's default ["card"] (what it did before '{}' was read as an empty
// array there).
func testKysely(t *testing.T, s *clientStack) {
	before := s.stats(t)
	out := node(t, s.proxy, "kysely")
	var r kyselyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node kysely.js printed %q: %v", out, err)
	}
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("kysely %s: got %+v", what, got)
		}
	}
	check("insert … returningAll", strings.HasPrefix(r.Insert.ID, "cus_") && r.Insert.Email == "node-kysely@example.test" &&
		r.Insert.Balance == "0" && len(r.Insert.Locales) == 1 && r.Insert.Locales[0] == "en" && r.Insert.Created, r.Insert)
	check("multi-row insert", len(r.Multi) == 2 && r.Multi[0].Name == "" && r.Multi[1].Name == "M2", r.Multi)
	check("update under .with()", len(r.With) == 1 && r.With[0].Metadata["plan"] == "pro" && r.With[0].Metadata["source"] == "kysely", r.With)
	check("product with images []", r.Product.Images != nil && len(r.Product.Images) == 0, r.Product)
	check("payment_method_types [] (sent as '{}')", r.EmptyTypes.Code == "22023" && strings.Contains(r.EmptyTypes.Message, "payment_method_types"), r.EmptyTypes)
	check("Stripe refusal in a savepoint", r.Savepoint.Inner == "22023" && r.Savepoint.After == "node-kysely-sp@example.test", r.Savepoint)
	check("onConflict", r.Upsert.Code == "0A000", r.Upsert)
	check("delete", r.Deleted == 4, r.Deleted)
	want := map[string]int64{
		// 4 made, 1 refused by Stripe (bad tax_exempt); no payment intent
		"POST /v1/customers": 5, "POST /v1/customers/{customer}": 1, "DELETE /v1/customers/{customer}": 4,
		"POST /v1/products": 1,
	}
	if got := s.writesSince(t, before); !maps.Equal(got, want) {
		t.Errorf("Stripe calls made by kysely.js:\n got %v\nwant %v", got, want)
	}
}
