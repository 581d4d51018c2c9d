package backfill

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgstripe/pgstripe/store"
)

func TestExtractInline(t *testing.T) {
	objs := []store.Object{
		{Raw: json.RawMessage(`{"id":"cus_1","object":"customer","tax_ids":{"object":"list","data":[{"id":"txi_1","object":"tax_id"}],"has_more":false,"url":"/v1/customers/cus_1/tax_ids"}}`)},
		{Raw: json.RawMessage(`{"id":"cus_2","object":"customer","tax_ids":{"object":"list","data":[{"id":"txi_2"},{"id":"txi_3"}],"has_more":true,"url":"/v1/customers/cus_2/tax_ids"}}`)},
		{Raw: json.RawMessage(`{"id":"cus_3","object":"customer"}`)},
	}
	at := time.Unix(1700000000, 0)
	inc, more, err := extractInline([]string{"tax_ids"}, objs, []string{"cus_1", "cus_2", "cus_3"}, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(inc["tax_ids"]) != 3 || !inc["tax_ids"][0].AsOf.Equal(at) {
		t.Errorf("included %+v", inc["tax_ids"])
	}
	// cus_2 has more than the included page; cus_3 came without the field.
	if strings.Join(more["tax_ids"], ",") != "cus_2,cus_3" {
		t.Errorf("more = %v", more["tax_ids"])
	}
	for _, o := range objs {
		if strings.Contains(string(o.Raw), "tax_ids") {
			t.Errorf("field left in the parent: %s", o.Raw)
		}
	}
	if got := string(objs[0].Raw); got != `{"id":"cus_1","object":"customer"}` {
		t.Errorf("parent rewritten as %s", got)
	}
}

func TestProgressRender(t *testing.T) {
	p := Progress{Elapsed: 3 * time.Second, Requests: 60, RequestsPerSec: 20, Rate: 20, Workers: 6, Target: 7,
		Objects: []ObjectProgress{{Object: "customers", Phase: "backfilling", Rows: 500, RowsPerSec: 166.7, RequestsPerSec: 2, ETA: 12 * time.Second},
			{Object: "disputes", Phase: "error", Error: "stripe: invalid_request_error: no"}}}
	var b strings.Builder
	p.Render(&b)
	out := b.String()
	for _, want := range []string{"backfill running", "60 requests (20.0/s of 20/s)", "customers", "12s", "disputes", "error", "invalid_request_error"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
}
