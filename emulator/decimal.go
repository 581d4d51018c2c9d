package emulator

import (
	"math"
	"math/big"
	"strings"
)

// Decimal amounts (unit_amount_decimal, amount_decimal), after
// docs.stripe.com/billing/subscriptions/decimal-amounts: a decimal in the
// currency's minor unit with at most 12 decimal places; "the integer
// unit_amount field is not populated if the object is created with a
// decimal value" that is no whole number; "Rounding occurs on the line
// item level of your invoices ... 0.05 * 30 = 1.5, which is then rounded
// up to 2 cents. If you have multiple line items, each will be rounded
// before summing up". Amounts are big.Rat so quantity × unit is exact
// before that one rounding.

// maxDecimalPlaces is Stripe's limit on a decimal amount's fraction.
const maxDecimalPlaces = 12

// parseDecimal parses a decimal amount as Stripe's params take it: an
// optional minus, digits, an optional fraction of at most 12 places. No
// exponents, "Inf" or fractions like "1/3", which big.Rat's SetString
// would take.
func parseDecimal(s string) (*big.Rat, bool) {
	intPart, frac, dot := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if intPart == "" && frac == "" || dot && frac == "" || len(frac) > maxDecimalPlaces {
		return nil, false
	}
	for _, part := range []string{intPart, frac} {
		for _, ch := range part {
			if ch < '0' || ch > '9' {
				return nil, false
			}
		}
	}
	// Far past any amount an int64 holds: a hostile param can't make the
	// emulator multiply huge numbers.
	if len(strings.TrimLeft(intPart, "0")) > 19 {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || new(big.Rat).Abs(r).Cmp(maxUnit) > 0 {
		// Amounts are int64: beyond it a line of one unit would wrap
		// (9223372036854775808 billed as a negative amount), and the
		// integer twin could not be filled.
		return nil, false
	}
	return r, true
}

// maxUnit is the largest decimal amount taken, that of the largest int64.
var maxUnit = new(big.Rat).SetInt64(math.MaxInt64)

// formatDecimal renders r as Stripe's decimal strings read: the integer
// part and the fraction without trailing zeros ("12.5", "0.05", "1500"),
// rounded to 12 places (halves away from zero) when r has more.
func formatDecimal(r *big.Rat) string {
	s := r.FloatString(maxDecimalPlaces) // rounds halves away from zero
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// unitOf is obj's unit amount: its decimal field when set (the exact
// amount), else its integer field; nil if neither is.
func unitOf(obj map[string]any, intField, decField string) *big.Rat {
	if d, ok := obj[decField].(string); ok && d != "" {
		if r, ok := parseDecimal(d); ok {
			return r
		}
	}
	if n, ok := toInt(obj[intField]); ok {
		return new(big.Rat).SetInt64(n)
	}
	return nil
}

// priceUnit is a price's unit amount, 0 for none (a tiered or custom
// amount price, which the emulator doesn't bill).
func priceUnit(price map[string]any) *big.Rat {
	if r := unitOf(price, "unit_amount", "unit_amount_decimal"); r != nil {
		return r
	}
	return new(big.Rat)
}

// lineAmount is qty × unit rounded to the minor unit, halves away from
// zero, as Stripe rounds a line item (the docs' 1.5 → 2).
func lineAmount(unit *big.Rat, qty int64) int64 {
	return roundRat(new(big.Rat).Mul(unit, new(big.Rat).SetInt64(qty)))
}

// setUnit sets obj's integer and decimal fields from unit as Stripe
// answers them: the decimal always, the integer only when unit is whole.
func setUnit(obj map[string]any, intField, decField string, unit *big.Rat) {
	obj[decField] = formatDecimal(unit)
	if unit.IsInt() && unit.Num().IsInt64() {
		obj[intField] = unit.Num().Int64()
	} else {
		obj[intField] = nil
	}
}

// exclusiveAmount refuses both of an integer amount param and its decimal
// twin ("Only one of unit_amount and unit_amount_decimal can be set",
// spec), prefix being where they sit ("", "price_data").
func exclusiveAmount(params map[string]any, intField, decField, prefix string) *apiError {
	_, hasInt := params[intField]
	d, _ := params[decField].(string)
	if !hasInt || d == "" {
		return nil
	}
	if prefix != "" {
		intField, decField = prefix+"["+intField+"]", prefix+"["+decField+"]"
	}
	return invalid("parameters_exclusive", decField, "You may only specify one of these parameters: %s, %s.", intField, decField)
}

// itemUnitString is an invoice item's unit amount as its line's
// unit_amount_excluding_tax shows it (a decimal string).
func itemUnitString(ii map[string]any) string {
	if u := unitOf(ii, "unit_amount", "unit_amount_decimal"); u != nil {
		return formatDecimal(u)
	}
	return "0"
}
