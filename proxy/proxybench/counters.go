package proxybench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pgstripe/pgstripe/pgcluster"
)

// counters are the bench process's own resource counters. The process hosts
// the proxies while pgbench and Postgres run as other processes, so the
// difference across a pgbench run against one proxy is that proxy's cost
// (plus a little runtime background), independent of how busy the machine
// is — unlike TPS or latency.
type counters struct {
	cpu   time.Duration // user + system
	rw    int64         // read and write system calls (/proc/self/io syscr + syscw)
	ctxsw int64         // voluntary + involuntary context switches
	txs   int64         // transactions served
}

func readCounters() counters {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	c := counters{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ctxsw: ru.Nvcsw + ru.Nivcsw}
	if b, err := os.ReadFile("/proc/self/io"); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			k, v, ok := bytes.Cut(line, []byte(": "))
			if ok && (string(k) == "syscr" || string(k) == "syscw") {
				n, _ := strconv.ParseInt(string(v), 10, 64)
				c.rw += n
			}
		}
	}
	return c
}

// add accumulates what happened since before, for txs transactions.
func (c *counters) add(before counters, txs int64) {
	now := readCounters()
	c.cpu += now.cpu - before.cpu
	c.rw += now.rw - before.rw
	c.ctxsw += now.ctxsw - before.ctxsw
	c.txs += txs
}

// PerTx is a proxy's cost per transaction.
type PerTx struct {
	CPUMicros float64 `json:"cpu_us"`
	Syscalls  float64 `json:"read_write_syscalls"`
	CtxSw     float64 `json:"context_switches"`
}

func (c counters) perTx() *PerTx {
	if c.txs == 0 {
		return nil
	}
	n := float64(c.txs)
	return &PerTx{
		CPUMicros: round1(float64(c.cpu.Nanoseconds()) / 1e3 / n),
		Syscalls:  round1(float64(c.rw) / n),
		CtxSw:     round1(float64(c.ctxsw) / n),
	}
}

// upstreamAddr is where a proxy under test connects: the cluster's TCP
// address, or its Unix socket.
func upstreamAddr(c *pgcluster.Cluster, unix bool) string {
	if unix {
		return filepath.Join(c.Dir, ".s.PGSQL."+strconv.Itoa(c.Port))
	}
	return c.Addr()
}
