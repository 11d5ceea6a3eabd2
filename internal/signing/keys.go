package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
)

// Algorithms are the JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1) a Ring
// signs with, the default first:
//
//   - ES256: ECDSA on P-256 with SHA-256 (RFC 7518 §3.4);
//   - RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), 2048-bit keys,
//     the size RFC 7518 §3.3 requires at least and that every verifier
//     accepts, chosen over 3072 bits for signing speed;
//   - EdDSA: Ed25519 (RFC 8037 §3.1).
var Algorithms = []string{"ES256", "RS256", "EdDSA"}

// rsaBits is the size of generated RS256 keys.
const rsaBits = 2048

// supported reports whether alg is one of Algorithms.
func supported(alg string) bool {
	switch alg {
	case "ES256", "RS256", "EdDSA":
		return true
	}
	return false
}

// errMismatch means a stored key's private part does not belong to its
// public part.
var errMismatch = errors.New("private key does not match the public key")

// key is one signing key as a Ring uses it: its stored record (times may
// change with rotations) and its key material (immutable, shared between
// successive views of the ring).
type key struct {
	rec store.SigningKey // Private cleared
	*material
}

// material is the parsed, immutable part of a signing key.
type material struct {
	alg    jose.SignatureAlgorithm
	public crypto.PublicKey // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	jwk    jose.JSONWebKey  // public, with kid, alg and use
	priv   crypto.Signer    // nil: cannot sign here (retired when loaded, or not opened)
	sealed []byte           // the stored private part
	pubJWK []byte           // the stored public JWK
	// headers caches the encoded protected header per typ.
	headers sync.Map // string -> string
}

// activeAt reports whether k signs at now (RetiredAt zero means never
// retired).
func (k *key) activeAt(now time.Time) bool {
	return !now.Before(k.rec.ActiveAt) && (k.rec.RetiredAt.IsZero() || now.Before(k.rec.RetiredAt))
}

// retiredAt reports whether k has stopped signing at now.
func (k *key) retiredAt(now time.Time) bool {
	return !k.rec.RetiredAt.IsZero() && !now.Before(k.rec.RetiredAt)
}

// publishedAt reports whether k is in the JWKS at now: until ExpiresAt, or
// for ever when ExpiresAt is zero.
func (k *key) publishedAt(now time.Time) bool {
	return k.rec.ExpiresAt.IsZero() || now.Before(k.rec.ExpiresAt)
}

// header returns the encoded protected header (RFC 7515 §4.1) of k's
// tokens with typ, followed by the '.' that separates it from the payload.
// It never changes for a key and typ, so it is built once.
func (k *key) header(typ string) string {
	if h, ok := k.headers.Load(typ); ok {
		return h.(string)
	}
	hdr := struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ,omitempty"`
	}{string(k.alg), k.rec.ID, typ}
	b, _ := json.Marshal(hdr)
	h := base64.RawURLEncoding.EncodeToString(b) + "."
	got, _ := k.headers.LoadOrStore(typ, h)
	return got.(string)
}

// sign returns the JWS signature (RFC 7518 §3.1) of input with k: ES256 as
// the 64-byte R || S (§3.4), RS256 as PKCS #1 v1.5 over SHA-256 (§3.3),
// EdDSA as Ed25519 over the input itself (RFC 8037 §3.1).
func (k *key) sign(input []byte) ([]byte, error) {
	switch priv := k.priv.(type) {
	case *ecdsa.PrivateKey:
		digest := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	case *rsa.PrivateKey:
		digest := sha256.Sum256(input)
		return rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest[:])
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, input), nil
	}
	return nil, fmt.Errorf("signing: key %s cannot sign", k.rec.ID)
}

// generate makes a new key pair for alg, seals its private part (PKCS #8
// DER, RFC 5208) under mk with the key ID as associated data, and returns
// the stored form.
func generate(mk *MasterKey, alg string, now time.Time) (store.SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return store.SigningKey{}, fmt.Errorf("signing: unsupported algorithm %q", alg)
	}
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("signing: generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("signing: encode %s key: %w", alg, err)
	}
	id := ids.New(ids.Key, now)
	jwk, err := json.Marshal(jose.JSONWebKey{Key: priv.Public(), KeyID: id, Algorithm: alg, Use: "sig"})
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("signing: encode %s public key: %w", alg, err)
	}
	return store.SigningKey{
		ID:        id,
		Alg:       alg,
		PublicJWK: jwk,
		Private:   mk.Seal(der, []byte(id)),
		CreatedAt: now,
		ActiveAt:  now,
	}, nil
}

// parsePublic builds a key from its stored record without its private
// part: the public JWK must be a valid public key of the record's
// algorithm.
func parsePublic(rec store.SigningKey) (*key, error) {
	if !supported(rec.Alg) {
		return nil, fmt.Errorf("unsupported algorithm %q", rec.Alg)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(rec.PublicJWK); err != nil {
		return nil, fmt.Errorf("decode public key: %w", err)
	}
	if !jwk.IsPublic() || !jwk.Valid() {
		return nil, errors.New("public key is not a valid public JWK")
	}
	ok := false
	switch pub := jwk.Key.(type) {
	case *ecdsa.PublicKey:
		ok = rec.Alg == "ES256" && pub.Curve == elliptic.P256()
	case *rsa.PublicKey:
		ok = rec.Alg == "RS256" && pub.N.BitLen() >= 2048
	case ed25519.PublicKey:
		ok = rec.Alg == "EdDSA"
	}
	if !ok {
		return nil, fmt.Errorf("public key is not an %s key", rec.Alg)
	}
	sealed := rec.Private
	rec.Private = nil
	return &key{rec: rec, material: &material{
		alg:    jose.SignatureAlgorithm(rec.Alg),
		public: jwk.Key,
		jwk:    jose.JSONWebKey{Key: jwk.Key, KeyID: rec.ID, Algorithm: rec.Alg, Use: "sig"},
		sealed: sealed,
		pubJWK: rec.PublicJWK,
	}}, nil
}

// openPrivate opens the private part of m, sealed under mk, and checks it
// belongs to m's public key. A failure to open is ErrSealed.
func (m *material) openPrivate(mk *MasterKey, id string) (crypto.Signer, error) {
	der, err := mk.Open(m.sealed, []byte(id))
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("decode private key: %w", err)
	}
	priv, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, errMismatch
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := priv.Public().(equaler); !ok || !pub.Equal(m.public) {
		return nil, errMismatch
	}
	return priv, nil
}
