package config

import (
	"strings"
	"testing"
)

// TestTLSRequired: PGSTRIPE_TLS_REQUIRED is off by default, takes
// true or false, and needs a certificate and key.
func TestTLSRequired(t *testing.T) {
	cert, key := writePair(t, t.TempDir(), "p")
	env := func(kv ...string) map[string]string {
		m := map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_x"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	if c, err := load(t, all, env("PGSTRIPE_TLS_CERT", cert, "PGSTRIPE_TLS_KEY", key)); err != nil || c.TLSRequired {
		t.Errorf("default: %+v, %v; want TLS not required", c, err)
	}
	if c, err := load(t, all, env("PGSTRIPE_TLS_CERT", cert, "PGSTRIPE_TLS_KEY", key, "PGSTRIPE_TLS_REQUIRED", "true")); err != nil || !c.TLSRequired {
		t.Errorf("PGSTRIPE_TLS_REQUIRED=true: %+v, %v", c, err)
	}
	if c, err := load(t, all, env("PGSTRIPE_TLS_CERT", cert, "PGSTRIPE_TLS_KEY", key), "--tls-required=true"); err != nil || !c.TLSRequired {
		t.Errorf("--tls-required=true: %+v, %v", c, err)
	}
	if c, err := load(t, all, env("PGSTRIPE_TLS_REQUIRED", "false")); err != nil || c.TLSRequired {
		t.Errorf("PGSTRIPE_TLS_REQUIRED=false without a certificate: %+v, %v", c, err)
	}
	for _, e := range []map[string]string{
		env("PGSTRIPE_TLS_REQUIRED", "true"),
		env("PGSTRIPE_TLS_CERT", cert, "PGSTRIPE_TLS_KEY", key, "PGSTRIPE_TLS_REQUIRED", "yes please"),
	} {
		if _, err := load(t, all, e); err == nil || !strings.Contains(err.Error(), "PGSTRIPE_TLS_REQUIRED") {
			t.Errorf("%v: %v, want an error naming PGSTRIPE_TLS_REQUIRED", e, err)
		}
	}
}
