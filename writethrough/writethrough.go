package writethrough

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/translate"
)

// Config configures an Interceptor.
type Config struct {
	// Stripe makes the calls (its limiter gives them priority over sync).
	Stripe *stripeapi.Client
	// Pool is pgstripe's own connection pool: Stripe's answers are applied
	// through it, committed whatever the client does with its transaction.
	Pool *pgxpool.Pool
	// LockTimeout bounds the wait for a row lock when applying (the client
	// may hold one); past it the events loop applies the change. Default 2s;
	// at most 250ms for a client inside a transaction block, where the lock
	// is most likely its own.
	LockTimeout time.Duration
	// Timeout bounds the Stripe part of one statement. Default 60s.
	Timeout time.Duration
	// LockWait bounds an UPDATE's wait for an object another session
	// holds (see lockObjects) when the session's lock_timeout is 0.
	// Default: Timeout, about the longest a write-through outside a
	// transaction block holds one.
	LockWait time.Duration
	// Concurrency is how many rows of one statement are sent to Stripe at
	// once (default 4; the shared limiter still paces them).
	Concurrency int
	// MaxHeld bounds the rows one statement's own queries on the client's
	// connection may bring into memory, in bytes (default 64 MB): the
	// values to send, the WITH queries RETURNING reads, RETURNING. Past
	// it the statement is refused with 54000, before any Stripe call
	// where the rows are read before the calls.
	MaxHeld int64
	// Logger; nil discards.
	Logger *slog.Logger
}

// Interceptor executes writes to stripe tables for the proxy.
type Interceptor struct {
	cfg   Config
	log   *slog.Logger
	cache classCache

	dbMu sync.Mutex
	db   string // the database of Config.Pool, once known
}

// New returns an Interceptor.
func New(cfg Config) *Interceptor {
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.LockWait <= 0 {
		cfg.LockWait = cfg.Timeout
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = DefaultMaxHeld
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Interceptor{cfg: cfg, log: log, cache: classCache{m: map[string]translate.Class{}}}
}

// Classify is translate.Classify behind a bounded cache; the proxy may use
// either.
func (ic *Interceptor) Classify(sql string) translate.Class { return ic.cache.get(sql) }

// Labels names a statement for metrics, from the cached classification:
// its table and operation (INSERT, UPDATE, DELETE), or "unknown",
// "rejected" for one that is refused whatever the session.
func (ic *Interceptor) Labels(sql string) (table, op string) {
	c := ic.cache.get(sql)
	if c.Stmt != nil && c.Stmt.Strings != nil {
		c = c.Stmt.Strings.On
	}
	if c.Stmt == nil || c.Stmt.Table == nil {
		return "unknown", "rejected"
	}
	return c.Stmt.Table.Name, c.Stmt.Op.String()
}

// Upstream is the client's own Postgres connection, lent by the proxy for
// the duration of one intercepted statement.
type Upstream interface {
	// Query runs sql once through the extended protocol with the given
	// parameters and returns all rows. A Postgres error is a
	// *pgconn.PgError.
	Query(ctx context.Context, sql string, params [][]byte, paramOIDs []uint32, paramFormats, resultFormats []int16) (*Result, error)
	// QueryLimit is Query keeping at most limit bytes of rows (counted
	// as proxy.RowBytes counts them). Past the limit the error is a
	// *proxy.ResultTooLargeError, the rest of the result is not kept, and
	// the connection is as after a Postgres error.
	QueryLimit(ctx context.Context, limit int64, sql string, params [][]byte, paramOIDs []uint32, paramFormats, resultFormats []int16) (*Result, error)
	// Prepare has Postgres parse and analyse sql without running it; a
	// Postgres error is a *pgconn.PgError.
	Prepare(ctx context.Context, sql string) error
}

// Result is the answer to Upstream.Query.
type Result struct {
	Fields []pgproto3.FieldDescription
	Rows   [][][]byte
}

// Request is one intercepted statement.
type Request struct {
	SQL string
	// Stmt is the classification's plan; nil means classify SQL here.
	Stmt *translate.Statement
	// Params as bound by the client; ParamOIDs as declared in Parse (or as
	// the server inferred them, when the proxy knows; 0 = unspecified).
	Params       [][]byte
	ParamOIDs    []uint32
	ParamFormats []int16 // Bind's codes: none (all text), one (for all), or one per parameter
	// ResultFormats are Bind's result format codes (extended protocol).
	ResultFormats []int16
	// TxStatus is the session's status before the statement: 'I', 'T' or 'E'.
	TxStatus byte
	// Describe asks for a RowDescription before the rows (simple Query; in
	// the extended protocol the client's Describe already went upstream).
	Describe bool
}

// Reply is what the proxy sends the client for the statement.
type Reply struct {
	// Pass: not a stripe write after all (search_path resolved elsewhere):
	// forward the statement to Postgres unchanged.
	Pass bool
	// Unrelayable, with Pass: the statement cannot be run on the client's
	// behalf (a multi-statement Query, COPY FROM); only the client's own
	// message can go upstream.
	Unrelayable bool
	// Messages in order: NoticeResponses, then RowDescription (Describe
	// only) and DataRows and CommandComplete, or an ErrorResponse.
	Messages []pgproto3.BackendMessage
	// quiet: the session's client_min_messages is above NOTICE, so
	// Postgres would send the client no notices; known once the session's
	// settings were read (quietKnown).
	quiet, quietKnown bool
	// lasting describes a statement that succeeded and reached Stripe
	// (command tag and table), for the proxy's warning when an error later
	// in the same pipeline rolls back its implicit transaction.
	lasting string
	// stripeStage: the statement got past every check to its Stripe
	// calls; an error before that is a refusal (Refused).
	stripeStage bool
}

// Refused reports whether the reply is an error given before any Stripe
// call: a check refused the statement (privileges, a failed transaction,
// an unknown column, Postgres's own analysis). Metrics count these apart
// from writes.
func (r *Reply) Refused() bool {
	if r.Pass || r.stripeStage || len(r.Messages) == 0 {
		return false
	}
	_, ok := r.Messages[len(r.Messages)-1].(*pgproto3.ErrorResponse)
	return ok
}

func (r *Reply) notice(msg, detail string) {
	if r.quiet {
		return
	}
	r.Messages = append(r.Messages, &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000", Message: msg, Detail: detail})
}

func (r *Reply) fail(e *pgproto3.ErrorResponse) Reply {
	r.Messages = append(r.Messages, e)
	return *r
}

// Execute runs one intercepted statement: checks, evaluation on the
// client's connection, Stripe calls, local apply, reply.
func (ic *Interceptor) Execute(ctx context.Context, up Upstream, req Request) Reply {
	start := time.Now()
	var rep Reply
	if req.TxStatus == 'E' {
		// Postgres answers every statement so in a failed transaction,
		// whatever the statement: no resolution, no checks, no call.
		return rep.fail(errorResponse(translate.CodeInFailedTransaction,
			"current transaction is aborted, commands ignored until end of transaction block"))
	}
	st := req.Stmt
	if st == nil || st.Strings != nil {
		c := translate.Class{Action: translate.Write, Stmt: st}
		if st == nil {
			c = ic.cache.get(req.SQL)
		}
		forward := false
		if c.Stmt != nil && c.Stmt.Strings != nil {
			// Postgres reads the text with the session's setting: so
			// must we, or 'C:\\dir' reaches Stripe with two backslashes,
			// and 'it\'s', unparsable here, the local copy alone.
			on, err := conformingStrings(ctx, up)
			if err != nil {
				return rep.fail(pgError(err))
			}
			c, forward = c.Stmt.Strings.Pick(on), true
		}
		switch c.Action {
		case translate.Pass:
			// Read as the session reads it, the text may be several
			// statements: only the client's own message can go on.
			return Reply{Pass: true, Unrelayable: forward}
		case translate.Reject:
			switch c.Err.Code {
			case translate.CodeUndefinedColumn, translate.CodeDuplicateColumn, translate.CodeSyntaxError:
				// Errors Postgres may find itself: in a simple Query
				// (see below) let it, with its message and position.
				if req.Describe {
					if err := up.Prepare(ctx, req.SQL); err != nil {
						return rep.fail(pgError(err))
					}
				}
			}
			return rep.fail(translateError(c.Err))
		}
		st = c.Stmt
	}
	if st.Transcode {
		c, enc, err := classifyConverted(ctx, up, req.SQL)
		if err != nil {
			return rep.fail(pgError(err))
		}
		switch c.Action {
		case translate.Reject:
			return rep.fail(translateError(c.Err))
		case translate.Write:
			mine, err := ours(ctx, up, c.Stmt, ic.cfg.MaxHeld)
			if err != nil {
				return rep.fail(heldError(err, preparedTooLarge))
			}
			if mine {
				return rep.fail(translateError(translate.NotUTF8(enc)))
			}
		}
		// Not a write to a stripe table: the client's own message goes on.
		return Reply{Pass: true, Unrelayable: true}
	}
	params := newParams(req)
	params.held = &held{left: ic.cfg.MaxHeld, max: ic.cfg.MaxHeld}
	if mine, err := ours(ctx, up, st, ic.cfg.MaxHeld); err != nil {
		return rep.fail(heldError(err, preparedTooLarge))
	} else if !mine {
		return Reply{Pass: true, Unrelayable: st.Unrelayable}
	}
	if st.Deferred != nil {
		return rep.fail(translateError(st.Deferred))
	}
	if len(req.Params) < st.NParams {
		// Only a simple Query can get here (in the extended protocol
		// Postgres checked Bind against the statement). Postgres refuses
		// a $n without a value; our own queries would bind it as NULL and
		// send Stripe an unset (SET metadata = $1 would erase it).
		return rep.fail(errorResponse("42P02", "there is no parameter $%d", len(req.Params)+1))
	}
	if req.Describe {
		// A simple Query reaches us unparsed by Postgres (in the extended
		// protocol the client's Parse went upstream). Our own queries are
		// not the client's text: an expression Postgres would refuse in
		// the statement (a type that an INSERT can't assign, an unknown
		// column next to DEFAULT) may pass in them, and the errors they
		// give point into text the client never sent. Have Postgres
		// analyse the statement itself first, as it would have, RETURNING
		// included, before Stripe changes anything.
		if err := up.Prepare(ctx, req.SQL); err != nil {
			return rep.fail(pgError(err))
		}
	}
	sess, e := ic.checkPrivileges(ctx, up, st)
	if e != nil {
		return rep.fail(e)
	}
	stmtTimeout := sess.timeout
	rep.quiet, rep.quietKnown = sess.quiet, true
	if st.Returning != nil && st.Op != translate.Delete && !st.ReturningPlain {
		// Postgres checks what RETURNING needs (SELECT on the tables and
		// columns its subqueries read, EXECUTE on its functions) when the
		// statement starts, before it changes anything; ours runs after
		// the calls, and only plain column lists are checked above.
		// Started over no rows, the query is checked by Postgres itself
		// and evaluates nothing. (A DELETE's RETURNING runs in Eval.)
		if _, err := params.query(ctx, up, *st.Returning, nil); err != nil {
			return rep.fail(pgError(err))
		}
	}
	if len(st.Once) > 0 {
		var e *pgproto3.ErrorResponse
		if st, params, e = evalOnce(ctx, up, params, st); e != nil {
			return rep.fail(e)
		}
	}

	// Evaluate the values on the client's connection, once: the rows
	// Stripe is sent, the rows applied and those RETURNING shows all come
	// from this one evaluation.
	var rows [][][]byte
	// RETURNING of a DELETE shows the rows as they were, evaluated with
	// WHERE (Eval.Returns): before any call, for Stripe's events of the
	// deletions may remove them locally (the events loop) before the last
	// call returns. An error there, as in Postgres, leaves everything
	// undone.
	var deleted *Result
	if st.Op == translate.Update {
		var err error
		var current *pgxpool.Pool
		if sess.snapshot {
			current = ic.cfg.Pool
		}
		// The session's lock_timeout bounds the wait as it bounds a row
		// lock's; without one, ours does (see lockObjects).
		wait := ic.cfg.LockWait
		if sess.lockTimeout > 0 {
			wait = 0
		}
		if rows, err = lockObjects(ctx, up, current, params, st, wait, sess.lockTimeout); err != nil {
			return rep.fail(heldError(err, valuesTooLarge(st)))
		}
	} else if st.Eval.SQL != "" {
		res, err := params.query(ctx, up, st.Eval, nil)
		if err != nil {
			return rep.fail(heldError(err, valuesTooLarge(st)))
		}
		rows = res.Rows
		if st.Eval.Returns {
			rows, deleted = splitReturning(res, st.Eval.Lead)
		}
	}
	if err := rowsToUTF8(ctx, up, params.held, rows, sess.encoding); err != nil {
		return rep.fail(heldError(err, valuesTooLarge(st)))
	}
	evaluated := translate.NewRows(rows)
	stored, err := ic.storedObjects(ctx, up, params.held, st.Objects(evaluated))
	if err != nil {
		return rep.fail(heldError(err, valuesTooLarge(st)))
	}
	calls, terr := st.BuildStored(evaluated, stored)
	// Build has done with the stored copies (the calls hold none of
	// them): their room is RETURNING's, which runs after the calls.
	params.held.give(storedBytes(stored))
	if terr != nil {
		return rep.fail(translateError(terr))
	}

	// Call Stripe; stop at the first error. The session's statement_timeout
	// bounds the calls as it bounds any statement.
	callCtx := ctx
	if stmtTimeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithDeadline(ctx, start.Add(stmtTimeout))
		defer cancel()
	}
	rep.stripeStage = true
	done, fail, failRow, uncertain := ic.call(callCtx, st, calls)
	// A call cut short by statement_timeout after a definite answer is
	// said to be of unknown outcome all the same (after the row's own
	// clauses).
	timedOut := false
	if fail != nil && stmtTimeout > 0 && callCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		fail.resp.Message = "canceling statement due to statement timeout"
		timedOut = fail.outcome == outcomeAnswered
	}
	failUncertain := fail != nil && (fail.outcome == outcomeUnknown || timedOut)
	// Only once the calls are answered: a write Stripe refused outright
	// has nothing for ROLLBACK to leave behind.
	if req.TxStatus == 'T' && (reachedStripe(done) || len(uncertain) > 0 || failUncertain) {
		rep.notice("this write went to Stripe at once: ROLLBACK cannot undo it",
			fmt.Sprintf("%s on stripe.%s inside a transaction block", st.Op, st.Table.Name))
	}

	var retRes *Result
	var retErr error
	ids := make([]string, len(done))
	for i, d := range done {
		ids[i] = d.id
	}

	// Apply what reached Stripe, committed on our own connection; the change
	// is real, so a client that cancels or hangs up now doesn't stop it.
	var applyWarning string
	if len(done) > 0 {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ic.cfg.Timeout)
		if req.TxStatus == 'T' {
			// Inside a transaction block a row lock in the way is most likely
			// the client's own (SELECT … FOR UPDATE before the UPDATE): it
			// won't be released while the client waits for us.
			actx = context.WithValue(actx, lockTimeoutKey{}, min(ic.cfg.LockTimeout, inTxLockTimeout))
		}
		applyWarning = ic.apply(actx, st.Table, done)
		cancel()
		if applyWarning != "" {
			rep.notice(applyWarning, "")
		}
	}
	if fail != nil {
		e := fail.resp
		// Said here, where the statement's other calls are known: a
		// call that never reached Stripe changed nothing, but when
		// others did (other rows, the row's earlier calls) "nothing was
		// changed" would have the client repeat the statement, creating
		// twice.
		addDetail(e, fail.outcome.clause(reachedStripe(done) || len(uncertain) > 0))
		addDetail(e, fail.earlier)
		if timedOut {
			addDetail(e, mayHaveTakenEffect)
		}
		if len(calls) > 1 {
			e.Detail = strings.TrimPrefix(e.Detail+"; "+progress(st, done, failRow, len(calls), uncertain), "; ")
		}
		return rep.fail(e)
	}
	noReturning := st.Op == translate.Delete || st.Returning == nil
	if noReturning && reachedStripe(done) {
		// Nothing else runs on the client's connection after the calls,
		// which can take long enough for Postgres to restart meanwhile:
		// the client would then get CommandComplete and the connection's
		// end, and take the write for undone. Finding that out now lets
		// the error say what reached Stripe. A cancel that comes this late
		// changes nothing.
		_, retErr = up.Query(context.WithoutCancel(ctx), `SELECT 1`, nil, nil, nil, nil)
	}
	if retErr == nil && st.Op == translate.Delete {
		retRes = deleted
	} else if retErr == nil && st.Returning != nil {
		retRes, retErr = params.query(ctx, up, *st.Returning, ids)
		again := retErr == nil && (applyWarning != "" || sess.snapshot || len(retRes.Rows) < len(ids) && req.TxStatus == 'T')
		if again {
			// Its rows are to replace these: a RETURNING within MaxHeld
			// must not fail for being read twice (both are held only
			// until the second run ends).
			params.held.release(retRes.Rows)
		}
		if again && applyWarning != "" {
			// The local rows are not what Stripe answered (most often the
			// client holds their row locks: SELECT … FOR UPDATE, then
			// UPDATE, as ORMs lock pessimistically). RETURNING shows the
			// state the statement produced, as it would in Postgres.
			if r, err := ic.returningAnswered(ctx, up, params, st, done); err != nil {
				retErr = err
			} else if r != nil {
				retRes = &Result{Fields: retRes.Fields, Rows: r.Rows}
			}
		} else if again {
			// A REPEATABLE READ or SERIALIZABLE transaction's snapshot
			// predates our apply: it misses the rows an INSERT made and
			// shows an UPDATE's rows as they were. Answer from a fresh
			// snapshot instead. An error there is the client's RETURNING
			// failing on its own connection (its transaction is now
			// aborted): report it.
			if r, err := ic.returningFresh(ctx, up, params, st, ids); err != nil {
				retErr = err
			} else if r != nil && len(r.Rows) >= len(retRes.Rows) {
				// The same target list: keep the description of the
				// run over the table (its table OIDs and column numbers,
				// as Postgres gives them), not of the rows given as data.
				retRes = &Result{Fields: retRes.Fields, Rows: r.Rows}
			}
		}
	}
	if retErr != nil {
		// The writes are done: RETURNING (a division by zero, a cast, a
		// lost or cancelled connection, more rows than pgstripe holds) is
		// all that failed. Say so, or the client takes the statement for
		// undone and repeats it.
		e := heldError(retErr, returningTooLarge(st))
		if w := reachedBeforeReturning(st, done, applyWarning == "", noReturning); w != "" {
			e.Detail = strings.TrimPrefix(e.Detail+"; "+w, "; ")
		}
		return rep.fail(e)
	}
	if retRes != nil {
		if req.Describe {
			rep.Messages = append(rep.Messages, &pgproto3.RowDescription{Fields: retRes.Fields})
		}
		for _, r := range retRes.Rows {
			rep.Messages = append(rep.Messages, &pgproto3.DataRow{Values: r})
		}
	}
	tag := commandTag(st.Op, len(calls))
	if len(done) > 0 {
		rep.lasting = tag + " on stripe." + st.Table.Name
	}
	rep.Messages = append(rep.Messages, &pgproto3.CommandComplete{CommandTag: []byte(tag)})
	return rep
}

// reachedStripe reports whether any row changed something in Stripe (an
// UPDATE whose rows change nothing makes no call, and has nothing for
// ROLLBACK to undo).
func reachedStripe(done []applied) bool {
	for _, d := range done {
		if d.resp != nil {
			return true
		}
	}
	return false
}

func commandTag(op translate.Op, n int) string {
	switch op {
	case translate.Insert:
		return "INSERT 0 " + strconv.Itoa(n)
	case translate.Update:
		return "UPDATE " + strconv.Itoa(n)
	}
	return "DELETE " + strconv.Itoa(n)
}

// progress says which rows reached Stripe when a multi-row statement failed.
// uncertain are the other rows (not failRow) that failed without a definite
// answer: they may have reached Stripe too.
func progress(st *translate.Statement, done []applied, failRow, total int, uncertain []int) string {
	var rows, ids []string
	for _, d := range done {
		if d.partial && d.row == failRow {
			continue // the error's own detail says what reached Stripe
		}
		rows = append(rows, strconv.Itoa(d.row+1))
		ids = append(ids, d.id)
	}
	var unk []string
	for _, r := range uncertain {
		unk = append(unk, strconv.Itoa(r+1))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "row %d of %d failed; ", failRow+1, total)
	if len(rows) == 0 {
		b.WriteString("no other row reached Stripe for certain")
	} else if len(rows) == 1 {
		fmt.Fprintf(&b, "1 row reached Stripe and is applied locally in stripe.%s: row %s (%s)", st.Table.Name, rows[0], ids[0])
	} else {
		fmt.Fprintf(&b, "%d rows reached Stripe and are applied locally in stripe.%s: rows %s (%s)",
			len(rows), st.Table.Name, strings.Join(rows, ", "), strings.Join(ids, ", "))
	}
	switch len(unk) {
	case 0:
	case 1:
		fmt.Fprintf(&b, "; row %s failed too, without a definite answer: it may have reached Stripe as well", unk[0])
	default:
		fmt.Fprintf(&b, "; rows %s failed too, without a definite answer: they may have reached Stripe as well", strings.Join(unk, ", "))
	}
	if (len(rows) > 0 || len(unk) > 0) && 1+len(rows)+len(unk) < total {
		b.WriteString("; the other rows were not changed")
	}
	return b.String()
}

// reachedBeforeReturning is the DETAIL clause for a statement whose Stripe
// calls all succeeded but whose RETURNING failed, or whose connection failed
// after them (noReturning): what reached Stripe.
func reachedBeforeReturning(st *translate.Statement, done []applied, appliedLocally, noReturning bool) string {
	var rows, ids []string
	for _, d := range done {
		if d.resp == nil {
			continue // nothing to change: no call
		}
		rows = append(rows, strconv.Itoa(d.row+1))
		ids = append(ids, d.id)
	}
	if len(rows) == 0 {
		return ""
	}
	where := "and is applied locally in stripe." + st.Table.Name
	if !appliedLocally {
		where = "(the local copy will catch up from Stripe's events)"
	}
	failed := "only RETURNING failed"
	if noReturning {
		failed = "only the connection to Postgres failed, after the calls"
	}
	return fmt.Sprintf("%s: the %s reached Stripe %s for rows %s (%s); do not repeat the statement",
		failed, strings.ToLower(st.Op.String()), where, strings.Join(rows, ", "), strings.Join(ids, ", "))
}

// applied is one row whose calls all succeeded.
type applied struct {
	row     int // index in the statement
	id      string
	version string // the local row's version when evaluated (UPDATE)
	resp    *stripeapi.Response
	partial bool // a later call of the row failed
}

// call makes the Stripe calls, up to Config.Concurrency rows at a time (a
// row's own calls in order). It returns the rows that completed, in
// statement order, and the first error with its row index. After an error
// no further row is started; rows already in flight finish. A row whose
// calls don't all succeed is not applied (its first calls, if any, are left
// to the events loop).
//
// fail is the first failed row's failure; uncertain lists the other rows
// that failed without a definite answer, in statement order.
func (ic *Interceptor) call(ctx context.Context, st *translate.Statement, rows []translate.RowCalls) (done []applied, fail *callFailure, failRow int, uncertain []int) {
	ctx, cancel := context.WithTimeout(stripeapi.WithPriority(ctx, stripeapi.Interactive), ic.cfg.Timeout)
	defer cancel()
	exec := executionID()
	results := make([]*applied, len(rows))
	unknown := make([]bool, len(rows))
	failRow = len(rows)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	sem := make(chan struct{}, ic.cfg.Concurrency)
	for i, r := range rows {
		sem <- struct{}{}
		mu.Lock()
		stop := fail != nil
		mu.Unlock()
		if stop {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var last *stripeapi.Response
			for j, c := range r.Calls {
				// Deterministic per statement execution, row and call: a
				// retry of this call (by stripeapi) can never make a second
				// object.
				key := fmt.Sprintf("pgstripe-%s-%d-%d", exec, i, j)
				params := c.Params
				if c.Method == "POST" && len(st.Table.Included) > 0 {
					// The answer is the object, stored as sync stores it:
					// with its included lists (the same parameters on
					// every retry of the call, as its key demands).
					params = stripeapi.ExpandIncluded(params, st.Table, false)
				}
				resp, err := ic.cfg.Stripe.Do(ctx, stripeapi.Request{Method: c.Method, Path: c.Path, Params: params, IdempotencyKey: key})
				if err == nil {
					err = checkAnswer(resp)
				}
				if err != nil && c.Method == "DELETE" {
					if gone, ok := ic.confirmDeleted(ctx, c.Path, r.ID, st.Table.Object, err); ok {
						resp, err = gone, nil
					}
				}
				if err != nil {
					ic.log.Info("write-through call failed", "call", c.Method+" "+c.Path, "err", err)
					f := &callFailure{resp: stripeErrorResponse(err, c.Method+" "+c.Path), outcome: outcomeOf(err, c.Method)}
					if last != nil {
						// The row's earlier calls (an update before a
						// finalize) did change the object: apply that state.
						f.earlier = fmt.Sprintf("the row's earlier call %s %s reached Stripe and is applied locally",
							r.Calls[j-1].Method, r.Calls[j-1].Path)
						results[i] = &applied{row: i, id: r.ID, version: r.Version, resp: last, partial: true}
					}
					mu.Lock()
					unknown[i] = f.outcome == outcomeUnknown
					if i < failRow {
						failRow, fail = i, f
					}
					mu.Unlock()
					return
				}
				last = resp
			}
			id := r.ID
			if last != nil {
				if got, err := stripeapi.ObjectID(last.Body); err == nil && got != "" {
					id = got
				}
			}
			results[i] = &applied{row: i, id: id, version: r.Version, resp: last}
		}()
	}
	wg.Wait()
	for i, a := range results {
		if a != nil {
			done = append(done, *a)
		}
		if unknown[i] && i != failRow {
			uncertain = append(uncertain, i)
		}
	}
	return done, fail, failRow, uncertain
}

// callFailure is a failed call of a statement. Its DETAIL is finished
// once the statement's other calls are known: resp's is Stripe's answer
// alone, then come what the call did (outcome's clause) and earlier.
type callFailure struct {
	resp    *pgproto3.ErrorResponse
	outcome callOutcome
	earlier string // the row's earlier call that reached Stripe, or ""
}

// checkAnswer refuses a successful answer that is not a Stripe object with
// an id: it can't be stored, so the row can't be applied nor returned. The
// call did take effect (Stripe said 2xx), so the error is one of unknown
// outcome (see unknownOutcome).
func checkAnswer(resp *stripeapi.Response) error {
	if _, err := stripeapi.ObjectID(resp.Body); err != nil {
		return &stripeapi.Error{HTTPStatus: resp.StatusCode, Type: "api_error", RequestID: resp.RequestID,
			Message: fmt.Sprintf("Stripe answered HTTP %d with a body that is not an object with an id", resp.StatusCode)}
	}
	return nil
}

// confirmDeleted decides whether a DELETE that Stripe refused (4xx) has
// nevertheless happened. Stripe ignores idempotency keys on DELETE: when a
// first attempt's answer was lost, the retry finds the object gone (404)
// or already canceled. The object's retrieve tells: a 404 or a deleted stub
// means deleted, a canceled subscription means canceled. Then the delete
// succeeded as far as the client is concerned (its row was in the table, so
// the object existed), and the returned state is applied.
func (ic *Interceptor) confirmDeleted(ctx context.Context, path, id, object string, callErr error) (*stripeapi.Response, bool) {
	var se *stripeapi.Error
	if !errors.As(callErr, &se) || se.HTTPStatus < 400 || se.HTTPStatus >= 500 || se.HTTPStatus == 429 {
		return nil, false
	}
	resp, err := ic.cfg.Stripe.Get(ctx, path, nil)
	switch {
	case err == nil:
		var o struct {
			Deleted bool   `json:"deleted"`
			Status  string `json:"status"`
		}
		if json.Unmarshal(resp.Body, &o) == nil && (o.Deleted || o.Status == "canceled") {
			ic.log.Info("DELETE refused but the object is already gone in Stripe; treated as done", "path", path, "refusal", se.Message)
			return resp, true
		}
	case stripeapi.IsNotFound(err):
		ic.log.Info("DELETE refused and the object no longer exists in Stripe; treated as deleted", "path", path)
		stub, _ := json.Marshal(map[string]any{"id": id, "object": object, "deleted": true})
		return &stripeapi.Response{Body: stub, AsOf: time.Now().Truncate(time.Second), StatusCode: 200}, true
	}
	return nil, false
}

func executionID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// apply upserts Stripe's answers through pgstripe's own connection. It
// returns a warning for the client when the local copy could not be
// updated now (the events loop will).
func (ic *Interceptor) apply(ctx context.Context, t *schema.Table, done []applied) string {
	var objs []store.Object
	var prior []applied
	for _, d := range done {
		if d.resp == nil {
			continue // nothing changed for this row
		}
		o := store.Object{Raw: ic.completeIncluded(ctx, t, d.id, d.resp.Body), AsOf: d.resp.AsOf}
		o.Children = ic.completeChildren(ctx, t, d.id, d.resp.Body)
		objs = append(objs, o)
		if d.version != "" {
			prior = append(prior, d)
		}
	}
	if len(objs) == 0 {
		return ""
	}
	deletedFrom := ic.deletedParents(ctx, t, objs)
	res, err := ic.upsert(ctx, t, objs, prior)
	for try := 1; try < 5 && retryable(err); try++ {
		// Another apply (the events loop's) locked the rows in another
		// order and Postgres chose this transaction to abort, or the
		// pool lent a connection that a Postgres restart had ended: the
		// transaction rolled back whole (the upsert is idempotent), so
		// run it again, on a fresh connection after a pause if need be.
		if !conflict(err) {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(try) * 100 * time.Millisecond):
			}
		}
		res, err = ic.upsert(ctx, t, objs, prior)
	}
	if err != nil {
		ic.log.Warn("write-through apply failed; the events loop will catch up", "table", t.Name, "err", err)
		return "the change reached Stripe but the local copy could not be updated now (" + shortErr(err) + "); it will catch up from Stripe's events"
	}
	if len(res.Ambiguous) > 0 {
		ic.refetch(ctx, t, res.Ambiguous)
	}
	if len(t.Included) > 0 && len(res.Incomplete) > 0 {
		// An included list Stripe's answer lacked or that could not be
		// paged: one more try; else the object's next event does it.
		ic.refetch(ctx, t, res.Incomplete)
	}
	ic.refreshParents(ctx, t, objs, deletedFrom)
	if t.Name == "invoice_line_items" {
		// A line's change is made on its invoice item too, which Stripe
		// announces by no event of its own.
		if it, ok := schema.Lookup("invoiceitems"); ok {
			ic.fetchAndApply(ctx, it, referenced(objs, "invoice_item"))
		}
	}
	return ""
}

// retryable reports an error after which the apply may simply run again:
// a deadlock or serialization failure (conflict), or a connection that
// was gone before the transaction committed (Postgres restarted or
// crashed since the pool last used it: "conn closed", 57P01 and the like).
func retryable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return conflict(err) || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	return pgconn.SafeToRetry(err)
}

func conflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// deletedParents gives the parents of deleted child rows. Stripe answers a
// delete with {id, object, deleted} only, so the parent is known from the
// local row, read before the apply removes it.
func (ic *Interceptor) deletedParents(ctx context.Context, t *schema.Table, objs []store.Object) []string {
	if t.Parent == nil {
		return nil
	}
	var ids []string
	for _, o := range objs {
		var head struct {
			ID      string `json:"id"`
			Deleted bool   `json:"deleted"`
		}
		if json.Unmarshal(o.Raw, &head) == nil && head.Deleted && head.ID != "" {
			ids = append(ids, head.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := ic.cfg.Pool.Query(ctx, `SELECT DISTINCT `+pgx.Identifier{t.Parent.Column}.Sanitize()+` FROM `+t.QualifiedName()+
		` WHERE id = ANY($1) AND `+pgx.Identifier{t.Parent.Column}.Sanitize()+` IS NOT NULL`, ids)
	if err != nil {
		ic.log.Warn("write-through: reading the parents of deleted rows failed", "table", t.Name, "err", err)
		return nil
	}
	parents, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		ic.log.Warn("write-through: reading the parents of deleted rows failed", "table", t.Name, "err", err)
		return nil
	}
	return parents
}

type lockTimeoutKey struct{}

// inTxLockTimeout bounds the apply's lock wait for a client inside a
// transaction block.
const inTxLockTimeout = 250 * time.Millisecond

// upsert applies objs in one transaction of our own. prior are rows whose
// stored state was read (at their version) before the Stripe call: if such a
// row is unchanged and stored with the same Stripe second as the answer, the
// store could not order the two, yet the answer is certainly newer (the
// stored state existed before the request was sent). Its _as_of is moved a
// microsecond back so the answer applies; if anything wrote the row in
// between, the version differs and the store decides as usual.
func (ic *Interceptor) upsert(ctx context.Context, t *schema.Table, objs []store.Object, prior []applied) (store.Result, error) {
	// One round trip for BEGIN and the lock timeout.
	lt := ic.cfg.LockTimeout
	if d, ok := ctx.Value(lockTimeoutKey{}).(time.Duration); ok {
		lt = d
	}
	ms := max(lt.Milliseconds(), 1)
	tx, err := ic.cfg.Pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL lock_timeout = " + strconv.FormatInt(ms, 10)})
	if err != nil {
		return store.Result{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if len(prior) > 0 {
		ids := make([]string, len(prior))
		asOf := make([]time.Time, len(prior))
		versions := make([]string, len(prior))
		for i, d := range prior {
			ids[i], asOf[i], versions[i] = d.id, d.resp.AsOf, d.version
		}
		_, err := tx.Exec(ctx, `UPDATE `+t.QualifiedName()+` AS d SET "_as_of" = d."_as_of" - interval '1 microsecond'
FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) AS p(id, as_of, version)
WHERE d.id = p.id AND d."_as_of" = p.as_of
  AND pg_catalog.round(pg_catalog.date_part('epoch', d."_synced_at") * 1000000)::int8 = p.version`, ids, asOf, versions)
		if err != nil {
			return store.Result{}, err
		}
	}
	res, err := store.Upsert(ctx, tx, t.Name, objs)
	if err != nil {
		return res, err
	}
	return res, tx.Commit(ctx)
}

// refetch handles objects the store could not order: the stored row has
// the same Stripe second as the answer but different content (the object
// changed twice within one second). The current state, read after the
// stored row's version was taken, is newer than the stored one.
func (ic *Interceptor) refetch(ctx context.Context, t *schema.Table, ids []string) {
	ic.fetchAndApply(ctx, t, ids)
}

// refreshParents re-reads the parents of written child rows (the
// subscription after a write to one of its items), so the list the parent
// embeds is current too; deletedFrom are the parents of deleted rows, whose
// answers don't name them. Best effort: what fails is left to the events
// loop.
func (ic *Interceptor) refreshParents(ctx context.Context, t *schema.Table, objs []store.Object, deletedFrom []string) {
	if t.Parent == nil {
		return
	}
	pt, ok := schema.Lookup(t.Parent.Table)
	if !ok {
		return
	}
	seen := map[string]bool{}
	var ids []string
	for _, pid := range deletedFrom {
		if !seen[pid] {
			seen[pid] = true
			ids = append(ids, pid)
		}
	}
	for _, pid := range referenced(objs, t.Parent.Column) {
		if !seen[pid] {
			seen[pid] = true
			ids = append(ids, pid)
		}
	}
	ic.fetchAndApply(ctx, pt, ids)
}

// referenced returns the distinct ids that objs name in field, which holds
// an id (unexpanded).
func referenced(objs []store.Object, field string) []string {
	seen := map[string]bool{}
	var ids []string
	for _, o := range objs {
		var head map[string]json.RawMessage
		var id string
		if json.Unmarshal(o.Raw, &head) != nil || json.Unmarshal(head[field], &id) != nil || id == "" || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids
}

// fetchAndApply retrieves objects and applies them. Each stored row's
// version is read before its retrieve is sent, so if the row is unchanged
// at apply time the retrieved state is known to be the newer one, also
// within the same Stripe second (see upsert).
func (ic *Interceptor) fetchAndApply(ctx context.Context, t *schema.Table, ids []string) {
	if t.RetrievePath == "" || len(ids) == 0 {
		return
	}
	pctx := stripeapi.WithPriority(ctx, stripeapi.Interactive)
	var objs []store.Object
	var prior []applied
	for _, id := range ids {
		var version *int64
		err := ic.cfg.Pool.QueryRow(ctx, `SELECT pg_catalog.round(pg_catalog.date_part('epoch', "_synced_at") * 1000000)::int8 FROM `+
			t.QualifiedName()+` WHERE id = $1`, id).Scan(&version)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			ic.log.Warn("write-through: reading a row's version failed", "table", t.Name, "id", id, "err", err)
			continue
		}
		resp, err := ic.cfg.Stripe.Get(pctx, strings.ReplaceAll(t.RetrievePath, "{id}", url.PathEscape(id)), stripeapi.ExpandIncluded(nil, t, false))
		if err != nil {
			ic.log.Warn("write-through: re-reading an object failed", "table", t.Name, "id", id, "err", err)
			continue
		}
		objs = append(objs, store.Object{Raw: ic.completeIncluded(ctx, t, id, resp.Body), AsOf: resp.AsOf, Children: ic.completeChildren(ctx, t, id, resp.Body)})
		if version != nil {
			prior = append(prior, applied{id: id, version: strconv.FormatInt(*version, 10), resp: resp})
		}
	}
	if len(objs) == 0 {
		return
	}
	if res, err := ic.upsert(ctx, t, objs, prior); err != nil {
		ic.log.Warn("write-through: applying a re-read object failed", "table", t.Name, "err", err)
	} else if len(res.Ambiguous) > 0 {
		ic.log.Info("write-through: objects changed again while re-read; the events loop will order them", "table", t.Name, "ids", res.Ambiguous)
	}
}

// returningFresh answers RETURNING for a client whose transaction snapshot
// can't see the applied rows (REPEATABLE READ, SERIALIZABLE). Our own
// connection only reads the rows, with SQL of ours; the client's target
// list runs on the client's connection over those rows given as data
// (ReturningRows). Running the client's expressions on our connection
// would run them with our role's privileges: SET ROLE doesn't contain
// them (set_config('role', 'none', true) in an expression undoes it), and
// functions that run SQL of their own (query_to_xml) are checked only
// when they run. The client's privileges on the columns it returns were
// checked by Postgres when the same target list ran over the table, and
// the rows carry only the columns the role may read (see returnRows);
// rows that row-level security hides from the client are not given
// (writes under row-level security are refused before any call). It
// returns an error only from the client's connection, and nil, nil when
// the rows could not be read (the client's snapshot answers then).
func (ic *Interceptor) returningFresh(ctx context.Context, up Upstream, p params, st *translate.Statement, ids []string) (*Result, error) {
	if st.ReturningRows == nil {
		return nil, nil
	}
	byID, err := ic.localRows(ctx, st.Table, ids)
	if err != nil {
		// Nothing ran on the client's connection: answer from its snapshot.
		ic.log.Warn("write-through: reading the applied rows for RETURNING failed", "table", st.Table.Name, "err", err)
		return nil, nil
	}
	return returnRows(ctx, up, p, st, ids, byID)
}

// returningAnswered answers RETURNING from Stripe's answers, for when the
// apply could not write them: the rows mapped as the store would store
// them, given to the client's target list as data (ReturningRows, see
// returningFresh). A row that needed no call is read from the table. It
// returns an error only from the client's connection, and nil, nil when
// the rows could not be built (the table answers then).
func (ic *Interceptor) returningAnswered(ctx context.Context, up Upstream, p params, st *translate.Statement, done []applied) (*Result, error) {
	if st.ReturningRows == nil {
		return nil, nil
	}
	var objs []json.RawMessage
	var asOf []time.Time
	var ids, answered, unchanged []string
	for _, d := range done {
		ids = append(ids, d.id)
		if d.resp == nil {
			unchanged = append(unchanged, d.id)
			continue
		}
		objs = append(objs, d.resp.Body)
		asOf = append(asOf, d.resp.AsOf)
		answered = append(answered, d.id)
	}
	byID := map[string]json.RawMessage{}
	if len(unchanged) > 0 {
		var err error
		if byID, err = ic.localRows(ctx, st.Table, unchanged); err != nil {
			ic.log.Warn("write-through: reading the unchanged rows for RETURNING failed", "table", st.Table.Name, "err", err)
			return nil, nil
		}
	}
	if len(objs) > 0 {
		arr, err := json.Marshal(objs)
		if err != nil {
			return nil, nil
		}
		var text []byte
		if err := ic.cfg.Pool.QueryRow(ctx, store.RowsSQL(st.Table), string(arr), asOf).Scan(&text); err != nil {
			ic.log.Warn("write-through: mapping Stripe's answers for RETURNING failed", "table", st.Table.Name, "err", err)
			return nil, nil
		}
		var rows []json.RawMessage
		if json.Unmarshal(text, &rows) != nil || len(rows) != len(answered) {
			return nil, nil
		}
		for i, r := range rows {
			byID[answered[i]] = r
		}
	}
	return returnRows(ctx, up, p, st, ids, byID)
}

// localRows reads the rows of ids from table t on our own connection, as
// jsonb by id (our SQL only: no expression of the client's runs there).
func (ic *Interceptor) localRows(ctx context.Context, t *schema.Table, ids []string) (map[string]json.RawMessage, error) {
	rows, err := ic.cfg.Pool.Query(ctx, `SELECT t.id, pg_catalog.to_jsonb(t)::text FROM `+t.QualifiedName()+
		` AS t WHERE t.id = ANY($1::pg_catalog.text[])`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byID := make(map[string]json.RawMessage, len(ids))
	for rows.Next() {
		var id, row string
		if err := rows.Scan(&id, &row); err != nil {
			return nil, err
		}
		byID[id] = json.RawMessage(row)
	}
	return byID, rows.Err()
}

// returnRows runs the client's RETURNING target list (ReturningRows) on the
// client's connection over the rows of byID, in the order of ids (ids
// without a row are left out), given as data. The JSON is ASCII-escaped:
// the client's connection reads it in the session's client_encoding.
//
// The rows carry only the columns the client's role may read (the others
// are NULL). The run over the table checked the columns its target list
// named, but the list is parsed anew here, after the statement's own
// expressions may have changed what its names mean (set_config of
// search_path, a temp table a function creates): a subquery's table
// without the column makes the column's name the target's.
func returnRows(ctx context.Context, up Upstream, p params, st *translate.Statement, ids []string, byID map[string]json.RawMessage) (*Result, error) {
	readable, err := readableColumns(ctx, up, st.Table)
	if err != nil {
		return nil, err
	}
	ordered := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		if r, ok := byID[id]; ok {
			if r, err = onlyColumns(r, readable); err != nil {
				return nil, nil
			}
			ordered = append(ordered, r)
		}
	}
	arr, err := json.Marshal(ordered)
	if err != nil {
		return nil, nil
	}
	return p.queryWith(ctx, up, *st.ReturningRows, asciiJSON(arr), oidJSONB)
}

// readableColumns are the columns of t that the client's role may read
// now, as its own connection tells (operators named with their schema:
// see checkPrivileges).
func readableColumns(ctx context.Context, up Upstream, t *schema.Table) (map[string]bool, error) {
	res, err := up.Query(ctx, `SELECT a.attname FROM pg_catalog.pg_attribute a
WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
  AND pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT')`,
		[][]byte{[]byte(t.QualifiedName())}, []uint32{oidText}, nil, nil)
	if err != nil {
		return nil, err
	}
	readable := make(map[string]bool, len(res.Rows))
	for _, r := range res.Rows {
		if len(r) == 1 {
			readable[string(r[0])] = true
		}
	}
	return readable, nil
}

// onlyColumns leaves out of row (a JSON object by column) the columns not
// in readable.
func onlyColumns(row json.RawMessage, readable map[string]bool) (json.RawMessage, error) {
	var cols map[string]json.RawMessage
	if err := json.Unmarshal(row, &cols); err != nil {
		return nil, err
	}
	all := true
	for c := range cols {
		if !readable[c] {
			delete(cols, c)
			all = false
		}
	}
	if all {
		return row, nil
	}
	return json.Marshal(cols)
}

// completeIncluded pages the rest of raw's included lists
// (schema.IncludedList) that Stripe cut at its first page. When that
// fails, raw is stored as it is: the store reports the object incomplete
// (Result.Incomplete), and apply tries once more.
func (ic *Interceptor) completeIncluded(ctx context.Context, t *schema.Table, id string, raw json.RawMessage) json.RawMessage {
	whole, _, err := ic.cfg.Stripe.CompleteIncluded(stripeapi.WithPriority(ctx, stripeapi.Interactive), t, raw)
	if err != nil {
		ic.log.Warn("write-through: paging an included list failed; the events loop will complete it", "table", t.Name, "id", id, "err", err)
		return raw
	}
	return whole
}

// completeChildren pages nested lists that Stripe cut at its first page, so
// the store gets complete child sets.
func (ic *Interceptor) completeChildren(ctx context.Context, t *schema.Table, id string, raw json.RawMessage) map[string][]json.RawMessage {
	if len(t.Nested) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	var out map[string][]json.RawMessage
	for _, n := range t.Nested {
		var l struct {
			HasMore bool `json:"has_more"`
		}
		if v, ok := obj[n.Field]; !ok || json.Unmarshal(v, &l) != nil || !l.HasMore {
			continue
		}
		path := strings.ReplaceAll(n.ListPath, "{id}", url.PathEscape(id))
		q := url.Values{}
		if !strings.Contains(n.ListPath, "{id}") {
			if ct, ok := schema.Lookup(n.Table); ok && ct.Parent != nil {
				q.Set(ct.Parent.Column, id)
			}
		}
		var items []json.RawMessage
		err := ic.cfg.Stripe.ListAll(stripeapi.WithPriority(ctx, stripeapi.Interactive), path, q, func(p *stripeapi.Page) error {
			items = append(items, p.Data...)
			return nil
		})
		if err != nil {
			ic.log.Warn("write-through: paging a nested list failed; stored children stay as they were", "table", t.Name, "id", id, "field", n.Field, "err", err)
			continue
		}
		if out == nil {
			out = map[string][]json.RawMessage{}
		}
		out[n.Field] = items
	}
	return out
}

// shortErr is an error of pgstripe's own pool for the client's eyes. A
// connection failure names pgstripe's role, database and the server's
// internal address, none of which is the client's business (the log has
// them).
func shortErr(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code + " " + pe.Message
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return "connection failed"
	}
	return err.Error()
}

// ours tells whether st writes to a stripe table: its target is named so
// (no Resolve), one of its unqualified names resolves there, or a prepared
// statement it runs is ours.
// The texts of the prepared statements read take at most limit bytes.
func ours(ctx context.Context, up Upstream, st *translate.Statement, limit int64) (bool, error) {
	return oursDepth(ctx, up, st, limit, 0)
}

// maxPreparedDepth bounds the chain of prepared statements followed (a
// statement prepared through the protocol may itself be an EXECUTE);
// deeper counts as ours, so is refused.
const maxPreparedDepth = 8

func oursDepth(ctx context.Context, up Upstream, st *translate.Statement, limit int64, depth int) (bool, error) {
	if len(st.Resolve) == 0 && len(st.Prepared) == 0 {
		return true, nil
	}
	if len(st.Resolve) > 0 {
		if mine, err := resolve(ctx, up, st.Resolve); err != nil || mine {
			return mine, err
		}
	}
	if len(st.Prepared) == 0 {
		return false, nil
	}
	if depth >= maxPreparedDepth {
		return true, nil
	}
	// The session's own record of the statement's text, as Postgres will
	// run it: classified like any statement, its names resolved now (a
	// prepared statement is analysed again when search_path changes).
	res, err := up.QueryLimit(ctx, limit, `SELECT name, statement FROM pg_catalog.pg_prepared_statements WHERE name OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])`,
		[][]byte{textArray(st.Prepared)}, []uint32{oidTextArray}, nil, nil)
	if err != nil {
		return false, err
	}
	for _, r := range res.Rows {
		if len(r) != 2 || r[0] == nil || r[1] == nil {
			continue
		}
		c := translate.Classify(translate.PreparedText(string(r[1]), string(r[0])))
		readings := []translate.Class{c}
		if c.Stmt != nil && c.Stmt.Strings != nil {
			// Read with the standard_conforming_strings of its PREPARE,
			// which is gone: ours if either reading is.
			readings = []translate.Class{c.Stmt.Strings.On, c.Stmt.Strings.Off}
		}
		for _, c := range readings {
			switch c.Action {
			case translate.Reject:
				return true, nil
			case translate.Write:
				if mine, err := oursDepth(ctx, up, c.Stmt, limit, depth+1); err != nil || mine {
					return mine, err
				}
			}
		}
	}
	return false, nil
}

// resolve tells whether any of the quoted names resolves, with the client's
// search_path, to a table in schema stripe.
func resolve(ctx context.Context, up Upstream, names []string) (bool, error) {
	res, err := up.Query(ctx, `SELECT pg_catalog.count(*) FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(name)
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(u.name)::pg_catalog.oid
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE n.nspname OPERATOR(pg_catalog.=) 'stripe'`,
		[][]byte{textArray(names)}, []uint32{oidTextArray}, nil, nil)
	if err != nil {
		return false, err
	}
	return len(res.Rows) == 1 && len(res.Rows[0]) == 1 && string(res.Rows[0][0]) != "0", nil
}

// checkPrivileges refuses the write unless the client's role may do it to
// the local table, as Postgres would decide: the statement's privilege on
// the table or on every assigned column (column grants), plus SELECT where
// the statement reads (WHERE, RETURNING; table or any column), and on
// every column RETURNING reads (translate.Statement.ReturningColumns):
// Postgres checks those when the statement starts, before it changes
// anything, while our RETURNING runs after the Stripe calls. A read-only
// transaction refuses the write as Postgres would (25006).
//
// It also returns the session's settings: statement_timeout, which bounds
// the whole statement, Stripe's part included, as Postgres would,
// lock_timeout, client_min_messages, which decides whether the reply's
// notices are sent.
func (ic *Interceptor) checkPrivileges(ctx context.Context, up Upstream, st *translate.Statement) (settings, *pgproto3.ErrorResponse) {
	privs := []string{st.Op.String()}
	if st.Op != translate.Insert || st.Returning != nil {
		privs = append(privs, "SELECT")
	}
	cols := make([]string, len(st.Fields))
	for i, f := range st.Fields {
		cols[i] = f.Column
	}
	var retCols []string
	retAll := "f"
	if st.Returning != nil {
		retCols = st.ReturningColumns
		if st.ReturningAll {
			retAll = "t"
		}
	}
	rel := pgx.Identifier{schema.DataSchema, st.Table.Name}.Sanitize()
	// Operators are named with their schema, as functions are: the
	// client's search_path may put its own "=" before pg_catalog's (or an
	// operator of its own that fits the types better anywhere in it), and
	// the answer must be Postgres's, not the client's. denied lists the
	// columns RETURNING reads that the role may not: as in Postgres, a
	// whole-row reference needs every column.
	res, err := up.Query(ctx, `SELECT p, pg_catalog.current_setting('transaction_read_only'), pg_catalog.has_table_privilege($1, p) OR CASE
    WHEN p OPERATOR(pg_catalog.=) 'SELECT' THEN pg_catalog.has_any_column_privilege($1, p) AND r.denied IS NULL
    WHEN (p OPERATOR(pg_catalog.=) 'INSERT' OR p OPERATOR(pg_catalog.=) 'UPDATE')
      AND pg_catalog.cardinality($3::pg_catalog.text[]) OPERATOR(pg_catalog.>) 0 THEN
      (SELECT pg_catalog.bool_and(pg_catalog.has_column_privilege($1, c, p)) FROM pg_catalog.unnest($3::pg_catalog.text[]) AS c)
    ELSE false END,
  pg_catalog.current_setting('statement_timeout'), pg_catalog.row_security_active($1),
  pg_catalog.current_setting('client_min_messages'), pg_catalog.current_setting('client_encoding'),
  pg_catalog.current_setting('transaction_isolation'), pg_catalog.current_database(),
  pg_catalog.current_setting('lock_timeout'), r.denied
FROM pg_catalog.unnest($2::pg_catalog.text[]) AS p,
  (SELECT pg_catalog.string_agg(a.attname::pg_catalog.text, ', ' ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass::pg_catalog.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
      AND ($5::pg_catalog.bool OR a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.text[]))
      AND NOT pg_catalog.has_column_privilege($1, a.attnum, 'SELECT')) AS r(denied)`,
		[][]byte{[]byte(rel), textArray(privs), textArray(cols), textArray(retCols), []byte(retAll)},
		[]uint32{oidText, oidTextArray, oidTextArray, oidTextArray, oidBool}, nil, nil)
	if err != nil {
		return settings{}, pgError(err)
	}
	ours, err := ic.database(ctx)
	if err != nil {
		ic.log.Warn("write-through: reading pgstripe's database name failed", "err", err)
		return settings{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "08006",
			Message: "pgstripe could not reach its own database: " + shortErr(err), Detail: "Stripe was not called"}
	}
	var sess settings
	for _, r := range res.Rows {
		if len(r) != 11 {
			continue
		}
		if db := string(r[8]); db != ours {
			// The proxy opens a session on whatever database the client
			// names, and any role may own one on the same server with a
			// schema called stripe (pgstripe migrate builds one). Its
			// tables, privileges and rows are the role's own making: a
			// write there must not reach the Stripe account whose copy
			// lives in pgstripe's database.
			return settings{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: translate.CodeFeatureNotSupported,
				Message: fmt.Sprintf("pgstripe writes to Stripe only from database %q: this session is connected to %q", ours, db),
				Detail:  "Stripe was not called",
				Hint:    "connect to the database pgstripe syncs, or to this one directly, not through the proxy"}
		}
		sess.encoding = string(r[6])
		switch string(r[7]) {
		case "repeatable read", "serializable":
			sess.snapshot = true
		}
		sess.timeout = pgDuration(string(r[3]))
		sess.lockTimeout = pgDuration(string(r[9]))
		switch strings.ToLower(string(r[5])) {
		case "warning", "error":
			sess.quiet = true
		}
		if string(r[1]) == "on" {
			return settings{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "25006",
				Message: "cannot execute " + st.Op.String() + " in a read-only transaction", Detail: "Stripe was not called"}
		}
		if string(r[2]) != "t" && string(r[0]) == "SELECT" && r[10] != nil {
			// Postgres's message for a column privilege missing in
			// RETURNING is the table's.
			return settings{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: translate.CodeInsufficientPrivilege,
				Message: "permission denied for table " + st.Table.Name,
				Detail:  fmt.Sprintf("RETURNING reads columns of stripe.%s this role may not SELECT (%s); Stripe was not called", st.Table.Name, r[10])}
		}
		if string(r[2]) != "t" {
			return settings{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: translate.CodeInsufficientPrivilege,
				Message: "permission denied for table " + st.Table.Name,
				Detail:  fmt.Sprintf("%s on stripe.%s needs the %s privilege; Stripe was not called", st.Op, st.Table.Name, string(r[0]))}
		}
		if string(r[4]) == "t" {
			// Policies decide row by row, on the rows a statement reads
			// and writes; ours read with SELECT's policies and the apply
			// runs as pgstripe's role, so the policies for INSERT, UPDATE
			// and DELETE would not hold. Refuse rather than call Stripe
			// for rows the role may not change.
			return settings{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: translate.CodeInsufficientPrivilege,
				Message: "row-level security is enabled on stripe." + st.Table.Name + " for this role: pgstripe cannot apply its policies to a write that goes to Stripe",
				Detail:  "Stripe was not called",
				Hint:    "write through a role that row-level security does not apply to (one with BYPASSRLS, or the table's owner without FORCE ROW LEVEL SECURITY)"}
		}
	}
	return sess, nil
}

// database is the name of the database pgstripe syncs (Config.Pool's),
// asked once.
func (ic *Interceptor) database(ctx context.Context) (string, error) {
	ic.dbMu.Lock()
	defer ic.dbMu.Unlock()
	if ic.db == "" {
		if err := ic.cfg.Pool.QueryRow(ctx, `SELECT pg_catalog.current_database()`).Scan(&ic.db); err != nil {
			return "", err
		}
	}
	return ic.db, nil
}

// settings are the client session's settings a write-through obeys.
type settings struct {
	timeout time.Duration // statement_timeout (0: none)
	// lockTimeout is the session's lock_timeout (0: none): see lockObjects.
	lockTimeout time.Duration
	quiet       bool   // client_min_messages above NOTICE
	encoding    string // client_encoding: what the session's values are in
	// snapshot: the transaction (an explicit one, or the implicit one our
	// queries share outside a block) keeps the snapshot of its first query,
	// taken before the apply (REPEATABLE READ, SERIALIZABLE, also as
	// default_transaction_isolation).
	snapshot bool
}

// pgDuration reads a time setting as current_setting shows it ("0",
// "500ms", "5s", "1min", "2h", "1d"; a bare number is milliseconds).
// Anything unreadable is 0: no bound beyond Config.Timeout.
func pgDuration(v string) time.Duration {
	v = strings.TrimSpace(v)
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9') {
		i++
	}
	n, err := strconv.ParseInt(v[:i], 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[strings.TrimSpace(v[i:])]
	return time.Duration(n) * unit
}

const (
	oidBool      = 16
	oidText      = 25
	oidBytea     = 17
	oidTextArray = 1009
	oidJSONB     = 3802
	// record and record[]: anonymous composite types.
	oidRecord      = 2249
	oidRecordArray = 2287
)

// textArray encodes a text[] literal.
func textArray(vals []string) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, r := range v {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// params are the client's bound parameters, reshaped for our own queries.
type params struct {
	vals    [][]byte
	oids    []uint32
	formats []int16 // one per parameter
	results []int16
	// once are the rows of the WITH queries evaluated once
	// (translate.Statement.Once), binary text[][], one per name.
	once [][]byte
	// held, when set, bounds the rows the queries bring into memory.
	held *held
}

// storedObjects reads the stored copies (_raw) of the objects refs names
// (translate.Statement.Objects: objects a value gives whole where Stripe
// takes only their id, and rows an UPDATE sets metadata of, or of their
// items, through _params), for Build to tell a copy as stored from one
// the statement changed, whose change sending the id would drop, and to
// count the metadata keys Stripe merges into. It reads on pgstripe's own
// pool, but only tables the client's role may read in full (SELECT on id
// and _raw, no row-level security active): the object type is the
// client's to write (any type fits any id place), and whether a copy
// passes tells the client whether its keys match the stored row. The
// copies of other tables count as not stored: such an object goes only as
// its id alone, or as the column already holds it, and metadata set
// through _params is counted without the row's keys. What it reads counts
// against h.
func (ic *Interceptor) storedObjects(ctx context.Context, up Upstream, h *held, refs []translate.ObjectRef) (translate.Stored, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	// The tables in the order refs first names them, with their ids.
	var tables []*schema.Table
	var names []string
	byTable := map[string][]string{}
	for _, r := range refs {
		t, ok := schema.Lookup(r.Table)
		if !ok {
			continue
		}
		if byTable[t.Name] == nil {
			tables = append(tables, t)
			names = append(names, t.QualifiedName())
		}
		byTable[t.Name] = append(byTable[t.Name], r.ID)
	}
	if len(tables) == 0 {
		return nil, nil
	}
	res, err := up.Query(ctx, `SELECT t FROM pg_catalog.unnest($1::pg_catalog.text[]) AS t
WHERE pg_catalog.has_column_privilege(t, 'id', 'SELECT') AND pg_catalog.has_column_privilege(t, '_raw', 'SELECT')
  AND NOT pg_catalog.row_security_active(t)`,
		[][]byte{textArray(names)}, []uint32{oidTextArray}, nil, nil)
	if err != nil {
		return nil, err
	}
	readable := map[string]bool{}
	for _, r := range res.Rows {
		if len(r) == 1 {
			readable[string(r[0])] = true
		}
	}
	stored := translate.Stored{}
	for _, t := range tables {
		if !readable[t.QualifiedName()] {
			continue
		}
		rows, err := ic.cfg.Pool.Query(ctx, `SELECT id, _raw::text FROM `+t.QualifiedName()+` WHERE id = ANY($1) AND _raw IS NOT NULL`, byTable[t.Name])
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, raw string
			if err := rows.Scan(&id, &raw); err != nil {
				rows.Close()
				return nil, err
			}
			if err := h.take(int64(len(id) + len(raw))); err != nil {
				rows.Close()
				return nil, err
			}
			stored[translate.ObjectRef{Table: t.Name, ID: id}] = []byte(raw)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return stored, nil
}

// storedBytes is what storedObjects counted against held for stored.
func storedBytes(stored translate.Stored) int64 {
	var n int64
	for ref, raw := range stored {
		n += int64(len(ref.ID) + len(raw))
	}
	return n
}

// DefaultMaxHeld is Config.MaxHeld's default. A write sends Stripe at
// most 100 rows of parameters Stripe keeps small (a metadata value is
// 500 characters, a description a few thousand): a statement of normal
// size holds kilobytes. 64 MB leaves room for WITH queries that RETURNING
// reads (a lookup table of the application's own) while a client can't
// make the proxy hold more than a small multiple of it (the rows, the
// WITH rows encoded again as a parameter, Build's copies), where the
// rows of one statement could otherwise take gigabytes.
const DefaultMaxHeld = 64 << 20

// held is what is left of a statement's Config.MaxHeld. It counts every
// row read, also those let go since, but for what is given back where it
// would stop a statement that fits (a RETURNING run again, the stored
// copies once Build is done): a statement of normal size is far below
// it, and the count then bounds the peak too.
type held struct {
	left, max int64
}

// query is up.QueryLimit within what is left (or up.Query without h).
func (h *held) query(ctx context.Context, up Upstream, sql string, params [][]byte, oids []uint32, pf, rf []int16) (*Result, error) {
	if h == nil {
		return up.Query(ctx, sql, params, oids, pf, rf)
	}
	if h.left <= 0 {
		return nil, &proxy.ResultTooLargeError{Limit: h.max}
	}
	res, err := up.QueryLimit(ctx, h.left, sql, params, oids, pf, rf)
	var tl *proxy.ResultTooLargeError
	if errors.As(err, &tl) {
		// Past what was left, which is past the statement's limit: that
		// is the limit to name.
		return nil, &proxy.ResultTooLargeError{Limit: h.max}
	}
	if err != nil {
		return nil, err
	}
	h.left -= rowsBytes(res.Rows)
	return res, nil
}

// take counts n bytes read outside query; past what is left it is a
// *proxy.ResultTooLargeError.
func (h *held) take(n int64) error {
	if h == nil {
		return nil
	}
	h.left -= n
	if h.left < 0 {
		return &proxy.ResultTooLargeError{Limit: h.max}
	}
	return nil
}

// release gives back what rows, read by query and let go, counted.
func (h *held) release(rows [][][]byte) {
	h.give(rowsBytes(rows))
}

// give gives back n bytes that take counted, of data let go.
func (h *held) give(n int64) {
	if h != nil {
		h.left += n
	}
}

// rowsBytes is the memory rows take as proxy.RowBytes counts it, from
// the length of each DataRow they came in.
func rowsBytes(rows [][][]byte) int64 {
	var n int64
	for _, r := range rows {
		msg := 7 // type, length, number of values
		for _, v := range r {
			msg += 4 + len(v)
		}
		n += proxy.RowBytes(msg, len(r))
	}
	return n
}

func newParams(req Request) params {
	n := len(req.Params)
	p := params{vals: req.Params, oids: make([]uint32, n), formats: make([]int16, n), results: req.ResultFormats}
	copy(p.oids, req.ParamOIDs)
	for i := range p.formats {
		switch len(req.ParamFormats) {
		case 0:
		case 1:
			p.formats[i] = req.ParamFormats[0]
		default:
			if i < len(req.ParamFormats) {
				p.formats[i] = req.ParamFormats[i]
			}
		}
	}
	return p
}

// lockObjectSQL takes a transaction-scoped advisory lock per object of a
// table, in the order of the ids given (sorted by the caller).
const lockObjectSQL = `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pgstripe:' || $1 || ':' || id, 0)) FROM pg_catalog.unnest($2::pg_catalog.text[]) AS id`

// lockObjectWaitSQL is lockObjectSQL with lock_timeout $3 (ms) while it
// waits, set back to 0 (the session's, which is the only one it is used
// with) once every lock is taken. The uncorrelated subquery in WHERE is
// evaluated once, before the first row (a gating qual); the outer
// set_config runs on the aggregate's one row, after the last lock. After
// an error Postgres undoes both with the transaction's other settings.
const lockObjectWaitSQL = `SELECT pg_catalog.set_config('lock_timeout', '0', true) FROM (SELECT pg_catalog.count(pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pgstripe:' || $1 || ':' || id, 0)))
FROM pg_catalog.unnest($2::pg_catalog.text[]) AS id WHERE (SELECT pg_catalog.set_config('lock_timeout', $3, true)) IS NOT NULL) AS l`

// lockObjects serializes concurrent UPDATEs of the same objects, as row
// locks do in Postgres, and returns Eval's rows. An UPDATE computes its
// values from the local rows (SET balance = balance + 100): two sessions
// evaluating at once would both send Stripe the same result, and one
// change would be lost. Eval runs once on the client's connection (WHERE
// and SET evaluated once per row, as in Postgres: random(), nextval(), a
// function with side effects); then an advisory lock is taken per object
// found, held until the client's transaction ends (the implicit one ends
// after the write is applied locally, so the next writer reads the new
// state). The rows that another write changed meanwhile (their version
// differs now) are evaluated again, those alone (Recheck: WHERE and SET
// over the new version, as Postgres's EvalPlanQual does); those gone are
// dropped. Locks are taken in id order, so two statements can only
// deadlock across a client's own transaction, as they would in Postgres
// (40P01, before any Stripe call).
//
// The lock is not Postgres's row lock, and any role that may connect can
// take an advisory lock on the same key, even one with no privilege on
// the table, so it must not make the UPDATE wait without end as a row
// lock (which only a role that may write the table can hold) would. The
// session's lock_timeout bounds the wait when set (given as
// sessionTimeout, for the error); otherwise wait does, set as
// lock_timeout for that one query. Past it the statement fails with
// 55P03 naming the objects, before any Stripe call; statement_timeout,
// a cancel and deadlock detection apply as to any lock.
//
// current is pgstripe's pool when the client's transaction keeps its
// snapshot (REPEATABLE READ, SERIALIZABLE): its queries can't see what
// changed since, so the versions are read there, and a row another write
// changed or deleted since the snapshot fails the statement with 40001,
// as Postgres fails an UPDATE of a row changed concurrently. That
// includes the client's own earlier write of the object in the same
// transaction, which is applied outside it.
func lockObjects(ctx context.Context, up Upstream, current *pgxpool.Pool, p params, st *translate.Statement, wait, sessionTimeout time.Duration) ([][][]byte, error) {
	res, err := p.query(ctx, up, st.Eval, nil)
	if err != nil || len(res.Rows) == 0 || len(res.Rows) > translate.MaxRows {
		if err != nil {
			return nil, err
		}
		return res.Rows, nil // nothing to lock; or Build refuses the statement
	}
	rows := res.Rows
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, string(r[0]))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	lockSQL, args, oids := lockObjectSQL, [][]byte{[]byte(st.Table.Name), textArray(ids)}, []uint32{oidText, oidTextArray}
	if wait > 0 {
		lockSQL = lockObjectWaitSQL
		args = append(args, []byte(strconv.FormatInt(max(wait.Milliseconds(), 1), 10)))
		oids = append(oids, oidText)
	}
	if _, err := up.Query(ctx, lockSQL, args, oids, nil, nil); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" {
			return nil, lockNotAvailable(st.Table.Name, ids, wait, sessionTimeout)
		}
		return nil, err
	}
	versions := `SELECT t.id, ` + versionSQL + ` FROM ` + st.Table.QualifiedName() + ` AS t WHERE t.id = ANY($1::pg_catalog.text[])`
	now := make(map[string]string, len(ids))
	if current != nil {
		vrows, err := current.Query(ctx, versions, ids)
		if err != nil {
			return nil, err
		}
		var id string
		var version int64
		if _, err := pgx.ForEachRow(vrows, []any{&id, &version}, func() error {
			now[id] = strconv.FormatInt(version, 10)
			return nil
		}); err != nil {
			return nil, err
		}
		for _, r := range rows {
			if v, ok := now[string(r[0])]; !ok || v != string(r[1]) {
				return nil, &pgconn.PgError{Severity: "ERROR", Code: "40001",
					Message: "could not serialize access due to concurrent update",
					Detail:  fmt.Sprintf("stripe.%s %s changed after this transaction's snapshot; Stripe was not called", st.Table.Name, r[0]),
					Hint:    "retry the transaction; pgstripe applies writes outside the client's transaction, so under REPEATABLE READ a second write of one object in a transaction fails too: use READ COMMITTED"}
			}
		}
		return rows, nil
	}
	cur, err := up.Query(ctx, versions, [][]byte{textArray(ids)}, []uint32{oidTextArray}, nil, nil)
	if err != nil {
		return nil, err
	}
	for _, r := range cur.Rows {
		now[string(r[0])] = string(r[1])
	}
	changed := map[string]bool{}
	var recheck []string
	for _, r := range rows {
		if v, ok := now[string(r[0])]; ok && v != string(r[1]) && !changed[string(r[0])] {
			changed[string(r[0])] = true
			recheck = append(recheck, string(r[0]))
		}
	}
	again := map[string][][]byte{}
	if len(recheck) > 0 {
		res, err := p.query(ctx, up, st.Recheck, recheck)
		if err != nil {
			return nil, err
		}
		for _, r := range res.Rows {
			if _, ok := again[string(r[0])]; !ok {
				again[string(r[0])] = r
			}
		}
	}
	out := rows[:0]
	for _, r := range rows {
		id := string(r[0])
		if _, ok := now[id]; !ok {
			continue // deleted meanwhile: Postgres skips it too
		}
		if changed[id] {
			if r = again[id]; r == nil {
				continue // no longer matches WHERE
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// lockNotAvailable is lockObjects' error when the wait for the objects
// ids ran out.
func lockNotAvailable(table string, ids []string, wait, sessionTimeout time.Duration) error {
	which := ids[0]
	if len(ids) > 1 {
		shown := ids[:min(len(ids), 5)]
		which = "objects " + strings.Join(shown, ", ")
		if len(ids) > len(shown) {
			which += fmt.Sprintf(" and %d more", len(ids)-len(shown))
		}
		which += " (one of them)"
	}
	bound := fmt.Sprintf("the session's lock_timeout (%s)", sessionTimeout)
	if wait > 0 {
		bound = fmt.Sprintf("pgstripe's bound (%s; the session's lock_timeout is 0)", wait)
	}
	return &pgconn.PgError{Severity: "ERROR", Code: "55P03",
		Message: fmt.Sprintf("could not lock stripe.%s %s: another session held it past %s", table, which, bound),
		Detail:  "an UPDATE through pgstripe waits for another session's hold of the object (another write of it, until that transaction ends, or an advisory lock on its key); Stripe was not called",
		Hint:    "retry the statement; pg_locks (locktype advisory) shows the session holding it"}
}

// versionSQL is a row's version (translate's versionOf) over alias t.
const versionSQL = `pg_catalog.round(pg_catalog.date_part('epoch', t."_synced_at") * 1000000)::int8`

// splitReturning separates Eval's rows of a DELETE … RETURNING into the
// values of our own (the first lead columns) and RETURNING's.
func splitReturning(res *Result, lead int) ([][][]byte, *Result) {
	own := make([][][]byte, len(res.Rows))
	ret := &Result{Rows: make([][][]byte, len(res.Rows))}
	if len(res.Fields) >= lead {
		ret.Fields = res.Fields[lead:]
	}
	for i, r := range res.Rows {
		own[i], ret.Rows[i] = r[:lead:lead], r[lead:]
	}
	return own, ret
}

// query runs q with the client's parameters $1…$NParams (plus the ids as
// q.IDs when set). Parameters q doesn't reference get an explicit type so
// Postgres need not infer one.
func (p params) query(ctx context.Context, up Upstream, q translate.Query, ids []string) (*Result, error) {
	return p.queryWith(ctx, up, q, textArray(ids), oidTextArray)
}

// queryWith runs q with the client's parameters and, as q.IDs when set,
// the value v of type oid (text format).
func (p params) queryWith(ctx context.Context, up Upstream, q translate.Query, v []byte, oid uint32) (*Result, error) {
	n := len(q.Uses)
	if q.IDs > n {
		n = q.IDs
	}
	if len(p.once) > 0 {
		// After the client's parameters and the ids:
		// translate.Statement.OnceParam.
		n = len(q.Uses) + 1 + len(p.once)
	}
	vals := make([][]byte, n)
	oids := make([]uint32, n)
	formats := make([]int16, n)
	if len(p.once) > 0 {
		oids[len(q.Uses)] = oidTextArray // the ids, or unused
		for j, d := range p.once {
			k := len(q.Uses) + 1 + j
			vals[k], oids[k], formats[k] = d, oidTextArray, 1
		}
	}
	for i := 0; i < len(q.Uses); i++ {
		if i < len(p.vals) {
			vals[i], oids[i], formats[i] = p.vals[i], p.oids[i], p.formats[i]
		}
		if !q.Uses[i] && oids[i] == 0 {
			oids[i] = oidText
			if formats[i] == 1 {
				oids[i] = oidBytea
			}
		}
	}
	if q.IDs > 0 {
		vals[q.IDs-1], oids[q.IDs-1], formats[q.IDs-1] = v, oid, 0
	}
	var results []int16
	if q.Returns {
		results = p.results
		if len(results) > 1 && q.Lead > 0 {
			// One format per column: ours (the ids) come first, in text.
			// With none or one for all, the ids need nothing: text's
			// binary form is its text.
			results = append(make([]int16, q.Lead), results...)
		}
	}
	return p.held.query(ctx, up, q.SQL, vals, oids, formats, results)
}

// classCache bounds the classifications kept by text, in number and in
// bytes: a bulk INSERT of 100 rows with inlined values is tens of
// kilobytes, so 4096 of them alone would pin hundreds of megabytes.
type classCache struct {
	mu    sync.Mutex
	m     map[string]translate.Class
	bytes int // sum of the lengths of m's keys
	// maxBytes replaces classCacheBytes when set: a test fills a small
	// budget in a fraction of the parsing a full one takes.
	maxBytes int
}

const (
	classCacheSize  = 4096
	classCacheBytes = 8 << 20
	// A text longer than the byte budget/classCacheLargeShare is
	// classified each time rather than kept (it would take a large share
	// of the budget for one statement).
	classCacheLargeShare = 64
)

func (c *classCache) get(sql string) translate.Class {
	c.mu.Lock()
	cl, ok := c.m[sql]
	c.mu.Unlock()
	if ok {
		return cl
	}
	cl = translate.Classify(sql)
	budget := classCacheBytes
	if c.maxBytes > 0 {
		budget = c.maxBytes
	}
	if len(sql) > budget/classCacheLargeShare {
		return cl
	}
	c.mu.Lock()
	if _, ok := c.m[sql]; !ok {
		for k := range c.m { // drop arbitrary entries: cheap, and hot texts come back
			if len(c.m) < classCacheSize && c.bytes+len(sql) <= budget {
				break
			}
			delete(c.m, k)
			c.bytes -= len(k)
		}
		c.bytes += len(sql)
	}
	c.m[sql] = cl
	c.mu.Unlock()
	return cl
}

// PgConnUpstream adapts a pgconn connection (tests, benchmarks, or a proxy
// that keeps one per session) to Upstream.
func PgConnUpstream(c *pgconn.PgConn) Upstream { return pgconnUpstream{c} }

type pgconnUpstream struct{ c *pgconn.PgConn }

// Prepare uses the unnamed statement, which the next one replaces: a
// named one left behind (a cancel between Prepare and Deallocate) would
// make every later Prepare fail with 42P05.
func (u pgconnUpstream) Prepare(ctx context.Context, sql string) error {
	_, err := u.c.Prepare(ctx, "", sql, nil)
	return err
}

func (u pgconnUpstream) Query(ctx context.Context, sql string, params [][]byte, oids []uint32, pf, rf []int16) (*Result, error) {
	return u.QueryLimit(ctx, 0, sql, params, oids, pf, rf)
}

// QueryLimit reads the rows past the limit and drops them (pgconn has no
// cancel that can't land on a later query).
func (u pgconnUpstream) QueryLimit(ctx context.Context, limit int64, sql string, params [][]byte, oids []uint32, pf, rf []int16) (*Result, error) {
	rr := u.c.ExecParams(ctx, sql, params, oids, pf, rf)
	out := &Result{}
	var n int64
	over := false
	for rr.NextRow() {
		if over {
			continue
		}
		vals := rr.Values()
		msg := 7
		for _, v := range vals {
			msg += 4 + len(v)
		}
		if n += proxy.RowBytes(msg, len(vals)); limit > 0 && n > limit {
			over, out.Rows = true, nil
			continue
		}
		row := make([][]byte, len(vals))
		for i, v := range vals {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		out.Rows = append(out.Rows, row)
	}
	// Taken here, not from Result: a query without rows still has columns.
	for _, f := range rr.FieldDescriptions() {
		out.Fields = append(out.Fields, pgproto3.FieldDescription{Name: []byte(f.Name), TableOID: f.TableOID, TableAttributeNumber: f.TableAttributeNumber,
			DataTypeOID: f.DataTypeOID, DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier, Format: f.Format})
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	if over {
		return nil, &proxy.ResultTooLargeError{Limit: limit}
	}
	return out, nil
}

// conformingStrings reports the session's standard_conforming_strings.
func conformingStrings(ctx context.Context, up Upstream) (bool, error) {
	res, err := up.Query(ctx, `SELECT pg_catalog.current_setting('standard_conforming_strings')`, nil, nil, nil, nil)
	if err != nil {
		return false, err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return false, errors.New("reading standard_conforming_strings: unexpected answer")
	}
	return string(res.Rows[0][0]) == "on", nil
}

// classifyConverted classifies a statement text that is not UTF-8 once
// Postgres has converted it from the session's client_encoding, which it
// also returns.
func classifyConverted(ctx context.Context, up Upstream, sql string) (translate.Class, string, error) {
	res, err := up.Query(ctx, `SELECT pg_catalog.current_setting('client_encoding'), pg_catalog.convert_to($1, 'UTF8'),
  pg_catalog.current_setting('standard_conforming_strings')`,
		[][]byte{[]byte(sql)}, []uint32{oidText}, nil, []int16{0, 1, 0})
	if err != nil {
		return translate.Class{}, "", err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 3 {
		return translate.Class{}, "", errors.New("converting the statement to UTF-8: unexpected answer")
	}
	text := string(res.Rows[0][1])
	if !utf8.ValidString(text) {
		// Postgres itself does not convert (SQL_ASCII): it is no text of a
		// write we could make sense of either.
		return translate.Class{}, string(res.Rows[0][0]), nil
	}
	return translate.ClassifyAs(text, string(res.Rows[0][2]) == "on"), string(res.Rows[0][0]), nil
}

// rowsToUTF8 converts Eval's values, which Postgres gives in the session's
// client_encoding enc, to UTF-8, which is what Stripe takes. Only values
// with non-ASCII bytes can differ, so a UTF8 session, or one that sends
// none, pays nothing.
func rowsToUTF8(ctx context.Context, up Upstream, h *held, rows [][][]byte, enc string) error {
	if enc == "UTF8" || enc == "SQL_ASCII" { // SQL_ASCII: Postgres converts nothing
		return nil
	}
	type at struct{ row, col int }
	var conv []at
	for i, r := range rows {
		for j, v := range r {
			if !isASCII(v) {
				conv = append(conv, at{i, j})
			}
		}
	}
	if len(conv) == 0 {
		return nil
	}
	// One query (VALUES, not a select list, which has a limit of columns;
	// not an array literal, whose quoting would have to be done in the
	// client's encoding).
	var b strings.Builder
	b.WriteString(`SELECT pg_catalog.convert_to(v, 'UTF8') FROM (VALUES `)
	params := make([][]byte, len(conv))
	oids := make([]uint32, len(conv))
	for k, c := range conv {
		if k > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "($%d::pg_catalog.text, %d)", k+1, k+1)
		params[k], oids[k] = rows[c.row][c.col], oidText
	}
	b.WriteString(`) AS u(v, n) ORDER BY n`)
	res, err := h.query(ctx, up, b.String(), params, oids, nil, []int16{1})
	if err != nil {
		return err
	}
	if len(res.Rows) != len(conv) {
		return errors.New("converting values to UTF-8: unexpected answer")
	}
	for k, c := range conv {
		if len(res.Rows[k]) != 1 {
			return errors.New("converting values to UTF-8: unexpected answer")
		}
		rows[c.row][c.col] = res.Rows[k][0]
	}
	return nil
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// asciiJSON escapes the non-ASCII characters of JSON text (UTF-8, as
// pgstripe's own connection reads it) as \uXXXX: the client's connection
// reads a parameter in its client_encoding, which need not be UTF-8, and
// ASCII reads the same in all of them.
func asciiJSON(b []byte) []byte {
	if isASCII(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/2)
	for len(b) > 0 {
		if b[0] < utf8.RuneSelf {
			out = append(out, b[0])
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		if r > 0xffff {
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		} else {
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return out
}

// evalOnce evaluates the WITH queries that RETURNING of an INSERT or
// UPDATE reads (translate.Statement.Once), each once, on the client's
// connection, and returns the statement with every query reading their
// rows as data: Eval, the calls and RETURNING then see the same rows, as
// in Postgres. The rows travel in text form and are read back with their
// types (format_type of what Postgres described).
func evalOnce(ctx context.Context, up Upstream, p params, st *translate.Statement) (*translate.Statement, params, *pgproto3.ErrorResponse) {
	var data []translate.OnceData
	for i := range st.Once {
		q, terr := st.OnceQuery(i, data)
		if terr != nil {
			return nil, p, translateError(terr)
		}
		res, err := p.query(ctx, up, q, nil)
		if err != nil {
			return nil, p, heldError(err, onceTooLarge(st.Once[i]))
		}
		d := translate.OnceData{Rows: len(res.Rows), Param: st.OnceParam(i)}
		for _, f := range res.Fields {
			// Postgres can't read an anonymous record back from text:
			// such a WITH query stays as written (evaluated anew).
			d.Keep = d.Keep || f.DataTypeOID == oidRecord || f.DataTypeOID == oidRecordArray
		}
		if d.Keep {
			data = append(data, d)
			p.once = append(p.once, textArray2D(nil))
			continue
		}
		if len(res.Fields) > 0 {
			oids := make([]string, len(res.Fields))
			mods := make([]string, len(res.Fields))
			for j, f := range res.Fields {
				d.Columns = append(d.Columns, string(f.Name))
				oids[j], mods[j] = strconv.FormatUint(uint64(f.DataTypeOID), 10), strconv.FormatInt(int64(f.TypeModifier), 10)
			}
			types, err := up.Query(ctx, `SELECT pg_catalog.format_type(u.o, u.m) FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.int4[])) WITH ORDINALITY AS u(o, m, n) ORDER BY u.n`,
				[][]byte{textArray(oids), textArray(mods)}, []uint32{oidTextArray, oidTextArray}, nil, nil)
			if err != nil {
				return nil, p, pgError(err)
			}
			if len(types.Rows) != len(res.Fields) {
				return nil, p, errorResponse("XX000", "pgstripe: reading the types of WITH query %q: unexpected answer", st.Once[i])
			}
			for _, r := range types.Rows {
				d.Types = append(d.Types, string(r[0]))
			}
		}
		data = append(data, d)
		p.once = append(p.once, textArray2D(res.Rows))
	}
	out, terr := st.WithOnce(data)
	if terr != nil {
		return nil, p, translateError(terr)
	}
	return out, p, nil
}

// textArray2D encodes rows as a two-dimensional text[] in binary format:
// the values as they are (the session's encoding, which binary text input
// converts from), no quoting to get right in that encoding.
func textArray2D(rows [][][]byte) []byte {
	be := binary.BigEndian
	if len(rows) == 0 || len(rows[0]) == 0 {
		return be.AppendUint32(be.AppendUint32(be.AppendUint32(nil, 0), 0), oidText)
	}
	hasNull := uint32(0)
	for _, r := range rows {
		for _, v := range r {
			if v == nil {
				hasNull = 1
			}
		}
	}
	b := be.AppendUint32(nil, 2)
	b = be.AppendUint32(b, hasNull)
	b = be.AppendUint32(b, oidText)
	b = be.AppendUint32(be.AppendUint32(b, uint32(len(rows))), 1)
	b = be.AppendUint32(be.AppendUint32(b, uint32(len(rows[0]))), 1)
	for _, r := range rows {
		for _, v := range r {
			if v == nil {
				b = be.AppendUint32(b, 0xFFFFFFFF)
				continue
			}
			b = be.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}
