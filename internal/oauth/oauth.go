// Package oauth is Jeton's OAuth 2.0 and OpenID Connect authorization
// server: client management and authentication, the token endpoint with the
// client credentials, authorization code (with PKCE), refresh token and
// device code grants, the authorization and device pages, userinfo, and the
// discovery documents.
//
// The RFCs are the specification wherever this code is silent; where they
// leave a choice it follows the OAuth 2.0 Security Best Current Practice
// (RFC 9700) and OAuth 2.1.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/throttle"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
	"github.com/jetonhq/jeton/internal/web"
)

// Grant types (RFC 6749 §4, RFC 8628 §3.4).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// Client authentication methods (RFC 7591 §2, OIDC Core §9).
const (
	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthNone          = "none"
)

// OpenID Connect scopes (OIDC Core §5.4, §11). They are granted by Jeton
// itself, not by an API.
const (
	ScopeOpenID        = "openid"
	ScopeProfile       = "profile"
	ScopeEmail         = "email"
	ScopeOfflineAccess = "offline_access"
)

// oidcScopeDescriptions says on the consent and device pages what each
// OpenID Connect scope lets the application do, since a user cannot be
// expected to know what "openid" or "offline_access" means.
var oidcScopeDescriptions = map[string]string{
	ScopeOpenID:        "Sign you in with your account",
	ScopeProfile:       "See your username",
	ScopeEmail:         "See your email address",
	ScopeOfflineAccess: "Keep its access while you are away",
}

// scopeDescriptions returns what the consent and device pages say about
// the scopes of a request for api: the API's own words for its scopes, and
// ours for OpenID Connect's.
func scopeDescriptions(api *store.API) map[string]string {
	if len(api.ScopeDescriptions) == 0 {
		return oidcScopeDescriptions
	}
	out := maps.Clone(api.ScopeDescriptions)
	maps.Copy(out, oidcScopeDescriptions)
	return out
}

func isOIDCScope(s string) bool {
	return s == ScopeOpenID || s == ScopeProfile || s == ScopeEmail || s == ScopeOfflineAccess
}

// Config configures a Server. Zero durations take the documented defaults.
type Config struct {
	Issuer    string             // required: the public base URL, e.g. https://auth.example.com
	Store     store.Store        // required
	Tokens    *tokens.Service    // required: opaque access tokens and the API index
	Users     *users.Service     // required
	Keys      *signing.Ring      // required
	Pages     *web.Pages         // required
	MasterKey *signing.MasterKey // required: seals refresh retry answers
	Logger    *slog.Logger
	Now       func() time.Time
	// ClientIP returns the address of the client of a request (the
	// connection's, or a trusted proxy's header); default the connection's.
	ClientIP func(*http.Request) netip.Addr
	// OnError, if set, is called with "oauth" whenever a request fails
	// for a reason of the server's (the store, most often), and is
	// answered server_error or an error page: for the store-errors metric.
	OnError func(op string)

	CodeTTL         time.Duration // authorization code lifetime; default 1m
	DeviceCodeTTL   time.Duration // default 10m
	DeviceInterval  time.Duration // minimum polling interval; default 5s
	AccessTokenTTL  time.Duration // default for clients that set none; default 1h
	MaxAccessTTL    time.Duration // upper bound of any client's access token lifetime; default and maximum 24h (store.RevocationTTL)
	RefreshTokenTTL time.Duration // default for clients that set none; default 30 days
	IDTokenTTL      time.Duration // default 1h
	ClientCacheTTL  time.Duration // how long a client and its secrets are cached on a node; default 2s
	// RefreshRetryWindow is how long after a refresh token was used a
	// concurrent retry with the same token gets the same answer instead of
	// tripping reuse detection. Default 0 (none); at most MaxRetryWindow.
	RefreshRetryWindow time.Duration
	JanitorInterval    time.Duration // default 1h
	Retention          time.Duration // how long used codes and revoked grants are kept; default 30 days
}

// MaxRetryWindow bounds Config.RefreshRetryWindow.
const MaxRetryWindow = 5 * time.Second

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ClientIP == nil {
		c.ClientIP = func(r *http.Request) netip.Addr {
			ap, _ := netip.ParseAddrPort(r.RemoteAddr)
			return ap.Addr().Unmap()
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CodeTTL, time.Minute)
	def(&c.DeviceCodeTTL, 10*time.Minute)
	def(&c.DeviceInterval, 5*time.Second)
	def(&c.AccessTokenTTL, time.Hour)
	def(&c.MaxAccessTTL, 24*time.Hour)
	// A grant's revocation entry lives store.RevocationTTL; a JWT access
	// token from that grant must not outlive it, or a resource server
	// would forget the revocation while the token is still valid.
	c.MaxAccessTTL = min(c.MaxAccessTTL, store.RevocationTTL)
	def(&c.RefreshTokenTTL, 30*24*time.Hour)
	def(&c.IDTokenTTL, time.Hour)
	def(&c.ClientCacheTTL, 2*time.Second)
	def(&c.JanitorInterval, time.Hour)
	def(&c.Retention, 30*24*time.Hour)
	if c.RefreshRetryWindow < 0 {
		c.RefreshRetryWindow = 0
	}
	c.Issuer = strings.TrimRight(c.Issuer, "/")
	return c
}

// Server is the authorization server. Its handlers are mounted by the
// caller's router; see the methods that return http.Handlers.
type Server struct {
	cfg         Config
	store       store.Store
	tokens      *tokens.Service
	users       *users.Service
	keys        *signing.Ring
	pages       *web.Pages
	log         *slog.Logger
	clients     clientCache
	jwks        jwksCache // fetched jwks_uri documents of private_key_jwt clients
	endpoints   endpoints
	codeGuesses *throttle.Throttle    // wrong user codes on the device page
	authLog     *throttle.AuditBudget // which failed client authentications are audited

	stop chan struct{}
	wg   sync.WaitGroup
}

type endpoints struct {
	authorize, token, device, deviceAuth, userinfo, jwks, revoke, introspect, endSession string
}

// New returns a Server. Close stops its janitor.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.Store == nil || cfg.Tokens == nil || cfg.Users == nil || cfg.Keys == nil || cfg.Pages == nil || cfg.MasterKey == nil:
		return nil, errors.New("oauth: Store, Tokens, Users, Keys, Pages and MasterKey are required")
	case cfg.RefreshRetryWindow > MaxRetryWindow:
		return nil, fmt.Errorf("oauth: refresh retry window %v is over the maximum %v", cfg.RefreshRetryWindow, MaxRetryWindow)
	}
	if err := ValidIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	iss := cfg.Issuer
	s := &Server{
		cfg: cfg, store: cfg.Store, tokens: cfg.Tokens, users: cfg.Users, keys: cfg.Keys, pages: cfg.Pages, log: cfg.Logger,
		clients:     clientCache{ttl: cfg.ClientCacheTTL, m: map[string]*cachedClient{}},
		jwks:        jwksCache{m: map[string]*fetchedJWKS{}},
		codeGuesses: newCodeGuesses(),
		authLog:     throttle.NewAuditBudget(clientAuthFailuresPerMinute, clientAuthFailuresPerMinuteInAll, time.Minute),
		endpoints: endpoints{
			authorize: iss + "/oauth2/authorize", token: iss + "/oauth2/token", device: iss + "/device",
			deviceAuth: iss + "/oauth2/device_authorization", userinfo: iss + "/oauth2/userinfo",
			jwks: iss + "/.well-known/jwks.json", revoke: iss + "/oauth2/revoke", introspect: iss + "/oauth2/introspect",
			endSession: iss + "/oauth2/logout",
		},
		stop: make(chan struct{}),
	}
	s.wg.Go(s.janitorLoop)
	if w, ok := cfg.Store.(clientsWatcher); ok {
		changed := w.ClientsChanged() // while the cache is empty
		s.wg.Go(func() { s.forgetChangedClients(w, changed) })
	}
	return s, nil
}

// clientsWatcher is implemented by stores that say when an OAuth client
// or its secrets changed, on this node or (PostgreSQL) another.
type clientsWatcher interface {
	ClientsChanged() <-chan struct{}
}

// forgetChangedClients empties the client cache whenever w says a client
// changed (first when changed, taken while the cache was empty, is
// closed), until Close: a secret rotated, revoked as leaked or deleted on
// another node stops working here within milliseconds, not at the end of
// the cache's TTL.
func (s *Server) forgetChangedClients(w clientsWatcher, changed <-chan struct{}) {
	for {
		select {
		case <-s.stop:
			return
		case <-changed:
			// Taken before the clear: a change after it closes this one.
			changed = w.ClientsChanged()
			s.clients.clear()
		}
	}
}

// Close stops the background janitor.
func (s *Server) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// janitorBatch is how many rows the janitor deletes per transaction.
const janitorBatch = 500

func (s *Server) janitorLoop() {
	t := time.NewTicker(s.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.PurgeExpired(context.Background())
		}
	}
}

// PurgeExpired deletes used and expired codes, refresh tokens and revoked
// grants older than the retention period, and the ids of client
// assertions that no node can accept any more, in bounded batches.
func (s *Server) PurgeExpired(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	cutoff := now.Add(-s.cfg.Retention)
	total := 0
	for _, purge := range []func() (int, error){
		func() (int, error) { return s.store.PurgeGrants(ctx, cutoff, janitorBatch) },
		func() (int, error) {
			return s.store.PurgeClientAssertions(ctx, now.Add(-assertionPurgeDelay), janitorBatch)
		},
	} {
		for {
			n, err := purge()
			total += n
			if err != nil {
				s.log.Error("oauth janitor", "err", err)
				return total, err
			}
			if n < janitorBatch {
				break
			}
			select {
			case <-s.stop:
				return total, nil
			default:
			}
		}
	}
	return total, nil
}

func (s *Server) clientIP(r *http.Request) netip.Addr { return s.cfg.ClientIP(r) }

func (s *Server) remote(r *http.Request) string { return s.cfg.ClientIP(r).String() }

func (s *Server) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Millisecond) }

// ValidIssuer checks an issuer identifier: an http(s) URL with a host and
// no query or fragment (RFC 8414 §2).
func ValidIssuer(iss string) error {
	u, err := url.Parse(iss)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.Contains(iss, "#") {
		return fmt.Errorf("oauth: issuer %q must be an http(s) URL without query or fragment", iss)
	}
	return nil
}

// Issuer returns the issuer identifier (RFC 8414 §2).
func (s *Server) Issuer() string { return s.cfg.Issuer }

func (s *Server) audit(ctx context.Context, ev store.AuditEvent) {
	if ev.Time.IsZero() {
		ev.Time = s.now()
	}
	if err := s.store.AppendAudit(ctx, ev); err != nil {
		s.log.Error("oauth: audit", "action", ev.Action, "err", err)
	}
}
