package oauth

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseParams feeds arbitrary query strings and form bodies to the
// parameter parser every OAuth endpoint uses: it must never panic, never
// accept a repeated parameter or an oversized value, and drop empty values.
func FuzzParseParams(f *testing.F) {
	f.Add("grant_type=client_credentials&scope=a+b")
	f.Add("a=1&a=2")
	f.Add("x=%zz")
	f.Add("code=" + strings.Repeat("a", MaxParamLen+1))
	f.Add("access_token=" + strings.Repeat("a", MaxParamLen+1))
	f.Add("access_token=" + strings.Repeat("a", maxBearerLen+1))
	f.Add("=&&=x;y")
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := parseParams(raw)
		if err != nil {
			return
		}
		for k, v := range got {
			if len(v) != 1 {
				t.Fatalf("parameter %q has %d values", k, len(v))
			}
			if v[0] == "" || len(v[0]) > paramLimit(k) {
				t.Fatalf("parameter %q has an empty or oversized value", k)
			}
		}
		if len(got) > maxParams {
			t.Fatalf("%d parameters accepted", len(got))
		}
	})
}

// FuzzParseBasic checks the RFC 6749 §2.3.1 Basic credentials decoder:
// no panic, and whatever it accepts round-trips through the encoding a
// conforming client uses.
func FuzzParseBasic(f *testing.F) {
	f.Add("Y2xpXzE6anRzX3NlY3JldA==")
	f.Add("OmVtcHR5")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, b64 string) {
		id, secret, ok := parseBasic(b64)
		if !ok {
			return
		}
		if id == "" {
			t.Fatal("accepted an empty client id")
		}
		if _, err := url.QueryUnescape(url.QueryEscape(id)); err != nil {
			t.Fatal(err)
		}
		_ = secret
	})
}

// FuzzNormalizeUserCode checks the device user code normaliser: whatever
// it accepts is exactly userCodeLen characters of the user code alphabet.
func FuzzNormalizeUserCode(f *testing.F) {
	f.Add("BCDF-GHJK")
	f.Add("bcdf ghjk")
	f.Add("ÄBCD-EFGH")
	f.Fuzz(func(t *testing.T, s string) {
		code, ok := normalizeUserCode(s)
		if !ok {
			return
		}
		if len(code) != userCodeLen {
			t.Fatalf("accepted %q as %q", s, code)
		}
		for _, c := range code {
			if !strings.ContainsRune(userCodeAlphabet, c) {
				t.Fatalf("accepted %q with %q", s, c)
			}
		}
	})
}

// FuzzValidSigningKeys feeds arbitrary JWK sets to the check of a client's
// registered keys: it must never panic, and what it accepts is a parsed
// set, within maxJWKSBytes, whose every key may sign a client assertion.
func FuzzValidSigningKeys(f *testing.F) {
	// The EC key of RFC 7517 Appendix A.1, marked for encryption, and as
	// a signing key.
	const ec = `"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","kid":"1"`
	f.Add(`{"keys":[{` + ec + `,"use":"enc"}]}`)
	f.Add(`{"keys":[{` + ec + `,"use":"sig"}]}`)
	f.Add(`{"keys":[{` + ec + `}]}`)
	f.Add(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"}]}`)
	f.Add(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)
	f.Add(`{"keys":[]}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, raw string) {
		if validSigningKeys([]byte(raw)) != nil || raw == "" {
			return
		}
		set, err := parsePublicJWKS([]byte(raw))
		if err != nil {
			t.Fatalf("accepted a set that does not parse: %v", err)
		}
		for i := range set.Keys {
			if p := signingKeyProblem(&set.Keys[i]); p != "" {
				t.Fatalf("accepted key %d, which %s", i, p)
			}
		}
	})
}
