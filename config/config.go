package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// Config is pgstripe's runtime configuration.
type Config struct {
	DatabaseURL   string
	StripeAPIKey  string
	StripeAPIBase string
	Listen        string
	MetricsListen string
	// RateLimit is requests per second for all Stripe calls together.
	RateLimit    float64
	PollInterval time.Duration
	TLSCert      string
	TLSKey       string
	// TLSRequired refuses clients of the proxy that don't use TLS.
	TLSRequired bool
	LogFormat   string // "text", "json" or "" (text on a terminal, JSON otherwise)
}

// Need says which settings a command requires.
type Need int

const (
	NeedDatabase Need = 1 << iota
	NeedStripe
	// NeedServe: the proxy, metrics and the events loop (listen
	// addresses, TLS, poll interval), which only serve runs.
	NeedServe
)

// Defaults of CONTRACT §2.
const (
	DefaultAPIBase       = "https://api.stripe.com"
	DefaultListen        = "127.0.0.1:6543"
	DefaultMetricsListen = "127.0.0.1:9464"
	DefaultPollInterval  = 500 * time.Millisecond
)

// Setting describes one configuration value: its environment variable, its
// flag and its default.
type setting struct {
	env, flag, def, usage string
	dst                   *string
}

// Flags binds the settings to fs; the environment provides defaults. Call
// Load after fs.Parse.
func Flags(fs *flag.FlagSet, need Need) *Loader {
	l := &Loader{need: need}
	add := func(env, name, def, usage string, dst *string) {
		v := os.Getenv(env)
		if v == "" {
			v = def
		}
		l.settings = append(l.settings, setting{env: env, flag: name, def: def, usage: usage, dst: dst})
		fs.StringVar(dst, name, v, usage+" (env "+env+")")
	}
	// Secrets take the environment's value without making it the flag's
	// default: the flag package prints defaults in --help and after a bad
	// flag, which would put the key or the database password on stderr.
	addSecret := func(env, name, usage string, dst *string) {
		l.settings = append(l.settings, setting{env: env, flag: name, usage: usage, dst: dst})
		fs.StringVar(dst, name, "", usage+" (env "+env+")")
		*dst = os.Getenv(env)
	}
	if need&NeedDatabase != 0 {
		addSecret("DATABASE_URL", "database-url", "Postgres connection URL (required)", &l.raw.databaseURL)
	}
	if need&NeedStripe != 0 {
		addSecret("STRIPE_API_KEY", "stripe-api-key", "Stripe secret or restricted key (required)", &l.raw.apiKey)
		add("STRIPE_API_BASE", "stripe-api-base", DefaultAPIBase, "Stripe API base URL", &l.raw.apiBase)
		add("PGSTRIPE_RATE_LIMIT", "rate-limit", "", "Stripe requests per second (default 20 for test keys, 80 for live keys)", &l.raw.rateLimit)
	}
	if need&NeedServe != 0 {
		add("PGSTRIPE_POLL_INTERVAL", "poll-interval", DefaultPollInterval.String(), "events poll interval", &l.raw.pollInterval)
		add("PGSTRIPE_LISTEN", "listen", DefaultListen, "proxy listen address", &l.raw.listen)
		add("PGSTRIPE_METRICS_LISTEN", "metrics-listen", DefaultMetricsListen, "metrics and health listen address", &l.raw.metricsListen)
		add("PGSTRIPE_TLS_CERT", "tls-cert", "", "TLS certificate file for the proxy", &l.raw.tlsCert)
		add("PGSTRIPE_TLS_KEY", "tls-key", "", "TLS key file for the proxy", &l.raw.tlsKey)
		add("PGSTRIPE_TLS_REQUIRED", "tls-required", "false", "refuse proxy clients that don't use TLS (needs --tls-cert and --tls-key)", &l.raw.tlsRequired)
	}
	fs.StringVar(&l.raw.logFormat, "log-format", os.Getenv("PGSTRIPE_LOG_FORMAT"), "log format: text or json (default: text on a terminal, json otherwise) (env PGSTRIPE_LOG_FORMAT)")
	return l
}

// Loader holds the raw strings until Load validates them.
type Loader struct {
	need     Need
	settings []setting
	raw      struct {
		databaseURL, apiKey, apiBase, rateLimit, pollInterval string
		listen, metricsListen, tlsCert, tlsKey, logFormat     string
		tlsRequired                                           string
	}
}

// Load validates the settings. The error is one line naming the problem.
func (l *Loader) Load() (*Config, error) {
	r := l.raw
	c := &Config{
		DatabaseURL:   r.databaseURL,
		StripeAPIKey:  r.apiKey,
		StripeAPIBase: r.apiBase,
		Listen:        r.listen,
		MetricsListen: r.metricsListen,
		TLSCert:       r.tlsCert,
		TLSKey:        r.tlsKey,
		LogFormat:     r.logFormat,
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return nil, fmt.Errorf("PGSTRIPE_LOG_FORMAT (--log-format) %q is not text or json", c.LogFormat)
	}
	if l.need&NeedDatabase != 0 {
		if c.DatabaseURL == "" {
			return nil, errors.New("DATABASE_URL (--database-url) is required (e.g. postgres://user:pass@localhost:5432/app)")
		}
		if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
			return nil, BadDatabaseURL(err)
		}
	}
	if l.need&NeedStripe != 0 {
		if err := checkKey(c.StripeAPIKey); err != nil {
			return nil, err
		}
		u, err := url.Parse(c.StripeAPIBase)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("STRIPE_API_BASE (--stripe-api-base) %q is not an http(s) URL", c.StripeAPIBase)
		}
		c.StripeAPIBase = strings.TrimRight(c.StripeAPIBase, "/")
		c.RateLimit = stripeapi.DefaultRate(c.StripeAPIKey)
		if r.rateLimit != "" {
			f, err := strconv.ParseFloat(r.rateLimit, 64)
			// NaN passes both comparisons; the limiter would then ignore it.
			if err != nil || math.IsNaN(f) || f <= 0 || f > 10000 {
				return nil, fmt.Errorf("PGSTRIPE_RATE_LIMIT (--rate-limit) %q is not a number of requests per second above 0 and at most 10000", r.rateLimit)
			}
			c.RateLimit = f
		}
	}
	if l.need&NeedServe != 0 {
		d, err := time.ParseDuration(r.pollInterval)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("PGSTRIPE_POLL_INTERVAL (--poll-interval) %q is not a positive duration (e.g. 500ms)", r.pollInterval)
		}
		c.PollInterval = d
		for _, a := range []struct{ name, v string }{{"PGSTRIPE_LISTEN (--listen)", c.Listen}, {"PGSTRIPE_METRICS_LISTEN (--metrics-listen)", c.MetricsListen}} {
			_, port, err := net.SplitHostPort(a.v)
			if err == nil && port != "" {
				_, err = net.LookupPort("tcp", port) // a number or a service name, as Listen takes
			}
			if err != nil || port == "" {
				return nil, fmt.Errorf("%s %q is not a host:port address", a.name, a.v)
			}
		}
		if sameListen(c.Listen, c.MetricsListen) {
			return nil, fmt.Errorf("PGSTRIPE_LISTEN (--listen) and PGSTRIPE_METRICS_LISTEN (--metrics-listen) are both %q: they need different ports", c.Listen)
		}
		if (c.TLSCert == "") != (c.TLSKey == "") {
			return nil, errors.New("PGSTRIPE_TLS_CERT (--tls-cert) and PGSTRIPE_TLS_KEY (--tls-key) must be set together")
		}
		for _, f := range []struct{ name, v string }{{"PGSTRIPE_TLS_CERT (--tls-cert)", c.TLSCert}, {"PGSTRIPE_TLS_KEY (--tls-key)", c.TLSKey}} {
			if f.v != "" {
				if _, err := os.Stat(f.v); err != nil {
					return nil, fmt.Errorf("%s: cannot read %s", f.name, f.v)
				}
			}
		}
		if r.tlsRequired != "" {
			b, err := strconv.ParseBool(r.tlsRequired)
			if err != nil {
				return nil, fmt.Errorf("PGSTRIPE_TLS_REQUIRED (--tls-required) %q is not true or false", r.tlsRequired)
			}
			c.TLSRequired = b
		}
		if c.TLSRequired && c.TLSCert == "" {
			return nil, errors.New("PGSTRIPE_TLS_REQUIRED (--tls-required) needs PGSTRIPE_TLS_CERT (--tls-cert) and PGSTRIPE_TLS_KEY (--tls-key)")
		}
		if c.TLSCert != "" {
			// A pair that doesn't load (not PEM, swapped, not matching) is
			// refused with the other settings, before the migration runs.
			if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
				return nil, fmt.Errorf("PGSTRIPE_TLS_CERT (--tls-cert) and PGSTRIPE_TLS_KEY (--tls-key) are not a usable pair: %v", err)
			}
		}
	}
	return c, nil
}

// checkKey explains what is wrong with a key. The key itself never
// appears in the error.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("STRIPE_API_KEY (--stripe-api-key) is required (a secret key sk_… or restricted key rk_…)")
	case strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		// It would pass the prefix check, then every request would fail
		// as a "network error" (Go refuses such a header) and be retried
		// for ever.
		return errors.New("STRIPE_API_KEY (--stripe-api-key) contains whitespace or control characters (a trailing newline from a secrets file?)")
	case strings.HasPrefix(key, "pk_"):
		return errors.New("STRIPE_API_KEY (--stripe-api-key) is a publishable key (pk_…); pgstripe needs a secret (sk_…) or restricted (rk_…) key")
	}
	if _, err := stripeapi.KeyMode(key); err != nil {
		return errors.New("STRIPE_API_KEY (--stripe-api-key) does not look like a Stripe secret or restricted key (sk_test_…, sk_live_…, rk_test_…, rk_live_…)")
	}
	return nil
}

// sameListen reports whether two valid listen addresses take the same
// port: the same host, or either on all interfaces.
func sameListen(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	na, _ := net.LookupPort("tcp", pa)
	nb, _ := net.LookupPort("tcp", pb)
	if na != nb || na == 0 {
		return false
	}
	any := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || any(ha) || any(hb)
}
