package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/pgstripe/pgstripe/stripeapi"
)

// keyCheckWait is how long start-up waits for the key check before it
// serves anyway: a slow or unreachable Stripe must not keep the proxy (and
// its reads) down, but a refused key should stop pgstripe before it listens.
const keyCheckWait = 3 * time.Second

// checkKey asks Stripe for the newest event, the first call sync makes, so
// that a key Stripe refuses is reported at start-up as bad configuration
// instead of a sync that fails and retries for ever. Only a refusal of the
// key (401) or of the events sync needs (403), or an answer showing that
// STRIPE_API_BASE is not the Stripe API (no /v1/events, or a success that
// is not JSON), is an error: network errors, 429 and 5xx may pass, and
// sync retries them anyway.
func checkKey(ctx context.Context, client *stripeapi.Client, base string) error {
	_, err := client.Get(ctx, "/v1/events", url.Values{"limit": {"1"}})
	var se *stripeapi.Error
	if !errors.As(err, &se) {
		return nil
	}
	why := se.Message
	if se.RequestID != "" {
		why += " (request " + se.RequestID + ")"
	}
	switch se.HTTPStatus {
	case http.StatusUnauthorized:
		return fmt.Errorf("STRIPE_API_KEY was refused by Stripe (HTTP 401): %s", why)
	case http.StatusForbidden:
		return fmt.Errorf("STRIPE_API_KEY may not read events, which sync needs (HTTP 403): %s", why)
	case http.StatusNotFound:
		// Stripe itself answers an unknown path (a base ending in /v1)
		// with a 404 in its own error shape.
		return fmt.Errorf("STRIPE_API_BASE %q has no /v1/events (HTTP 404): give the API's base URL without a path, e.g. %s", redacted(base), stripeapi.DefaultBaseURL)
	}
	if se.NotStripe && se.HTTPStatus < 400 {
		return fmt.Errorf("STRIPE_API_BASE %q does not answer as the Stripe API (HTTP %d with a body that is not JSON)", redacted(base), se.HTTPStatus)
	}
	return nil
}

// startKeyCheck runs checkKey in the background and waits up to
// keyCheckWait for it. It returns the check's error if it came in time;
// otherwise a channel that delivers the late result once (nil when the
// check passed in time).
func startKeyCheck(ctx context.Context, client *stripeapi.Client, base string) (<-chan error, error) {
	res := make(chan error, 1)
	go func() { res <- checkKey(ctx, client, base) }()
	t := time.NewTimer(keyCheckWait)
	defer t.Stop()
	select {
	case err := <-res:
		return nil, err
	case <-t.C:
		return res, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// redacted is base without a password it may carry (https://user:pw@host).
func redacted(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
