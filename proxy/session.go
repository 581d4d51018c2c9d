package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// session is one client connection and its upstream connection.
//
// Two goroutines serve it: the client loop (this connection's goroutine)
// reads client messages and forwards them upstream; the server loop reads
// upstream's replies and forwards them to the client. The reply queue tells
// the server loop which request each reply answers. The client loop owns
// the upstream writer; the client writer is shared under cwMu.
type session struct {
	p                *Proxy
	client, upstream net.Conn
	// connMu guards client and upstream while startup sets them (TLS
	// replaces client, connectUpstream sets upstream): shutdown may close
	// the session from another goroutine meanwhile. They do not change
	// after startup.
	connMu         sync.Mutex
	tls            bool
	user, database string

	cr *msgReader // client → proxy; client loop only
	ur *msgReader // upstream → proxy; server loop only (or an interception it hands over to)
	uw msgWriter  // proxy → upstream; client loop only

	cwMu sync.Mutex
	cw   msgWriter // proxy → client

	q        replyQueue
	txStatus atomic.Uint32 // 'I', 'T' or 'E' as of the last reply processed

	upstreamPID uint32
	upstreamKey []byte
	cancelKey   uint64
	// host is the index in Proxy.hosts of the upstream server (cancel
	// requests go there too).
	host int

	// Statements and portals, tracked only as far as interception needs.
	stmts   map[string]*stmtInfo
	portals map[string]*portalInfo
	// cursorOps maps portals bound to a FETCH or MOVE statement to its
	// text, which may name a portal of portals (see fetchedPortal).
	cursorOps map[string]string
	// namesOps maps portals bound to a DEALLOCATE or DISCARD statement to
	// its text, for Execute to follow (see noteSQLStatements).
	namesOps map[string]string
	// syncs counts the Syncs and Queries sent, each of which may end the
	// transaction (and with it every portal) bound before it.
	syncs uint64
	// copyWin is the sequence number (execSeq) of the last Query or
	// Execute forwarded, while only Syncs, Flushes and CopyData have
	// followed it: if it starts COPY FROM STDIN, Postgres ignores those
	// Syncs (it skips Sync and Flush in copy-in mode, for clients such as
	// libpq that send Sync after every Execute). Only upstream's
	// CopyInResponse tells whether it did (see replyQueue.copyIn): a COPY
	// that fails to start leaves them answered. 0: no such window.
	copyWin, execSeq uint64
	// copyWinData: CopyData came in the copy-in window (see entry.afterData).
	copyWinData bool
	// extOpen: the client sent extended-protocol requests since its last
	// Sync or Query; they run in an implicit transaction that Postgres
	// ends at the next Sync or Query.
	extOpen bool

	icMu     sync.Mutex
	icCancel context.CancelFunc

	// lasting describes the intercepted statements (Call.Lasting) of the
	// current pipeline's implicit transaction, outside a transaction block,
	// whose changes stay whatever that transaction becomes; lastingN counts
	// them (lasting keeps the first few, and is stale when lastingN is 0).
	// quiet is the session's
	// client_min_messages as the last interception found it (Call.SetQuiet).
	// Only an interception (client loop) and the server loop touch them,
	// never at once: the server loop waits for the interception to finish,
	// the interception for the server loop to reach its barrier.
	lasting  []string
	lastingN int
	quiet    bool

	// sawFatal: the client got a FATAL error, from upstream (server loop)
	// or from an interception whose upstream went away (Call.Send, while
	// the server loop waits for it): the session closes without another.
	sawFatal bool
	// copyingIn: server loop: upstream answered CopyInResponse and has
	// not ended that COPY yet (so the read path takes the queue's lock
	// for copyEnd only then).
	copyingIn bool
	// optPending: server loop: the queue has opt entries (see
	// replyQueue.resolveOpt).
	optPending bool
	ctx        context.Context // ends when the session closes
	ctxCancel  context.CancelFunc
	draining   atomic.Bool
	// terminated: the client ended its session: it sent Terminate (which
	// the client loop met, or which was in the client's bytes the proxy
	// had read when upstream's end stopped it, see terminateBuffered and
	// stopClientLoop), or closed its side.
	terminated atomic.Bool
	closeOnce  sync.Once
	done       chan struct{}
	// closeErr is the session's last words: the FATAL the client got, or
	// upstreamFatal for one passed on from upstream (or made of an
	// interceptor's error when upstream went away). Postgres sends at most
	// one, so whoever sends one claims it here (compare-and-swap, with the
	// write in one critical section: lastWords), and a FATAL that loses
	// the claim is not sent.
	closeErr atomic.Pointer[pgproto3.ErrorResponse]
	// endMu orders the two ends a session may meet at once: the client
	// loop stopping at a protocol violation (violation, its FATAL, set
	// only if upstream's end was not met before) and the server loop
	// meeting upstream's end (lossMet). Postgres reads the bad message
	// only if it is alive then. See meetLoss.
	endMu     sync.Mutex
	violation *pgproto3.ErrorResponse
	lossMet   bool
	// violationDue: server loop: upstream's end came after the client's
	// protocol violation and after the answers to every request before
	// it, so the session ends with the violation's FATAL (see meetLoss).
	violationDue *pgproto3.ErrorResponse
	// lost is closed by the server loop when upstream's loss is to end the
	// session with the proxy's FATAL, to stop the client loop wherever it
	// waits; clientStopped is closed when the client loop has returned.
	// See stopClientLoop. Both are made by run (nil: the loops run without
	// it, and their ends are ordered by the caller).
	lost, clientStopped chan struct{}
}

// stmtInfo is what the proxy knows about a prepared statement.
type stmtInfo struct {
	sql       string
	class     Class
	paramOIDs []uint32 // from Parse, completed by ParameterDescription
	// uncertain: this Parse reused the name of a statement and may have
	// been refused, or (the unnamed statement) skipped; see trackParse.
	uncertain bool
	// parsed: Postgres answered this (uncertain) Parse with ParseComplete,
	// so the statement is the one under its name; refused: with an error.
	// Set by the server loop.
	parsed, refused atomic.Bool
	// skipped: Postgres skipped this Parse (an error earlier in its
	// batch), so it changed nothing. Set by the server loop.
	skipped atomic.Bool
	// prev is the unnamed statement this (uncertain) Parse replaces, which
	// stays if Postgres skips the Parse.
	prev *stmtInfo
	// cursorOp: a FETCH or MOVE, which may name an intercepted portal.
	cursorOp bool
	// namesOp: a DEALLOCATE or DISCARD, which Execute follows (see
	// noteSQLStatements).
	namesOp bool
}

// unnamed returns the unnamed statement in place after st, the last Parse
// of it before a Bind: st if Postgres accepted it, none if it refused it
// (a failing unnamed Parse drops the previous statement first), the
// previous one if it skipped it (an error earlier in the batch).
func (st *stmtInfo) unnamed() *stmtInfo {
	for st != nil && st.uncertain && !st.parsed.Load() {
		if st.refused.Load() {
			return passthroughStmt // Bind failed: upstream answers the Execute
		}
		st = st.prev
	}
	if st == nil {
		return passthroughStmt
	}
	return st
}

// mayIntercept reports whether the unnamed statement in place after st
// may be one to intercept, as far as the server loop has told.
func (st *stmtInfo) mayIntercept() bool {
	return st.class == Intercept || st.uncertain && !st.parsed.Load() && !st.refused.Load()
}

// passthroughStmt stands for every statement that is not intercepted, so
// that tracking reads costs no allocation.
var passthroughStmt = &stmtInfo{class: Passthrough}

// portalInfo is a bound intercepted statement.
type portalInfo struct {
	name          string
	stmtName      string
	stmt          *stmtInfo
	params        [][]byte
	paramFormats  []int16
	resultFormats []int16
	// syncs is session.syncs at Bind.
	syncs uint64
	// ran: the statement was executed; like Postgres, a later Execute of the
	// portal returns the rows an Execute row limit kept back (rest), never
	// runs it again. tag is its CommandComplete tag.
	ran  bool
	rest [][]byte
	tag  []byte
}

// run serves the session after startup until either side closes.
func (s *session) run() {
	s.cr.onBlock = s.flushUpstream
	s.ur.onBlock = s.flushClient
	if s.draining.Load() {
		s.closeWithError(errAdminShutdown)
		return
	}
	s.lost, s.clientStopped = make(chan struct{}), make(chan struct{})
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		err := s.serverLoop()
		s.endFromServer(err)
	}()
	err := s.clientLoop()
	s.endFromClient(err)
	<-serverDone
}

func (s *session) flushUpstream() error {
	if err := s.uw.flush(); err != nil {
		return &upstreamError{err}
	}
	return nil
}

// upstreamError is a failure of the upstream connection met by the client
// loop: a write of a request, or an interception's read of its replies
// (interception.goneErr). endFromClient must not take it for the client's
// own end (an EOF from upstream reads as the client closing its side).
type upstreamError struct{ err error }

// errUpstreamLost ends a wait of the client loop that upstream's loss
// made endless (see stopClientLoop).
var errUpstreamLost = errors.New("upstream connection lost")

func (e *upstreamError) Error() string { return e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// upstreamLostGrace bounds how long a session whose client loop met an
// upstream failure waits for the server loop to end it (see endFromClient).
const upstreamLostGrace = 5 * time.Second

func (s *session) flushClient() error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	return s.cw.flush()
}

func (s *session) writeClient(raw []byte) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	return s.cw.write(raw)
}

func (s *session) sendClient(msg interface {
	Encode([]byte) ([]byte, error)
}) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	return s.cw.send(msg)
}

// writeFatal sends an error and flushes, unless the client got a FATAL
// already (see closeErr); used before closing.
func (s *session) writeFatal(e *pgproto3.ErrorResponse) {
	s.lastWords(e, nil)
}

// upstreamFatal stands in closeErr for a FATAL that upstream sent, which
// goes out as it came (raw).
var upstreamFatal = &pgproto3.ErrorResponse{Severity: "FATAL"}

// lastWords sends the session's FATAL, e or upstream's raw one, and
// flushes it, unless the client got one already; sent reports whether it
// did. The claim (closeErr) and the write are one critical section: two
// goroutines ending the session at once (the client loop on a protocol
// violation, the server loop on upstream's end, a shutdown) would
// otherwise both find it unclaimed and send one each, and a loser that
// closes the connection as soon as it lost must find the winner's FATAL
// flushed, not still on its way.
func (s *session) lastWords(e *pgproto3.ErrorResponse, raw []byte) (sent bool, err error) {
	claim := upstreamFatal
	if raw == nil {
		claim = e
		// A client that stopped reading must not hold the session (or
		// the proxy's shutdown) up: the deadline also ends a write in
		// progress in the server loop, which releases the lock.
		s.connMu.Lock()
		client := s.client
		s.connMu.Unlock()
		client.SetWriteDeadline(time.Now().Add(time.Second))
	}
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	if !s.closeErr.CompareAndSwap(nil, claim) {
		return false, nil
	}
	if s.cw.partial {
		// The client has the start of a message whose rest will never
		// come: it would read an error as more of that message. Postgres
		// never ends a session inside a message either; the close is all
		// the client gets.
		return false, nil
	}
	if raw != nil {
		err = s.cw.write(raw)
	} else {
		err = s.cw.send(e)
	}
	if err == nil {
		err = s.cw.flush()
	}
	return true, err
}

// passFatal passes upstream's FATAL on (see lastWords). Server loop, or
// an interception while the server loop waits for it.
func (s *session) passFatal(raw []byte) error {
	sent, err := s.lastWords(nil, raw)
	if sent {
		s.sawFatal = true
	}
	return err
}

// close tears both connections down; safe to call more than once and from
// any goroutine.
func (s *session) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ctxCancel()
		s.connMu.Lock()
		client, upstream := s.client, s.upstream
		s.connMu.Unlock()
		client.Close()
		if upstream != nil {
			upstream.Close()
		}
	})
}

// setClient replaces the client connection (TLS upgrade during startup).
func (s *session) setClient(c net.Conn) {
	s.connMu.Lock()
	s.client = c
	s.connMu.Unlock()
	s.cwMu.Lock()
	s.cw.setConn(c)
	s.cwMu.Unlock()
}

// setUpstream records the upstream connection, or closes it if the
// session was closed meanwhile (shutdown), which would otherwise leave it
// open.
func (s *session) setUpstream(c net.Conn) error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	select {
	case <-s.done:
		c.Close()
		return net.ErrClosed
	default:
	}
	s.upstream = c
	return nil
}

// closeWithError sends a fatal error to the client (unless it got one
// already), then closes.
func (s *session) closeWithError(e *pgproto3.ErrorResponse) {
	s.writeFatal(e)
	s.close()
}

// drain closes the session now if it is idle, else at its next idle point.
// A session still in startup counts as idle: no client waits on a reply
// there, and a silent client must not hold shutdown up until DrainTimeout.
func (s *session) drain() {
	s.draining.Store(true)
	s.q.mu.Lock()
	idle := len(s.q.entries) == s.q.head && s.txStatus.Load() == 'I'
	s.q.mu.Unlock()
	if idle {
		s.closeIdle()
	}
}

// closeIdle ends a session that shutdown found idle, with 57P01 as
// Postgres ends its sessions on a shutdown, but without it once the client
// ended the session itself (terminated: a Terminate the client loop
// handled, or the client's end of input): Postgres sends nothing after a
// Terminate (PostgresMain: whereToSendOutput = DestNone), and at an idle
// point the Terminate is the next thing upstream reads.
func (s *session) closeIdle() {
	if s.terminated.Load() {
		s.close()
		return
	}
	s.closeWithError(errAdminShutdown)
}

func (s *session) endFromClient(err error) {
	select {
	case <-s.done:
		s.close()
		return
	default:
	}
	if s.upstreamLost() {
		// The server loop stopped this loop (stopClientLoop) and ends the
		// session itself, with or without its FATAL.
		return
	}
	var ue *upstreamError
	if errors.As(err, &ue) {
		// The server loop meets the same failure at its next read, once
		// it has passed on what upstream sent before it, and ends the
		// session with the FATAL the client must get (endFromServer).
		// Closing here would race it: after an interceptor's ERROR, say,
		// the client would see a bare EOF where a FATAL belongs.
		s.awaitServerEnd()
		return
	}
	var pe *protocolError
	if errors.As(err, &pe) {
		s.p.log.Info("closing session: client protocol violation", "remote", s.client.RemoteAddr().String(), "err", err)
		if pe.hasBadType {
			// Postgres reads no further than the type byte either: it
			// answers what came before, then refuses the byte with a
			// FATAL (or, in copy-in mode, fails the COPY, then the
			// FATAL) and closes, and the server loop passes it all on.
			// Its reply is the one the client would have had.
			if s.uw.write([]byte{pe.badType}) == nil && s.uw.flush() == nil {
				return
			}
		}
		if s.copyInRunning() {
			// A barrier would fail the COPY with a message the client
			// never sent. Upstream gets the bytes as the client sent
			// them instead, then the end of input, and fails the COPY as
			// it would directly (ERROR, then FATAL). Nothing the bad
			// message carries can run. Postgres sends the FATAL
			// then, not the proxy: upstream's must not give way to the
			// proxy's (meetLoss).
			s.endMu.Lock()
			s.violation = nil
			s.endMu.Unlock()
			// Upstream may have failed the COPY already (an ERROR on the
			// way, ignoring all until Sync in an extended batch), and
			// then refuses a length out of bounds by closing without a
			// word, as it would directly: whatever upstream answers the
			// bytes and their end with, its silence included, is the
			// session's end, as for the client's end of input. Set
			// before the write, which upstream's end can only follow.
			s.terminated.Store(true)
			s.uw.write(s.cr.buf[s.cr.r:s.cr.w])
			if s.uw.flush() == nil {
				if cw, ok := s.upstream.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					return
				}
			}
			s.terminated.Store(false)
			// Upstream's connection failed before it got the bytes:
			// Postgres, gone, never read the bad message. The session
			// ends as for any loss of upstream, by the server loop, with
			// upstream's FATAL if it sent one, else the proxy's 08006.
			// (Neither a FATAL 08P01 here, which raced upstream's, nor
			// terminated, which would silence the 08006: upstream never
			// had the client's input and its end.)
			s.awaitServerEnd()
			return
		}
		s.endMu.Lock()
		v := s.violation
		s.endMu.Unlock()
		if v == nil {
			// The server loop met upstream's end before this loop
			// stopped at the violation (or the bad type byte, which
			// Postgres would refuse itself, could not go upstream):
			// Postgres, gone, would never have read the message. The session ends as for any loss of
			// upstream, by the server loop (endFromServer).
			s.awaitServerEnd()
			return
		}
		ic, answered := s.answerForwarded()
		if !answered {
			// Upstream's end came before it answered the requests
			// before the violation (or another FATAL went out): the
			// server loop ends the session, with the violation's FATAL
			// if only the barrier was left unanswered (meetLoss).
			s.awaitServerEnd()
			return
		}
		s.closeWithError(v)
		if ic != nil {
			close(ic.finished) // let the server loop see the close
		}
		return
	}
	if err != nil && !isClosedErr(err) {
		s.p.log.Info("closing session", "remote", s.client.RemoteAddr().String(), "err", err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The client closed its side, perhaps only its sending side:
		// like Postgres, answer what it sent. Upstream gets the same end
		// of input, and ends the session once it has answered (the
		// server loop then closes).
		s.terminated.Store(true)
		if cw, ok := s.upstream.(interface{ CloseWrite() error }); ok {
			cut := errors.Is(err, io.ErrUnexpectedEOF)
			if cut {
				// A message cut off by the end: upstream gets its start
				// as the client sent it, and the same end of input.
				// Postgres can never run it; it answers the requests
				// before it, then refuses it as it would have (in
				// copy-in mode by its type byte alone), or closes
				// without a word.
				s.uw.write(s.cr.buf[s.cr.r:s.cr.w])
			}
			if s.uw.flush() == nil && cw.CloseWrite() == nil {
				return
			}
			if cut {
				// A Terminate now would be read as the rest of the
				// cut message.
				s.close()
				return
			}
		}
		s.uw.write(terminateMsg)
		s.uw.flush()
		return
	}
	if err != nil {
		// The client vanished: end the upstream session cleanly.
		s.uw.write(terminateMsg)
		s.uw.flush()
		s.close()
		return
	}
	// Terminate (forwarded): upstream answers what came before it (a
	// client may read on until EOF), or, in copy-in mode, fails the COPY
	// and closes with a FATAL, all of which the client must get as from
	// Postgres. Upstream closes in either case; end of input makes sure.
	if cw, ok := s.upstream.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		return
	}
	s.close()
}

// terminateBuffered reports whether the client's bytes that the proxy has
// read but not yet handled hold a whole Terminate, which the client loop
// would come to without waiting on the client (a message it would refuse
// or one cut off stops it first). Client loop only.
func (s *session) terminateBuffered() bool {
	b := s.cr.buf[s.cr.r:s.cr.w]
	for len(b) >= 5 {
		typ := b[0]
		n := int(int32(binary.BigEndian.Uint32(b[1:])))
		if s.cr.limit != nil && (s.cr.limit(typ) < 0 || n > s.cr.limit(typ)) || n < 4 || 1+n > len(b) {
			return false
		}
		if typ == 'X' {
			return true
		}
		b = b[1+n:]
	}
	return false
}

// copyInRunning reports whether upstream runs a COPY FROM STDIN, after
// waiting, if the last statement forwarded may start one (its copy-in
// window is open, see copyWin), until upstream has answered whether it
// did. Only the client loop calls it.
func (s *session) copyInRunning() bool {
	if s.copyWin != 0 {
		// Upstream holds back an Execute's reply until Flush or Sync; a
		// COPY ignores Flush.
		s.uw.write(flushMsg)
		if s.uw.flush() != nil {
			return false
		}
	}
	for {
		s.q.mu.Lock()
		running := s.q.copySeq != 0
		pending := false
		if !running && s.copyWin != 0 {
			for _, e := range s.q.entries[s.q.head:] {
				if e.seq == s.copyWin && (e.kind == kQuery || e.kind == kExecute) {
					pending = true
					break
				}
			}
		}
		s.q.mu.Unlock()
		if !pending {
			return running
		}
		select {
		case <-s.done:
			return false
		case <-time.After(time.Millisecond):
		}
	}
}

// awaitServerEnd leaves the session's end to the server loop, which
// meets upstream's failure at its next read, once it has passed on what
// upstream sent before it. The deadlines bound that wait, for a peer that
// vanished without a word and for a client that does not read.
func (s *session) awaitServerEnd() {
	deadline := time.Now().Add(upstreamLostGrace)
	s.upstream.SetReadDeadline(deadline)
	s.connMu.Lock()
	client := s.client
	s.connMu.Unlock()
	client.SetWriteDeadline(deadline)
}

// answerForwarded, before the proxy closes a session on a protocol
// violation, lets upstream answer the requests the client sent before it
// (which the client loop forwarded, or still buffers) and waits until the
// server loop has passed those replies on: Postgres, reading one message
// at a time, answers them before it meets the bad message. A barrier
// (which Postgres skips after an error, as it would have skipped the rest)
// marks the end. Nothing commits: no Sync is sent, and closing upstream
// rolls back an implicit transaction as the FATAL does. answered reports
// whether upstream answered (or skipped) every request before the barrier,
// so that Postgres would have read the bad message: not when upstream's
// connection failed first, or the session closed, or the client got a
// FATAL already. It returns the barrier's interception if the server loop
// reached it (and is now waiting for it to finish), nil otherwise. In
// copy-in mode it does nothing (answered): the barrier would end the COPY.
func (s *session) answerForwarded() (ic *interception, answered bool) {
	s.q.mu.Lock()
	copying := s.q.copySeq != 0
	s.q.mu.Unlock()
	if copying {
		return nil, true
	}
	if s.closeErr.Load() != nil {
		return nil, false
	}
	ic = newInterception()
	ic.violation = true
	s.q.push1(entry{kind: kIntercept, ic: ic})
	if s.uw.write(barrier) == nil && s.uw.flush() == nil {
		select {
		case <-ic.ready:
		case <-s.done:
		case <-s.lost:
		}
	}
	select {
	case <-s.done:
		return nil, false
	default:
	}
	// ready before lost: the server loop reaches or skips the barrier
	// before it meets upstream's end, if it does at all. (An aborted
	// batch skips it at once, even when the write failed: upstream
	// answered all before it then.)
	select {
	case <-ic.ready:
	default:
		return nil, false
	}
	if ic.skipped {
		return nil, true
	}
	return ic, true
}

// meetLoss records, in the server loop, that it met upstream's end (its
// connection failed, or it sent a FATAL), and returns the FATAL of the
// client's protocol violation if the session is to end with it instead:
// the client loop stopped at the violation before, and upstream answered
// every request before it (nothing but the violation's barrier is left
// in the queue), so Postgres, reading one message at a time, would have
// read the bad message and refused it before it ended. Otherwise (upstream
// ended while requests before the violation waited, or before the
// violation was read) Postgres would never have read it: the session ends
// as for any loss, with upstream's FATAL or the proxy's 08006.
func (s *session) meetLoss() *pgproto3.ErrorResponse {
	s.endMu.Lock()
	s.lossMet = true
	v := s.violation
	s.endMu.Unlock()
	if v == nil || !s.q.onlyViolationLeft() {
		return nil
	}
	return v
}

func (s *session) endFromServer(err error) {
	select {
	case <-s.done:
		return
	default:
	}
	if !s.terminated.Load() && !s.sawFatal {
		s.stopClientLoop()
		select {
		case <-s.done:
			return
		default:
		}
	}
	if s.terminated.Load() {
		// Postgres sends nothing once it has read a Terminate
		// (PostgresMain: whereToSendOutput = DestNone, then exit), and
		// neither does the proxy once it has read the client's, whether
		// or not the client loop got to it before upstream's end.
		s.close()
		return
	}
	if err != nil && !isClosedErr(err) {
		s.p.log.Info("upstream connection failed", "remote", s.client.RemoteAddr().String(), "err", err)
	}
	s.flushClient()
	if s.violationDue != nil {
		// The same FATAL the client loop may be sending (endFromClient):
		// whichever claims closeErr first sends it.
		s.closeWithError(s.violationDue)
	} else if !s.sawFatal {
		s.closeWithError(pgError("FATAL", "08006", "pgstripe proxy: lost connection to upstream Postgres"))
	}
	s.close()
}

// stopClientLoop stops the client loop where it is and waits until it
// has returned, before the server loop ends the session for upstream's
// loss: whether the proxy has read the client's Terminate is then settled
// (terminated), and decides the FATAL. Upstream is gone, so the client
// loop has nothing left to do: lost ends its waits (an interception's
// barrier, a full queue), a deadline in the past its reads of the client
// and its writes to upstream (which would otherwise wait for a peer that
// vanished without a word). On its way out it looks for a whole Terminate
// among the bytes it has read and not yet handled (see clientLoop).
//
// Why no interleaving sends the FATAL after a Terminate the proxy has
// read: the client loop is the only reader of the client. Either it met
// the Terminate itself, or the Terminate sits in its buffer, behind
// requests it would handle without reading the client again, when it
// returns; either way it sets terminated before it closes clientStopped,
// and the server loop reads terminated only after that close. Nothing is
// read from the client after the client loop has returned.
//
// Why a Terminate not read by then still gets the FATAL: so it does from
// Postgres. PostgresMain stops sending (whereToSendOutput = DestNone)
// only when it handles 'X' (or EOF); a backend ended before that, by
// pg_terminate_backend or a shutdown (ProcessInterrupts: ereport(FATAL,
// 57P01)) or by the postmaster's death while it waits on the client
// (secure_read), sends its FATAL, even with the Terminate already in its
// receive buffer behind the requests it was running. Upstream's own FATAL
// reaches the client that way, through the server loop (sawFatal: no
// 08006 then, and no need to stop anything). The 08006 stands for a death
// without a word (a crash, a lost network), after which Postgres sends
// nothing at all: it tells a client that still uses the session why the
// session ended. A client whose Terminate the proxy holds has ended the
// session itself, and gets what a crashed Postgres gives, the close alone:
// for a Terminate in its buffer the proxy follows a crashed Postgres, not
// one ended by an ereport(FATAL), which would have sent its own.
func (s *session) stopClientLoop() {
	if s.lost == nil {
		return // not run by run: the caller has seen the client loop return
	}
	close(s.lost)
	s.connMu.Lock()
	client := s.client
	s.connMu.Unlock()
	s.upstream.SetWriteDeadline(aLongTimeAgo)
	client.SetReadDeadline(aLongTimeAgo)
	select {
	case <-s.clientStopped:
	case <-s.done:
	}
}

// aLongTimeAgo is a deadline that has passed: it ends a blocked read or
// write at once.
var aLongTimeAgo = time.Unix(1, 0)

// upstreamLost reports whether the server loop has begun to end the
// session for upstream's loss (see stopClientLoop).
func (s *session) upstreamLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// protocolError is a client message the proxy cannot accept.
type protocolError struct {
	msg string
	// badType: the violation is this message type byte, which Postgres
	// refuses as soon as it reads it (see endFromClient).
	badType    byte
	hasBadType bool
}

func (e *protocolError) Error() string { return e.msg }

func protocolErrorf(format string, args ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, args...)}
}

// clientLoop reads client requests, records what each expects back, and
// forwards them (or hands them to the interceptor).
func (s *session) clientLoop() (err error) {
	defer func() {
		// A type assertion, not errors.As: upstreamError is returned
		// unwrapped, and errors.As here costs an allocation per message
		// (TestHotPathAllocs).
		_, upstreamErr := err.(*upstreamError)
		if pe, ok := err.(*protocolError); ok && !pe.hasBadType {
			// Before clientStopped: the server loop, stopping this loop
			// on upstream's end, then knows which end came first.
			// (Postgres refuses a bad type byte with its own FATAL.)
			s.endMu.Lock()
			if !s.lossMet {
				s.violation = pgError("FATAL", "08P01", pe.msg)
			}
			s.endMu.Unlock()
		}
		if (upstreamErr || s.upstreamLost()) && s.terminateBuffered() {
			// Upstream's end stopped the loop before a Terminate the
			// client had sent: the session ends as the client asked.
			s.terminated.Store(true)
		} else if !upstreamErr && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			// The client's end of input, which Postgres takes as a
			// Terminate (PostgresMain: EOF falls through to 'X'); set here
			// as well as in endFromClient, so that it is settled when
			// stopClientLoop returns.
			s.terminated.Store(true)
		}
		if s.clientStopped != nil {
			close(s.clientStopped)
		}
	}()
	for {
		typ, raw, err := s.cr.next()
		if err != nil {
			if errors.Is(err, errMessageType) {
				return &protocolError{msg: fmt.Sprintf("invalid frontend message type %d", typ), badType: typ, hasBadType: true}
			}
			if errors.Is(err, errMalformed) || errors.Is(err, errMessageTooLarge) {
				return &protocolError{msg: "invalid message from client: " + err.Error()}
			}
			return err
		}
		body := raw[5:]
		switch typ {
		case 'S', 'H', 'd':
		default:
			s.copyWin = 0
		}
		switch typ {
		case 'P', 'B', 'D', 'E', 'C':
			s.extOpen = true
		case 'S':
			s.extOpen = false
		}
		switch typ {
		case 'Q':
			// A simple Query replaces the unnamed portal and drops the
			// unnamed statement, unless Postgres skips it (an error
			// earlier in an extended-protocol batch): the records stay.
			// Only upstream can tell (see intercept); a statement or
			// portal that is gone makes Bind or Execute fail there.
			s.syncs++
			if s.p.classify != nil {
				sql, ok := queryText(body)
				if !ok {
					// Postgres refuses it with an ERROR (the session goes on).
					s.extOpen = false
					s.q.push1(entry{kind: kQuery})
					break
				}
				s.noteSQLStatements(sql)
				var refuse *pgproto3.ErrorResponse
				if len(s.portals) > 0 {
					refuse = fetchRefusal(sql, s.portals)
				}
				if refuse != nil || s.p.classify.get(sql) == Intercept {
					err := s.interceptSimple(string(sql), raw, refuse)
					s.extOpen = false
					if err != nil {
						return err
					}
					continue
				}
			}
			s.extOpen = false
			s.p.passed.Add(1)
			s.q.push1(entry{kind: kQuery, seq: s.nextCopyWin()})
		case 'P':
			st, err := s.trackParse(body)
			if err != nil {
				// Malformed: Postgres refuses it before it touches any
				// statement.
				s.q.push1(entry{kind: kParse})
				break
			}
			s.q.push1(entry{kind: kParse, stmt: st})
		case 'B':
			// (A malformed Bind, which Postgres refuses, is tracked as far
			// as it can be read: see trackBind.)
			s.trackBind(body)
			s.q.push1(entry{kind: kBind})
		case 'D':
			if len(body) < 2 {
				s.q.push1(entry{kind: kDescribePortal}) // Postgres refuses it
				break
			}
			if body[0] == 'S' {
				e := entry{kind: kDescribeStmt}
				if name, _, ok := cstringBytes(body[1:]); ok {
					if st := s.stmts[string(name)]; st != nil && st.class == Intercept {
						e.stmt = st
					}
				}
				s.q.push1(e)
			} else {
				s.q.push1(entry{kind: kDescribePortal})
			}
		case 'E':
			if len(s.namesOps) > 0 {
				if name, _, ok := cstringBytes(body); ok {
					if sql, ok := s.namesOps[string(name)]; ok {
						s.noteSQLStatements([]byte(sql))
					}
				}
			}
			if len(s.portals) > 0 {
				name, rest, ok := cstringBytes(body)
				if !ok || len(rest) != 4 {
					// Postgres refuses it, and runs nothing.
					s.q.push1(entry{kind: kExecute})
					break
				}
				if sql, ok := s.cursorOps[string(name)]; ok {
					if refuse := fetchRefusal([]byte(sql), s.portals); refuse != nil {
						call := &Call{SQL: sql, Protocol: ExtendedProtocol, refuse: refuse}
						if _, err := s.intercept(call, nil, raw); err != nil {
							return err
						}
						continue
					}
				}
				if pi := s.portals[string(name)]; pi != nil {
					var maxRows uint32
					if n := int32(binary.BigEndian.Uint32(rest)); n > 0 {
						maxRows = uint32(n)
					}
					if err := s.interceptExecute(pi, raw, maxRows); err != nil {
						return err
					}
					continue
				}
			}
			s.p.passed.Add(1)
			s.q.push1(entry{kind: kExecute, seq: s.nextCopyWin()})
		case 'C':
			if len(body) < 2 {
				s.q.push1(entry{kind: kClose}) // Postgres refuses it
				break
			}
			if name, _, ok := cstringBytes(body[1:]); ok {
				if body[0] == 'S' {
					if st := s.stmts[string(name)]; st != nil && (st.class == Intercept || st.uncertain) {
						// Postgres skips a Close after an error earlier in
						// the batch, and the statement then stays: its
						// first Execute asks upstream (see trackParse).
						s.stmts[string(name)] = &stmtInfo{sql: st.sql, class: st.class, paramOIDs: st.paramOIDs, uncertain: true}
					} else {
						delete(s.stmts, string(name))
					}
				} else {
					delete(s.portals, string(name))
					delete(s.cursorOps, string(name))
					delete(s.namesOps, string(name))
				}
			}
			s.q.push1(entry{kind: kClose})
		case 'S':
			// Portals may end here with the transaction (not in a
			// transaction block); intercept checks when it knows.
			s.syncs++
			s.q.push1(entry{kind: kSync, seq: s.copyWin, afterData: s.copyWinData && s.copyWin != 0})
		case 'F':
			s.extOpen = false
			s.q.push1(entry{kind: kQuery})
		case 'd', 'c', 'f':
			// COPY data gets no reply of its own (nor outside COPY,
			// where Postgres ignores it).
			if typ == 'd' {
				s.copyWinData = true
			}
		case 'H':
			// Flush gets no reply of its own.
		case 'X':
			// Upstream closes after Terminate: the server loop must take
			// that EOF for the end it is, not a lost connection.
			s.terminated.Store(true)
			s.uw.write(raw)
			s.uw.flush()
			return nil
		default:
			return protocolErrorf("invalid frontend message type %d", typ)
		}
		if err := s.uw.write(raw); err != nil {
			return &upstreamError{err}
		}
		if s.q.full.Load() {
			if err := s.flushUpstream(); err != nil {
				return err
			}
			s.q.waitRoom(s.done, s.lost)
		}
	}
}

// copyEnd notes, once upstream ends a COPY FROM STDIN it started, that
// later Syncs are answered again.
func (s *session) copyEnd(failed bool) {
	if s.copyingIn {
		s.copyingIn = false
		s.optPending = s.q.copyEnd(failed)
	}
}

// nextCopyWin numbers a Query or Execute going upstream as it is, and
// opens its copy-in window (see copyWin).
func (s *session) nextCopyWin() uint64 {
	s.execSeq++
	s.copyWin = s.execSeq
	s.copyWinData = false
	return s.execSeq
}

// queryText returns a Query's text, if Postgres can read it: one
// NUL-terminated string, and nothing after it. (Postgres refuses a Query
// with an embedded NUL, whose text the classifier must not see: it would
// take the text up to the NUL for the statement.)
func queryText(body []byte) ([]byte, bool) {
	if len(body) == 0 || bytes.IndexByte(body, 0) != len(body)-1 {
		return nil, false
	}
	return body[:len(body)-1], true
}

// trackParse records the class of a prepared statement; only intercepted
// statements keep their text and parameter types. It returns the record of
// an uncertain statement, for the server loop to tell when Postgres
// accepted it.
func (s *session) trackParse(body []byte) (*stmtInfo, error) {
	name, rest, ok := cstringBytes(body)
	if !ok {
		return nil, protocolErrorf("invalid Parse message")
	}
	if s.p.classify == nil {
		return nil, nil
	}
	sql, rest, ok := cstringBytes(rest)
	if !ok {
		return nil, protocolErrorf("invalid Parse message")
	}
	class := s.p.classify.get(sql)
	// Postgres refuses a Parse under a name in use, and then the statement
	// that runs under that name is the old one. The proxy's records can't
	// tell whether a name is in use: SQL PREPARE makes names (also inside
	// a DO block or a function, beyond any reading of the text), and SQL
	// DEALLOCATE drops them (or fails to). So when either statement may
	// be intercepted, the first Execute asks upstream, unless Postgres
	// answered this Parse with ParseComplete by then, as it has in the
	// common case of one batch (the interception's barrier waits for it).
	old := s.stmts[string(name)]
	var uncertain bool
	if len(name) > 0 {
		uncertain = class == Intercept || old != nil && (old.class == Intercept || old.uncertain)
	} else {
		// The unnamed statement is replaced by every Parse that Postgres
		// does not skip (after an error earlier in the batch): the first
		// Execute checks when either may be intercepted.
		uncertain = class == Intercept || old != nil && old.mayIntercept()
	}
	cursorOp := isCursorOp(sql)
	namesOp := class != Intercept && isNamesOp(sql)
	if class != Intercept && !uncertain && !cursorOp && !namesOp {
		if len(s.stmts) > 0 || len(name) > 0 {
			s.stmts[string(name)] = passthroughStmt
		}
		return nil, nil
	}
	st := &stmtInfo{sql: string(sql), class: class, uncertain: uncertain, cursorOp: cursorOp, namesOp: namesOp}
	if uncertain && len(name) == 0 {
		// Link past Parses Postgres skipped, so that a client whose
		// batches keep failing before their write doesn't chain them all.
		for old != nil && old.skipped.Load() {
			old = old.prev
		}
		if old != nil && (old.parsed.Load() || old.refused.Load()) {
			// old is in place, or Postgres refused it (and dropped the
			// unnamed statement): what it replaced no longer matters, and
			// a client retrying a refused write must not chain them all.
			old.prev = nil
		}
		st.prev = old
	}
	if len(rest) >= 2 {
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if len(rest) < 4*n {
			return nil, protocolErrorf("invalid Parse message")
		}
		st.paramOIDs = make([]uint32, n)
		for i := range n {
			st.paramOIDs[i] = binary.BigEndian.Uint32(rest[4*i:])
		}
	}
	s.stmts[string(name)] = st
	if !uncertain {
		return nil, nil
	}
	return st, nil
}

// trackBind remembers portals of intercepted statements with their
// parameters; binding anything else only forgets a portal of the same name.
func (s *session) trackBind(body []byte) error {
	portal, rest, ok := cstringBytes(body)
	if !ok {
		return protocolErrorf("invalid Bind message")
	}
	if s.p.classify == nil {
		return nil
	}
	stmtName, _, ok := cstringBytes(rest)
	if !ok {
		delete(s.portals, string(portal))
		delete(s.cursorOps, string(portal))
		delete(s.namesOps, string(portal))
		return protocolErrorf("invalid Bind message")
	}
	st := s.stmts[string(stmtName)]
	if st != nil && st.cursorOp {
		if s.cursorOps == nil {
			s.cursorOps = make(map[string]string)
		}
		s.cursorOps[string(portal)] = st.sql
	} else if len(s.cursorOps) > 0 {
		delete(s.cursorOps, string(portal))
	}
	if st != nil && st.namesOp && !st.uncertain {
		if s.namesOps == nil {
			s.namesOps = make(map[string]string)
		}
		s.namesOps[string(portal)] = st.sql
	} else if len(s.namesOps) > 0 {
		delete(s.namesOps, string(portal))
	}
	if st == nil || (st.class != Intercept && !st.uncertain) {
		if len(s.portals) > 0 {
			delete(s.portals, string(portal))
		}
		return nil
	}
	// Decode keeps references into body, which is the reader's buffer:
	// later messages overwrite it, and the portal may run much later.
	var b pgproto3.Bind
	if err := b.Decode(append([]byte(nil), body...)); err != nil {
		// Postgres refuses it: no portal of that name is left running.
		delete(s.portals, string(portal))
		delete(s.cursorOps, string(portal))
		return protocolErrorf("invalid Bind message: %v", err)
	}
	if s.portals == nil {
		s.portals = make(map[string]*portalInfo)
	}
	s.portals[string(portal)] = &portalInfo{
		name:          string(portal),
		stmtName:      string(stmtName),
		stmt:          st,
		params:        b.Parameters,
		paramFormats:  b.ParameterFormatCodes,
		resultFormats: b.ResultFormatCodes,
		syncs:         s.syncs,
	}
	return nil
}

// serverLoop forwards upstream's replies to the client, popping the reply
// queue as requests are answered.
func (s *session) serverLoop() (err error) {
	defer func() {
		// Upstream's end (or the client's connection failing, which
		// ends the session the same way), met before endFromServer,
		// which may run later (see sessionHarness).
		if v := s.meetLoss(); v != nil {
			s.violationDue = v
		}
	}()
	for {
		typ, raw, err := s.ur.nextPiece()
		if err != nil {
			return err
		}
		if s.ur.rest > 0 {
			err = s.passPieces(typ, raw)
		} else {
			err = s.handleReply(typ, raw)
		}
		if err != nil {
			return err
		}
	}
}

// passPieces passes a long DataRow or CopyData on to the client as it
// arrives, first its start (read by nextPiece), then the rest. Nothing
// else may reach the client in between (see lastWords), so the mark stays
// when an error cuts the message off: the session then ends.
func (s *session) passPieces(typ byte, first []byte) error {
	s.cwMu.Lock()
	s.cw.partial = true
	s.cwMu.Unlock()
	if err := s.handleReply(typ, first); err != nil {
		return err
	}
	for s.ur.rest > 0 {
		piece, err := s.ur.part()
		if err != nil {
			return err
		}
		if err := s.writeClient(piece); err != nil {
			return err
		}
	}
	s.cwMu.Lock()
	s.cw.partial = false
	s.cwMu.Unlock()
	return nil
}

// handleReply processes one upstream message in the server loop.
func (s *session) handleReply(typ byte, raw []byte) error {
	if s.optPending {
		switch typ {
		case 'Z', 'N', 'A', 'S': // may come before the reply that tells
		default:
			s.optPending = false
			s.q.resolveOpt(typ)
		}
	}
	switch typ {
	case '1', '2', 'n': // ParseComplete, BindComplete, NoData
		if e, ok := s.q.peek(); ok && typ == '1' && e.kind == kParse && e.stmt != nil {
			e.stmt.parsed.Store(true)
		}
		s.q.pop()
	case '3': // CloseComplete; the interception barrier is one too
		if e, ok := s.q.peek(); ok && e.kind == kIntercept {
			return s.serveInterception(e.ic)
		} else if ok && e.kind == kClose && e.swallow {
			s.q.pop() // the proxy's own (see intercept)
			return nil
		}
		s.q.pop()
	case 't': // ParameterDescription
		if e, ok := s.q.peek(); ok && e.kind == kDescribeStmt && e.stmt != nil {
			var pd pgproto3.ParameterDescription
			if pd.Decode(raw[5:]) == nil {
				e.stmt.paramOIDs = pd.ParameterOIDs
			}
		}
	case 'T': // RowDescription: ends a Describe, or starts a simple query's result
		if e, ok := s.q.peek(); ok && (e.kind == kDescribeStmt || e.kind == kDescribePortal) {
			s.q.pop()
		}
	case 'G': // CopyInResponse: the Syncs of its copy-in window get no reply
		s.q.copyIn()
		s.copyingIn = true
	case 'C', 'I', 's': // CommandComplete, EmptyQueryResponse, PortalSuspended
		s.copyEnd(false)
		if typ == 'C' && len(raw) >= 10 {
			// Track the transaction status before the ReadyForQuery, for an
			// interception later in the same pipeline.
			switch tag := raw[5:]; {
			case string(tag[:5]) == "BEGIN" || string(tag[:5]) == "START":
				s.txStatus.Store('T')
			case string(tag) == "COMMIT\x00":
				s.txStatus.Store('I')
				s.lastingN = 0 // committed: a later error no longer rolls them back
			case string(tag) == "ROLLBACK\x00" && s.txStatus.Load() == 'E':
				// The failed transaction is over (ROLLBACK, or COMMIT
				// answered so), or back at a savepoint: which, the tag
				// does not tell. In a block is the side that keeps the
				// interceptor's warnings.
				s.txStatus.Store('T')
			}
		}
		if e, ok := s.q.peek(); ok && e.kind == kExecute {
			s.q.pop()
		}
	case 'E':
		fatal := isFatal(raw)
		if fatal {
			if v := s.meetLoss(); v != nil {
				// Upstream ended the session (a shutdown) after it had
				// answered all the client sent before a protocol
				// violation: Postgres would have refused that message
				// first, and ended the session with that FATAL.
				s.violationDue = v
				return nil
			}
		}
		s.copyEnd(true)
		if s.lastingN > 0 {
			if err := s.sendLasting(); err != nil {
				return err
			}
		}
		if s.txStatus.Load() == 'T' {
			s.txStatus.Store('E')
		}
		if e, ok := s.q.peek(); ok && e.kind == kParse && e.stmt != nil {
			e.stmt.refused.Store(true)
		}
		if e, ok := s.q.peek(); ok && e.kind.extended() {
			// The error goes out first: an interception skipped here
			// (answerForwarded's barrier) may close the session at once.
			var err error
			if fatal {
				err = s.passFatal(raw)
			} else {
				err = s.writeClient(raw)
			}
			if err != nil {
				return err
			}
			s.q.abortBatch()
			return nil
		}
		if fatal {
			return s.passFatal(raw)
		}
	case 'Z':
		if len(raw) == 6 {
			s.txStatus.Store(uint32(raw[5]))
		}
		s.lastingN = 0
		if e, ok := s.q.peek(); ok && e.kind == kSync && e.swallow {
			s.q.pop()
			return nil
		}
		s.q.popThroughSync()
		if err := s.writeClient(raw); err != nil {
			return err
		}
		if s.draining.Load() && raw[5] == 'I' && s.q.len() == 0 {
			s.flushClient()
			s.closeIdle()
		}
		return nil
	}
	return s.writeClient(raw)
}

// isFatal reports whether a raw ErrorResponse has severity FATAL or PANIC.
// S, which Postgres sends first, is in the session's lc_messages (ВАЖНО
// in Russian); V, right after it since 9.6, never is.
func isFatal(raw []byte) bool {
	b := raw[5:]
	var sev []byte
	for len(b) > 1 && b[0] != 0 {
		f := b[0]
		v, rest, ok := cstringBytes(b[1:])
		if !ok {
			break
		}
		if f == 'V' {
			sev = v
			break
		}
		if f == 'S' {
			sev = v
		}
		b = rest
	}
	return string(sev) == "FATAL" || string(sev) == "PANIC"
}

// noteSQLStatements follows what sql, a simple Query's text (one or more
// statements) or an extended-protocol statement being executed, does to
// the session's records of prepared statements. DEALLOCATE [PREPARE]
// name | ALL and DISCARD ALL drop the records of the pass-through
// statements they name: drivers that evict from a statement cache with SQL
// (ActiveRecord, mini_sql) name each new statement with a counter, so the
// records of a long-lived session would otherwise grow for ever while
// Postgres frees the statements. Whether the statement succeeds is not
// known here (it may be skipped, or fail in an aborted transaction); that
// costs nothing, as a pass-through record and none lead to the same
// decisions (see trackParse). Records of intercepted statements and of
// FETCH/MOVE statements are kept: they are what interception needs.
func (s *session) noteSQLStatements(sql []byte) {
	for len(s.stmts) > 0 {
		stmt, rest, more := nextStatement(sql)
		s.noteSQLStatement(stmt)
		if !more {
			return
		}
		sql = rest
	}
}

func (s *session) noteSQLStatement(sql []byte) {
	rest, ok := sqlKeyword(sql, "deallocate")
	if !ok {
		if rest, ok = sqlKeyword(sql, "discard"); !ok {
			return
		}
		if rest, ok = sqlKeyword(rest, "all"); ok && sqlEnd(rest) {
			s.forgetPassthrough("", true)
		}
		return
	}
	if r, ok := sqlKeyword(rest, "prepare"); ok {
		rest = r
	}
	if r, ok := sqlKeyword(rest, "all"); ok && sqlEnd(r) {
		s.forgetPassthrough("", true)
		return
	}
	if name, r, ok := sqlIdentifier(rest); ok && sqlEnd(r) {
		s.forgetPassthrough(name, false)
	}
}

// isNamesOp reports whether sql, a Parse's text, is a DEALLOCATE or a
// DISCARD, which Execute follows (see noteSQLStatements).
func isNamesOp(sql []byte) bool {
	sql = trimSpace(sql)
	if len(sql) == 0 || sql[0]|0x20 != 'd' {
		return false // the common case, without the keyword compares
	}
	if _, ok := sqlKeyword(sql, "deallocate"); ok {
		return true
	}
	_, ok := sqlKeyword(sql, "discard")
	return ok
}

// forgettable: a record that a DEALLOCATE may drop (see noteSQLStatements).
func forgettable(st *stmtInfo) bool {
	return st == passthroughStmt || st.namesOp && !st.uncertain
}

func (s *session) forgetPassthrough(name string, all bool) {
	if !all {
		if st := s.stmts[name]; st != nil && forgettable(st) {
			delete(s.stmts, name)
		}
		return
	}
	for k, st := range s.stmts {
		if forgettable(st) {
			delete(s.stmts, k)
		}
	}
}

// nextStatement splits the first statement off a simple Query's text at
// the first semicolon outside string literals, quoted identifiers,
// dollar quotes and comments, as Postgres's lexer does (with
// standard_conforming_strings on, its default: a split the other way only
// misses a DEALLOCATE, which costs a record). more reports whether a
// semicolon was found.
func nextStatement(sql []byte) (stmt, rest []byte, more bool) {
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ';':
			return sql[:i], sql[i+1:], true
		case c == '\'':
			i = skipQuoted(sql, i+1, '\'', false)
		case c == '"':
			i = skipQuoted(sql, i+1, '"', false)
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-', c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i = len(sql) - len(trimSpace(sql[i:]))
		case c == '$':
			i = skipDollar(sql, i)
		case identChar(c):
			// A whole word, so that a $ inside it is not a dollar quote.
			j := i + 1
			for j < len(sql) && identChar(sql[j]) {
				j++
			}
			if j == i+1 && c|0x20 == 'e' && j < len(sql) && sql[j] == '\'' {
				j = skipQuoted(sql, j+1, '\'', true)
			}
			i = j
		default:
			i++
		}
	}
	return sql, nil, false
}

// skipQuoted returns the index just past the closing quote q of a literal
// whose body starts at i (a doubled quote stands for one; with backslash,
// a backslash escapes the next byte), or len(b) if it is not closed.
func skipQuoted(b []byte, i int, q byte, backslash bool) int {
	for i < len(b) {
		switch b[i] {
		case '\\':
			if backslash {
				i += 2
				continue
			}
		case q:
			if i+1 < len(b) && b[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return len(b)
}

// skipDollar returns the index past the dollar-quoted string starting at
// b[i] == '$' ($tag$ … $tag$), or i+1 if it starts none ($1, a lone $).
func skipDollar(b []byte, i int) int {
	j := i + 1
	if j < len(b) && b[j] >= '0' && b[j] <= '9' {
		return j
	}
	for j < len(b) && b[j] != '$' && identChar(b[j]) {
		j++
	}
	if j >= len(b) || b[j] != '$' {
		return i + 1
	}
	tag := b[i : j+1]
	end := bytes.Index(b[j+1:], tag)
	if end < 0 {
		return len(b)
	}
	return j + 1 + end + len(tag)
}

// trimSpace drops the white space and comments at the start of b, as
// Postgres' lexer skips them between tokens: "--" to the end of the line,
// and "/* */", which nest. What follows an unterminated comment is nothing
// (Postgres refuses the statement).
func trimSpace(b []byte) []byte {
	for {
		b = bytes.TrimLeft(b, " \t\r\n\f\v")
		switch {
		case len(b) >= 2 && b[0] == '-' && b[1] == '-':
			i := bytes.IndexAny(b, "\r\n")
			if i < 0 {
				return nil
			}
			b = b[i:]
		case len(b) >= 2 && b[0] == '/' && b[1] == '*':
			depth, i := 1, 2
			for depth > 0 {
				if i+1 >= len(b) {
					return nil
				}
				switch {
				case b[i] == '/' && b[i+1] == '*':
					depth, i = depth+1, i+2
				case b[i] == '*' && b[i+1] == '/':
					depth, i = depth-1, i+2
				default:
					i++
				}
			}
			b = b[i:]
		default:
			return b
		}
	}
}

// sqlKeyword reports whether b starts (after white space) with the keyword
// w (lower case), and returns what follows it.
func sqlKeyword(b []byte, w string) ([]byte, bool) {
	b = trimSpace(b)
	if len(b) < len(w) || !bytes.EqualFold(b[:len(w)], []byte(w)) || len(b) > len(w) && identChar(b[len(w)]) {
		return nil, false
	}
	return b[len(w):], true
}

// sqlEnd reports whether only white space and one optional semicolon remain.
func sqlEnd(b []byte) bool {
	b = trimSpace(b)
	if len(b) > 0 && b[0] == ';' {
		b = trimSpace(b[1:])
	}
	return len(b) == 0
}

func identChar(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// sqlIdentifier reads the identifier at the start of b (after white
// space) as Postgres names it: a quoted one as it is, an unquoted one in
// ASCII lower case. Names Postgres would truncate (63 bytes) are not read.
func sqlIdentifier(b []byte) (string, []byte, bool) {
	b = trimSpace(b)
	if len(b) == 0 {
		return "", nil, false
	}
	var name []byte
	if b[0] == '"' {
		for i := 1; i < len(b); i++ {
			if b[i] != '"' {
				name = append(name, b[i])
				continue
			}
			if i+1 < len(b) && b[i+1] == '"' {
				name = append(name, '"')
				i++
				continue
			}
			if len(name) == 0 || len(name) > 63 {
				return "", nil, false
			}
			return string(name), b[i+1:], true
		}
		return "", nil, false
	}
	if b[0] == '$' || b[0] >= '0' && b[0] <= '9' {
		return "", nil, false
	}
	i := 0
	for i < len(b) && identChar(b[i]) {
		i++
	}
	if i == 0 || i > 63 {
		return "", nil, false
	}
	name = make([]byte, i)
	for j, c := range b[:i] {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A' // ASCII only, as Postgres folds identifiers in UTF-8
		}
		name[j] = c
	}
	return string(name), b[i:], true
}
