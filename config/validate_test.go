package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --help and a bad flag print every flag's default; the environment's
// secrets must not show up there.
func TestUsageDoesNotPrintSecrets(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://u:hunter2@localhost/x")
	t.Setenv("STRIPE_API_KEY", "sk_live_SUPERSECRET")
	for _, args := range [][]string{{"--help"}, {"--no-such-flag"}} {
		var out bytes.Buffer
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(&out)
		Flags(fs, all)
		fs.Parse(args)
		if s := out.String(); strings.Contains(s, "hunter2") || strings.Contains(s, "SUPERSECRET") {
			t.Errorf("%v prints a secret:\n%s", args, s)
		}
		if !strings.Contains(out.String(), "env DATABASE_URL") {
			t.Errorf("%v: usage lost the flags:\n%s", args, out.String())
		}
	}
	// The environment still provides the values, and flags override them.
	c, err := load(t, all, map[string]string{"DATABASE_URL": "postgres://u:hunter2@localhost/x", "STRIPE_API_KEY": "sk_live_SUPERSECRET"})
	if err != nil || c.DatabaseURL != "postgres://u:hunter2@localhost/x" || c.StripeAPIKey != "sk_live_SUPERSECRET" {
		t.Fatalf("env values: %+v, %v", c, err)
	}
	c, err = load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_live_SUPERSECRET"}, "--stripe-api-key", "sk_test_flag")
	if err != nil || c.StripeAPIKey != "sk_test_flag" {
		t.Fatalf("flag override: %+v, %v", c, err)
	}
}

func TestRateLimitNaN(t *testing.T) {
	for _, v := range []string{"NaN", "nan", "Inf", "-1", "0"} {
		_, err := load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_x", "PGSTRIPE_RATE_LIMIT": v})
		if err == nil || !strings.Contains(err.Error(), "PGSTRIPE_RATE_LIMIT") {
			t.Errorf("PGSTRIPE_RATE_LIMIT=%s: %v, want an error naming the variable", v, err)
		}
	}
}

func TestLogFormatNamesVariable(t *testing.T) {
	_, err := load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_x", "PGSTRIPE_LOG_FORMAT": "JSON"})
	if err == nil || !strings.Contains(err.Error(), "PGSTRIPE_LOG_FORMAT") {
		t.Fatalf("PGSTRIPE_LOG_FORMAT=JSON: %v, want an error naming the variable", err)
	}
}

// A key read from a secrets file often ends in a newline: say so at start
// instead of failing every Stripe request as a network error.
func TestKeyWithWhitespace(t *testing.T) {
	for _, key := range []string{"sk_test_SUPERSECRET\n", "sk_test_SUPERSECRET ", "sk_test_SUPER SECRET"} {
		_, err := load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": key})
		if err == nil || !strings.Contains(err.Error(), "STRIPE_API_KEY") || strings.Contains(err.Error(), "SUPER") {
			t.Errorf("STRIPE_API_KEY=%q: %v, want an error naming the variable, without the key", key, err)
		}
	}
}

// Settings only serve uses (the proxy, metrics, the events loop) are not
// flags of a one-shot command, where they would do nothing.
func TestServeOnlyFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	Flags(fs, NeedDatabase|NeedStripe)
	for _, name := range []string{"listen", "metrics-listen", "tls-cert", "tls-key", "poll-interval"} {
		if fs.Lookup(name) != nil {
			t.Errorf("--%s is a flag without NeedServe", name)
		}
	}
	if fs.Lookup("rate-limit") == nil || fs.Lookup("stripe-api-base") == nil {
		t.Error("the Stripe flags are gone")
	}
}

// A port that no listener can take is refused with the other settings,
// not after the migration when the metrics server starts.
func TestListenPortChecked(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_x"}
	for name, v := range map[string]string{"PGSTRIPE_METRICS_LISTEN": ":abc", "PGSTRIPE_LISTEN": "127.0.0.1:70000"} {
		env := map[string]string{name: v}
		for k, x := range base {
			env[k] = x
		}
		if _, err := load(t, all, env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: %v, want an error naming the variable", name, v, err)
		}
	}
	if _, err := load(t, all, base, "--metrics-listen", "localhost:9464", "--listen", ":0"); err != nil {
		t.Errorf("valid addresses refused: %v", err)
	}
}

// writePair writes a self-signed certificate and its key as PEM files.
func writePair(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// A certificate and key that don't make a pair are refused with the other
// settings: before, serve migrated the database first and then failed,
// printing a log line before the error.
func TestTLSPairCheckedWithSettings(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := writePair(t, dir, "a")
	_, keyB := writePair(t, dir, "b")
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate\n"), 0o600)
	base := map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_x"}
	with := func(cert, key string) map[string]string {
		env := map[string]string{"PGSTRIPE_TLS_CERT": cert, "PGSTRIPE_TLS_KEY": key}
		for k, v := range base {
			env[k] = v
		}
		return env
	}
	for name, env := range map[string]map[string]string{
		"mismatched": with(certA, keyB),
		"swapped":    with(keyA, certA),
		"not PEM":    with(junk, keyA),
	} {
		_, err := load(t, all, env)
		if err == nil || !strings.Contains(err.Error(), "PGSTRIPE_TLS_CERT") {
			t.Errorf("%s: %v, want an error naming PGSTRIPE_TLS_CERT", name, err)
		}
	}
	if c, err := load(t, all, with(certA, keyA)); err != nil || c.TLSCert != certA {
		t.Errorf("a valid pair: %+v, %v", c, err)
	}
}

// A rate above the allowed maximum is not "not positive": the error says
// what the range is.
func TestRateLimitRangeNamed(t *testing.T) {
	_, err := load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_x", "PGSTRIPE_RATE_LIMIT": "1e9"})
	if err == nil || !strings.Contains(err.Error(), "10000") {
		t.Fatalf("PGSTRIPE_RATE_LIMIT=1e9: %v, want an error naming the maximum", err)
	}
}
