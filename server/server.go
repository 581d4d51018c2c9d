package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/fleet"
	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/metrics"
	"github.com/pgstripe/pgstripe/proxy"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/events"
	"github.com/pgstripe/pgstripe/writethrough"
)

// Options configure Run.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Instance identifies this process in the fleet (default: host-pid-…).
	Instance leader.Info
	// Progress, when set, receives the backfill's progress (the demo shows it).
	Progress func(backfill.Progress)
	// Ready, when set, is called once the proxy and metrics listen.
	Ready func(proxyAddr, metricsAddr string)
	// Follower never campaigns for sync leadership: the instance serves the
	// proxy and takes part in the fleet's rate budget only.
	Follower bool
	// HeldWait bounds how long a one-shot Backfill waits, after its
	// pages, for rows other transactions hold (default 30 s).
	HeldWait time.Duration
}

// Run serves until ctx is cancelled, then shuts down cleanly and returns
// nil; it returns an error when start-up fails (database unreachable,
// migration failure, address in use). A shutdown requested during start-up
// (SIGTERM while waiting for the database) is not a failure.
func Run(ctx context.Context, opts Options) error {
	err := run(ctx, opts)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

func run(ctx context.Context, opts Options) error {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Instance.Instance == "" {
		opts.Instance = leader.DefaultInfo()
	}

	// The ports first: a port in use fails at once, before waiting for
	// the database or migrating it.
	var lc net.ListenConfig
	proxyLn, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return listenError("PGSTRIPE_LISTEN", "--listen", cfg.Listen, err)
	}
	defer proxyLn.Close()
	metricsLn, err := lc.Listen(ctx, "tcp", cfg.MetricsListen)
	if err != nil {
		return listenError("PGSTRIPE_METRICS_LISTEN", "--metrics-listen", cfg.MetricsListen, err)
	}
	defer metricsLn.Close()

	pool, err := openDatabase(ctx, cfg.DatabaseURL, "pgstripe", log)
	if err != nil {
		return err
	}
	defer pool.Close()
	pgcfg := pool.Config()
	log.Info("schemas stripe and stripe_sync are up to date", "tables", len(schema.Tables()))

	counter := &fleet.Counter{}
	client, err := stripeapi.New(stripeapi.Config{
		APIKey:    cfg.StripeAPIKey,
		BaseURL:   cfg.StripeAPIBase,
		RateLimit: cfg.RateLimit,
		Observer:  stripeapi.Observers{stripeapi.PrometheusObserver{}, counter},
		Logger:    log.With("component", "stripe"),
	})
	if err != nil {
		return err
	}
	if err := checkMode(ctx, pool, client.Live()); err != nil {
		return err
	}
	lateKeyErr, err := startKeyCheck(ctx, client, cfg.StripeAPIBase)
	if err != nil {
		return err
	}

	hosts, first, err := upstreamHosts(ctx, pool)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("PGSTRIPE_TLS_CERT/PGSTRIPE_TLS_KEY: %v", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	wt := writethrough.New(writethrough.Config{Stripe: client, Pool: pool, Logger: log.With("component", "writethrough")})
	px := proxy.New(proxy.Config{
		Hosts:       hosts,
		FirstHost:   first,
		Primary:     len(hosts) > 1 && wantsPrimary(pgcfg.ConnConfig),
		TLSConfig:   tlsConfig,
		TLSRequired: cfg.TLSRequired,
		Classify:    classifier,
		Interceptor: interceptor(wt),
		Logger:      log.With("component", "proxy"),
	})

	metrics.SetProxySessions(px.Sessions)
	metrics.ProxyStatements.SetPassthrough(px.PassedThrough)

	var isLeader atomic.Bool
	var syncErr atomic.Value // string: the last sync failure, for /healthz
	health := map[string]metrics.Check{
		// pgx's connect errors span lines; the 503's JSON carries one.
		"database": func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return errors.New(config.ErrorText(err))
			}
			return nil
		},
		"sync": func(ctx context.Context) error {
			s, _ := syncErr.Load().(string)
			if s == "" {
				return nil
			}
			// The failure is that of this instance's last term as leader.
			// Once another instance runs sync, this one is a healthy
			// follower: reporting the old failure for ever would take its
			// proxy out of service.
			if !isLeader.Load() {
				if cur, ok, err := leader.Lookup(ctx, pool); err == nil && ok && cur.Alive && cur.Instance != opts.Instance.Instance {
					return nil
				}
			}
			return errors.New(s)
		},
	}
	metricsSrv := &http.Server{Handler: metrics.Handler(health), ReadHeaderTimeout: 5 * time.Second}

	var wg sync.WaitGroup
	proxyCtx, stopProxy := context.WithCancel(context.WithoutCancel(ctx))
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := px.Serve(proxyCtx, countingListener{proxyLn}); err != nil {
			log.Error("proxy stopped", "err", err)
		}
	}()
	go metricsSrv.Serve(metricsLn)
	log.Info("proxy listening", "addr", proxyLn.Addr().String(), "upstream", hosts[first].Addr)
	log.Info("metrics listening", "addr", metricsLn.Addr().String())
	if opts.Ready != nil {
		opts.Ready(proxyLn.Addr().String(), metricsLn.Addr().String())
	}

	syncCtx, stopSync := context.WithCancel(ctx)
	member := &fleet.Member{Pool: pool, Info: opts.Instance, Limiter: client.Limiter(), Counter: counter,
		Total: cfg.RateLimit, IsLeader: isLeader.Load, Logger: log.With("component", "fleet")}
	wg.Add(1)
	go func() { defer wg.Done(); member.Run(syncCtx) }()
	if !opts.Follower {
		elector := &leader.Elector{ConnConfig: pgcfg.ConnConfig, Info: opts.Instance, Logger: log.With("component", "leader")}
		wg.Add(1)
		go func() {
			defer wg.Done()
			elector.Run(syncCtx, func(ctx context.Context, epoch int64) error {
				isLeader.Store(true)
				defer isLeader.Store(false)
				syncErr.Store("")
				err := runSync(ctx, pool, client, cfg, epoch, opts.Progress, log)
				if err != nil && ctx.Err() == nil {
					syncErr.Store(config.ErrorText(err))
				}
				return err
			})
		}()
	}

	var keyErr error
	select {
	case <-ctx.Done():
	case keyErr = <-lateKeyErr:
		if keyErr == nil {
			<-ctx.Done()
		}
	}
	log.Info("shutting down")
	stopSync()
	stopProxy()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	metricsSrv.Shutdown(sctx)
	log.Info("stopped")
	return keyErr
}

// runSync is the leader's work: backfill what is not complete, then follow
// events until ctx ends or leadership is lost.
func runSync(ctx context.Context, pool *pgxpool.Pool, client *stripeapi.Client, cfg *config.Config, epoch int64, progress func(backfill.Progress), log *slog.Logger) error {
	fence := func(ctx context.Context, tx pgx.Tx) error { return leader.Fence(ctx, tx, epoch) }
	var last backfill.Progress
	bcfg := backfill.Config{Pool: pool, Client: client, Fence: fence, Logger: log.With("component", "backfill"),
		Progress: countRows(func(p backfill.Progress) {
			last = p
			if progress != nil {
				progress(p)
			}
		})}
	err := backfill.Run(ctx, bcfg)
	var partial *backfill.PartialError
	switch {
	case errors.As(err, &partial):
		// The failed types are in phase error (stripe_sync.status); the
		// others are complete and go live.
		log.Error("backfill incomplete", "err", err)
	case err != nil:
		return err
	default:
		// Without it the log of a first start ends at the last "object
		// complete", and whoever watches it can't tell when the tables
		// are whole and follow Stripe.
		logBackfillDone(log, last)
	}
	return events.Run(ctx, events.Config{
		Pool: pool, Client: client, PollInterval: cfg.PollInterval, Epoch: epoch,
		// events.Run adds its own component attribute.
		Logger: log,
		Backfill: func(ctx context.Context, since time.Time) error {
			full := bcfg
			full.RestartCompletedBefore = since
			full.Progress = countRows(progress)
			return backfill.Run(ctx, full)
		},
	})
}

// logBackfillDone says that the backfill is complete and sync follows
// Stripe's events, with what the backfill fetched when it fetched
// anything (a restart whose backfill completed earlier fetches nothing).
func logBackfillDone(log *slog.Logger, p backfill.Progress) {
	var rows int64
	fetched := false
	for _, o := range p.Objects {
		rows += o.Rows
		fetched = fetched || !o.Skipped
	}
	if !fetched {
		log.Info("sync is live: following Stripe's events (backfill completed earlier)")
		return
	}
	log.Info("backfill complete; sync is live: following Stripe's events", "rows", rows, "requests", p.Requests,
		"took", p.Elapsed.Round(time.Second).String())
}

// countRows feeds pgstripe_backfill_rows_total from a backfill's progress
// (the backfill reports rows per table since its start), then passes the
// progress on to next, if any. Use a fresh one for each backfill.Run.
func countRows(next func(backfill.Progress)) func(backfill.Progress) {
	counted := map[string]int64{}
	return func(p backfill.Progress) {
		for _, o := range p.Objects {
			if d := o.Rows - counted[o.Object]; d > 0 {
				metrics.BackfillRows.WithLabelValues(o.Object).Add(float64(d))
				counted[o.Object] = o.Rows
			}
		}
		if next != nil {
			next(p)
		}
	}
}

// openDatabase connects to DATABASE_URL (waiting for it to come up),
// migrates, and returns the pool. Errors never carry the connection string.
func openDatabase(ctx context.Context, url, appName string, log *slog.Logger) (*pgxpool.Pool, error) {
	pgcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, config.BadDatabaseURL(err)
	}
	pgcfg.ConnConfig.RuntimeParams["application_name"] = appName
	config.OwnSession(&pgcfg.ConnConfig.Config)
	pgcfg.MaxConns = max(pgcfg.MaxConns, 8)
	pool, err := pgxpool.NewWithConfig(ctx, pgcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	if err := waitForDatabase(ctx, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	if err := refuseTransactionPooling(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if err := schema.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err // "migrate: …" already
	}
	return pool, nil
}

// refuseTransactionPooling fails when DATABASE_URL leads to a pooler that
// hands each transaction whichever server connection is free (PgBouncer's
// pool_mode = transaction or statement). Nothing of pgstripe's would say
// so: the leader's session advisory lock would stay on a server connection
// that others then use (two leaders, or none), and the session settings
// and prepared statements of a connection would be found on another's.
//
// Two connections tell: while b holds a transaction open, a gets a server
// connection other than b's and, on a session of its own, always the same
// one. So a saw b's backend, or a moved: pooled per transaction. (Neither
// can happen on Postgres or a session-mode pool, so this never refuses
// those; a pooler that happens to keep a on one backend passes unnoticed.)
func refuseTransactionPooling(ctx context.Context, pool *pgxpool.Pool) error {
	a, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	defer a.Release()
	b, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	defer b.Release()
	// The simple protocol: a statement prepared on one server connection
	// would not be found on the next.
	pid := func(c *pgxpool.Conn) (int32, error) {
		var p int32
		err := c.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&p)
		return p, err
	}
	p1, err := pid(a)
	if err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	if _, err := b.Exec(ctx, "BEGIN", pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	pb, errB := pid(b)
	p2, errA := pid(a)
	_, errEnd := b.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol)
	if err := errors.Join(errB, errA, errEnd); err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	if pb == p1 || p2 != p1 {
		return errors.New("DATABASE_URL leads to a connection pooler in transaction pooling mode (PgBouncer pool_mode = transaction or statement): pgstripe needs a session per connection (sync's leader election holds a session advisory lock); point DATABASE_URL at Postgres or at a pool in session mode")
	}
	return nil
}

// listenError says which setting names an address that can't be listened
// on, and how to give another: Go's "listen tcp 127.0.0.1:6543: bind:
// address already in use" names neither.
func listenError(env, flag, addr string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return fmt.Errorf("%s: %s is not available (%v): give a free address with %s or %s", env, addr, err, env, flag)
}

// waitForDatabase retries the first connection for a while: in a compose
// file pgstripe may start before Postgres accepts connections.
func waitForDatabase(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pool.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil || permanent(err) {
			return fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
		}
		log.Warn("waiting for the database", "err", config.ConnErrorText(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// permanent says whether a failed connection is refused for a reason that
// waiting won't change: a wrong password, a role or database that doesn't
// exist, pg_hba.conf. (A starting Postgres refuses with 57P03 or not at
// all, and the postgres image opens TCP only once its roles and database
// exist.)
func permanent(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		// sslmode=require (or verify-…) and a server without TLS: a server
		// that is up and answered, and will answer the same.
		return strings.Contains(err.Error(), "server refused TLS connection")
	}
	// PgBouncer refusing a startup parameter of DATABASE_URL (options=…)
	// is for good; its other 08P01s ("cannot connect to server") are not.
	return strings.HasPrefix(pe.Code, "28") || pe.Code == "3D000" ||
		pe.Code == "08P01" && strings.HasPrefix(pe.Message, "unsupported startup parameter")
}

// upstreamAddr is where the proxy connects: one of DATABASE_URL's hosts
// and its port (a Unix socket when the host is a directory).
func upstreamAddr(host string, port uint16) (string, error) {
	if host == "" {
		return "", errors.New("DATABASE_URL has no host")
	}
	if host[0] == '/' {
		return host + "/.s.PGSQL." + strconv.Itoa(int(port)), nil
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
}

// upstreamHosts lists the servers DATABASE_URL names (host=a,b), in its
// order, each with the TLS its sslmode asks for, and the index of the one
// pgstripe's pool connected to: with several hosts pgx tries them in turn,
// and target_session_attrs=read-write skips standbys, so sessions start
// where sync writes rather than at the first host named, which may be
// down or read-only. The proxy moves on to another host by itself after a
// failover (proxy.Config.Hosts).
func upstreamHosts(ctx context.Context, pool *pgxpool.Pool) ([]proxy.UpstreamHost, int, error) {
	hosts, named, err := hostsOf(pool.Config().ConnConfig)
	if err != nil {
		return nil, 0, err
	}
	if len(hosts) == 1 {
		return hosts, 0, nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("connect to DATABASE_URL: %s", config.ConnErrorText(err))
	}
	addr := conn.Conn().PgConn().Conn().RemoteAddr()
	conn.Release()
	is := func(h *pgconn.FallbackConfig) bool {
		switch a := addr.(type) {
		case *net.UnixAddr:
			return strings.HasPrefix(h.Host, "/") && a.Name == h.Host+"/.s.PGSQL."+strconv.Itoa(int(h.Port))
		case *net.TCPAddr:
			if a.Port != int(h.Port) {
				return false
			}
			if ip := net.ParseIP(h.Host); ip != nil {
				return ip.Equal(a.IP)
			}
			ips, _ := net.DefaultResolver.LookupIPAddr(ctx, h.Host)
			for _, ip := range ips {
				if ip.IP.Equal(a.IP) {
					return true
				}
			}
		}
		return false
	}
	for i, h := range named {
		if is(h) {
			return hosts, i, nil
		}
	}
	return hosts, 0, nil // can't tell: the first host, as libpq starts
}

// hostsOf lists c's hosts for the proxy. The TLS of each is as its
// sslmode asks: require, verify-ca and verify-full demand it; prefer (the
// default) uses it when Postgres offers it (optional); allow and disable
// go in plain text. pgx lists a host twice for prefer (TLS, then plain)
// and allow (plain, then TLS): one proxy host each, with the TLS of the
// first attempt, optional when a plain one follows. named has the first
// attempt of each.
func hostsOf(c *pgx.ConnConfig) (hosts []proxy.UpstreamHost, named []*pgconn.FallbackConfig, err error) {
	all := append([]*pgconn.FallbackConfig{{Host: c.Host, Port: c.Port, TLSConfig: c.TLSConfig}}, c.Fallbacks...)
	for _, fb := range all {
		addr, err := upstreamAddr(fb.Host, fb.Port)
		if err != nil {
			return nil, nil, err
		}
		i := 0
		for i < len(hosts) && hosts[i].Addr != addr {
			i++
		}
		if i == len(hosts) {
			hosts = append(hosts, proxy.UpstreamHost{Addr: addr, TLS: fb.TLSConfig})
			named = append(named, fb)
			continue
		}
		if hosts[i].TLS != nil && fb.TLSConfig == nil {
			hosts[i].TLSOptional = true
		}
	}
	return hosts, named, nil
}

// wantsPrimary reports whether DATABASE_URL's target_session_attrs
// (read-write or primary) rules standbys out, which pgx keeps only as
// the check it runs on each connection.
func wantsPrimary(c *pgx.ConnConfig) bool {
	if c.ValidateConnect == nil {
		return false
	}
	f := reflect.ValueOf(c.ValidateConnect).Pointer()
	return f == reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsReadWrite).Pointer() ||
		f == reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsPrimary).Pointer()
}
