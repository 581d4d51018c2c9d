package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config configures a Proxy.
type Config struct {
	// Listen is the address ListenAndServe listens on (host:port).
	Listen string
	// Upstream is the Postgres server, host:port (or a Unix socket path,
	// e.g. /var/run/postgresql/.s.PGSQL.5432). When Postgres runs on the
	// same host, prefer the socket: under load it cost the proxy 10–20%
	// less CPU per transaction than loopback TCP (docs/BENCHMARKS.md).
	Upstream string
	// TLSConfig, when set, lets clients upgrade to TLS (SSLRequest → 'S').
	// TLS ends at the proxy.
	TLSConfig *tls.Config
	// TLSRequired (with TLSConfig) refuses a client that sends its
	// StartupMessage without TLS, with FATAL 28000 as Postgres refuses a
	// client that only hostssl lines of pg_hba.conf would let in, and
	// before anything reaches upstream. Cancel requests are still taken
	// in plain text (libpq before Postgres 17 sends them so; Postgres
	// takes them before pg_hba.conf too).
	TLSRequired bool
	// UpstreamTLS, when set, makes the upstream connection use TLS (like
	// sslmode=require, or verify-full if the config verifies); nil: plain.
	UpstreamTLS *tls.Config
	// UpstreamTLSOptional (sslmode=prefer): when Postgres declines TLS,
	// go on in plain text instead of failing.
	UpstreamTLSOptional bool
	// Hosts, when set, replaces Upstream, UpstreamTLS and
	// UpstreamTLSOptional with several servers (DATABASE_URL's host=a,b),
	// in the order they are named. A session goes to the host the last
	// session started on (at first Hosts[FirstHost]); when that host
	// fails before the client had to answer anything (no connection, TLS
	// refused, an error before authentication, or, with Primary, a host
	// in hot standby under trust authentication), the others are tried in
	// order, as libpq tries a connection string's hosts, and the one that
	// works becomes the host later sessions try first. The common case
	// costs nothing more than one host: one dial, no extra query.
	Hosts []UpstreamHost
	// FirstHost is the index in Hosts to try first until a session finds
	// another (the host pgstripe's own connections reached).
	FirstHost int
	// Primary skips hosts in hot standby (target_session_attrs=read-write
	// or primary), as Postgres 14 and later report them at startup
	// (ParameterStatus in_hot_standby; older servers report nothing and
	// are taken as they are). A session whose client already answered an
	// authentication request on a standby cannot be moved (the proxy
	// relays authentication and has no credentials): it ends with FATAL
	// 08006, and the client's next connection goes to the next host.
	Primary bool
	// Classify decides which statements the Interceptor handles. It is called
	// once per distinct statement text (results are cached), never for
	// statements already classified. nil: everything passes through.
	Classify func(sql string) Class
	// Interceptor answers the statements Classify marks Intercept.
	Interceptor Interceptor
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
	// DialTimeout bounds connecting to upstream (default 10s).
	DialTimeout time.Duration
	// StartupTimeout bounds a client's startup and authentication
	// (default 60s), so silent connections don't stay open.
	StartupTimeout time.Duration
	// DrainTimeout is how long Serve waits, after its context is cancelled,
	// for busy sessions to reach an idle point before closing them
	// (default 10s).
	DrainTimeout time.Duration

	// maxStarting overrides maxStartingConns (tests).
	maxStarting int
}

// maxStartingConns caps the connections still in startup (before the
// upstream session is ready: startup packet, TLS, authentication). Each
// holds a goroutine, a socket (two once upstream is dialed) and a 32 KB
// read buffer for up to StartupTimeout, so a flood of idle TCP connections
// would otherwise pile those up without bound. Postgres refuses beyond its
// child-process limit the same way (FATAL 53300). 1024 is far above what
// real clients open at once (a pool filling up; upstream's own
// max_connections, 100 by default, bounds the sessions that can finish),
// and keeps a flood to ~2k file descriptors and ~40 MB. Started sessions
// do not count: upstream bounds those.
const maxStartingConns = 1024

// errTooManyClients is what Postgres sends beyond its connection slots.
var errTooManyClients = encode(pgError("FATAL", "53300", "sorry, too many clients already"))

// UpstreamHost is one Postgres server of Config.Hosts.
type UpstreamHost struct {
	// Addr is host:port, or a Unix socket path.
	Addr string
	// TLS and TLSOptional are as Config.UpstreamTLS and
	// Config.UpstreamTLSOptional, for this host (verify-full checks each
	// host's own name).
	TLS         *tls.Config
	TLSOptional bool
}

// Proxy is a session-mode Postgres wire-protocol proxy: one upstream
// connection per client connection.
type Proxy struct {
	cfg      Config
	hosts    []UpstreamHost
	cur      atomic.Int32 // index in hosts of the host a session tries first
	log      *slog.Logger
	classify *classCache

	mu       sync.Mutex
	sessions map[*session]struct{}
	byKey    map[uint64]*session // proxy-issued cancel key → session
	draining bool
	wg       sync.WaitGroup
	count    atomic.Int64
	starting atomic.Int64  // connections in startup (see maxStartingConns)
	passed   atomic.Uint64 // statements forwarded: simple queries and Executes
}

// New returns a Proxy; call Serve or ListenAndServe to run it.
func New(cfg Config) *Proxy {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = 60 * time.Second
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.maxStarting == 0 {
		cfg.maxStarting = maxStartingConns
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		cfg:      cfg,
		log:      log,
		sessions: make(map[*session]struct{}),
		byKey:    make(map[uint64]*session),
		hosts:    cfg.Hosts,
	}
	if len(p.hosts) == 0 {
		p.hosts = []UpstreamHost{{Addr: cfg.Upstream, TLS: cfg.UpstreamTLS, TLSOptional: cfg.UpstreamTLSOptional}}
	}
	if cfg.FirstHost > 0 && cfg.FirstHost < len(p.hosts) {
		p.cur.Store(int32(cfg.FirstHost))
	}
	if cfg.Classify != nil && cfg.Interceptor != nil {
		p.classify = newClassCache(cfg.Classify, classCacheEntries, classCacheBytes)
	}
	return p
}

// PassedThrough counts the statements forwarded to Postgres as they are
// (simple queries and extended-protocol Executes), for metrics.
func (p *Proxy) PassedThrough() uint64 { return p.passed.Load() }

// Sessions returns the number of open client connections.
func (p *Proxy) Sessions() int { return int(p.count.Load()) }

// ListenAndServe listens on cfg.Listen and serves until ctx is cancelled.
func (p *Proxy) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", p.cfg.Listen)
	if err != nil {
		return err
	}
	return p.Serve(ctx, ln)
}

// Serve accepts connections on ln until ctx is cancelled, then stops
// accepting, lets busy sessions finish their current request (up to
// DrainTimeout), closes the rest with an admin-shutdown error, and returns
// nil. It returns an error if accepting fails for another reason.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var serveErr error
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				p.log.Warn("accept failed, retrying", "err", err)
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			serveErr = err
			break
		}
		backoff = 5 * time.Millisecond
		if p.starting.Load() >= int64(p.cfg.maxStarting) {
			p.refuse(conn)
			continue
		}
		p.mu.Lock()
		if p.draining {
			p.mu.Unlock()
			conn.Close()
			continue
		}
		p.wg.Add(1)
		p.mu.Unlock()
		p.starting.Add(1)
		go func() {
			defer p.wg.Done()
			p.serveConn(conn)
		}()
	}
	ln.Close()
	p.shutdown()
	return serveErr
}

// refuse answers a connection beyond maxStartingConns as Postgres does
// when out of connection slots (its postmaster, too, answers before
// reading the startup packet when it cannot start a backend at all; libpq
// and pgx read an ErrorResponse in place of the SSLRequest's answer), and
// closes it. A fresh socket's send buffer is empty, so the write does not
// block the accept loop; the deadline bounds it all the same.
func (p *Proxy) refuse(conn net.Conn) {
	p.log.Warn("refusing connection: too many connections in startup", "remote", conn.RemoteAddr().String(), "limit", p.cfg.maxStarting)
	conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	conn.Write(errTooManyClients)
	conn.Close()
}

// shutdown drains the sessions: idle ones close now, busy ones when they
// next become idle, all of them after DrainTimeout.
func (p *Proxy) shutdown() {
	p.mu.Lock()
	p.draining = true
	sessions := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()
	for _, s := range sessions {
		go s.drain()
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.DrainTimeout):
		p.mu.Lock()
		for s := range p.sessions {
			go s.closeWithError(errAdminShutdown)
		}
		p.mu.Unlock()
		<-done
	}
}

// register adds a session and reports whether the proxy is draining (the
// session should then close at once).
func (p *Proxy) register(s *session) (draining bool) {
	p.mu.Lock()
	p.sessions[s] = struct{}{}
	draining = p.draining
	p.mu.Unlock()
	p.count.Add(1)
	return draining
}

func (p *Proxy) unregister(s *session) {
	p.mu.Lock()
	delete(p.sessions, s)
	if s.cancelKey != 0 && p.byKey[s.cancelKey] == s {
		delete(p.byKey, s.cancelKey)
	}
	p.mu.Unlock()
	p.count.Add(-1)
}

// issueCancelKey gives a session the process id and secret its client will
// use to cancel queries; CancelRequest maps them back to the session. The
// process id is the upstream backend's own (each session has one backend),
// because clients use it as that: knex's query timeout runs
// pg_cancel_backend(pid) on another connection, LISTEN clients compare it
// with a notification's sender, people look it up in pg_stat_activity. Only
// the secret is the proxy's, so the upstream's key never reaches the client.
func (p *Proxy) issueCancelKey(s *session) (pid, secret uint32) {
	var b [8]byte
	for {
		rand.Read(b[:])
		pid = s.upstreamPID
		if pid == 0 {
			// An upstream key without a process id: make one up.
			pid = binary.BigEndian.Uint32(b[:4]) & 0x3fffffff
		}
		secret = binary.BigEndian.Uint32(b[4:])
		key := uint64(pid)<<32 | uint64(secret)
		if pid == 0 {
			continue
		}
		p.mu.Lock()
		if _, taken := p.byKey[key]; !taken {
			p.byKey[key] = s
			s.cancelKey = key
			p.mu.Unlock()
			return pid, secret
		}
		p.mu.Unlock()
	}
}

func (p *Proxy) lookupCancel(pid uint32, secret []byte) *session {
	if len(secret) != 4 {
		return nil
	}
	key := uint64(pid)<<32 | uint64(binary.BigEndian.Uint32(secret))
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byKey[key]
}

// dialUpstream connects to hosts[host] (without TLS: see upstreamTLS).
func (p *Proxy) dialUpstream(host int) (net.Conn, error) {
	addr := p.hosts[host].Addr
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	d := net.Dialer{Timeout: p.cfg.DialTimeout, KeepAlive: 15 * time.Second}
	conn, err := d.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return conn, nil
}

// isClosedErr reports errors that just mean the peer or the proxy closed the
// connection, which are not worth logging as failures.
func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "broken pipe")
}
