package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/pgtest"
)

// `pgstripe backfill --objects …` as a user runs it: progress, exit 0, the
// rows; an unknown table is one clear line and exit 1.
func TestBackfillCommand(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	emuAddr := freeAddr(t)
	emu := start(t, nil, "emulator", "--listen", emuAddr, "--seed", "30", "--rate-limit", "-1")
	waitHTTP(t, "http://"+emuAddr+"/_emulator/stats", emu, 30*time.Second)
	env := []string{"DATABASE_URL=" + dbURL, "STRIPE_API_KEY=" + apiKey, "STRIPE_API_BASE=http://" + emuAddr, "PGSTRIPE_RATE_LIMIT=100"}

	cmd := exec.Command(binary(t), "backfill", "--objects", "customers,nosuchthing")
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown table(s) nosuchthing") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("unknown table: %v %q", err, out)
	}

	cmd = exec.Command(binary(t), "backfill", "--objects", "customers, invoices,")
	cmd.Env = append(cmd.Environ(), env...)
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "backfill progress") || !strings.Contains(string(out), `"done":true`) {
		t.Fatalf("no progress lines in:\n%s", out)
	}
	got, err := psql(t, dbURL, "-c", "SELECT (SELECT count(*) FROM stripe.customers), (SELECT count(*) FROM stripe.invoice_line_items) > 0, (SELECT count(*) FROM stripe.products)")
	if err != nil || strings.TrimSpace(got) != "30|t|0" {
		t.Fatalf("rows after backfill --objects customers,invoices: %q %v (want 30 customers, line items, no products)", got, err)
	}
	if strings.Contains(string(out), apiKey) {
		t.Fatal("the API key appears in the output")
	}
}
