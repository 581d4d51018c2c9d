package integration

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/emulator"
	"github.com/pgstripe/pgstripe/emulator/emulatortest"
	"github.com/pgstripe/pgstripe/pgtest"
	"github.com/pgstripe/pgstripe/verify"
)

// fleetMember is one `pgstripe serve` of a fleet.
type fleetMember struct {
	p         *proc
	proxyAddr string
}

// leaderPID reads the elected instance's OS pid (instances are named
// host-pid-…) and epoch.
func leaderPID(ctx context.Context, pool *pgxpool.Pool) (pid int, epoch int64, alive bool) {
	var instance string
	err := pool.QueryRow(ctx, `SELECT instance, epoch, EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.pid) FROM stripe_sync.leader l`).Scan(&instance, &epoch, &alive)
	if err != nil {
		return 0, 0, false
	}
	parts := strings.Split(instance, "-")
	if len(parts) < 3 {
		return 0, 0, false
	}
	pid, _ = strconv.Atoi(parts[len(parts)-2])
	return pid, epoch, alive
}

// Three instances on one database and one Stripe account: one leads sync;
// killing the leader mid-backfill and mid-events hands over within 5 s; the
// tables end exact; the account never sees more than its rate limit (no 429
// from an emulator limited like test mode).
func TestFleetFailover(t *testing.T) {
	ctx := context.Background()
	e, base := emulatortest.Start(t, emulator.Options{Seed: 120, RateLimit: 25, Latency: 20 * time.Millisecond, LatencyMax: 60 * time.Millisecond})
	dbURL := pgtest.NewDB(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	members := map[int]*fleetMember{}
	startMember := func() {
		proxyAddr := freeAddr(t)
		p := start(t, []string{
			"DATABASE_URL=" + dbURL, "STRIPE_API_KEY=" + apiKey, "STRIPE_API_BASE=" + base,
			"PGSTRIPE_LISTEN=" + proxyAddr, "PGSTRIPE_METRICS_LISTEN=" + freeAddr(t),
			"PGSTRIPE_RATE_LIMIT=20", "PGSTRIPE_POLL_INTERVAL=300ms", "PGSTRIPE_LOG_FORMAT=json",
		}, "serve")
		members[p.cmd.Process.Pid] = &fleetMember{p: p, proxyAddr: proxyAddr}
	}
	for range 3 {
		startMember()
	}

	waitLeader := func(notPID int, minEpoch int64) (int, int64) {
		deadline := time.Now().Add(5 * time.Second)
		if notPID == 0 {
			deadline = time.Now().Add(60 * time.Second) // first start: migrations, connections
		}
		for {
			pid, epoch, alive := leaderPID(ctx, pool)
			if alive && pid != notPID && epoch >= minEpoch && members[pid] != nil {
				return pid, epoch
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new leader within the deadline (last: pid %d epoch %d alive %v)", pid, epoch, alive)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	kill := func(pid int) {
		m := members[pid]
		m.p.cmd.Process.Signal(syscall.SIGKILL)
		err := <-m.p.done
		m.p.done <- err
		delete(members, pid)
	}

	// Mid-backfill: kill the leader once rows are arriving.
	first, epoch := waitLeader(0, 1)
	for {
		var backfilling, rows int
		pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE phase = 'backfilling'), coalesce(sum(rows), 0) FROM stripe_sync.status`).Scan(&backfilling, &rows)
		if backfilling > 0 && rows > 50 {
			break
		}
		if backfilling == 0 && rows > 0 {
			t.Fatalf("backfill finished before it could be interrupted (%d rows); seed more", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
	killedAt := time.Now()
	kill(first)
	second, epoch2 := waitLeader(first, epoch+1)
	t.Logf("leader %d killed mid-backfill; %d took over (epoch %d) after %v", first, second, epoch2, time.Since(killedAt).Round(time.Millisecond))
	startMember()

	// Wait until everything is live.
	deadline := time.Now().Add(120 * time.Second)
	for {
		var notLive int
		pool.QueryRow(ctx, `SELECT count(*) FROM stripe_sync.status WHERE phase <> 'live'`).Scan(&notLive)
		if notLive == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d object types not live after 120s", notLive)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Mid-events: changes in Stripe, a write through a follower, the leader
	// killed while they flow.
	client := newStripe(t, base)
	var follower *fleetMember
	for pid, m := range members {
		if pid != second {
			follower = m
		}
	}
	u, _ := url.Parse(dbURL)
	u.Host = follower.proxyAddr
	for i := range 12 {
		client.post(t, "/v1/customers", url.Values{"email": {fmt.Sprintf("fleet%d@example.com", i)}})
		if i == 4 {
			kill(second)
		}
		if i == 6 {
			if out, err := psql(t, u.String(), "-c", `INSERT INTO stripe.customers (email) VALUES ('through-follower@example.com') RETURNING id`); err != nil {
				t.Fatalf("write through a follower: %v %s", err, out)
			}
		}
	}
	third, epoch3 := waitLeader(second, epoch2+1)
	t.Logf("leader %d killed mid-events; %d took over (epoch %d)", second, third, epoch3)

	deadline = time.Now().Add(30 * time.Second)
	for {
		d, err := verify.Compare(ctx, pool, e)
		if err != nil {
			t.Fatal(err)
		}
		if d.Total() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tables differ from Stripe 30s after the last change: %d missing, %d extra, %d stale: %v", d.Missing, d.Extra, d.Stale, d.Details)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n := e.Stats().ByStatus[429]; n != 0 {
		t.Fatalf("the fleet exceeded the account's rate limit: %d requests answered 429", n)
	}
}
