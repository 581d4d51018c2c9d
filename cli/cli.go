package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, env *Env, args []string) error
}

// Env is what a subcommand may use of its surroundings.
type Env struct {
	Stdout, Stderr io.Writer
}

// errUsage marks errors whose message is already printed with the usage.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"serve", "", "migrate, then run sync and the proxy until SIGINT/SIGTERM", runServe},
		{"migrate", "", "create or upgrade the stripe and stripe_sync schemas", runMigrate},
		{"backfill", "[--objects a,b]", "one-shot backfill with progress, then exit", runBackfill},
		{"status", "", "print per-object sync state", runStatus},
		{"emulator", "[flags]", "run the Stripe API emulator", runEmulator},
		{"demo", "", "throwaway Postgres + seeded emulator + serve, with a ready psql command", runDemo},
		{"version", "", "print the build's version, commit and Go version", runVersion},
	}
}

// runVersion prints what a bug report needs: the module version (a tag, or
// "(devel)" for a source build), the commit it was built from (marked
// "+dirty" with local changes) and the Go version.
func runVersion(_ context.Context, env *Env, args []string) error {
	// A FlagSet with no flags, so that --help answers as for every other
	// command ('pgstripe --help' tells users to try it on each).
	fs := flagSet(env, "version")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pgstripe version\n\nPrints the build's version, commit and Go version, for bug reports. It takes no flags.\n")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, versionLine())
	return nil
}

func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "pgstripe (unknown build)"
	}
	line := "pgstripe " + bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		line += " " + rev[:min(len(rev), 12)]
		if modified == "true" {
			line += "+dirty"
		}
	}
	return line + " " + bi.GoVersion
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "pgstripe keeps a Postgres schema in sync with Stripe and writes to Stripe with SQL.\n\nUsage: pgstripe <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %-17s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'pgstripe <command> --help' for a command's flags. Configuration comes from the\nenvironment (DATABASE_URL, STRIPE_API_KEY, STRIPE_API_BASE, PGSTRIPE_*); flags override it.\n")
}

// Main runs pgstripe with args (without the program name) and returns the
// exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help":
		if len(args) > 1 {
			args = []string{args[1], "--help"} // as 'pgstripe <command> --help'
			break
		}
		usage(stdout)
		return 0
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "--version", "-version":
		args = []string{"version"}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signalContext()
		defer stop()
		err := c.run(ctx, &Env{Stdout: stdout, Stderr: stderr}, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		// Errors of the packages a command runs may start with the
		// command's name too (schema.Migrate's "migrate: …"): once is
		// enough.
		fmt.Fprintf(stderr, "pgstripe %s: %s\n", c.name, strings.TrimPrefix(oneLine(err.Error()), c.name+": "))
		return 1
	}
	fmt.Fprintf(stderr, "pgstripe: unknown command %q (run 'pgstripe --help' for the list)\n", args[0])
	return 2
}

// signalContext is cancelled by the first SIGINT or SIGTERM. The second one
// gets Go's default disposition and kills the process: a shutdown that
// waits (the proxy drains busy sessions for up to 10 s) must not swallow an
// operator's second Ctrl-C.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		// Before the cancel, so that whoever sees the shutdown start
		// also sees a second signal kill the process.
		signal.Stop(ch)
		cancel()
	}()
	return ctx, cancel
}

// exitCode is an error that asks for a specific exit code with nothing more
// printed (the command printed what it had to say).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// flagSet makes a FlagSet that reports bad flags as one line and errUsage.
func flagSet(env *Env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("pgstripe "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// parse parses args; a bad flag or stray argument is errUsage (the flag
// package already printed the problem).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}
