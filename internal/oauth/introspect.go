package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

// Introspection is an RFC 7662 §2.2 answer for an active token.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Audience  string `json:"aud,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	ID        string `json:"jti,omitempty"`
	TokenType string `json:"token_type,omitempty"`
}

// Handles reports whether tok is a kind of token this package introspects
// and revokes (JWT access tokens and refresh tokens); opaque access tokens
// and API keys go through the token service's verify path.
func Handles(tok string) bool {
	return strings.Count(tok, ".") == 2 || strings.HasPrefix(tok, tokenfmt.PrefixRefresh+"_")
}

// Introspect answers RFC 7662 for a JWT access token or a refresh token.
// allowedAPIs limits the audiences the caller may learn about (nil: any).
// An inactive token is (nil, nil); a JWT access token is inactive once it,
// the grant it was issued from (its sid), or its client is revoked (the
// client was deleted).
func (s *Server) Introspect(ctx context.Context, tok string, allowedAPIs []string) (*Introspection, error) {
	if strings.Count(tok, ".") == 2 {
		c, api, ok := s.accessJWT(ctx, tok, 0)
		if !ok || (allowedAPIs != nil && !slices.Contains(allowedAPIs, api.ID)) {
			return nil, nil
		}
		revoked, err := s.store.IsRevoked(ctx, c.ID, c.SessionID, c.ClientID)
		if err != nil || revoked {
			return nil, err
		}
		return &Introspection{Active: true, Scope: c.Scope, ClientID: c.ClientID, Subject: c.Subject,
			Audience: c.Audience, Issuer: s.cfg.Issuer, ExpiresAt: c.Expiry, IssuedAt: c.IssuedAt, ID: c.ID, TokenType: "Bearer"}, nil
	}
	rt, g, ok, err := s.liveRefresh(ctx, tok)
	if err != nil || !ok {
		return nil, err
	}
	if allowedAPIs != nil && !slices.Contains(allowedAPIs, g.APIID) {
		return nil, nil
	}
	out := &Introspection{Active: true, Scope: strings.Join(g.Scopes, " "), ClientID: g.ClientID, Subject: g.Subject,
		Issuer: s.cfg.Issuer, ExpiresAt: rt.ExpiresAt.Unix(), IssuedAt: rt.CreatedAt.Unix(), TokenType: "refresh_token"}
	if a, err := s.tokens.ResolveAPI(ctx, g.APIID); err == nil {
		out.Audience = a.Identifier
	}
	return out, nil
}

// liveRefresh returns a refresh token and its grant if it is unused,
// unexpired and its grant live.
func (s *Server) liveRefresh(ctx context.Context, tok string) (store.RefreshToken, store.Grant, bool, error) {
	if p, err := tokenfmt.Parse(tok); err != nil || p != tokenfmt.PrefixRefresh {
		return store.RefreshToken{}, store.Grant{}, false, nil
	}
	rt, g, err := s.store.GetRefreshToken(ctx, tokenfmt.HashOf(tok))
	if errors.Is(err, store.ErrNotFound) {
		return rt, g, false, nil
	}
	if err != nil {
		return rt, g, false, err
	}
	now := s.cfg.Now()
	return rt, g, rt.UsedAt.IsZero() && now.Before(rt.ExpiresAt) && g.RevokedAt.IsZero(), nil
}

// ErrUnsupportedTokenType is returned by RevokeToken for an ID token,
// which is not a credential and cannot be revoked (RFC 7009 §2.2.1
// unsupported_token_type).
var ErrUnsupportedTokenType = errors.New("oauth: id tokens cannot be revoked")

// accessJWT verifies a JWT access token (RFC 9068) this server issued: the
// signature under a published key with the algorithm pinned to it, typ
// at+jwt (§2.1), iss, exp (extended by grace), sub and client_id (§2.2),
// and an aud naming a known API, which it returns. Revocation is the
// caller's to check. Any failure is ok false, without detail.
//
// Introspection and userinfo take no grace. Revocation takes
// store.RevocationGrace: resource servers accept a token for their leeway
// past its exp, so a token just past it can still be revoked, and the
// revocation feed carries it to them.
func (s *Server) accessJWT(ctx context.Context, tok string, grace time.Duration) (accessClaims, *store.API, bool) {
	var c accessClaims
	payload, err := s.keys.Verify(tok, typAccessToken)
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, nil, false
	}
	if c.Issuer != s.cfg.Issuer || !s.cfg.Now().Before(time.Unix(c.Expiry, 0).Add(grace)) || c.Subject == "" || c.ClientID == "" || c.ID == "" {
		return c, nil, false
	}
	a, err := s.tokens.ResolveAPI(ctx, c.Audience)
	if err != nil || a.Identifier != c.Audience {
		return c, nil, false
	}
	return c, a, true
}

// revokeAccessJWT revokes a JWT access token until it expires, by its jti:
// the revocation feed carries it to resource servers and introspection
// answers inactive. A token this server did not issue, an expired one, one
// of another client (if clientID is set) or of an API outside allowedAPIs
// changes nothing (RFC 7009 §2.2). An ID token is ErrUnsupportedTokenType.
func (s *Server) revokeAccessJWT(ctx context.Context, tok, clientID string, allowedAPIs []string, by tokens.Actor) error {
	c, api, ok := s.accessJWT(ctx, tok, store.RevocationGrace)
	if !ok {
		if _, err := s.keys.Verify(tok, typIDToken); err == nil {
			return ErrUnsupportedTokenType
		}
		return nil
	}
	if (clientID != "" && c.ClientID != clientID) || (allowedAPIs != nil && !slices.Contains(allowedAPIs, api.ID)) {
		return nil
	}
	ev := s.event(by, "token.revoke", c.ID, map[string]any{"reason": "oauth2_revoke", "format": store.FormatJWT, "client_id": c.ClientID})
	return s.store.RevokeAccessJWT(ctx, c.ID, api.ID, time.Unix(c.Expiry, 0), s.now(), ev)
}

// RevokeToken revokes a refresh token (with its whole grant: RFC 7009
// §2.1), an opaque access token or a JWT access token (see
// revokeAccessJWT). If clientID is set, only tokens issued to that client
// are revoked; allowedAPIs limits the audiences (nil: any). Unknown or
// foreign tokens are ignored, as RFC 7009 §2.2 requires.
func (s *Server) RevokeToken(ctx context.Context, tok, clientID string, allowedAPIs []string, by tokens.Actor) error {
	if strings.Count(tok, ".") == 2 {
		return s.revokeAccessJWT(ctx, tok, clientID, allowedAPIs, by)
	}
	p, err := tokenfmt.Parse(tok)
	if err != nil {
		return nil
	}
	switch p {
	case tokenfmt.PrefixRefresh:
		_, g, err := s.store.GetRefreshToken(ctx, tokenfmt.HashOf(tok))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if (clientID != "" && g.ClientID != clientID) || (allowedAPIs != nil && !slices.Contains(allowedAPIs, g.APIID)) {
			return nil
		}
		ev := s.event(by, "grant.revoke", g.ID, map[string]any{"reason": "oauth2_revoke"})
		hashes, err := s.store.RevokeGrant(ctx, g.ID, "oauth2_revoke", s.now(), ev)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.tokens.Evict(hashes...)
		return nil
	case tokenfmt.PrefixAccess:
		t, _, err := s.store.LookupToken(ctx, tokenfmt.HashOf(tok))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if (clientID != "" && t.ClientID != clientID) || (allowedAPIs != nil && !slices.Contains(allowedAPIs, t.APIID)) {
			return nil
		}
		_, err = s.tokens.RevokeToken(ctx, t.ID, "oauth2_revoke", by)
		return err
	}
	if clientID != "" {
		return nil // a client may revoke only what was issued to it
	}
	_, err = s.tokens.RevokeSecret(ctx, tok, allowedAPIs, "oauth2_revoke", by)
	return err
}

// RevokeAsClient serves POST /oauth2/revoke for OAuth clients that
// authenticate as themselves (RFC 7009 §2.1): they may revoke only tokens
// issued to them.
func (s *Server) RevokeAsClient() http.Handler { return s.serve(s.revokeAsClient) }

func (s *Server) revokeAsClient(w http.ResponseWriter, r *http.Request) error {
	f, err := parseForm(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	e, err := s.authenticateClient(ctx, r, f)
	if err != nil {
		return err
	}
	tok := f.get("token")
	if tok == "" {
		return badRequest("the token parameter is required")
	}
	err = s.RevokeToken(ctx, tok, e.client.ID, nil, tokens.Actor{ID: e.client.ID, RemoteAddr: s.remote(r)})
	if errors.Is(err, ErrUnsupportedTokenType) {
		return oerr(http.StatusBadRequest, errUnsupportedTokenType, "ID tokens cannot be revoked")
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// IntrospectAsClient serves POST /oauth2/introspect for an OAuth client
// that authenticates as itself (RFC 7662 §2.1), with the confidential
// method its registration names: it may introspect the tokens issued to
// it, as it may revoke them (RFC 7009 §2.1), and learns nothing of any
// other token, which is {"active": false} to it. (Resource servers
// introspect every token of their APIs with a Jeton token that has the
// verify scope, as Bearer.) A public client has no credentials to present
// and is refused. introspect answers for the token to the client, limited
// to the tokens issued to clientID, of any API: what was issued to the
// client is its to know, for an API it lists no more too, and one that
// lists none gets its tokens for the built-in API (selectAPI).
func (s *Server) IntrospectAsClient(introspect func(w http.ResponseWriter, r *http.Request, token, clientID string) error) http.Handler {
	return s.serve(func(w http.ResponseWriter, r *http.Request) error {
		f, err := parseForm(w, r)
		if err != nil {
			return err
		}
		e, err := s.authenticateClient(r.Context(), r, f)
		if err != nil {
			return err
		}
		c := &e.client
		if c.AuthMethod == AuthNone {
			return invalidClient("introspection needs client authentication, which a public client cannot give")
		}
		tok := f.get("token")
		if tok == "" {
			return badRequest("the token parameter is required")
		}
		return introspect(w, r, tok, c.ID)
	})
}
