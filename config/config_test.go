package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, need Need, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	for _, k := range []string{"DATABASE_URL", "STRIPE_API_KEY", "STRIPE_API_BASE", "PGSTRIPE_RATE_LIMIT", "PGSTRIPE_POLL_INTERVAL", "PGSTRIPE_LISTEN", "PGSTRIPE_METRICS_LISTEN", "PGSTRIPE_TLS_CERT", "PGSTRIPE_TLS_KEY", "PGSTRIPE_TLS_REQUIRED", "PGSTRIPE_LOG_FORMAT"} {
		t.Setenv(k, env[k])
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := Flags(fs, need)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return l.Load()
}

const all = NeedDatabase | NeedStripe | NeedServe

func TestDefaults(t *testing.T) {
	c, err := load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_abc"})
	if err != nil {
		t.Fatal(err)
	}
	if c.StripeAPIBase != DefaultAPIBase || c.Listen != DefaultListen || c.MetricsListen != DefaultMetricsListen ||
		c.RateLimit != 20 || c.PollInterval != 500*time.Millisecond {
		t.Fatalf("defaults wrong: %+v", c)
	}
	c, err = load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "rk_live_abc"})
	if err != nil || c.RateLimit != 80 {
		t.Fatalf("live key rate = %v, %v; want 80", c, err)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	c, err := load(t, all, map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "sk_test_abc", "PGSTRIPE_RATE_LIMIT": "5"},
		"--rate-limit", "7", "--listen", "0.0.0.0:7000")
	if err != nil {
		t.Fatal(err)
	}
	if c.RateLimit != 7 || c.Listen != "0.0.0.0:7000" {
		t.Fatalf("flags did not override: %+v", c)
	}
}

func TestBadConfigOneClearLine(t *testing.T) {
	secret := "sk_live_SUPERSECRET"
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"STRIPE_API_KEY": "sk_test_x"}, "DATABASE_URL (--database-url) is required"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x"}, "STRIPE_API_KEY (--stripe-api-key) is required"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "pk_test_x"}, "publishable"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": "SUPERSECRET"}, "does not look like"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": secret, "PGSTRIPE_RATE_LIMIT": "fast"}, "PGSTRIPE_RATE_LIMIT"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": secret, "PGSTRIPE_POLL_INTERVAL": "-1s"}, "PGSTRIPE_POLL_INTERVAL (--poll-interval)"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": secret, "STRIPE_API_BASE": "ftp://x"}, "STRIPE_API_BASE"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": secret, "PGSTRIPE_LISTEN": "6543"}, "PGSTRIPE_LISTEN"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": secret, "PGSTRIPE_TLS_CERT": "/x"}, "must be set together"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": secret, "PGSTRIPE_METRICS_LISTEN": "127.0.0.1:6543"}, "they need different ports"},
		{map[string]string{"DATABASE_URL": "postgres://localhost/x", "STRIPE_API_KEY": secret, "PGSTRIPE_LISTEN": ":9464"}, "they need different ports"},
		{map[string]string{"DATABASE_URL": "::not a url::", "STRIPE_API_KEY": secret}, "DATABASE_URL (--database-url) is not valid"},
	}
	for _, c := range cases {
		_, err := load(t, all, c.env)
		if err == nil {
			t.Errorf("%v: no error, want %q", c.env, c.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(strings.ReplaceAll(msg, "is not a valid Postgres connection string", "is not valid"), c.want) {
			t.Errorf("%v: error %q, want it to mention %q", c.env, msg, c.want)
		}
		if strings.Contains(msg, "\n") || strings.Contains(msg, "SUPERSECRET") {
			t.Errorf("error %q is not one line without the secret", msg)
		}
	}
}
