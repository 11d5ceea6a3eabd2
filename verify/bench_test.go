package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/jetonhq/jeton/verify"
)

// The two benchmarks below run in one `go test -bench 'VerifyJWT|SignatureOnly'`
// so that their ratio (target: Verify within 1.3× of the bare check) can
// be read from one run.

// BenchmarkVerifyJWT measures Verifier.Verify of a valid ES256 at+jwt with
// a scope, keys cached but the verified-token cache off: parsing, key
// lookup, signature, claims, denylist and scope check.
func BenchmarkVerifyJWT(b *testing.B) {
	benchmarkVerifyJWT(b, -1)
}

// BenchmarkVerifyJWTCached is the same token presented again, as a resource
// server sees it on every request of a client: the verified-token cache
// answers, and only expiry, revocation and scopes are checked.
func BenchmarkVerifyJWTCached(b *testing.B) {
	benchmarkVerifyJWT(b, 0)
}

func benchmarkVerifyJWT(b *testing.B, cacheSize int) {
	f, es := newFake(b)
	v := f.newVerifier(b, func(c *verify.Config) { c.JWTCacheSize = cacheSize })
	tok := f.mint(b, es, nil, func(m map[string]any) { m["sid"] = "grt_1" })
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok, "repos:read"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok, "repos:read"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignatureOnly measures the bare ES256 signature check of the
// same kind of token, as go-jose and verify perform it: SHA-256 of the
// signing input and crypto/ecdsa verification of r||s, with the public key
// at hand and nothing else (no parsing of the header or the claims).
func BenchmarkSignatureOnly(b *testing.B) {
	f, es := newFake(b)
	tok := f.mint(b, es, nil, func(m map[string]any) { m["sid"] = "grt_1" })
	pub := es.priv.Public().(*ecdsa.PublicKey)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		i := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
		if err != nil || len(sig) != 64 {
			b.Fatal("bad signature encoding")
		}
		h := sha256.Sum256([]byte(tok[:i]))
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, h[:], r, s) {
			b.Fatal("signature does not verify")
		}
	}
}
