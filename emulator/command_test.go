package emulator_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/emulator"
)

// CONTRACT §6 lists the values of --distribution; a misspelt one (or a
// negative --event-delay, which the admin API refuses) is a usage error
// even when nothing is seeded, instead of an emulator that starts and
// silently ignores it.
func TestCommandRefusesBadDistributionAndEventDelay(t *testing.T) {
	for _, args := range [][]string{{"--distribution", "bogus"}, {"--distribution", "Uniform"}, {"--event-delay", "-1s"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var stdout, stderr bytes.Buffer
		err := emulator.Command(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), &stdout, &stderr)
		cancel()
		if !errors.Is(err, emulator.ErrUsage) || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err %v (stdout %q), want a usage error naming %s", args, err, stdout.String(), args[0])
		}
	}
	// The documented values still work.
	for _, d := range []string{"uniform", "spike", "same-second"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := emulator.Command(ctx, []string{"--listen", "127.0.0.1:0", "--distribution", d, "--seed", "1"}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
			t.Errorf("--distribution %s: %v", d, err)
		}
	}
}
