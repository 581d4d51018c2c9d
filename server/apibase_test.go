package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
)

// A STRIPE_API_BASE that is not the Stripe API is bad configuration: serve
// and backfill stop at start-up with one error naming it. Before, serve
// listened with a sync that failed and was retried for ever (/healthz 503,
// status all "pending"), and backfill failed with "backfill: read newest
// event: stripe: api_error: HTTP 200 with a body that is not JSON: the
// request may have taken effect", which names neither the setting nor the
// cause.
func TestNotStripeAPIBaseFailsStartup(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, emu := emulatortest.Start(t, emulator.Options{Seed: 1})
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Welcome to nginx!</body></html>"))
	}))
	defer html.Close()
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	for _, tc := range []struct{ name, base, want string }{
		// A base with a path (stripe-go drops only a trailing /v1):
		// Stripe (and the emulator) answer /api/v1/events with their 404.
		{"path /api", emu + "/api", "has no /v1/events"},
		// Another service, such as pgstripe's own metrics port.
		{"other service", other.URL, "has no /v1/events"},
		{"web page", html.URL, "does not answer as the Stripe API"},
		// The message names the base without the password it carries.
		{"web page, password in URL", strings.Replace(html.URL, "http://", "http://u:hunter2@", 1), "does not answer as the Stripe API"},
	} {
		for _, cmd := range []string{"serve", "backfill"} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			logs := &logtest.Buffer{}
			ready := false
			opts := Options{Config: keyCheckConfig(dbURL, tc.base, "sk_test_review"),
				Logger: slog.New(slog.NewTextHandler(logs, nil)),
				Ready:  func(string, string) { ready = true }}
			opts.Instance.Instance, opts.Instance.Host = "base-"+cmd, "h"
			var err error
			if cmd == "serve" {
				err = Run(ctx, opts)
			} else {
				err = Backfill(ctx, opts, []string{"customers"}, false)
			}
			timedOut := ctx.Err() != nil
			cancel()
			switch {
			case timedOut:
				t.Errorf("%s, %s: still running after 30 s; logs:\n%s", tc.name, cmd, logs.String())
			case err == nil || !strings.Contains(err.Error(), "STRIPE_API_BASE") || !strings.Contains(err.Error(), tc.want):
				t.Errorf("%s, %s: err = %v, want one naming STRIPE_API_BASE and %q", tc.name, cmd, err, tc.want)
			case strings.Contains(err.Error(), "hunter2"):
				t.Errorf("%s, %s: err shows the password: %v", tc.name, cmd, err)
			case ready:
				t.Errorf("%s, %s: the proxy started listening", tc.name, cmd)
			}
		}
	}
}
