package cli

import (
	"strings"
	"testing"
)

// TestDemoRefusesNegativeCustomers: 'demo --customers -5' started a
// cluster, announced "seeding the Stripe emulator with -5 customers" and
// ran on an empty account; the emulator's --seed refuses a negative count.
// It is refused at once, before anything starts.
func TestDemoRefusesNegativeCustomers(t *testing.T) {
	code, out, errs := run(t, nil, "demo", "--customers", "-5", "--latency", "0", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	if code != 1 || out != "" || errs != "pgstripe demo: --customers must not be negative, got -5\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, nothing started, one line naming --customers", code, out, errs)
	}
}

// TestDemoHelpNamesItsOwnCommand: the demo's help told users of a
// built binary to run 'go run ./cmd/pgstripe status', which works only in
// a checkout; it names the binary that runs, and 'go run' when that is a
// binary go run built.
func TestDemoHelpNamesItsOwnCommand(t *testing.T) {
	for _, c := range []struct{ exe, want string }{
		{"/tmp/go-build2851419930/b001/exe/pgstripe", "go run ./cmd/pgstripe"},
		{"/usr/local/bin/pgstripe", "/usr/local/bin/pgstripe"},
		{"/home/a b/it's/pgstripe", `'/home/a b/it'\''s/pgstripe'`},
	} {
		if got := selfCommandFor(c.exe); got != c.want {
			t.Errorf("selfCommandFor(%q) = %q, want %q", c.exe, got, c.want)
		}
	}
	var b strings.Builder
	printDemoHelp(&b, "127.0.0.1:6543", "127.0.0.1:9464", "postgres://postgres@127.0.0.1:5/postgres", "/usr/local/bin/pgstripe")
	if want := "DATABASE_URL='postgres://postgres@127.0.0.1:5/postgres' /usr/local/bin/pgstripe status\n"; !strings.Contains(b.String(), want) {
		t.Errorf("demo help does not contain %q:\n%s", want, b.String())
	}
}
