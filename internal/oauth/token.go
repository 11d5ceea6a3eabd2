package oauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

// TokenResponse is a successful token endpoint answer (RFC 6749 §5.1,
// OIDC Core §3.1.3.3).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// Token serves POST /oauth2/token (RFC 6749 §3.2).
func (s *Server) Token() http.Handler { return s.serve(s.token) }

func (s *Server) token(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	gt := f.get("grant_type")
	if gt == "" {
		return badRequest("grant_type is required")
	}
	switch gt {
	case GrantAuthorizationCode, GrantClientCredentials, GrantRefreshToken, GrantDeviceCode:
	default:
		return oerr(http.StatusBadRequest, errUnsupportedGrantType, "grant type %q is not supported", truncate(safeName(gt), 60))
	}
	ctx := r.Context()
	e, err := s.authenticateClient(ctx, r, f)
	if err != nil {
		return err
	}
	c := &e.client
	if !slices.Contains(c.GrantTypes, gt) {
		return oerr(http.StatusBadRequest, errUnauthorizedClient, "the client may not use the %s grant", gt)
	}
	var resp *TokenResponse
	switch gt {
	case GrantClientCredentials:
		resp, err = s.clientCredentials(ctx, c, f)
	case GrantAuthorizationCode:
		resp, err = s.authorizationCode(ctx, c, f)
	case GrantRefreshToken:
		resp, err = s.refresh(ctx, c, f)
	case GrantDeviceCode:
		resp, err = s.deviceToken(ctx, c, f)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// requestedAPI returns the API that the resource parameter of f names
// (RFC 8707 §2), or nil if there is none. The client must be allowed to get
// tokens for it. A token has one audience here, so several resources are
// invalid_target, as one the client may not have is.
func (s *Server) requestedAPI(ctx context.Context, c *store.Client, f form) (*store.API, error) {
	switch rs := f["resource"]; {
	case len(rs) == 0:
		return nil, nil
	case len(rs) > 1:
		return nil, oerr(http.StatusBadRequest, errInvalidTarget, "only one resource may be requested")
	}
	resource := f.get("resource")
	a, err := s.tokens.ResolveAPI(ctx, resource)
	if err != nil || a.Identifier != resource || !slices.Contains(c.APIs, a.ID) {
		return nil, oerr(http.StatusBadRequest, errInvalidTarget, "the client may not get tokens for resource %s", truncate(resource, 100))
	}
	return a, nil
}

// ofGrant checks that the resource a token request of grant g's client
// names, if any, is the grant's audience (RFC 8707 §2.2: a grant's tokens
// are for the resources it was made for).
func ofGrant(requested *store.API, apiID string) error {
	if requested != nil && requested.ID != apiID {
		return oerr(http.StatusBadRequest, errInvalidTarget, "the grant is not for resource %s", truncate(requested.Identifier, 100))
	}
	return nil
}

// selectAPI picks the audience of a request: the API named by the RFC 8707
// resource parameter, else the client's first API, else (for clients that
// only use OpenID Connect) the built-in jeton API.
func (s *Server) selectAPI(ctx context.Context, c *store.Client, f form) (*store.API, error) {
	if a, err := s.requestedAPI(ctx, c, f); a != nil || err != nil {
		return a, err
	}
	ref := tokens.BuiltinAPIName
	if len(c.APIs) > 0 {
		ref = c.APIs[0]
	}
	a, err := s.tokens.ResolveAPI(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("oauth: audience of client %s: %w", c.ID, err)
	}
	return a, nil
}

// selectScopes returns the scopes of a request: the requested ones (RFC
// 6749 §3.3), each allowed to the client and either an OpenID Connect
// scope or one the API defines; or, if none were requested, every API scope
// the client may have.
func selectScopes(c *store.Client, a *store.API, requested string, allowOIDC bool) ([]string, error) {
	if requested == "" {
		var out []string
		for _, sc := range c.Scopes {
			if !isOIDCScope(sc) && slices.Contains(a.Scopes, sc) {
				out = append(out, sc)
			}
		}
		return out, nil
	}
	var out []string
	for sc := range strings.FieldsSeq(requested) {
		if len(out) >= tokens.MaxScopes {
			return nil, oerr(http.StatusBadRequest, errInvalidScope, "too many scopes")
		}
		if slices.Contains(out, sc) {
			continue
		}
		switch {
		case !slices.Contains(c.Scopes, sc):
			return nil, oerr(http.StatusBadRequest, errInvalidScope, "the client may not request scope %q", truncate(sc, 100))
		case isOIDCScope(sc):
			if !allowOIDC {
				return nil, oerr(http.StatusBadRequest, errInvalidScope, "scope %q needs a user; it cannot be used with client credentials", sc)
			}
		case !slices.Contains(a.Scopes, sc):
			return nil, oerr(http.StatusBadRequest, errInvalidScope, "scope %q is not defined by %s", truncate(sc, 100), a.Identifier)
		}
		out = append(out, sc)
	}
	return out, nil
}

// stillAllowed returns the scopes of a grant for api that client c may
// still be issued: an admin may have taken an API or a scope away from the
// client since the user approved the grant, and a grant does not keep what
// its client lost. Each scope must still be the client's, and be an OpenID
// Connect scope or one api defines for a client that still lists api. A
// grant for the built-in API, which selectAPI chooses for a client that
// lists no API, keeps its OpenID Connect scopes unless the client lists
// that API. A client that may no longer have anything of the grant gets
// invalid_grant; a grant with no scopes stays without.
func stillAllowed(c *store.Client, api *store.API, granted []string) ([]string, error) {
	listed := slices.Contains(c.APIs, api.ID)
	if !listed && api.Name != tokens.BuiltinAPIName {
		return nil, invalidGrant("the client may no longer get tokens for the api of this grant")
	}
	out := make([]string, 0, len(granted))
	for _, sc := range granted {
		if slices.Contains(c.Scopes, sc) && (isOIDCScope(sc) || listed && slices.Contains(api.Scopes, sc)) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 && len(granted) > 0 {
		return nil, invalidGrant("the client may no longer have any scope of this grant")
	}
	return out, nil
}

// clientCredentials implements RFC 6749 §4.4. No refresh token is issued
// (§4.4.3).
func (s *Server) clientCredentials(ctx context.Context, c *store.Client, f form) (*TokenResponse, error) {
	api, err := s.selectAPI(ctx, c, f)
	if err != nil {
		return nil, err
	}
	scopes, err := selectScopes(c, api, f.get("scope"), false)
	if err != nil {
		return nil, err
	}
	m, err := s.mint(ctx, issue{client: c, api: api, scopes: scopes, subject: c.ID})
	if err != nil {
		return nil, err
	}
	if m.opaque != nil {
		if err := s.store.CreateToken(ctx, *m.opaque, m.opaqueHash, store.AuditEvent{}); err != nil {
			return nil, err
		}
	}
	return m.resp, nil
}

// issue is what one token response is made of.
type issue struct {
	client   *store.Client
	api      *store.API
	scopes   []string
	subject  string
	grant    *store.Grant // nil for client credentials
	user     *store.User  // set for user grants
	authTime time.Time
	nonce    string
	refresh  bool // issue a refresh token
	idToken  bool // issue an OpenID Connect ID token
}

// minted holds the tokens of a response before they are stored.
type minted struct {
	resp        *TokenResponse
	opaque      *store.Token // the opaque access token to store, if any
	opaqueHash  tokenfmt.Hash
	refresh     *store.RefreshToken
	refreshHash tokenfmt.Hash
}

// accessClaims are the claims of a JWT access token (RFC 9068 §2.2).
type accessClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	Expiry   int64  `json:"exp"`
	IssuedAt int64  `json:"iat"`
	ID       string `json:"jti"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	AuthTime int64  `json:"auth_time,omitempty"`
	// SessionID is the grant the token was issued from (authorization
	// code, refresh token or device code; none for client credentials):
	// revoking the grant revokes every token whose sid names it. "sid" is
	// the registered Session ID claim (OpenID Connect Front-Channel Logout
	// 1.0 §3); RFC 9068 §2.2 allows access tokens further claims.
	SessionID string `json:"sid,omitempty"`
}

// idClaims are the claims of an ID token (OIDC Core §2, §3.1.3.6, §5.1).
type idClaims struct {
	Issuer            string `json:"iss"`
	Subject           string `json:"sub"`
	Audience          string `json:"aud"`
	Expiry            int64  `json:"exp"`
	IssuedAt          int64  `json:"iat"`
	AuthTime          int64  `json:"auth_time"`
	Nonce             string `json:"nonce,omitempty"`
	AccessTokenHash   string `json:"at_hash,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     *bool  `json:"email_verified,omitempty"`
}

// JWT type headers.
const (
	typAccessToken = "at+jwt" // RFC 9068 §2.1
	typIDToken     = "JWT"
)

// mint creates the tokens of one response. Opaque access tokens and
// refresh tokens are returned for the caller to store in the transaction
// its grant needs; JWTs need no storage.
func (s *Server) mint(ctx context.Context, in issue) (*minted, error) {
	now := s.now()
	c := in.client
	ttl := min(c.AccessTokenTTL, s.cfg.MaxAccessTTL)
	m := &minted{resp: &TokenResponse{TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second), Scope: strings.Join(in.scopes, " ")}}
	grantID := ""
	if in.grant != nil {
		grantID = in.grant.ID
	}
	tokID := ids.New(ids.Token, now)
	if c.TokenFormat == store.FormatJWT {
		claims := accessClaims{Issuer: s.cfg.Issuer, Subject: in.subject, Audience: in.api.Identifier,
			Expiry: now.Add(ttl).Unix(), IssuedAt: now.Unix(), ID: tokID, ClientID: c.ID, Scope: m.resp.Scope, SessionID: grantID}
		if !in.authTime.IsZero() {
			claims.AuthTime = in.authTime.Unix()
		}
		jws, err := s.keys.Sign(ctx, c.SigningAlg, typAccessToken, claims)
		if err != nil {
			return nil, fmt.Errorf("oauth: sign access token: %w", err)
		}
		m.resp.AccessToken = jws
	} else {
		secret, err := tokenfmt.Generate(tokenfmt.PrefixAccess)
		if err != nil {
			return nil, err
		}
		m.resp.AccessToken = secret
		m.opaqueHash = tokenfmt.HashOf(secret)
		m.opaque = &store.Token{ID: tokID, APIID: in.api.ID, Name: "access token", Subject: in.subject, Scopes: in.scopes,
			Hint: tokenfmt.Hint(secret), CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(ttl), ClientID: c.ID, GrantID: grantID}
	}
	if in.refresh {
		secret, err := tokenfmt.Generate(tokenfmt.PrefixRefresh)
		if err != nil {
			return nil, err
		}
		m.resp.RefreshToken = secret
		m.refreshHash = tokenfmt.HashOf(secret)
		m.refresh = &store.RefreshToken{Hash: m.refreshHash, GrantID: grantID, CreatedAt: now, ExpiresAt: now.Add(c.RefreshTokenTTL)}
	}
	if in.idToken && in.user != nil {
		claims := idClaims{Issuer: s.cfg.Issuer, Subject: in.user.ID, Audience: c.ID, Expiry: now.Add(s.cfg.IDTokenTTL).Unix(),
			IssuedAt: now.Unix(), AuthTime: in.authTime.Unix(), Nonce: in.nonce,
			AccessTokenHash: halfHash(c.SigningAlg, m.resp.AccessToken)}
		if slices.Contains(in.scopes, ScopeProfile) {
			claims.PreferredUsername = in.user.Username
		}
		if slices.Contains(in.scopes, ScopeEmail) && in.user.Email != "" {
			claims.Email = in.user.Email
			f := false
			claims.EmailVerified = &f
		}
		jws, err := s.keys.Sign(ctx, c.SigningAlg, typIDToken, claims)
		if err != nil {
			return nil, fmt.Errorf("oauth: sign id token: %w", err)
		}
		m.resp.IDToken = jws
	}
	return m, nil
}

// halfHash is the at_hash of an access token (OIDC Core §3.1.3.6): the
// left half of its hash with the hash function of the ID token's alg.
func halfHash(alg, token string) string {
	var h hash.Hash
	if alg == "EdDSA" {
		h = sha512.New() // Ed25519 uses SHA-512 (OIDC Core errata for EdDSA)
	} else {
		h = sha256.New()
	}
	h.Write([]byte(token))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// verifyPKCE checks a code_verifier against the stored challenge (RFC 7636
// §4.6). Only S256 is ever stored.
func verifyPKCE(challenge, method, verifier string) error {
	switch {
	case challenge == "" && verifier == "":
		return nil
	case challenge == "":
		// A verifier for a code issued without a challenge is a downgrade
		// attempt (RFC 9700 §4.8.2).
		return invalidGrant("code_verifier sent for a code issued without code_challenge")
	case verifier == "":
		return invalidGrant("code_verifier is required")
	case !validVerifier(verifier):
		return badRequest("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
	case method != "S256":
		return invalidGrant("unsupported code_challenge_method")
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) != 1 {
		return invalidGrant("code_verifier does not match code_challenge")
	}
	return nil
}

// validVerifier checks RFC 7636 §4.1 syntax; code challenges (base64url of
// 32 bytes, §4.2) pass the same check.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// authorizationCode implements RFC 6749 §4.1.3 with PKCE (RFC 7636).
func (s *Server) authorizationCode(ctx context.Context, c *store.Client, f form) (*TokenResponse, error) {
	code := f.get("code")
	if code == "" {
		return nil, badRequest("code is required")
	}
	if _, err := tokenfmt.Parse(code); err != nil {
		return nil, invalidGrant("the authorization code is invalid, expired or already used")
	}
	// What can be checked without the code is, before it is spent.
	if v := f.get("code_verifier"); v != "" && !validVerifier(v) {
		return nil, badRequest("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
	}
	requested, err := s.requestedAPI(ctx, c, f)
	if err != nil {
		return nil, err
	}
	now := s.now()
	grant := store.Grant{ID: ids.New(ids.Grant, now), ClientID: c.ID, CreatedAt: now}
	h := tokenfmt.HashOf(code)
	// The grant's user, audience and scopes come from the code; the store
	// fills them in from the code row while redeeming it.
	ac, err := s.store.RedeemAuthCode(ctx, h, grant, now, s.event(tokens.Actor{ID: c.ID}, "grant.create", grant.ID, map[string]any{"client_id": c.ID, "via": "authorization_code"}))
	if errors.Is(err, store.ErrUsed) {
		// RFC 6749 §4.1.2 / RFC 9700 §4.5: a second use revokes what the
		// first issued.
		if ac.GrantID != "" {
			s.revokeGrant(ctx, ac.GrantID, "code_reuse", tokens.Actor{ID: c.ID})
		}
		return nil, invalidGrant("the authorization code is invalid, expired or already used")
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidGrant("the authorization code is invalid, expired or already used")
	}
	if err != nil {
		return nil, err
	}
	fail := func(e *Error) (*TokenResponse, error) {
		s.revokeGrant(ctx, grant.ID, "code_exchange_failed", tokens.Actor{ID: c.ID})
		return nil, e
	}
	if ac.ClientID != c.ID {
		return fail(invalidGrant("the authorization code was issued to another client"))
	}
	if ru := f.get("redirect_uri"); ru != ac.RedirectURI && (ac.RedirectURI != "" || !onlyRedirect(c, ru)) {
		return fail(invalidGrant("redirect_uri does not match the authorization request"))
	}
	if err := verifyPKCE(ac.Challenge, ac.ChallengeMethod, f.get("code_verifier")); err != nil {
		var oe *Error
		errors.As(err, &oe)
		return fail(oe)
	}
	if err := ofGrant(requested, ac.APIID); err != nil {
		var oe *Error
		errors.As(err, &oe)
		return fail(oe)
	}
	g, err := s.store.GetGrant(ctx, grant.ID)
	if err != nil {
		return nil, err
	}
	return s.issueForGrant(ctx, c, &g, ac.Nonce)
}

// onlyRedirect reports whether uri is the one redirect URI client c has
// registered: the one an authorization request without redirect_uri was
// answered at (RFC 6749 §3.1.2.3). A token request may name it although
// the authorization request did not, as clients that always send their
// configured redirect URI do.
func onlyRedirect(c *store.Client, uri string) bool {
	return len(c.RedirectURIs) == 1 && c.RedirectURIs[0] == uri
}

// issueForGrant mints and stores the tokens of a new user grant.
//
// The grant was just made from an authorization code or a device code,
// which the user's sign-in (g.AuthTime) approved. A password reset, a
// disable or "sign out everywhere" after that sign-in revokes the grants
// the user had, but this one did not exist yet: it is refused here, as the
// session that approved it would be (users.SessionValid), so a code
// stolen with or before a credential does not outlive its reset.
func (s *Server) issueForGrant(ctx context.Context, c *store.Client, g *store.Grant, nonce string) (*TokenResponse, error) {
	u, err := s.store.GetUser(ctx, g.UserID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		// The code is spent either way; no grant without tokens is left live.
		s.revokeGrant(ctx, g.ID, "code_exchange_failed", tokens.Actor{ID: c.ID})
		return nil, fmt.Errorf("oauth: read the user of grant %s: %w", g.ID, err)
	}
	if err != nil || !users.SessionValid(u, g.AuthTime) {
		reason := "user_unavailable"
		if err == nil && u.DisabledAt.IsZero() {
			reason = "sessions_ended"
		}
		s.revokeGrant(ctx, g.ID, reason, tokens.Actor{ID: c.ID})
		return nil, invalidGrant("the user of this grant no longer exists, is disabled or has signed out since approving it")
	}
	api, err := s.tokens.ResolveAPI(ctx, g.APIID)
	if err != nil {
		s.revokeGrant(ctx, g.ID, "api_deleted", tokens.Actor{ID: c.ID})
		return nil, invalidGrant("the api of this grant no longer exists")
	}
	scopes, err := stillAllowed(c, api, g.Scopes)
	if err != nil {
		s.revokeGrant(ctx, g.ID, "client_changed", tokens.Actor{ID: c.ID})
		return nil, err
	}
	m, err := s.mint(ctx, issue{client: c, api: api, scopes: scopes, subject: g.Subject, grant: g, user: &u,
		authTime: g.AuthTime, nonce: nonce, refresh: slices.Contains(c.GrantTypes, GrantRefreshToken),
		idToken: slices.Contains(scopes, ScopeOpenID)})
	if err != nil {
		return nil, err
	}
	if m.opaque != nil || m.refresh != nil {
		err := s.store.IssueGrantTokens(ctx, g.ID, m.opaque, m.opaqueHash, m.refresh)
		if errors.Is(err, store.ErrRevoked) || errors.Is(err, store.ErrNotFound) {
			return nil, invalidGrant("the grant was revoked")
		}
		if err != nil {
			return nil, err
		}
	}
	return m.resp, nil
}

// revokeGrant revokes a grant and evicts its access tokens, logging
// failures: it runs on paths that already answer with an error.
func (s *Server) revokeGrant(ctx context.Context, grantID, reason string, by tokens.Actor) {
	ev := s.event(by, "grant.revoke", grantID, map[string]any{"reason": reason})
	hashes, err := s.store.RevokeGrant(ctx, grantID, reason, s.now(), ev)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("oauth: revoke grant", "grant", grantID, "reason", reason, "err", err)
		return
	}
	s.tokens.Evict(hashes...)
}

// refresh implements RFC 6749 §6 with rotation on every use and reuse
// detection (RFC 9700 §4.14.2).
func (s *Server) refresh(ctx context.Context, c *store.Client, f form) (*TokenResponse, error) {
	old := f.get("refresh_token")
	if old == "" {
		return nil, badRequest("refresh_token is required")
	}
	if p, err := tokenfmt.Parse(old); err != nil || p != tokenfmt.PrefixRefresh {
		return nil, invalidGrant("the refresh token is invalid, expired or revoked")
	}
	requested, err := s.requestedAPI(ctx, c, f)
	if err != nil {
		return nil, err
	}
	oldHash := tokenfmt.HashOf(old)
	rt, g, err := s.store.GetRefreshToken(ctx, oldHash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidGrant("the refresh token is invalid, expired or revoked")
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if g.ClientID != c.ID {
		// RFC 6749 §6: the refresh token must be bound to the client.
		return nil, invalidGrant("the refresh token is invalid, expired or revoked")
	}
	// Reuse is checked before expiry: a rotated token presented after it
	// expired is still a sign that it leaked (RFC 9700 §4.14.2), and the
	// family it was rotated into may be live.
	if !g.RevokedAt.IsZero() {
		return nil, invalidGrant("the refresh token is invalid, expired or revoked")
	}
	if !rt.UsedAt.IsZero() {
		return s.reused(ctx, c, old, &rt, &g, now)
	}
	if !now.Before(rt.ExpiresAt) {
		return nil, invalidGrant("the refresh token is invalid, expired or revoked")
	}
	if err := ofGrant(requested, g.APIID); err != nil {
		return nil, err
	}
	api, err := s.tokens.ResolveAPI(ctx, g.APIID)
	if err != nil {
		return nil, invalidGrant("the api of this grant no longer exists")
	}
	// The client's registration may have narrowed since the grant: only
	// what it may still have is issued.
	allowed, err := stillAllowed(c, api, g.Scopes)
	if err != nil {
		return nil, err
	}
	scopes := allowed
	if req := f.get("scope"); req != "" {
		// Down-selection (RFC 6749 §6): a subset of the grant's scopes.
		scopes = nil
		for sc := range strings.FieldsSeq(req) {
			switch {
			case !slices.Contains(g.Scopes, sc):
				return nil, oerr(http.StatusBadRequest, errInvalidScope, "scope %q was not granted", truncate(sc, 100))
			case !slices.Contains(allowed, sc):
				return nil, oerr(http.StatusBadRequest, errInvalidScope, "the client may no longer have scope %q", truncate(sc, 100))
			case !slices.Contains(scopes, sc):
				scopes = append(scopes, sc)
			}
		}
	}
	// Disabling or deleting a user revokes or deletes their grants, so the
	// grant's state already answers for the user; the user record itself is
	// read only for the claims of an ID token.
	var u *store.User
	if slices.Contains(scopes, ScopeOpenID) {
		user, err := s.store.GetUser(ctx, g.UserID)
		if err != nil || !user.DisabledAt.IsZero() {
			return nil, invalidGrant("the user of this grant no longer exists or is disabled")
		}
		u = &user
	}
	m, err := s.mint(ctx, issue{client: c, api: api, scopes: scopes, subject: g.Subject, grant: &g, user: u,
		authTime: g.AuthTime, refresh: true, idToken: slices.Contains(scopes, ScopeOpenID)})
	if err != nil {
		return nil, err
	}
	var retry []byte
	var retryUntil time.Time
	if s.cfg.RefreshRetryWindow > 0 {
		if retry, err = s.sealRetry(old, m.resp); err != nil {
			return nil, err
		}
		retryUntil = now.Add(s.cfg.RefreshRetryWindow)
	}
	used, err := s.store.RotateRefreshToken(ctx, oldHash, *m.refresh, m.opaque, m.opaqueHash, retry, retryUntil, now)
	switch {
	case errors.Is(err, store.ErrUsed):
		return s.reused(ctx, c, old, &used, &g, now)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRevoked):
		return nil, invalidGrant("the refresh token is invalid, expired or revoked")
	case err != nil:
		return nil, err
	}
	return m.resp, nil
}

// reused handles a refresh token presented after it was used: a retry
// within the window gets the first answer again; anything else is reuse,
// and the whole grant is revoked (RFC 9700 §4.14.2).
func (s *Server) reused(ctx context.Context, c *store.Client, old string, rt *store.RefreshToken, g *store.Grant, now time.Time) (*TokenResponse, error) {
	if len(rt.Retry) > 0 && now.Before(rt.RetryUntil) {
		if resp, err := s.openRetry(old, rt.Retry); err == nil {
			return resp, nil
		}
	}
	s.revokeGrant(ctx, g.ID, "refresh_reuse", tokens.Actor{ID: c.ID})
	s.audit(ctx, s.event(tokens.Actor{ID: c.ID}, "grant.refresh_reuse", g.ID, map[string]any{"client_id": c.ID, "user_id": g.UserID}))
	return nil, invalidGrant("the refresh token is invalid, expired or revoked")
}

// retryKey derives the key that seals a refresh answer from the refresh
// token it answered: only someone holding that token can open it, and the
// store holds only its hash.
func (s *Server) retryKey(old string) []byte {
	k := s.cfg.MasterKey.Derive("oauth refresh retry")
	mac := hmac.New(sha256.New, k[:])
	mac.Write([]byte(old))
	return mac.Sum(nil)
}

func (s *Server) sealRetry(old string, resp *TokenResponse) ([]byte, error) {
	plain, err := json.Marshal(resp)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(s.retryKey(old))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, nil), nil
}

func (s *Server) openRetry(old string, sealed []byte) (*TokenResponse, error) {
	block, err := aes.NewCipher(s.retryKey(old))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("oauth: sealed retry too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		return nil, err
	}
	var resp TokenResponse
	if err := json.Unmarshal(plain, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
