package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgstripe/pgstripe/pgtest"
)

// TestClientKeyUpdate: a TLS 1.3 client sends KeyUpdates (asking
// the proxy to update its keys too, and not) between requests, and one
// right before its Terminate, the session's end. Go's crypto/tls answers
// them inside a Read (the client loop's), writing its own KeyUpdate under
// the connection's write lock, and has no API to send one, so the client
// is openssl s_client, whose "K" and "k" commands send them: every query
// gets its answer under the new keys, and the Terminate ends the session
// cleanly (no error, the close; upstream's backend gone, no session left).
func TestClientKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed for a client that sends TLS 1.3 KeyUpdates (crypto/tls can't): ", err)
	}
	tp := startProxy(t, Config{TLSConfig: selfSignedTLS(t)})
	db := pgtest.NewDB(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	msgs := filepath.Join(t.TempDir(), "msgs")
	cmd := exec.Command(openssl, "s_client", "-connect", tp.addr, "-starttls", "postgres", "-tls1_3", "-brief", "-no_ign_eof", "-msg", "-msgfile", msgs)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Pipes of our own: Wait (below, at s_client's exit) closes those of
	// StdoutPipe, which could cut short the read of its last output.
	stdout, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdout.Close(); stderr.Close() })
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once s_client has exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// s_client's reports, line by line (KEYUPDATE for each command).
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitLine := func(prefix string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("s_client ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
				if strings.Contains(l, "TLSv1.2") || strings.HasPrefix(l, "Protocol version") && !strings.Contains(l, "TLSv1.3") {
					t.Fatalf("not TLS 1.3: %s", l)
				}
			case <-timeout:
				t.Fatalf("s_client never printed %q", prefix)
			}
		}
	}
	// Each write is one read of s_client's, so one chunk: a chunk that
	// starts with K or k is the command, and one starting with Q would
	// quit, so requests start with a Flush.
	write := func(b []byte) {
		t.Helper()
		if _, err := stdin.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// Bounds every read of the replies.
	stdout.SetReadDeadline(time.Now().Add(60 * time.Second))
	fe := pgproto3.NewFrontend(stdout, io.Discard)
	receive := func(stop string) []string {
		t.Helper()
		var got []string
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			d := describeMsg(msg)
			if dr, ok := msg.(*pgproto3.DataRow); ok {
				d = "DataRow " + string(bytes.Join(dr.Values, []byte(",")))
			}
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("%s %s %s", e.Severity, e.Code, e.Message)
			}
			got = append(got, d)
			if strings.HasPrefix(d, stop) {
				return got
			}
		}
	}
	keyUpdate := func(cmd string) {
		t.Helper()
		write([]byte(cmd + "\n"))
		waitLine("KEYUPDATE")
	}
	query := func(sql, want string) {
		t.Helper()
		write(cat(enc(&pgproto3.Flush{}), enc(&pgproto3.Query{String: sql})))
		if got := receive("ReadyForQuery"); !slices.Contains(got, want) {
			t.Fatalf("%s: got %v, want %s", sql, got, want)
		}
	}

	waitLine("CONNECTION ESTABLISHED")
	write(enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": u.User.Username(), "database": strings.TrimPrefix(u.Path, "/")}}))
	receive("ReadyForQuery")
	write(cat(enc(&pgproto3.Flush{}), enc(&pgproto3.Query{String: "SELECT pg_backend_pid()"})))
	var pid uint32
	for _, l := range receive("ReadyForQuery") {
		if n, ok := strings.CutPrefix(l, "DataRow "); ok {
			v, err := strconv.ParseUint(n, 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			pid = uint32(v)
		}
	}
	for i := range 3 {
		keyUpdate("K")
		query(fmt.Sprintf("SELECT %d", i), fmt.Sprintf("DataRow %d", i))
		keyUpdate("k")
		query(fmt.Sprintf("SELECT repeat('x', 100000) || %d", i), "CommandComplete SELECT 1")
	}
	// The session's end: a KeyUpdate asking for the proxy's, then the
	// Terminate at once (s_client sends the KeyUpdate with its next write).
	keyUpdate("K")
	write(enc(&pgproto3.Terminate{}))
	rest, err := io.ReadAll(stdout)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the Terminate: %q, %v; want nothing, then the close", rest, err)
	}
	tp.waitSessions(t, 0)
	waitBackendGone(t, pgtest.Connect(t, pgtest.Cluster(t).URL("postgres")), pid)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("s_client still runs after the close")
	}
	// The KeyUpdates went out, and the proxy answered each that asked.
	log, err := os.ReadFile(msgs)
	if err != nil {
		t.Fatal(err)
	}
	var sent, got int
	for _, l := range strings.Split(string(log), "\n") {
		if strings.HasSuffix(l, "KeyUpdate") {
			if strings.HasPrefix(l, ">>>") {
				sent++
			} else if strings.HasPrefix(l, "<<<") {
				got++
			}
		}
	}
	t.Logf("KeyUpdates: %d sent, %d from the proxy", sent, got)
	if sent != 7 || got != 4 {
		t.Errorf("KeyUpdates: %d sent, %d from the proxy; want 7 and 4\n%s", sent, got, log)
	}
}
