package signing_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/signing"
)

var enc = base64.RawURLEncoding.EncodeToString

// compact assembles a compact JWS from a header, the payload segment and
// the signature.
func compact(hdr map[string]any, payloadSeg string, sig []byte) string {
	h, _ := json.Marshal(hdr)
	return enc(h) + "." + payloadSeg + "." + enc(sig)
}

func hs256(hdr map[string]any, payloadSeg string, secret []byte) string {
	h, _ := json.Marshal(hdr)
	input := enc(h) + "." + payloadSeg
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + enc(m.Sum(nil))
}

// foreignES256 signs the payload with a key the ring does not hold,
// claiming the kid given.
func foreignES256(t *testing.T, kid, typ string, payload []byte) string {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	r := newRing(t, openStore(t), newClock(), nil)
	// The good token must hold a character that differs between the URL
	// and the standard base64 alphabets, or the "standard base64 alphabet"
	// case below would send the good token itself. ECDSA signatures are
	// random, so a few tries find one.
	good := mustSign(t, r, "ES256", "at+jwt")
	for i := 0; i < 100 && !strings.ContainsAny(good, "-_"); i++ {
		good = mustSign(t, r, "ES256", "at+jwt")
	}
	rsTok := mustSign(t, r, "RS256", "at+jwt")
	esKid := kidOf(t, good)
	rsKid := kidOf(t, rsTok)
	h, p, s := func() (string, string, string) {
		a, rest, _ := strings.Cut(good, ".")
		b, c, _ := strings.Cut(rest, ".")
		return a, b, c
	}()
	if _, err := r.Verify(good, "at+jwt"); err != nil {
		t.Fatalf("the good token does not verify: %v", err)
	}

	// Public key material an attacker could use as an HMAC secret.
	jwks, _ := r.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	esJWK := set.Key(esKid)[0]
	pkix, err := x509.MarshalPKIXPublicKey(esJWK.Key)
	if err != nil {
		t.Fatal(err)
	}
	jwkJSON, _ := json.Marshal(esJWK)
	ec := esJWK.Key.(*ecdsa.PublicKey)
	point, _ := ec.Bytes()

	tampered := enc([]byte(`{"iss":"https://jeton.example.com","sub":"usr_admin","exp":9999999999}`))
	other := newRing(t, openStore(t), newClock(), nil)
	otherTok, err := r.Sign(ctx, "ES256", "at+jwt", map[string]any{"sub": "usr_2"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, token, typ string
	}{
		{"alg none", compact(map[string]any{"alg": "none", "kid": esKid, "typ": "at+jwt"}, p, nil), "at+jwt"},
		{"alg none without kid", compact(map[string]any{"alg": "none", "typ": "at+jwt"}, p, nil), "at+jwt"},
		{"alg None", compact(map[string]any{"alg": "None", "kid": esKid, "typ": "at+jwt"}, p, nil), "at+jwt"},
		{"HS256 keyed with the public JWK", hs256(map[string]any{"alg": "HS256", "kid": esKid, "typ": "at+jwt"}, p, jwkJSON), "at+jwt"},
		{"HS256 keyed with the PKIX public key", hs256(map[string]any{"alg": "HS256", "kid": esKid, "typ": "at+jwt"}, p, pkix), "at+jwt"},
		{"HS256 keyed with the EC point", hs256(map[string]any{"alg": "HS256", "kid": esKid, "typ": "at+jwt"}, p, point), "at+jwt"},
		{"HS256 without kid", hs256(map[string]any{"alg": "HS256", "typ": "at+jwt"}, p, pkix), "at+jwt"},
		{"alg of another key", compact(map[string]any{"alg": "RS256", "kid": esKid, "typ": "at+jwt"}, p, b64(t, s)), "at+jwt"},
		{"RS256 signature under the ES256 kid", func() string {
			_, rest, _ := strings.Cut(rsTok, ".")
			return compact(map[string]any{"alg": "RS256", "kid": esKid, "typ": "at+jwt"}, rest[:strings.IndexByte(rest, '.')], b64(t, rest[strings.IndexByte(rest, '.')+1:]))
		}(), "at+jwt"},
		{"ES384 under the ES256 kid", compact(map[string]any{"alg": "ES384", "kid": esKid, "typ": "at+jwt"}, p, b64(t, s)), "at+jwt"},
		{"unknown kid", mustSign(t, other, "ES256", "at+jwt"), "at+jwt"},
		{"no kid", compact(map[string]any{"alg": "ES256", "typ": "at+jwt"}, p, b64(t, s)), "at+jwt"},
		{"kid of another algorithm's key", compact(map[string]any{"alg": "ES256", "kid": rsKid, "typ": "at+jwt"}, p, b64(t, s)), "at+jwt"},
		{"our kid, foreign key", foreignES256(t, esKid, "at+jwt", b64(t, p)), "at+jwt"},
		{"wrong typ", mustSign(t, r, "ES256", "JWT"), "at+jwt"},
		{"missing typ", mustSign(t, r, "ES256", ""), "at+jwt"},
		{"unexpected typ", good, ""},
		{"typ that only contains the expected one", mustSign(t, r, "ES256", "x-at+jwt"), "at+jwt"},
		{"embedded jwk header", compact(map[string]any{"alg": "ES256", "kid": esKid, "typ": "at+jwt", "jwk": esJWK}, p, b64(t, s)), "at+jwt"},
		{"jku header", compact(map[string]any{"alg": "ES256", "kid": esKid, "typ": "at+jwt", "jku": "https://evil.example/jwks"}, p, b64(t, s)), "at+jwt"},
		{"crit header", compact(map[string]any{"alg": "ES256", "kid": esKid, "typ": "at+jwt", "crit": []string{"exp"}}, p, b64(t, s)), "at+jwt"},
		{"b64 false", compact(map[string]any{"alg": "ES256", "kid": esKid, "typ": "at+jwt", "b64": false, "crit": []string{"b64"}}, p, b64(t, s)), "at+jwt"},
		{"kid not a string", compact(map[string]any{"alg": "ES256", "kid": 7, "typ": "at+jwt"}, p, b64(t, s)), "at+jwt"},
		{"header not an object", enc([]byte(`["ES256"]`)) + "." + p + "." + s, "at+jwt"},
		{"header null", enc([]byte(`null`)) + "." + p + "." + s, "at+jwt"},
		{"tampered payload", h + "." + tampered + "." + s, "at+jwt"},
		{"payload of another token", h + "." + strings.Split(otherTok, ".")[1] + "." + s, "at+jwt"},
		{"tampered signature", h + "." + p + "." + enc(append(b64(t, s)[:63], b64(t, s)[63]^1)), "at+jwt"},
		{"signature cut short", h + "." + p + "." + s[:len(s)-4], "at+jwt"},
		{"last character dropped", good[:len(good)-1], "at+jwt"},
		{"no signature", h + "." + p + ".", "at+jwt"},
		{"two segments", h + "." + p, "at+jwt"},
		{"header only", h, "at+jwt"},
		{"four segments", good + "." + s, "at+jwt"},
		{"empty payload", h + ".." + s, "at+jwt"},
		{"padded base64", h + "=." + p + "." + s, "at+jwt"},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good), "at+jwt"},
		{"JSON serialization", `{"payload":"` + p + `","protected":"` + h + `","signature":"` + s + `"}`, "at+jwt"},
		{"empty", "", "at+jwt"},
		{"dots", "..", "at+jwt"},
		{"huge", h + "." + strings.Repeat("A", signing.MaxTokenLen) + "." + s, "at+jwt"},
	}
	for _, tt := range tests {
		payload, err := r.Verify(tt.token, tt.typ)
		if !errors.Is(err, signing.ErrInvalid) || payload != nil {
			t.Errorf("%s: Verify = %q, %v; want ErrInvalid", tt.name, payload, err)
			continue
		}
		for _, seg := range strings.Split(tt.token, ".") {
			if len(seg) > 8 && strings.Contains(err.Error(), seg) {
				t.Errorf("%s: the error %q includes part of the token", tt.name, err)
			}
		}
	}
}

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, and
// must accept only what the ring signed.
func FuzzVerify(f *testing.F) {
	db := openStore(f)
	r := newRing(f, db, newClock(), nil)
	for _, alg := range signing.Algorithms {
		f.Add(mustSign(f, r, alg, "at+jwt"))
	}
	for _, s := range []string{"", ".", "..", "...", "a.b.c", "eyJ9.e30.", "eyJhbGciOiJub25lIn0.e30.",
		compact(map[string]any{"alg": "none"}, "e30", nil), compact(map[string]any{"alg": "ES256", "kid": r.Keys()[0].ID, "typ": "at+jwt"}, "e30", make([]byte, 64))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		payload, err := r.Verify(token, "at+jwt")
		if err != nil {
			if !errors.Is(err, signing.ErrInvalid) || payload != nil {
				t.Fatalf("Verify failed with %v, payload %q", err, payload)
			}
			return
		}
		if !json.Valid(payload) {
			t.Fatalf("Verify accepted a token with payload %q", payload)
		}
	})
}

func BenchmarkSignES256(b *testing.B) {
	r := newRing(b, openStore(b), newClock(), nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Sign(ctx, "ES256", "at+jwt", testClaims); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerifyES256(b *testing.B) {
	r := newRing(b, openStore(b), newClock(), nil)
	tok := mustSign(b, r, "ES256", "at+jwt")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Verify(tok, "at+jwt"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
