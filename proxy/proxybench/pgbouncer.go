package proxybench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pgstripe/pgstripe/pgcluster"
)

// startPgBouncer runs PgBouncer in session mode in front of c, as a
// reference point measured in the same rounds as the proxy: the usual
// proxy in front of Postgres, written in C on one event loop. unix makes it
// reach Postgres through the Unix socket, like the proxy's -unix. It
// returns the port and a stop function.
func startPgBouncer(ctx context.Context, c *pgcluster.Cluster, unix bool) (int, func(), error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return 0, nil, fmt.Errorf("pgbouncer not found (apt-get install pgbouncer)")
	}
	port, err := pgcluster.FreePort()
	if err != nil {
		return 0, nil, err
	}
	dir := filepath.Join(c.Dir, "pgbouncer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, err
	}
	host := "127.0.0.1"
	if unix {
		host = c.Dir
	}
	ini := fmt.Sprintf(`[databases]
postgres = host=%s port=%d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = %s
pidfile = %s
`, host, c.Port, port, filepath.Join(dir, "users.txt"), filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return 0, nil, err
	}
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(bin, cfg)
	// PgBouncer, like Postgres, refuses to run as root.
	cred, err := pgcluster.ServerCredential()
	if err != nil {
		return 0, nil, fmt.Errorf("pgbouncer: %w", err)
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return 0, nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return port, stop, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			return 0, nil, fmt.Errorf("pgbouncer did not start: %s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
