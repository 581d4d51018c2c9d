package proxy

import (
	"sync"
	"sync/atomic"
)

// entryKind is what a request sent upstream expects back.
type entryKind uint8

const (
	kParse          entryKind = iota + 1 // ParseComplete
	kBind                                // BindComplete
	kDescribeStmt                        // ParameterDescription, then RowDescription or NoData
	kDescribePortal                      // RowDescription or NoData
	kExecute                             // DataRow*, then CommandComplete, EmptyQueryResponse or PortalSuspended
	kClose                               // CloseComplete
	kSync                                // ReadyForQuery
	kQuery                               // anything, then ReadyForQuery (simple query, function call)
	kIntercept                           // an intercepted statement: the interceptor talks to upstream and client
)

func (k entryKind) extended() bool { return k >= kParse && k <= kClose }

// entry is one expected reply.
type entry struct {
	kind entryKind
	// swallow: the reply to this kSync or kClose is the proxy's own (the
	// Sync ends an interception's queries before a forwarded Query, the
	// Close drops the unnamed statement an intercepted Query replaces) and
	// does not reach the client.
	swallow bool
	// stmt receives the ParameterDescription of a kDescribeStmt, and
	// learns that an uncertain kParse succeeded.
	stmt *stmtInfo
	// ic is set for kIntercept.
	ic *interception
	// seq numbers a kQuery or kExecute that went upstream as it is; on a
	// kSync, it is the copy-in window the Sync was sent in (see
	// session.copyWin), 0 for none.
	seq uint64
	// afterData: a kSync sent in a copy-in window after CopyData. If the
	// COPY fails, Postgres answers it unless it read it in copy-in mode
	// (before the data it was reading when it failed), which only the
	// replies tell: the COPY's failure makes it opt (see resolveOpt).
	afterData, opt bool
}

// replyQueue is the ordered list of replies the session expects from
// upstream, in request order. The client loop pushes as it forwards requests;
// the server loop pops as replies arrive. It is what lets the proxy answer a
// request itself: it knows when every reply before that request has reached
// the client.
type replyQueue struct {
	mu      sync.Mutex
	entries []entry
	head    int
	// aborted: upstream hit an error in an extended-protocol batch and
	// ignores everything until Sync; requests pushed meanwhile get no reply.
	aborted bool
	// full: as many requests are in flight as maxInFlight; the client
	// loop stops reading the client until half of them are answered
	// (waitRoom), which room signals.
	full    atomic.Bool
	waiting bool
	room    chan struct{}
	// copySeq is the seq of the Query or Execute whose COPY FROM STDIN
	// upstream is running (0: none): Syncs sent in its copy-in window get
	// no reply, except perhaps those after data (afterData).
	copySeq uint64
	// optZ counts the ReadyForQuery messages that arrived while opt
	// entries were at the head (see resolveOpt); optExt: the failed COPY
	// was an Execute.
	optZ   int
	optExt bool
}

// onlyViolationLeft reports whether every request queued has been
// answered (or skipped), but for the barrier of a protocol violation
// (interception.violation), which the client sent nothing before that
// upstream has left unanswered.
func (q *replyQueue) onlyViolationLeft() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.entries[q.head:] {
		if e.ic == nil || !e.ic.violation {
			return false
		}
	}
	return true
}

func (q *replyQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries) - q.head
}

// peek returns the head entry; ok is false when nothing is expected.
func (q *replyQueue) peek() (entry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.entries) {
		return entry{}, false
	}
	return q.entries[q.head], true
}

func (q *replyQueue) popLocked() {
	q.entries[q.head] = entry{}
	q.head++
	q.roomLocked()
	if q.head == len(q.entries) {
		q.head = 0
		if cap(q.entries) > maxIdleEntries {
			q.entries = nil // give back what a long pipeline grew
		} else {
			q.entries = q.entries[:0]
		}
	}
}

// roomLocked wakes a client loop waiting in waitRoom once half of
// maxInFlight is answered (or dropped: copyIn).
func (q *replyQueue) roomLocked() {
	if q.waiting && len(q.entries)-q.head <= maxInFlight/2 {
		q.waiting = false
		q.full.Store(false)
		select {
		case q.room <- struct{}{}:
		default: // a token the waiter left when its session closed
		}
	}
}

// maxIdleEntries bounds the capacity an empty queue keeps.
const maxIdleEntries = 1024

// maxInFlight bounds the requests a session has sent upstream and not yet
// seen answered. Postgres itself reads no further while its replies are
// not read; the proxy's two extra socket buffers would otherwise let a
// client that pipelines without reading queue ~1M requests (~40 MB of
// queue) before the proxy stopped reading it.
const maxInFlight = 16384

// waitRoom blocks while the queue is full, until half of it is answered or
// done or lost is closed. Upstream must have been sent every queued
// request.
func (q *replyQueue) waitRoom(done, lost <-chan struct{}) {
	q.mu.Lock()
	if len(q.entries)-q.head < maxInFlight {
		q.full.Store(false)
		q.mu.Unlock()
		return
	}
	if q.room == nil {
		q.room = make(chan struct{}, 1)
	}
	q.waiting = true
	q.mu.Unlock()
	select {
	case <-q.room:
	case <-done:
	case <-lost:
	}
}

func (q *replyQueue) pop() {
	q.mu.Lock()
	if q.head < len(q.entries) {
		q.popLocked()
	}
	q.mu.Unlock()
}

// popThroughSync pops up to and including the first Sync or simple query
// (the request a ReadyForQuery answers).
func (q *replyQueue) popThroughSync() {
	q.mu.Lock()
	if q.head < len(q.entries) && q.entries[q.head].opt {
		// For an opt Sync or one after them: resolveOpt tells.
		q.optZ++
		q.mu.Unlock()
		return
	}
	for q.head < len(q.entries) {
		k := q.entries[q.head].kind
		if ic := q.entries[q.head].ic; ic != nil {
			ic.skip()
		}
		q.popLocked()
		if k == kSync || k == kQuery {
			break
		}
	}
	q.mu.Unlock()
}

// abortBatch handles an ErrorResponse in an extended-protocol batch: upstream
// skips every request until the next Sync, so their entries go.
func (q *replyQueue) abortBatch() {
	q.mu.Lock()
	for q.head < len(q.entries) {
		e := q.entries[q.head]
		if e.kind == kSync {
			break
		}
		if e.ic != nil {
			e.ic.skip()
		}
		if e.kind == kParse && e.stmt != nil {
			e.stmt.skipped.Store(true)
		}
		q.popLocked()
	}
	if q.head == len(q.entries) {
		q.aborted = true
	}
	q.mu.Unlock()
}

func (q *replyQueue) setAborted() {
	q.mu.Lock()
	q.aborted = true
	q.mu.Unlock()
}

func (q *replyQueue) push1(e entry) {
	q.mu.Lock()
	if e.kind == kSync && e.seq != 0 && e.seq == q.copySeq && !e.afterData {
		q.mu.Unlock() // sent in copy-in mode: upstream ignores it
		return
	}
	if q.aborted {
		if e.kind != kSync {
			q.mu.Unlock()
			if e.ic != nil {
				e.ic.skip()
			}
			if e.kind == kParse && e.stmt != nil {
				e.stmt.skipped.Store(true)
			}
			return
		}
		q.aborted = false
	}
	if len(q.entries) == cap(q.entries) && q.head >= len(q.entries)/2 {
		// A pipeline that never lets the queue run empty (the client
		// keeps writing as it reads) would otherwise grow it by every
		// request it ever sent, answered ones included: reuse their
		// room. At least half is freed, so the copy costs O(1) a push.
		n := copy(q.entries, q.entries[q.head:])
		clear(q.entries[n:])
		q.entries = q.entries[:n]
		q.head = 0
	}
	q.entries = append(q.entries, e)
	if len(q.entries)-q.head >= maxInFlight {
		q.full.Store(true)
	}
	q.mu.Unlock()
}

// mayAnswer reports whether a reply of type typ may be the first to a
// request of kind k (a simple Query: any).
func mayAnswer(k entryKind, typ byte) bool {
	switch k {
	case kParse:
		return typ == '1' || typ == 'E'
	case kBind:
		return typ == '2' || typ == 'E'
	case kDescribeStmt:
		return typ == 't' || typ == 'E'
	case kDescribePortal:
		return typ == 'T' || typ == 'n' || typ == 'E'
	case kExecute:
		return typ != '1' && typ != '2' && typ != '3' && typ != 't' && typ != 'T' && typ != 'n'
	case kClose, kIntercept:
		return typ == '3' || typ == 'E'
	}
	return true
}

// copyIn handles a CopyInResponse, which answers the head entry: upstream
// ignores the Syncs of that entry's copy-in window, queued already or
// still to come.
func (q *replyQueue) copyIn() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.entries) || q.entries[q.head].seq == 0 {
		return
	}
	seq := q.entries[q.head].seq
	if k := q.entries[q.head].kind; k != kExecute && k != kQuery {
		return
	}
	q.copySeq = seq
	kept := q.entries[:q.head+1]
	for _, e := range q.entries[q.head+1:] {
		if e.kind == kSync && e.seq == seq && !e.swallow && !e.afterData {
			continue
		}
		kept = append(kept, e)
	}
	clear(q.entries[len(kept):])
	q.entries = kept
	q.roomLocked()
}

// copyEnd notes that upstream left copy-in mode: later Syncs are
// answered. The Syncs its window had after data: if the COPY succeeded
// (Postgres read the CopyDone that closed the window), it read them all in
// copy-in mode and they go; if it failed, it answers those it had not read
// yet, which become opt. It reports whether there are opt entries now.
func (q *replyQueue) copyEnd(failed bool) (opt bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	seq := q.copySeq
	q.copySeq = 0
	if q.head < len(q.entries) {
		q.optExt = q.entries[q.head].kind == kExecute
	}
	kept := q.entries[:q.head]
	for _, e := range q.entries[q.head:] {
		if e.kind == kSync && e.afterData && e.seq == seq {
			if !failed {
				continue
			}
			e.opt, opt = true, true
		}
		kept = append(kept, e)
	}
	clear(q.entries[len(kept):])
	q.entries = kept
	q.roomLocked()
	return opt
}

// resolveOpt runs at the first reply after a failed COPY's opt Syncs that
// is not a ReadyForQuery: it answers a request after them. Postgres
// answered some last part of the opt Syncs (those it read after the
// failure), then the Syncs that follow them in the queue, all with
// ReadyForQuery, so the ReadyForQuery messages counted (optZ) beyond the
// opt Syncs answered those following Syncs. Except when an Execute'd COPY
// failed with none of its opt Syncs answered: Postgres then skipped the
// requests after them up to the next Sync, whose ReadyForQuery came
// first. That shows when typ cannot answer the request after them;
// when it can (an ErrorResponse, which any request may get), the two
// cannot be told apart and the opt Sync is taken as answered.
func (q *replyQueue) resolveOpt(typ byte) {
	q.mu.Lock()
	for q.head < len(q.entries) && q.entries[q.head].opt {
		q.popLocked()
	}
	if q.optExt && q.optZ > 0 && q.head < len(q.entries) && !mayAnswer(q.entries[q.head].kind, typ) {
		for q.head < len(q.entries) {
			e := q.entries[q.head]
			if e.ic != nil {
				e.ic.skip()
			}
			q.popLocked()
			if e.kind == kSync {
				q.optZ--
				break
			}
		}
	}
	for ; q.optZ > 0 && q.head < len(q.entries); q.optZ-- {
		if e := q.entries[q.head]; e.kind != kSync || e.swallow {
			break
		}
		q.popLocked()
	}
	q.optZ = 0
	q.mu.Unlock()
}
