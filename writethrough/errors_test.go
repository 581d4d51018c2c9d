package writethrough

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/stripeapi"
)

func TestPGDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "500ms": 500 * time.Millisecond, "5s": 5 * time.Second, "1min": time.Minute,
		"2h": 2 * time.Hour, "1d": 24 * time.Hour, "250": 250 * time.Millisecond, "": 0, "bogus": 0,
	} {
		if got := pgDuration(in); got != want {
			t.Errorf("pgDuration(%q) = %v, want %v", in, got, want)
		}
	}
}

// A write that failed without a definite answer may have reached Stripe,
// and DETAIL says so; a refusal or a read says nothing of the kind.
func TestStripeErrorSaysWhenOutcomeUnknown(t *testing.T) {
	for _, tc := range []struct {
		err  error
		call string
		want bool
	}{
		{&stripeapi.Error{HTTPStatus: 500, Type: "api_error"}, "POST /v1/customers", true},
		{&stripeapi.Error{HTTPStatus: 503, Type: "api_error"}, "DELETE /v1/customers/cus_1", true},
		{&stripeapi.NetworkError{Err: errors.New("connection reset")}, "POST /v1/customers", true},
		{context.DeadlineExceeded, "POST /v1/customers", true},
		{context.Canceled, "POST /v1/invoices/in_1/pay", true},
		{&stripeapi.Error{HTTPStatus: 409, Type: "idempotency_error", Code: "idempotency_key_in_use"}, "POST /v1/customers/cus_1", true},
		{&stripeapi.Error{HTTPStatus: 402, Type: "card_error"}, "POST /v1/invoices/in_1/pay", false},
		{&stripeapi.Error{HTTPStatus: 400, Type: "invalid_request_error"}, "POST /v1/customers", false},
		{&stripeapi.Error{HTTPStatus: 500, Type: "api_error"}, "GET /v1/customers/cus_1", false},
	} {
		e := stripeError(tc.err, tc.call)
		if got := strings.Contains(e.Detail, mayHaveTakenEffect); got != tc.want {
			t.Errorf("%v on %s: DETAIL %q, says outcome unknown: %v, want %v", tc.err, tc.call, e.Detail, got, tc.want)
		}
	}
}

// Stripe's answers map to the SQLSTATEs of the README's table; a
// lock_timeout comes as a 429 but is a lock, not the rate limit.
func TestStripeCode(t *testing.T) {
	for _, tc := range []struct {
		err  stripeapi.Error
		want string
	}{
		{stripeapi.Error{HTTPStatus: 402, Type: "card_error", Code: "card_declined"}, "P0001"},
		{stripeapi.Error{HTTPStatus: 404, Type: "invalid_request_error", Code: "resource_missing"}, "P0002"},
		{stripeapi.Error{HTTPStatus: 400, Type: "invalid_request_error", Param: "email"}, "22023"},
		{stripeapi.Error{HTTPStatus: 400, Type: "invalid_request_error"}, "55000"},
		{stripeapi.Error{HTTPStatus: 400, Type: "idempotency_error"}, "55000"},
		{stripeapi.Error{HTTPStatus: 429, Type: "invalid_request_error", Code: "rate_limit"}, "53400"},
		{stripeapi.Error{HTTPStatus: 429, Type: "invalid_request_error", Code: "lock_timeout"}, "55P03"},
		{stripeapi.Error{HTTPStatus: 409, Type: "idempotency_error", Code: "idempotency_key_in_use"}, "55P03"},
		{stripeapi.Error{HTTPStatus: 401, Type: "invalid_request_error"}, "28000"},
		{stripeapi.Error{HTTPStatus: 403, Type: "invalid_request_error"}, "42501"},
		{stripeapi.Error{HTTPStatus: 500, Type: "api_error"}, "58000"},
	} {
		if got := stripeCode(&tc.err); got != tc.want {
			t.Errorf("HTTP %d %s %s: %s, want %s", tc.err.HTTPStatus, tc.err.Type, tc.err.Code, got, tc.want)
		}
	}
}
