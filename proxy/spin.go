package proxy

// SpinConfig tunes the low-latency read path.
type SpinConfig struct {
	// Disable turns it off: every read waits in Go's netpoller.
	Disable bool
}

type spinner struct{ cfg SpinConfig }

func newSpinner(cfg SpinConfig) *spinner { return &spinner{cfg: cfg} }

func (sp *spinner) attach(s *session) {}
func (sp *spinner) detach(s *session) {}
