package proxy

import (
	"bufio"
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

// SpinConfig tunes the low-latency read path.
//
// Waiting for data through Go's netpoller parks the goroutine, lets the CPU
// go idle and wakes it through the scheduler: tens of microseconds on a
// small (virtual) machine, twice per round trip (client → proxy → upstream
// → proxy → client). A proxy that only does that reaches about 0.55-0.65 of
// direct pgbench -S TPS at one client. Polling the socket for a short while
// before parking avoids it, but burns a core: worth it only when cores are
// idle (few busy sessions), harmful when Postgres needs them. So a read
// spins only when
//   - the session is busy: it read something within ActiveWindow;
//   - fewer than MaxSpinners reads are spinning;
//   - the machine had idle CPU in the last sampling period (/proc/stat,
//     counting the proxy's own spinning as idle).
//
// Otherwise, and after SpinTime without data, the read parks in the
// netpoller as usual.
type SpinConfig struct {
	// Disable turns spinning off.
	Disable bool
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
	// MinIdle is the idle CPU share (0-1, over all cores) below which
	// nobody spins (default 0.25; negative: spin regardless of load).
	MinIdle float64
}

type spinner struct {
	cfg      SpinConfig
	spinning atomic.Int32
	spentNs  atomic.Int64 // time spent spinning, counted back as idle

	mu        sync.Mutex
	lastCheck time.Time
	lastIdle  uint64
	lastTotal uint64
	lastSpent int64
	allowed   atomic.Bool
	stat      *os.File
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
	if cfg.MinIdle == 0 {
		cfg.MinIdle = 0.25
	}
	sp := &spinner{cfg: cfg}
	sp.allowed.Store(true)
	return sp
}

// attach gives a session's plain TCP readers the spinning path.
func (sp *spinner) attach(s *session) {
	if sp.cfg.Disable {
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

func (sp *spinner) waiterFor(c net.Conn, soon func() bool, active *atomic.Int64) waiter {
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

func (sp *spinner) done(spent time.Duration) {
	sp.spinning.Add(-1)
	sp.spentNs.Add(int64(spent))
}

// sample re-reads /proc/stat at most every 100ms and decides whether the
// machine has idle CPU to spin on.
func (sp *spinner) sample() {
	now := time.Now()
	if !sp.mu.TryLock() {
		return
	}
	defer sp.mu.Unlock()
	if now.Sub(sp.lastCheck) < 100*time.Millisecond {
		return
	}
	sp.lastCheck = now
	idle, total, ok := readCPUStat(&sp.stat)
	if !ok {
		return // not Linux, or no /proc: keep the current decision
	}
	spent := sp.spentNs.Load()
	if sp.lastTotal != 0 && total > sp.lastTotal {
		dIdle := float64(idle - sp.lastIdle)
		dTotal := float64(total - sp.lastTotal)
		// /proc/stat counts in 1/100 s ticks.
		dSpin := float64(spent-sp.lastSpent) / 1e7
		share := (dIdle + dSpin) / dTotal
		sp.allowed.Store(share >= sp.cfg.MinIdle || sp.cfg.MinIdle < 0)
	}
	sp.lastIdle, sp.lastTotal, sp.lastSpent = idle, total, spent
}

// readCPUStat returns the idle (idle + iowait) and total tick counts of the
// aggregate "cpu" line of /proc/stat.
func readCPUStat(f **os.File) (idle, total uint64, ok bool) {
	if *f == nil {
		fh, err := os.Open("/proc/stat")
		if err != nil {
			return 0, 0, false
		}
		*f = fh
	}
	if _, err := (*f).Seek(0, io.SeekStart); err != nil {
		return 0, 0, false
	}
	line, err := bufio.NewReaderSize(*f, 512).ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte("cpu ")) {
		return 0, 0, false
	}
	fields := bytes.Fields(line[4:])
	for i, f := range fields {
		v, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i >= 8 { // guest time is already in user
			break
		}
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total, true
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
	spinning := false
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
				if start.IsZero() && w.soon() && w.sp.mayStart() {
					spinning = true
					start = time.Now()
					continue
				}
				return false // park in the netpoller
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
