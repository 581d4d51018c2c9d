package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/pgtest"
)

const apiKey = "sk_test_integrationSECRETkey123"

// emulatorCount asks the emulator's admin API how many objects a table has.
func emulatorCount(t *testing.T, base, table string) int {
	t.Helper()
	res, err := http.Get(base + "/_emulator/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var s struct {
		Objects map[string]int `json:"objects"`
	}
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s.Objects[table]
}

// A user's session: serve against the emulator and a throwaway Postgres,
// psql through the proxy, a write, status, metrics, SIGTERM.
func TestServeEndToEnd(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	emuAddr := freeAddr(t)
	emu := start(t, nil, "emulator", "--listen", emuAddr, "--seed", "20", "--rate-limit", "1000")
	emuBase := "http://" + emuAddr
	waitHTTP(t, emuBase+"/_emulator/stats", emu, 30*time.Second)

	proxyAddr, metricsAddr := freeAddr(t), freeAddr(t)
	env := []string{
		"DATABASE_URL=" + dbURL, "STRIPE_API_KEY=" + apiKey, "STRIPE_API_BASE=" + emuBase,
		"PGSTRIPE_LISTEN=" + proxyAddr, "PGSTRIPE_METRICS_LISTEN=" + metricsAddr,
		"PGSTRIPE_RATE_LIMIT=200", "PGSTRIPE_LOG_FORMAT=json",
	}
	srv := start(t, env, "serve")
	waitHTTP(t, "http://"+metricsAddr+"/healthz", srv, 60*time.Second)

	u, _ := url.Parse(dbURL)
	u.Host = proxyAddr
	proxyURL := u.String()

	// Wait for every object type to be live.
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := psql(t, proxyURL, "-c", "SELECT count(*) FILTER (WHERE phase <> 'live'), count(*) FILTER (WHERE phase = 'error') FROM stripe_sync.status")
		if err == nil && strings.TrimSpace(out) == "0|0" {
			break
		}
		if time.Now().After(deadline) {
			st, _ := psql(t, proxyURL, "-c", "SELECT object, phase, last_error FROM stripe_sync.status")
			t.Fatalf("not live after 90s: %v %s\n%s", err, out, st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, err := psql(t, proxyURL, "-c", "SELECT count(*) FROM stripe.customers")
	if err != nil {
		t.Fatalf("psql through the proxy: %v %s", err, out)
	}
	if got, want := strings.TrimSpace(out), strconv.Itoa(emulatorCount(t, emuBase, "customers")); got != want || want == "0" {
		t.Fatalf("stripe.customers has %s rows, the emulator %s", got, want)
	}

	// The write from the issue, then read it back at once.
	out, err = psql(t, proxyURL, "-c", `INSERT INTO stripe.customers (email, metadata) VALUES ('a@b.co', '{"tier":"gold"}') RETURNING id, email, created`)
	if err != nil {
		t.Fatalf("INSERT through the proxy: %v %s", err, out)
	}
	fields := strings.Split(strings.TrimSpace(lines(out)[0]), "|")
	if len(fields) != 3 || !strings.HasPrefix(fields[0], "cus_") || fields[1] != "a@b.co" || fields[2] == "" {
		t.Fatalf("RETURNING gave %q", out)
	}
	out, err = psql(t, proxyURL, "-c", "SELECT id, metadata->>'tier' FROM stripe.customers WHERE email = 'a@b.co'")
	if err != nil || strings.TrimSpace(out) != fields[0]+"|gold" {
		t.Fatalf("read-after-write: %v %q, want %s|gold", err, out, fields[0])
	}

	// Intercepted, then passed on (not a write in this session): counted
	// as passthrough, not as a write or a rejection.
	if out, err := psql(t, proxyURL, "-c", "PREPARE r AS SELECT 1", "-c", "EXECUTE r", "-c", "SET search_path = public", "-c", "CREATE TEMP TABLE customers (email text)", "-c", "INSERT INTO customers VALUES ('x')"); err != nil {
		t.Fatalf("EXECUTE and a temp table through the proxy: %v %s", err, out)
	}

	// status, as a user runs it.
	cmd := exec.Command(binary(t), "status")
	cmd.Env = append(cmd.Environ(), "DATABASE_URL="+dbURL)
	st, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(st), "customers") || !strings.Contains(string(st), "live") || !strings.Contains(string(st), "sync leader:") {
		t.Fatalf("pgstripe status: %v\n%s", err, st)
	}

	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !regexp.MustCompile(`pgstripe_proxy_statements_total\{kind="passthrough"\} [1-9]`).Match(body) ||
		!strings.Contains(string(body), `pgstripe_proxy_statements_total{kind="write"} 1`) ||
		!strings.Contains(string(body), `pgstripe_proxy_statements_total{kind="rejected"} 0`) {
		t.Errorf("/metrics statements by kind wrong:\n%s", regexp.MustCompile(`(?m)^pgstripe_proxy_statements_total.*$`).FindAll(body, -1))
	}
	for _, want := range []string{"pgstripe_stripe_requests_total", "pgstripe_proxy_connections_total", "pgstripe_sync_leader 1", "pgstripe_writethrough_seconds"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	srv.stop(t)
	for _, s := range []string{srv.out.String(), string(st), string(body)} {
		if strings.Contains(s, apiKey) || strings.Contains(s, "SECRETkey") {
			t.Fatalf("the API key leaked into output:\n%s", tail(s, 20))
		}
	}
}
