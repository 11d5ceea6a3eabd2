package signing_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
)

var ctx = context.Background()

// base is a fixed instant; no test reads the wall clock.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

// testMasterKey is the base64 of 32 fixed bytes.
var testMasterKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

var discard = slog.New(slog.DiscardHandler)

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: base} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

func mustMasterKey(t testing.TB, s string) *signing.MasterKey {
	t.Helper()
	k, err := signing.ParseMasterKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openStore opens a fresh SQLite store, closed when t ends.
func openStore(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{})
	if err != nil {
		t.Fatalf("sqlstore.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newRing starts a ring on ks with the test master key, the clock, a
// pre-publication delay of 10 minutes, a retention of an hour and no
// background reload; edit may change the configuration.
func newRing(t testing.TB, ks store.KeyStore, clk *clock, edit func(*signing.Config)) *signing.Ring {
	t.Helper()
	cfg := signing.Config{
		Store: ks, MasterKey: mustMasterKey(t, testMasterKey), Logger: discard, Now: clk.Now,
		PrePublish: 10 * time.Minute, Retain: time.Hour, Reload: -1,
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := signing.NewRing(ctx, cfg)
	if err != nil {
		t.Fatalf("NewRing: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// claims is what the tests sign.
type claims struct {
	Issuer  string `json:"iss"`
	Subject string `json:"sub"`
	Expiry  int64  `json:"exp"`
}

var testClaims = claims{Issuer: "https://jeton.example.com", Subject: "usr_1", Expiry: base.Add(time.Hour).Unix()}

func mustSign(t testing.TB, r *signing.Ring, alg, typ string) string {
	t.Helper()
	tok, err := r.Sign(ctx, alg, typ, testClaims)
	if err != nil {
		t.Fatalf("Sign(%s): %v", alg, err)
	}
	return tok
}

func b64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return b
}

// header returns the decoded JOSE header of a compact JWS.
func header(t testing.TB, tok string) map[string]any {
	t.Helper()
	enc, _, _ := strings.Cut(tok, ".")
	var h map[string]any
	if err := json.Unmarshal(b64(t, enc), &h); err != nil {
		t.Fatalf("header: %v", err)
	}
	return h
}

func kidOf(t testing.TB, tok string) string {
	t.Helper()
	kid, _ := header(t, tok)["kid"].(string)
	return kid
}

// jwksKids returns the kids published in r's JWKS.
func jwksKids(t testing.TB, r *signing.Ring) []string {
	t.Helper()
	body, _ := r.JWKS()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}

// verifyWithJWKS checks tok against a JWK Set with the standard library
// alone, as a resource server that does not use go-jose would, and returns
// the payload.
func verifyWithJWKS(jwks []byte, tok string) ([]byte, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%d segments", len(parts))
	}
	dec := base64.RawURLEncoding.DecodeString
	hb, err := dec(parts[0])
	if err != nil {
		return nil, err
	}
	var hdr struct{ Alg, Kid string }
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, err
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, err
	}
	var jwk map[string]string
	for _, k := range set.Keys {
		if k["kid"] == hdr.Kid {
			jwk = k
		}
	}
	if jwk == nil {
		return nil, fmt.Errorf("kid %q not in the JWKS", hdr.Kid)
	}
	if jwk["alg"] != hdr.Alg || jwk["use"] != "sig" {
		return nil, fmt.Errorf("JWK alg %q use %q, token alg %q", jwk["alg"], jwk["use"], hdr.Alg)
	}
	sig, err := dec(parts[2])
	if err != nil {
		return nil, err
	}
	input := []byte(parts[0] + "." + parts[1])
	digest := sha256.Sum256(input)
	param := func(name string) []byte { b, _ := dec(jwk[name]); return b }
	switch {
	case hdr.Alg == "ES256" && jwk["kty"] == "EC" && jwk["crv"] == "P-256":
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, param("x")...), param("y")...))
		if err != nil {
			return nil, err
		}
		if len(sig) != 64 || !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return nil, fmt.Errorf("ES256 signature does not verify")
		}
	case hdr.Alg == "RS256" && jwk["kty"] == "RSA":
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(param("n")), E: int(new(big.Int).SetBytes(param("e")).Int64())}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			return nil, err
		}
	case hdr.Alg == "EdDSA" && jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519":
		if !ed25519.Verify(ed25519.PublicKey(param("x")), input, sig) {
			return nil, fmt.Errorf("EdDSA signature does not verify")
		}
	default:
		return nil, fmt.Errorf("unexpected JWK %v for alg %s", jwk, hdr.Alg)
	}
	return dec(parts[1])
}

// memKeys is an in-memory store.KeyStore for tests that run in a synctest
// bubble, where the SQL store's goroutines cannot be.
type memKeys struct {
	mu   sync.Mutex
	keys []store.SigningKey
}

func (m *memKeys) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.keys), nil
}

func (m *memKeys) UpdateSigningKeys(_ context.Context, update func([]store.SigningKey) ([]store.SigningKey, []string, error), _ store.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	put, del, err := update(slices.Clone(m.keys))
	if err != nil {
		return err
	}
	keys := slices.DeleteFunc(slices.Clone(m.keys), func(k store.SigningKey) bool {
		return slices.Contains(del, k.ID) || slices.ContainsFunc(put, func(p store.SigningKey) bool { return p.ID == k.ID })
	})
	keys = append(keys, put...)
	slices.SortFunc(keys, func(a, b store.SigningKey) int { return strings.Compare(a.ID, b.ID) })
	m.keys = keys
	return nil
}
