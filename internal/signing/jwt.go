package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// ErrInvalid is the error every JWT verification failure returns, wrapped
// at most with a fixed description of the reason that never includes the
// token or any part of it.
var ErrInvalid = errors.New("signing: invalid token")

// MaxTokenLen bounds the JWTs Verify looks at.
const MaxTokenLen = 16 << 10

// maxHeaderLen bounds the encoded JOSE header Verify decodes.
const maxHeaderLen = 1 << 10

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalid, reason) }

// Sign serialises claims to JSON (RFC 7519 §7.1: the JWT Claims Set, which
// must be a JSON object) and signs it with the key of alg that signs now,
// returning a compact JWS (RFC 7515 §7.1) whose protected header holds
// "alg", "kid" and, unless typ is empty, "typ" (RFC 7515 §4.1.9; "at+jwt"
// for access tokens, RFC 9068 §2.1; "JWT" for ID tokens). If no key of alg
// signs yet (RS256 or EdDSA on first use), it creates one that signs at
// once; otherwise Sign does not touch the store.
func (r *Ring) Sign(ctx context.Context, alg, typ string, claims any) (string, error) {
	if !supported(alg) {
		return "", fmt.Errorf("signing: unsupported algorithm %q", alg)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("signing: encode claims: %w", err)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return "", errors.New("signing: claims are not a JSON object")
	}
	k := r.state.Load().signing(alg, r.cfg.Now())
	if k == nil {
		r.mu.Lock()
		k = r.state.Load().signing(alg, r.cfg.Now())
		if k == nil {
			err = r.create(ctx, alg, false)
			k = r.state.Load().signing(alg, r.cfg.Now())
		}
		r.mu.Unlock()
		if err != nil {
			return "", err
		}
		if k == nil {
			return "", fmt.Errorf("signing: no usable %s key (is a key sealed under another master key?)", alg)
		}
	}
	if k.priv == nil {
		return "", fmt.Errorf("signing: key %s cannot sign here", k.rec.ID)
	}
	// The compact serialisation (RFC 7515 §7.1) is built by hand: the
	// header is fixed per key and typ, and the generic JOSE signer's
	// reflection and allocations cost as much as the ECDSA signature.
	hdr := k.header(typ)
	n := len(hdr) + base64.RawURLEncoding.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+base64.RawURLEncoding.EncodedLen(512))
	copy(buf, hdr)
	base64.RawURLEncoding.Encode(buf[len(hdr):], payload)
	sig, err := k.sign(buf)
	if err != nil {
		return "", fmt.Errorf("signing: sign with key %s: %w", k.rec.ID, err)
	}
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, sig)
	return string(buf), nil
}

// Verify checks a compact JWS this ring's keys signed and returns its
// payload, the JWT Claims Set as JSON. The key is the published key its
// "kid" names, and the algorithm is pinned to that key's: "alg": "none",
// HMAC keyed with a public key, or any algorithm other than the key's is
// refused (RFC 8725 §2.1, §3.1). The header may hold only "alg", "kid" and
// "typ" (no "jku", "jwk", "x5u", "crit"...; RFC 8725 §3.10), and its "typ"
// must equal typ, compared case-insensitively and with or without the
// "application/" prefix (RFC 7515 §4.1.9); an empty typ requires no "typ".
// The claims themselves (exp, nbf, iss, aud, RFC 7519 §4.1) are the
// caller's to check. Every failure is ErrInvalid.
func (r *Ring) Verify(token, typ string) ([]byte, error) {
	if len(token) > MaxTokenLen {
		return nil, invalid("too long")
	}
	enc, _, ok := strings.Cut(token, ".")
	if !ok || len(enc) > maxHeaderLen {
		return nil, invalid("malformed")
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return nil, invalid("malformed header")
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw, &hdr); err != nil || hdr == nil {
		return nil, invalid("malformed header")
	}
	var alg, kid, tokTyp string
	for name, v := range hdr {
		var dst *string
		switch name {
		case "alg":
			dst = &alg
		case "kid":
			dst = &kid
		case "typ":
			dst = &tokTyp
		default:
			return nil, invalid("unexpected header parameter")
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return nil, invalid("malformed header")
		}
	}
	k := r.state.Load().get(kid)
	if k == nil || !k.publishedAt(r.cfg.Now()) {
		return nil, invalid("unknown key")
	}
	if alg != string(k.alg) {
		return nil, invalid("algorithm does not match the key")
	}
	if normType(tokTyp) != normType(typ) {
		return nil, invalid("wrong type")
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{k.alg})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, invalid("malformed")
	}
	payload, err := jws.Verify(k.public)
	if err != nil {
		return nil, invalid("bad signature")
	}
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' || !json.Valid(p) {
		return nil, invalid("claims are not a JSON object")
	}
	return payload, nil
}

// normType puts a "typ" value in the form RFC 7515 §4.1.9 says to compare:
// media type names are case-insensitive and "application/" may be left
// out.
func normType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}
