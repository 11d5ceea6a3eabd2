package verify

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Every error Verify, VerifyRequest and BearerToken return
// is an *Error that wraps exactly one of them, so callers branch with
// errors.Is(err, verify.ErrExpired) and write the response with WriteError.
var (
	// ErrNoToken: the request carries no access token (RFC 6750 §3.1: the
	// response names no error code).
	ErrNoToken = errors.New("verify: no access token")
	// ErrMalformed: the token (or the Authorization header) is not
	// syntactically valid: not a compact JWS, a bad checksum, bad JSON.
	ErrMalformed = errors.New("verify: malformed token")
	// ErrInvalidSignature: the JWT signature does not verify, its algorithm
	// is not allowed or not the algorithm of its key, or its key is unknown.
	ErrInvalidSignature = errors.New("verify: invalid token signature")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("verify: token expired")
	// ErrNotYetValid: the token's nbf (or iat) is in the future.
	ErrNotYetValid = errors.New("verify: token not yet valid")
	// ErrWrongIssuer: the JWT iss is not the issuer.
	ErrWrongIssuer = errors.New("verify: wrong token issuer")
	// ErrWrongAudience: the token was not issued for this API (JWT aud,
	// or Jeton's wrong_api).
	ErrWrongAudience = errors.New("verify: token not issued for this API")
	// ErrWrongType: the JWT typ is not at+jwt (RFC 9068 §2.1), for example
	// an ID token.
	ErrWrongType = errors.New("verify: wrong token type")
	// ErrRevoked: the token, or the grant it was issued from, was revoked.
	ErrRevoked = errors.New("verify: token revoked")
	// ErrUnknownToken: Jeton does not know the token, or this Verifier
	// cannot check opaque tokens (no Credential).
	ErrUnknownToken = errors.New("verify: unknown token")
	// ErrInsufficientScope: the token is valid but lacks a required scope.
	ErrInsufficientScope = errors.New("verify: insufficient scope")
	// ErrRateLimited: the token is over its rate limit.
	ErrRateLimited = errors.New("verify: rate limited")
	// ErrQuotaExceeded: the token has used up its quota.
	ErrQuotaExceeded = errors.New("verify: quota exceeded")
	// ErrForbiddenIP: the token may not be used from the client's address.
	ErrForbiddenIP = errors.New("verify: client address not allowed for this token")
	// ErrUnavailable: Jeton (or its JWKS) could not be reached or answered
	// wrongly, so the token could not be checked. It never means the
	// token is valid.
	ErrUnavailable = errors.New("verify: token could not be checked")
)

// RFC 6750 §3.1 error codes, and the codes this package adds for answers
// that RFC 6750 does not cover.
const (
	CodeInvalidRequest    = "invalid_request"    // RFC 6750 §3.1, status 400
	CodeInvalidToken      = "invalid_token"      // RFC 6750 §3.1, status 401
	CodeInsufficientScope = "insufficient_scope" // RFC 6750 §3.1, status 403
	CodeRateLimited       = "rate_limited"       // status 429
	CodeQuotaExceeded     = "quota_exceeded"     // status 429
	CodeUnavailable       = "temporarily_unavailable"
)

// Error is a failed verification: the RFC 6750 §3 error to send (Code,
// Description, Status, Scope), rate-limit details for a 429, and the cause.
// Err wraps one of the sentinel errors. Neither Description nor Error()
// ever contains the token.
type Error struct {
	// Code is the RFC 6750 §3.1 error code, such as "invalid_token"; empty
	// when the request had no token (§3.1: no error code then).
	Code string
	// Description is a human-readable explanation that is safe to send to
	// the client (error_description).
	Description string
	// Status is the HTTP status to answer with.
	Status int
	// Scope is the space-separated scope the request needs, for
	// insufficient_scope (RFC 6750 §3).
	Scope string
	// RetryAfter is when a rate-limited request may be retried (zero when
	// unknown).
	RetryAfter time.Duration
	// RateLimit is the token's rate-limit state, when Jeton reported one.
	RateLimit *RateLimit
	// Err is the cause: a sentinel error, possibly wrapped with details
	// (never the token).
	Err error
}

// Error returns the cause's message, or the code and description.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	if e.Code == "" {
		return "verify: " + e.Description
	}
	return "verify: " + e.Code + ": " + e.Description
}

// Unwrap returns the cause, so that errors.Is matches the sentinels.
func (e *Error) Unwrap() error { return e.Err }

// newError builds the *Error of a sentinel with the standard code and
// status and a public description.
func newError(sentinel error, desc string) *Error {
	e := &Error{Err: sentinel, Description: desc}
	switch sentinel {
	case ErrNoToken:
		e.Status = http.StatusUnauthorized
	case ErrInsufficientScope:
		e.Code, e.Status = CodeInsufficientScope, http.StatusForbidden
	case ErrForbiddenIP:
		// The token is fine, but not from here: a new token would not help,
		// so this is 403 rather than 401 (RFC 9110 §15.5.4).
		e.Code, e.Status = CodeInvalidToken, http.StatusForbidden
	case ErrRateLimited:
		e.Code, e.Status = CodeRateLimited, http.StatusTooManyRequests
	case ErrQuotaExceeded:
		e.Code, e.Status = CodeQuotaExceeded, http.StatusTooManyRequests
	case ErrUnavailable:
		e.Code, e.Status = CodeUnavailable, http.StatusServiceUnavailable
	default:
		e.Code, e.Status = CodeInvalidToken, http.StatusUnauthorized
	}
	return e
}

// unavailable wraps cause (which must not contain the token) as
// ErrUnavailable.
func unavailable(cause error) *Error {
	e := newError(ErrUnavailable, "the access token could not be checked, try again later")
	if cause != nil {
		e.Err = &wrapped{sentinel: ErrUnavailable, cause: cause}
	}
	return e
}

// wrapped is a sentinel with a cause; errors.Is matches both.
type wrapped struct {
	sentinel error
	cause    error
}

func (w *wrapped) Error() string   { return w.sentinel.Error() + ": " + w.cause.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.sentinel, w.cause} }

// Fixed public descriptions, so that no description can ever carry a part
// of a token.
var (
	errNoToken        = newError(ErrNoToken, "the request has no access token")
	errMalformed      = newError(ErrMalformed, "the access token is malformed")
	errBadSignature   = newError(ErrInvalidSignature, "the access token signature is invalid")
	errAlgNotAllowed  = newError(ErrInvalidSignature, "the access token signature algorithm is not accepted")
	errAlgMismatch    = newError(ErrInvalidSignature, "the access token algorithm does not match its key")
	errUnknownKey     = newError(ErrInvalidSignature, "the access token is signed by an unknown key")
	errExpired        = newError(ErrExpired, "the access token expired")
	errNoExpiry       = newError(ErrMalformed, "the access token has no expiry")
	errNoID           = newError(ErrMalformed, "the access token has no jti")
	errNotYetValid    = newError(ErrNotYetValid, "the access token is not valid yet")
	errWrongIssuer    = newError(ErrWrongIssuer, "the access token was issued by another issuer")
	errWrongAudience  = newError(ErrWrongAudience, "the access token was not issued for this API")
	errWrongType      = newError(ErrWrongType, "the token is not an access token")
	errRevoked        = newError(ErrRevoked, "the access token was revoked")
	errUnknownToken   = newError(ErrUnknownToken, "the access token is not known")
	errOnlyJWT        = newError(ErrUnknownToken, "only JWT access tokens are accepted here")
	errForbiddenIP    = newError(ErrForbiddenIP, "the access token may not be used from this address")
	errRequestInvalid = &Error{Code: CodeInvalidRequest, Status: http.StatusBadRequest, Err: ErrMalformed,
		Description: "the Authorization header is malformed"}
)

// insufficientScope returns the 403 error naming the scopes the request
// needs (RFC 6750 §3).
func insufficientScope(scopes []string) *Error {
	e := newError(ErrInsufficientScope, "the access token lacks a required scope")
	e.Scope = strings.Join(scopes, " ")
	return e
}

// asError returns err as an *Error, building one from a bare sentinel; any
// other error is a 500.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, s := range []error{ErrNoToken, ErrMalformed, ErrInvalidSignature, ErrExpired, ErrNotYetValid,
		ErrWrongIssuer, ErrWrongAudience, ErrWrongType, ErrRevoked, ErrUnknownToken, ErrInsufficientScope,
		ErrRateLimited, ErrQuotaExceeded, ErrForbiddenIP, ErrUnavailable} {
		if errors.Is(err, s) {
			e := newError(s, "")
			e.Err = err
			e.Description = publicDescription(s)
			return e
		}
	}
	return &Error{Code: "server_error", Description: "internal error", Status: http.StatusInternalServerError, Err: err}
}

func publicDescription(sentinel error) string {
	switch sentinel {
	case ErrNoToken:
		return errNoToken.Description
	case ErrInsufficientScope:
		return "the access token lacks a required scope"
	case ErrRateLimited:
		return "the access token is over its rate limit"
	case ErrQuotaExceeded:
		return "the access token has used up its quota"
	case ErrUnavailable:
		return "the access token could not be checked, try again later"
	case ErrForbiddenIP:
		return errForbiddenIP.Description
	case ErrExpired:
		return errExpired.Description
	case ErrRevoked:
		return errRevoked.Description
	case ErrMalformed:
		return errMalformed.Description
	}
	return "the access token is invalid"
}

// WriteError writes the response for an error returned by Verify,
// VerifyRequest or BearerToken, as RFC 6750 §3 describes: 401 with
// "WWW-Authenticate: Bearer" and no error attribute when the request had no
// token (§3.1); 401 with error="invalid_token" for a bad token; 403 with
// error="insufficient_scope" and the needed scope; 400 with
// error="invalid_request" for a malformed Authorization header; 429 with
// Retry-After and RateLimit-Limit/-Remaining/-Reset headers for a rate
// limit or quota; 503 when the token could not be checked. The body is
// JSON: {"error": "...", "error_description": "..."}. Any other error is a
// 500 whose details are not sent.
func WriteError(w http.ResponseWriter, err error) {
	e := asError(err)
	h := w.Header()
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden ||
		(e.Status == http.StatusBadRequest && e.Code == CodeInvalidRequest):
		h.Set("WWW-Authenticate", challenge(e))
	}
	if e.Status == http.StatusTooManyRequests || e.RateLimit != nil {
		if e.RetryAfter > 0 {
			h.Set("Retry-After", strconv.FormatInt(ceilSeconds(e.RetryAfter), 10))
		}
		if rl := e.RateLimit; rl != nil {
			SetRateLimitHeaders(h, rl)
		}
	}
	code := e.Code
	if code == "" {
		code = "unauthorized"
	}
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
		Scope       string `json:"scope,omitempty"`
	}{code, e.Description, e.Scope})
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	w.Write(append(body, '\n'))
}

// SetRateLimitHeaders sets the RateLimit-Limit, RateLimit-Remaining and
// RateLimit-Reset (seconds) response headers of the IETF HTTPAPI
// rate-limit header draft from rl.
func SetRateLimitHeaders(h http.Header, rl *RateLimit) {
	h.Set("RateLimit-Limit", strconv.FormatInt(rl.Limit, 10))
	h.Set("RateLimit-Remaining", strconv.FormatInt(max(rl.Remaining, 0), 10))
	h.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(rl.Reset), 10))
}

// challenge builds the WWW-Authenticate value (RFC 6750 §3).
func challenge(e *Error) string {
	if e.Code == "" {
		return "Bearer"
	}
	var b strings.Builder
	b.WriteString(`Bearer error=`)
	quote(&b, e.Code)
	if e.Description != "" {
		b.WriteString(`, error_description=`)
		quote(&b, e.Description)
	}
	if e.Scope != "" {
		b.WriteString(`, scope=`)
		quote(&b, e.Scope)
	}
	return b.String()
}

// quote writes s as an RFC 9110 §5.6.4 quoted-string. RFC 6750 §3 limits
// the attribute values to printable ASCII without '"' and '\'; anything
// else is replaced, so a header can never be broken by a value.
func quote(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
