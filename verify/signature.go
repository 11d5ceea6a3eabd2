package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"

	jose "github.com/go-jose/go-jose/v4"
)

// verifySignature checks a JWS signature (RFC 7515 §5.2) over the signing
// input, the token's own ASCII bytes up to its last '.', with key and only
// key's algorithm (RFC 7518 §3.3-3.5, RFC 8037 §3.1). These are the checks
// go-jose's JSONWebSignature.Verify performs with the same crypto calls;
// doing them here saves it re-parsing the header it has just parsed and
// re-encoding the payload it has just decoded (a seventh of the cost of a
// verification, see BenchmarkVerifyJWT), and checks the exact bytes the
// issuer signed rather than a re-encoding of them.
func verifySignature(k *publicKey, input string, sig []byte) bool {
	switch k.alg {
	case jose.ES256, jose.ES384, jose.ES512:
		pub, ok := k.key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		h := digest(k.alg, input)
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(pub, h, r, s)
	case jose.RS256, jose.RS384, jose.RS512:
		pub, ok := k.key.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(pub, hashOf(k.alg), digest(k.alg, input), sig) == nil
	case jose.PS256, jose.PS384, jose.PS512:
		pub, ok := k.key.(*rsa.PublicKey)
		return ok && rsa.VerifyPSS(pub, hashOf(k.alg), digest(k.alg, input), sig, nil) == nil
	case jose.EdDSA:
		pub, ok := k.key.(ed25519.PublicKey)
		return ok && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, []byte(input), sig)
	}
	return false
}

// hashOf is the hash function of an ECDSA or RSA algorithm.
func hashOf(alg jose.SignatureAlgorithm) crypto.Hash {
	switch alg {
	case jose.ES384, jose.RS384, jose.PS384:
		return crypto.SHA384
	case jose.ES512, jose.RS512, jose.PS512:
		return crypto.SHA512
	}
	return crypto.SHA256
}

// digest hashes the signing input with alg's hash function.
func digest(alg jose.SignatureAlgorithm, input string) []byte {
	switch hashOf(alg) {
	case crypto.SHA384:
		h := sha512.Sum384([]byte(input))
		return h[:]
	case crypto.SHA512:
		h := sha512.Sum512([]byte(input))
		return h[:]
	}
	h := sha256.Sum256([]byte(input))
	return h[:]
}

// canonicalBase64 reports whether the unused low bits of the last
// character of an unpadded base64url string are zero (RFC 4648 §3.5), so
// that each signature has one encoding: otherwise the same signature could
// be written several ways, and the token string would be malleable.
func canonicalBase64(s string) bool {
	var mask byte
	switch len(s) % 4 {
	case 0:
		return true
	case 2:
		mask = 0x0f
	case 3:
		mask = 0x03
	default:
		return false
	}
	c := s[len(s)-1]
	var v byte
	switch {
	case 'A' <= c && c <= 'Z':
		v = c - 'A'
	case 'a' <= c && c <= 'z':
		v = c - 'a' + 26
	case '0' <= c && c <= '9':
		v = c - '0' + 52
	case c == '-':
		v = 62
	case c == '_':
		v = 63
	default:
		return false
	}
	return v&mask == 0
}
