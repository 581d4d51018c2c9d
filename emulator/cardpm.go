package emulator

import (
	"slices"
	"strings"
)

// Cards saved as sources, seen through the Payment Methods API. Stripe's
// "Compatibility with legacy card objects" (docs.stripe.com/payments/
// payment-methods/transitioning#compatibility): "You can retrieve all
// saved compatible payment instruments through the Payment Methods API
// ... With this compatibility, no new objects are created; the Payment
// Methods API provides a different view of the same underlying object",
// its example a card_ id answered as {"id": "card_…", "object":
// "payment_method", "billing_details": {"address": {"city": …}}, …}. The
// customer's list shows them too under the same card_ id
// (davidmerfield/blot#1889: "Stripe lists a legacy Card through both
// paymentMethods.list and customers.listCards under the same card_ id"),
// which is what a sync listing payment methods per customer stores, so
// the view is built, never stored: it follows the card (its updates,
// its deletion) by construction.

// cardMeta is what a card's payment method view shows that the card
// object itself does not carry (the card schema has neither created nor
// livemode).
type cardMeta struct {
	created int64
	live    bool
}

// cardPMView is the payment method Stripe shows for a saved card: type
// card, the card's details in the payment method's spelling (brand
// lowercased as pmBrands, address_zip as postal_code, the checks
// grouped), its name and billing address as billing_details, its
// customer and metadata.
func (e *Emulator) cardPMView(card map[string]any) map[string]any {
	id := idOf(card)
	meta := e.cardMeta[id]
	b := pmBrands[getStr(card, "brand")]
	if b == "" {
		b = "unknown"
	}
	pc := map[string]any{
		"brand": b,
		"checks": map[string]any{
			"address_line1_check":       card["address_line1_check"],
			"address_postal_code_check": card["address_zip_check"],
			"cvc_check":                 card["cvc_check"],
		},
		"country":              card["country"],
		"display_brand":        displayBrands[b],
		"exp_month":            card["exp_month"],
		"exp_year":             card["exp_year"],
		"fingerprint":          card["fingerprint"],
		"funding":              card["funding"],
		"generated_from":       nil,
		"last4":                card["last4"],
		"networks":             map[string]any{"available": []any{b}, "preferred": nil},
		"three_d_secure_usage": map[string]any{"supported": true},
		"wallet":               nil,
	}
	md := card["metadata"]
	if md == nil {
		md = map[string]any{}
	}
	return map[string]any{
		"id":     id,
		"object": "payment_method",
		"billing_details": map[string]any{
			"address": map[string]any{
				"city":        card["address_city"],
				"country":     card["address_country"],
				"line1":       card["address_line1"],
				"line2":       card["address_line2"],
				"postal_code": card["address_zip"],
				"state":       card["address_state"],
			},
			"email": nil,
			"name":  card["name"],
			"phone": nil,
		},
		"card":     pc,
		"created":  meta.created,
		"customer": card["customer"],
		"livemode": meta.live,
		"metadata": md,
		"type":     "card",
	}
}

// cardPMRecord is the view of the stored card r as a record of the
// payment_methods table (its keys customer and type), placed as the
// card's creation and sequence place it, so lists and cursors mix it
// with the customer's payment methods.
func (e *Emulator) cardPMRecord(r *record) *record {
	card, err := decodeObject(r.raw)
	if err != nil {
		return nil
	}
	raw, err := marshal(e.cardPMView(card))
	if err != nil {
		return nil
	}
	keys := e.tables["payment_methods"].extractKeys(map[string]any{"customer": card["customer"], "type": "card"})
	return &record{id: r.id, created: e.cardMeta[r.id].created, seq: r.seq, raw: raw, keys: keys}
}

// cardPMRecords are the views of customer cus's cards, sorted like a
// table's ordered records.
func (e *Emulator) cardPMRecords(cus string) []*record {
	var out []*record
	for _, r := range e.tables["cards"].byCustomer[cus] {
		if v := e.cardPMRecord(r); v != nil {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b *record) int {
		if less(a, b) {
			return -1
		}
		if less(b, a) {
			return 1
		}
		return 0
	})
	return out
}

// cardPMs are the payment method views of every stored card, by id (for
// Objects: what a sync listing each customer's payment methods holds).
func (e *Emulator) cardPMs() map[string][]byte {
	out := map[string][]byte{}
	for id, r := range e.tables["cards"].byID {
		if v := e.cardPMRecord(r); v != nil {
			out[id] = v.raw
		}
	}
	return out
}

// retrievePM serves GET /v1/payment_methods/{payment_method} and
// GET /v1/customers/{customer}/payment_methods/{payment_method}: a
// payment method, or a saved card's view.
func retrievePM(e *Emulator, c *reqCtx) (any, *apiError) {
	id, cus := c.path["payment_method"], c.path["customer"]
	if cus != "" && e.tables["customers"].byID[cus] == nil {
		return nil, notFound("customer", "customer", cus)
	}
	if strings.HasPrefix(id, kCard.prefix) {
		if r := e.tables["cards"].byID[id]; r != nil && (cus == "" || r.keys[0] == cus) {
			if v := e.cardPMRecord(r); v != nil {
				return e.render(kPM, v.raw, c)
			}
		}
		return nil, notFound("payment_method", "PaymentMethod", id)
	}
	r := e.tables["payment_methods"].byID[id]
	if r == nil || (cus != "" && r.keys[0] != cus) {
		return nil, notFound("payment_method", "PaymentMethod", id)
	}
	return e.render(kPM, r.raw, c)
}

// listPMs serves GET /v1/payment_methods and GET
// /v1/customers/{customer}/payment_methods: a customer's list (type
// card, or any type) has its saved cards' views among its payment
// methods, newest first as one list whose cursors may be either. Without
// a customer nothing is added: no customer, no saved card.
func listPMs(e *Emulator, c *reqCtx) (any, *apiError) {
	cus, _ := c.params["customer"].(string)
	typ, typed := c.params["type"].(string)
	var cards []*record
	if cus != "" && (!typed || typ == "card") {
		cards = e.cardPMRecords(cus)
	}
	if len(cards) == 0 {
		return genericList(kPM, nil)(e, c)
	}
	byID := make(map[string]*record, len(cards))
	for _, r := range cards {
		byID[r.id] = r
	}
	return listKind(e, c, kPM, nil, listSource{
		seq: func(pms []*record) []*record { return mergeRecords(pms, cards) },
		lookup: func(id string) *record {
			if r := byID[id]; r != nil {
				return r
			}
			return e.tables["payment_methods"].byID[id]
		},
	})
}

// mergeRecords merges two slices sorted like a table's ordered records.
func mergeRecords(a, b []*record) []*record {
	out := make([]*record, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if less(b[j], a[i]) {
			out = append(out, b[j])
			j++
		} else {
			out = append(out, a[i])
			i++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// notCardPM refuses, on the Payment Methods API's writes (update,
// attach, detach), a saved card's id, which Stripe takes (the view "is
// visible through the Sources API, and vice versa") but the emulator
// does not model: a 400 saying so rather than a 404 that would say the
// card does not exist.
func notCardPM(h handlerFunc) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		if id := c.path["payment_method"]; strings.HasPrefix(id, kCard.prefix) && e.tables["cards"].byID[id] != nil {
			return nil, invalid("", "", "The emulator does not model changing a saved card (%s) through the Payment Methods API: use /v1/customers/{customer}/sources/%s.", id, id)
		}
		return h(e, c)
	}
}
