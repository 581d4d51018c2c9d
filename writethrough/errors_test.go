package writethrough

import (
	"testing"
	"time"
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
