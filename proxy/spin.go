package proxy

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SpinConfig tunes the optional spin-before-park read path.
//
// Waiting for data through Go's netpoller parks the goroutine, lets the CPU
// go idle and wakes it through the scheduler, twice per round trip (client
// → proxy → upstream → proxy → client). Polling the socket for a short
// while before parking can avoid that on a quiet machine (FIELD-NOTES: 0.87
// of direct pgbench -S TPS at one client, against ~0.6 without), but it
// burns a core that pgbench or Postgres may then wait for: on a busy machine
// it costs far more than it saves. When enabled, a read spins only when
//   - the session is busy: it read something within ActiveWindow;
//   - fewer than MaxSpinners reads are spinning;
//   - no other process wants the cores: few runnable tasks besides the
//     proxy's own spinners (procs_running in /proc/stat).
//
// Otherwise, and after SpinTime without data, the read parks in the
// netpoller as usual.
type SpinConfig struct {
	// Enable turns spinning on. It is off by default: on the 2-core
	// development machine, shared with other work, it made latency worse
	// (see docs/BENCHMARKS.md).
	Enable bool
	// SpinTime is how long a read polls before parking (default 100µs).
	SpinTime time.Duration
	// MaxSpinners caps concurrent spinning reads (default GOMAXPROCS/2,
	// at least 1).
	MaxSpinners int
	// ActiveWindow: a session that read anything this recently counts as
	// busy, and its reads may spin (default 1ms).
	ActiveWindow time.Duration
	// OnlyWhenDue restricts spinning to reads where data is due: upstream
	// owes a reply, or the client has all of its replies.
	OnlyWhenDue bool
	// MaxRunnable: nobody spins while more than this many other tasks are
	// runnable on the machine, on average (default: cores - 0.5, at least
	// 0.5; negative: spin regardless of load).
	MaxRunnable float64
}

type spinner struct {
	cfg      SpinConfig
	spinning atomic.Int32

	mu        sync.Mutex
	lastCheck atomic.Int64 // unix ns
	others    float64      // moving average of other runnable tasks
	allowed   atomic.Bool
	stat      *os.File
	statBuf   []byte
}

func newSpinner(cfg SpinConfig) *spinner {
	if cfg.SpinTime == 0 {
		cfg.SpinTime = 100 * time.Microsecond
	}
	if cfg.MaxSpinners == 0 {
		cfg.MaxSpinners = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cfg.ActiveWindow == 0 {
		cfg.ActiveWindow = time.Millisecond
	}
	if cfg.MaxRunnable == 0 {
		cfg.MaxRunnable = max(0.5, float64(runtime.NumCPU())-0.5)
	}
	sp := &spinner{cfg: cfg, others: -1}
	sp.allowed.Store(cfg.MaxRunnable < 0)
	return sp
}

// attach gives a session's plain TCP readers the spinning path.
func (sp *spinner) attach(s *session) {
	if !sp.cfg.Enable {
		return
	}
	clientSoon := func() bool { return time.Now().UnixNano()-s.lastActive.Load() < int64(sp.cfg.ActiveWindow) }
	upstreamSoon := clientSoon
	if sp.cfg.OnlyWhenDue {
		clientSoon = func() bool { return s.q.len() == 0 }
		upstreamSoon = func() bool { return s.q.len() > 0 }
	}
	if w := sp.waiterFor(s.client, clientSoon, &s.lastActive); w != nil {
		s.cr.wait = w
	}
	if w := sp.waiterFor(s.upstream, upstreamSoon, &s.lastActive); w != nil {
		s.ur.wait = w
	}
}

func (sp *spinner) detach(s *session) {}

func (sp *spinner) waiterFor(c net.Conn, soon func() bool, active *atomic.Int64) *spinWaiter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil // TLS reads go through crypto/tls
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &spinWaiter{sp: sp, rc: rc, soon: soon, active: active}
}

// mayStart reports whether one more read may spin now.
func (sp *spinner) mayStart() bool {
	sp.sample()
	if !sp.allowed.Load() {
		return false
	}
	if sp.spinning.Add(1) > int32(sp.cfg.MaxSpinners) {
		sp.spinning.Add(-1)
		return false
	}
	return true
}

func (sp *spinner) done(time.Duration) {
	sp.spinning.Add(-1)
}

// sample re-reads /proc/stat's procs_running every 20ms and decides
// whether a core is free to spin on. CPU idle time would be the wrong
// signal: spinning itself makes the machine look busy, and counting it back
// as idle lets spinning justify itself while other processes wait for the
// core. The number of runnable tasks other than the proxy's own spinners
// (and the sampling thread) says whether anyone else wants the cores.
func (sp *spinner) sample() {
	now := time.Now().UnixNano()
	if now-sp.lastCheck.Load() < int64(20*time.Millisecond) || !sp.mu.TryLock() {
		return
	}
	defer sp.mu.Unlock()
	sp.lastCheck.Store(now)
	running, ok := readProcsRunning(&sp.stat, &sp.statBuf)
	if !ok {
		return // not Linux, or no /proc: keep the current decision
	}
	others := float64(running - 1 - int(sp.spinning.Load()))
	if sp.others < 0 {
		sp.others = others
	} else {
		sp.others = 0.7*sp.others + 0.3*others
	}
	sp.allowed.Store(sp.cfg.MaxRunnable < 0 || sp.others <= sp.cfg.MaxRunnable)
}

// readProcsRunning returns the "procs_running" count of /proc/stat.
func readProcsRunning(f **os.File, buf *[]byte) (int, bool) {
	if *f == nil {
		fh, err := os.Open("/proc/stat")
		if err != nil {
			return 0, false
		}
		*f = fh
		*buf = make([]byte, 64<<10)
	}
	n, err := (*f).ReadAt(*buf, 0)
	if n == 0 && err != nil {
		return 0, false
	}
	_, rest, ok := bytes.Cut((*buf)[:n], []byte("\nprocs_running "))
	if !ok {
		return 0, false
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	v, err := strconv.Atoi(string(line))
	return v, err == nil
}

type spinWaiter struct {
	sp     *spinner
	rc     syscall.RawConn
	soon   func() bool
	active *atomic.Int64
}

func (w *spinWaiter) read(p []byte) (int, error) {
	var n int
	var rerr error
	var start time.Time
	spinning, tried := false, false
	err := w.rc.Read(func(fd uintptr) bool {
		for {
			// Non-blocking read: a raw syscall, no scheduler round trip.
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafePointer(p)), uintptr(len(p)))
			n = int(r)
			if e == 0 {
				rerr = nil
				break
			}
			if e == syscall.EINTR {
				continue
			}
			if e != syscall.EAGAIN {
				n, rerr = 0, e
				break
			}
			if !spinning {
				if tried {
					return false // park in the netpoller
				}
				tried = true
				if w.soon() && w.sp.mayStart() {
					spinning = true
					start = time.Now()
					continue
				}
				return false
			}
			if time.Since(start) >= w.sp.cfg.SpinTime {
				spinning = false
				w.sp.done(time.Since(start))
				return false
			}
		}
		if spinning {
			spinning = false
			w.sp.done(time.Since(start))
		}
		return true
	})
	if spinning {
		w.sp.done(time.Since(start))
	}
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		if rerr == syscall.ECONNRESET {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, rerr
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	w.active.Store(time.Now().UnixNano())
	return n, nil
}
