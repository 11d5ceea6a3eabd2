// Package verify checks Jeton access tokens on a resource server (an API):
// JWT access tokens locally, opaque access tokens and API keys through
// Jeton, with net/http middleware that answers as RFC 6750 requires.
//
// A Verifier discovers the issuer's metadata (RFC 8414), keeps its JSON Web
// Key Set fresh, and verifies:
//
//   - JWT access tokens (RFC 9068) offline: the signature with the key the
//     "kid" header names and only that key's algorithm, "typ" at+jwt, "iss",
//     "aud", "exp", "nbf" and "iat" with a small leeway, and the required
//     scopes;
//   - opaque access tokens and API keys through Jeton's POST /v1/verify,
//     authenticated with the resource server's own Jeton token
//     (Config.Credential), behind a short cache and single-flight, so a
//     burst of one token costs one round trip. Tokens with a rate limit or
//     quota are the exception: Jeton must count every request, so their
//     answers are never cached or shared between requests. (/v1/verify is
//     Jeton's fast form of RFC 7662 token introspection: it also enforces
//     and reports rate limits, quotas and allowed addresses; Claims carries
//     the RFC 7662 §2.2 members a resource server uses.)
//
// With Config.Revocations, the Verifier also follows Jeton's revocation
// feed (GET /v1/revocations/stream, falling back to polling), so a revoked
// JWT, or every JWT of a revoked grant, is refused within milliseconds
// instead of when it expires.
//
// Errors are *Error values wrapping sentinel errors (ErrExpired,
// ErrInsufficientScope, ...); WriteError turns any of them into the RFC 6750
// §3 response. Token strings never appear in errors or log lines.
//
// The package depends only on the standard library and go-jose.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// Defaults and bounds of Config.
const (
	DefaultLeeway           = 30 * time.Second
	MaxLeeway               = 5 * time.Minute
	DefaultCacheTTL         = 10 * time.Second
	MaxCacheTTL             = 5 * time.Minute
	DefaultNegativeCacheTTL = 5 * time.Second
	DefaultCacheSize        = 100_000
	DefaultJWTCacheSize     = 10_000
	DefaultPollInterval     = 5 * time.Second
	DefaultMaxDenylist      = 1_000_000
)

// DefaultAlgorithms are the JWT signature algorithms accepted when
// Config.Algorithms is empty: those Jeton signs with.
var DefaultAlgorithms = []string{"ES256", "RS256", "EdDSA"}

// Config configures a Verifier. Zero values select the documented
// defaults; New rejects values out of range.
type Config struct {
	// Issuer is the Jeton issuer URL, such as "https://auth.example.com".
	// Required. Its metadata is read from Issuer +
	// "/.well-known/oauth-authorization-server" (RFC 8414 §3), and the
	// "issuer" it names must equal Issuer exactly (RFC 8414 §3.3).
	Issuer string
	// Audience is the identifier of the API this Verifier protects (the
	// OAuth audience, such as "https://api.example.com"). Required. A JWT's
	// "aud" must contain it (RFC 9068 §4), and Jeton checks that an opaque
	// token belongs to this API.
	Audience string
	// Credential is the resource server's own Jeton token, with the
	// "verify" (or "verify:<api id>") scope of the built-in jeton API. It
	// authenticates the calls to /v1/verify and to the revocation feed.
	// Empty: only JWT access tokens can be verified (any other token is
	// refused with ErrUnknownToken) and Revocations is not available.
	Credential string
	// HTTPClient makes every request to Jeton. Default: a client with
	// connect, TLS and per-request timeouts. Its Timeout, if any, is not
	// applied to the long-lived revocation stream.
	HTTPClient *http.Client
	// Leeway is the clock skew allowed when checking "exp", "nbf" and
	// "iat". Default 30s, at most 5 minutes; negative means none.
	Leeway time.Duration
	// CacheTTL bounds how long a valid answer from Jeton about an opaque
	// token is reused (never beyond the token's expiry). Default 10s, at
	// most 5 minutes; negative disables the cache. Concurrent requests
	// with one token share one call to Jeton. Tokens whose answer carries a
	// rate limit or quota are exempt from both: Jeton must count each of
	// their requests, so each one calls Jeton.
	CacheTTL time.Duration
	// NegativeCacheTTL is how long a definite rejection from Jeton (not
	// found, revoked, expired, wrong API, forbidden address) is reused.
	// Default 5s, at most 5 minutes; negative disables it. Failures to reach
	// Jeton, rate limits and quotas are never cached.
	NegativeCacheTTL time.Duration
	// CacheSize bounds the number of cached answers (rounded up to a
	// multiple of 64, the cache's shards). Default 100 000.
	CacheSize int
	// JWTCacheSize bounds how many verified JWT access tokens are
	// remembered, so that a token presented again skips its signature
	// check (its expiry, revocation and scopes are checked every time).
	// Default 10 000; negative disables the cache.
	JWTCacheSize int
	// Revocations subscribes to Jeton's revocation feed (GET
	// /v1/revocations/stream), so revoked JWTs are refused before they
	// expire and cached answers are dropped at once. Requires Credential.
	Revocations bool
	// PollInterval is how often GET /v1/revocations is polled while the
	// stream is down. Default 5s.
	PollInterval time.Duration
	// MaxDenylist bounds the number of revocations remembered. Default
	// 1 000 000; when full, expired entries go first, then those that expire
	// soonest.
	MaxDenylist int
	// Algorithms are the JWT signature algorithms accepted, among ES256,
	// ES384, ES512, RS256, RS384, RS512, PS256, PS384, PS512 and EdDSA.
	// Default ES256, RS256 and EdDSA. "none" and HMAC algorithms are never
	// accepted.
	Algorithms []string
	// OnVerify, if set, is called after every Verify with its outcome, for
	// metrics. It runs on the request path and must be cheap.
	OnVerify func(Result)
	// Logger receives background events (key refreshes, revocation feed
	// state, Jeton unreachable). Default: discard.
	Logger *slog.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// withDefaults returns c with defaults filled in, or an error naming the
// first invalid field.
func (c Config) withDefaults() (Config, error) {
	if c.Issuer == "" {
		return c, errors.New("verify: Config.Issuer is required")
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return c, fmt.Errorf("verify: Config.Issuer %q is not an http(s) URL without query or fragment", c.Issuer)
	}
	if c.Audience == "" {
		return c, errors.New("verify: Config.Audience is required")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defaultClient()
	}
	var errs []error
	dur := func(name string, d *time.Duration, def, maxVal time.Duration) {
		switch {
		case *d == 0:
			*d = def
		case *d < 0:
			*d = 0
		case *d > maxVal:
			errs = append(errs, fmt.Errorf("verify: Config.%s %v is above the maximum %v", name, *d, maxVal))
		}
	}
	dur("Leeway", &c.Leeway, DefaultLeeway, MaxLeeway)
	dur("CacheTTL", &c.CacheTTL, DefaultCacheTTL, MaxCacheTTL)
	dur("NegativeCacheTTL", &c.NegativeCacheTTL, DefaultNegativeCacheTTL, MaxCacheTTL)
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.CacheSize <= 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.JWTCacheSize == 0 {
		c.JWTCacheSize = DefaultJWTCacheSize
	}
	if c.MaxDenylist <= 0 {
		c.MaxDenylist = DefaultMaxDenylist
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	for _, a := range c.Algorithms {
		if !asymmetric(jose.SignatureAlgorithm(a)) {
			errs = append(errs, fmt.Errorf("verify: Config.Algorithms: %q is not an accepted JWS algorithm", a))
		}
	}
	c.Algorithms = slices.Clone(c.Algorithms)
	if c.Revocations && c.Credential == "" {
		errs = append(errs, errors.New("verify: Config.Revocations needs a Config.Credential"))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, errors.Join(errs...)
}

// asymmetric reports whether alg is a public-key JWS algorithm (RFC 7518
// §3.1, RFC 8037 §3.1).
func asymmetric(alg jose.SignatureAlgorithm) bool {
	switch alg {
	case jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512,
		jose.PS256, jose.PS384, jose.PS512, jose.EdDSA:
		return true
	}
	return false
}

// requestTimeout bounds each request to Jeton other than the revocation
// stream.
const requestTimeout = 10 * time.Second

func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.MaxIdleConnsPerHost = 256 // verify calls from a busy API reuse connections
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: t}
}

// Kind is the kind of a verified token.
type Kind int

// Token kinds. The zero Kind means the token was not classified (for
// example, the request had none).
const (
	// KindJWT is a JWT access token (RFC 9068), verified locally.
	KindJWT Kind = iota + 1
	// KindOpaque is an opaque access token or an API key, checked through
	// Jeton.
	KindOpaque
)

// String returns "jwt", "opaque" or "unknown", for metric labels.
func (k Kind) String() string {
	switch k {
	case KindJWT:
		return "jwt"
	case KindOpaque:
		return "opaque"
	}
	return "unknown"
}

// Result is the outcome of one Verify call, passed to Config.OnVerify. It
// never holds the token.
type Result struct {
	// Kind of the token, zero if it was not classified.
	Kind Kind
	// Err is nil if the token was accepted, else the error Verify returned.
	Err error
	// Duration is the time Verify took.
	Duration time.Duration
	// Cached reports whether the answer came from a cache: without a call
	// to Jeton (opaque tokens) or without a signature check (JWTs).
	Cached bool
}

// Claims describes a verified token.
type Claims struct {
	// Kind of the token.
	Kind Kind
	// TokenID is the JWT "jti" or the Jeton token id (tok_...).
	TokenID string
	// Subject is who the token acts for (JWT "sub", the token's subject).
	Subject string
	// ClientID is the OAuth client the JWT was issued to ("client_id", RFC
	// 9068 §2.2); empty for opaque tokens.
	ClientID string
	// GrantID is the JWT "sid" (the grant it was issued from); empty
	// otherwise.
	GrantID string
	// Audience is the JWT "aud"; for opaque tokens, Config.Audience.
	Audience []string
	// Scopes are the token's scopes.
	Scopes []string
	// IssuedAt and ExpiresAt are zero when unknown or, for ExpiresAt, when
	// the token never expires.
	IssuedAt, ExpiresAt time.Time
	// Metadata is an API key's metadata (opaque tokens only).
	Metadata json.RawMessage
	// RateLimit is the token's rate-limit state after this request, when
	// it has a rate limit (opaque tokens only).
	RateLimit *RateLimit
	// Quota is the token's quota after this request, when it has one.
	Quota *Quota
}

// HasScope reports whether the token carries scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// hasScopes reports whether the token carries every scope in want.
func (c *Claims) hasScopes(want []string) bool {
	for _, s := range want {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}

// RateLimit is a token's rate-limit state as Jeton reports it.
type RateLimit struct {
	// Limit is the number of requests allowed per window.
	Limit int64
	// Remaining is the number of requests left in the current window.
	Remaining int64
	// Reset is the time until the limit is fully available again.
	Reset time.Duration
}

// Quota is a token's remaining quota.
type Quota struct {
	// Remaining is the number of requests left.
	Remaining int64
}

// Verifier verifies Jeton access tokens for one API. It is safe for
// concurrent use. Close stops its background work.
type Verifier struct {
	cfg      Config
	issuer   string // == cfg.Issuer, as the metadata confirmed
	algs     []jose.SignatureAlgorithm
	base     string // cfg.Issuer without a trailing slash
	keys     *keySet
	jwts     *jwtCache // nil: disabled
	cache    *cache
	limited  *hashSet
	flights  flightGroup
	joined   atomic.Int64 // requests that waited for another's call (tests)
	deny     *denylist
	feed     *feed
	logLimit logLimiter

	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Verifier for cfg. It fetches the issuer's metadata (RFC
// 8414 §3) and its JWKS, and with Config.Revocations reads every live
// revocation, before it returns: an unreachable issuer, a mismatched
// issuer, or a credential the revocation feed refuses fail New with a
// clear error. ctx bounds that start-up only; the background work (key
// refresh, revocation stream) runs until Close.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	return newVerifier(ctx, cfg, hooks{})
}

// hooks lets tests observe internal events.
type hooks struct {
	onEvent func(seq int64) // after a revocation event is applied
}

func newVerifier(ctx context.Context, cfg Config, h hooks) (*Verifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, base: strings.TrimSuffix(cfg.Issuer, "/")}
	for _, a := range cfg.Algorithms {
		v.algs = append(v.algs, jose.SignatureAlgorithm(a))
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	meta, err := v.discover(ctx)
	if err != nil {
		v.cancel()
		return nil, err
	}
	v.issuer = meta.Issuer
	v.keys = newKeySet(v, meta.JWKSURI)
	if err := v.keys.load(ctx); err != nil {
		v.cancel()
		return nil, err
	}
	v.cache = newCache(cfg.CacheSize)
	v.jwts = newJWTCache(cfg.JWTCacheSize)
	v.limited = newHashSet(10_000)
	v.deny = newDenylist(cfg.MaxDenylist)
	if cfg.Revocations {
		v.feed = newFeed(v, h.onEvent)
		if err := v.feed.catchUp(ctx); err != nil {
			v.cancel()
			return nil, fmt.Errorf("verify: revocation feed: %w", err)
		}
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.keys.refreshLoop(v.ctx)
	}()
	if v.feed != nil {
		v.feed.start(v.ctx, &v.wg)
	}
	return v, nil
}

// Close stops the background work (key refresh, revocation feed) and waits
// for it to end. It is idempotent. Verify keeps working with the last keys
// and revocations it knew.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		v.cancel()
		v.wg.Wait()
	})
	return nil
}

// Verify verifies token for this Verifier's API and checks that it carries
// every scope in scopes. A token of three dot-separated parts is a JWT
// access token, verified locally (RFC 9068 §4); any other is an opaque
// access token or API key, checked through Jeton's /v1/verify. On success
// it returns the token's claims: the struct is the caller's, but its
// slices and Metadata may be shared with other callers and must not be
// modified. On failure it returns nil and an *Error wrapping one of the
// sentinel errors, which WriteError turns into the response. ctx bounds a
// call to Jeton, if one is needed.
func (v *Verifier) Verify(ctx context.Context, token string, scopes ...string) (*Claims, error) {
	return v.verify(ctx, token, "", scopes)
}

func (v *Verifier) verify(ctx context.Context, token, clientAddr string, scopes []string) (*Claims, error) {
	var start time.Time
	hook := v.cfg.OnVerify
	if hook != nil {
		start = time.Now()
	}
	var (
		c      *Claims
		e      *Error
		kind   Kind
		cached bool
	)
	switch {
	case token == "":
		e = errNoToken
	case len(token) > MaxTokenLen:
		e = errMalformed
	case looksLikeJWT(token):
		kind = KindJWT
		c, cached, e = v.verifyJWT(ctx, token, scopes)
	default:
		kind = KindOpaque
		c, cached, e = v.verifyOpaque(ctx, token, clientAddr, scopes)
	}
	var err error
	if e != nil {
		err = e
	}
	if hook != nil {
		hook(Result{Kind: kind, Err: err, Duration: time.Since(start), Cached: cached})
	}
	return c, err
}

// VerifyRequest verifies the bearer token of r (BearerToken) with Verify.
// For opaque tokens it sends Jeton the client's address (the IP address
// of r.RemoteAddr, as the verify request's client_ip) so that Jeton can
// apply a token's allowed address ranges; behind a reverse proxy, set
// r.RemoteAddr to the real client's address first. An IPv6 zone
// ("fe80::1%eth0") is dropped, as Jeton does: it names an interface of
// this host, not part of the client's address. If r.RemoteAddr holds no
// IP address (a Unix socket listener reports "@" or ""), Jeton is told the
// address is unknown, and a token restricted to address ranges is refused
// (ErrForbiddenIP): set r.RemoteAddr to the client's address first.
func (v *Verifier) VerifyRequest(r *http.Request, scopes ...string) (*Claims, error) {
	tok, err := BearerToken(r)
	if err != nil {
		if v.cfg.OnVerify != nil {
			v.cfg.OnVerify(Result{Err: err})
		}
		return nil, err
	}
	addr := clientAddr(r.RemoteAddr)
	if addr == "" {
		addr = unknownClientAddr
	}
	return v.verify(r.Context(), tok, addr, scopes)
}

// unknownClientAddr is the client_ip that tells Jeton the client's address
// is unknown: no allowed address range is then satisfied.
const unknownClientAddr = "unknown"

// clientAddr returns the IP address of a RemoteAddr ("host:port" or an
// address alone) as Jeton's client_ip accepts it: without an IPv6 zone,
// an IPv4-mapped IPv6 address as IPv4. It returns "" if remote holds no
// IP address.
func clientAddr(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return addr.WithZone("").Unmap().String()
}

// Require returns middleware that verifies each request's bearer token
// with VerifyRequest and the given scopes. A request that fails gets the
// RFC 6750 §3 response of WriteError; one that passes reaches next with
// the token's claims in its context (FromContext).
func (v *Verifier) Require(scopes ...string) func(http.Handler) http.Handler {
	scopes = slices.Clone(scopes)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := v.VerifyRequest(r, scopes...)
			if err != nil {
				WriteError(w, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
		})
	}
}

type claimsKey struct{}

// NewContext returns a copy of ctx that carries c.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// FromContext returns the claims Require stored in ctx, and reports
// whether there were any.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// tokenKey is the cache and single-flight key of a token as seen from one
// client address: the SHA-256 of both, never the token itself.
func tokenKey(token, clientAddr string) tokenfmt.Hash {
	if clientAddr == "" {
		return tokenfmt.HashOf(token)
	}
	var buf [tokenfmt.MaxLen + 64]byte
	if len(token)+len(clientAddr)+1 > len(buf) {
		return sha256.Sum256([]byte(clientAddr + "\x00" + token))
	}
	n := copy(buf[:], clientAddr)
	buf[n] = 0
	n++
	n += copy(buf[n:], token)
	return sha256.Sum256(buf[:n])
}

// logLimiter keeps a repeated warning (Jeton unreachable, under load) to
// one line per interval.
type logLimiter struct {
	mu   sync.Mutex
	last time.Time
}

func (l *logLimiter) allow(now time.Time, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < every {
		return false
	}
	l.last = now
	return true
}
