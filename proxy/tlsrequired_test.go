package proxy

import (
	"crypto/tls"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgstripe/pgstripe/pgtest"
)

// TestTLSRequired: with TLSRequired, a client that skips
// SSLRequest is refused (28000) before anything reaches Postgres, one
// that asks for TLS is served, and a plain-text cancel request still
// cancels; without it (the default), plain text is served as before.
func TestTLSRequired(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("psql not installed")
	}
	dbURL := pgtest.NewDB(t)
	psql := func(tp *testProxy, sslmode string) (string, error) {
		url := strings.Replace(tp.via(t, dbURL), "sslmode=disable", "sslmode="+sslmode, 1)
		out, err := exec.Command("psql", "-X", "-At", "-d", url, "-c", "SELECT 'served'").CombinedOutput()
		return string(out), err
	}
	tlsCfg := selfSignedTLS(t)
	required := startProxy(t, Config{TLSConfig: tlsCfg, TLSRequired: true})
	out, err := psql(required, "disable")
	if err == nil || !strings.Contains(out, "TLS is required") {
		t.Errorf("sslmode=disable with TLS required: %v: %s", err, out)
	}
	for _, mode := range []string{"require", "prefer"} {
		if out, err := psql(required, mode); err != nil || strings.TrimSpace(out) != "served" {
			t.Errorf("sslmode=%s with TLS required: %v: %s", mode, err, out)
		}
	}
	ctx := ctxT(t)
	pc, err := pgconn.Connect(ctx, strings.Replace(required.via(t, dbURL), "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, ok := pc.Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", pc.Conn())
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := pc.Exec(ctx, "SELECT pg_sleep(20)").ReadAll()
		done <- err
	}()
	waitSleeping(t, pc.PID())
	if err := pc.CancelRequest(ctx); err != nil {
		t.Errorf("CancelRequest: %v", err)
	}
	err = <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" || time.Since(start) > 10*time.Second {
		t.Errorf("cancel of a TLS session (the cancel request in plain text): %v after %v, want 57014", err, time.Since(start))
	}

	optional := startProxy(t, Config{TLSConfig: tlsCfg})
	for _, mode := range []string{"disable", "require"} {
		if out, err := psql(optional, mode); err != nil || strings.TrimSpace(out) != "served" {
			t.Errorf("sslmode=%s, TLS not required: %v: %s", mode, err, out)
		}
	}
}
