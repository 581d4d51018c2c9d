// Package metrics holds pgstripe's Prometheus collectors (prefix pgstripe_)
// and the HTTP handler that serves /metrics and /healthz.
//
// Collectors are package-level so that any layer can count without plumbing;
// they live in their own registry (not the global default) so that only
// pgstripe's series are exposed, plus the Go and process collectors.
package metrics
