package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/store"
)

// Event is the part of a Stripe event the loop uses.
type Event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Created int64  `json:"created"`
	// APIVersion renders data.object: the account's default version when
	// the event was created, whatever version lists it.
	APIVersion string `json:"api_version"`
	Data       struct {
		Object json.RawMessage `json:"object"`
	} `json:"data"`
}

// At is the event's creation time (Stripe's clock, whole seconds).
func (e Event) At() time.Time { return time.Unix(e.Created, 0).UTC() }

// parseEvents decodes a page of events; an event without id or created is
// an error (it could never be deduplicated or ordered).
func parseEvents(raws []json.RawMessage) ([]Event, error) {
	out := make([]Event, 0, len(raws))
	for i, r := range raws {
		var e Event
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("events: event %d of page: %w", i, err)
		}
		if e.ID == "" || e.Created <= 0 {
			return nil, fmt.Errorf("events: event %d of page lacks id or created: %.120s", i, r)
		}
		out = append(out, e)
	}
	return out, nil
}

// refetchKey names a stored object (or, for upcoming_invoices, a customer).
type refetchKey struct{ Table, ID string }

// refetch is a queued re-fetch: not before NotBefore on Stripe's clock.
type refetch struct {
	refetchKey
	NotBefore time.Time
	Reason    string
	queuedAt  time.Time // as read from the queue: the version of the entry
	// held is the state left out of a row another transaction held
	// (reason locked), written if Stripe refuses the re-fetch for good.
	held *store.Held
}

const (
	reasonAmbiguous  = "ambiguous"  // two states in one second
	reasonIncomplete = "incomplete" // nested list cut at has_more
	reasonOwner      = "owner"      // an event of an unstored object changed it
	reasonUpcoming   = "upcoming"   // the customer's upcoming invoice may have changed
	reasonVersion    = "version"    // the event renders the object in another API version
	reasonRefunds    = "refunds"    // a charge was refunded: its refunds have no event
	reasonDraft      = "draft"      // a draft invoice copies its customer's details
	reasonDue        = "due"        // a pending balance transaction's available_on passed
)

type deletion struct {
	Table, ID string
	At        time.Time
	// Created is the deleted object's created time, when the event
	// carries it (store.DeleteCreated).
	Created time.Time
}

// plan is what one batch of new events does, decided without the database.
type plan struct {
	Upserts map[string][]store.Object // by table; at most one state per object
	Deletes []deletion
	Refetch []refetch
	Events  []Event // every event of the batch (recorded as applied)
	// AsOf of each upserted object; TableAt the newest event per table.
	AsOf    map[refetchKey]time.Time
	TableAt map[string]time.Time
	// InvoiceLinks are the invoice items the upserted invoices bill, and
	// DeletedInvoices the invoices removed: an invoice item has no event
	// when an invoice takes it in or lets it go (invoice changes), so
	// items whose stored invoice differs are re-fetched.
	InvoiceLinks    []invoiceLink
	DeletedInvoices []deletion
	// TaxIDCustomers are the customers whose tax ids the batch adds,
	// changes or deletes: their draft invoices show them.
	TaxIDCustomers []string
	Ignored        int
	maxEvent       Event // newest event by (created, id)
}

// planBatch turns new events into writes. Events may come in any order:
// the store's ordering guard keeps the newest state, deletes are final
// (tombstones), so a batch needs no global order. Within the batch it keeps
// the newest state per object; two different states of one object in the
// same second can't be ordered, so the object is queued for a re-fetch
// after that second (one of them is stored meanwhile, and the re-fetch,
// being strictly newer, replaces it).
func planBatch(evs []Event) plan {
	p := plan{Upserts: map[string][]store.Object{}, Events: evs,
		AsOf: map[refetchKey]time.Time{}, TableAt: map[string]time.Time{}}
	type cand struct {
		obj      json.RawMessage
		at       time.Time
		conflict bool
	}
	latest := map[refetchKey]*cand{}
	var order []refetchKey
	deleted := map[refetchKey]deletion{}
	queued := map[refetchKey]int{} // index in p.Refetch
	taxIDCustomers := map[string]bool{}
	queue := func(k refetchKey, nb time.Time, reason string) {
		if i, ok := queued[k]; ok {
			if nb.After(p.Refetch[i].NotBefore) {
				p.Refetch[i].NotBefore = nb
				p.Refetch[i].Reason = reason
			}
			return
		}
		queued[k] = len(p.Refetch)
		p.Refetch = append(p.Refetch, refetch{refetchKey: k, NotBefore: nb, Reason: reason})
	}
	for _, e := range evs {
		if e.Created > p.maxEvent.Created || (e.Created == p.maxEvent.Created && e.ID > p.maxEvent.ID) {
			p.maxEvent = e
		}
		r := RouteEvent(e.Type, e.Data.Object)
		if r.Customer != "" {
			queue(refetchKey{"upcoming_invoices", r.Customer}, e.At(), reasonUpcoming)
		}
		if r.Table == "tax_ids" && r.Customer != "" && !taxIDCustomers[r.Customer] {
			taxIDCustomers[r.Customer] = true
			p.TaxIDCustomers = append(p.TaxIDCustomers, r.Customer)
		}
		for _, a := range r.Also {
			if a.ID != "" {
				// After the event's second, as for any owner.
				queue(refetchKey{a.Table, a.ID}, e.At().Add(time.Second), reasonOwner)
			}
		}
		k := refetchKey{r.Table, r.ID}
		if r.Table != "" && e.At().After(p.TableAt[r.Table]) {
			p.TableAt[r.Table] = e.At()
		}
		switch r.Action {
		case Ignore:
			p.Ignored++
		case Delete:
			// The latest: ids of the user's choice (store.ChosenIDs) can
			// be deleted, used again and deleted again, and the store's
			// tombstone keeps the latest deletion too.
			if d, ok := deleted[k]; !ok || e.At().After(d.At) {
				deleted[k] = deletion{Table: k.Table, ID: k.ID, At: e.At(), Created: createdOf(e.Data.Object)}
			}
		case Refetch:
			queue(k, e.At().Add(time.Second), reasonOwner)
		case Upsert:
			if e.Type == "charge.refunded" {
				// Under 2023-10-16 a charge's refund has no refund.created
				// (only refunds without a charge do): the charge's
				// re-fetch lists its refunds. Due at once: the refund
				// exists by now.
				queue(k, e.At(), reasonRefunds)
			}
			if e.APIVersion != "" && e.APIVersion != stripe.APIVersion {
				// data.object has the shape of the account's API version
				// (older accounts: other fields, charge.refunds, …), not
				// the 2023-10-16 one the tables and every other write
				// use: fetch the object in that version instead.
				queue(k, e.At(), reasonVersion)
				break
			}
			c := latest[k]
			switch {
			case c == nil:
				latest[k] = &cand{obj: e.Data.Object, at: e.At()}
				order = append(order, k)
			case e.At().After(c.at):
				*c = cand{obj: e.Data.Object, at: e.At()}
			case e.At().Equal(c.at) && !bytes.Equal(c.obj, e.Data.Object):
				c.conflict = true
			}
			if nestedIncomplete(r.Table, e.Data.Object) {
				// After the event's second, like an ambiguity: a fetch
				// within it returns the same parent (the rest of the list
				// isn't in it), which the store takes as Stale and
				// drops along with the complete list.
				queue(k, e.At().Add(time.Second), reasonIncomplete)
			}
		}
	}
	for _, k := range order {
		c := latest[k]
		if d, gone := deleted[k]; gone && !createdAfter(k.Table, c.obj, d.bound()) {
			if store.EmbedsPrice(k.Table) {
				// The price it was made with may be inline, which no
				// list returns: the store takes a missing price from the
				// carrier, whose own row the deletion (tombstone) keeps
				// out.
				p.Upserts[k.Table] = append(p.Upserts[k.Table], store.Object{Raw: c.obj, AsOf: c.at})
			}
			continue
		}
		p.Upserts[k.Table] = append(p.Upserts[k.Table], store.Object{Raw: c.obj, AsOf: c.at})
		p.AsOf[k] = c.at
		if k.Table == "invoices" {
			p.InvoiceLinks = append(p.InvoiceLinks, invoiceLinks(k.ID, c.obj, nil, c.at)...)
		}
		if c.conflict {
			queue(k, c.at.Add(time.Second), reasonAmbiguous)
		}
	}
	for k, d := range deleted {
		p.Deletes = append(p.Deletes, d)
		if k.Table == "invoices" {
			p.DeletedInvoices = append(p.DeletedInvoices, d)
		}
		if _, again := p.AsOf[k]; again {
			continue // created again after the deletion: still fetched if queued
		}
		if i, ok := queued[k]; ok && p.Refetch[i].Reason != reasonUpcoming {
			p.Refetch[i].Reason = "" // nothing to fetch: it's gone
		}
	}
	sort.Slice(p.Deletes, func(i, j int) bool {
		a, b := p.Deletes[i], p.Deletes[j]
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		return a.ID < b.ID
	})
	kept := p.Refetch[:0]
	for _, r := range p.Refetch {
		if r.Reason != "" {
			kept = append(kept, r)
		}
	}
	p.Refetch = kept
	return p
}

// createdOf is the created time of an event's object (zero without one).
func createdOf(obj json.RawMessage) time.Time {
	var o struct {
		Created int64 `json:"created"`
	}
	if json.Unmarshal(obj, &o) != nil || o.Created <= 0 {
		return time.Time{}
	}
	return time.Unix(o.Created, 0).UTC()
}

// bound is the time up to which the deletion's tombstone blocks objects by
// their created (as store.DeleteCreated records it): the deleted object's
// created when known.
func (d deletion) bound() time.Time {
	if !d.Created.IsZero() {
		return d.Created
	}
	return d.At
}

// createdAfter reports whether obj, of a table whose ids users choose, was
// created after at: it is not the object a deletion at that time removed
// but a new one with its id (see store.ChosenIDs).
func createdAfter(table string, obj json.RawMessage, at time.Time) bool {
	if !store.ChosenIDs(table) {
		return false
	}
	c := createdOf(obj)
	return !c.IsZero() && c.Unix() > at.Unix()
}

// nestedIncomplete reports whether obj, an object of table, embeds a nested
// list stored in a child table that was cut at has_more (an event carries
// only the first page; the rest must be fetched).
func nestedIncomplete(table string, obj json.RawMessage) bool {
	t, ok := schema.Lookup(table)
	if !ok || len(t.Nested) == 0 {
		return false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(obj, &fields) != nil {
		return false
	}
	for _, n := range t.Nested {
		var l struct {
			HasMore bool `json:"has_more"`
		}
		if v, ok := fields[n.Field]; ok && json.Unmarshal(v, &l) == nil && l.HasMore {
			return true
		}
	}
	return false
}

// seenSet remembers the ids of applied events still inside the look-back
// window, so a re-read window never applies one twice. Memory is bounded
// by the events of one window: prune drops ids older than it.
type seenSet map[string]int64 // id → created (unix)

func (s seenSet) has(id string) bool { _, ok := s[id]; return ok }

func (s seenSet) add(evs []Event) {
	for _, e := range evs {
		s[e.ID] = e.Created
	}
}

// prune forgets events created before before.
func (s seenSet) prune(before time.Time) {
	b := before.Unix()
	for id, c := range s {
		if c < b {
			delete(s, id)
		}
	}
}

// windowStart is the oldest creation time a poll re-reads: a poll reads from
// headOverlap before the last checked point (events becoming visible a
// little late, same-second stragglers); a sweep from lookBack before it.
func windowStart(checked time.Time, sweep bool, lookBack time.Duration) time.Time {
	d := min(headOverlap, lookBack)
	if sweep {
		d = lookBack
	}
	return checked.Add(-d).Truncate(time.Second)
}

// invoiceLink says that invoice bills invoice item Item (as of At), with
// the line's amount and quantity: an invoice item updated on a draft
// invoice changes only through the line (Stripe has no
// invoiceitem.updated), so a stored item that differs is re-fetched.
type invoiceLink struct {
	Item, Invoice    string
	At               time.Time
	Amount, Quantity *int64
	// Mirror is the line's copy of the item's other fields that a line
	// or item update changes on both (see lineMirror).
	Mirror []byte
}

// invoiceLinks lists the invoice items among an invoice's lines: those
// embedded in raw, or lines when the complete list was fetched.
func invoiceLinks(invoice string, raw json.RawMessage, lines []json.RawMessage, at time.Time) []invoiceLink {
	var inv struct {
		Status string `json:"status"`
		Lines  struct {
			Data []json.RawMessage `json:"data"`
		} `json:"lines"`
	}
	if json.Unmarshal(raw, &inv) != nil {
		return nil
	}
	if lines == nil {
		lines = inv.Lines.Data
	}
	var out []invoiceLink
	for _, l := range lines {
		var line struct {
			InvoiceItem  json.RawMessage   `json:"invoice_item"`
			Amount       *int64            `json:"amount"`
			Quantity     *int64            `json:"quantity"`
			Description  json.RawMessage   `json:"description"`
			Discountable json.RawMessage   `json:"discountable"`
			Period       json.RawMessage   `json:"period"`
			Price        json.RawMessage   `json:"price"`
			TaxRates     []json.RawMessage `json:"tax_rates"`
		}
		if json.Unmarshal(l, &line) != nil {
			continue
		}
		if id := schema.RefID(line.InvoiceItem); id != "" {
			rates := make([]string, len(line.TaxRates))
			for i, r := range line.TaxRates {
				rates[i] = schema.RefID(r)
			}
			var mirror []byte
			if inv.Status == "draft" {
				// Only a draft's items and lines can still change.
				mirror, _ = json.Marshal(map[string]any{"description": jsonOrNull(line.Description),
					"discountable": jsonOrNull(line.Discountable), "period": jsonOrNull(line.Period),
					"price": schema.RefID(line.Price), "tax_rates": rates})
			}
			out = append(out, invoiceLink{Item: id, Invoice: invoice, At: at, Amount: line.Amount, Quantity: line.Quantity, Mirror: mirror})
		}
	}
	return out
}

func jsonOrNull(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage("null")
	}
	return v
}
