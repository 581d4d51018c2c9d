package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/logtest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// refusedKey passes pgstripe's own format check, but Stripe (and the
// emulator) refuse it with a 401.
const refusedKey = "sk_test_"

func keyCheckConfig(dbURL, base, key string) *config.Config {
	return &config.Config{DatabaseURL: dbURL, StripeAPIKey: key, StripeAPIBase: base,
		Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", RateLimit: 200, PollInterval: 100 * time.Millisecond}
}

// A key Stripe refuses is bad configuration: serve stops at start-up with
// one error naming STRIPE_API_KEY, instead of serving while its sync fails
// and retries for ever (stripe_sync.status showing nothing but "pending").
func TestServeRefusedKeyFailsStartup(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logs := &logtest.Buffer{}
	ready := false
	opts := Options{Config: keyCheckConfig(dbURL, base, refusedKey),
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Ready:  func(string, string) { ready = true }}
	opts.Instance.Instance, opts.Instance.Host = "refused-key", "h"
	err := Run(ctx, opts)
	if ctx.Err() != nil {
		t.Fatalf("serve with a refused key was still running after 30 s; logs:\n%s", logs.String())
	}
	if err == nil || !strings.Contains(err.Error(), "STRIPE_API_KEY was refused by Stripe") {
		t.Fatalf("Run = %v, want an error naming STRIPE_API_KEY", err)
	}
	if ready {
		t.Error("the proxy started listening although the key was refused at once")
	}
}

// A one-shot backfill with a refused key says so at once, also while a
// serve leads sync (before, it waited for leadership first and only then
// found out).
func TestBackfillRefusedKeyWhileLeaderRuns(t *testing.T) {
	dbURL := pgtest.NewDB(t)
	_, base := emulatortest.Start(t, emulator.Options{Seed: 1})
	serve(t, dbURL, base, "key-leader")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := Options{Config: keyCheckConfig(dbURL, base, refusedKey), Logger: slog.New(slog.DiscardHandler)}
	opts.Instance.Instance, opts.Instance.Host = "key-backfill", "h"
	err := Backfill(ctx, opts, []string{"customers"}, false)
	if ctx.Err() != nil {
		t.Fatal("backfill with a refused key waited for leadership instead of failing")
	}
	if err == nil || !strings.Contains(err.Error(), "STRIPE_API_KEY was refused by Stripe") {
		t.Fatalf("Backfill = %v, want an error naming STRIPE_API_KEY", err)
	}
}

// A restricted key that may not read events can't run sync (403); a
// failing or unreachable Stripe is no reason to refuse to start.
func TestCheckKeyStatuses(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{403, `{"error":{"type":"invalid_request_error","message":"The provided key 'rk_test_***abc' does not have the required permissions for this endpoint."}}`, "may not read events"},
		{500, `{"error":{"type":"api_error","message":"boom"}}`, ""},
		{200, `{"object":"list","data":[],"has_more":false,"url":"/v1/events"}`, ""},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Stripe-Should-Retry", "false")
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		}))
		client, err := stripeapi.New(stripeapi.Config{APIKey: "rk_test_abc", BaseURL: srv.URL, RateLimit: 100})
		if err != nil {
			t.Fatal(err)
		}
		err = checkKey(context.Background(), client, srv.URL)
		srv.Close()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("HTTP %d: checkKey = %v, want nil", tc.status, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("HTTP %d: checkKey = %v, want %q", tc.status, err, tc.want)
		}
	}
}
