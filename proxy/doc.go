// Package proxy is pgstripe's Postgres wire-protocol proxy, in session mode:
// each client connection gets its own upstream connection, opened with the
// client's own startup parameters, and authentication (trust, password, md5,
// SCRAM) is relayed between the two untouched.
//
// Two goroutines serve a session: the client loop forwards requests
// upstream, the server loop forwards replies to the client. Messages pass
// through as the bytes that arrived (framed, not decoded, except the few
// fields the proxy needs), batched so that each side gets one write per
// round trip: a side's buffer is flushed when the reader of the other side
// would block. A DataRow or CopyData from upstream over 256 KB passes on in
// pieces as it arrives, so a session holds its buffers, not a whole large
// value, while its client reads slowly or not at all (Postgres then waits
// on its socket, as it would for the client directly); Call.Relay passes
// rows on one at a time the same way.
//
// The proxy keeps an ordered queue of the replies it expects (one entry per
// request that gets a reply, dropping those Postgres skips after an error
// until Sync), which is what lets it answer some statements itself:
// statements the caller's classifier marks Intercept are handed, at
// execution time (simple Query, or Execute), to an Interceptor, which may
// run its own queries on the client's upstream connection (Upstream) and
// writes the reply to the client (Call.Send), or, for what the interceptor
// finds is not its own, runs it upstream as it is (Call.Relay) or hands it
// back (Call.Forward: the client's message then goes upstream). A barrier request (closing a
// statement that does not exist) tells the proxy when every earlier reply
// has reached the client. Write-through (package writethrough) is built on
// that hook. An interceptor's query may bound the memory its rows take
// (Upstream.QueryParamsLimit): past the limit upstream is asked to cancel
// it (or, without a cancel key from upstream, its connection is closed,
// which ends the session), and a long row is skipped as it arrives rather
// than read whole.
// When upstream's connection fails during an interception, the
// interceptor's queries get that error and the session stays open until
// its reply is out (it may say what reached Stripe); an error reply then
// goes out as FATAL, which ends the session. A reply already out when the
// failure shows (upstream dies just after it) is followed by upstream's own
// FATAL, if it sent one, or the proxy's 08006; not the proxy's when it has
// read the client's Terminate (sent in the same write as the request, say,
// so that upstream's end stops the session before it gets to it, also
// while the requests before it wait on upstream) or the end of the
// client's input: like Postgres after a Terminate, the proxy sends nothing
// more of its own.
//
// An interceptor marks statements whose changes outlive a rollback
// (Call.Lasting). In a pipeline outside a transaction block (several
// Executes, one Sync), whose implicit transaction an error anywhere rolls
// back, the proxy sends a NOTICE naming them just before such an error,
// upstream's or the interceptor's, unless client_min_messages is above
// NOTICE (Call.SetQuiet): drivers report every statement of the pipeline as
// failed, and a client must not resend those.
//
// The proxy also terminates TLS (SSLRequest, or direct TLS with ALPN
// "postgresql"; Config.TLSRequired refuses clients without it),
// optionally speaks TLS to upstream, picks the upstream among several
// hosts per session (Config.Hosts: the last one that worked first, then
// the others in order, passing over a host that fails before the client
// answered anything, or that is in hot standby when a primary is
// required), answers GSSENCRequest
// with 'N', issues its own cancel keys and maps CancelRequest to the right
// upstream backend (and to a running interception), closes oversized or
// badly framed clients with an ErrorResponse (Postgres's own message
// limits) once the requests before the bad message are answered (if
// upstream ends before that, Postgres would never have read the bad
// message, and the session ends as for upstream's loss; either way the
// client gets one FATAL at most; in copy-in mode Postgres gets the bytes
// as sent and fails the COPY as it would directly, or, the COPY failed
// already, closes without a word, and so does the proxy), passes
// an invalid message type byte to Postgres for it to refuse (so the
// client gets Postgres's own FATAL, in copy-in mode too; the type byte is
// judged before the length, as Postgres does), passes the start of a
// message that the client's end of input cut off, then that end, so that
// Postgres answers what came before and refuses the rest as it would
// directly, lets Postgres refuse framed messages whose body it cannot
// read (an ERROR, and the session goes on), stops reading a client that has maxInFlight requests
// unanswered (as Postgres stops reading a client that reads no replies),
// refuses connections beyond maxStartingConns still in startup with
// Postgres's 53300, and drains sessions on shutdown (FATAL 57P01 at
// their next idle point; nothing after a Terminate the proxy handled).
//
// What a session holds follows what Postgres holds for it: a record per
// prepared statement (named by Parse and not yet closed by Close, or by
// SQL DEALLOCATE or DISCARD ALL for statements not intercepted, alone or
// among other statements in a simple Query, or executed through the
// extended protocol),
// intercepted portals, and read buffers that shrink back after a large
// message. Classifications are cached by statement text for the whole
// proxy, within 10,000 texts and 16 MB of text (a text over 64 KB is
// classified each time instead), so endless distinct texts (inlined
// literals) cost no memory beyond that.
//
// SCRAM with channel binding (channel_binding=require) cannot work through
// the proxy when TLS ends at the proxy: the upstream connection is a
// different channel, so Postgres never offers SCRAM-SHA-256-PLUS.
//
// BackendKeyData carries the upstream backend's process id with a secret of
// the proxy's own: notifications, pg_backend_pid(), pg_stat_activity and
// pg_cancel_backend() see the id the client has, and CancelRequest still
// comes to the proxy.
package proxy
