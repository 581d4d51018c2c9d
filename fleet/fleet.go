package fleet

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/leader"
	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
)

func init() {
	schema.Register(schema.Migration{Version: 401, Name: "fleet: instances and their Stripe request rates", SQL: `
CREATE TABLE stripe_sync.instances (
    instance     text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    leader       boolean NOT NULL DEFAULT false,
    rate         double precision NOT NULL DEFAULT 0,
    rate_limit   double precision NOT NULL DEFAULT 0,
    last_429_at  timestamptz,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE stripe_sync.instances IS 'pgstripe: the instances sharing this database and their Stripe request rates (heartbeat every second)';
`})
}

// Counter counts this instance's Stripe requests and 429s. It is a
// stripeapi.Observer: add it to the client's observers.
type Counter struct {
	requests atomic.Int64
	last429  atomic.Int64 // unix nanoseconds
}

func (c *Counter) Request(string, int, time.Duration) { c.requests.Add(1) }

// RateLimited notes a 429 of the account's limit for the fleet. One of an
// endpoint's limit is left to this instance's limiter of that endpoint:
// the account is not over its rate, so the other instances need not slow.
func (c *Counter) RateLimited(_ string, reason string) {
	if !stripeapi.EndpointScoped(reason) {
		c.last429.Store(time.Now().UnixNano())
	}
}

func (c *Counter) LimiterWait(stripeapi.Priority, time.Duration) {
}

// Member is one instance's share of the budget.
type Member struct {
	Pool    *pgxpool.Pool
	Info    leader.Info
	Limiter *stripeapi.Limiter
	Counter *Counter
	// Total is the fleet's budget (requests per second for the account).
	Total float64
	// IsLeader tells whether this instance currently runs sync.
	IsLeader func() bool
	// Interval between heartbeats; default 1s.
	Interval time.Duration
	Logger   *slog.Logger
}

// Share is the computed split, for tests and logs.
type Share struct {
	Others      float64 // Σ others' recent rates
	Limit       float64 // this instance's limit
	Others429At time.Time
	Members     int
}

// Run heartbeats until ctx ends. Errors (database away) are logged and the
// limiter keeps its last setting.
func (m *Member) Run(ctx context.Context) error {
	interval := m.Interval
	if interval <= 0 {
		interval = time.Second
	}
	log := m.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	// The rate is measured over a sliding window of about two seconds, so
	// that bursty writers publish their average, not their last burst.
	type sample struct {
		at    time.Time
		count int64
	}
	window := []sample{{time.Now(), m.Counter.requests.Load()}}
	seen429 := time.Now() // 429s from before this instance started are old news
	defer m.leave()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		window = append(window, sample{now, m.Counter.requests.Load()})
		for len(window) > 2 && now.Sub(window[1].at) >= 2*time.Second {
			window = window[1:]
		}
		first, last := window[0], window[len(window)-1]
		rate := float64(last.count-first.count) / last.at.Sub(first.at).Seconds()
		share, err := m.beat(ctx, rate)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("fleet heartbeat failed; keeping the current rate limit", "err", config.ErrorText(err))
			}
			continue
		}
		if math.Abs(share.Limit-m.Limiter.Rate()) > 0.05*m.Total {
			m.Limiter.SetRate(share.Limit)
		}
		if share.Others429At.After(seen429) {
			m.Limiter.Observe429(now)
			seen429 = share.Others429At
		}
	}
}

// Split is the budget rule: what this instance may use given the others'
// recent rates.
func Split(total, others float64, isLeader bool) float64 {
	reserve := 0.0
	if isLeader {
		reserve = 0.1 * total
	}
	return math.Max(0.1*total, math.Min(total, total-others-reserve))
}

func (m *Member) beat(ctx context.Context, rate float64) (Share, error) {
	var last429 *time.Time
	if ns := m.Counter.last429.Load(); ns != 0 {
		t := time.Unix(0, ns)
		last429 = &t
	}
	isLeader := m.IsLeader != nil && m.IsLeader()
	var s Share
	var others429 *time.Time
	err := m.Pool.QueryRow(ctx, `
		WITH me AS (
			INSERT INTO stripe_sync.instances (instance, host, pid, leader, rate, rate_limit, last_429_at, heartbeat_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, now())
			ON CONFLICT (instance) DO UPDATE SET leader = excluded.leader, rate = excluded.rate,
				rate_limit = excluded.rate_limit, last_429_at = excluded.last_429_at, heartbeat_at = now()
		), gone AS (
			DELETE FROM stripe_sync.instances WHERE heartbeat_at < now() - interval '1 minute'
		)
		SELECT coalesce(sum(rate), 0), max(last_429_at), count(*) + 1
		FROM stripe_sync.instances
		WHERE instance <> $1 AND heartbeat_at > now() - interval '5 seconds'`,
		m.Info.Instance, m.Info.Host, pid, isLeader, rate, m.Limiter.Rate(), last429,
	).Scan(&s.Others, &others429, &s.Members)
	if err != nil {
		return s, err
	}
	if others429 != nil {
		s.Others429At = *others429
	}
	s.Limit = Split(m.Total, s.Others, isLeader)
	return s, nil
}

// leave removes this instance's row so the others get its share at once.
func (m *Member) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m.Pool.Exec(ctx, "DELETE FROM stripe_sync.instances WHERE instance = $1", m.Info.Instance)
}
