package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/protocol")

// frontendMessage decodes one script line's JSON into a frontend message.
func frontendMessage(line string) (pgproto3.FrontendMessage, error) {
	var head struct{ Type string }
	if err := json.Unmarshal([]byte(line), &head); err != nil {
		return nil, err
	}
	var msg pgproto3.FrontendMessage
	switch head.Type {
	case "Query":
		msg = &pgproto3.Query{}
	case "Parse":
		msg = &pgproto3.Parse{}
	case "Bind":
		msg = &pgproto3.Bind{}
	case "Describe":
		msg = &pgproto3.Describe{}
	case "Execute":
		msg = &pgproto3.Execute{}
	case "Sync":
		msg = &pgproto3.Sync{}
	case "Flush":
		msg = &pgproto3.Flush{}
	case "Close":
		msg = &pgproto3.Close{}
	case "CopyData":
		msg = &pgproto3.CopyData{}
	case "CopyDone":
		msg = &pgproto3.CopyDone{}
	case "CopyFail":
		msg = &pgproto3.CopyFail{}
	default:
		return nil, fmt.Errorf("unknown message type %q", head.Type)
	}
	return msg, json.Unmarshal([]byte(line), msg)
}

var volatile = regexp.MustCompile(`"(File|Line|Routine|ProcessID|PID|TableOID)":("[^"]*"|\d+)`)

// runScript plays a protocol script on a fresh connection to url and
// returns the transcript: the messages sent (F) and received (B).
//
// Script lines: `F <json message>` sends; `R <n>` reads until n
// ReadyForQuery; `R <Type>` reads until a message of that type; `#` comments.
func runScript(t *testing.T, url, script string) string {
	t.Helper()
	rc := dialRaw(t, url)
	fe := rc.fe
	var out bytes.Buffer
	sc := bufio.NewScanner(strings.NewReader(script))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd {
		case "F":
			msg, err := frontendMessage(arg)
			if err != nil {
				t.Fatalf("script line %q: %v", line, err)
			}
			fe.Send(msg)
			out.WriteString(line + "\n")
		case "R":
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			want, err := strconv.Atoi(arg)
			if err != nil {
				want = -1
			}
			rc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			for rfq := 0; want < 0 || rfq < want; {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("after %q: %v\ntranscript so far:\n%s", line, err, out.String())
				}
				b, _ := json.Marshal(msg)
				out.WriteString("B " + volatile.ReplaceAllString(string(b), `"$1":"*"`) + "\n")
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					rfq++
				}
				if want < 0 && strings.Contains(string(b), `"Type":"`+arg+`"`) {
					break
				}
			}
		default:
			t.Fatalf("bad script line %q", line)
		}
	}
	return out.String()
}

// TestProtocolScripts plays testdata/protocol/*.script through the proxy and
// compares with the golden transcript; scripts of plain Postgres behaviour
// must also give the same transcript directly. Those named intercept_* run
// with the test interceptor.
func TestProtocolScripts(t *testing.T) {
	scripts, _ := filepath.Glob("testdata/protocol/*.script")
	if len(scripts) == 0 {
		t.Fatal("no scripts")
	}
	plain := startProxy(t, Config{})
	icp := startProxy(t, Config{Classify: classifyTest, Interceptor: &testInterceptor{}})
	for _, path := range scripts {
		name := strings.TrimSuffix(filepath.Base(path), ".script")
		t.Run(name, func(t *testing.T) {
			script, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			url := pgtest.NewDB(t)
			setup := pgtest.Connect(t, url)
			if _, err := setup.Exec(ctxT(t), `CREATE SCHEMA stripe; CREATE TABLE stripe.x (id text primary key, v text); CREATE TABLE t (id int primary key, s text)`); err != nil {
				t.Fatal(err)
			}
			tp := plain
			if strings.HasPrefix(name, "intercept_") {
				tp = icp
			}
			got := runScript(t, tp.via(t, url), string(script))
			if !strings.HasPrefix(name, "intercept_") {
				setup.Exec(ctxT(t), `TRUNCATE t`)
				direct := runScript(t, url, string(script))
				if direct != got {
					t.Errorf("through the proxy:\n%s\ndirect:\n%s", got, direct)
				}
			}
			golden := strings.TrimSuffix(path, ".script") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(want) != got {
				t.Errorf("transcript differs from %s:\n%s", golden, got)
			}
		})
	}
}
