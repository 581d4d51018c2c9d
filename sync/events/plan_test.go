package events

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/schema"
)

func TestRouteEvent(t *testing.T) {
	tests := []struct {
		typ, obj string
		want     Route
	}{
		{"customer.updated", `{"id":"cus_1","object":"customer"}`, Route{Action: Upsert, Table: "customers", ID: "cus_1"}},
		{"customer.created", `{"id":"cus_1","object":"customer"}`, Route{Action: Upsert, Table: "customers", ID: "cus_1"}},
		{"customer.deleted", `{"id":"cus_1","object":"customer"}`, Route{Action: Delete, Table: "customers", ID: "cus_1", Customer: "cus_1"}},
		// Canceled, not deleted: the subscription still exists.
		{"customer.subscription.deleted", `{"id":"sub_1","object":"subscription","customer":"cus_1","status":"canceled"}`,
			Route{Action: Upsert, Table: "subscriptions", ID: "sub_1", Customer: "cus_1"}},
		{"customer.subscription.updated", `{"id":"sub_1","object":"subscription","customer":{"id":"cus_2","object":"customer"}}`,
			Route{Action: Upsert, Table: "subscriptions", ID: "sub_1", Customer: "cus_2"}},
		{"charge.dispute.created", `{"id":"dp_1","object":"dispute"}`, Route{Action: Upsert, Table: "disputes", ID: "dp_1"}},
		// The dispute's charge turns disputed: fetched besides.
		{"charge.dispute.created", `{"id":"dp_1","object":"dispute","charge":"ch_1"}`, Route{Action: Upsert, Table: "disputes", ID: "dp_1", Also: [2]Ref{{"charges", "ch_1"}}}},
		{"charge.dispute.closed", `{"id":"dp_1","object":"dispute","charge":{"id":"ch_2","object":"charge"}}`, Route{Action: Upsert, Table: "disputes", ID: "dp_1", Also: [2]Ref{{"charges", "ch_2"}}}},
		{"charge.refund.updated", `{"id":"re_1","object":"refund"}`, Route{Action: Upsert, Table: "refunds", ID: "re_1"}},
		// A refund's change (failed: its amount given back) may change
		// its charge, which gets no event: fetched besides.
		{"charge.refund.updated", `{"id":"re_1","object":"refund","charge":"ch_1","status":"failed"}`, Route{Action: Upsert, Table: "refunds", ID: "re_1", Also: [2]Ref{{"charges", "ch_1"}}}},
		{"customer.tax_id.created", `{"id":"txi_1","object":"tax_id"}`, Route{Action: Upsert, Table: "tax_ids", ID: "txi_1"}},
		{"customer.tax_id.deleted", `{"id":"txi_1","object":"tax_id"}`, Route{Action: Delete, Table: "tax_ids", ID: "txi_1"}},
		{"payment_method.detached", `{"id":"pm_1","object":"payment_method","customer":null}`, Route{Action: Upsert, Table: "payment_methods", ID: "pm_1"}},
		{"invoiceitem.deleted", `{"id":"ii_1","object":"invoiceitem","customer":"cus_1"}`, Route{Action: Delete, Table: "invoiceitems", ID: "ii_1", Customer: "cus_1"}},
		{"invoice.paid", `{"id":"in_1","object":"invoice","customer":"cus_1"}`, Route{Action: Upsert, Table: "invoices", ID: "in_1", Customer: "cus_1"}},
		{"checkout.session.completed", `{"id":"cs_1","object":"checkout.session"}`, Route{Action: Upsert, Table: "checkout_sessions", ID: "cs_1"}},
		{"credit_note.voided", `{"id":"cn_1","object":"credit_note"}`, Route{Action: Upsert, Table: "credit_notes", ID: "cn_1"}},
		{"price.deleted", `{"id":"price_1","object":"price"}`, Route{Action: Delete, Table: "prices", ID: "price_1"}},
		// A deletion stub is a delete whatever the type says.
		{"product.updated", `{"id":"prod_1","object":"product","deleted":true}`, Route{Action: Delete, Table: "products", ID: "prod_1"}},
		// The upcoming invoice has no id: refresh the customer's row.
		{"invoice.upcoming", `{"object":"invoice","customer":"cus_1"}`, Route{Customer: "cus_1"}},
		{"customer.discount.created", `{"object":"discount","customer":"cus_1"}`, Route{Action: Refetch, Table: "customers", ID: "cus_1", Customer: "cus_1"}},
		{"customer.discount.deleted", `{"object":"discount","customer":null}`, Route{}},
		{"account.updated", `{"id":"acct_1","object":"account"}`, Route{}},
		{"balance.available", `{"object":"balance"}`, Route{}},
		{"customer.updated", `not json`, Route{}},
		{"customer.updated", `{"object":"customer"}`, Route{}}, // no id
	}
	for _, tt := range tests {
		got := RouteEvent(tt.typ, json.RawMessage(tt.obj))
		if got != tt.want {
			t.Errorf("RouteEvent(%s, %s) = %+v, want %+v", tt.typ, tt.obj, got, tt.want)
		}
	}
}

func ev(id, typ string, created int64, obj string) Event {
	e := Event{ID: id, Type: typ, Created: created}
	e.Data.Object = json.RawMessage(obj)
	return e
}

func upsertedRaw(t *testing.T, p plan, table, id string) string {
	t.Helper()
	for _, o := range p.Upserts[table] {
		var x struct{ ID string }
		json.Unmarshal(o.Raw, &x)
		if x.ID == id {
			return string(o.Raw)
		}
	}
	return ""
}

func TestPlanKeepsNewestStateInAnyOrder(t *testing.T) {
	a := ev("evt_1", "customer.updated", 100, `{"id":"cus_1","object":"customer","name":"old"}`)
	b := ev("evt_2", "customer.updated", 101, `{"id":"cus_1","object":"customer","name":"new"}`)
	for _, order := range [][]Event{{a, b}, {b, a}} {
		p := planBatch(order)
		if got := upsertedRaw(t, p, "customers", "cus_1"); got != string(b.Data.Object) {
			t.Errorf("order %s,%s: stored %s, want the newer state", order[0].ID, order[1].ID, got)
		}
		if len(p.Upserts["customers"]) != 1 {
			t.Errorf("one object must be upserted once, got %d", len(p.Upserts["customers"]))
		}
		if !p.AsOf[refetchKey{"customers", "cus_1"}].Equal(time.Unix(101, 0)) {
			t.Errorf("AsOf = %v, want the event's created", p.AsOf[refetchKey{"customers", "cus_1"}])
		}
		if len(p.Refetch) != 0 {
			t.Errorf("no re-fetch expected, got %+v", p.Refetch)
		}
		if p.maxEvent.ID != "evt_2" {
			t.Errorf("newest event = %s", p.maxEvent.ID)
		}
	}
}

func TestPlanSameSecondConflictRefetchesAfterTheSecond(t *testing.T) {
	a := ev("evt_1", "customer.updated", 100, `{"id":"cus_1","object":"customer","name":"a"}`)
	b := ev("evt_2", "customer.updated", 100, `{"id":"cus_1","object":"customer","name":"b"}`)
	p := planBatch([]Event{a, b})
	if len(p.Refetch) != 1 {
		t.Fatalf("want one re-fetch, got %+v", p.Refetch)
	}
	r := p.Refetch[0]
	if r.Table != "customers" || r.ID != "cus_1" || r.Reason != reasonAmbiguous || !r.NotBefore.Equal(time.Unix(101, 0)) {
		t.Errorf("re-fetch = %+v, want customers/cus_1 ambiguous not before 101", r)
	}
	// Identical states in one second are no conflict (a replay).
	p = planBatch([]Event{a, ev("evt_3", "customer.updated", 100, string(a.Data.Object))})
	if len(p.Refetch) != 0 {
		t.Errorf("identical states must not be re-fetched: %+v", p.Refetch)
	}
	// An older state in the same batch doesn't hide a later conflict.
	c := ev("evt_4", "customer.updated", 99, `{"id":"cus_1","object":"customer","name":"c"}`)
	p = planBatch([]Event{c, b, a})
	if len(p.Refetch) != 1 || p.Refetch[0].Reason != reasonAmbiguous {
		t.Errorf("conflict at the newest second must be re-fetched: %+v", p.Refetch)
	}
	// A conflict in an older second is moot when a newer state exists.
	d := ev("evt_5", "customer.updated", 102, `{"id":"cus_1","object":"customer","name":"d"}`)
	p = planBatch([]Event{a, b, d})
	if len(p.Refetch) != 0 {
		t.Errorf("conflict superseded by a newer second must not be re-fetched: %+v", p.Refetch)
	}
}

func TestPlanDeleteWins(t *testing.T) {
	up := ev("evt_1", "customer.updated", 105, `{"id":"cus_1","object":"customer","name":"late"}`)
	del := ev("evt_2", "customer.deleted", 104, `{"id":"cus_1","object":"customer"}`)
	disc := ev("evt_3", "customer.discount.created", 103, `{"object":"discount","customer":"cus_1"}`)
	p := planBatch([]Event{up, del, disc})
	if len(p.Upserts["customers"]) != 0 {
		t.Errorf("a deleted object must not be upserted: %+v", p.Upserts)
	}
	if len(p.Deletes) != 1 || p.Deletes[0].Table != "customers" || p.Deletes[0].ID != "cus_1" || !p.Deletes[0].At.Equal(time.Unix(104, 0)) {
		t.Errorf("deletes = %+v", p.Deletes)
	}
	for _, r := range p.Refetch {
		if r.Table == "customers" {
			t.Errorf("a deleted object must not be re-fetched: %+v", r)
		}
	}
	// The customer's upcoming invoice is refreshed (and will 404 → removed).
	var upcoming bool
	for _, r := range p.Refetch {
		upcoming = upcoming || (r.Table == "upcoming_invoices" && r.ID == "cus_1")
	}
	if !upcoming {
		t.Errorf("deleted customer's upcoming invoice not queued: %+v", p.Refetch)
	}
}

func TestPlanQueuesIncompleteNestedAndUpcoming(t *testing.T) {
	sub := ev("evt_1", "customer.subscription.updated", 200,
		`{"id":"sub_1","object":"subscription","customer":"cus_9","items":{"object":"list","data":[],"has_more":true,"url":"/v1/subscription_items?subscription=sub_1"}}`)
	acct := ev("evt_2", "account.updated", 201, `{"id":"acct_1","object":"account"}`)
	dispute := ev("evt_3", "charge.dispute.created", 202, `{"id":"dp_1","object":"dispute","charge":"ch_1"}`)
	// A charge's refund has no event of its own under 2023-10-16: the
	// charge's re-fetch lists them, at once.
	refunded := ev("evt_4", "charge.refunded", 204, `{"id":"ch_2","object":"charge","amount_refunded":100}`)
	p := planBatch([]Event{sub, acct, dispute, refunded})
	// The rest of the items only after the event's second: a fetch within
	// it is the same state to the store (Stale), and its list is dropped.
	type want struct {
		reason string
		at     int64
	}
	wants := map[refetchKey]want{{"subscriptions", "sub_1"}: {reasonIncomplete, 201}, {"upcoming_invoices", "cus_9"}: {reasonUpcoming, 200},
		{"charges", "ch_1"}: {reasonOwner, 203}, {"charges", "ch_2"}: {reasonRefunds, 204}}
	if len(p.Refetch) != len(wants) {
		t.Fatalf("refetch = %+v", p.Refetch)
	}
	for _, r := range p.Refetch {
		if w := wants[r.refetchKey]; w.reason != r.Reason || !r.NotBefore.Equal(time.Unix(w.at, 0)) {
			t.Errorf("unexpected %+v", r)
		}
	}
	if p.Ignored != 1 {
		t.Errorf("ignored = %d, want 1", p.Ignored)
	}
	if len(p.Upserts["charges"]) != 1 {
		t.Errorf("the refunded charge itself must be upserted: %+v", p.Upserts)
	}
	if len(p.Events) != 4 {
		t.Errorf("every event must be recorded as applied, got %d", len(p.Events))
	}
	if !p.TableAt["subscriptions"].Equal(time.Unix(200, 0)) {
		t.Errorf("TableAt = %v", p.TableAt)
	}
}

func TestParseEventsRejectsUnusable(t *testing.T) {
	if _, err := parseEvents([]json.RawMessage{json.RawMessage(`{"id":"evt_1","type":"x","created":5}`)}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"type":"x","created":5}`, `{"id":"evt_1","created":0}`, `[]`} {
		if _, err := parseEvents([]json.RawMessage{json.RawMessage(bad)}); err == nil {
			t.Errorf("parseEvents(%s) must fail", bad)
		}
	}
}

func TestWindowAndRetention(t *testing.T) {
	checked := time.Unix(1_000_000, 500_000_000)
	if got := windowStart(checked, false, time.Minute); !got.Equal(time.Unix(1_000_000-3, 0)) {
		t.Errorf("head window starts %v", got)
	}
	if got := windowStart(checked, true, time.Minute); !got.Equal(time.Unix(1_000_000-60, 0)) {
		t.Errorf("sweep window starts %v", got)
	}
	// A look-back shorter than the head overlap bounds both.
	if got := windowStart(checked, false, time.Second); !got.Equal(time.Unix(1_000_000-1, 0)) {
		t.Errorf("short look-back window starts %v", got)
	}
	now := time.Unix(1_000_000, 0).Add(Retention)
	cur := Cursor{CheckedThrough: time.Unix(1_000_000, 0)}
	if !expired(cur, now, time.Minute) {
		t.Error("a cursor 30 days old must be expired")
	}
	cur.CheckedThrough = now.Add(-Retention + 2*time.Hour)
	if expired(cur, now, time.Minute) {
		t.Error("a cursor well inside retention must not be expired")
	}
}

func TestSeenSetPrunesOutsideWindow(t *testing.T) {
	s := seenSet{}
	var evs []Event
	for i := range 10 {
		evs = append(evs, Event{ID: fmt.Sprintf("evt_%d", i), Created: int64(100 + i)})
	}
	s.add(evs)
	s.prune(time.Unix(105, 0))
	if len(s) != 5 || s.has("evt_4") || !s.has("evt_5") {
		t.Errorf("after prune: %v", s)
	}
}

func TestNestedListURL(t *testing.T) {
	for _, tt := range []struct {
		field, url, parent, wantPath, wantQuery string
	}{
		{"items", "/v1/subscription_items?subscription=sub_1", "sub_1", "/v1/subscription_items", "subscription=sub_1"},
		{"lines", "/v1/invoices/in_1/lines", "in_1", "/v1/invoices/in_1/lines", ""},
		{"items", "", "sub_2", "/v1/subscription_items", "subscription=sub_2"},
		{"lines", "", "in_2", "/v1/invoices/in_2/lines", ""},
	} {
		var n struct{ Field, Table, ListPath string }
		switch tt.field {
		case "items":
			n.Table, n.ListPath = "subscription_items", "/v1/subscription_items"
		case "lines":
			n.Table, n.ListPath = "invoice_line_items", "/v1/invoices/{id}/lines"
		}
		path, q, err := nestedListURL(nestedList(tt.field, n.Table, n.ListPath), tt.url, tt.parent)
		if err != nil || path != tt.wantPath || q.Encode() != tt.wantQuery {
			t.Errorf("nestedListURL(%q, %q) = %q, %q, %v", tt.url, tt.parent, path, q.Encode(), err)
		}
	}
	if _, _, err := nestedListURL(nestedList("lines", "invoice_line_items", "/v1/invoices/{id}/lines"), "https://evil.example/x", "in_1"); err == nil {
		t.Error("a nested list url outside /v1/ must be refused")
	}
}

func nestedList(field, table, path string) schema.NestedList {
	return schema.NestedList{Field: field, Table: table, ListPath: path}
}

func TestOverlapReReadsLeaveNoGap(t *testing.T) {
	p := &poller{cfg: Config{LookBack: time.Minute}}
	p.cur.CheckedThrough = time.Unix(1000, 0)
	now := time.Unix(1000, 0)
	if got := p.newScan(false, now).q.Get("created[gte]"); got != "997" {
		t.Errorf("first overlap from %s, want 997", got)
	}
	// The previous overlap began at 1000; polls moved on to 1010 while
	// the re-read waited: the next one must reach back to 997, not 1007.
	p.overlapBase = time.Unix(1000, 0)
	p.cur.CheckedThrough = time.Unix(1010, 0)
	if got := p.newScan(false, now).q.Get("created[gte]"); got != "997" {
		t.Errorf("overlap after a delay from %s, want 997", got)
	}
	if got := p.newScan(true, now).q.Get("created[gte]"); got != "950" {
		t.Errorf("sweep from %s, want 950", got)
	}
}
