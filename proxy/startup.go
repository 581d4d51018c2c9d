package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

var (
	errAdminShutdown = pgError("FATAL", "57P01", "terminating connection because the pgstripe proxy is shutting down")
	errTLSRequired   = pgError("FATAL", "28000", "pgstripe proxy: TLS is required (PGSTRIPE_TLS_REQUIRED): connect with sslmode=require or stronger")
)

// serveConn runs one client connection from startup to close.
func (p *Proxy) serveConn(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(15 * time.Second)
	}
	s := &session{p: p, client: conn, done: make(chan struct{}), stmts: make(map[string]*stmtInfo)}
	s.ctx, s.ctxCancel = context.WithCancel(context.Background())
	s.txStatus.Store('I')
	s.cw.conn = withRawIO(conn)
	started := false
	startupDone := func() {
		if !started {
			started = true
			p.starting.Add(-1)
		}
	}
	defer startupDone()
	draining := p.register(s)
	defer p.unregister(s)
	defer s.close()
	if draining {
		// Accepted just before shutdown began, but registered after
		// shutdown collected the sessions to drain.
		s.closeWithError(errAdminShutdown)
		return
	}

	conn.SetDeadline(time.Now().Add(p.cfg.StartupTimeout))
	startup, err := s.clientStartup()
	if err != nil || startup == nil {
		if err != nil && !isClosedErr(err) {
			p.log.Debug("client startup failed", "remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	if err := s.connectUpstream(startup); err != nil {
		if !isClosedErr(err) {
			p.log.Info("session startup failed", "remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	s.client.SetDeadline(time.Time{})
	s.upstream.SetDeadline(time.Time{})
	startupDone()
	s.run()
}

// clientStartup reads the client's startup packets: SSL and GSS encryption
// requests, cancel requests, and finally the StartupMessage, whose raw bytes
// it returns (nil when the connection was a cancel request).
func (s *session) clientStartup() ([]byte, error) {
	s.cr = newMsgReader(s.cw.conn) // the client socket, wrapped once in serveConn
	if err := s.cr.ensure(1); err != nil {
		return nil, err
	}
	if s.cr.buf[s.cr.r] == 0x16 {
		// A TLS ClientHello right away: direct TLS negotiation
		// (sslnegotiation=direct, PostgreSQL 17 clients).
		if err := s.directTLS(); err != nil {
			return nil, err
		}
	}
	// Like Postgres, accept one SSLRequest and one GSSENCRequest (the
	// latter not inside TLS); a repeated one is an unsupported protocol.
	sslDone, gssDone := s.tls, s.tls
	for {
		raw, err := s.cr.readStartup()
		if err != nil {
			return nil, err
		}
		code := binary.BigEndian.Uint32(raw[4:8])
		switch {
		case code == sslRequestCode && !sslDone:
			sslDone = true
			answer := byte('S')
			if s.p.cfg.TLSConfig == nil {
				answer = 'N'
			}
			if _, err := s.client.Write([]byte{answer}); err != nil {
				return nil, err
			}
			// Bytes that arrived with the SSLRequest were sent before the
			// handshake, in plaintext: accepting them would let a
			// man-in-the-middle inject commands (CVE-2021-23214). Postgres
			// refuses them after its answer, so the client reads the
			// answer it waits for, then the FATAL.
			if s.cr.w > s.cr.r {
				s.writeFatal(pgError("FATAL", "08P01", "received unencrypted data after SSL request"))
				return nil, errors.New("unencrypted data after SSLRequest")
			}
			if answer == 'N' {
				continue
			}
			tlsConn := tls.Server(s.client, s.p.cfg.TLSConfig)
			if err := tlsConn.Handshake(); err != nil {
				return nil, fmt.Errorf("tls handshake: %w", err)
			}
			s.setClient(tlsConn)
			s.tls = true
			gssDone = true
			s.cr = newMsgReader(tlsConn)
		case code == gssEncRequestCode && !gssDone:
			gssDone = true
			if _, err := s.client.Write([]byte{'N'}); err != nil {
				return nil, err
			}
			if s.cr.w > s.cr.r {
				s.writeFatal(pgError("FATAL", "08P01", "received unencrypted data after GSSAPI encryption request"))
				return nil, errors.New("unencrypted data after GSSENCRequest")
			}
		case code == cancelRequestCode:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(raw[4:]); err == nil {
				if target := s.p.lookupCancel(cr.ProcessID, cr.SecretKey); target != nil {
					target.cancelRequest()
				}
			}
			return nil, nil
		default:
			if code>>16 != 3 {
				s.writeFatal(pgError("FATAL", "0A000", fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.2", code>>16, code&0xffff)))
				return nil, fmt.Errorf("unsupported protocol %d", code)
			}
			// Any 3.x goes upstream as it is: Postgres answers a minor
			// version or _pq_ option it lacks with NegotiateProtocolVersion,
			// which the client gets like any other startup reply.
			user, database, ok := startupParams(raw[8:])
			if !ok {
				s.writeFatal(pgError("FATAL", "08P01", "invalid startup packet layout: expected terminator as last byte"))
				return nil, errMalformed
			}
			if s.p.cfg.TLSRequired && !s.tls {
				s.writeFatal(errTLSRequired)
				return nil, errors.New("client without TLS refused (TLS required)")
			}
			s.user, s.database = user, database
			out := make([]byte, len(raw))
			copy(out, raw)
			return out, nil
		}
	}
}

// startupParams reads the user and database out of a StartupMessage's
// parameters as Postgres reads them (ProcessStartupPacket): name/value
// pairs, read as if a NUL followed the packet, until an empty name; the
// packet is well formed when that last name starts at its last byte
// (which is then the terminator, or a one-byte name Postgres ignores).
// Like Postgres, the database defaults to the user name.
func startupParams(b []byte) (user, database string, ok bool) {
	n := len(b)
	padded := append(b[:n:n], 0)
	off := 0
	for off < n && padded[off] != 0 {
		name, _, _ := cstringBytes(padded[off:])
		valOff := off + len(name) + 1
		if valOff >= n {
			break // a name without its value: refused below
		}
		val, _, _ := cstringBytes(padded[valOff:])
		switch string(name) {
		case "user":
			user = string(val)
		case "database":
			database = string(val)
		}
		off = valOff + len(val) + 1
	}
	if database == "" {
		database = user
	}
	return user, database, off == n-1
}

// dialFailure says why a dial failed without the upstream's address: the
// client has not authenticated yet, and the database's internal address is
// none of its business. The log has the whole error.
func dialFailure(err error) string {
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENOENT):
		return "no such socket"
	case errors.As(err, &dns):
		return "host name not found"
	case os.IsTimeout(err):
		return "timed out"
	default:
		return "unreachable"
	}
}

// connectUpstream opens the upstream connection, sends the client's startup
// message as it is and relays authentication both ways, until upstream's
// first ReadyForQuery. Upstream's BackendKeyData is replaced by a proxy-issued
// one, so cancel requests come to the proxy. Writes to the client take
// cwMu: shutdown may send its FATAL from another goroutine meanwhile.
//
// With several hosts (Config.Hosts), a host that fails before the client
// had to answer anything is passed over: what it sent stays in the
// client's write buffer until ReadyForQuery, and is dropped.
func (s *session) connectUpstream(startup []byte) error {
	n := len(s.p.hosts)
	first := int(s.p.cur.Load())
	var refusal []byte // the first host's ErrorResponse, for the client if no host will do
	for k := range n {
		host := first
		if k > 0 {
			// Then the others, in the order they are named.
			if host = k - 1; host >= first {
				host++
			}
		}
		err := s.startOn(host, startup, k == n-1, &refusal)
		var next *nextHost
		if !errors.As(err, &next) {
			if err == nil && host != first {
				s.p.cur.CompareAndSwap(int32(first), int32(host))
				s.p.log.Warn("upstream host changed", "host", s.p.hosts[host].Addr, "was", s.p.hosts[first].Addr)
			}
			return err
		}
		s.p.log.Info("upstream host passed over", "host", s.p.hosts[host].Addr, "reason", next.reason)
		s.resetUpstream()
	}
	return errors.New("no upstream host") // not reached: the last host never passes
}

// nextHost: startOn gave up on its host, and the next one may do.
type nextHost struct{ reason string }

func (e *nextHost) Error() string { return e.reason }

// resetUpstream undoes a startOn that passed its host over.
func (s *session) resetUpstream() {
	s.connMu.Lock()
	up := s.upstream
	s.upstream = nil
	s.connMu.Unlock()
	if up != nil {
		up.Close()
	}
	s.cwMu.Lock()
	s.cw.buf = s.cw.buf[:0]
	s.cwMu.Unlock()
	if s.cancelKey != 0 {
		s.p.mu.Lock()
		if s.p.byKey[s.cancelKey] == s {
			delete(s.p.byKey, s.cancelKey)
		}
		s.p.mu.Unlock()
		s.cancelKey = 0
	}
	s.upstreamPID, s.upstreamKey = 0, nil
}

// errHotStandby ends a session that authenticated on a standby when a
// primary is required (Config.Primary).
var errHotStandby = pgError("FATAL", "08006", "pgstripe proxy: upstream Postgres is in hot standby mode (read-only), and DATABASE_URL asks for a primary (target_session_attrs); reconnect")

// startOn runs connectUpstream's startup on hosts[host]. Unless last, a
// failure before the client had to answer anything returns *nextHost,
// without a word to the client; refusal keeps the first ErrorResponse
// met that way.
func (s *session) startOn(host int, startup []byte, last bool, refusal *[]byte) error {
	// fail tells the client why no host will do: the first host's own
	// refusal if one refused, else msg.
	fail := func(msg string) {
		if *refusal != nil {
			s.cwMu.Lock()
			s.cw.buf = s.cw.buf[:0]
			s.cwMu.Unlock()
			s.lastWords(nil, *refusal)
			return
		}
		s.writeFatal(pgError("FATAL", "08006", msg))
	}
	s.host = host
	up, err := s.p.dialUpstream(host)
	if err != nil {
		if !last {
			return &nextHost{"dial: " + err.Error()}
		}
		fail("pgstripe proxy: cannot connect to upstream Postgres: " + dialFailure(err))
		return err
	}
	up.SetDeadline(time.Now().Add(s.p.cfg.StartupTimeout))
	if err := s.setUpstream(up); err != nil {
		return err
	}
	if s.p.hosts[host].TLS != nil {
		if up, err = s.p.upstreamTLS(up, host); err != nil {
			if !last {
				return &nextHost{err.Error()}
			}
			fail("pgstripe proxy: " + err.Error())
			return err
		}
		if err := s.setUpstream(up); err != nil {
			return err
		}
	}
	s.uw.setConn(withRawIO(up))
	s.ur = newMsgReader(s.uw.conn)
	if _, err := up.Write(startup); err != nil {
		if !last {
			return &nextHost{"startup: " + err.Error()}
		}
		fail("pgstripe proxy: lost connection to upstream Postgres during startup")
		return err
	}
	s.cr.limit = authLimit
	// answered: the client answered an authentication request of this
	// host, which no other host can take.
	answered := false
	for {
		typ, raw, err := s.ur.next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Postgres's own words for its authentication_timeout.
			s.writeFatal(pgError("FATAL", "08006", fmt.Sprintf("pgstripe proxy: canceling authentication due to timeout (%s)", s.p.cfg.StartupTimeout)))
			return err
		}
		if err != nil {
			if !last && !answered {
				return &nextHost{"startup: " + err.Error()}
			}
			fail("pgstripe proxy: lost connection to upstream Postgres during startup")
			return err
		}
		switch typ {
		case 'R':
			if len(raw) < 9 {
				return errMalformed
			}
			if err := s.writeClient(raw); err != nil {
				return err
			}
			switch binary.BigEndian.Uint32(raw[5:9]) {
			case 0, 12: // AuthenticationOk, SASLFinal: nothing to answer
				// (it goes out with the rest at ReadyForQuery)
				continue
			}
			// Every other request wants one answer from the client
			// (password, md5 hash, SASL response).
			answered = true
			if err := s.flushClient(); err != nil {
				return err
			}
			ctyp, craw, err := s.cr.next()
			if errors.Is(err, errMessageType) || err == nil && ctyp != 'p' {
				s.writeFatal(pgError("FATAL", "08P01", fmt.Sprintf("expected password response, got message type %d", ctyp)))
				return errMalformed
			}
			if errors.Is(err, errMessageTooLarge) || errors.Is(err, errMalformed) {
				s.writeFatal(pgError("FATAL", "08P01", "invalid message length"))
				return err
			}
			if err != nil {
				return err
			}
			if _, err := up.Write(craw); err != nil {
				return err
			}
		case 'K':
			var k pgproto3.BackendKeyData
			if err := k.Decode(raw[5:]); err != nil {
				return err
			}
			s.upstreamPID, s.upstreamKey = k.ProcessID, k.SecretKey
			pid, secret := s.p.issueCancelKey(s)
			var key [4]byte
			binary.BigEndian.PutUint32(key[:], secret)
			if err := s.sendClient(&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: key[:]}); err != nil {
				return err
			}
		case 'E':
			if !answered && !last {
				// Refused before the client answered anything (starting
				// up, shutting down, out of connection slots, no
				// pg_hba.conf entry): another host may take the session.
				// Wider than libpq, which moves on only for 57P03
				// (cannot connect now), like pgx, which moves on for all
				// but 28P01, 3D000 and 42501; the client gets the first
				// host's refusal if none does.
				if *refusal == nil {
					*refusal = append([]byte(nil), raw...)
				}
				return &nextHost{"refused before authentication"}
			}
			if !answered && *refusal != nil {
				fail("")
				return errors.New("upstream refused the connection")
			}
			s.lastWords(nil, raw)
			return errors.New("upstream refused the connection")
		case 'Z':
			if len(raw) == 6 {
				s.txStatus.Store(uint32(raw[5]))
			}
			if err := s.writeClient(raw); err != nil {
				return err
			}
			s.cr.limit = clientLimit
			s.p.log.Debug("session started", "remote", s.client.RemoteAddr().String(), "user", s.user, "database", s.database, "tls", s.tls)
			return s.flushClient()
		case 'S':
			if s.p.cfg.Primary && hotStandby(raw) {
				if !last && !answered {
					return &nextHost{"in hot standby"}
				}
				// The client's next connection had better try another.
				s.p.cur.CompareAndSwap(int32(host), int32((host+1)%len(s.p.hosts)))
				if !answered {
					s.cwMu.Lock()
					s.cw.buf = s.cw.buf[:0]
					s.cwMu.Unlock()
				}
				s.writeFatal(errHotStandby)
				return errors.New("upstream is in hot standby")
			}
			if err := s.writeClient(raw); err != nil {
				return err
			}
		default: // NoticeResponse, NegotiateProtocolVersion
			if err := s.writeClient(raw); err != nil {
				return err
			}
		}
	}
}

// hotStandby reports whether a raw ParameterStatus says in_hot_standby=on.
func hotStandby(raw []byte) bool {
	name, rest, ok := cstringBytes(raw[5:])
	if !ok || string(name) != "in_hot_standby" {
		return false
	}
	v, _, ok := cstringBytes(rest)
	return ok && string(v) == "on"
}

// clientLimit mirrors Postgres's per-message limits for client messages
// (SocketBackend), and the message types it accepts.
func clientLimit(typ byte) int {
	switch typ {
	case 'Q', 'P', 'B', 'd', 'F':
		return maxLargeMessage
	case 'C', 'D', 'E', 'H', 'S', 'X', 'c', 'f':
		return maxSmallMessage
	}
	return -1
}

// authLimit: during authentication Postgres accepts only a password or
// SASL response (recv_password_packet, SASL's exchange).
func authLimit(typ byte) int {
	if typ != 'p' {
		return -1
	}
	return maxAuthMessage
}

// cancelRequest forwards a client's cancel request to upstream with the
// upstream's own key, and cancels a running interception. Upstream first:
// a cancelled interception replies at once, and an upstream cancel still
// in flight then would hit the client's next statement.
func (s *session) cancelRequest() {
	s.cancelUpstream()
	s.icMu.Lock()
	if s.icCancel != nil {
		s.icCancel()
	}
	s.icMu.Unlock()
}

// cancelUpstream sends a CancelRequest for this session's upstream backend.
func (s *session) cancelUpstream() {
	if s.upstreamKey == nil {
		return
	}
	conn, err := s.p.dialUpstream(s.host)
	if err != nil {
		s.p.log.Info("cancel request: cannot reach upstream", "err", err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(s.p.cfg.DialTimeout))
	if conn, err = s.p.upstreamTLS(conn, s.host); err != nil {
		s.p.log.Info("cancel request: upstream TLS", "err", err)
		return
	}
	if _, err := conn.Write(encode(&pgproto3.CancelRequest{ProcessID: s.upstreamPID, SecretKey: s.upstreamKey})); err != nil {
		return
	}
	// Postgres closes the connection once it has handled the request;
	// waiting for that keeps a cancel from racing the next query.
	var b [1]byte
	conn.Read(b[:])
}

// upstreamTLS negotiates TLS on a fresh upstream connection as Config
// asks: none (conn as it is), required, or optional (a Postgres that
// answers 'N' gets conn as it is).
func (p *Proxy) upstreamTLS(conn net.Conn, host int) (net.Conn, error) {
	h := p.hosts[host]
	if h.TLS == nil {
		return conn, nil
	}
	if _, err := conn.Write(encode(&pgproto3.SSLRequest{})); err != nil {
		return nil, err
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return nil, fmt.Errorf("upstream TLS negotiation: %w", err)
	}
	if b[0] != 'S' {
		if h.TLSOptional && b[0] == 'N' {
			return conn, nil
		}
		return nil, errors.New("upstream Postgres does not accept TLS connections")
	}
	tc := tls.Client(conn, h.TLS)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("upstream TLS handshake: %w", err)
	}
	return tc, nil
}

// directTLS serves a client that starts TLS without SSLRequest. Like
// Postgres, it requires the "postgresql" ALPN protocol, which keeps other
// protocols' clients from being confused with a Postgres client.
func (s *session) directTLS() error {
	if s.p.cfg.TLSConfig == nil {
		return errors.New("direct TLS connection, but TLS is not configured")
	}
	cfg := s.p.cfg.TLSConfig.Clone()
	cfg.NextProtos = []string{"postgresql"}
	pre := &prefixConn{Conn: s.client, prefix: append([]byte(nil), s.cr.buf[s.cr.r:s.cr.w]...)}
	tlsConn := tls.Server(pre, cfg)
	if err := tlsConn.Handshake(); err != nil {
		return fmt.Errorf("direct tls handshake: %w", err)
	}
	if tlsConn.ConnectionState().NegotiatedProtocol != "postgresql" {
		tlsConn.Close()
		return errors.New("direct TLS connection without ALPN protocol \"postgresql\"")
	}
	s.setClient(tlsConn)
	s.tls = true
	s.cr = newMsgReader(tlsConn)
	return nil
}

// prefixConn replays bytes already read before reading the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
