package proxy

import (
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/pgtest"
)

// TestPipelineNoticeEdges: more interleavings of the pipeline
// notice (see TestPipelineNotice): exactly one notice, just before the
// error that rolls the pipeline back, never for a later pipeline.
func TestPipelineNoticeEdges(t *testing.T) {
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
	for _, c := range []struct{ name, script, want string }{
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
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
