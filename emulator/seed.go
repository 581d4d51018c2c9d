package emulator

import (
	"fmt"
	"math/rand"
	"runtime/debug"
	"slices"
	"time"
)

// Seeding replays API calls internally (the same handlers a client reaches,
// so seeded objects are exactly what the API would have produced) with the
// clock set to each object's chosen `created`. Seeded history produces no
// events: events start with the first change after seeding, as for an
// account whose older events are past retention.

// Distributions of seeded `created` times.
const (
	DistUniform    = "uniform"     // spread over the years since 2011
	DistSpike      = "spike"       // 90% of customers within three days
	DistSameSecond = "same-second" // everything in one second
)

var (
	seedStart = time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	// Customers are created before seedEnd and their follow-up objects
	// within ~1.5 years, so everything lies in the past and seeding is
	// deterministic (the clamp to "now" in later never bites).
	seedEnd   = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	seedSpike = time.Date(2023, 11, 3, 0, 0, 0, 0, time.UTC).Unix()
)

// Seed adds a deterministic, connected dataset around n customers. The same
// n and distribution give the same objects, ids and timestamps.
func (e *Emulator) Seed(n int, distribution string) error {
	return e.seed(n, distribution, false)
}

// SeedCustomers adds n customers and nothing else (no payment methods,
// subscriptions or invoices): the large, flat dataset of a memory or
// throughput measurement (1M customers fit in about 2 GB).
func (e *Emulator) SeedCustomers(n int, distribution string) error {
	return e.seed(n, distribution, true)
}

func (e *Emulator) seed(n int, distribution string, customersOnly bool) error {
	if n < 0 {
		return fmt.Errorf("emulator: seed: negative customer count %d", n)
	}
	if distribution == "" {
		distribution = DistUniform
	}
	switch distribution {
	case DistUniform, DistSpike, DistSameSecond:
	default:
		return fmt.Errorf("emulator: seed: unknown distribution %q (want uniform, spike or same-second)", distribution)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &seeder{e: e, rng: rand.New(rand.NewSource(int64(n)*7919 + int64(len(distribution)))), dist: distribution}
	e.idRand = rand.New(rand.NewSource(int64(n) + 1))
	e.seeding = true
	// Seeding allocates a lot of short-lived maps around a growing live
	// heap; collecting less often saves a quarter of its time (20k
	// customers: 11 s instead of 15 s CPU) for a higher peak (1.3 GB RSS
	// instead of 1.0). Past ~650k objects memory matters more.
	if n <= 50000 {
		defer debug.SetGCPercent(debug.SetGCPercent(200))
	}
	for _, t := range e.tables {
		t.sorted = false
	}
	defer func() {
		e.seeding = false
		for _, t := range e.tables {
			t.finishBulk()
		}
	}()
	if customersOnly {
		return s.customers(n)
	}
	return s.run(n)
}

// customers creates n bare customers.
func (s *seeder) customers(n int) error {
	for i := 0; i < n && s.err == nil; i++ {
		s.call(s.when(), "POST", "/v1/customers", nil, map[string]any{"email": fmt.Sprintf("customer%d@example.com", i),
			"name": fmt.Sprintf("Customer %d", i), "metadata": map[string]any{"seed": fmt.Sprint(i)}})
	}
	return s.err
}

type seeder struct {
	e        *Emulator
	rng      *rand.Rand
	dist     string
	err      error
	declines bool // card errors are expected (seeding declined payments)
}

// when picks a customer's base time.
func (s *seeder) when() int64 {
	end := min(seedEnd, time.Now().Unix()-86400)
	switch s.dist {
	case DistSameSecond:
		return seedSpike
	case DistSpike:
		if s.rng.Intn(10) < 9 {
			return seedSpike + s.rng.Int63n(3*86400)
		}
	}
	return seedStart + s.rng.Int63n(end-seedStart)
}

// later is a time after t (same second under same-second).
func (s *seeder) later(t int64, maxDelta int64) int64 {
	switch s.dist {
	case DistSameSecond:
		return t
	case DistSpike:
		// Keep the spike a spike: follow-up objects land within a day.
		maxDelta = min(maxDelta, 86400)
	}
	// Never in the future: a created after "now" would break time-sliced
	// backfills that stop at the present.
	return min(t+s.rng.Int63n(maxDelta+1), max(t, time.Now().Unix()-60))
}

func (s *seeder) call(now int64, verb, path string, pathParams map[string]string, params map[string]any) map[string]any {
	if s.err != nil {
		return nil
	}
	h := handlers[verb+" "+path]
	if h == nil {
		s.err = fmt.Errorf("emulator: seed: no handler for %s %s", verb, path)
		return nil
	}
	if params == nil {
		params = map[string]any{}
	}
	c := &reqCtx{route: &route{verb: verb, path: path}, path: pathParams, params: params, now: now}
	res, ae := h(s.e, c)
	if ae != nil {
		if ae.Type == "card_error" && s.declines {
			return nil
		}
		s.err = fmt.Errorf("emulator: seed: %s %s: %s", verb, path, ae.Message)
		return nil
	}
	if c.result != nil {
		return c.result
	}
	switch x := res.(type) {
	case map[string]any:
		return x
	case []byte:
		m, err := decodeObject(x)
		if err != nil {
			s.err = err
		}
		return m
	}
	return nil
}

func (s *seeder) run(n int) error {
	t0 := s.when()
	if s.dist == DistUniform {
		t0 = seedStart
	}
	// Catalog.
	nProducts := max(5, n/100)
	var recurring, oneTime []string
	// byInterval[k] lists the recurring prices of interval k (month,
	// year, week): recurring[i] is byInterval[i%3][i/3].
	var byInterval [3][]string
	for i := 0; i < nProducts; i++ {
		pt := s.later(t0, 86400)
		p := s.call(pt, "POST", "/v1/products", nil, map[string]any{"name": fmt.Sprintf("Product %d", i), "metadata": map[string]any{"seed": fmt.Sprint(i)}})
		if p == nil {
			return s.err
		}
		iv := []string{"month", "year", "week"}[i%3]
		pr := s.call(pt, "POST", "/v1/prices", nil, map[string]any{"product": idOf(p), "currency": "usd", "unit_amount": 500 + 100*(i%20),
			"recurring": map[string]any{"interval": iv}})
		recurring = append(recurring, idOf(pr))
		byInterval[i%3] = append(byInterval[i%3], idOf(pr))
		po := s.call(pt, "POST", "/v1/prices", nil, map[string]any{"product": idOf(p), "currency": "usd", "unit_amount": 1000 + 7*i})
		oneTime = append(oneTime, idOf(po))
	}
	for i := 0; i < 5; i++ {
		s.call(s.later(t0, 86400), "POST", "/v1/plans", nil, map[string]any{"currency": "usd", "interval": "month", "amount": 900 + i, "product": map[string]any{"name": fmt.Sprintf("Plan product %d", i)}})
		s.call(s.later(t0, 86400), "POST", "/v1/tax_rates", nil, map[string]any{"display_name": "VAT", "inclusive": i%2 == 0, "percentage": float64(5 + i)})
	}
	for i := 0; i < max(3, n/200); i++ {
		cp := s.call(s.later(t0, 86400), "POST", "/v1/coupons", nil, map[string]any{"percent_off": float64(5 + i%50), "duration": "once"})
		s.call(s.later(t0, 86400), "POST", "/v1/promotion_codes", nil, map[string]any{"coupon": idOf(cp), "code": fmt.Sprintf("SEED%d", i)})
	}
	if s.err != nil {
		return s.err
	}

	var paidInvoices []string
	for i := 0; i < n && s.err == nil; i++ {
		ct := s.when()
		// A card, attached at creation; most customers make it their
		// invoice default.
		pm := s.call(ct, "POST", "/v1/payment_methods", nil, map[string]any{"type": "card"})
		if pm == nil {
			break
		}
		cp := map[string]any{"email": fmt.Sprintf("customer%d@example.com", i), "name": fmt.Sprintf("Customer %d", i),
			"metadata": map[string]any{"seed": fmt.Sprint(i)}, "payment_method": idOf(pm)}
		if s.rng.Intn(10) < 9 {
			cp["invoice_settings"] = map[string]any{"default_payment_method": idOf(pm)}
		}
		cu := s.call(ct, "POST", "/v1/customers", nil, cp)
		if cu == nil {
			break
		}
		cid := idOf(cu)
		if s.rng.Intn(5) == 0 {
			s.call(s.later(ct, 86400), "POST", "/v1/customers/{customer}/tax_ids", map[string]string{"customer": cid}, map[string]any{"type": "eu_vat", "value": fmt.Sprintf("DE%09d", i)})
		}
		if s.rng.Intn(10) < 7 {
			st := s.later(ct, 7*86400)
			// The items share their first one's interval: Stripe refuses
			// a subscription of mixed billing periods (mixedItems). The
			// first price still goes round the catalog, so every
			// interval has subscriptions.
			first := i % len(recurring)
			same := byInterval[first%3]
			var items []any
			for j := 0; j <= s.rng.Intn(3); j++ {
				q := 1 + s.rng.Intn(3) // drawn regardless, as before: later draws stay put
				if j < len(same) {     // each price once, as Stripe takes it
					items = append(items, map[string]any{"price": same[(first/3+j)%len(same)], "quantity": q})
				}
			}
			p := map[string]any{"customer": cid, "items": items}
			if s.rng.Intn(10) == 0 {
				p["trial_period_days"] = 14
			}
			sub := s.call(st, "POST", "/v1/subscriptions", nil, p)
			if sub == nil {
				break
			}
			if inv := getStr(sub, "latest_invoice"); inv != "" {
				paidInvoices = append(paidInvoices, inv)
			}
			// Renewals.
			for r := 0; r < s.rng.Intn(3); r++ {
				rt := s.later(st, 365*86400)
				s.e.seqRenew(s, rt, idOf(sub))
			}
			if s.rng.Intn(10) == 0 {
				s.call(s.later(st, 200*86400), "DELETE", "/v1/subscriptions/{subscription_exposed_id}", map[string]string{"subscription_exposed_id": idOf(sub)}, nil)
			} else if i%50 == 0 {
				s.call(s.later(st, 86400), "POST", "/v1/subscription_schedules", nil, map[string]any{"from_subscription": idOf(sub)})
			}
		}
		if s.rng.Intn(5) == 0 {
			s.call(s.later(ct, 30*86400), "POST", "/v1/invoiceitems", nil, map[string]any{"customer": cid, "price": oneTime[i%len(oneTime)]})
		}
		if s.rng.Intn(10) < 3 {
			s.call(s.later(ct, 30*86400), "POST", "/v1/payment_intents", nil, map[string]any{"amount": 1000 + s.rng.Intn(9000), "currency": "usd",
				"customer": cid, "payment_method": idOf(pm), "confirm": true})
		}
		if i%50 == 25 {
			// A declined payment: failed charge, intent with last_payment_error.
			pt := s.later(ct, 30*86400)
			pi := s.call(pt, "POST", "/v1/payment_intents", nil, map[string]any{"amount": 4200, "currency": "usd", "customer": cid})
			s.declines = true
			s.call(pt, "POST", "/v1/payment_intents/{intent}/confirm", map[string]string{"intent": idOf(pi)}, map[string]any{"payment_method": "pm_card_chargeDeclined"})
			s.declines = false
		}
		if s.rng.Intn(4) == 0 {
			s.call(s.later(ct, 30*86400), "POST", "/v1/checkout/sessions", nil, map[string]any{"mode": "payment", "customer": cid,
				"success_url": "https://example.com/ok", "line_items": []any{map[string]any{"price": oneTime[i%len(oneTime)], "quantity": 1}}})
		}
		if s.rng.Intn(5) == 0 {
			s.call(s.later(ct, 30*86400), "POST", "/v1/setup_intents", nil, map[string]any{"customer": cid})
		}
		if i < 3 {
			// Invoices with many lines: >100 (250, 120) and >10 (12).
			lines := []int{250, 120, 12}[i]
			it := s.later(ct, 86400)
			inv := s.call(it, "POST", "/v1/invoices", nil, map[string]any{"customer": cid})
			for l := 0; l < lines; l++ {
				s.call(it, "POST", "/v1/invoiceitems", nil, map[string]any{"customer": cid, "invoice": idOf(inv), "price": oneTime[l%len(oneTime)]})
			}
			s.call(it, "POST", "/v1/invoices/{invoice}/pay", map[string]string{"invoice": idOf(inv)}, map[string]any{"payment_method": idOf(pm)})
		}
		if i%20 == 12 {
			// A credit on the customer's balance for its next invoice,
			// last: the rest of the customer's history is as without it.
			// At ct, drawing nothing from rng, which would change every
			// later customer.
			s.call(ct, "POST", "/v1/customers/{customer}/balance_transactions", map[string]string{"customer": cid},
				map[string]any{"amount": -500, "currency": "usd", "description": "Seeded credit"})
		}
		if is, _ := cu["invoice_settings"].(map[string]any); i%20 == 17 && getStr(is, "default_payment_method") != "" {
			// A card saved the legacy way, the customer's default_source
			// (sources.go). Last and drawing nothing from rng, as the
			// credit above, and only where the invoice default payment
			// method comes before it, so every payment is as without it.
			s.call(ct, "POST", "/v1/customers/{customer}/sources", map[string]string{"customer": cid}, map[string]any{"source": "tok_visa"})
		}
	}
	if s.err != nil {
		return s.err
	}
	// Refunds, disputes, credit notes, payouts.
	for i, inv := range paidInvoices {
		if i%20 == 0 {
			io := s.e.load(kInvoice, inv)
			if io != nil && getInt(io, "total") > 0 && (getStr(io, "status") == "paid" || getStr(io, "status") == "open") {
				s.call(s.later(getInt(io, "created"), 86400), "POST", "/v1/credit_notes", nil, map[string]any{"invoice": inv, "amount": min(100, getInt(io, "total"))})
			}
		}
	}
	var charges []string
	for _, r := range s.e.tables["charges"].ordered {
		charges = append(charges, r.id)
	}
	slices.Sort(charges) // map-free, insertion-independent order keeps seeding deterministic
	for i, ch := range charges {
		if i%10 != 0 && i%50 != 7 {
			continue
		}
		c := s.e.load(kCharge, ch)
		if c == nil || getStr(c, "status") != "succeeded" {
			// A declined charge (i%50 == 25) can be neither refunded nor
			// disputed; which charges the picks meet depends on the ids.
			continue
		}
		if i%10 == 0 {
			s.call(s.later(getInt(c, "created"), 86400), "POST", "/v1/refunds", nil, map[string]any{"charge": ch, "amount": max(1, getInt(c, "amount")/2)})
		} else {
			s.e.makeDispute(&reqCtx{now: s.later(getInt(c, "created"), 86400)}, c)
		}
	}
	for i := 0; i < max(1, n/20); i++ {
		s.call(s.when(), "POST", "/v1/payouts", nil, map[string]any{"amount": 10000 + i, "currency": "usd"})
	}
	return s.err
}

// seqRenew bills a subscription period again (a renewal invoice).
func (e *Emulator) seqRenew(s *seeder, at int64, subID string) {
	sub := e.load(kSub, subID)
	if sub == nil || getStr(sub, "status") == "canceled" {
		return
	}
	c := &reqCtx{now: at}
	inv := e.subscriptionInvoice(c, sub, "subscription_cycle")
	sub["latest_invoice"] = idOf(inv)
	e.store(kSub, sub)
}
