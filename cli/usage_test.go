package cli

import (
	"net"
	"strings"
	"testing"
)

// A bad flag prints the flags with their defaults: the environment's secrets
// must not be among them.
func TestBadFlagDoesNotPrintSecrets(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/x", "STRIPE_API_KEY": "sk_live_SUPERSECRET"}
	for _, cmd := range []string{"serve", "backfill", "migrate", "status"} {
		for _, arg := range []string{"--no-such-flag", "--help"} {
			code, out, errs := run(t, env, cmd, arg)
			if strings.Contains(out+errs, "hunter2") || strings.Contains(out+errs, "SUPERSECRET") {
				t.Errorf("%s %s prints a secret:\n%s%s", cmd, arg, out, errs)
			}
			if want := map[string]int{"--no-such-flag": 2, "--help": 0}[arg]; code != want {
				t.Errorf("%s %s: exit %d, want %d", cmd, arg, code, want)
			}
		}
	}
}

// Unknown flags and stray arguments are usage errors (exit 2) for the
// emulator too.
func TestEmulatorUsageExit2(t *testing.T) {
	for _, args := range [][]string{{"emulator", "--no-such-flag"}, {"emulator", "stray"}, {"emulator", "--seed", "many"}} {
		code, _, errs := run(t, nil, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errs)
		}
	}
	if code, _, errs := run(t, nil, "emulator", "--faults", "2"); code != 2 || !strings.Contains(errs, "--faults") {
		t.Errorf("emulator --faults 2: exit %d %q, want 2 naming --faults", code, errs)
	}
	// --help is not an error, and the usage goes to stderr as for every
	// other command.
	if code, out, errs := run(t, nil, "emulator", "--help"); code != 0 || out != "" || !strings.Contains(errs, "Usage of pgstripe emulator") {
		t.Errorf("emulator --help: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// 'pgstripe help <command>' prints that command's flags, as
// 'pgstripe <command> --help' does; 'version' and '--version' print one
// line naming the Go version, for bug reports.
func TestHelpCommandAndVersion(t *testing.T) {
	if code, out, errs := run(t, nil, "help", "backfill"); code != 0 || !strings.Contains(out+errs, "Usage of pgstripe backfill") || !strings.Contains(out+errs, "-objects") {
		t.Errorf("help backfill: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := run(t, nil, "help", "nope"); code != 2 || !strings.Contains(errs, `unknown command "nope"`) {
		t.Errorf("help nope: exit %d, stderr %q", code, errs)
	}
	for _, arg := range []string{"version", "--version"} {
		code, out, errs := run(t, nil, arg)
		if code != 0 || !strings.HasPrefix(out, "pgstripe ") || !strings.Contains(out, "go1.") || strings.Count(out, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, out, errs)
		}
	}
	if code, _, _ := run(t, nil, "version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

// 'pgstripe --help' sends users to 'pgstripe <command> --help': version
// answers it too (it was a usage error, exit 2), and still refuses a stray
// argument.
func TestVersionHelp(t *testing.T) {
	for _, args := range [][]string{{"version", "--help"}, {"version", "-h"}, {"help", "version"}} {
		code, out, errs := run(t, nil, args...)
		if code != 0 || out != "" || !strings.Contains(errs, "Usage: pgstripe version") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, _, errs := run(t, nil, "version", "extra"); code != 2 || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Errorf("version extra: exit %d, stderr %q", code, errs)
	}
}

// A demo whose port is taken fails at once, in one line naming the demo's
// own flag, before it starts a cluster or seeds the emulator (it used to
// report PGSTRIPE_LISTEN, which the demo does not read, after both).
func TestDemoTakenPortFailsFirst(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"proxy port", []string{"--listen", addr, "--metrics-listen", "127.0.0.1:0"}, "--listen " + addr + " is not available"},
		{"metrics port", []string{"--listen", "127.0.0.1:0", "--metrics-listen", addr}, "--metrics-listen " + addr + " is not available"},
		{"one port for both", []string{"--listen", "127.0.0.1:6542", "--metrics-listen", "127.0.0.1:6542"}, `are both "127.0.0.1:6542"`},
		{"bad address", []string{"--listen", "nohost", "--metrics-listen", "127.0.0.1:0"}, "--listen nohost is not available"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, nil, append([]string{"demo", "--customers", "1", "--latency", "0"}, tc.args...)...)
			if code != 1 || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "pgstripe demo: ") || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and one line containing %q", code, errs, tc.want)
			}
			if out != "" {
				t.Errorf("the demo started before checking its ports:\n%s", out)
			}
		})
	}
}
