package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// answer is what Jeton said about a token, in the form the cache and the
// flight's other callers need.
type answer struct {
	claims  *Claims // the token's claims, when Jeton returned them
	err     *Error  // nil when valid
	limited bool    // the token has a rate limit or quota: not cacheable, not shareable
	aborted bool    // the caller's context ended: no answer about the token
}

// verifyOpaque checks an opaque access token or API key through Jeton's
// POST /v1/verify, with a cache and single-flight in front.
//
// A burst of requests with one token costs one call: concurrent callers
// wait for the first one's answer, and later ones reuse it for CacheTTL.
// Tokens with a rate limit or quota are the exception: Jeton counts each
// request against them, so their answers are never cached and never
// shared; such tokens are remembered for CacheTTL so that their requests
// go straight to Jeton, and a request that joined a call whose answer
// turned out to carry a limit makes its own call.
func (v *Verifier) verifyOpaque(ctx context.Context, token, addr string, scopes []string) (*Claims, bool, *Error) {
	if v.cfg.Credential == "" {
		return nil, false, errOnlyJWT
	}
	// The checksum rejects typos and garbage without a round trip.
	_, err := tokenfmt.Parse(token)
	if err != nil {
		return nil, false, errMalformed
	}
	now := v.cfg.Now()
	key := tokenKey(token, addr)
	if c, e, hit := v.fromCache(&key, scopes, now); hit {
		return c, true, e
	}
	// A request rejoins (at most twice) when the answer it waited for does
	// not settle its own scopes; after that it calls for itself.
rejoin:
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			if c, e, hit := v.fromCache(&key, scopes, v.cfg.Now()); hit {
				return c, true, e
			}
		}
		if v.limited.has(&key, now.UnixNano()) {
			break rejoin
		}
		f, leader := v.flights.join(key)
		if leader {
			ans := v.callVerify(ctx, token, addr, scopes)
			v.remember(key, ans)
			v.flights.finish(key, f, ans)
			return v.result(ans, scopes)
		}
		v.joined.Add(1)
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, false, unavailable(ctx.Err())
		}
		ans := f.ans
		switch {
		case ans.limited:
			break rejoin // Jeton must count this request too
		case ans.aborted:
			// The leader's request was canceled: no answer; try again.
		case ans.err == nil:
			c, _, e := v.result(ans, scopes)
			return c, false, e
		case ans.claims != nil && errors.Is(ans.err, ErrInsufficientScope):
			if !ans.claims.hasScopes(scopes) {
				return nil, false, insufficientScope(scopes)
			}
			// The token has the scopes this request needs, but only Jeton
			// can tell whether it is within its limits: ask again.
		default:
			return nil, false, ans.err
		}
	}
	ans := v.callVerify(ctx, token, addr, scopes)
	v.remember(key, ans)
	return v.result(ans, scopes)
}

// result turns an answer into Verify's return values for a request with
// the given scopes.
func (v *Verifier) result(ans answer, scopes []string) (*Claims, bool, *Error) {
	if ans.err != nil {
		if errors.Is(ans.err, ErrInsufficientScope) {
			return nil, false, insufficientScope(scopes)
		}
		return nil, false, ans.err
	}
	if !ans.claims.hasScopes(scopes) {
		return nil, false, insufficientScope(scopes)
	}
	if v.deny.revoked(ans.claims.TokenID, "", "", v.cfg.Now()) {
		return nil, false, errRevoked
	}
	c := *ans.claims
	return &c, false, nil
}

// fromCache answers from the cache, and reports whether it could.
func (v *Verifier) fromCache(key *tokenfmt.Hash, scopes []string, now time.Time) (*Claims, *Error, bool) {
	e := v.cache.get(key, now.UnixNano())
	if e == nil {
		return nil, nil, false
	}
	if e.err != nil {
		return nil, e.err, true
	}
	if v.deny.revoked(e.claims.TokenID, "", "", now) {
		return nil, errRevoked, true
	}
	if !e.claims.hasScopes(scopes) {
		return nil, insufficientScope(scopes), true
	}
	if e.scopesOnly {
		return nil, nil, false
	}
	c := *e.claims
	return &c, nil, true
}

// remember caches an answer as the package documentation describes.
func (v *Verifier) remember(key tokenfmt.Hash, ans answer) {
	if ans.aborted {
		return
	}
	now := v.cfg.Now()
	nowNS := now.UnixNano()
	if ans.limited {
		v.limited.add(key, now.Add(max(v.cfg.CacheTTL, DefaultCacheTTL)).UnixNano(), nowNS)
		v.cache.delete(key)
		return
	}
	var ttl time.Duration
	e := &entry{claims: ans.claims, err: ans.err}
	switch {
	case ans.err == nil:
		ttl = v.cfg.CacheTTL
	case errors.Is(ans.err, ErrInsufficientScope) && ans.claims != nil:
		ttl, e.err, e.scopesOnly = v.cfg.CacheTTL, nil, true
	case errors.Is(ans.err, ErrUnavailable), errors.Is(ans.err, ErrInsufficientScope):
		return
	default:
		ttl, e.claims = v.cfg.NegativeCacheTTL, nil
	}
	if ttl <= 0 {
		return
	}
	exp := now.Add(ttl)
	if c := e.claims; c != nil && !c.ExpiresAt.IsZero() && c.ExpiresAt.Before(exp) {
		exp = c.ExpiresAt
	}
	if !exp.After(now) {
		return
	}
	e.expires = exp.UnixNano()
	v.cache.put(key, e, nowNS)
}

// verifyRequest is the body of POST /v1/verify.
type verifyRequest struct {
	Token  string   `json:"token"`
	Scopes []string `json:"scopes"`
	API    string   `json:"api"`
	// ClientIP is the address of the client that presented the token,
	// which Jeton checks the token's allowed address ranges against. It
	// travels in the body, not in X-Forwarded-For, so that Jeton checks
	// this resource server's own credential against this server's
	// address, and this server need not be one of Jeton's trusted proxies.
	ClientIP string `json:"client_ip,omitempty"`
}

// verifyResponse is Jeton's answer to POST /v1/verify.
type verifyResponse struct {
	Valid bool   `json:"valid"`
	Code  string `json:"code"`
	Token *struct {
		ID        string          `json:"id"`
		API       string          `json:"api"`
		Subject   string          `json:"subject"`
		Scopes    []string        `json:"scopes"`
		ExpiresAt *time.Time      `json:"expires_at"`
		Metadata  json.RawMessage `json:"metadata"`
	} `json:"token"`
	RateLimit *struct {
		Limit     int64 `json:"limit"`
		Remaining int64 `json:"remaining"`
		Reset     int64 `json:"reset"`
	} `json:"rate_limit"`
	Quota *struct {
		Remaining int64 `json:"remaining"`
	} `json:"quota"`
}

// callVerify asks Jeton about token with POST /v1/verify. Any failure to
// get a well-formed answer is ErrUnavailable, never a valid token.
func (v *Verifier) callVerify(ctx context.Context, token, addr string, scopes []string) answer {
	if scopes == nil {
		scopes = []string{}
	}
	body, err := json.Marshal(verifyRequest{Token: token, Scopes: scopes, API: v.cfg.Audience, ClientIP: addr})
	if err != nil {
		return answer{err: unavailable(errors.New("encode the verify request"))}
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, v.base+"/v1/verify", bytes.NewReader(body))
	if err != nil {
		return answer{err: unavailable(err)}
	}
	req.Header.Set("Authorization", "Bearer "+v.cfg.Credential)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return answer{err: unavailable(ctx.Err()), aborted: true}
		}
		return v.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v.unreachable(statusError(req, resp))
	}
	var r verifyResponse
	if err := decodeLimited(resp.Body, maxVerifySize, &r); err != nil {
		if ctx.Err() != nil {
			return answer{err: unavailable(ctx.Err()), aborted: true}
		}
		return v.unreachable(fmt.Errorf("POST /v1/verify: %w", err))
	}
	return v.interpret(&r, resp.Header)
}

// unreachable logs (at most every few seconds) and returns an
// ErrUnavailable answer.
func (v *Verifier) unreachable(err error) answer {
	if v.logLimit.allow(time.Now(), 5*time.Second) {
		v.cfg.Logger.Warn("verify: Jeton's /v1/verify is unavailable; refusing opaque tokens", "err", err)
	}
	return answer{err: unavailable(err)}
}

// interpret maps a /v1/verify answer to claims or a sentinel error.
func (v *Verifier) interpret(r *verifyResponse, h http.Header) answer {
	var ans answer
	var rl *RateLimit
	if r.RateLimit != nil {
		rl = &RateLimit{Limit: r.RateLimit.Limit, Remaining: r.RateLimit.Remaining, Reset: time.Duration(r.RateLimit.Reset) * time.Second}
		ans.limited = true
	}
	if r.Quota != nil {
		ans.limited = true
	}
	if r.Token != nil {
		t := r.Token
		c := &Claims{Kind: KindOpaque, TokenID: t.ID, Subject: t.Subject, Audience: []string{v.cfg.Audience},
			Scopes: t.Scopes, RateLimit: rl}
		if t.ExpiresAt != nil {
			c.ExpiresAt = *t.ExpiresAt
		}
		if len(t.Metadata) > 0 && !bytes.Equal(t.Metadata, []byte("null")) {
			c.Metadata = t.Metadata
		}
		if r.Quota != nil {
			c.Quota = &Quota{Remaining: r.Quota.Remaining}
		}
		ans.claims = c
	}
	if r.Valid != (r.Code == "valid") {
		return v.unreachable(fmt.Errorf("POST /v1/verify: inconsistent answer (valid %v, code %q)", r.Valid, r.Code))
	}
	switch r.Code {
	case "valid":
		if ans.claims == nil || ans.claims.TokenID == "" {
			return v.unreachable(errors.New("POST /v1/verify: a valid answer without the token"))
		}
		return ans
	case "insufficient_scope":
		ans.err = newError(ErrInsufficientScope, "the access token lacks a required scope")
	case "rate_limited", "quota_exceeded":
		ans.limited = true
		sentinel, desc := ErrRateLimited, "the access token is over its rate limit"
		if r.Code == "quota_exceeded" {
			sentinel, desc = ErrQuotaExceeded, "the access token has used up its quota"
		}
		e := newError(sentinel, desc)
		e.RateLimit = rl
		e.RetryAfter = retryAfter(h.Get("Retry-After"), v.cfg.Now())
		if e.RetryAfter == 0 && rl != nil && sentinel == ErrRateLimited {
			e.RetryAfter = rl.Reset
		}
		ans.err = e
	case "forbidden_ip":
		ans.err = errForbiddenIP
	case "revoked":
		ans.err = errRevoked
	case "expired":
		ans.err = errExpired
	case "not_found":
		ans.err = errUnknownToken
	case "wrong_api":
		ans.err = errWrongAudience
	case "malformed":
		ans.err = errMalformed
	default:
		// A code this version does not know: not valid, and not worth
		// caching.
		ans.err = errUnknownToken
		ans.limited = true
	}
	return ans
}

// retryAfter parses a Retry-After header (RFC 9110 §10.2.3): seconds or an
// HTTP date. It returns 0 when absent or invalid.
func retryAfter(s string, now time.Time) time.Duration {
	if s == "" {
		return 0
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}
