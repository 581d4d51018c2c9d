package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-mock/embedded"

	"github.com/pgstripe/pgstripe/schema"
	"github.com/pgstripe/pgstripe/stripeapi"
)

// FuzzEventsPage decodes an arbitrary /v1/events response body as
// the poller does (stripeapi.ParsePage, parseEvents) and plans it. Whatever
// Stripe (or a proxy in between) sends: no panic; a page is refused as a
// whole or planned; every write the plan makes names a stripe table, an
// upserted state is the data.object of one of the page's events, as of
// that event's second, and a deletion's time is one of the events'.
func FuzzEventsPage(f *testing.F) {
	var fx struct {
		Resources map[string]json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(embedded.OpenAPIFixtures, &fx); err != nil {
		f.Fatal(err)
	}
	page := func(evs ...string) []byte {
		return fmt.Appendf(nil, `{"object":"list","url":"/v1/events","has_more":false,"data":[%s]}`, bytes.Join(func() [][]byte {
			var b [][]byte
			for _, e := range evs {
				b = append(b, []byte(e))
			}
			return b
		}(), []byte(",")))
	}
	event := func(id, typ string, created int, obj json.RawMessage) string {
		return fmt.Sprintf(`{"id":%q,"object":"event","type":%q,"created":%d,"api_version":%q,"data":{"object":%s,"previous_attributes":{}}}`,
			id, typ, created, stripe.APIVersion, obj)
	}
	var all []string
	for i, tb := range schema.Tables() {
		raw, ok := fx.Resources[tb.Object]
		if !ok {
			continue
		}
		e := event(fmt.Sprintf("evt_%d", i), tb.Object+".updated", 1_700_000_000+i%3, raw)
		all = append(all, e)
		f.Add(page(e))
	}
	f.Add(page(all...))
	f.Add(page(event("evt_d", "customer.discount.created", 1_700_000_000, fx.Resources["discount"]),
		event("evt_x", "customer.deleted", 1_700_000_001, json.RawMessage(`{"id":"cus_1","object":"customer","deleted":true}`)),
		event("evt_i", "invoice.upcoming", 1_700_000_001, json.RawMessage(`{"object":"invoice","customer":"cus_1"}`))))
	f.Add([]byte(`{"object":"list","data":[{"id":"evt_1","created":0}]}`))
	f.Add([]byte(`{"object":"search_result","data":null}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		pg, err := stripeapi.ParsePage(&stripeapi.Response{Body: body, AsOf: time.Unix(1_700_000_010, 0)})
		if err != nil {
			return
		}
		evs, err := parseEvents(pg.Data)
		if err != nil {
			return
		}
		p := planBatch(evs)
		states := map[string]bool{}
		times := map[int64]bool{}
		for _, e := range evs {
			states[fmt.Sprintf("%d %s", e.Created, e.Data.Object)] = true
			times[e.Created] = true
		}
		for table, objs := range p.Upserts {
			if _, ok := schema.Lookup(table); !ok {
				t.Fatalf("upsert into %q, no stripe table", table)
			}
			for _, o := range objs {
				if !states[fmt.Sprintf("%d %s", o.AsOf.Unix(), o.Raw)] {
					t.Fatalf("upserted %s as of %d: no event of the page has that state then", o.Raw, o.AsOf.Unix())
				}
			}
		}
		for _, d := range p.Deletes {
			if _, ok := schema.Lookup(d.Table); !ok || d.ID == "" || !times[d.At.Unix()] {
				t.Fatalf("deletion %+v", d)
			}
		}
		for _, r := range p.Refetch {
			if _, ok := schema.Lookup(r.Table); !ok || r.ID == "" {
				t.Fatalf("re-fetch %+v", r)
			}
		}
	})
}
