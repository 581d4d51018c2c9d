package stripeapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/stripe/stripe-go/v76/form"
)

// TestBodyInStripeGoOrder: the body of a POST lists an array's
// elements in index order and a hash's keys sorted, byte for byte as
// stripe-go's encoder writes the same params. A plain sort of the keys
// sent items[10] and items[11] between items[1] and items[2].
func TestBodyInStripeGoOrder(t *testing.T) {
	items := make([]map[string]any, 12)
	params := url.Values{"customer": {"cus_1"}, "metadata[b]": {"2"}, "metadata[a]": {"1 & 2"}}
	for i := range items {
		items[i] = map[string]any{"price": fmt.Sprintf("price_%d", i), "quantity": int64(i + 1)}
		params.Set(fmt.Sprintf("items[%d][price]", i), fmt.Sprintf("price_%d", i))
		params.Set(fmt.Sprintf("items[%d][quantity]", i), fmt.Sprint(i+1))
	}
	rates := make([]string, 11)
	for i := range rates {
		rates[i] = fmt.Sprintf("txr_%d", i)
		params.Set(fmt.Sprintf("items[2][tax_rates][%d]", i), rates[i])
	}
	items[2]["tax_rates"] = rates
	fv := &form.Values{}
	form.AppendTo(fv, map[string]any{
		"customer": "cus_1",
		"items":    items,
		"metadata": map[string]string{"b": "2", "a": "1 & 2"},
	})
	want := fv.Encode()

	var got string
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		fmt.Fprint(w, `{"id":"sub_1","object":"subscription"}`)
	}, Config{})
	if _, err := c.Post(context.Background(), "/v1/subscriptions", params, "idem_1"); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("body\n got:  %s\n want: %s", got, want)
	}
}
