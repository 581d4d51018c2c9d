package events

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// Re-fetches Stripe refuses for good. A restricted key lacking a read
// permission is refused every object of the type (403), however many are
// queued: each stays queued, unresolved (keepUnresolved), and the table's
// re-fetches are answered from that refusal, without a request, for
// unresolvedRetry; then one of them (a probe) is fetched alone, and only
// an answer (the permission granted) lets the rest go. So a table the key
// can never read costs one request per unresolvedRetry, not one per
// object, and its entries, one per object (the queue's key), say which
// rows may be stale once the permission is granted. Another refusal (400:
// a malformed id, an object our API version can't render) concerns its
// object only.
//
// A table is probed whenever it is not known readable: after a start (a
// restarted process knows no refusal), a refusal's window, a failure that
// says nothing of the key (5xx, 429, a timeout), and a 403 of a table
// Stripe answered before (the key lost the permission while running, or
// Stripe refuses that one object: the probe, another object, tells
// which). The probe's answer decides for the others as soon as it comes,
// whatever other tables' fetches are under way (fetches): readable, they
// are fetched at once; refused, they are answered from the refusal.
// Stripe failing the probe leaves them for a later drain, so an outage
// costs one request per table per drain (none while the table's last one
// is under way), and the next drain probes another object, the newest
// Stripe has not failed (readDue), so objects Stripe keeps failing can't
// hold back their table.

// tableRefusal is a table's wholesale refusal (poller.refusals).
type tableRefusal struct {
	err   error
	until time.Time // on Stripe's clock (poller.clock)
}

// wholesale: a refusal that concerns every object of the table, the
// key's permissions (Stripe: "403 Forbidden: the API key doesn't have
// permissions to perform the request").
func wholesale(err error) bool {
	var se *stripeapi.Error
	return errors.As(err, &se) && se.HTTPStatus == http.StatusForbidden
}

// errUndecided: a re-fetch not made because its table, not known
// readable, awaits its probe's answer (tableGate). Not a failure: the
// entry stays due for the drain's next round, or the next drain.
var errUndecided = errors.New("events: re-fetch waits for its table's probe")

// tableGate says how a re-fetch of table goes: answered from the table's
// refusal (err, gated) while one is recent, or, for one that is not its
// table's probe (probe false) while the table is not known readable,
// deferred (errUndecided): it was planned while the table was readable
// or refused, and since a 403 or the refusal's end left it undecided.
// Without the deferral every re-fetch a drain had started on a table
// whose key just lost the permission would be one request each.
func (p *poller) tableGate(table string, probe bool) (err error, gated bool) {
	now := p.clock.get()
	p.refusalMu.Lock()
	defer p.refusalMu.Unlock()
	if r, ok := p.refusals[table]; ok && now.Before(r.until) {
		return r.err, true
	}
	if !probe && !p.readable[table] {
		return errUndecided, false
	}
	return nil, false
}

// noteAnswer records what Stripe answered a re-fetch of table (id; err,
// nil: the object): a wholesale refusal gates the table, any other answer
// from Stripe about the object (a 404, another refusal) opens it.
//
// A 403 for one object of a table that answered others since its last
// refusal (readable) does not gate it at once: Stripe's docs don't rule
// out a permission that depends on the object, and one such object
// among readable ones would close its table for unresolvedRetry at each
// of its own re-fetches. The table is no longer known readable, so its
// next re-fetch is a probe of another object, whose 403 gates it (the key
// lost the permission) and whose answer opens it again (that object
// alone is refused, unresolved on its own). That object refused again,
// alone due, says nothing more of the table.
//
// A failure that says nothing of the key (5xx, 429, a timeout, a 401)
// leaves the table not known readable, probed next with another object
// if one is due: during an outage a readable table's re-fetches would
// otherwise each cost a request and the client's retries at every drain,
// through the limiter the polls share, where one probe per drain tells
// when Stripe answers again.
func (p *poller) noteAnswer(table, id string, err error) {
	p.refusalMu.Lock()
	defer p.refusalMu.Unlock()
	switch {
	case wholesale(err) && p.readable[table]:
		delete(p.readable, table)
		p.probed[table] = id
		p.doubted[table] = id
	case wholesale(err) && p.doubted[table] == id:
	case wholesale(err):
		delete(p.doubted, table)
		if _, again := p.refusals[table]; !again {
			p.log.Warn("Stripe refuses this key the re-fetch of a whole table; its queued objects stay queued, one tried every "+unresolvedRetry.String()+": grant the key the read permission Stripe names",
				"table", table, "err", err)
		}
		p.refusals[table] = tableRefusal{err: err, until: p.clock.get().Add(unresolvedRetry)}
		p.probed[table] = id
	case err == nil, refused(err), stripeapi.IsNotFound(err):
		delete(p.refusals, table)
		delete(p.probed, table)
		delete(p.doubted, table)
		p.readable[table] = true
	default:
		delete(p.readable, table)
		p.probed[table] = id
	}
}

// plannedFetch is a re-fetch a drain's round makes: probe, its table's
// probe, whose answer decides for the table's others.
type plannedFetch struct {
	refetch
	probe bool
}

// probeOnly plans a drain's fetches (drainRefetch): of due, the entries
// of tables known readable or refused (fetch answers those without a
// request), and one of each other table, its probe; the others of such a
// table wait in later, in order, for the probe's answer (fetches.finish).
// While a table is gated its entries are all kept: fetch answers them
// without a request.
func (p *poller) probeOnly(due []refetch) (now []plannedFetch, later []refetch) {
	clock := p.clock.get()
	p.refusalMu.Lock()
	defer p.refusalMu.Unlock()
	// A table's probe is the first due entry after the object that left
	// it undecided last (refused, or not answered), in due's order,
	// wrapping around: that object is probed again only when it is its
	// table's only one due, and objects Stripe keeps failing are probed
	// in turn with the others, not in turn with each other (two of them,
	// each "another one than the last", would hold back the table for
	// good).
	last := map[string]int{}
	for i, r := range due {
		if id, ok := p.probed[r.Table]; ok && r.ID == id {
			last[r.Table] = i
		}
	}
	probe := map[string]int{}
	for i, r := range due {
		cur, ok := probe[r.Table]
		l, after := last[r.Table]
		if !ok || after && cur <= l && i > l {
			probe[r.Table] = i
		}
	}
	for i, r := range due {
		g, refusedBefore := p.refusals[r.Table]
		if t, ok := schema.Lookup(r.Table); !ok || t.RetrievePath == "" {
			// No request to spare: fetch settles it without one.
			now = append(now, plannedFetch{refetch: r})
			continue
		}
		switch {
		case p.readable[r.Table], refusedBefore && clock.Before(g.until):
			now = append(now, plannedFetch{refetch: r})
		case probe[r.Table] != i:
			later = append(later, r)
		default:
			now = append(now, plannedFetch{refetch: r, probe: true})
		}
	}
	return now, later
}

// unresolvedRefusal is f, not held (fromHeld settles those), whose
// re-fetch Stripe refused for good (err; gated: the table's refusal,
// no request made): kept queued, unresolved, with why it was queued.
func (p *poller) unresolvedRefusal(f fetched, err error, gated bool) fetched {
	f.unresolved = queuedWhy(f.Reason)
	f.refusal = err
	f.gated = gated
	return f
}

// queuedWhy says what a re-fetch queued for reason was to settle: what may
// be stale in the table while it is refused.
func queuedWhy(reason string) string {
	switch reason {
	case reasonAmbiguous:
		return "its stored state and another of the same second differ, and only a re-fetch tells which is newer"
	case reasonIncomplete:
		return "a nested list of its state was cut at has_more, and only a re-fetch completes it"
	case reasonVersion:
		return "an event of it came in another API version, whose state is stored only once re-fetched"
	case reasonOwner:
		return "an event of another object changed it, with no event of its own"
	case reasonUpcoming:
		return "its customer changed, so its upcoming invoice may be out of date"
	case reasonRefunds:
		return "it was refunded, and a charge's refunds come only with its re-fetch"
	case reasonDraft:
		return "a draft invoice copies its customer's details, changed since"
	case reasonDue:
		return "a pending balance transaction past available_on turns available with no event"
	case reasonUnresolved:
		return "its stored state may be stale (queued for a re-fetch Stripe refused before)"
	}
	return fmt.Sprintf("its stored state may be stale (queued for re-fetch: %s)", reason)
}

// refusalAdvice says what settles an unresolved entry refused with err.
func refusalAdvice(err error) string {
	if wholesale(err) {
		return "grant the key the read permission Stripe names (a restricted key), or use a secret key"
	}
	return "settled once Stripe answers its re-fetch or the object changes"
}

// writtenSince reports whether the row of f, refused, was written after f
// was queued, or its object deleted: every reason to re-fetch is then
// settled by a state at least as new as the one the re-fetch was for. The
// guard writes only a strictly newer state (a tie is left, and queued
// again), a cut list is queued again in the writing transaction (its
// queued_at then follows the row's _synced_at), and an event's or a
// backfill's state reflects every change before it, eventless ones too.
//
// A held state is settled only by its object's deletion after it (the
// row gone, tombstoned later than the state's time: a sweep whose bound
// follows it, or a deletion event): the guard would refuse it then, and
// nothing Stripe answers could bring the row back. A later write of the
// row says nothing of it: that write may be older than the held state.
// Without this, an entry whose row was swept was fetched again every
// unresolvedRetry for good.
func writtenSince(ctx context.Context, tx pgx.Tx, f fetched) (bool, error) {
	t, ok := schema.Lookup(f.Table)
	if !ok || len(t.Key) != 1 {
		return false, nil
	}
	if f.held != nil {
		var settled bool
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT NOT EXISTS (SELECT 1 FROM %s WHERE %s = $1)
    AND EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE object = $2 AND id = $1 AND deleted_at > $3)`,
			t.QualifiedName(), schema.Ident(t.Key[0])), f.ID, f.Table, f.held.AsOf).Scan(&settled)
		if err != nil {
			return false, fmt.Errorf("events: is %s %s deleted since its held state: %w", f.Table, f.ID, err)
		}
		return settled, nil
	}
	var settled bool
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1 AND %s > $2)
    OR (NOT EXISTS (SELECT 1 FROM %[1]s WHERE %[2]s = $1) AND EXISTS (SELECT 1 FROM stripe_sync.tombstones WHERE object = $3 AND id = $1))`,
		t.QualifiedName(), schema.Ident(t.Key[0]), schema.Ident(schema.ColSyncedAt)), f.ID, f.queuedAt, f.Table).Scan(&settled)
	if err != nil {
		return false, fmt.Errorf("events: is %s %s written since its re-fetch was queued: %w", f.Table, f.ID, err)
	}
	return settled, nil
}
