package emulator_test

import (
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
)

// An enum that may be unset ("" among its values, like tax_exempt) lists
// only real values in its error message.
func TestEnumMessageOmitsEmpty(t *testing.T) {
	_, base := emulatortest.Start(t, emulator.Options{})
	r := do(t, "POST", base+"/v1/customers", "sk_test_x", "tax_exempt=bogus")
	msg := errField(r, "message")
	if r.status != 400 || errField(r, "param") != "tax_exempt" {
		t.Fatalf("HTTP %d %s", r.status, r.raw)
	}
	if !strings.Contains(msg, "must be one of exempt, none, reverse") {
		t.Errorf("message %q, want the values exempt, none, reverse and no empty one", msg)
	}
}
