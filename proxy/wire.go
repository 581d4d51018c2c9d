package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Message size limits, on the length field (which counts itself), as
// Postgres applies them: up to MaxAllocSize-1 for the messages that can
// carry data (Query, Parse, Bind, CopyData, FunctionCall), 10000 for the
// others, 65535 for an authentication response (PG_MAX_AUTH_TOKEN_LENGTH).
// A client sees the same limits through the proxy as directly.
const (
	maxLargeMessage = 1<<30 - 2
	maxSmallMessage = 10000
	// maxStartupMessage bounds everything a client sends before it is
	// authenticated, so an anonymous peer cannot make the proxy allocate much.
	// It is Postgres's MAX_STARTUP_PACKET_LENGTH (10000), which counts the
	// packet without its length word: a packet of 10004 bytes in all
	// (many options) starts a session directly, and so must it here.
	maxStartupMessage = 10000 + 4
	maxAuthMessage    = 65535
	// maxUpstreamMessage bounds what the proxy accepts from Postgres.
	maxUpstreamMessage = 1<<30 + 3

	readBufSize = 32 << 10
	// flushThreshold bounds how much the proxy buffers before writing even
	// though the reader is not about to block (large result sets stream).
	flushThreshold = 64 << 10
	// streamMin: a DataRow or CopyData from upstream longer than this
	// passes on to the client in pieces as it arrives (msgReader.nextPiece),
	// so that a session holds a read buffer, not the whole message (up to
	// 1 GB: a row of one large value), while its client reads slowly or
	// not at all.
	streamMin = 8 * readBufSize
)

// errMessageTooLarge and errMalformed are protocol violations by the peer.
var (
	errMessageTooLarge = errors.New("message too large")
	errMalformed       = errors.New("malformed message")
	errMessageType     = errors.New("invalid message type")
)

// msgReader frames Postgres messages (type byte + int32 length + body) out of
// a byte stream without decoding them, so that the proxy can forward the
// bytes it received as they are.
//
// A message returned by next stays valid until the following call to next.
type msgReader struct {
	rd   io.Reader
	buf  []byte
	r, w int
	// onBlock runs before a read that may block (the buffer holds no complete
	// message): the proxy flushes what it has queued for the other side, so
	// that writes are batched per round trip rather than per message.
	onBlock func() error
	// limit returns the maximum length (the length field's value) for a
	// message type, or -1 for a type that is not accepted at all.
	limit func(typ byte) int
	// rest counts the bytes of the message nextPiece returned the start of
	// that are still to come (part returns them).
	rest int
}

func newMsgReader(rd io.Reader) *msgReader {
	return &msgReader{rd: rd, buf: make([]byte, readBufSize)}
}

// next returns the next message: its type, and the raw bytes including the
// 5-byte header.
func (mr *msgReader) next() (byte, []byte, error) { return mr.next1(false) }

// nextPiece is next, except that of a DataRow or CopyData longer than
// streamMin that has not arrived whole it returns only what has (the
// header at least), leaving rest > 0: part returns the rest. Only for a
// reader of messages it passes on untouched.
func (mr *msgReader) nextPiece() (byte, []byte, error) { return mr.next1(true) }

// part returns the next piece of the message nextPiece returned the start
// of, as it arrives; call it while rest > 0. A piece stays valid until
// the following call.
func (mr *msgReader) part() ([]byte, error) {
	if mr.r == mr.w {
		if err := mr.ensure(1); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the end cut the message off
			}
			return nil, err
		}
	}
	k := min(mr.w-mr.r, mr.rest)
	raw := mr.buf[mr.r : mr.r+k]
	mr.r += k
	mr.rest -= k
	return raw, nil
}

func (mr *msgReader) next1(stream bool) (byte, []byte, error) {
	if mr.limit != nil && mr.w-mr.r < 5 {
		// Like Postgres, refuse a bad type byte at once, not after waiting
		// for a length that may never come.
		if err := mr.ensure(1); err != nil {
			return 0, nil, err
		}
		if typ := mr.buf[mr.r]; mr.limit(typ) < 0 {
			return typ, nil, fmt.Errorf("%w %d", errMessageType, typ)
		}
	}
	if err := mr.ensure(5); err != nil {
		return 0, nil, err
	}
	typ := mr.buf[mr.r]
	max := maxUpstreamMessage
	if mr.limit != nil {
		// The type before the length, as Postgres reads them: a bad type
		// with a bad length is refused for its type.
		max = mr.limit(typ)
		if max < 0 {
			return typ, nil, fmt.Errorf("%w %d", errMessageType, typ)
		}
	}
	n := int(int32(binary.BigEndian.Uint32(mr.buf[mr.r+1:])))
	if n < 4 {
		return typ, nil, fmt.Errorf("%w: type %q with length %d", errMalformed, typ, n)
	}
	if n > max {
		return typ, nil, fmt.Errorf("%w: type %q with length %d (limit %d)", errMessageTooLarge, typ, n, max)
	}
	if stream && n > streamMin && (typ == 'D' || typ == 'd') && mr.w-mr.r < 1+n {
		raw := mr.buf[mr.r:mr.w]
		mr.rest = 1 + n - len(raw)
		mr.r = mr.w
		return typ, raw, nil
	}
	if err := mr.ensure(1 + n); err != nil {
		return 0, nil, err
	}
	raw := mr.buf[mr.r : mr.r+1+n]
	mr.r += 1 + n
	return typ, raw, nil
}

// readStartup reads a startup-phase packet (int32 length, no type byte).
func (mr *msgReader) readStartup() ([]byte, error) {
	if err := mr.ensure(4); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(mr.buf[mr.r:])))
	if n < 8 || n > maxStartupMessage {
		return nil, fmt.Errorf("%w: startup packet length %d", errMalformed, n)
	}
	if err := mr.ensure(n); err != nil {
		return nil, err
	}
	raw := mr.buf[mr.r : mr.r+n]
	mr.r += n
	return raw, nil
}

// ensure makes at least n unread bytes available in buf.
func (mr *msgReader) ensure(n int) error {
	for mr.w-mr.r < n {
		if mr.r > 0 && (mr.r == mr.w || len(mr.buf)-mr.r < n) {
			// Compact, and give back a buffer grown for one large message.
			if mr.r == mr.w && len(mr.buf) > 4*readBufSize && n <= readBufSize {
				mr.buf = make([]byte, readBufSize)
			} else {
				copy(mr.buf, mr.buf[mr.r:mr.w])
			}
			mr.w -= mr.r
			mr.r = 0
		}
		if mr.w == len(mr.buf) {
			// Grow step by step as data arrives, not to the announced
			// length at once: a peer announcing 1 GB and sending nothing
			// must not make the proxy allocate 1 GB.
			nb := make([]byte, min(n, 2*len(mr.buf)))
			copy(nb, mr.buf[mr.r:mr.w])
			mr.w -= mr.r
			mr.r = 0
			mr.buf = nb
		}
		if mr.onBlock != nil {
			if err := mr.onBlock(); err != nil {
				return err
			}
		}
		k, err := mr.rd.Read(mr.buf[mr.w:])
		mr.w += k
		if err != nil {
			if mr.w-mr.r >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && mr.w > mr.r {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// msgWriter batches outgoing messages.
type msgWriter struct {
	conn net.Conn
	buf  []byte
	// partial: the last write was the start of a message whose rest is
	// still to come (a piece of one passed on as it arrives): nothing else
	// may go in between.
	partial bool
	// err is the first write error on conn. It sticks: a failed write may
	// have sent part of a message, and a flush after it would otherwise
	// find the buffer empty (dropped) and report success, or frame the
	// next message onto the torn one. Callers may thus skip checking a
	// write when they check the flush that follows.
	err error
}

// setConn points the writer at a new connection (TLS upgrade, the next
// upstream host), forgetting the old one's error.
func (mw *msgWriter) setConn(c net.Conn) {
	mw.conn, mw.err = c, nil
}

func (mw *msgWriter) write(raw []byte) error {
	if mw.err != nil {
		return mw.err
	}
	if len(raw) >= flushThreshold {
		// A large message (a big row, a COPY chunk) goes out as it is,
		// without a copy into the buffer.
		if err := mw.flush(); err != nil {
			return err
		}
		_, mw.err = mw.conn.Write(raw)
		return mw.err
	}
	mw.buf = append(mw.buf, raw...)
	if len(mw.buf) >= flushThreshold {
		return mw.flush()
	}
	return nil
}

func (mw *msgWriter) send(msg interface {
	Encode([]byte) ([]byte, error)
}) error {
	if mw.err != nil {
		return mw.err
	}
	b, err := msg.Encode(mw.buf)
	if err != nil {
		return err
	}
	mw.buf = b
	if len(mw.buf) >= flushThreshold {
		return mw.flush()
	}
	return nil
}

func (mw *msgWriter) flush() error {
	if mw.err != nil {
		return mw.err
	}
	if len(mw.buf) == 0 {
		return nil
	}
	_, mw.err = mw.conn.Write(mw.buf)
	if cap(mw.buf) > 4*flushThreshold {
		mw.buf = nil
	} else {
		mw.buf = mw.buf[:0]
	}
	return mw.err
}

// cstringBytes splits a NUL-terminated string off the front of b, without
// a copy.
func cstringBytes(b []byte) ([]byte, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// pgError builds an ErrorResponse.
func pgError(severity, code, message string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: message}
}

func encode(msg interface {
	Encode([]byte) ([]byte, error)
}) []byte {
	b, _ := msg.Encode(nil)
	return b
}
