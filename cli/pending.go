package cli

import (
	"context"
	"errors"
)

// These commands are wired as their packages land.
var errNotYet = errors.New("not available in this build yet")

func runServe(ctx context.Context, env *Env, args []string) error    { return errNotYet }
func runBackfill(ctx context.Context, env *Env, args []string) error { return errNotYet }
func runEmulator(ctx context.Context, env *Env, args []string) error { return errNotYet }
func runDemo(ctx context.Context, env *Env, args []string) error     { return errNotYet }
