package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgstripe/pgstripe/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for _, k := range []string{"DATABASE_URL", "STRIPE_API_KEY", "STRIPE_API_BASE", "PGSTRIPE_RATE_LIMIT"} {
		t.Setenv(k, env[k])
	}
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageAndBadInput(t *testing.T) {
	if code, out, _ := run(t, nil, "--help"); code != 0 || !strings.Contains(out, "serve") || !strings.Contains(out, "demo") {
		t.Fatalf("--help: %d %q", code, out)
	}
	if code, _, errs := run(t, nil, "frobnicate"); code == 0 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, _, errs := run(t, nil, "migrate", "--no-such-flag"); code == 0 || !strings.Contains(errs, "no-such-flag") {
		t.Fatalf("bad flag: %d %q", code, errs)
	}
	code, _, errs := run(t, nil, "migrate")
	if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "DATABASE_URL (--database-url) is required") {
		t.Fatalf("missing DATABASE_URL: %d %q", code, errs)
	}
	code, _, errs = run(t, map[string]string{"DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/x"}, "migrate")
	if code == 0 || strings.Contains(errs, "hunter2") || !strings.Contains(errs, "connect") {
		t.Fatalf("unreachable database: %d %q", code, errs)
	}
}

func TestMigrateTwiceAndStatus(t *testing.T) {
	url := pgtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": url}
	code, _, errs := run(t, env, "status")
	if code == 0 || !strings.Contains(errs, "pgstripe migrate") {
		t.Fatalf("status before migrate: %d %q", code, errs)
	}
	for i := 0; i < 2; i++ {
		if code, out, errs := run(t, env, "migrate"); code != 0 || !strings.Contains(out, "up to date") {
			t.Fatalf("migrate #%d: %d %q %q", i+1, code, out, errs)
		}
	}
	code, out, errs := run(t, env, "status")
	if code != 0 || !strings.Contains(out, "customers") || !strings.Contains(out, "pending") || !strings.Contains(out, "none elected") {
		t.Fatalf("status: %d %q %q", code, out, errs)
	}
	conn := pgtest.Connect(t, url)
	if _, err := conn.Exec(context.Background(), `UPDATE stripe_sync.objects SET phase = 'error', last_error = 'permission denied on /v1/payouts' WHERE object = 'payouts'`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, env, "status")
	if code != 1 || !strings.Contains(out, "permission denied on /v1/payouts") || !strings.Contains(out, "1 object type(s) in phase error") {
		t.Fatalf("status with an error: %d %q", code, out)
	}
	if strings.Contains(out, "in full") {
		t.Errorf("a short error is repeated below the table:\n%s", out)
	}

	// An error longer than the table's column: cut there on a character's
	// boundary (the text has multi-byte ones right at the cut), and given
	// whole below the table, with what to do at its end.
	long := strings.Repeat("é", 78) + " keep queued; grant the key the read permission Stripe names"
	if _, err := conn.Exec(context.Background(), `UPDATE stripe_sync.objects SET last_error = $1 WHERE object = 'invoiceitems'`, long); err != nil {
		t.Fatal(err)
	}
	_, out, _ = run(t, env, "status")
	if !utf8.ValidString(out) {
		t.Errorf("status output is not valid UTF-8:\n%q", out)
	}
	if !strings.Contains(out, strings.Repeat("é", 78)+" …") && !strings.Contains(out, strings.Repeat("é", 78)+"…") {
		t.Errorf("invoiceitems' error not cut at 80 characters in the table:\n%s", out)
	}
	if !strings.Contains(out, "last errors in full:\n  invoiceitems: "+long+"\n") {
		t.Errorf("invoiceitems' error not given whole below the table:\n%s", out)
	}
}

// TestErrorNamesCommandOnce: an error that already starts with the
// command's name is printed with it once. 'pgstripe migrate' on a LATIN1
// database printed "pgstripe migrate: migrate: the database's encoding is
// LATIN1: …".
func TestErrorNamesCommandOnce(t *testing.T) {
	c := pgtest.Cluster(t)
	ctx := context.Background()
	admin := pgtest.Connect(t, c.URL("postgres"))
	name := fmt.Sprintf("review_latin1_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name+` ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+name) })

	code, out, errs := run(t, map[string]string{"DATABASE_URL": c.URL(name)}, "migrate")
	if code != 1 || out != "" {
		t.Fatalf("migrate on a LATIN1 database: exit %d, stdout %q, stderr %q; want exit 1", code, out, errs)
	}
	if !strings.HasPrefix(errs, "pgstripe migrate: the database's encoding is LATIN1") || strings.Count(errs, "\n") != 1 {
		t.Errorf("stderr %q; want one line naming the command once, then the encoding", errs)
	}
}
