package emulator

// Changing a subscription's trial_end by POST /v1/subscriptions/{id}.
//
// Spec, trial_end on that endpoint: "This will always overwrite any
// trials that might apply via a subscribed plan [...] The special value
// `now` can be provided to end the customer's trial immediately. Can be at
// most two years from `billing_cycle_anchor`." Stripe's trials guide
// (docs.stripe.com/billing/subscriptions/trials): "When the trial ends
// [...] we generate an invoice [...] A new billing cycle also begins for
// the customer when the trial ends. To end a trial early, make an update
// subscription API call, setting the trial_end value to a new timestamp,
// or now to end immediately".
//
//   - trial_end=now on a trialing subscription ends the trial at the
//     request: status active, trial_end, billing_cycle_anchor and
//     current_period_start the request's time (on its clock), a period of
//     its price from there, and an invoice of that period, finalized and
//     charged at once as a reset of the billing cycle is (billUpdateNow:
//     "Stripe immediately attempts payment when a subscription's billing
//     cycle anchor is reset", billing-cycle; Stripe to Cashier's
//     maintainers, laravel/cashier-stripe#766: "an invoice was created
//     immediately when you passed trial_end: now"), so payment_behavior
//     applies as to any update billed at once, and a declining card or
//     none leaves it past_due with the invoice dunned. The invoice's
//     billing_reason is subscription_update, the spec's reason for an
//     invoice of an update ("A subscription was updated"; the natural end
//     on a clock is subscription_cycle, "advanced into a new period");
//     Stripe's docs found don't show the ended-early invoice itself. The
//     trial was free: nothing is credited. customer.subscription.trial_will_end
//     is sent too: it "Occurs three days before a subscription's trial
//     period is scheduled to end, or when a trial is ended immediately
//     (using trial_end=now)" (Stripe's event types).
//   - trial_end=<timestamp> on a trialing subscription moves the trial's
//     end, earlier or later: no invoice, the period and the billing cycle
//     anchor end there ("The billing_cycle_anchor will be updated to the
//     trial_end value", Stripe's later spec of the same parameter; seen
//     in stripe/stripe-ruby#804), and the trial ends there as any trial.
//   - a timestamp not in the future is refused as Stripe refuses it
//     (stripe/stripe-go#93: "Invalid timestamp: must be an integer Unix
//     timestamp in the future.", param trial_end), and one more than two
//     years ahead as well (stripe/stripe-ruby#804: "The maximum number of
//     trial period days is 730 (2 years).", counted from the request).
//
//   - trial_end=now on a subscription that is not trialing changes
//     nothing (Laravel Cashier sends it with every resume and swap of a
//     subscription not on trial).
//
// Not modelled, and refused with 400 on trial_end rather than guessed: a
// timestamp on a subscription that is not trialing (adding a trial to an
// active one, which Stripe's billing-cycle guide says credits the paid
// time as prorations and moves the anchor, without saying what becomes
// of the current period), and
// trial_end together with billing_cycle_anchor (which of the two sets
// the anchor, Stripe's docs for this API version don't say).

// maxTrialSeconds is the longest trial Stripe takes: 730 days.
const maxTrialSeconds = 730 * 86400

// trialChange is what an update's trial_end asks of a trialing
// subscription: end the trial now, or move its end to at; neither when
// there is no trial_end or it is the current one.
type trialChange struct {
	endNow bool
	at     int64
}

// trialChangeOf reads the request's trial_end for sub (old: as before the
// request) at now, the time on sub's clock, refusing before anything is
// stored what Stripe refuses and what is not modelled.
func trialChangeOf(c *reqCtx, old map[string]any, now int64) (trialChange, *apiError) {
	v, ok := c.params["trial_end"]
	if !ok || v == nil {
		return trialChange{}, nil
	}
	status := getStr(old, "status")
	notModelled := func(what string) *apiError {
		return invalid("", "trial_end", "The emulator does not model %s: it is refused rather than guessed.", what)
	}
	if c.params["billing_cycle_anchor"] != nil {
		return trialChange{}, notModelled("trial_end together with billing_cycle_anchor on an update")
	}
	if s, _ := v.(string); s == "now" {
		// With no trial to end, now changes nothing: Laravel Cashier's
		// resume() and swap() send trial_end=now on every subscription
		// not on trial (laravel/cashier-stripe, Subscription.php), which
		// Stripe takes.
		return trialChange{endNow: status == "trialing"}, nil
	}
	at, ok := toInt(v)
	if !ok {
		return trialChange{}, nil // validated against the spec already
	}
	if status == "trialing" && at == getInt(old, "trial_end") {
		return trialChange{}, nil
	}
	if at <= now {
		return trialChange{}, invalid("", "trial_end", "Invalid timestamp: must be an integer Unix timestamp in the future.")
	}
	if at-now > maxTrialSeconds {
		return trialChange{}, invalid("", "trial_end", "The maximum number of trial period days is 730 (2 years).")
	}
	if status != "trialing" {
		return trialChange{}, notModelled("adding a trial to a " + status + " subscription (its prorations and period)")
	}
	return trialChange{at: at}, nil
}

// applyTrialChange makes tc on sub, a trialing subscription, at c.now (on
// its clock), and returns the invoice billed at once (trial_end=now), or
// nil. The caller stores sub with its customer.subscription.updated.
func (e *Emulator) applyTrialChange(c *reqCtx, sub map[string]any, tc trialChange) map[string]any {
	switch {
	case tc.at > 0:
		sub["trial_end"], sub["billing_cycle_anchor"], sub["current_period_end"] = tc.at, tc.at, tc.at
		if getBool(sub, "cancel_at_period_end") {
			sub["cancel_at"] = tc.at
		}
		return nil
	case !tc.endNow:
		return nil
	}
	now, trialStart := c.now, getInt(sub, "current_period_start")
	sub["status"], sub["trial_end"] = "active", now
	sub["billing_cycle_anchor"], sub["current_period_start"] = now, now
	sub["current_period_end"] = periodEnd(now, e.subscriptionPrice(idOf(sub)))
	if getBool(sub, "cancel_at_period_end") {
		sub["cancel_at"] = sub["current_period_end"]
	}
	// The invoice's own period is the trial that ended, as at a natural
	// end (renewSubscription); its lines bill the new period in full.
	inv := e.draftSubscriptionInvoice(c, sub, "subscription_update", trialStart, now, true)
	inv = e.billUpdateNow(c, sub, inv)
	e.emit(c, "customer.subscription.trial_will_end", sub, nil)
	return inv
}
