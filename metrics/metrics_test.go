package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	// The counter is the process's: start from zero so that -count=N runs
	// see the same value.
	StripeRequests.DeleteLabelValues("GET /v1/customers", "200")
	StripeRequests.WithLabelValues("GET /v1/customers", "200").Inc()
	healthy := true
	srv := httptest.NewServer(Handler(map[string]Check{
		"upstream": func(context.Context) error {
			if healthy {
				return nil
			}
			return errors.New("connection refused")
		},
	}))
	defer srv.Close()

	res, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `pgstripe_stripe_requests_total{endpoint="GET /v1/customers",status="200"} 1`) {
		t.Fatalf("/metrics lacks the request counter:\n%.2000s", body)
	}
	for _, want := range []string{"pgstripe_proxy_connections", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	res, _ = srv.Client().Get(srv.URL + "/healthz")
	if res.StatusCode != 200 {
		t.Fatalf("/healthz = %d while healthy", res.StatusCode)
	}
	healthy = false
	res, _ = srv.Client().Get(srv.URL + "/healthz")
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != 503 || !strings.Contains(string(body), "connection refused") {
		t.Fatalf("/healthz = %d %s while unhealthy", res.StatusCode, body)
	}
}
