package emulator

// KeyInFlight reports whether a POST with idempotency key key, made with
// API key apiKey, is being served: tests wait for it instead of guessing
// how long the request takes to arrive.
func KeyInFlight(e *Emulator, apiKey, key string) bool {
	e.idemMu.Lock()
	defer e.idemMu.Unlock()
	return e.inflight[apiKey+"\x00"+key]
}

// DeclineLater makes saved payment method pm decline from now on as test
// payment method testPM does (pm_card_visa_chargeDeclinedLostCard, ...):
// a card the issuer reports lost or stolen after it was saved. Stripe's
// test cards that decline so can't be attached, so tests of what a
// renewal does with such a card (hardDeclined) start from one that could.
func DeclineLater(e *Emulator, pm, testPM string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pmCards[pm] = declineByID[testPM]
}
