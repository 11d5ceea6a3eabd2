package oauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

// ReportLeak makes a token that was found where it should not be useless
// at once, whatever its kind, and says what it was (see
// tokens.Service.ReportLeak for API keys and opaque access tokens):
//
//   - a refresh token of a live grant revokes the grant, with every token
//     issued from it (RFC 9700 §4.14.2 treats a refresh token in the wrong
//     hands as the grant's compromise), even if the token itself was
//     already used or expired;
//   - a client secret that still works is deleted; if it was the client's
//     current one, the client cannot authenticate until its secret is
//     rotated;
//   - a JWT access token this server issued, unexpired, is revoked by its
//     jti, and the revocation feed carries it to resource servers.
//
// Possession of the secret is the authority: the caller needs no other
// right to it. Every change is audited as tokens.ActionLeakReport.
func (s *Server) ReportLeak(ctx context.Context, secret, source string, by tokens.Actor) (tokens.LeakResult, error) {
	if strings.Count(secret, ".") == 2 {
		return s.reportLeakedJWT(ctx, secret, source, by)
	}
	prefix, err := tokenfmt.Parse(secret)
	if err != nil {
		return tokens.LeakResult{Outcome: tokens.LeakMalformed}, nil
	}
	h := tokenfmt.HashOf(secret)
	switch prefix {
	case tokenfmt.PrefixRefresh:
		_, g, err := s.store.GetRefreshToken(ctx, h)
		if errors.Is(err, store.ErrNotFound) {
			return tokens.LeakResult{Outcome: tokens.LeakUnknown}, nil
		}
		if err != nil {
			return tokens.LeakResult{}, fmt.Errorf("oauth: report leak: %w", err)
		}
		res := tokens.LeakResult{Kind: tokens.KindRefreshToken, ID: g.ID, Outcome: tokens.LeakInactive}
		if !g.RevokedAt.IsZero() {
			return res, nil
		}
		ev := s.event(by, tokens.ActionLeakReport, g.ID, tokens.LeakDetails(res.Kind, tokens.LeakRevoked, secret, source))
		hashes, err := s.store.RevokeGrant(ctx, g.ID, tokens.LeakReasonRevoked, s.now(), ev)
		if errors.Is(err, store.ErrNotFound) {
			return res, nil // its client was deleted meanwhile
		}
		if err != nil {
			return tokens.LeakResult{}, fmt.Errorf("oauth: report leak: %w", err)
		}
		s.tokens.Evict(hashes...)
		res.Outcome = tokens.LeakRevoked
		return res, nil
	case tokenfmt.PrefixClientSecret:
		id, err := s.store.ClientOfSecret(ctx, h)
		if errors.Is(err, store.ErrNotFound) {
			return tokens.LeakResult{Outcome: tokens.LeakUnknown}, nil
		}
		if err != nil {
			return tokens.LeakResult{}, fmt.Errorf("oauth: report leak: %w", err)
		}
		res := tokens.LeakResult{Kind: tokens.KindClientSecret, ID: id, Outcome: tokens.LeakInactive}
		ev := s.event(by, tokens.ActionLeakReport, id, tokens.LeakDetails(res.Kind, tokens.LeakRevoked, secret, source))
		_, changed, err := s.store.RevokeClientSecret(ctx, id, h, s.now(), ev)
		if errors.Is(err, store.ErrNotFound) {
			return res, nil // rotated away, or the client deleted, meanwhile
		}
		if err != nil {
			return tokens.LeakResult{}, fmt.Errorf("oauth: report leak: %w", err)
		}
		s.clients.forget(id)
		if changed {
			res.Outcome = tokens.LeakRevoked
		}
		return res, nil
	}
	return s.tokens.ReportLeak(ctx, secret, source, by)
}

// reportLeakedJWT revokes a JWT access token this server issued, unless it
// expired or was revoked already. An ID token, or a JWT this server did not
// sign, is unknown: it is no credential here.
func (s *Server) reportLeakedJWT(ctx context.Context, tok, source string, by tokens.Actor) (tokens.LeakResult, error) {
	c, api, ok := s.accessJWT(ctx, tok, store.RevocationGrace)
	if !ok {
		if _, err := s.keys.Verify(tok, typAccessToken); err == nil {
			// Ours, but expired (or of an API deleted since).
			return tokens.LeakResult{Kind: tokens.KindAccessToken, Outcome: tokens.LeakInactive}, nil
		}
		return tokens.LeakResult{Outcome: tokens.LeakUnknown}, nil
	}
	res := tokens.LeakResult{Kind: tokens.KindAccessToken, ID: c.ID, Outcome: tokens.LeakInactive}
	revoked, err := s.store.IsRevoked(ctx, c.ID, c.SessionID, c.ClientID)
	if err != nil {
		return tokens.LeakResult{}, fmt.Errorf("oauth: report leak: %w", err)
	}
	if revoked {
		return res, nil
	}
	d := tokens.LeakDetails(res.Kind, tokens.LeakRevoked, "", source)
	delete(d, "hint") // a JWT has no hint; its jti is the target
	d["client_id"] = c.ClientID
	ev := s.event(by, tokens.ActionLeakReport, c.ID, d)
	if err := s.store.RevokeAccessJWT(ctx, c.ID, api.ID, time.Unix(c.Expiry, 0), s.now(), ev); err != nil {
		return tokens.LeakResult{}, fmt.Errorf("oauth: report leak: %w", err)
	}
	res.Outcome = tokens.LeakRevoked
	return res, nil
}
