package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// InstallHint is the one command that installs the binaries Start needs,
// to be run as root (the update: a fresh machine or image may have no
// package lists yet).
const InstallHint = "apt-get update && apt-get install -y postgresql"

// dirPrefix names the temporary directories of clusters, so that Start can
// find and remove the ones whose owner died.
const dirPrefix = "pgstripe-pg-"

// Options tune a cluster. The zero value is a sensible test cluster.
type Options struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// Settings are extra postgresql.conf settings (name → value).
	Settings map[string]string
	// HBA, when set, replaces pg_hba.conf (e.g. to test md5 or scram).
	HBA string
	// Password for the superuser "postgres"; empty means none.
	Password string
	// Stderr receives the server's log; nil discards it (it stays in the
	// data directory's log file).
	Stderr *os.File
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	Dir     string // temporary directory holding data and socket
	Host    string // always 127.0.0.1
	Port    int
	BinDir  string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the server process has exited
	exitErr error
	stop    sync.Once
}

// BinDir finds the directory holding initdb and postgres: pg_config's bindir,
// else the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if dir := os.Getenv("PGSTRIPE_PG_BINDIR"); dir != "" {
		return dir, nil
	}
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versions, func(i, j int) bool { return pgVersion(versions[i]) > pgVersion(versions[j]) })
	return firstBinDir(append(candidates, versions...))
}

func firstBinDir(candidates []string) (string, error) {
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found; install them as root with: %s", InstallHint)
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start creates and starts a cluster. The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	removeOrphans()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Host: "127.0.0.1", BinDir: binDir}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cred, err := ServerCredential()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := c.initdb(ctx, opts, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A port can be taken between choosing and binding it; retry a few times.
	for attempt := 0; ; attempt++ {
		c.Port = opts.Port
		if c.Port == 0 {
			if c.Port, err = FreePort(); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
		}
		err = c.start(ctx, opts, cred)
		if err == nil {
			return c, nil
		}
		if opts.Port != 0 || attempt == 4 || ctx.Err() != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// ServerCredential is the user to run a server that refuses root as:
// "postgres" when running as root, nil otherwise.
func ServerCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root, but there is no user \"postgres\" to run it as (%w); install PostgreSQL with: %s", err, InstallHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
}

func (c *Cluster) dataDir() string { return filepath.Join(c.Dir, "data") }

func (c *Cluster) initdb(ctx context.Context, opts Options, cred *syscall.Credential) error {
	args := []string{"-D", c.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	if opts.Password != "" {
		pwfile := filepath.Join(c.Dir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(opts.Password+"\n"), 0o600); err != nil {
			return err
		}
		if cred != nil {
			os.Chown(pwfile, int(cred.Uid), int(cred.Gid))
		}
		args = append(args, "--pwfile", pwfile)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "initdb"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = c.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, lastLines(out, 5))
	}
	settings := map[string]string{
		"fsync":                     "off",
		"synchronous_commit":        "off",
		"full_page_writes":          "off",
		"max_connections":           "300",
		"shared_buffers":            "128MB",
		"unix_socket_directories":   "'" + c.Dir + "'",
		"listen_addresses":          "'127.0.0.1'",
		"logging_collector":         "off",
		"max_prepared_transactions": "0",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	var conf bytes.Buffer
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(conf.Bytes()); err != nil {
		return err
	}
	if opts.HBA != "" {
		if err := os.WriteFile(filepath.Join(c.dataDir(), "pg_hba.conf"), []byte(opts.HBA), 0o600); err != nil {
			return err
		}
		if cred != nil {
			os.Chown(filepath.Join(c.dataDir(), "pg_hba.conf"), int(cred.Uid), int(cred.Gid))
		}
	}
	return nil
}

func (c *Cluster) start(ctx context.Context, opts Options, cred *syscall.Credential) error {
	logPath := filepath.Join(c.Dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.BinDir, "postgres"), "-D", c.dataDir(), "-p", strconv.Itoa(c.Port))
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if opts.Stderr != nil {
		cmd.Stderr = opts.Stderr
	}
	// Pdeathsig: if this process dies without calling Stop (a panic in a
	// test, kill -9), the postmaster gets SIGQUIT and its children follow.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	logFile.Close()
	c.cmd = cmd
	exited := make(chan struct{})
	c.exited = exited
	go func() { c.exitErr = cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", c.Addr(), 200*time.Millisecond)
		if err == nil {
			conn.Close()
			if c.ready(ctx) {
				return nil
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited during start-up (%v): %s", c.exitErr, lastLines(out, 5))
		case <-ctx.Done():
			c.kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.kill()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres did not accept connections within 30s: %s", lastLines(out, 5))
		}
	}
}

// ready reports whether the server accepts queries (not just TCP).
func (c *Cluster) ready(ctx context.Context) bool {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "pg_isready"), "-q", "-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", "postgres")
	return cmd.Run() == nil
}

func (c *Cluster) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		pid := c.cmd.Process.Pid
		// Backends call setsid(), so a signal to the postmaster's process
		// group misses them: kill them by parentage. They hold the shared
		// memory until they are gone, and a restart before then fails
		// ("pre-existing shared memory block is still in use").
		kids := childrenOf(pid)
		syscall.Kill(-pid, syscall.SIGKILL)
		for _, k := range kids {
			syscall.Kill(k, syscall.SIGKILL)
		}
		<-c.exited
		for _, k := range kids {
			for i := 0; i < 500 && alive(k); i++ {
				time.Sleep(10 * time.Millisecond)
			}
		}
		// The exit status is consumed: a later Restart or Stop must not
		// wait for it again.
		c.cmd = nil
	}
}

// childrenOf lists the processes whose parent is pid (Linux /proc).
func childrenOf(pid int) []int {
	var kids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		k, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := procStat(k); ppid == pid {
			kids = append(kids, k)
		}
	}
	return kids
}

// procStat reads a process's parent and state from /proc/pid/stat.
func procStat(pid int) (ppid int, state byte) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 2 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0][0]
}

// alive: the process exists and is not a zombie (a zombie has released its
// memory, shared segments included).
func alive(pid int) bool {
	_, state := procStat(pid)
	return state != 0 && state != 'Z'
}

// Addr is host:port.
func (c *Cluster) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// URL is a connection URL for the superuser to database db.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", c.Addr(), db)
}

// Stop shuts the server down (fast shutdown, then SIGKILL after 10s) and
// removes the directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var err error
	c.stop.Do(func() {
		if c.cmd != nil && c.cmd.Process != nil {
			c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-c.exited:
			case <-time.After(10 * time.Second):
				syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
				<-c.exited
			}
		}
		err = os.RemoveAll(c.Dir)
	})
	return err
}

// Restart stops the server without removing its data and starts it again on
// the same port (for tests of a Postgres restart).
func (c *Cluster) Restart(ctx context.Context) error {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGINT)
		<-c.exited
	}
	cred, err := ServerCredential()
	if err != nil {
		return err
	}
	return c.start(ctx, Options{}, cred)
}

// Kill stops the server abruptly (SIGKILL to the postmaster and its children)
// without removing its data; Start again with Restart.
func (c *Cluster) Kill() { c.kill() }

// removeOrphans deletes clusters whose owning process is gone (and kills
// their servers, in case the parent-death signal did not reach them).
func removeOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || processAlive(pid) {
			continue
		}
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			if line, _, ok := bytes.Cut(pm, []byte("\n")); ok {
				if spid, err := strconv.Atoi(string(line)); err == nil && spid > 0 {
					syscall.Kill(spid, syscall.SIGQUIT)
				}
			}
		}
		os.RemoveAll(dir)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
