package server

import (
	"context"
	"time"

	"github.com/pgstripe/pgstripe/metrics"
	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/translate"
	"github.com/pgstripe/pgstripe/writethrough"
)

// classifier counts every distinct statement the proxy classifies (the
// proxy caches classification by text, so this is per distinct statement)
// and hands the decision to the write-through's classifier.
func classifier(sql string) proxy.Class {
	return writethrough.ProxyClassify(sql)
}

// interceptor times write-through statements by table and operation.
func interceptor(wt *writethrough.Interceptor) proxy.Interceptor {
	return proxy.InterceptorFunc(func(ctx context.Context, call *proxy.Call) error {
		start := time.Now()
		table, op := "unknown", "rejected"
		if c := translate.Classify(call.SQL); c.Stmt != nil && c.Stmt.Table != nil {
			table, op = c.Stmt.Table.Name, c.Stmt.Op.String()
		}
		metrics.ProxyStatements.WithLabelValues("write").Inc()
		err := wt.Intercept(ctx, call)
		metrics.WriteThroughSeconds.WithLabelValues(table, op).Observe(time.Since(start).Seconds())
		return err
	})
}
