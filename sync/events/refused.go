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

// tableRefusal is a table's wholesale refusal (poller.refusals).
type tableRefusal struct {
	err   error
	until time.Time // on Stripe's clock (poller.clock)
	id    string    // the object refused: the next probe is another, if one is due
}

// wholesale: a refusal that concerns every object of the table, the
// key's permissions (Stripe: "403 Forbidden: the API key doesn't have
// permissions to perform the request").
func wholesale(err error) bool {
	var se *stripeapi.Error
	return errors.As(err, &se) && se.HTTPStatus == http.StatusForbidden
}

// tableRefused is the refusal that stands in for a re-fetch of table
// (gated), while one is recent.
func (p *poller) tableRefused(table string) (error, bool) {
	now := p.clock.get()
	p.refusalMu.Lock()
	defer p.refusalMu.Unlock()
	r, ok := p.refusals[table]
	if !ok || !now.Before(r.until) {
		return nil, false
	}
	return r.err, true
}

// noteAnswer records what Stripe answered a re-fetch of table (err; nil:
// the object): a wholesale refusal gates the table, any other answer from
// Stripe about the object (a 404, another refusal) opens it. A failure
// that says nothing of the key (5xx, 429, a timeout) changes nothing.
//
// A 403 for one object of a table that answered others since its last
// refusal (readable) concerns that object only: it stays unresolved
// alone, and the table stays open. Otherwise one object Stripe refuses
// among readable ones (a permission that depends on the object, which
// Stripe's docs don't rule out) would close its table for good.
func (p *poller) noteAnswer(table, id string, err error) {
	p.refusalMu.Lock()
	defer p.refusalMu.Unlock()
	switch {
	case wholesale(err) && p.readable[table]:
	case wholesale(err):
		if p.refusals == nil {
			p.refusals = map[string]tableRefusal{}
		}
		if _, again := p.refusals[table]; !again || p.readable[table] {
			p.log.Warn("Stripe refuses this key the re-fetch of a whole table; its queued objects stay queued, one tried every "+unresolvedRetry.String()+": grant the key the read permission Stripe names",
				"table", table, "err", err)
		}
		p.refusals[table] = tableRefusal{err: err, until: p.clock.get().Add(unresolvedRetry), id: id}
	case err == nil, refused(err), stripeapi.IsNotFound(err):
		delete(p.refusals, table)
		if p.readable == nil {
			p.readable = map[string]bool{}
		}
		p.readable[table] = true
	}
}

// probeOnly leaves in due, of the entries of each table Stripe has not
// answered a re-fetch of since the process began or since its last
// wholesale refusal, one to fetch: its answer decides for the others,
// which stay queued, due, for the next drain. So a key refused a table
// (a restarted process knows no refusal) spends one request on it, not
// a batch's worth at once. While a table is gated its entries are all
// kept: fetch answers them without a request.
func (p *poller) probeOnly(due []refetch) []refetch {
	now := p.clock.get()
	p.refusalMu.Lock()
	defer p.refusalMu.Unlock()
	// The object refused last is probed again only when it is its table's
	// only one due: another one's answer may open the table.
	others := map[string]bool{}
	for _, r := range due {
		if g, ok := p.refusals[r.Table]; ok && r.ID != g.id {
			others[r.Table] = true
		}
	}
	probing := map[string]bool{}
	kept := due[:0]
	for _, r := range due {
		g, refusedBefore := p.refusals[r.Table]
		if t, ok := schema.Lookup(r.Table); !ok || t.RetrievePath == "" {
			// No request to spare: fetch settles it without one.
			kept = append(kept, r)
			continue
		}
		if !(refusedBefore && now.Before(g.until)) && !p.readable[r.Table] {
			if probing[r.Table] || refusedBefore && r.ID == g.id && others[r.Table] {
				continue
			}
			probing[r.Table] = true
		}
		kept = append(kept, r)
	}
	return kept
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
