package events

import (
	"encoding/json"
	"strings"

	"github.com/pgstripe/pgstripe/schema"
)

// Action is what an event does to the stripe schema.
type Action uint8

const (
	// Ignore: the event's object is not stored (account.*, balance.*, …).
	Ignore Action = iota
	// Upsert data.object into Table through the ordering guard.
	Upsert
	// Delete the object from Table (with its children) and tombstone it.
	Delete
	// Refetch the stored object Table/ID from Stripe: the event changes it
	// without carrying it (customer.discount.* changes customer.discount).
	Refetch
)

func (a Action) String() string {
	switch a {
	case Upsert:
		return "upsert"
	case Delete:
		return "delete"
	case Refetch:
		return "refetch"
	}
	return "ignore"
}

// Route is the decision for one event.
type Route struct {
	Action Action
	Table  string // stripe table (empty for Ignore)
	ID     string // object id (for Refetch: the stored object to fetch)
	// Customer whose upcoming invoice may have changed ("" if none): set for
	// subscription, invoice, invoice item, discount and tax id events and
	// customer deletions. For a tax id it also names the customer whose
	// draft invoices show it (invoice.customer_tax_ids).
	Customer string
	// Also are stored objects the event changes without carrying them,
	// re-fetched besides (empty ID: none): a dispute's or refund's charge,
	// whose disputed flag or amount_refunded they change (Stripe documents
	// charge.updated only for description, metadata and capture); a new
	// discount's coupon and promotion code, whose times_redeemed (and
	// valid, at max_redemptions) the redemption changes with no
	// coupon.updated documented for it.
	Also [2]Ref
}

// Ref names a stored object.
type Ref struct{ Table, ID string }

// ref is the object of table that v (an id or an expanded object) names;
// the zero Ref when v names none.
func ref(table string, v json.RawMessage) Ref {
	if id := schema.RefID(v); id != "" {
		return Ref{table, id}
	}
	return Ref{}
}

// refetchOwner lists event types whose object pgstripe doesn't store but
// which change a stored object without an event of its own: a discount
// lives in customer.discount, and Stripe sends customer.discount.* (not
// customer.updated) when it changes. The owner is re-fetched: the
// customer, or the subscription when the discount is a subscription's.
var refetchOwner = map[string]string{
	"customer.discount.created": "customers",
	"customer.discount.updated": "customers",
	"customer.discount.deleted": "customers",
}

// upcomingTables are the tables whose changes move a customer's upcoming
// invoice (CONTRACT §3).
var upcomingTables = map[string]bool{"subscriptions": true, "invoices": true, "invoiceitems": true}

// RouteEvent decides what the event of type typ with data.object obj does.
// It never fails: an event it can't place is ignored (reported by the
// caller's metrics), since Stripe adds event types over time.
func RouteEvent(typ string, obj json.RawMessage) Route {
	var o struct {
		ID            string          `json:"id"`
		Object        string          `json:"object"`
		Deleted       bool            `json:"deleted"`
		Customer      json.RawMessage `json:"customer"`
		Subscription  json.RawMessage `json:"subscription"`   // of a discount
		Charge        json.RawMessage `json:"charge"`         // of a dispute
		Coupon        json.RawMessage `json:"coupon"`         // of a discount
		PromotionCode json.RawMessage `json:"promotion_code"` // of a discount
		Owner         json.RawMessage `json:"owner"`          // of a tax id
	}
	if json.Unmarshal(obj, &o) != nil {
		return Route{}
	}
	if table, ok := refetchOwner[typ]; ok {
		var r Route
		// A discount with subscription set is that subscription's
		// (subscription.discount), not the customer's; it changes the
		// customer's upcoming invoice too.
		if sub := schema.RefID(o.Subscription); sub != "" && table == "customers" {
			r = Route{Action: Refetch, Table: "subscriptions", ID: sub, Customer: schema.RefID(o.Customer)}
		} else if id := schema.RefID(o.Customer); id != "" {
			// The customer's discount applies to its upcoming invoice;
			// Stripe doesn't document the customer.updated that would
			// refresh it otherwise.
			r = Route{Action: Refetch, Table: table, ID: id, Customer: id}
		}
		if typ != "customer.discount.deleted" {
			// Applied: redeemed (a deletion redeems nothing).
			r.Also = [2]Ref{ref("coupons", o.Coupon), ref("promotion_codes", o.PromotionCode)}
		}
		return r
	}
	if r, ok := sourceRoute(typ, o.ID, o.Object, obj); ok {
		return r
	}
	if typ == "payment_method.detached" && compatibleSource(o.ID) {
		// Detaching a saved card deletes it (dj-stripe/dj-stripe#967: "the
		// card being deleted when detached"; after it the retrieve is "No
		// such PaymentMethod"), and a detached card source is no payment
		// method any more ("A source must be attached to a customer to be
		// used as a payment_method", dj-stripe#1068): the event's object,
		// customer null, is a state Stripe no longer holds.
		return Route{Action: Delete, Table: "payment_methods", ID: o.ID}
	}
	// invoice.upcoming carries an invoice without id: the upcoming invoice
	// of a customer, refreshed separately.
	if typ == "invoice.upcoming" {
		return Route{Customer: schema.RefID(o.Customer)}
	}
	t, ok := schema.ByObject(o.Object)
	if !ok || t.Virtual || t.Parent != nil || o.ID == "" {
		return Route{}
	}
	r := Route{Action: Upsert, Table: t.Name, ID: o.ID}
	// customer.subscription.deleted means "canceled": the subscription
	// still exists (GET and list with status=all return it), so it is an
	// update like any other. Every other *.deleted removes the object.
	if o.Deleted || (strings.HasSuffix(typ, ".deleted") && t.Name != "subscriptions") {
		r.Action = Delete
	}
	if upcomingTables[t.Name] {
		r.Customer = schema.RefID(o.Customer)
	}
	if t.Name == "disputes" || t.Name == "refunds" {
		// A dispute changes its charge (disputed), and so may a refund's
		// later change (a failed refund gives its amount back:
		// amount_refunded), with no charge event documented for either.
		r.Also[0] = ref("charges", o.Charge)
	}
	if t.Name == "customers" && r.Action == Delete {
		r.Customer = o.ID
	}
	if t.Name == "tax_ids" {
		// An upcoming invoice, and a draft one, show the customer's tax
		// ids (customer_tax_ids "will contain the same tax IDs as
		// customer.tax_ids" until finalization), with no invoice event.
		// customer.tax_id.deleted carries the tax id whole, so its
		// customer is known although the deletion leaves no row.
		r.Customer = taxIDOwner(o.Customer, o.Owner)
	}
	return r
}

// taxIDOwner is the customer of a tax id, from its customer field, else
// its owner ({type: customer, customer}); "" for other owners.
func taxIDOwner(customer, owner json.RawMessage) string {
	if id := schema.RefID(customer); id != "" {
		return id
	}
	var o struct {
		Customer json.RawMessage `json:"customer"`
	}
	if json.Unmarshal(owner, &o) != nil {
		return ""
	}
	return schema.RefID(o.Customer)
}

// compatibleSource says whether id is that of a saved card (card_) or a
// Source object (src_) shown as a payment method under its own id:
// Stripe's objects carry nothing else that tells them apart from
// payment methods of their own (pm_).
func compatibleSource(id string) bool {
	return strings.HasPrefix(id, "card_") || strings.HasPrefix(id, "src_")
}

// sourceRoute routes the customer.source.* events of a customer's saved
// card, which Stripe's Payment Methods API shows as a payment method of
// the same id ("You can retrieve all saved compatible payment instruments
// through the Payment Methods API … a different view of the same
// underlying object", docs.stripe.com/payments/payment-methods/
// transitioning#compatibility), and which the customer's payment method
// list, hence the backfill, includes. Stripe sends no payment_method.*
// event for such a card's creation or change (its detach through the
// Payment Methods API, a deletion, sends payment_method.detached:
// RouteEvent), so its row follows these: a new or changed card
// is re-fetched as a payment method (its view can't be made here without
// copying Stripe's mapping), a deleted one is removed. A card source
// (src_, object source, type card) is compatible too; other sources (bank
// accounts) are no payment methods and stay ignored, as does
// customer.source.expiring (nothing changed).
func sourceRoute(typ, id, object string, obj json.RawMessage) (Route, bool) {
	if !strings.HasPrefix(typ, "customer.source.") || id == "" {
		return Route{}, false
	}
	switch object {
	case "card":
	case "source":
		var s struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(obj, &s) != nil || s.Type != "card" {
			return Route{}, true
		}
	default:
		return Route{}, true
	}
	switch typ {
	case "customer.source.created", "customer.source.updated":
		return Route{Action: Refetch, Table: "payment_methods", ID: id}, true
	case "customer.source.deleted":
		return Route{Action: Delete, Table: "payment_methods", ID: id}, true
	}
	return Route{}, true
}
