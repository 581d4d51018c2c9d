package proxy

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/pgtest"
)

// lastingInterceptor is the test interceptor, telling the proxy that each
// statement it answers changed something no rollback undoes.
type lastingInterceptor struct{ testInterceptor }

func (li *lastingInterceptor) Intercept(ctx context.Context, call *Call) error {
	call.SetQuiet(false)
	call.Lasting("INSERT 0 1 on stripe.x") // ignored when the reply is an error
	return li.testInterceptor.Intercept(ctx, call)
}

// replyTypes condenses a script transcript to the types of the messages
// received, a NoticeResponse as its message's first word(s).
func replyTypes(t *testing.T, transcript string) string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(transcript, "\n") {
		if !strings.HasPrefix(line, "B ") {
			continue
		}
		var m struct{ Type, Message, Detail string }
		if err := json.Unmarshal([]byte(line[2:]), &m); err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case "": // a NoticeResponse has no Type in JSON
			out = append(out, "Notice("+strings.SplitN(m.Message, ":", 2)[0]+"|"+m.Detail+")")
		case "ParseComplete", "BindComplete", "DataRow":
		default:
			out = append(out, m.Type)
		}
	}
	return strings.Join(out, " ")
}

// TestPipelineNotice: an error in a pipeline outside a transaction
// block rolls back its implicit transaction, but not the statements whose
// effects last (Call.Lasting) earlier in it: the proxy warns just before
// the error, whether the error is upstream's or the interceptor's.
func TestPipelineNotice(t *testing.T) {
	tp := startProxy(t, Config{Classify: classifyTest, Interceptor: &lastingInterceptor{}})
	url := pgtest.NewDB(t)
	setup := pgtest.Connect(t, url)
	if _, err := setup.Exec(ctxT(t), `CREATE SCHEMA stripe; CREATE TABLE stripe.x (id text primary key, v text); CREATE TABLE public.c (v int)`); err != nil {
		t.Fatal(err)
	}
	via := tp.via(t, url)
	const prep = `F {"Type":"Parse","Name":"ins","Query":"INSERT INTO stripe.x (v) VALUES ($1) RETURNING id, v"}
F {"Type":"Sync"}
R 1
`
	ins := func(v string) string {
		return `F {"Type":"Bind","PreparedStatement":"ins","Parameters":[{"text":"` + v + `"}]}
F {"Type":"Execute"}
`
	}
	stmt := func(sql string) string {
		return `F {"Type":"Parse","Query":"` + sql + `"}
F {"Type":"Bind"}
F {"Type":"Execute"}
`
	}
	const sync = "F {\"Type\":\"Sync\"}\nR 1\n"
	one := "Notice(1 earlier write to stripe.* in this pipeline went to Stripe and stays|INSERT 0 1 on stripe.x)"
	two := "Notice(2 earlier writes to stripe.* in this pipeline went to Stripe and stay|INSERT 0 1 on stripe.x; INSERT 0 1 on stripe.x)"
	for _, c := range []struct{ name, script, want string }{
		{"interceptor error", ins("a1") + ins("fail") + ins("a2") + sync,
			"CommandComplete " + one + " ErrorResponse ReadyForQuery"},
		{"upstream error", ins("b1") + stmt("SELECT 1") + ins("b2") + stmt("SELECT 1/0") + ins("b3") + sync,
			"CommandComplete CommandComplete CommandComplete " + two + " ErrorResponse ReadyForQuery"},
		{"error with Flush, then Sync", ins("c1") + "F {\"Type\":\"Flush\"}\nR CommandComplete\n" + stmt("SELECT 1/0") + "F {\"Type\":\"Flush\"}\nR ErrorResponse\n" + sync,
			"CommandComplete " + one + " ErrorResponse ReadyForQuery"},
		{"next pipeline", ins("d1") + sync + stmt("SELECT 1/0") + sync,
			"CommandComplete ReadyForQuery ErrorResponse ReadyForQuery"},
		{"a write in each pipeline", ins("d2") + sync + ins("d3") + stmt("SELECT 1/0") + sync,
			"CommandComplete ReadyForQuery CommandComplete " + one + " ErrorResponse ReadyForQuery"},
		{"a write before COMMIT, another after", ins("d4") + stmt("COMMIT") + ins("d5") + stmt("SELECT 1/0") + sync,
			"CommandComplete NoticeResponse CommandComplete CommandComplete " + one + " ErrorResponse ReadyForQuery"},
		{"pipelines sent at once", ins("e1") + "F {\"Type\":\"Sync\"}\n" + stmt("SELECT 1/0") + "F {\"Type\":\"Sync\"}\nR 2\n",
			"CommandComplete ReadyForQuery ErrorResponse ReadyForQuery"},
		{"committed in the pipeline", ins("f1") + stmt("COMMIT") + stmt("SELECT 1/0") + sync,
			"CommandComplete NoticeResponse CommandComplete ErrorResponse ReadyForQuery"},
		{"in a transaction block", stmt("BEGIN") + ins("g1") + stmt("SELECT 1/0") + sync + stmt("ROLLBACK") + sync,
			"CommandComplete Notice(ROLLBACK cannot undo this write|) CommandComplete ErrorResponse ReadyForQuery CommandComplete ReadyForQuery"},
		{"BEGIN after the write", ins("h1") + stmt("BEGIN") + stmt("SELECT 1/0") + sync + stmt("ROLLBACK") + sync,
			"CommandComplete CommandComplete " + one + " ErrorResponse ReadyForQuery CommandComplete ReadyForQuery"},
		{"simple protocol", "F {\"Type\":\"Query\",\"String\":\"INSERT INTO stripe.x (v) VALUES ('i1') RETURNING id, v\"}\nR 1\nF {\"Type\":\"Query\",\"String\":\"SELECT 1/0\"}\nR 1\n",
			"RowDescription CommandComplete ReadyForQuery ErrorResponse ReadyForQuery"},
		{"all succeed", ins("j1") + stmt("SELECT 1") + sync,
			"CommandComplete CommandComplete ReadyForQuery"},
		{"rows cut by max_rows, then an error", `F {"Type":"Bind","DestinationPortal":"p","PreparedStatement":"ins","Parameters":[{"text":"m1"}]}
F {"Type":"Execute","Portal":"p","MaxRows":1}
F {"Type":"Execute","Portal":"p","MaxRows":1}
` + stmt("SELECT 1/0") + sync,
			"PortalSuspended CommandComplete " + one + " ErrorResponse ReadyForQuery"},
		{"COPY failed by the client", ins("k1") + stmt("COPY public.c FROM STDIN") + "F {\"Type\":\"Flush\"}\nR CopyInResponse\nF {\"Type\":\"CopyFail\",\"Message\":\"no\"}\n" + sync,
			"CommandComplete CopyInResponse " + one + " ErrorResponse ReadyForQuery"},
		{"error in the simple Query that ends the pipeline", ins("k2") + "F {\"Type\":\"Query\",\"String\":\"SELECT 1/0\"}\nR 1\n",
			"CommandComplete " + one + " ErrorResponse ReadyForQuery"},
		{"the simple Query commits, the next fails", ins("k3") + "F {\"Type\":\"Query\",\"String\":\"SELECT 1\"}\nR 1\nF {\"Type\":\"Query\",\"String\":\"SELECT 1/0\"}\nR 1\n",
			"CommandComplete RowDescription CommandComplete ReadyForQuery ErrorResponse ReadyForQuery"},
		{"two errors, one notice", ins("k4") + stmt("SELECT 1/0") + "F {\"Type\":\"Flush\"}\nR ErrorResponse\n" + sync + stmt("SELECT 1/0") + sync,
			"CommandComplete " + one + " ErrorResponse ReadyForQuery ErrorResponse ReadyForQuery"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := replyTypes(t, runScript(t, via, prep+c.script))
			got = strings.TrimPrefix(got, "ReadyForQuery ") // prep's
			got = strings.ReplaceAll(got, "Notice(there is no transaction in progress|)", "NoticeResponse")
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
