package emulator

import (
	"fmt"
	"testing"
	"time"
)

// A payment method's display_brand is spelled as the spec has it
// ("american_express, cartes_bancaires, diners_club, discover,
// eftpos_australia, interac, jcb, mastercard, union_pay, visa, or
// other"), not as card.brand ("amex, diners, …, unionpay, visa, or
// unknown").
func TestDisplayBrand(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &fuzzSession{t: t, e: e}
	for _, tc := range []struct{ card, brand, display string }{
		{"card[token]=tok_amex", "amex", "american_express"},
		{"card[token]=tok_diners", "diners", "diners_club"},
		{"card[token]=tok_unionpay", "unionpay", "union_pay"},
		{"card[token]=tok_mastercard", "mastercard", "mastercard"},
		{"card[number]=378282246310005&card[exp_month]=12&card[exp_year]=2040", "amex", "american_express"},
		// An IIN the emulator names no brand for.
		{"card[number]=9999999999999995&card[exp_month]=12&card[exp_year]=2040", "unknown", "other"},
	} {
		st, pm := s.do("POST", "/v1/payment_methods", "type=card&"+tc.card)
		if st != 200 {
			t.Fatalf("%s: %d %v", tc.card, st, pm)
		}
		card := pm["card"].(map[string]any)
		if card["brand"] != tc.brand || card["display_brand"] != tc.display {
			t.Errorf("%s: brand %v display_brand %v, want %s %s", tc.card, card["brand"], card["display_brand"], tc.brand, tc.display)
		}
	}
}

// A card made of a token for one charge without a customer (tokenCard)
// can't be charged again (it is no customer's card, and a card id without
// a customer is refused), so what pmCards and disputers hold for it goes
// once its charge is done with: declined, captured, or captured later.
// A workload charging tok_createDispute or a declining token over and
// over must not grow them. The declines and disputes still happen.
func TestTokenCardTablesDontGrow(t *testing.T) {
	e, err := New(Options{RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	s := &fuzzSession{t: t, e: e}
	const n = 50
	for i := 0; i < n; i++ {
		if st, b := s.do("POST", "/v1/charges", "amount=500&currency=usd&source=tok_visa_chargeDeclinedLostCard"); st != 402 ||
			b["error"].(map[string]any)["decline_code"] != "lost_card" {
			t.Fatalf("declining token: %d %v", st, b)
		}
		if st, b := s.do("POST", "/v1/charges", "amount=500&currency=usd&source=tok_createDispute"); st != 200 || b["disputed"] != true {
			t.Fatalf("dispute token: %d %v", st, b)
		}
	}
	// Authorized, then captured: the dispute comes with the capture.
	st, ch := s.do("POST", "/v1/charges", "amount=700&currency=usd&capture=false&source=tok_createDispute")
	if st != 200 || ch["disputed"] != false {
		t.Fatalf("uncaptured dispute token charge: %d %v", st, ch)
	}
	if st, b := s.do("POST", "/v1/charges/"+ch["id"].(string)+"/capture", ""); st != 200 || b["disputed"] != true {
		t.Fatalf("capture of a dispute token's charge: %d %v", st, b)
	}
	if len(e.pmCards) != 0 || len(e.disputers) != 0 {
		t.Errorf("after %d token charges: %d pmCards, %d disputers entries, want none", 2*n+1, len(e.pmCards), len(e.disputers))
	}
}

// A payment method made of a test token is that token's card, expiry
// included: a year on, as the card a token charge makes (numberCard) and
// pm_card_visa's, not the fixture's 8/2024, which has passed, so that a
// charge of it doesn't describe an expired card.
func TestTokenPaymentMethodExpiry(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &fuzzSession{t: t, e: e}
	year := float64(time.Now().Year() + 1)
	for _, tok := range []string{"tok_visa", "tok_amex", "tok_chargeCustomerFail"} {
		st, pm := s.do("POST", "/v1/payment_methods", "type=card&card[token]="+tok)
		if st != 200 {
			t.Fatalf("%s: %d %v", tok, st, pm)
		}
		if card := pm["card"].(map[string]any); card["exp_year"] != year {
			t.Errorf("payment method of %s: exp %v/%v, want a year on (%v)", tok, card["exp_month"], card["exp_year"], year)
		}
	}
	_, pm := s.do("POST", "/v1/payment_methods", "type=card&card[token]=tok_visa")
	st, pi := s.do("POST", "/v1/payment_intents", "amount=500&currency=usd&confirm=true&payment_method="+pm["id"].(string))
	if st != 200 {
		t.Fatalf("intent: %d %v", st, pi)
	}
	ch := e.load(kCharge, pi["latest_charge"].(string))
	if pc := ch["payment_method_details"].(map[string]any)["card"].(map[string]any); fmt.Sprint(pc["exp_year"]) != fmt.Sprint(year) {
		t.Errorf("charge of it describes exp_year %v, want %v", pc["exp_year"], year)
	}
}
