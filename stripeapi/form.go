package stripeapi

import (
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/stripe/stripe-go/v76/form"
)

// Form lays params out as stripe-go's form encoder does for the same
// values: the keys of each hash in sorted order, each array's elements
// in index order. A plain sort of the keys would put items[10] before
// items[2]; Stripe reads an array from integer-indexed keys, and in what
// order it takes keys that come out of index order is not documented.
func Form(params url.Values) *form.Values {
	fv := &form.Values{}
	for _, k := range slices.SortedFunc(maps.Keys(params), compareKeys) {
		for _, v := range params[k] {
			fv.Add(k, v)
		}
	}
	return fv
}

// compareKeys orders bracketed keys part by part (a[b][0] is a, b, 0),
// array indices by number, so that the keys under one prefix stay
// together and come in the order stripe-go's encoder writes them.
func compareKeys(a, b string) int {
	pa, pb := keyParts(a), keyParts(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if c := comparePart(pa[i], pb[i]); c != 0 {
			return c
		}
	}
	return len(pa) - len(pb)
}

func keyParts(k string) []string {
	i := strings.IndexByte(k, '[')
	if i < 0 || !strings.HasSuffix(k, "]") {
		return []string{k}
	}
	return append([]string{k[:i]}, strings.Split(k[i+1:len(k)-1], "][")...)
}

// comparePart orders array indices (parts of digits only) by number,
// before every other part, which go as text. Comparing by number only
// when both parts are numbers made a cycle (9 < 10, 10 < 5a, 5a < 9):
// sorted with it, the keys of one hash could come out in no defined
// order, its elements' keys apart.
func comparePart(a, b string) int {
	da, db := isIndex(a), isIndex(b)
	switch {
	case da && db:
		// By number without parsing it (an index may not fit 64 bits);
		// 01 and 1 are the same number, and go as text.
		ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if c := len(ta) - len(tb); c != 0 {
			return c
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
	case da:
		return -1
	case db:
		return 1
	}
	return strings.Compare(a, b)
}

func isIndex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
