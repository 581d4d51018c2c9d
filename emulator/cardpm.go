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

// cardPMWrites serves the Payment Methods API's writes (update, attach,
// detach) on a saved card's id with card, as Stripe does: its
// compatibility view "is a different view of the same underlying object"
// (see the top of this file), so they change that card; other ids go to h.
func cardPMWrites(h, card handlerFunc) handlerFunc {
	return func(e *Emulator, c *reqCtx) (any, *apiError) {
		if id := c.path["payment_method"]; strings.HasPrefix(id, kCard.prefix) && e.tables["cards"].byID[id] != nil {
			return card(e, c)
		}
		return h(e, c)
	}
}

// cardAddressFields maps billing_details[address] of a payment method
// update to the card's fields (cardPMView's mapping, reversed).
var cardAddressFields = map[string]string{
	"city": "address_city", "country": "address_country", "line1": "address_line1",
	"line2": "address_line2", "postal_code": "address_zip", "state": "address_state",
}

// updateCardPM serves POST /v1/payment_methods/{card_…}: the update is
// made on the card, as through POST /v1/customers/{customer}/sources/{id}
// (updateSource), so the Sources API sees it "and vice versa":
// billing_details' name and address become the card's name and
// address_*, card[exp_month] and card[exp_year] its expiry, metadata its
// metadata; the event is the card's customer.source.updated (the Payment
// Methods API's payment_method.updated is not sent for it: no evidence
// Stripe does). The card object has no email, phone or preferred network,
// so billing_details[email], [phone] and card[networks][preferred] are
// refused with 400 rather than dropped (their unset, "", is taken: there
// is nothing to unset).
func updateCardPM(e *Emulator, c *reqCtx) (any, *apiError) {
	card := e.load(kCard, c.path["payment_method"])
	if card == nil {
		return nil, notFound("payment_method", "PaymentMethod", c.path["payment_method"])
	}
	for k := range c.params {
		switch k {
		case "billing_details", "card", "metadata", "expand":
		default:
			return nil, invalid("", k, "The emulator models a saved card's update through the Payment Methods API as the card's (billing_details, card[exp_month], card[exp_year], metadata): %s is refused rather than ignored.", k)
		}
	}
	old := deepCopy(card).(map[string]any)
	if bd, ok := c.params["billing_details"].(map[string]any); ok {
		for k, v := range bd {
			switch k {
			case "name":
				card["name"] = unsetOr(v)
			case "address":
				switch a := v.(type) {
				case string: // "": unset the whole address
					for _, f := range cardAddressFields {
						card[f] = nil
					}
				case map[string]any:
					for ak, av := range a {
						f, ok := cardAddressFields[ak]
						if !ok {
							return nil, invalid("", "billing_details[address]["+ak+"]", "Received unknown parameter: billing_details[address][%s]", ak)
						}
						card[f] = unsetOr(av)
					}
				}
			default: // email, phone
				if s, _ := v.(string); s != "" {
					return nil, invalid("", "billing_details["+k+"]", "The emulator keeps a saved card's billing details on the card object, which has no %s: billing_details[%s] is refused rather than ignored.", k, k)
				}
			}
		}
	}
	if pc, ok := c.params["card"].(map[string]any); ok {
		for k, v := range pc {
			switch k {
			case "exp_month", "exp_year":
				n, ok := toInt(v)
				if !ok {
					return nil, invalid("parameter_invalid_integer", "card["+k+"]", "Invalid integer: %v", v)
				}
				card[k] = n
			default: // networks[preferred]
				if nw, _ := v.(map[string]any); nw != nil && nw["preferred"] != nil && nw["preferred"] != "" {
					return nil, invalid("", "card["+k+"]", "The emulator models no preferred network for a saved card: card[%s] is refused rather than ignored.", k)
				}
			}
		}
	}
	if m := getInt(card, "exp_month"); m < 1 || m > 12 {
		return nil, &apiError{status: 402, Type: "card_error", Code: "invalid_expiry_month", Param: "exp_month", Message: "Your card's expiration month is invalid."}
	}
	if md, ok := c.params["metadata"]; ok {
		card["metadata"] = mergeMetadata(card["metadata"], md)
		if ae := checkMetadataCount(card); ae != nil {
			return nil, ae
		}
	}
	r := e.save(c, kCard, card, old, "customer.source.updated")
	return e.render(kPM, e.cardPMRecord(r).raw, c)
}

// unsetOr is a string parameter's value for a field, "" (Stripe's unset)
// as null.
func unsetOr(v any) any {
	if s, ok := v.(string); ok && s == "" {
		return nil
	}
	return v
}

// attachCardPM serves POST /v1/payment_methods/{card_…}/attach. A saved
// card always has its customer: attaching it to that customer again
// changes nothing (as for a payment method, attachPM), to another one is
// Stripe's refusal of a payment method attached elsewhere (attachable).
func attachCardPM(e *Emulator, c *reqCtx) (any, *apiError) {
	cus, _ := c.params["customer"].(string)
	if ae := e.mustExist("customers", "customer", cus); ae != nil {
		return nil, ae
	}
	r := e.tables["cards"].byID[c.path["payment_method"]]
	if r.keys[0] != cus {
		return nil, invalid("", "", "The payment method you provided has already been attached to a customer.")
	}
	return e.render(kPM, e.cardPMRecord(r).raw, c)
}

// detachCardPM serves POST /v1/payment_methods/{card_…}/detach: Stripe
// deletes the card (a Stripe engineer on dj-stripe/dj-stripe#967: "the
// root cause is the card being deleted when detached"; retrieving it
// afterwards is "No such PaymentMethod: 'card_…'", dj-stripe#1005,
// mozilla/fxa#10409), as DELETE /v1/customers/{customer}/sources/{id}
// does (customer.source.deleted, the default handed over with
// customer.updated), and sends payment_method.detached with the card's
// id (dj-stripe/dj-stripe#1013 treats that event as the deletion,
// mozilla/fxa#12303). The answer is the payment method as detached:
// the view, customer null.
func detachCardPM(e *Emulator, c *reqCtx) (any, *apiError) {
	card := e.load(kCard, c.path["payment_method"])
	cus := e.load(kCustomer, getStr(card, "customer"))
	if card == nil || cus == nil {
		return nil, notFound("payment_method", "PaymentMethod", c.path["payment_method"])
	}
	view := e.cardPMView(card)
	view["customer"] = nil
	e.removeCard(c, card, false)
	e.emit(c, "payment_method.detached", view, nil)
	e.handOverDefault(c, cus, idOf(card))
	raw, err := marshal(view)
	if err != nil {
		return nil, &apiError{status: 500, Type: "api_error", Message: err.Error()}
	}
	return e.render(kPM, raw, c)
}
