package emulator

// The customer's invoice credit balance (docs.stripe.com/billing/customer/balance):
// customer.balance, negative for a credit and positive for an amount
// owed, kept as a ledger of customer balance transactions, which are
// immutable but for their description and metadata.
//
//   - It changes with POST /v1/customers[/{id}] balance= (an `initial`
//     transaction for a new customer, "the starting value of the customer
//     invoice balance when a customer is created using the API with a
//     non-zero invoice balance"; an `adjustment` of the difference for an
//     update, the docs being silent on its type), with POST
//     /v1/customers/{customer}/balance_transactions (an `adjustment`,
//     "the only type of transaction that you can create using API
//     integrations"), when an invoice is finalized and when it is voided.
//   - "The invoice balance automatically applies toward the next invoice
//     finalized to a customer" and only then (spec, customer.balance:
//     "This balance is only taken into account after invoices finalize"):
//     finalizing sets the invoice's starting_balance (the customer's
//     balance then), amount_due = max(0, total + starting_balance) and
//     ending_balance = min(0, total + starting_balance), and the customer's
//     balance becomes ending_balance, an `applied_to_invoice` transaction
//     of the difference linked to the invoice. A total below zero (a
//     downgrade's prorations) is thereby credited to the balance: the
//     docs list "Prorations from downgrading a subscription can indirectly
//     create credits to reduce the amount due on the next invoice" without
//     naming that transaction's type; applied_to_invoice ("Traces the
//     application of credit against a linked Invoice") is the emulator's
//     reading.
//   - Until then an invoice shows the balance as it is now (spec,
//     starting_balance: "If the invoice has not been finalized yet, this
//     will be the current customer balance"; ending_balance is null): a
//     draft follows its customer (followCustomer) and so does the
//     upcoming invoice ("This preview reflects [...] any existing
//     customer credit balance", docs.stripe.com/billing/invoices/subscription).
//   - Voiding an invoice gives back what it applied, an
//     `unapplied_from_invoice` transaction ("Paired with an earlier
//     applied_to_invoice transaction"; changelog 2019-12-03, "Customer
//     balances applied to all invoices are now debited or credited back
//     to the customer when voided").
//
// Every change of the balance is a customer.updated. Stripe sends no
// event for customer balance transactions. Not modelled: invoice_too_small
// and invoice_too_large (no minimum or maximum charge), credit notes'
// credit to the balance, invoice_credit_balance (multi-currency
// balances), cash balances. The balance is in the customer's currency (usd
// while the customer has none, as the emulator's invoices are) and is
// applied only to invoices in that currency.

var kBalanceTxn = addKind(&kind{table: "customer_balance_transactions", schema: "customer_balance_transaction", prefix: "cbtxn_",
	idParam: "transaction", keys: []string{"customer", "invoice"}, what: "customer balance transaction"})

func init() {
	kBalanceTxn.create = func(e *Emulator, c *reqCtx, obj map[string]any) *apiError {
		cu := e.load(kCustomer, c.path["customer"])
		cur := getStr(obj, "currency")
		if have := getStr(cu, "currency"); have != "" && have != cur {
			// Stripe documents no answer for this; the message is the
			// emulator's.
			return invalid("", "currency", "The currency of a customer balance transaction (%s) must be the customer's currency (%s).", cur, have)
		}
		amt := getInt(obj, "amount")
		fillBalanceTxn(obj, idOf(cu), cur, amt, getInt(cu, "balance")+amt, "adjustment", "")
		if getStr(cu, "currency") == "" {
			// Spec, currency: "If the customer's currency is not set, it
			// will be updated to this value."
			cu["currency"] = cur
		}
		e.setBalance(c, cu, getInt(obj, "ending_balance"))
		return nil
	}
	customerExists := func(h handlerFunc) handlerFunc {
		return func(e *Emulator, c *reqCtx) (any, *apiError) {
			if e.tables["customers"].byID[c.path["customer"]] == nil {
				return nil, notFound("customer", "customer", c.path["customer"])
			}
			return h(e, c)
		}
	}
	handle("GET", "/v1/customers/{customer}/balance_transactions", customerExists(func(e *Emulator, c *reqCtx) (any, *apiError) {
		c.params["customer"] = c.path["customer"]
		return genericList(kBalanceTxn, nil)(e, c)
	}))
	handle("POST", "/v1/customers/{customer}/balance_transactions", customerExists(genericCreate(kBalanceTxn)))
	// A transaction is found under its own customer only.
	own := func(e *Emulator, c *reqCtx) map[string]any {
		obj := e.load(kBalanceTxn, c.path["transaction"])
		if obj == nil || getStr(obj, "customer") != c.path["customer"] {
			return nil
		}
		return obj
	}
	handle("GET", "/v1/customers/{customer}/balance_transactions/{transaction}", customerExists(func(e *Emulator, c *reqCtx) (any, *apiError) {
		if own(e, c) == nil {
			return nil, notFound("transaction", kBalanceTxn.what, c.path["transaction"])
		}
		return e.render(kBalanceTxn, e.tables[kBalanceTxn.table].byID[c.path["transaction"]].raw, c)
	}))
	// Only description and metadata can change (the spec's parameters);
	// Stripe has no event for it.
	handle("POST", "/v1/customers/{customer}/balance_transactions/{transaction}", customerExists(func(e *Emulator, c *reqCtx) (any, *apiError) {
		obj := own(e, c)
		if obj == nil {
			return nil, notFound("transaction", kBalanceTxn.what, c.path["transaction"])
		}
		return e.updateObject(kBalanceTxn, c, obj)
	}))
}

// fillBalanceTxn makes obj the transaction of amount on customer cus's
// balance (in currency cur) that leaves it at ending, of type typ and
// invoice inv ("" for none).
func fillBalanceTxn(obj map[string]any, cus, cur string, amount, ending int64, typ, inv string) {
	obj["customer"], obj["currency"] = cus, cur
	obj["amount"], obj["ending_balance"] = amount, ending
	obj["type"] = typ
	obj["invoice"], obj["credit_note"] = nil, nil
	if inv != "" {
		obj["invoice"] = inv
	}
	if obj["metadata"] == nil {
		obj["metadata"] = map[string]any{}
	}
}

// recordBalance stores the transaction of amount that took customer cu's
// balance to where it is now, at c.now, or for a customer on a test clock
// at the clock's time when c is a request on the emulator's clock (an
// update of the customer, a void): the ledger is listed by created, and
// its applied_to_invoice transactions, made as a clock's invoices are
// finalized, are on the clock's time.
func (e *Emulator) recordBalance(c *reqCtx, cu map[string]any, amount int64, typ, inv string) {
	at := c.now
	if c.now == c.wallTime() {
		if ck := e.load(kClock, getStr(cu, "test_clock")); ck != nil {
			at = getInt(ck, "frozen_time")
		}
	}
	t := e.newObject(kBalanceTxn, at, getBool(cu, "livemode"))
	t["description"] = nil
	fillBalanceTxn(t, idOf(cu), strOr(cu["currency"], "usd"), amount, getInt(cu, "balance"), typ, inv)
	e.store(kBalanceTxn, t)
}

// moveBalance changes customer cus's balance by amount with a transaction
// of type typ (of invoice inv, if any): customer.updated, and its drafts
// follow.
func (e *Emulator) moveBalance(c *reqCtx, cus string, amount int64, typ, inv string) {
	cu := e.load(kCustomer, cus)
	if cu == nil || amount == 0 {
		return
	}
	e.setBalance(c, cu, getInt(cu, "balance")+amount)
	e.recordBalance(c, cu, amount, typ, inv)
}

// setBalance stores customer cu with balance b (customer.updated when
// anything changed) and shows it on its drafts.
func (e *Emulator) setBalance(c *reqCtx, cu map[string]any, b int64) {
	old := e.load(kCustomer, idOf(cu))
	cu["balance"] = b
	e.save(c, kCustomer, cu, old, "customer.updated")
	e.followCustomer(cu)
}

// applyBalance applies the customer's balance to inv, being finalized
// (see the top of this file): starting_balance, amount_due,
// amount_remaining and ending_balance. It returns what the customer's
// balance changes by, for moveBalance once the invoice is stored.
func (e *Emulator) applyBalance(inv map[string]any) int64 {
	start := int64(0)
	if cu := e.load(kCustomer, getStr(inv, "customer")); cu != nil && strOr(cu["currency"], "usd") == getStr(inv, "currency") {
		start = getInt(cu, "balance")
	}
	inv["starting_balance"] = start
	setDue(inv)
	end := min(getInt(inv, "total")+start, 0)
	inv["ending_balance"] = end
	return end - start
}

// appliedBalance is what finalizing inv did to its customer's balance
// (0 for an invoice not finalized).
func appliedBalance(inv map[string]any) int64 {
	end, ok := toInt(inv["ending_balance"])
	if !ok {
		return 0
	}
	return end - getInt(inv, "starting_balance")
}

// setDue sets amount_due and amount_remaining from the invoice's total
// and starting_balance. Stripe never asks a customer for a negative
// amount: "if there is account credit that can be applied to the
// invoice, the amount_due may be 0. If there is a positive
// starting_balance for the invoice (the customer owes money), the
// amount_due will also take that into account" (spec, amount_due); what
// is left of a negative sum goes to the balance at finalization.
func setDue(inv map[string]any) {
	due := max(getInt(inv, "total")+getInt(inv, "starting_balance"), 0)
	inv["amount_due"] = due
	inv["amount_remaining"] = max(due-getInt(inv, "amount_paid"), 0)
}
