package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/pgstripe/pgstripe/schema"
)

// ExpandIncluded returns q (a copy; q itself is left alone) with the
// expand[] that make Stripe include t's included lists
// (schema.IncludedList): "data.<field>" for a list endpoint (list true),
// "<field>" for an endpoint answering with the object itself (retrieve,
// create, expire). Every fetch of such a table must ask, or the object
// comes without the list.
func ExpandIncluded(q url.Values, t *schema.Table, list bool) url.Values {
	q = cloneValues(q)
	for _, l := range t.Included {
		if list {
			q.Add("expand[]", "data."+l.Field)
		} else {
			q.Add("expand[]", l.Field)
		}
	}
	return q
}

// CompleteIncluded makes the included lists of obj (an object of t fetched
// with ExpandIncluded) whole: a list cut at has_more is paged from after
// its last embedded element (the embedded list is the first page of the
// list endpoint), so a list up to 110 elements costs one request more,
// and stored with schema.WholeList. It returns obj unchanged when no list
// has more (an absent list stays absent: the store then keeps the stored
// one), and the number of requests made.
func (c *Client) CompleteIncluded(ctx context.Context, t *schema.Table, obj json.RawMessage) (json.RawMessage, int, error) {
	if len(t.Included) == 0 {
		return obj, 0, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(obj, &fields); err != nil {
		return nil, 0, fmt.Errorf("stripe: %s object: %w", t.Name, err)
	}
	var id string
	_ = json.Unmarshal(fields["id"], &id)
	reqs := 0
	for _, l := range t.Included {
		v, ok := fields[l.Field]
		if !ok {
			continue
		}
		var list struct {
			Data    []json.RawMessage `json:"data"`
			HasMore bool              `json:"has_more"`
		}
		if err := json.Unmarshal(v, &list); err != nil || !list.HasMore {
			continue
		}
		if id == "" {
			return nil, reqs, fmt.Errorf("stripe: %s object without id has an included %s with more", t.Name, l.Field)
		}
		all := append([]json.RawMessage(nil), list.Data...)
		seen := make(map[string]bool, len(all))
		q := url.Values{}
		if n := len(list.Data); n > 0 {
			last, err := ObjectID(list.Data[n-1])
			if err != nil {
				return nil, reqs, fmt.Errorf("stripe: %s %s: %s: %w", t.Name, id, l.Field, err)
			}
			q.Set("starting_after", last)
			for _, d := range list.Data {
				if eid, err := ObjectID(d); err == nil {
					seen[eid] = true
				}
			}
		}
		path := schema.Path(l.ListPath, id, "")
		err := c.ListAll(ctx, path, q, func(p *Page) error {
			reqs++
			for _, d := range p.Data {
				eid, err := ObjectID(d)
				if err != nil {
					return err
				}
				if !seen[eid] {
					seen[eid] = true
					all = append(all, d)
				}
			}
			return nil
		})
		if err != nil {
			reqs++ // the page that failed
			return nil, reqs, fmt.Errorf("stripe: page %s of %s %s: %w", l.Field, t.Name, id, err)
		}
		if obj, err = schema.WholeList(obj, l.Field, all, path); err != nil {
			return nil, reqs, fmt.Errorf("stripe: %s %s: %s: %w", t.Name, id, l.Field, err)
		}
	}
	return obj, reqs, nil
}
