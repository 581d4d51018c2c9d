package writethrough

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"

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
			return call.Forward() // the proxy sends the client's message on
		}
		return relay(ctx, call)
	}
	for _, m := range rep.Messages {
		if err := call.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// relay runs a statement that turned out not to be ours on the client's
// connection, as it is, and forwards its result.
func relay(ctx context.Context, call *proxy.Call) error {
	res, err := call.Upstream().QueryParams(ctx, call.SQL, call.ParamOIDs, call.Params, call.ParamFormats, call.ResultFormats)
	if err != nil {
		return err // a *pgconn.PgError: the proxy sends it as Postgres did
	}
	if len(res.Fields) > 0 {
		if err := call.Send(&pgproto3.RowDescription{Fields: res.Fields}); err != nil {
			return err
		}
	}
	for _, r := range res.Rows {
		if err := call.Send(&pgproto3.DataRow{Values: r}); err != nil {
			return err
		}
	}
	return call.Send(&pgproto3.CommandComplete{CommandTag: []byte(res.CommandTag)})
}

type proxyUpstream struct{ u *proxy.Upstream }

func (p proxyUpstream) Query(ctx context.Context, sql string, params [][]byte, oids []uint32, pf, rf []int16) (*Result, error) {
	r, err := p.u.QueryParams(ctx, sql, oids, params, pf, rf)
	if err != nil {
		return nil, err
	}
	return &Result{Fields: r.Fields, Rows: r.Rows}, nil
}
