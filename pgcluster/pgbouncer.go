package pgcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PgBouncerOptions configure StartPgBouncer.
type PgBouncerOptions struct {
	// Mode is PgBouncer's pool_mode: session (the default), transaction or
	// statement.
	Mode string
	// Unix makes PgBouncer reach Postgres through its Unix socket.
	Unix bool
	// Users may connect (trust) besides postgres.
	Users []string
}

// StartPgBouncer runs PgBouncer (`apt-get install pgbouncer`) in front of c,
// every database passed through, and returns its port and a stop function.
// It is a reference point for the proxy's benchmark and the pooler users
// put between pgstripe and Postgres.
func StartPgBouncer(ctx context.Context, c *Cluster, opts PgBouncerOptions) (int, func(), error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return 0, nil, fmt.Errorf("pgbouncer not found (apt-get install pgbouncer)")
	}
	if opts.Mode == "" {
		opts.Mode = "session"
	}
	port, err := FreePort()
	if err != nil {
		return 0, nil, err
	}
	dir, err := os.MkdirTemp(c.Dir, "pgbouncer")
	if err != nil {
		return 0, nil, err
	}
	host := "127.0.0.1"
	if opts.Unix {
		host = c.Dir
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = %s
max_client_conn = 100
default_pool_size = 20
logfile = %s
pidfile = %s
`, host, c.Port, port, filepath.Join(dir, "users.txt"), opts.Mode, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	var users strings.Builder
	for _, u := range append([]string{"postgres"}, opts.Users...) {
		fmt.Fprintf(&users, "%q \"\"\n", u)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(users.String()), 0o644); err != nil {
		return 0, nil, err
	}
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(bin, cfg)
	// PgBouncer, like Postgres, refuses to run as root.
	cred, err := ServerCredential()
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
