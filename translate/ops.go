package translate

import (
	"sort"
	"strings"

	"github.com/pgstripe/pgstripe/schema"
)

// Ops is what SQL can do to one table through Stripe. Paths come from the
// schema (generated from Stripe's spec); which of them pgstripe exposes, and
// the status transitions that are Stripe endpoints of their own, are decided
// here by hand.
type Ops struct {
	Create bool
	Update bool
	// Delete is true when DELETE maps to Stripe's DELETE endpoint (for
	// subscriptions that endpoint cancels and returns the object).
	Delete bool
	// NoDelete explains, as a hint, what to do instead of DELETE.
	NoDelete string
	// NoUpdate explains, as a hint, what to do instead of UPDATE.
	NoUpdate string
	// NoCreate explains, as a hint, what to do instead of INSERT.
	NoCreate string
	// Status maps a new value of the status column to the endpoint that
	// makes that transition ({id} is the object's id).
	Status map[string]string
	// Attach, when set, is the column whose change attaches (new value) or
	// detaches (NULL) the object: payment_methods.customer.
	Attach string
	// AttachPath and DetachPath are the endpoints for Attach.
	AttachPath, DetachPath string
	// StatusHint, when set, says how to change the status of an object
	// whose status column maps to no endpoint (a subscription is canceled
	// by DELETE).
	StatusHint string
	// OwnerColumn, when set, is a column whose value on INSERT is sent as
	// owner[type]=<column>&owner[<column>]=<value> (tax_ids.customer).
	OwnerColumn string
}

var ops = map[string]*Ops{
	"customers":          {Create: true, Update: true, Delete: true},
	"products":           {Create: true, Update: true, Delete: true},
	"plans":              {Create: true, Update: true, Delete: true},
	"coupons":            {Create: true, Update: true, Delete: true},
	"invoiceitems":       {Create: true, Update: true, Delete: true},
	"subscription_items": {Create: true, Update: true, Delete: true},
	// Stripe updates a line of a draft invoice in place (amount,
	// description, quantity, tax_amounts, …); lines come and go with
	// their invoice items and subscriptions.
	"invoice_line_items": {Update: true,
		NoCreate: "an invoice's lines come from its invoice items and subscriptions: add a line to a draft invoice with INSERT INTO stripe.invoiceitems (customer, invoice, …)",
		NoDelete: "remove a line of a draft invoice by deleting its invoice item: DELETE FROM stripe.invoiceitems WHERE id = …"},
	"tax_rates":       {Create: true, Update: true, NoDelete: "archive one with UPDATE stripe.tax_rates SET active = false"},
	"promotion_codes": {Create: true, Update: true, NoDelete: "deactivate one with UPDATE stripe.promotion_codes SET active = false"},
	"tax_ids": {Create: true, Delete: true, OwnerColumn: "customer",
		NoUpdate: "DELETE it and INSERT a new one"},
	"prices": {Create: true, Update: true, NoDelete: "set active = false instead (UPDATE stripe.prices SET active = false WHERE …)"},
	"subscriptions": {Create: true, Update: true, Delete: true,
		StatusHint: "cancel a subscription with DELETE FROM stripe.subscriptions WHERE …, or at the end of its period with SET cancel_at_period_end = true"},
	"invoices": {Create: true, Update: true, Delete: true, Status: map[string]string{
		"open":          "/v1/invoices/{id}/finalize",
		"paid":          "/v1/invoices/{id}/pay",
		"void":          "/v1/invoices/{id}/void",
		"uncollectible": "/v1/invoices/{id}/mark_uncollectible",
	}},
	// An intent confirmed with capture_method=manual waits in
	// requires_capture: setting it succeeded captures it (amount_to_capture
	// in _params for less than the whole authorization).
	"payment_intents": {Create: true, Update: true, NoDelete: "cancel with UPDATE stripe.payment_intents SET status = 'canceled'",
		Status: map[string]string{
			"canceled":  "/v1/payment_intents/{id}/cancel",
			"succeeded": "/v1/payment_intents/{id}/capture",
		}},
	"setup_intents": {Create: true, Update: true, NoDelete: "cancel with UPDATE stripe.setup_intents SET status = 'canceled'",
		Status: map[string]string{"canceled": "/v1/setup_intents/{id}/cancel"}},
	"payment_methods": {Create: true, Update: true, NoDelete: "detach with UPDATE stripe.payment_methods SET customer = NULL",
		Attach: "customer", AttachPath: "/v1/payment_methods/{id}/attach", DetachPath: "/v1/payment_methods/{id}/detach"},
	// Stripe cancels only a refund that awaits customer action
	// (requires_action); any other refund cannot be undone.
	"refunds": {Create: true, Update: true, NoDelete: "cancel a refund awaiting customer action with UPDATE stripe.refunds SET status = 'canceled'; other refunds cannot be undone",
		Status: map[string]string{"canceled": "/v1/refunds/{id}/cancel"}},
	// Charges are refunded, not deleted. Creating one is Stripe's legacy
	// API (PaymentIntents replace it) but Stripe still has it.
	"charges": {Create: true, Update: true, NoDelete: "refund it with INSERT INTO stripe.refunds (charge, amount) VALUES (…)"},
	// A dispute is opened by the cardholder's bank; closing it accepts
	// the loss (status lost).
	"disputes": {Update: true, NoDelete: "close it (accepting the loss) with UPDATE stripe.disputes SET status = 'lost'",
		Status: map[string]string{"lost": "/v1/disputes/{id}/close"}},
	"payouts": {Create: true, Update: true, NoDelete: "cancel a pending payout with UPDATE stripe.payouts SET status = 'canceled'",
		Status: map[string]string{"canceled": "/v1/payouts/{id}/cancel"}},
	"subscription_schedules": {Create: true, Update: true,
		NoDelete: "cancel one (and its subscription) with UPDATE stripe.subscription_schedules SET status = 'canceled', or release its subscription with status = 'released'",
		Status: map[string]string{
			"canceled": "/v1/subscription_schedules/{id}/cancel",
			"released": "/v1/subscription_schedules/{id}/release",
		}},
	// Stripe updates a credit note's memo and metadata, and voids one.
	"credit_notes": {Create: true, Update: true, NoDelete: "void one with UPDATE stripe.credit_notes SET status = 'void'",
		Status: map[string]string{"void": "/v1/credit_notes/{id}/void"}},
	// Stripe has no update of a checkout session under 2023-10-16, only
	// its expiry.
	"checkout_sessions": {Create: true, NoUpdate: "Stripe only expires a checkout session: UPDATE stripe.checkout_sessions SET status = 'expired'",
		NoDelete: "expire an open session with UPDATE stripe.checkout_sessions SET status = 'expired'",
		Status:   map[string]string{"expired": "/v1/checkout/sessions/{id}/expire"}},
}

// OpsFor returns the operations pgstripe supports on table (nil: read-only).
func OpsFor(table string) *Ops { return ops[table] }

// WritableTables lists the tables that accept some write, sorted.
func WritableTables() []string {
	out := make([]string, 0, len(ops))
	for n := range ops {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// readOnly says, for the tables without Ops, what changes them instead:
// the list of writable tables alone would leave a user guessing.
var readOnly = map[string]string{
	"balance_transactions": "Stripe records a balance transaction itself for each charge, refund, payout or fee; there is no endpoint that writes one",
	"upcoming_invoices":    "Stripe computes a customer's upcoming invoice from its subscriptions and pending invoice items: write stripe.subscriptions, stripe.subscription_items or stripe.invoiceitems",
}

// readOnlyTable is the error for any write to a table Stripe (or pgstripe)
// doesn't write.
func readOnlyTable(t string) *Error {
	e := errorf(CodeFeatureNotSupported, "stripe.%s is read-only: pgstripe cannot write it to Stripe", t)
	if h, ok := readOnly[t]; ok {
		return e.withHint("%s", h)
	}
	return e.withHint("writable tables: %s", strings.Join(WritableTables(), ", "))
}

// possible names the statements a table accepts, for error hints.
func (o *Ops) possible(t string) string {
	var s []string
	if o.Create {
		s = append(s, "INSERT")
	}
	if o.Update || o.Status != nil || o.Attach != "" {
		s = append(s, "UPDATE")
	}
	if o.Delete {
		s = append(s, "DELETE")
	}
	return "stripe." + t + " accepts " + strings.Join(s, ", ")
}

// statusValues lists the accepted status values with their endpoints.
func (o *Ops) statusValues() string {
	vals := make([]string, 0, len(o.Status))
	for v, p := range o.Status {
		vals = append(vals, "'"+v+"' ("+p[strings.LastIndex(p, "/")+1:]+")")
	}
	sort.Strings(vals)
	return strings.Join(vals, ", ")
}

// metaColumns are pgstripe's own columns: never Stripe parameters.
var metaColumns = map[string]string{
	schema.ColRaw:      "jsonb",
	schema.ColSyncedAt: "timestamptz",
	schema.ColAsOf:     "timestamptz",
}

// responseOnly lists, per table.column, the keys (dotted paths below the
// column) of a jsonb object Stripe returns but its update does not take:
// customers.tax holds automatic_tax and location, the update takes
// ip_address and validate_location. Build sends an object whole on update
// (Stripe replaces it), so an unchanged key of this kind would be sent back
// or, when the new value leaves it out, unset with "" — and Stripe refuses
// the unknown parameter either way. These keys are left out of the call;
// changing one is an error. "[]" stands for every element of an array:
// a schedule's phases carry their currency, which only the create takes.
// TestResponseOnlyMatchesSpec keeps the list equal to the spec.
var responseOnly = map[string][]string{
	"charges.fraud_details":                  {"stripe_report"},
	"customers.cash_balance":                 {"available", "customer", "livemode", "object", "settings.using_merchant_default"},
	"customers.shipping":                     {"carrier", "tracking_number"},
	"customers.tax":                          {"automatic_tax", "location"},
	"invoices.automatic_tax":                 {"status"},
	"invoices.shipping_cost":                 {"amount_subtotal", "amount_tax", "amount_total", "taxes"},
	"invoices.shipping_details":              {"carrier", "tracking_number"},
	"invoice_line_items.tax_amounts":         {"[].inclusive", "[].tax_rate", "[].taxability_reason"},
	"payment_intents.payment_method_options": {"card.installments.available_plans"},
	"payment_intents.transfer_data":          {"destination"},
	"payment_methods.card":                   {"brand", "checks", "country", "display_brand", "fingerprint", "funding", "generated_from", "last4", "networks.available", "three_d_secure_usage", "wallet"},
	"payment_methods.link":                   {"email"},
	"payment_methods.us_bank_account":        {"bank_name", "financial_connections_account", "fingerprint", "last4", "networks", "routing_number", "status_details"},
	"promotion_codes.restrictions":           {"first_time_transaction", "minimum_amount", "minimum_amount_currency"},
	"subscription_schedules.phases":          {"[].currency"},
	"subscriptions.cancellation_details":     {"reason"},
}
