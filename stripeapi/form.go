package stripeapi

import (
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
	// Each key is split into its parts once, not at every comparison: a
	// sort splitting both keys per comparison took seconds for a few
	// hundred thousand keys (a large metadata hash, a long items array).
	keys := make([]splitKey, 0, len(params))
	for k := range params {
		keys = append(keys, splitKey{k, keyParts(k)})
	}
	slices.SortFunc(keys, func(a, b splitKey) int { return compareParts(a.parts, b.parts) })
	fv := &form.Values{}
	for _, k := range keys {
		for _, v := range params[k.key] {
			fv.Add(k.key, v)
		}
	}
	return fv
}

type splitKey struct {
	key   string
	parts []string
}

// compareKeys orders bracketed keys part by part (a[b][0] is a, b, 0),
// array indices by number, so that the keys under one prefix stay
// together and come in the order stripe-go's encoder writes them.
func compareKeys(a, b string) int {
	return compareParts(keyParts(a), keyParts(b))
}

func compareParts(pa, pb []string) int {
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
	if a == b {
		return 0
	}
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
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
