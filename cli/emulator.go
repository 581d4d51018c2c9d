package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/pgstripe/pgstripe/emulator"
)

func runEmulator(ctx context.Context, env *Env, args []string) error {
	err := emulator.Command(ctx, args, env.Stdout, env.Stderr)
	if errors.Is(err, emulator.ErrUsage) {
		// A usage error (exit 2) like in every other command. The flag
		// package has printed its own errors; the others need saying.
		if msg := strings.TrimPrefix(err.Error(), emulator.ErrUsage.Error()+": "); strings.HasPrefix(msg, "emulator: ") {
			fmt.Fprintf(env.Stderr, "pgstripe %s\n", msg)
		}
		return errUsage
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		// Command's errors start with "emulator: " for callers that embed
		// the emulator; Main already names the command.
		return errors.New(strings.TrimPrefix(err.Error(), "emulator: "))
	}
	return err
}
