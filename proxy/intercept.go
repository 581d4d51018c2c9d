package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// Class is what the proxy does with a statement.
type Class uint8

const (
	// Passthrough statements go upstream untouched.
	Passthrough Class = iota
	// Intercept statements are answered by the Interceptor at execution
	// (simple Query, or Execute in the extended protocol). Parse, Bind and
	// Describe still go upstream, so Postgres checks the statement and
	// describes its result shape (an INSERT … RETURNING is described without
	// being run).
	Intercept
)

// Protocol is the query protocol a statement arrived in.
type Protocol uint8

const (
	SimpleProtocol Protocol = iota + 1
	ExtendedProtocol
)

// Interceptor answers intercepted statements in place of upstream.
//
// Intercept runs on the session's own goroutine, after every earlier request
// of the session has been answered, so the client sees replies in order. It
// may run queries on the client's upstream connection (call.Upstream()) and
// must end the reply with call.Send of a CommandComplete (or
// EmptyQueryResponse) or an ErrorResponse; returning an error instead makes
// the proxy send one. After a failure the proxy puts the upstream session in
// the failed state Postgres would be in: a transaction block is aborted, and
// in the extended protocol the rest of the batch up to Sync is skipped.
//
// ctx is cancelled when the client sends a CancelRequest or the session
// closes (shutdown). A client that closes its socket meanwhile is noticed
// only after the interception, as Postgres notices it only when it next
// reads or writes: the statement runs to its end.
type Interceptor interface {
	Intercept(ctx context.Context, call *Call) error
}

// InterceptorFunc adapts a function to Interceptor.
type InterceptorFunc func(ctx context.Context, call *Call) error

func (f InterceptorFunc) Intercept(ctx context.Context, call *Call) error { return f(ctx, call) }

// Call is one intercepted statement execution.
type Call struct {
	SQL      string
	Protocol Protocol
	// Params are the bound values (extended protocol; nil for simple
	// queries), nil meaning NULL. ParamFormats and ParamOIDs have one entry
	// per parameter (0 text, 1 binary; the type Postgres inferred).
	Params       [][]byte
	ParamFormats []int16
	ParamOIDs    []uint32
	// ResultFormats is Bind's result format list as sent: empty (all text),
	// one entry (all columns), or one per column. See ResultFormat.
	ResultFormats []int16
	// TxStatus is the session's transaction status before the statement:
	// 'I' idle, 'T' in a transaction block, 'E' in a failed one.
	TxStatus       byte
	User, Database string

	s       *session
	ic      *interception
	up      *Upstream
	done    bool
	failed  bool
	sent    bool // a reply message other than a notice went out
	forward bool
	relayed bool
	// pi is the executed portal (extended protocol); maxRows is Execute's
	// row limit (0: none), rows the DataRows sent so far.
	pi            *portalInfo
	maxRows, rows uint32
	// refuse, when set, is the proxy's own answer: the interceptor is not
	// called.
	refuse *pgproto3.ErrorResponse
	// lasting: see Lasting.
	lasting string
}

// Lasting tells the proxy, before the reply's CommandComplete, that the
// statement changed something outside Postgres that no rollback undoes
// (a write to Stripe), described by what (its command tag and table).
//
// A pipeline outside a transaction block (Bind and Execute of several
// statements, then one Sync: a JDBC batch, a pgx Batch) runs in one
// implicit transaction, which an error in any statement rolls back, and
// drivers then report the whole pipeline as failed: a client would resend
// the writes that stay. So when an error follows such statements before the
// pipeline's Sync, the proxy sends a NOTICE (unless SetQuiet) just before
// it, naming them.
func (c *Call) Lasting(what string) { c.lasting = what }

// SetQuiet tells the proxy the session's client_min_messages as the
// interceptor found it: quiet when above NOTICE, so that Postgres would
// send no notices. The proxy's own notice follows the last one set.
func (c *Call) SetQuiet(quiet bool) { c.s.quiet = quiet }

// maxLasting bounds the statements a pipeline notice names.
const maxLasting = 10

// sendLasting warns the client, before the error that aborts the current
// pipeline's implicit transaction, of the intercepted writes in it that
// stay (see Call.Lasting), and forgets them.
func (s *session) sendLasting() error {
	n, what := s.lastingN, s.lasting
	s.lastingN = 0
	if s.quiet {
		return nil
	}
	msg := "1 earlier write to stripe.* in this pipeline went to Stripe and stays"
	if n > 1 {
		msg = strconv.Itoa(n) + " earlier writes to stripe.* in this pipeline went to Stripe and stay"
	}
	detail := strings.Join(what, "; ")
	if n > len(what) {
		detail += fmt.Sprintf("; and %d more", n-len(what))
	}
	return s.sendClient(&pgproto3.NoticeResponse{
		Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000",
		Message: msg + ": this error rolls back the pipeline's implicit transaction, not Stripe",
		Detail:  detail,
		Hint:    "Don't resend those writes; check the stripe.* tables for what exists.",
	})
}

// ResultFormat returns the format the client wants for result column i.
func (c *Call) ResultFormat(i int) int16 {
	switch len(c.ResultFormats) {
	case 0:
		return 0
	case 1:
		return c.ResultFormats[0]
	}
	if i < len(c.ResultFormats) {
		return c.ResultFormats[i]
	}
	return 0
}

// Upstream gives access to the client's own upstream connection: same role,
// search_path, settings and transaction.
func (c *Call) Upstream() *Upstream { return c.up }

// Done reports whether the reply has been completed.
func (c *Call) Done() bool { return c.done }

// Forward hands the statement back to the proxy, which sends the client's
// message upstream as it is, after the interceptor's own queries: its
// replies (a COPY's CopyInResponse and all) reach the client as if it had
// never been intercepted. It is for a statement that turns out not to be
// the interceptor's and that Upstream cannot run on the client's behalf (a
// multi-statement Query, COPY). Nothing but notices may have been sent.
func (c *Call) Forward() error {
	if c.done || c.sent {
		return errors.New("proxy: Forward after a reply was sent")
	}
	c.done, c.forward = true, true
	return nil
}

// PassedOn reports whether the statement went upstream as the client's
// own (Forward or Relay): it was not the interceptor's after all.
func (c *Call) PassedOn() bool { return c.forward || c.relayed }

// Relay runs the statement on the client's connection as it is (Upstream's
// QueryParams, with the client's parameters and formats) and sends the
// client its result. It is for a statement that turns out not to be the
// interceptor's and that Upstream can run; a Postgres error comes back as a
// *pgconn.PgError, which the proxy sends as Postgres did.
func (c *Call) Relay(ctx context.Context) error {
	c.relayed = true
	// The rows go to the client as they arrive, not after the whole
	// result (an UPDATE … RETURNING of a large table of the application's
	// own): the proxy then holds a row at a time, and a client that stops
	// reading holds up upstream, as it would directly. RowDescription
	// waits for the first row or the tag: for a write, Postgres sends
	// nothing before the statement has run to its end, so a statement
	// that fails sends the error alone, as directly.
	var rd *pgproto3.RowDescription
	described := false
	describe := func() error {
		if described || rd == nil {
			return nil
		}
		described = true
		return c.Send(rd)
	}
	return c.up.query(ctx, c.SQL, c.ParamOIDs, c.Params, c.ParamFormats, c.ResultFormats, func(typ byte, body []byte) error {
		switch typ {
		case 'T':
			rd = &pgproto3.RowDescription{}
			if err := rd.Decode(body); err != nil {
				return err
			}
			if len(rd.Fields) == 0 {
				rd = nil
			}
		case 'D':
			if err := describe(); err != nil {
				return err
			}
			var dr pgproto3.DataRow
			if err := dr.Decode(body); err != nil {
				return err
			}
			return c.Send(&dr)
		case 'C':
			if err := describe(); err != nil {
				return err
			}
			var cc pgproto3.CommandComplete
			if err := cc.Decode(body); err != nil {
				return err
			}
			return c.Send(&cc)
		}
		return nil
	})
}

// Send writes a reply message to the client: RowDescription (dropped in the
// extended protocol, where Describe answered it), DataRow, NoticeResponse,
// and finally CommandComplete, EmptyQueryResponse or ErrorResponse.
func (c *Call) Send(msg pgproto3.BackendMessage) error {
	if c.done {
		if _, ok := msg.(*pgproto3.NoticeResponse); !ok {
			return errors.New("proxy: the reply is already complete")
		}
	}
	switch m := msg.(type) {
	case *pgproto3.RowDescription:
		if c.Protocol == ExtendedProtocol {
			return nil
		}
		c.sent = true
	case *pgproto3.DataRow:
		c.sent = true
		if c.maxRows > 0 && c.rows == c.maxRows {
			// Postgres runs the statement to completion, but an Execute
			// returns at most max_rows rows: the rest wait for the next
			// Execute of the portal.
			c.pi.rest = append(c.pi.rest, encode(msg))
			return nil
		}
		c.rows++
	case *pgproto3.NoticeResponse:
	case *pgproto3.CommandComplete:
		c.done = true
		if c.lasting != "" && c.Protocol == ExtendedProtocol && c.TxStatus == 'I' {
			// In a transaction block the interceptor warns itself; a
			// simple Query is its own transaction. ReadyForQuery and
			// COMMIT only zero the count (the read path stays as it was):
			// the descriptions go here.
			if c.s.lastingN == 0 {
				c.s.lasting = c.s.lasting[:0]
			}
			if len(c.s.lasting) < maxLasting {
				c.s.lasting = append(c.s.lasting, c.lasting)
			}
			c.s.lastingN++
		}
		if c.pi != nil {
			c.pi.ran = true
			c.pi.tag = append([]byte(nil), m.CommandTag...)
			if c.maxRows > 0 && c.rows == c.maxRows {
				return c.s.sendClient(&pgproto3.PortalSuspended{})
			}
		}
	case *pgproto3.EmptyQueryResponse:
		c.done = true
	case *pgproto3.ErrorResponse:
		c.done, c.failed = true, true
		gone := c.ic != nil && c.ic.isGone()
		if gone {
			// The session ends with this error, as Postgres's own FATAL
			// would end it; as an ERROR, clients wait for ReadyForQuery
			// and report the EOF in its place. The server loop, waiting
			// for the interception to finish, sends no FATAL of its own.
			if sev := m.SeverityUnlocalized; sev == "ERROR" || sev == "" && m.Severity == "ERROR" {
				f := *m
				f.Severity, f.SeverityUnlocalized = "FATAL", "FATAL"
				m = &f
			}
			c.s.sawFatal = true
		}
		if c.s.lastingN > 0 {
			if err := c.s.sendLasting(); err != nil {
				return err
			}
		}
		if gone {
			// Unless a shutdown's FATAL went out first.
			_, err := c.s.lastWords(m, nil)
			return err
		}
	default:
		return fmt.Errorf("proxy: an interceptor cannot send %T", msg)
	}
	return c.s.sendClient(msg)
}

// Upstream runs queries for an interceptor on the client's upstream
// connection, with the extended protocol and proxy-private statement and
// portal names, so the client's unnamed statement and portal survive. It
// does not Sync: the queries belong to the client's current (possibly
// implicit) transaction.
type Upstream struct {
	s   *session
	ic  *interception
	err error // sticky: upstream skips everything after an error until Sync
	m   *pgtype.Map
	// cancelling is closed once the cancel this interception sent upstream
	// (its context ended while waiting on upstream) has been delivered.
	cancelling chan struct{}
}

// Result is a query's complete result; values are in the formats requested
// (text unless QueryParams asked otherwise), nil meaning NULL.
type Result struct {
	Fields     []pgproto3.FieldDescription
	Rows       [][][]byte
	CommandTag string
}

// ErrUpstreamFailed wraps every query after the first upstream error of an
// interception: Postgres ignores further requests until the batch ends.
var ErrUpstreamFailed = errors.New("proxy: an earlier upstream query of this statement failed")

const (
	privateStmt   = "pgstripe_proxy_stmt"
	privatePortal = "pgstripe_proxy_portal"
)

// Query runs sql with args sent in text format; a string argument is sent
// as an untyped literal (Postgres infers its type), nil as NULL, other values
// with their pgx type. Errors from Postgres are *pgconn.PgError.
func (u *Upstream) Query(ctx context.Context, sql string, args ...any) (*Result, error) {
	if u.m == nil {
		u.m = pgtype.NewMap()
	}
	oids := make([]uint32, len(args))
	params := make([][]byte, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case nil:
		case string:
			params[i] = []byte(v)
		case []byte:
			params[i] = v
			oids[i] = pgtype.ByteaOID
			buf, err := u.m.Encode(pgtype.ByteaOID, pgtype.TextFormatCode, v, nil)
			if err != nil {
				return nil, err
			}
			params[i] = buf
		default:
			t, ok := u.m.TypeForValue(a)
			if !ok {
				return nil, fmt.Errorf("proxy: cannot encode argument %d of type %T", i+1, a)
			}
			buf, err := u.m.Encode(t.OID, pgtype.TextFormatCode, a, nil)
			if err != nil {
				return nil, fmt.Errorf("proxy: encode argument %d: %w", i+1, err)
			}
			oids[i] = t.OID
			params[i] = buf
		}
	}
	return u.QueryParams(ctx, sql, oids, params, nil, nil)
}

// QueryParams runs sql with raw parameters, as Bind would send them.
func (u *Upstream) QueryParams(ctx context.Context, sql string, paramOIDs []uint32, params [][]byte, paramFormats, resultFormats []int16) (*Result, error) {
	return u.QueryParamsLimit(ctx, sql, paramOIDs, params, paramFormats, resultFormats, 0)
}

// ResultTooLargeError is QueryParamsLimit's error for a result whose rows
// would take more memory than its limit.
type ResultTooLargeError struct {
	Limit int64 // the limit, in bytes
}

func (e *ResultTooLargeError) Error() string {
	return fmt.Sprintf("proxy: the query's rows take more than %d bytes", e.Limit)
}

// RowBytes is the memory a row of a Result takes as QueryParamsLimit
// counts it: its DataRow message (whose bytes the values point into), the
// values' slice headers and the row's own.
func RowBytes(msgLen, values int) int64 { return int64(msgLen) + 24*int64(values) + 24 }

// QueryParamsLimit is QueryParams keeping at most limit bytes of rows
// (RowBytes; 0: no limit). Past the limit the rows are dropped as they
// arrive, a DataRow longer than what is left is skipped as it arrives,
// never read whole, and upstream is asked to cancel the query (a result
// can be endless: a WITH query over generate_series); the error is then a
// *ResultTooLargeError, and upstream, like after any error, skips the
// rest of the client's batch. When upstream gave no BackendKeyData (some
// poolers), no cancel can reach it: the proxy closes the upstream
// connection instead, and the session ends with the interceptor's reply,
// sent as FATAL (see Call.Send).
func (u *Upstream) QueryParamsLimit(ctx context.Context, sql string, paramOIDs []uint32, params [][]byte, paramFormats, resultFormats []int16, limit int64) (*Result, error) {
	res := &Result{}
	var held int64
	var dr pgproto3.DataRow // reused: Decode gives every row room for 32 values
	err := u.queryLimit(ctx, sql, paramOIDs, params, paramFormats, resultFormats, limit, func(typ byte, body []byte) error {
		switch typ {
		case 'T':
			var rd pgproto3.RowDescription
			if err := rd.Decode(body); err != nil {
				return err
			}
			res.Fields = rd.Fields
		case 'D':
			if err := dr.Decode(body); err != nil {
				return err
			}
			held += RowBytes(5+len(body), len(dr.Values))
			if limit > 0 && held > limit {
				res.Rows = nil
				return &ResultTooLargeError{Limit: limit}
			}
			res.Rows = append(res.Rows, append([][]byte(nil), dr.Values...))
			if limit > 0 {
				// What is left for the rest: the server loop skips a
				// longer row unread.
				u.ic.rowLimit.Store(max(limit-held, 1))
			}
		case 'C':
			var cc pgproto3.CommandComplete
			if err := cc.Decode(body); err != nil {
				return err
			}
			res.CommandTag = string(cc.CommandTag)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// query runs sql as QueryParams does, handing each RowDescription,
// DataRow and CommandComplete (type and body, valid during the call) to
// result as it arrives.
func (u *Upstream) query(ctx context.Context, sql string, paramOIDs []uint32, params [][]byte, paramFormats, resultFormats []int16, result func(typ byte, body []byte) error) error {
	return u.queryLimit(ctx, sql, paramOIDs, params, paramFormats, resultFormats, 0, result)
}

// queryLimit is query, with a limit (0: none) on the length of a DataRow
// that is read at all: a longer one comes to result as a
// *ResultTooLargeError. When result returns a *ResultTooLargeError, the
// rest of the result is read and dropped, upstream is asked to cancel the
// query, and that is the error returned.
func (u *Upstream) queryLimit(ctx context.Context, sql string, paramOIDs []uint32, params [][]byte, paramFormats, resultFormats []int16, limit int64, result func(typ byte, body []byte) error) error {
	if u.err != nil {
		return fmt.Errorf("%w: %w", ErrUpstreamFailed, u.err)
	}
	// Set before the query goes out, so before any of its replies: the
	// server loop reads them.
	u.ic.rowLimit.Store(limit)
	u.ic.inQuery.Store(true)
	defer func() {
		u.ic.inQuery.Store(false)
		u.ic.rowLimit.Store(0)
	}()
	// Ended to have receive cancel the query upstream, as it does when ctx
	// ends (and then reading on, so that the protocol stays in step).
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var tooLarge *ResultTooLargeError
	w := &u.s.uw
	for _, m := range []interface {
		Encode([]byte) ([]byte, error)
	}{
		&pgproto3.Close{ObjectType: 'S', Name: privateStmt},
		&pgproto3.Parse{Name: privateStmt, Query: sql, ParameterOIDs: paramOIDs},
		&pgproto3.Bind{DestinationPortal: privatePortal, PreparedStatement: privateStmt, ParameterFormatCodes: paramFormats, Parameters: params, ResultFormatCodes: resultFormats},
		&pgproto3.Describe{ObjectType: 'P', Name: privatePortal},
		&pgproto3.Execute{Portal: privatePortal},
		&pgproto3.Close{ObjectType: 'P', Name: privatePortal},
		&pgproto3.Close{ObjectType: 'S', Name: privateStmt},
		&pgproto3.Flush{},
	} {
		if err := w.send(m); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	for closes := 0; closes < 3; {
		raw, err := u.receive(ctx)
		if err != nil {
			if tooLarge != nil {
				return tooLarge // the interceptor's error, FATAL if upstream is gone
			}
			return err
		}
		body := raw[5:]
		switch raw[0] {
		case '3':
			closes++
		case '1', '2', 'n':
		case 'T', 'D', 'C':
			if tooLarge != nil {
				continue // dropped
			}
			var err error
			if raw[0] == 'D' && skippedRow(raw) {
				err = &ResultTooLargeError{Limit: limit}
			} else {
				err = result(raw[0], body)
			}
			if errors.As(err, &tooLarge) {
				if u.s.upstreamKey == nil {
					// No cancel can reach upstream (a pooler in between
					// that sent no BackendKeyData): an endless result
					// would be read and dropped until statement_timeout,
					// if any, with the client waiting. Closing the
					// connection ends the session instead: the
					// interceptor's reply goes out as FATAL (Call.Send),
					// and Postgres, failing to send the next rows, ends
					// the backend and rolls its transaction back.
					u.s.p.log.Info("closing upstream: an interceptor's query went past its limit, and upstream gave no cancel key",
						"remote", u.s.client.RemoteAddr().String(), "limit", limit)
					u.s.upstream.Close()
				}
				stop()
				continue
			}
			if err != nil {
				return err
			}
		case 'I':
		case 'E':
			var er pgproto3.ErrorResponse
			if err := er.Decode(body); err != nil {
				return err
			}
			u.err = PgError(&er)
			u.ic.upstreamFailed = true
			if tooLarge != nil {
				return tooLarge // most likely the cancel it asked for
			}
			return u.err
		default:
			return fmt.Errorf("proxy: unexpected upstream message %q in an interceptor query", raw[0])
		}
	}
	if tooLarge != nil {
		return tooLarge
	}
	return nil
}

// skippedRow reports whether raw is the header alone of a DataRow the
// server loop skipped (longer than the interception's rowLimit).
func skippedRow(raw []byte) bool {
	return len(raw) >= 5 && int(binary.BigEndian.Uint32(raw[1:5])) != len(raw)-1
}

// Prepare has Postgres parse and analyse sql without running it (a private
// statement, prepared, described and closed). It is how an interceptor gets
// the errors Postgres would have given for the client's own text, positions
// included. Errors from Postgres are *pgconn.PgError.
func (u *Upstream) Prepare(ctx context.Context, sql string) error {
	if u.err != nil {
		return fmt.Errorf("%w: %w", ErrUpstreamFailed, u.err)
	}
	_, _, err := u.describe(ctx, 'S', privateStmt, &pgproto3.Parse{Name: privateStmt, Query: sql})
	return err
}

// describeBound fetches the parameter types of the statement portal pi was
// bound from. A portal outlives its statement (a simple Query drops the
// unnamed one, unless Postgres skips that Query after an error; a name can
// be closed and prepared again), so unless a named statement still holds
// it, the proxy prepares the same text as privateStmt.
func (s *session) describeBound(ctx context.Context, up *Upstream, pi *portalInfo) ([]uint32, error) {
	if st, ok := s.stmts[pi.stmtName]; ok && st == pi.stmt && pi.stmtName != "" {
		oids, _, err := up.describe(ctx, 'S', pi.stmtName, nil)
		return oids, err
	}
	oids, _, err := up.describe(ctx, 'S', privateStmt, &pgproto3.Parse{Name: privateStmt, Query: pi.stmt.sql, ParameterOIDs: pi.stmt.paramOIDs})
	return oids, err
}

// describe fetches a prepared statement's parameter types (typ 'S'), and
// whether a statement or portal has result rows. With parse, it prepares
// the statement first and closes it before and after, as QueryParams does
// with privateStmt.
func (u *Upstream) describe(ctx context.Context, typ byte, name string, parse *pgproto3.Parse) (oids []uint32, rows bool, err error) {
	w := &u.s.uw
	closes := 0 // CloseCompletes to wait for
	if parse != nil {
		w.send(&pgproto3.Close{ObjectType: 'S', Name: name})
		w.send(parse)
		closes = 2
	}
	w.send(&pgproto3.Describe{ObjectType: typ, Name: name})
	if parse != nil {
		w.send(&pgproto3.Close{ObjectType: 'S', Name: name})
	}
	w.send(&pgproto3.Flush{})
	if err := w.flush(); err != nil {
		return nil, false, err
	}
	for {
		raw, err := u.receive(ctx)
		if err != nil {
			return nil, false, err
		}
		switch raw[0] {
		case 't':
			var pd pgproto3.ParameterDescription
			if err := pd.Decode(raw[5:]); err != nil {
				return nil, false, err
			}
			oids = pd.ParameterOIDs
		case 'T', 'n':
			rows = raw[0] == 'T'
			if closes == 0 {
				return oids, rows, nil
			}
		case '3': // CloseComplete
			if closes--; closes == 0 {
				return oids, rows, nil
			}
		case 'E':
			return nil, false, u.failed(raw)
		}
	}
}

func (u *Upstream) failed(raw []byte) error {
	var er pgproto3.ErrorResponse
	er.Decode(raw[5:])
	u.err = PgError(&er)
	u.ic.upstreamFailed = true
	return u.err
}

// spend replaces the client's portal upstream, bound and never run (the
// interceptor ran its statement), with one of the same name, without
// result rows either, that has run: Postgres refuses to run such a portal
// again (55000), and can then say so itself.
func (u *Upstream) spend(ctx context.Context, portal string) error {
	w := &u.s.uw
	for _, m := range []interface {
		Encode([]byte) ([]byte, error)
	}{
		&pgproto3.Close{ObjectType: 'P', Name: portal},
		&pgproto3.Close{ObjectType: 'S', Name: privateStmt},
		&pgproto3.Parse{Name: privateStmt, Query: "DO $$BEGIN END$$"},
		&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: privateStmt},
		&pgproto3.Execute{Portal: portal},
		&pgproto3.Close{ObjectType: 'S', Name: privateStmt},
		&pgproto3.Flush{},
	} {
		if err := w.send(m); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	for closes := 0; closes < 3; {
		raw, err := u.receive(ctx)
		if err != nil {
			return err
		}
		switch raw[0] {
		case '3':
			closes++
		case 'E':
			return u.failed(raw)
		}
	}
	return nil
}

// receive returns the next upstream reply of this interception, forwarding
// asynchronous messages (notices, notifications, parameter changes) to the
// client. When ctx ends it asks upstream to cancel (once per interception),
// and keeps reading: the protocol state must stay in step.
//
// A reply is only handed on once that cancel has been delivered: the query
// may finish before the cancel lands, and a cancel still in flight when the
// interception ends would hit the client's next statement instead. Landing
// while upstream waits for the interception's next message, it is ignored.
func (u *Upstream) receive(ctx context.Context) ([]byte, error) {
	for {
		var raw []byte
		if u.cancelling != nil {
			select {
			case raw = <-u.ic.msgs:
			case <-u.ic.gone:
				return nil, u.ic.goneErr
			case <-u.s.done:
				return nil, net.ErrClosed
			}
		} else {
			select {
			case raw = <-u.ic.msgs:
			case <-u.ic.gone:
				return nil, u.ic.goneErr
			case <-u.s.done:
				return nil, net.ErrClosed
			case <-ctx.Done():
				c := make(chan struct{})
				u.cancelling = c
				go func() {
					defer close(c)
					u.s.cancelUpstream()
				}()
				continue
			}
		}
		switch raw[0] {
		case 'N', 'A', 'S':
			if err := u.s.writeClient(raw); err != nil {
				return nil, err
			}
			continue
		}
		if u.cancelling != nil {
			select {
			case <-u.cancelling:
			case <-u.s.done:
				return nil, net.ErrClosed
			}
		}
		return raw, nil
	}
}

// PgError converts an ErrorResponse to the error type pgx users know.
func PgError(er *pgproto3.ErrorResponse) *pgconn.PgError {
	return &pgconn.PgError{
		Severity: er.Severity, SeverityUnlocalized: er.SeverityUnlocalized, Code: er.Code, Message: er.Message,
		Detail: er.Detail, Hint: er.Hint, Position: er.Position, InternalPosition: er.InternalPosition,
		InternalQuery: er.InternalQuery, Where: er.Where, SchemaName: er.SchemaName, TableName: er.TableName,
		ColumnName: er.ColumnName, DataTypeName: er.DataTypeName, ConstraintName: er.ConstraintName,
		File: er.File, Line: er.Line, Routine: er.Routine,
	}
}

// ErrorResponse converts a *pgconn.PgError to the wire message, every
// field kept. Severity is in the session's lc_messages, SeverityUnlocalized
// never is (clients read that one); an error made up as a PgError, without
// either, is an ERROR.
func ErrorResponse(pe *pgconn.PgError) *pgproto3.ErrorResponse {
	sev, unloc := pe.Severity, pe.SeverityUnlocalized
	if sev == "" {
		sev = "ERROR"
	}
	if unloc == "" {
		unloc = sev
	}
	return &pgproto3.ErrorResponse{
		Severity: sev, SeverityUnlocalized: unloc, Code: pe.Code, Message: pe.Message,
		Detail: pe.Detail, Hint: pe.Hint, Position: pe.Position, InternalPosition: pe.InternalPosition,
		InternalQuery: pe.InternalQuery, Where: pe.Where, SchemaName: pe.SchemaName, TableName: pe.TableName,
		ColumnName: pe.ColumnName, DataTypeName: pe.DataTypeName, ConstraintName: pe.ConstraintName,
		File: pe.File, Line: pe.Line, Routine: pe.Routine,
	}
}

// interception is the hand-over between the client loop, which runs the
// interceptor, and the server loop, which owns upstream's reader: the
// server loop reaches the interception's barrier reply once every earlier
// request has been answered, then pumps upstream messages to the
// interceptor until it finishes.
type interception struct {
	once     sync.Once
	ready    chan struct{} // closed when reached or skipped
	skipped  bool
	msgs     chan []byte
	finished chan struct{}
	// upstreamFailed: an interceptor query failed, so upstream already
	// skips until Sync.
	upstreamFailed bool
	// inQuery: an interceptor query awaits its replies, so every upstream
	// message is one of them. rowLimit (0: none) is the longest DataRow
	// that query reads: a longer one is skipped as it arrives and handed
	// on as its header alone (skippedRow).
	inQuery    atomic.Bool
	rowLimit   atomic.Int64
	userCancel atomic.Bool
	// gone is closed when upstream's connection failed while the
	// interception ran (goneErr says how): no more messages will come.
	gone    chan struct{}
	goneErr error
	// violation: the barrier of answerForwarded, behind which the client
	// sent nothing Postgres would have read (see onlyViolationLeft).
	violation bool
}

func newInterception() *interception {
	return &interception{ready: make(chan struct{}), msgs: make(chan []byte), finished: make(chan struct{}),
		gone: make(chan struct{})}
}

// isGone reports whether upstream's connection failed during the
// interception.
func (ic *interception) isGone() bool {
	select {
	case <-ic.gone:
		return true
	default:
		return false
	}
}

func (ic *interception) skip()  { ic.once.Do(func() { ic.skipped = true; close(ic.ready) }) }
func (ic *interception) reach() { ic.once.Do(func() { close(ic.ready) }) }

// barrier is a request with a reply and no effect (closing a statement that
// does not exist succeeds), sent after the requests the interception must
// wait for; Flush makes upstream send the replies buffered so far.
var barrier = append(encode(&pgproto3.Close{ObjectType: 'S', Name: "pgstripe_proxy_barrier"}), encode(&pgproto3.Flush{})...)

// forceError puts upstream into the failed state after an interceptor
// failure: a Parse that cannot succeed (under a name that leaves the
// client's unnamed statement alone).
var forceError = append(encode(&pgproto3.Parse{Name: "pgstripe_proxy_failed", Query: "pgstripe: the intercepted statement failed"}), encode(&pgproto3.Flush{})...)

var (
	closeUnnamedStmt   = encode(&pgproto3.Close{ObjectType: 'S'})
	closeUnnamedPortal = encode(&pgproto3.Close{ObjectType: 'P'})
	syncMsg            = encode(&pgproto3.Sync{})
	flushMsg           = encode(&pgproto3.Flush{})
	terminateMsg       = encode(&pgproto3.Terminate{})
)

// serveInterception runs in the server loop when the barrier reply of an
// interception arrives.
func (s *session) serveInterception(ic *interception) error {
	if err := s.flushClient(); err != nil {
		return err
	}
	ic.reach()
	for {
		typ, raw, err := s.ur.nextPiece()
		gathered := false
		if err == nil && s.ur.rest > 0 {
			// A long DataRow arriving. The interceptor's: gathered here
			// from its pieces (the read buffer need not grow to hold it
			// too), or skipped unread past its query's limit. Otherwise
			// it is a reply to what went upstream after the interceptor's
			// queries, passed on to the client in pieces once the
			// interception is over.
			if !ic.inQuery.Load() {
				select {
				case <-ic.finished:
				case <-s.done:
					return net.ErrClosed
				}
				return s.passPieces(typ, raw)
			}
			raw, err = s.gather(raw, ic.rowLimit.Load())
			gathered = true
		}
		if err != nil {
			// Postgres went away (a restart, a crash) while the interceptor
			// runs, perhaps after its write reached Stripe: its reply says
			// so, and must reach the client before the session closes.
			ic.goneErr = &upstreamError{err}
			close(ic.gone)
			select {
			case <-ic.finished:
			case <-s.done:
			}
			return err
		}
		msg := raw
		if !gathered { // raw is the read buffer's
			msg = make([]byte, len(raw))
			copy(msg, raw)
		}
		select {
		case ic.msgs <- msg:
		case <-ic.finished:
			// The interception popped its entry when it finished.
			return s.handleReply(typ, raw)
		}
	}
}

// gather reads the rest of the long message whose start nextPiece
// returned, and returns it whole; or, when the whole is longer than limit
// (0: none), drops it as it arrives and returns its header alone.
func (s *session) gather(first []byte, limit int64) ([]byte, error) {
	n := len(first) + s.ur.rest
	if limit > 0 && int64(n) > limit {
		hdr := append([]byte(nil), first[:5]...)
		for s.ur.rest > 0 {
			if _, err := s.ur.part(); err != nil {
				return nil, err
			}
		}
		return hdr, nil
	}
	msg := make([]byte, 0, n)
	msg = append(msg, first...)
	for s.ur.rest > 0 {
		piece, err := s.ur.part()
		if err != nil {
			return nil, err
		}
		msg = append(msg, piece...)
	}
	return msg, nil
}

// interceptSimple handles an intercepted simple Query; raw is the message.
// With refuse, the proxy answers it with that error instead of the
// interceptor, in step with upstream all the same.
func (s *session) interceptSimple(sql string, raw []byte, refuse *pgproto3.ErrorResponse) error {
	call := &Call{SQL: sql, Protocol: SimpleProtocol, refuse: refuse}
	_, err := s.intercept(call, nil, raw)
	return err
}

// fetchRefusal returns the error for a FETCH or MOVE in sql of an
// intercepted portal, or nil if it names none.
func fetchRefusal(sql []byte, portals map[string]*portalInfo) *pgproto3.ErrorResponse {
	name, ok := fetchedPortal(sql, portals)
	if !ok {
		return nil
	}
	return pgError("ERROR", "0A000",
		fmt.Sprintf("pgstripe: FETCH or MOVE of portal %q, which is bound to a write to a stripe table, is not supported", name))
}

// isCursorOp reports whether sql starts with FETCH or MOVE (after white
// space and comments), the statements fetchedPortal checks; Parse records
// such statements for Execute to check.
func isCursorOp(sql []byte) bool {
	sql = trimSpace(sql) // once: every Parse comes here
	if len(sql) == 0 {
		return false
	}
	var ok bool
	switch sql[0] | 0x20 {
	case 'f':
		_, ok = sqlKeyword(sql, "fetch")
	case 'm':
		_, ok = sqlKeyword(sql, "move")
	}
	return ok
}

// fetchedPortal returns the name of an intercepted portal that a SQL FETCH
// or MOVE in sql may name, if any. Postgres would run the portal's
// statement, a write to stripe.*, on its own, without Stripe. The check is
// lexical and errs towards refusing: sql has the word FETCH or MOVE
// anywhere and the portal's name anywhere as a word (a bare name only if
// Postgres would fold it to the portal's) or quoted, or any
// Unicode-escaped name (U&"…"). Comments, literals and settings such as
// standard_conforming_strings then can't hide either. Cursor names that
// only code run by the statement computes (a refcursor in a function)
// are beyond any lexical check.
func fetchedPortal(sql []byte, portals map[string]*portalInfo) (string, bool) {
	if !hasWord(sql, "fetch") && !hasWord(sql, "move") {
		return "", false
	}
	escaped := bytes.Contains(bytes.ToLower(sql), []byte(`u&"`))
	for name := range portals {
		if name == "" {
			// SQL can't name the unnamed portal ("" is a zero-length
			// identifier), and `""` or U&" elsewhere in sql would match.
			continue
		}
		if escaped || bareName(name) && hasWord(sql, name) ||
			bytes.Contains(sql, []byte(`"`+strings.ReplaceAll(name, `"`, `""`)+`"`)) {
			return name, true
		}
	}
	return "", false
}

// hasWord reports whether sql has w (lower case) as a word, in any case:
// not inside a longer name.
func hasWord(sql []byte, w string) bool {
	for i := 0; i+len(w) <= len(sql); i++ {
		if (i == 0 || !identChar(sql[i-1])) && bytes.EqualFold(sql[i:i+len(w)], []byte(w)) &&
			(i+len(w) == len(sql) || !identChar(sql[i+len(w)])) {
			return true
		}
	}
	return false
}

// bareName reports whether name can be written without quotes: Postgres
// folds a bare name to lower case, so "P1" is only ever written quoted.
func bareName(name string) bool {
	if name == "" || name[0] == '$' || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !identChar(c) || c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// interceptExecute handles Execute of an intercepted portal; raw is the
// message, maxRows its row limit (0: none).
func (s *session) interceptExecute(pi *portalInfo, raw []byte, maxRows uint32) error {
	n := len(pi.params)
	call := &Call{SQL: pi.stmt.sql, Protocol: ExtendedProtocol, Params: pi.params, ResultFormats: pi.resultFormats}
	call.ParamFormats = make([]int16, n)
	for i := range n {
		switch len(pi.paramFormats) {
		case 0:
		case 1:
			call.ParamFormats[i] = pi.paramFormats[0]
		default:
			if i < len(pi.paramFormats) {
				call.ParamFormats[i] = pi.paramFormats[i]
			}
		}
	}
	call.pi, call.maxRows = pi, maxRows
	_, err := s.intercept(call, pi, raw)
	return err
}

// replay answers an Execute of an intercepted portal that already ran, as
// Postgres does: with the rows an earlier row limit kept back, up to this
// Execute's own limit, and a tag that counts the rows of this Execute.
func (s *session) replay(ctx context.Context, call *Call) error {
	pi := call.pi
	if len(pi.rest) == 0 {
		// A statement without result rows (no RETURNING) ran to completion
		// at its first Execute, and Postgres refuses to run its portal
		// again.
		_, rows, err := call.up.describe(ctx, 'P', pi.name, nil)
		if err != nil {
			return err
		}
		if !rows {
			if err := call.up.spend(ctx, pi.name); err != nil {
				return err
			}
			delete(s.portals, pi.name)
			call.done, call.forward = true, true
			return nil
		}
	}
	n := len(pi.rest)
	if call.maxRows > 0 && uint32(n) >= call.maxRows {
		n = int(call.maxRows)
	}
	for _, row := range pi.rest[:n] {
		if err := s.writeClient(row); err != nil {
			return err
		}
	}
	pi.rest = pi.rest[n:]
	call.done = true
	if call.maxRows > 0 && uint32(n) == call.maxRows {
		return s.sendClient(&pgproto3.PortalSuspended{})
	}
	tag := pi.tag
	if i := bytes.LastIndexByte(tag, ' '); i >= 0 {
		tag = strconv.AppendInt(append([]byte(nil), tag[:i+1]...), int64(n), 10)
	}
	return s.sendClient(&pgproto3.CommandComplete{CommandTag: tag})
}

// intercept waits for the barrier, runs the interceptor and completes its
// reply, or forwards raw (the client's message, still valid: the client
// loop reads nothing more until this returns) when the interceptor hands
// the statement back. It reports false when the statement was skipped
// because an earlier request of the batch failed.
func (s *session) intercept(call *Call, pi *portalInfo, raw []byte) (bool, error) {
	ic := newInterception()
	if call.Protocol == SimpleProtocol {
		// Postgres drops the unnamed statement at every simple Query, and
		// the unnamed portal with each statement it runs (not in a failed
		// transaction): the client's must not outlive one that upstream
		// never sees.
		s.q.push1(entry{kind: kClose, swallow: true})
		s.uw.write(closeUnnamedStmt)
		if s.txStatus.Load() != 'E' {
			s.q.push1(entry{kind: kClose, swallow: true})
			s.uw.write(closeUnnamedPortal)
		}
	}
	s.q.push1(entry{kind: kIntercept, ic: ic})
	if err := s.uw.write(barrier); err != nil {
		return false, &upstreamError{err}
	}
	if err := s.flushUpstream(); err != nil {
		return false, err
	}
	select {
	case <-ic.ready:
	case <-s.done:
		return false, net.ErrClosed
	case <-s.lost:
		// Upstream died before it answered the barrier (see
		// stopClientLoop).
		return false, &upstreamError{errUpstreamLost}
	}
	if ic.skipped {
		return false, nil
	}
	defer func() {
		if call.forward {
			if call.Protocol == SimpleProtocol {
				// End the interceptor's queries first; the client gets
				// the forwarded Query's own ReadyForQuery. Not when the
				// client's own extended requests since its last Sync are
				// pending: Postgres runs the Query in their implicit
				// transaction (a failure rolls them back too), and a Sync
				// would commit them on their own.
				if !s.extOpen {
					s.q.push1(entry{kind: kSync, swallow: true})
					s.uw.write(syncMsg)
				}
				s.q.push1(entry{kind: kQuery, seq: s.nextCopyWin()})
			} else {
				s.q.push1(entry{kind: kExecute, seq: s.nextCopyWin()})
			}
			s.p.passed.Add(1)
			s.uw.write(raw)
		} else if call.Protocol == SimpleProtocol {
			// The interceptor's queries ran without Sync; Sync ends them
			// (and the implicit transaction) and yields the ReadyForQuery
			// the client awaits.
			s.q.push1(entry{kind: kSync})
			s.uw.write(syncMsg)
		}
		// The entry is the queue's head (the server loop pops nothing while
		// it pumps for us); pop it now rather than at the next upstream
		// message, so an idle session looks idle.
		s.q.pop()
		if s.terminateBuffered() {
			// The client sent its Terminate with this request. The server
			// loop goes on once this returns, and may meet upstream's end
			// (which may have ended this interception) before the client
			// loop gets to the Terminate: that end is then the one the
			// client asked for, which gets no FATAL (see endFromServer).
			s.terminated.Store(true)
		}
		close(ic.finished)
	}()

	call.s, call.ic = s, ic
	call.up = &Upstream{s: s, ic: ic}
	call.TxStatus = byte(s.txStatus.Load())
	call.User, call.Database = s.user, s.database

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	s.icMu.Lock()
	s.icCancel = func() { ic.userCancel.Store(true); cancel() }
	s.icMu.Unlock()
	defer func() {
		s.icMu.Lock()
		s.icCancel = nil
		s.icMu.Unlock()
	}()

	var err error
	if (pi != nil || call.refuse != nil && call.Protocol == ExtendedProtocol) && s.txStatus.Load() == 'E' {
		// In a failed transaction Postgres runs no statement that can be
		// intercepted or refused (only COMMIT, ROLLBACK and the like),
		// and it answers an Execute with 34000 (the portal does not
		// exist: its Bind failed, or went with a savepoint) or 25P02: let
		// it answer, as to any client. Asking it first (portalExists)
		// would fail with 25P02 either way. (Not a simple Query: its
		// ROLLBACK TO SAVEPOINT may end the failed state before its
		// FETCH.)
		call.forward = true
		return true, nil
	}
	if pi != nil && pi.syncs != s.syncs {
		// A Sync or Query since Bind may have ended the portal's
		// transaction, and the portal with it (then upstream answers the
		// Execute: portal does not exist). Only upstream knows for sure:
		// ROLLBACK TO SAVEPOINT, COMMIT and BEGIN in one batch… A rare
		// path (clients bind and execute in one batch), so ask.
		var alive bool
		if alive, err = s.portalExists(ctx, call.up, pi.name); err == nil && !alive {
			call.forward = true
			return true, nil
		}
	}
	if err == nil && pi != nil && pi.stmt.uncertain {
		st := pi.stmt
		if pi.stmtName == "" {
			st = st.unnamed()
		} else if !st.parsed.Load() {
			// (Not when Postgres accepted the Parse: the query would
			// also be the transaction's first, after which BEGIN
			// ISOLATION LEVEL, SET TRANSACTION … are refused.)
			st, err = s.resolveStmt(ctx, call.up, pi.stmtName)
		}
		if err == nil {
			if st.class != Intercept {
				call.forward = true
				return true, nil
			}
			pi.stmt, call.SQL = st, st.sql
		}
	}
	switch {
	case err != nil:
	case pi != nil && pi.ran:
		err = s.replay(ctx, call)
	case pi != nil:
		// Read only now: the server loop records a ParameterDescription
		// into the statement until the barrier.
		call.ParamOIDs = pi.stmt.paramOIDs
		if needsDescribe(call) {
			var oids []uint32
			if oids, err = s.describeBound(ctx, call.up, pi); err == nil {
				call.ParamOIDs = oids
			}
		}
	}
	if err == nil && !call.done {
		err = s.runInterceptor(ctx, call)
	}
	if err != nil && !call.done {
		var pe *pgconn.PgError
		switch {
		case ic.userCancel.Load() && errors.Is(err, context.Canceled):
			call.Send(pgError("ERROR", "57014", "canceling statement due to user request"))
		case errors.As(err, &pe):
			call.Send(ErrorResponse(pe))
		default:
			call.Send(pgError("ERROR", "XX000", "pgstripe: "+err.Error()))
		}
	} else if err == nil && !call.done {
		call.Send(pgError("ERROR", "XX000", "pgstripe: the statement handler returned no reply"))
	} else if err != nil {
		s.p.log.Warn("interceptor failed after completing its reply", "err", err)
	}
	// The server loop may already be waiting on upstream, past its own
	// flush: the reply must not sit in the buffer (the client may have sent
	// Flush rather than Sync).
	if err := s.flushClient(); err != nil {
		return false, err
	}
	if call.failed {
		if !ic.upstreamFailed && !ic.isGone() {
			// Upstream may die from here on, its end unseen when the reply
			// went out as an ERROR: the failures below are upstreamErrors,
			// and the server loop sends the FATAL that ends the session.
			if err := s.uw.write(forceError); err != nil {
				return false, &upstreamError{err}
			}
			if err := s.flushUpstream(); err != nil {
				return false, err
			}
			for {
				raw, err := call.up.receive(context.Background())
				if err != nil {
					return false, err
				}
				if raw[0] == 'E' {
					if isFatal(raw) {
						// Upstream ended the session (a shutdown,
						// pg_terminate_backend) rather than refuse the
						// Parse: the client gets its FATAL, as from
						// Postgres, and the server loop then closes
						// without one of its own.
						if err := s.passFatal(raw); err != nil {
							return false, err
						}
					}
					break
				}
			}
		}
		if s.txStatus.Load() == 'T' {
			s.txStatus.Store('E')
		}
		if call.Protocol == ExtendedProtocol {
			s.q.setAborted()
		}
	}
	return true, nil
}

// resolveStmt finds out which statement runs under a name whose Parse
// Postgres may have refused (see trackParse): the one it has.
func (s *session) resolveStmt(ctx context.Context, up *Upstream, name string) (*stmtInfo, error) {
	res, err := up.Query(ctx, `SELECT statement FROM pg_catalog.pg_prepared_statements WHERE name OPERATOR(pg_catalog.=) $1::pg_catalog.text`, name)
	if err != nil {
		return nil, err
	}
	st := passthroughStmt // none: Bind failed, upstream answers the Execute
	if len(res.Rows) == 1 && res.Rows[0][0] != nil {
		sql := res.Rows[0][0]
		st = &stmtInfo{sql: string(sql), class: s.p.classify.get(sql)}
	}
	s.stmts[name] = st
	return st, nil
}

// portalExists asks upstream whether the portal name (the client's, made
// by Bind) still exists.
func (s *session) portalExists(ctx context.Context, up *Upstream, name string) (bool, error) {
	res, err := up.Query(ctx, `SELECT 1 FROM pg_catalog.pg_cursors WHERE name OPERATOR(pg_catalog.=) $1::pg_catalog.text`, name)
	if err != nil {
		return false, err
	}
	return len(res.Rows) > 0, nil
}

func needsDescribe(call *Call) bool {
	if len(call.ParamOIDs) < len(call.Params) {
		return true
	}
	for _, oid := range call.ParamOIDs {
		if oid == 0 {
			return true
		}
	}
	return false
}

// runInterceptor calls the interceptor, turning a panic into an error so one
// bad statement cannot take the proxy down.
func (s *session) runInterceptor(ctx context.Context, call *Call) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.p.log.Error("interceptor panicked", "panic", r, "sql", call.SQL)
			err = errors.New("internal error in statement handler: " + strconv.Quote(fmt.Sprint(r)))
		}
	}()
	if call.refuse != nil {
		return call.Send(call.refuse)
	}
	return s.p.cfg.Interceptor.Intercept(ctx, call)
}
