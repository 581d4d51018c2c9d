package proxy

import "sync"

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
	// stmt receives the ParameterDescription of a kDescribeStmt, and
	// learns that an uncertain kParse succeeded.
	stmt *stmtInfo
	// ic is set for kIntercept.
	ic *interception
	// swallow: the reply to this kSync or kClose is the proxy's own (the
	// Sync ends an interception's queries before a forwarded Query, the
	// Close drops the unnamed statement an intercepted Query replaces) and
	// does not reach the client.
	swallow bool
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
	if q.head == len(q.entries) {
		q.entries = q.entries[:0]
		q.head = 0
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
	if q.aborted {
		if e.kind != kSync {
			q.mu.Unlock()
			if e.ic != nil {
				e.ic.skip()
			}
			return
		}
		q.aborted = false
	}
	q.entries = append(q.entries, e)
	q.mu.Unlock()
}

// dropTrailingSyncs removes up to n Syncs from the end of the queue: Syncs
// that upstream ignores because they arrived in copy-in mode.
func (q *replyQueue) dropTrailingSyncs(n int) {
	q.mu.Lock()
	for ; n > 0 && len(q.entries) > q.head; n-- {
		last := len(q.entries) - 1
		if q.entries[last].kind != kSync || q.entries[last].swallow {
			break
		}
		q.entries[last] = entry{}
		q.entries = q.entries[:last]
	}
	if q.head == len(q.entries) {
		q.entries = q.entries[:0]
		q.head = 0
	}
	q.mu.Unlock()
}
