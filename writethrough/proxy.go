package writethrough

import (
	"context"

	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/translate"
)

// ProxyClassify is the proxy's Config.Classify: writes to stripe tables,
// statements that may be (an unqualified name search_path may resolve to
// one), and statements refused on them, are intercepted; everything else
// passes through.
func ProxyClassify(sql string) proxy.Class {
	switch translate.Classify(sql).Action {
	case translate.Reject, translate.Write:
		return proxy.Intercept
	}
	return proxy.Passthrough
}

// Intercept implements proxy.Interceptor.
func (ic *Interceptor) Intercept(ctx context.Context, call *proxy.Call) error {
	_, err := ic.InterceptRefused(ctx, call)
	return err
}

// InterceptRefused is Intercept, and also reports whether the statement
// was refused before any Stripe call (Reply.Refused), for metrics.
func (ic *Interceptor) InterceptRefused(ctx context.Context, call *proxy.Call) (refused bool, err error) {
	req := Request{
		SQL:           call.SQL,
		Params:        call.Params,
		ParamOIDs:     call.ParamOIDs,
		ParamFormats:  call.ParamFormats,
		ResultFormats: call.ResultFormats,
		TxStatus:      call.TxStatus,
		Describe:      call.Protocol == proxy.SimpleProtocol,
	}
	up := proxyUpstream{call.Upstream()}
	rep := ic.Execute(ctx, up, req)
	if rep.Pass {
		if rep.Unrelayable {
			return false, call.Forward() // the proxy sends the client's message on
		}
		return false, call.Relay(ctx) // not ours: run it as it is
	}
	if rep.quietKnown {
		call.SetQuiet(rep.quiet)
	}
	if rep.lasting != "" {
		call.Lasting(rep.lasting)
	}
	for _, m := range rep.Messages {
		if err := call.Send(m); err != nil {
			return rep.Refused(), err
		}
	}
	return rep.Refused(), nil
}

type proxyUpstream struct{ u *proxy.Upstream }

func (p proxyUpstream) Query(ctx context.Context, sql string, params [][]byte, oids []uint32, pf, rf []int16) (*Result, error) {
	r, err := p.u.QueryParams(ctx, sql, oids, params, pf, rf)
	if err != nil {
		return nil, err
	}
	return &Result{Fields: r.Fields, Rows: r.Rows}, nil
}

func (p proxyUpstream) QueryLimit(ctx context.Context, limit int64, sql string, params [][]byte, oids []uint32, pf, rf []int16) (*Result, error) {
	r, err := p.u.QueryParamsLimit(ctx, sql, oids, params, pf, rf, limit)
	if err != nil {
		return nil, err
	}
	return &Result{Fields: r.Fields, Rows: r.Rows}, nil
}

func (p proxyUpstream) Prepare(ctx context.Context, sql string) error { return p.u.Prepare(ctx, sql) }
