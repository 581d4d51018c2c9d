package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// stripeClient makes Stripe API calls the way an app next to pgstripe
// would: plain HTTP with the form encoding (the emulator is the account).
type stripeClient struct{ base string }

func newStripe(t *testing.T, base string) *stripeClient { return &stripeClient{base: base} }

func (c *stripeClient) post(t *testing.T, path string, form url.Values) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(apiKey, "")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", path, res.StatusCode, body)
	}
	var obj map[string]any
	json.Unmarshal(body, &obj)
	return obj
}
