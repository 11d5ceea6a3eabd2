package verify

import (
	"context"
	"errors"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// looksLikeJWT reports whether token has the shape of a compact JWS (RFC
// 7515 §7.1): three dot-separated parts, of which only the signature may
// be empty (an unsecured JWS, which is then refused for its "alg"). Jeton's
// opaque tokens never contain a dot.
func looksLikeJWT(token string) bool {
	a, rest, ok := strings.Cut(token, ".")
	if !ok || a == "" {
		return false
	}
	b, c, ok := strings.Cut(rest, ".")
	return ok && b != "" && strings.IndexByte(c, '.') < 0
}

// verifyJWT verifies a JWT access token as RFC 9068 §4 describes.
func (v *Verifier) verifyJWT(ctx context.Context, token string, scopes []string) (c *Claims, cached bool, e *Error) {
	keys := v.keys.state.Load()
	var ck tokenfmt.Hash
	if v.jwts != nil {
		ck = jwtKey(token)
		if jc := v.jwts.get(&ck, keys); jc != nil {
			c, e := v.checkDynamic(jc, scopes)
			return c, true, e
		}
	}
	jc, e := v.verifyJWTFully(ctx, token)
	if e != nil {
		return nil, false, e
	}
	if v.jwts != nil && v.keys.state.Load() == keys {
		v.jwts.put(ck, keys, jc, v.cfg.Now().Unix())
	}
	c, e = v.checkDynamic(jc, scopes)
	return c, false, e
}

// verifyJWTFully checks a JWT's signature and its fixed claims.
func (v *Verifier) verifyJWTFully(ctx context.Context, token string) (*jwtClaims, *Error) {
	// Only the configured asymmetric algorithms parse at all: "none" and
	// HS256 (an HMAC keyed with a public key) are refused here, before any
	// key is chosen (RFC 8725 §2.1, §3.1).
	//
	// jose.ParseSignedCompact is what jwt.ParseSigned calls; it gives the
	// header, the decoded payload (for checkClaims to decode once) and the
	// signature bytes, which verifySignature checks.
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		var unexpected *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &unexpected) {
			return nil, errAlgNotAllowed
		}
		return nil, errMalformed
	}
	if len(jws.Signatures) != 1 {
		return nil, errMalformed
	}
	h := &jws.Signatures[0].Header
	// RFC 9068 §4: typ must be at+jwt (or application/at+jwt), compared
	// case-insensitively (RFC 7515 §4.1.9).
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !isAccessTokenType(typ) {
		return nil, errWrongType
	}
	if h.KeyID == "" {
		return nil, errUnknownKey // Jeton always names the key
	}
	key, err := v.keys.get(ctx, h.KeyID)
	if err != nil {
		if ctx.Err() == nil && v.logLimit.allow(time.Now(), 5*time.Second) {
			v.cfg.Logger.Warn("verify: JWKS refresh for an unknown key failed", "err", err)
		}
		return nil, unavailable(err)
	}
	if key == nil {
		return nil, errUnknownKey
	}
	// The algorithm is pinned to the key's own: a token may not pick
	// another algorithm the key type would also accept.
	if jose.SignatureAlgorithm(h.Algorithm) != key.alg {
		return nil, errAlgMismatch
	}
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, errBadSignature // RFC 7515 §4.1.11: no extension is understood here
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		return nil, errBadSignature // RFC 7797 is not for JWTs (§7)
	}
	// The signing input is the token's own text up to its last '.' (RFC
	// 7515 §5.2), which go-jose split at the same dots.
	dot := strings.LastIndexByte(token, '.')
	if !canonicalBase64(token[dot+1:]) || !verifySignature(key, token[:dot], jws.Signatures[0].Signature) {
		return nil, errBadSignature
	}
	// Verified: the payload is the one the issuer signed.
	return v.checkStatic(jws.UnsafePayloadWithoutVerification())
}

// isAccessTokenType reports whether a "typ" header names the JWT access
// token media type, "application/at+jwt" (RFC 9068 §2.1), with or without
// the "application/" prefix, in any case.
func isAccessTokenType(typ string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, "at+jwt")
}

// checkStatic applies the claim checks of RFC 9068 §4 whose outcome
// cannot change for a given token: issuer, audience, and the presence of
// exp and jti.
func (v *Verifier) checkStatic(payload []byte) (*jwtClaims, *Error) {
	var jc jwtClaims
	if err := decodeClaims(payload, &jc); err != nil {
		return nil, errMalformed
	}
	if jc.Issuer != v.issuer {
		return nil, errWrongIssuer
	}
	if !jc.Audience.contains(v.cfg.Audience) {
		return nil, errWrongAudience
	}
	if jc.Expiry == nil {
		return nil, errNoExpiry
	}
	if jc.ID == "" {
		return nil, errNoID
	}
	return &jc, nil
}

// checkDynamic applies the checks whose outcome changes over time or with
// the request: exp, nbf and iat with the leeway (RFC 9068 §4, RFC 7519
// §4.1), the revocation denylist, and the required scopes.
func (v *Verifier) checkDynamic(jc *jwtClaims, scopes []string) (*Claims, *Error) {
	now := v.cfg.Now()
	leeway := v.cfg.Leeway
	if !now.Before(jc.Expiry.t.Add(leeway)) {
		return nil, errExpired
	}
	if jc.NotBefore != nil && now.Add(leeway).Before(jc.NotBefore.t) {
		return nil, errNotYetValid
	}
	if jc.IssuedAt != nil && now.Add(leeway).Before(jc.IssuedAt.t) {
		return nil, errNotYetValid
	}
	if v.deny.revoked(jc.ID, jc.GrantID, jc.ClientID, now) {
		return nil, errRevoked
	}
	c := &Claims{Kind: KindJWT, TokenID: jc.ID, Subject: jc.Subject, ClientID: jc.ClientID, GrantID: jc.GrantID,
		Audience: jc.Audience, Scopes: splitScope(jc.Scope), ExpiresAt: jc.Expiry.t}
	if jc.IssuedAt != nil {
		c.IssuedAt = jc.IssuedAt.t
	}
	if !c.hasScopes(scopes) {
		return nil, insufficientScope(scopes)
	}
	return c, nil
}

// splitScope splits a space-separated "scope" claim (RFC 9068 §2.2.3,
// RFC 6749 §3.3).
func splitScope(s string) []string {
	if s == "" {
		return nil
	}
	out := make([]string, 0, strings.Count(s, " ")+1)
	for {
		var sc string
		sc, s, _ = strings.Cut(s, " ")
		if sc != "" {
			out = append(out, sc)
		}
		if s == "" {
			return out
		}
	}
}
