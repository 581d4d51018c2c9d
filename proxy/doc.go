// Package proxy is pgstripe's Postgres wire-protocol proxy, in session mode:
// each client connection gets its own upstream connection, opened with the
// client's own startup parameters, and authentication (trust, password, md5,
// SCRAM) is relayed between the two untouched.
//
// Every message passes through as the bytes that arrived, batched so that
// each side gets one write per round trip. The proxy keeps an ordered queue
// of the replies it expects (one entry per request that gets a reply), which
// is what lets it answer some statements itself: statements that the
// caller's classifier marks Intercept are handed, at execution time, to an
// Interceptor, which may run its own queries on the client's upstream
// connection and writes the reply to the client. Write-through
// (package writethrough) is built on that hook.
//
// The proxy also terminates TLS (SSLRequest), answers GSSENCRequest with 'N',
// issues its own cancel keys and maps CancelRequest to the right upstream
// backend, and drains sessions on shutdown.
//
// SCRAM with channel binding (channel_binding=require) cannot work through
// the proxy when TLS ends at the proxy: the upstream connection is a
// different channel, so Postgres never offers SCRAM-SHA-256-PLUS.
package proxy
