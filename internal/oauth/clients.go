package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

// Limits on what a client registration may hold.
const (
	MaxRedirectURIs   = 20
	MaxRedirectURILen = 2000
	MaxClientAPIs     = 20
	MaxRefreshTTL     = 365 * 24 * time.Hour
	maxJWKSBytes      = 64 << 10
	// minRSAKeyBits is the smallest RSA key that may sign a client
	// assertion: RFC 7518 §3.3 and §3.5 require 2048 bits for RS256 and
	// PS256.
	minRSAKeyBits = 2048
)

// ClientParams are the settable fields of a client. Durations of zero take
// the server's defaults.
type ClientParams struct {
	Name         string
	Type         string
	GrantTypes   []string
	RedirectURIs []string
	// PostLogoutRedirectURIs are where RP-initiated logout may return
	// (OpenID Connect RP-Initiated Logout 1.0 §3).
	PostLogoutRedirectURIs []string
	APIs                   []string // API ids, names or identifiers
	Scopes                 []string
	TokenFormat            string
	SigningAlg             string
	AccessTokenTTL         time.Duration
	RefreshTokenTTL        time.Duration
	AuthMethod             string
	JWKS                   json.RawMessage
	JWKSURI                string
}

// ClientUpdate holds the optional changes to a client; nil leaves a field
// as it is. The type and authentication method cannot change.
type ClientUpdate struct {
	Name                   *string
	GrantTypes             []string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	APIs                   []string
	Scopes                 []string
	TokenFormat            *string
	SigningAlg             *string
	AccessTokenTTL         *time.Duration
	RefreshTokenTTL        *time.Duration
	JWKS                   json.RawMessage
	JWKSURI                *string
	Disabled               *bool
}

func invalid(code, format string, args ...any) error {
	return &tokens.InvalidError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (s *Server) event(by tokens.Actor, action, target string, details any) store.AuditEvent {
	ev := store.AuditEvent{Time: s.now(), Actor: by.ID, Action: action, Target: target, RemoteAddr: by.RemoteAddr}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			ev.Details = b
		}
	}
	return ev
}

// CreateClient validates and registers a client. For a confidential client
// authenticating with a secret it returns the secret, which is shown once
// and never stored (only its SHA-256).
func (s *Server) CreateClient(ctx context.Context, p ClientParams, by tokens.Actor) (store.Client, string, error) {
	now := s.now()
	c := store.Client{
		ID: ids.New(ids.Client, now), Name: p.Name, Type: p.Type, GrantTypes: p.GrantTypes, RedirectURIs: p.RedirectURIs,
		PostLogoutRedirectURIs: p.PostLogoutRedirectURIs, Scopes: p.Scopes, TokenFormat: p.TokenFormat, SigningAlg: p.SigningAlg, AccessTokenTTL: p.AccessTokenTTL,
		RefreshTokenTTL: p.RefreshTokenTTL, AuthMethod: p.AuthMethod, JWKS: p.JWKS, JWKSURI: p.JWKSURI,
		CreatedAt: now, UpdatedAt: now,
	}
	if c.Type == "" {
		c.Type = store.ClientConfidential
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken}
	}
	if c.TokenFormat == "" {
		c.TokenFormat = store.FormatOpaque
	}
	if c.SigningAlg == "" {
		c.SigningAlg = "ES256"
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = min(s.cfg.AccessTokenTTL, s.cfg.MaxAccessTTL)
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = s.cfg.RefreshTokenTTL
	}
	if c.AuthMethod == "" {
		c.AuthMethod = AuthSecretBasic
		if c.Type == store.ClientPublic {
			c.AuthMethod = AuthNone
		}
	}
	apis, err := s.resolveAPIs(ctx, p.APIs)
	if err != nil {
		return store.Client{}, "", err
	}
	c.APIs = apis
	if err := s.validateClient(ctx, &c); err != nil {
		return store.Client{}, "", err
	}
	if err := validSigningKeys(c.JWKS); err != nil {
		return store.Client{}, "", err
	}
	var secret string
	var hash *tokenfmt.Hash
	if c.AuthMethod == AuthSecretBasic || c.AuthMethod == AuthSecretPost {
		secret, err = tokenfmt.Generate(tokenfmt.PrefixClientSecret)
		if err != nil {
			return store.Client{}, "", err
		}
		h := tokenfmt.HashOf(secret)
		hash = &h
		c.SecretHint = tokenfmt.Hint(secret)
	}
	ev := s.event(by, "client.create", c.ID, map[string]any{"name": c.Name, "type": c.Type, "grant_types": c.GrantTypes,
		"redirect_uris": c.RedirectURIs, "post_logout_redirect_uris": c.PostLogoutRedirectURIs, "apis": c.APIs, "scopes": c.Scopes, "auth_method": c.AuthMethod})
	if err := s.store.CreateClient(ctx, c, hash, ev); err != nil {
		return store.Client{}, "", err
	}
	return c, secret, nil
}

// resolveAPIs maps API references to ids, refusing unknown APIs and the
// built-in jeton API.
func (s *Server) resolveAPIs(ctx context.Context, refs []string) ([]string, error) {
	if len(refs) > MaxClientAPIs {
		return nil, invalid("invalid_request", "at most %d apis", MaxClientAPIs)
	}
	out := make([]string, 0, len(refs))
	for _, ref := range refs {
		a, err := s.tokens.ResolveAPI(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return nil, invalid("unknown_api", "api %q does not exist", ref)
		}
		if err != nil {
			return nil, err
		}
		if a.Builtin {
			return nil, invalid("invalid_request", "clients cannot get tokens for the built-in jeton api")
		}
		if !slices.Contains(out, a.ID) {
			out = append(out, a.ID)
		}
	}
	return out, nil
}

// validateClient checks a complete client registration.
func (s *Server) validateClient(ctx context.Context, c *store.Client) error {
	if err := tokens.ValidateName("name", c.Name, true); err != nil {
		return err
	}
	switch c.Type {
	case store.ClientConfidential, store.ClientPublic:
	default:
		return invalid("invalid_request", "type must be confidential or public")
	}
	if len(c.GrantTypes) > 4 {
		return invalid("invalid_request", "grant_types lists a grant twice")
	}
	for i, g := range c.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken, GrantDeviceCode:
		case GrantClientCredentials:
			if c.Type == store.ClientPublic {
				return invalid("invalid_request", "public clients cannot use client_credentials")
			}
		case "password", "implicit", "token":
			return invalid("invalid_request", "grant type %q is not supported (RFC 9700 §2.4)", g)
		default:
			return invalid("invalid_request", "unknown grant type %q", g)
		}
		if slices.Contains(c.GrantTypes[:i], g) {
			return invalid("invalid_request", "grant type %q is listed twice", g)
		}
	}
	if slices.Contains(c.GrantTypes, GrantRefreshToken) && !slices.Contains(c.GrantTypes, GrantAuthorizationCode) && !slices.Contains(c.GrantTypes, GrantDeviceCode) {
		return invalid("invalid_request", "refresh_token needs authorization_code or device_code")
	}
	if err := validRedirectURIs("redirect_uris", c.RedirectURIs); err != nil {
		return err
	}
	if err := validRedirectURIs("post_logout_redirect_uris", c.PostLogoutRedirectURIs); err != nil {
		return err
	}
	if slices.Contains(c.GrantTypes, GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		return invalid("invalid_redirect_uri", "authorization_code needs at least one redirect_uri")
	}
	if err := tokens.ValidateScopes(c.Scopes); err != nil {
		return err
	}
	for _, sc := range c.Scopes {
		if isOIDCScope(sc) {
			continue
		}
		found := false
		for _, id := range c.APIs {
			if a, err := s.tokens.ResolveAPI(ctx, id); err == nil && slices.Contains(a.Scopes, sc) {
				found = true
				break
			}
		}
		if !found {
			return invalid("invalid_scope", "scope %q is neither an OpenID Connect scope nor defined by one of the client's apis", sc)
		}
	}
	switch c.TokenFormat {
	case store.FormatOpaque, store.FormatJWT:
	default:
		return invalid("invalid_request", "token_format must be opaque or jwt")
	}
	if !slices.Contains(signing.Algorithms, c.SigningAlg) {
		return invalid("invalid_request", "signing_alg must be one of %s", strings.Join(signing.Algorithms, ", "))
	}
	if c.AccessTokenTTL < time.Second || c.AccessTokenTTL > s.cfg.MaxAccessTTL {
		return invalid("invalid_expiry", "access_token_ttl must be between 1 and %d seconds", int64(s.cfg.MaxAccessTTL.Seconds()))
	}
	if c.RefreshTokenTTL < time.Minute || c.RefreshTokenTTL > MaxRefreshTTL {
		return invalid("invalid_expiry", "refresh_token_ttl must be between 60 and %d seconds", int64(MaxRefreshTTL.Seconds()))
	}
	switch c.AuthMethod {
	case AuthNone:
		if c.Type != store.ClientPublic {
			return invalid("invalid_request", "confidential clients must authenticate: use client_secret_basic, client_secret_post or private_key_jwt")
		}
	case AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT:
		if c.Type == store.ClientPublic {
			return invalid("invalid_request", "public clients cannot keep a credential: token_endpoint_auth_method must be none")
		}
	default:
		return invalid("invalid_request", "token_endpoint_auth_method must be client_secret_basic, client_secret_post, private_key_jwt or none")
	}
	if c.AuthMethod == AuthPrivateKeyJWT {
		if (len(c.JWKS) == 0) == (c.JWKSURI == "") {
			return invalid("invalid_request", "private_key_jwt needs exactly one of jwks and jwks_uri")
		}
		if len(c.JWKS) > 0 {
			if _, err := parsePublicJWKS(c.JWKS); err != nil {
				return err
			}
		}
		if c.JWKSURI != "" {
			if err := validFetchURL(c.JWKSURI); err != nil {
				return err
			}
		}
	} else if len(c.JWKS) > 0 || c.JWKSURI != "" {
		return invalid("invalid_request", "jwks and jwks_uri are only for private_key_jwt")
	}
	return nil
}

// validRedirectURIs checks the list of redirect URIs named field: at most
// MaxRedirectURIs, each valid, none twice.
func validRedirectURIs(field string, uris []string) error {
	if len(uris) > MaxRedirectURIs {
		return invalid("invalid_redirect_uri", "at most %d %s", MaxRedirectURIs, field)
	}
	for i, u := range uris {
		if err := validRedirectURI(field, u); err != nil {
			return err
		}
		if slices.Contains(uris[:i], u) {
			return invalid("invalid_redirect_uri", "%s lists %q twice", field, u)
		}
	}
	return nil
}

// validRedirectURI enforces RFC 9700 §2.1 / RFC 8252 §7 on a URI of the
// list named field: absolute, no fragment, https, http only to a loopback
// address, or a private-use scheme for native apps.
func validRedirectURI(field, raw string) error {
	bad := func(why string) error {
		return invalid("invalid_redirect_uri", "%s: %q %s", field, truncate(raw, 100), why)
	}
	if len(raw) > MaxRedirectURILen {
		return bad(fmt.Sprintf("is over %d characters", MaxRedirectURILen))
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return bad("is not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("must not have a fragment")
	}
	if u.User != nil {
		return bad("must not carry user information")
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return bad("has no host")
		}
	case "http":
		if !isLoopback(u.Hostname()) {
			return bad("uses http for a host that is not a loopback address; use https")
		}
	case "javascript", "data", "file", "vbscript", "blob":
		return bad("uses a forbidden scheme")
	default:
		// Private-use URI schemes of native apps (RFC 8252 §7.1) are
		// reverse domain names.
		if !strings.Contains(u.Scheme, ".") {
			return bad("uses a custom scheme that is not a reverse domain name (e.g. com.example.app)")
		}
	}
	return nil
}

// redirectRegistered reports whether given is one of the registered
// redirect URIs: the same string (RFC 9700 §4.1.3), except that the port
// of an http URI on a loopback IP literal may differ, since a native app
// listens on whatever port the system gives it (RFC 8252 §7.3; RFC 9700
// §2.1 makes the same exception). The rest of such a URI, path and query
// included, must still match exactly; "localhost" gets no exception (RFC
// 8252 §8.3).
func redirectRegistered(registered []string, given string) bool {
	if slices.Contains(registered, given) {
		return true
	}
	portless, ok := loopbackWithoutPort(given)
	if !ok {
		return false
	}
	return slices.ContainsFunc(registered, func(r string) bool {
		rp, ok := loopbackWithoutPort(r)
		return ok && rp == portless
	})
}

// loopbackWithoutPort returns raw without its port if it is an http URI
// whose host is a loopback IP literal.
func loopbackWithoutPort(raw string) (string, bool) {
	const scheme = "http://"
	if !strings.HasPrefix(raw, scheme) {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || !strings.HasPrefix(raw[len(scheme):], u.Host) {
		return "", false
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil || !ip.IsLoopback() || ip.Zone() != "" {
		return "", false
	}
	host := u.Hostname()
	if ip.Is6() {
		host = "[" + host + "]"
	}
	return scheme + host + raw[len(scheme)+len(u.Host):], true
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return invalid("invalid_request", "jwks_uri must be an https URL (http only for loopback)")
	}
	return nil
}

// validSigningKeys checks a client's JWK set as it is registered, which
// validateClient has parsed: every key must be able to sign the client's
// assertions (signingKeyProblem). A registration may not hold a key that
// would be ignored.
func validSigningKeys(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	set, err := parsePublicJWKS(raw)
	if err != nil {
		return err
	}
	for i := range set.Keys {
		k := &set.Keys[i]
		if problem := signingKeyProblem(k); problem != "" {
			name := fmt.Sprintf("#%d", i+1)
			if k.KeyID != "" {
				name = fmt.Sprintf("%q", truncate(k.KeyID, 40))
			}
			return invalid("invalid_request", "jwks key %s %s", name, problem)
		}
	}
	return nil
}

// signingKeyProblem returns why k cannot verify a client assertion, or ""
// if it can: it must be a valid RSA, EC or Ed25519 public key, an RSA one
// of at least minRSAKeyBits (RFC 7518 §3.3, §3.5), and not marked for
// encryption (RFC 7517 §4.2).
func signingKeyProblem(k *jose.JSONWebKey) string {
	if !k.Valid() || !k.IsPublic() {
		return "is not a valid public key"
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		if n := key.N.BitLen(); n < minRSAKeyBits {
			return fmt.Sprintf("is a %d-bit RSA key; RSA keys need at least %d bits (RFC 7518 §3.3, §3.5)", n, minRSAKeyBits)
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return "is not an RSA, EC or Ed25519 key"
	}
	if k.Use == "enc" {
		return `is for encryption ("use": "enc"); client assertions need a signing key (RFC 7517 §4.2)`
	}
	return ""
}

// parsePublicJWKS parses a client's JWK set, refusing private keys and
// symmetric keys.
func parsePublicJWKS(raw []byte) (*jose.JSONWebKeySet, error) {
	if len(raw) > maxJWKSBytes {
		return nil, invalid("invalid_request", "jwks is over %d bytes", maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, invalid("invalid_request", "jwks is not a JWK set: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, invalid("invalid_request", "jwks has no keys")
	}
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() {
			return nil, invalid("invalid_request", "jwks must hold only valid public keys")
		}
	}
	return &set, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// GetClient returns a client.
func (s *Server) GetClient(ctx context.Context, id string) (store.Client, error) {
	return s.store.GetClient(ctx, id)
}

// ListClients returns one page of clients.
func (s *Server) ListClients(ctx context.Context, after string, limit int) ([]store.Client, string, error) {
	return s.store.ListClients(ctx, after, limit)
}

// UpdateClient applies u to a client.
func (s *Server) UpdateClient(ctx context.Context, id string, u ClientUpdate, by tokens.Actor) (store.Client, error) {
	var apis []string
	if u.APIs != nil {
		var err error
		if apis, err = s.resolveAPIs(ctx, u.APIs); err != nil {
			return store.Client{}, err
		}
	}
	var changed []string
	note := func(name string, set bool) {
		if set {
			changed = append(changed, name)
		}
	}
	note("name", u.Name != nil)
	note("grant_types", u.GrantTypes != nil)
	note("redirect_uris", u.RedirectURIs != nil)
	note("post_logout_redirect_uris", u.PostLogoutRedirectURIs != nil)
	note("apis", u.APIs != nil)
	note("scopes", u.Scopes != nil)
	note("token_format", u.TokenFormat != nil)
	note("signing_alg", u.SigningAlg != nil)
	note("access_token_ttl", u.AccessTokenTTL != nil)
	note("refresh_token_ttl", u.RefreshTokenTTL != nil)
	note("jwks", u.JWKS != nil)
	note("jwks_uri", u.JWKSURI != nil)
	note("disabled", u.Disabled != nil)
	c, err := s.store.UpdateClient(ctx, id, func(c *store.Client) error {
		if u.Name != nil {
			c.Name = *u.Name
		}
		if u.GrantTypes != nil {
			c.GrantTypes = u.GrantTypes
		}
		if u.RedirectURIs != nil {
			c.RedirectURIs = u.RedirectURIs
		}
		if u.PostLogoutRedirectURIs != nil {
			c.PostLogoutRedirectURIs = u.PostLogoutRedirectURIs
		}
		if u.APIs != nil {
			c.APIs = apis
		}
		if u.Scopes != nil {
			c.Scopes = u.Scopes
		}
		if u.TokenFormat != nil {
			c.TokenFormat = *u.TokenFormat
		}
		if u.SigningAlg != nil {
			c.SigningAlg = *u.SigningAlg
		}
		if u.AccessTokenTTL != nil {
			c.AccessTokenTTL = *u.AccessTokenTTL
		}
		if u.RefreshTokenTTL != nil {
			c.RefreshTokenTTL = *u.RefreshTokenTTL
		}
		if u.JWKS != nil {
			c.JWKS = u.JWKS
		}
		if u.JWKSURI != nil {
			c.JWKSURI = *u.JWKSURI
		}
		if u.Disabled != nil {
			if *u.Disabled && c.DisabledAt.IsZero() {
				c.DisabledAt = s.now()
			} else if !*u.Disabled {
				c.DisabledAt = time.Time{}
			}
		}
		c.UpdatedAt = s.now()
		if err := s.validateClient(ctx, c); err != nil {
			return err
		}
		if u.JWKS == nil {
			// A key registered before keys were checked stays: it is
			// not used (checkAssertion), and refusing every other
			// change, disabling the client included, until the jwks
			// is replaced would help no one.
			return nil
		}
		return validSigningKeys(c.JWKS)
	}, s.event(by, "client.update", id, map[string]any{"changed": changed}))
	if err != nil {
		return store.Client{}, err
	}
	s.clients.forget(id)
	return c, nil
}

// RotateClientSecret gives a confidential client a new secret. The old one
// keeps working for grace (at most tokens.MaxGracePeriod).
func (s *Server) RotateClientSecret(ctx context.Context, id string, grace time.Duration, by tokens.Actor) (store.Client, string, error) {
	if grace < 0 || grace > tokens.MaxGracePeriod {
		return store.Client{}, "", invalid("invalid_request", "grace_period must be between 0 and %d seconds", int(tokens.MaxGracePeriod.Seconds()))
	}
	cur, err := s.store.GetClient(ctx, id)
	if err != nil {
		return store.Client{}, "", err
	}
	if cur.AuthMethod != AuthSecretBasic && cur.AuthMethod != AuthSecretPost {
		return store.Client{}, "", invalid("invalid_request", "client %s does not authenticate with a secret", id)
	}
	secret, err := tokenfmt.Generate(tokenfmt.PrefixClientSecret)
	if err != nil {
		return store.Client{}, "", err
	}
	now := s.now()
	hint := tokenfmt.Hint(secret)
	c, err := s.store.RotateClientSecret(ctx, id, tokenfmt.HashOf(secret), hint, now.Add(grace), now,
		s.event(by, "client.rotate_secret", id, map[string]any{"grace_period_seconds": int64(grace.Seconds()), "hint": hint}))
	if err != nil {
		return store.Client{}, "", err
	}
	s.clients.forget(id)
	return c, secret, nil
}

// DeleteClient deletes a client and everything issued to it.
func (s *Server) DeleteClient(ctx context.Context, id string, by tokens.Actor) error {
	hashes, err := s.store.DeleteClient(ctx, id, s.event(by, "client.delete", id, nil))
	if err != nil {
		return err
	}
	s.tokens.Evict(hashes...)
	s.clients.forget(id)
	return nil
}

// clientCache keeps clients and their secret hashes for a short time, so
// that client authentication on the token endpoint does not read the store
// on every request. Local changes drop entries at once; other nodes' changes
// are seen within the TTL.
type clientCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*cachedClient
	// gen counts clears: a load that began before one does not store
	// what it read, which may predate the change the clear announced.
	gen uint64
}

// clear drops every cached client (another node changed one).
func (cc *clientCache) clear() {
	cc.mu.Lock()
	clear(cc.m)
	cc.gen++
	cc.mu.Unlock()
}

type cachedClient struct {
	client  store.Client
	secrets []store.Secret
	loaded  time.Time
}

const maxCachedClients = 10000

func (cc *clientCache) forget(id string) {
	cc.mu.Lock()
	delete(cc.m, id)
	cc.mu.Unlock()
}

// client returns the client with its secrets, from the cache or the store.
func (s *Server) client(ctx context.Context, id string) (*cachedClient, error) {
	now := time.Now()
	cc := &s.clients
	cc.mu.Lock()
	e, gen := cc.m[id], cc.gen
	cc.mu.Unlock()
	if e != nil && now.Sub(e.loaded) < cc.ttl {
		return e, nil
	}
	if !ids.Valid(ids.Client, id) {
		return nil, store.ErrNotFound
	}
	c, err := s.store.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	e = &cachedClient{client: c, loaded: now}
	if c.AuthMethod == AuthSecretBasic || c.AuthMethod == AuthSecretPost {
		if e.secrets, err = s.store.ClientSecrets(ctx, id); err != nil {
			return nil, err
		}
	}
	cc.mu.Lock()
	if cc.gen == gen {
		if len(cc.m) >= maxCachedClients {
			cc.evict(now)
		}
		cc.m[id] = e
	}
	cc.mu.Unlock()
	return e, nil
}

// evict makes room in a full cache: it drops the entries past their TTL
// and, if that frees less than a tenth of the cache, arbitrary others (Go's
// map order) until it does. Emptying the whole cache instead would send
// every client's next request to the store at once. cc.mu must be held.
func (cc *clientCache) evict(now time.Time) {
	for id, e := range cc.m {
		if now.Sub(e.loaded) >= cc.ttl {
			delete(cc.m, id)
		}
	}
	for id := range cc.m {
		if len(cc.m) < maxCachedClients*9/10 {
			break
		}
		delete(cc.m, id)
	}
}

// checkSecret reports whether secret is one of the client's live secrets,
// comparing hashes in constant time.
func (e *cachedClient) checkSecret(secret string, now time.Time) bool {
	if _, err := tokenfmt.Parse(secret); err != nil {
		return false
	}
	h := tokenfmt.HashOf(secret)
	ok := 0
	for _, sec := range e.secrets {
		live := sec.ExpiresAt.IsZero() || now.Before(sec.ExpiresAt)
		if subtle.ConstantTimeCompare(h[:], sec.Hash[:]) == 1 && live {
			ok = 1
		}
	}
	return ok == 1
}
