package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Page is one page of a list endpoint.
type Page struct {
	Data    []json.RawMessage
	HasMore bool
	URL     string
	// AsOf and RequestID as in Response.
	AsOf      time.Time
	RequestID string
	// Latency and Waited as in Response.
	Latency, Waited time.Duration
}

// List fetches one page of the list at path. limit defaults to 100 (Stripe's
// maximum) when q doesn't set it.
func (c *Client) List(ctx context.Context, path string, q url.Values) (*Page, error) {
	if q == nil {
		q = url.Values{}
	}
	if q.Get("limit") == "" {
		q = cloneValues(q)
		q.Set("limit", "100")
	}
	resp, err := c.Get(ctx, path, q)
	if err != nil {
		return nil, err
	}
	return ParsePage(resp)
}

// ParsePage decodes a list response.
func ParsePage(resp *Response) (*Page, error) {
	var l struct {
		Object  string            `json:"object"`
		Data    []json.RawMessage `json:"data"`
		HasMore bool              `json:"has_more"`
		URL     string            `json:"url"`
	}
	if err := json.Unmarshal(resp.Body, &l); err != nil {
		return nil, fmt.Errorf("stripe: list response (request %s): %w", resp.RequestID, err)
	}
	if l.Object != "list" && l.Object != "search_result" {
		return nil, fmt.Errorf("stripe: expected a list, got object %q (request %s)", l.Object, resp.RequestID)
	}
	return &Page{Data: l.Data, HasMore: l.HasMore, URL: l.URL, AsOf: resp.AsOf, RequestID: resp.RequestID,
		Latency: resp.Latency, Waited: resp.Waited}, nil
}

// ListAll pages through the list at path with starting_after, calling fn for
// each page, until has_more is false or fn fails.
func (c *Client) ListAll(ctx context.Context, path string, q url.Values, fn func(*Page) error) error {
	q = cloneValues(q)
	for {
		p, err := c.List(ctx, path, q)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		if !p.HasMore || len(p.Data) == 0 {
			return nil
		}
		id, err := ObjectID(p.Data[len(p.Data)-1])
		if err != nil {
			return err
		}
		q.Set("starting_after", id)
	}
}

// ObjectID reads the id of a raw object.
func ObjectID(raw json.RawMessage) (string, error) {
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("stripe object: %w", err)
	}
	if o.ID == "" {
		return "", fmt.Errorf("stripe object without id: %.80s", raw)
	}
	return o.ID, nil
}

// ObjectHeader reads id and created of a raw object (created 0 if absent).
func ObjectHeader(raw json.RawMessage) (id string, created int64, err error) {
	var o struct {
		ID      string      `json:"id"`
		Created json.Number `json:"created"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", 0, fmt.Errorf("stripe object: %w", err)
	}
	if o.Created != "" {
		created, err = strconv.ParseInt(string(o.Created), 10, 64)
		if err != nil {
			return "", 0, fmt.Errorf("stripe object %s: created %q: %w", o.ID, o.Created, err)
		}
	}
	return o.ID, created, nil
}

func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}
