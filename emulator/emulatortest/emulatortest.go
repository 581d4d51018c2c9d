// Package emulatortest starts a Stripe emulator inside a test.
package emulatortest

import (
	"net/http/httptest"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
)

// Start runs an emulator on a free local port until the test ends. A zero
// RateLimit in opts means unlimited here (tests shouldn't trip Stripe's
// default limit by accident); pass a positive RateLimit to test limiting.
func Start(t testing.TB, opts emulator.Options) (e *emulator.Emulator, baseURL string) {
	t.Helper()
	if opts.RateLimit == 0 {
		opts.RateLimit = -1
	}
	e, err := emulator.New(opts)
	if err != nil {
		t.Fatalf("emulatortest: %v", err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	t.Cleanup(e.Close) // runs first: releases held requests so Close doesn't wait
	return e, srv.URL
}
