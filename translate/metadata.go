package translate

import (
	"maps"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// Stripe's metadata limits (docs.stripe.com/api/metadata): at most 50
// keys per object, keys of at most 40 characters without square
// brackets, values of at most 500 characters. Stripe refuses a row past
// them only when its call is made, after the calls of the statement's
// earlier rows; Build refuses the statement before any call instead.
const (
	maxMetadataKeys     = 50
	maxMetadataKeyLen   = 40
	maxMetadataValueLen = 500
)

// metadataHash is what one call's form sets in one metadata hash.
type metadataHash struct {
	cleared bool              // the hash itself sent as "" (all its keys removed)
	keys    map[string]string // key → value; "" removes the key
}

// metadataHashes groups the form keys of params that are in a metadata
// hash (metadata[k], items[0][metadata][k]) by the hash's form name. A
// metadata value is a string, so the first hash named metadata on a
// key's path is the one it is in, whatever the key itself is.
func metadataHashes(params url.Values) map[string]*metadataHash {
	var out map[string]*metadataHash
	hash := func(name string) *metadataHash {
		if out == nil {
			out = map[string]*metadataHash{}
		}
		h := out[name]
		if h == nil {
			h = &metadataHash{keys: map[string]string{}}
			out[name] = h
		}
		return h
	}
	for k, vs := range params {
		if len(vs) == 0 {
			continue
		}
		v := vs[len(vs)-1]
		if isMetadata(k) {
			if v == "" {
				hash(k).cleared = true
			}
			continue
		}
		name, key, ok := metadataKey(k)
		if ok {
			hash(name).keys[key] = v
		}
	}
	return out
}

// metadataKey splits a form key in a metadata hash into the hash's name
// and the metadata key.
func metadataKey(k string) (hash, key string, ok bool) {
	if !strings.HasSuffix(k, "]") {
		return "", "", false
	}
	if rest, found := strings.CutPrefix(k, "metadata["); found {
		return "metadata", rest[:len(rest)-1], true
	}
	if i := strings.Index(k, "[metadata]["); i >= 0 {
		end := i + len("[metadata]")
		return k[:end], k[end+1 : len(k)-1], true
	}
	return "", "", false
}

// checkMetadataLimits refuses a call whose metadata Stripe would refuse.
// stored is what the synced row holds in its metadata column (an
// update): Stripe merges an update's metadata[k] into the object's
// metadata, "" removing a key, so the 50 keys are counted on the
// result. Where nothing is known of what Stripe holds (another hash, an
// item's), only the keys the call sets are counted: fewer than Stripe
// may count, never more. where names the statement's target for the
// message (stripe.customers).
func checkMetadataLimits(where string, params url.Values, stored map[string]any) *Error {
	hashes := metadataHashes(params)
	for _, name := range slices.Sorted(maps.Keys(hashes)) {
		h := hashes[name]
		label := name + " of " + where
		for _, k := range slices.Sorted(maps.Keys(h.keys)) {
			if n := utf8.RuneCountInString(k); n > maxMetadataKeyLen {
				return errorf(CodeInvalidParameterValue, "%s has the key %q of %d characters: Stripe takes metadata keys of at most %d", label, shortKey(k), n, maxMetadataKeyLen).
					withHint("use a shorter key")
			}
			if strings.ContainsAny(k, "[]") {
				return errorf(CodeInvalidParameterValue, "%s has the key %q: Stripe does not allow square brackets in metadata keys", label, shortKey(k))
			}
			// The value is not quoted: metadata may hold what should
			// not reach a log.
			if n := utf8.RuneCountInString(h.keys[k]); n > maxMetadataValueLen {
				return errorf(CodeInvalidParameterValue, "%s has a value of %d characters at the key %q: Stripe takes metadata values of at most %d", label, n, shortKey(k), maxMetadataValueLen).
					withHint("shorten it (left(value, %d)), or keep it elsewhere and put its id in metadata", maxMetadataValueLen)
			}
		}
		base := map[string]bool{}
		if name == "metadata" && !h.cleared {
			for k, v := range stored {
				if v != nil {
					base[k] = true
				}
			}
		}
		had := len(base)
		for k, v := range h.keys {
			if v == "" {
				delete(base, k)
			} else {
				base[k] = true
			}
		}
		if n := len(base); n > maxMetadataKeys {
			e := errorf(CodeInvalidParameterValue, "%s would have %d keys: Stripe allows at most %d metadata keys", label, n, maxMetadataKeys).
				withHint("remove keys in the same statement (metadata - 'key', or the key set to null), or keep several values under one key as JSON text")
			if had > 0 {
				e.withDetail("Stripe merges an update's metadata into what it holds: the synced row has %d keys", had)
			}
			return e
		}
	}
	return nil
}

// shortKey cuts a metadata key for a message after 60 characters.
func shortKey(k string) string {
	const max = 60
	if utf8.RuneCountInString(k) <= max {
		return k
	}
	i := 0
	for n := 0; n < max; n++ {
		_, size := utf8.DecodeRuneInString(k[i:])
		i += size
	}
	return k[:i] + "…"
}
