package translate

import (
	"strings"
	"testing"

	"github.com/pgstripe/pgstripe/schema"
)

// TestEveryTableAccountedFor: each table either maps its writes to
// Stripe (Ops) or, when Stripe has none that pgstripe makes, says in its
// hint what changes it instead. A table Stripe creates, deletes or cancels
// may not be read-only, and a cancel endpoint must be reachable.
func TestEveryTableAccountedFor(t *testing.T) {
	for _, tb := range schema.Tables() {
		o, hint := OpsFor(tb.Name), readOnly[tb.Name]
		switch {
		case o == nil && hint == "":
			t.Errorf("stripe.%s: neither writable nor explained", tb.Name)
		case o != nil && hint != "":
			t.Errorf("stripe.%s: writable, yet explained as read-only", tb.Name)
		case o == nil && (tb.CreatePath != "" || tb.DeletePath != "" || tb.CancelPath != ""):
			t.Errorf("stripe.%s: read-only, but Stripe has create %q, delete %q, cancel %q", tb.Name, tb.CreatePath, tb.DeletePath, tb.CancelPath)
		case o != nil && tb.CancelPath != "" && !o.Delete && !hasValue(o.Status, tb.CancelPath):
			t.Errorf("stripe.%s: Stripe's %s is not reachable (no status maps to it)", tb.Name, tb.CancelPath)
		}
	}
}

func hasValue(m map[string]string, v string) bool {
	for _, x := range m {
		if x == v {
			return true
		}
	}
	return false
}

// TestStatusEndpointsInSpec: every status transition and attach
// endpoint is a POST of Stripe's spec, and every NoDelete/NoUpdate hint
// names a statement that the table accepts.
func TestStatusEndpointsInSpec(t *testing.T) {
	sp := loadSpecIndex(t)
	post := func(path string) bool {
		for p, verbs := range sp.paths {
			if pathParam.ReplaceAllString(p, "{id}") == path && verbs["post"] != nil {
				return true
			}
		}
		return false
	}
	for _, name := range WritableTables() {
		o := OpsFor(name)
		for v, p := range o.Status {
			if !post(p) {
				t.Errorf("stripe.%s: status %q maps to %s, which Stripe's spec has no POST for", name, v, p)
			}
			if !strings.HasPrefix(p, "/v1/") || !strings.Contains(p, "{id}") {
				t.Errorf("stripe.%s: status %q: path %s", name, v, p)
			}
		}
		for _, p := range []string{o.AttachPath, o.DetachPath} {
			if p != "" && !post(p) {
				t.Errorf("stripe.%s: %s is not in Stripe's spec", name, p)
			}
		}
		for _, hint := range []string{o.NoDelete, o.NoUpdate} {
			// A hint that suggests an UPDATE … SET status = 'x' must name
			// a status the table maps.
			i := strings.Index(hint, "status = '")
			for i >= 0 {
				rest := hint[i+len("status = '"):]
				v := rest[:strings.IndexByte(rest, '\'')]
				if o.Status[v] == "" {
					t.Errorf("stripe.%s: hint %q suggests status %q, which is not mapped", name, hint, v)
				}
				j := strings.Index(rest, "status = '")
				if j < 0 {
					break
				}
				i = i + len("status = '") + j
			}
			if strings.Contains(hint, "UPDATE stripe."+name) && !o.Update && o.Status == nil && o.Attach == "" {
				t.Errorf("stripe.%s: hint %q suggests an UPDATE the table refuses", name, hint)
			}
		}
	}
}

// TestHints pins the refusals whose hint was wrong or missing.
func TestHints(t *testing.T) {
	for _, c := range []struct{ sql, code, hint string }{
		// Stripe cancels a refund awaiting customer action: not "cannot be undone".
		{`DELETE FROM stripe.refunds WHERE id = 're_1'`, CodeFeatureNotSupported, "SET status = 'canceled'"},
		// Stripe expires a checkout session.
		{`DELETE FROM stripe.checkout_sessions WHERE id = 'cs_1'`, CodeFeatureNotSupported, "SET status = 'expired'"},
		// A charge is refunded.
		{`DELETE FROM stripe.charges WHERE id = 'ch_1'`, CodeFeatureNotSupported, "INSERT INTO stripe.refunds"},
		{`DELETE FROM stripe.payouts WHERE id = 'po_1'`, CodeFeatureNotSupported, "SET status = 'canceled'"},
		{`DELETE FROM stripe.disputes WHERE id = 'dp_1'`, CodeFeatureNotSupported, "SET status = 'lost'"},
		{`DELETE FROM stripe.subscription_schedules WHERE id = 'sub_sched_1'`, CodeFeatureNotSupported, "SET status = 'canceled'"},
		{`INSERT INTO stripe.invoice_line_items (invoice) VALUES ('in_1')`, CodeFeatureNotSupported, "stripe.invoiceitems"},
		{`UPDATE stripe.upcoming_invoices SET description = 'x'`, CodeFeatureNotSupported, "stripe.subscriptions"},
		{`UPDATE stripe.balance_transactions SET description = 'x'`, CodeFeatureNotSupported, "no endpoint"},
	} {
		cl := Classify(c.sql)
		if cl.Err == nil {
			t.Errorf("%s: accepted", c.sql)
			continue
		}
		if cl.Err.Code != c.code || !strings.Contains(cl.Err.Hint, c.hint) {
			t.Errorf("%s: %s %s (hint %q), want %s with a hint naming %q", c.sql, cl.Err.Code, cl.Err.Message, cl.Err.Hint, c.code, c.hint)
		}
	}
}

// TestSubscriptionStatus: SET status = 'canceled' on a subscription
// (no status endpoint: Stripe cancels by DELETE) says how to cancel.
func TestSubscriptionStatus(t *testing.T) {
	cl := Classify(`UPDATE stripe.subscriptions SET status = 'canceled' WHERE id = 'sub_1'`)
	if cl.Stmt == nil {
		t.Fatalf("refused at once: %v", cl.Err)
	}
	_, err := cl.Stmt.Build([][][]byte{{[]byte("sub_1"), []byte("1"), []byte(`"canceled"`), []byte(`"active"`)}})
	if err == nil || err.Code != CodeUndefinedColumn || !strings.Contains(err.Hint, "DELETE FROM stripe.subscriptions") {
		t.Fatalf("got %v, want 42703 with a hint naming DELETE", err)
	}
}
