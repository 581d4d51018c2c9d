package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgstripe/pgstripe/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testProxy is a proxy in front of the test cluster.
type testProxy struct {
	*Proxy
	addr     string
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// startProxy serves a proxy for the test cluster on a free port.
func startProxy(t testing.TB, cfg Config) *testProxy {
	t.Helper()
	if cfg.Upstream == "" {
		cfg.Upstream = pgtest.Cluster(t).Addr()
	}
	if cfg.Logger == nil && os.Getenv("PROXY_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp := &testProxy{Proxy: New(cfg), addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { tp.done <- tp.Serve(ctx, ln) }()
	t.Cleanup(func() { tp.stop(t) })
	return tp
}

// stop shuts the proxy down (as on SIGTERM: Serve's context ends) and
// reports how long Serve took to return; later calls return 0.
func (tp *testProxy) stop(t testing.TB) (took time.Duration) {
	tp.stopOnce.Do(func() {
		start := time.Now()
		tp.cancel()
		select {
		case err := <-tp.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
		took = time.Since(start)
	})
	return took
}

// via rewrites a database URL to go through the proxy.
func (tp *testProxy) via(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = tp.addr
	return u.String()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitSessions waits until the proxy has n open sessions (closing is
// asynchronous to the client's Close).
func (tp *testProxy) waitSessions(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tp.Sessions() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Sessions() = %d, want %d", tp.Sessions(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSleeping waits until upstream backend pid is inside pg_sleep: a
// cancel that arrives before the statement starts finds the session idle
// and is dropped, and the sleep then runs its full length.
func waitSleeping(t testing.TB, pid uint32) {
	t.Helper()
	admin := pgtest.Connect(t, pgtest.Cluster(t).URL("postgres"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		var sleeping bool
		if err := admin.QueryRow(ctxT(t), `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep')`, int32(pid)).Scan(&sleeping); err != nil {
			t.Fatal(err)
		}
		if sleeping {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d never reached pg_sleep", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitBackend waits until upstream backend pid waits on its client, the
// proxy: ClientWrite (its socket to the proxy is full: the proxy stopped
// reading it) or ClientRead (it sent its whole reply), and returns which.
func waitBackend(t *testing.T, admin *pgx.Conn, pid uint32) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var event string
		err := admin.QueryRow(ctxT(t), `SELECT wait_event FROM pg_stat_activity WHERE pid = $1 AND wait_event IN ('ClientWrite', 'ClientRead')`, int32(pid)).Scan(&event)
		if err == nil {
			return event
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d never waited on the proxy", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitBackendGone waits until upstream backend pid has exited.
func waitBackendGone(t *testing.T, admin *pgx.Conn, pid uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(ctxT(t), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream backend %d still there after its client went away", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGoroutines waits until no more than n goroutines run.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, before %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
