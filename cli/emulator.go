package cli

import (
	"context"

	"github.com/pgstripe/pgstripe/emulator"
)

func runEmulator(ctx context.Context, env *Env, args []string) error {
	return emulator.Command(ctx, args, env.Stdout)
}
