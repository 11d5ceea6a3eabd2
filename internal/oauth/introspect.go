package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

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
// An inactive token is (nil, nil).
func (s *Server) Introspect(ctx context.Context, tok string, allowedAPIs []string) (*Introspection, error) {
	if strings.Count(tok, ".") == 2 {
		at, ok := s.jwtAccessToken(ctx, tok, allowedAPIs)
		if !ok {
			return nil, nil
		}
		return &Introspection{Active: true, Scope: strings.Join(at.Scopes, " "), ClientID: at.ClientID, Subject: at.Subject,
			Audience: at.Audience, Issuer: s.cfg.Issuer, ExpiresAt: at.ExpiresAt, IssuedAt: at.IssuedAt, ID: at.ID, TokenType: "Bearer"}, nil
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

// ErrUnsupportedTokenType is returned by RevokeToken for JWT access
// tokens, which cannot be recalled once issued (RFC 7009 §2.2.1
// unsupported_token_type).
var ErrUnsupportedTokenType = errors.New("oauth: jwt access tokens cannot be revoked")

// RevokeToken revokes a refresh token (with its whole grant: RFC 7009
// §2.1) or an opaque access token. If clientID is set, only tokens issued
// to that client are revoked; allowedAPIs limits the audiences (nil: any).
// Unknown or foreign tokens are ignored, as RFC 7009 §2.2 requires.
func (s *Server) RevokeToken(ctx context.Context, tok, clientID string, allowedAPIs []string, by tokens.Actor) error {
	if strings.Count(tok, ".") == 2 {
		return ErrUnsupportedTokenType
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
		return oerr(http.StatusBadRequest, errUnsupportedTokenType, "JWT access tokens cannot be revoked; they expire on their own")
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}
