package server

import (
	"context"
	"time"

	"github.com/pgstripe/pgstripe/metrics"
	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/writethrough"
)

// classifier is the write-through's decision of which statements the proxy
// intercepts (the proxy caches it by statement text).
func classifier(sql string) proxy.Class {
	return writethrough.ProxyClassify(sql)
}

// interceptor times write-through statements by table and operation.
func interceptor(wt *writethrough.Interceptor) proxy.Interceptor {
	return proxy.InterceptorFunc(func(ctx context.Context, call *proxy.Call) error {
		start := time.Now()
		refused, err := wt.InterceptRefused(ctx, call)
		if call.PassedOn() {
			metrics.ProxyStatements.Inc("passthrough")
			return err
		}
		table, op := wt.Labels(call.SQL)
		kind := "write"
		if op == "rejected" || refused {
			// Refused before any Stripe call (42501, 42P01, 25P02…):
			// not a write, whatever the statement would have written.
			kind = "rejected"
		}
		metrics.ProxyStatements.Inc(kind)
		metrics.WriteThroughSeconds.WithLabelValues(table, op).Observe(time.Since(start).Seconds())
		return err
	})
}
