package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// sigFixture is one key of each kind, with a token each signed through
// go-jose.
type sigFixture struct {
	keys   []*publicKey
	tokens []string
}

func newSigFixture(t testing.TB) *sigFixture {
	t.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	f := &sigFixture{}
	for _, k := range []struct {
		alg  jose.SignatureAlgorithm
		priv crypto.Signer
	}{{jose.ES256, ec}, {jose.ES384, ec384}, {jose.RS256, rs}, {jose.PS256, rs}, {jose.EdDSA, ed}} {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", string(k.alg)))
		if err != nil {
			t.Fatal(err)
		}
		jws, err := s.Sign([]byte(`{"iss":"https://a","exp":4000000000,"jti":"tok_1"}`))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jws.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		f.keys = append(f.keys, &publicKey{kid: string(k.alg), alg: k.alg, key: k.priv.Public()})
		f.tokens = append(f.tokens, tok)
	}
	return f
}

var allAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// ours is the decision verifyJWT makes about the signature of tok with k.
func ours(tok string, k *publicKey) bool {
	jws, err := jose.ParseSignedCompact(tok, allAlgs)
	if err != nil || len(jws.Signatures) != 1 || jose.SignatureAlgorithm(jws.Signatures[0].Header.Algorithm) != k.alg {
		return false
	}
	h := jws.Signatures[0].Header
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return false
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		return false
	}
	dot := strings.LastIndexByte(tok, '.')
	return canonicalBase64(tok[dot+1:]) && verifySignature(k, tok[:dot], jws.Signatures[0].Signature)
}

// theirs is go-jose's decision.
func theirs(tok string, k *publicKey) bool {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{k.alg})
	if err != nil {
		return false
	}
	_, err = jws.Verify(k.key)
	return err == nil
}

// canonical reports whether every part of tok is the canonical base64url
// encoding of its bytes (go-jose verifies a re-encoding, which hides
// non-canonical trailing bits; the issuer signed the exact text).
func canonical(tok string) bool {
	for part := range strings.SplitSeq(tok, ".") {
		b, err := base64.RawURLEncoding.DecodeString(part)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != part {
			return false
		}
	}
	return true
}

func TestCanonicalBase64(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 3, 31, 32, 33, 64, 256} {
		b := make([]byte, n)
		rand.Read(b)
		enc := base64.RawURLEncoding.EncodeToString(b)
		if !canonicalBase64(enc) {
			t.Errorf("canonical encoding of %d bytes refused", n)
		}
		for c := range 64 {
			alt := enc
			if len(enc) > 0 {
				alt = enc[:len(enc)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[c])
			}
			_, err := base64.RawURLEncoding.Strict().DecodeString(alt)
			if canonicalBase64(alt) != (err == nil) {
				t.Errorf("%q: canonical %v, strict decoding error %v", alt, canonicalBase64(alt), err)
			}
		}
	}
}

func TestVerifySignatureMatchesGoJose(t *testing.T) {
	t.Parallel()
	f := newSigFixture(t)
	for i, tok := range f.tokens {
		for j, k := range f.keys {
			if got, want := ours(tok, k), theirs(tok, k); got != want || got != (i == j) {
				t.Errorf("token %s with key %s: ours %v, go-jose %v", f.keys[i].alg, k.alg, got, want)
			}
		}
		// Flip each character of the signature and payload.
		for p := 0; p < len(tok); p += 7 {
			c := byte('A')
			if tok[p] == 'A' {
				c = 'B'
			}
			if tok[p] == '.' {
				continue
			}
			bad := tok[:p] + string(c) + tok[p+1:]
			if ours(bad, f.keys[i]) {
				t.Errorf("%s: tampered token accepted (position %d)", f.keys[i].alg, p)
			}
		}
	}
}

// FuzzSignature checks verifySignature against go-jose's own Verify: it
// never accepts a token go-jose refuses, and refuses one go-jose accepts
// only when the token is not canonically encoded.
func FuzzSignature(f *testing.F) {
	fx := newSigFixture(f)
	for _, tok := range fx.tokens {
		f.Add(tok, uint8(0))
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.", uint8(0))
	f.Fuzz(func(t *testing.T, tok string, which uint8) {
		k := fx.keys[int(which)%len(fx.keys)]
		o, g := ours(tok, k), theirs(tok, k)
		if o && !g {
			t.Fatalf("accepted what go-jose refuses: %q with %s", tok, k.alg)
		}
		if g && !o && canonical(tok) {
			h := mustParse(tok).ExtraHeaders
			_, crit := h["crit"]
			_, b64 := h["b64"]
			if !crit && !b64 {
				t.Fatalf("refused what go-jose accepts: %q with %s", tok, k.alg)
			}
		}
	})
}

func mustParse(tok string) jose.Header {
	jws, err := jose.ParseSignedCompact(tok, allAlgs)
	if err != nil {
		return jose.Header{}
	}
	return jws.Signatures[0].Header
}
