package tokens

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// What reporting a leaked token did (LeakResult.Outcome).
const (
	// LeakRevoked: the token is revoked now; for a refresh token, its whole
	// grant; for a client secret, that secret.
	LeakRevoked = "revoked"
	// LeakGraceEnded: the secret was one a rotation replaced, still in its
	// grace period. It no longer works; the token's current secret does.
	LeakGraceEnded = "grace_ended"
	// LeakInactive: a token of this server that was already revoked,
	// expired or rotated out. Nothing changed.
	LeakInactive = "inactive"
	// LeakUnknown: well formed, but not a token this server knows.
	LeakUnknown = "unknown"
	// LeakMalformed: not a token at all (wrong form or checksum).
	LeakMalformed = "malformed"
)

// Kinds of token a leak report names (LeakResult.Kind).
const (
	KindAPIKey       = "api_key"
	KindAccessToken  = "access_token"
	KindRefreshToken = "refresh_token"
	KindClientSecret = "client_secret"
)

// LeakReasonRevoked is the revoke reason of what a leak report revoked.
const LeakReasonRevoked = "leaked"

// ActionLeakReport is the audit action of every change a leak report
// makes. Its target is the token, grant or client; its details say the
// kind, the outcome, the reported secret's hint and the report's source.
const ActionLeakReport = "leak.report"

// LeakResult is what a reported token turned out to be and what was done.
type LeakResult struct {
	Kind    string // one of the Kind constants; "" if unknown or malformed
	Outcome string // one of the Leak constants
	ID      string // the token, grant or client ID; "" if unknown
}

// LeakDetails are the audit details of a change made because secret was
// reported leaked from source: the kind, the outcome and the secret's hint.
func LeakDetails(kind, outcome, secret, source string) map[string]string {
	d := map[string]string{"kind": kind, "outcome": outcome, "hint": tokenfmt.Hint(secret)}
	if source != "" {
		d["source"] = RedactSecrets(source)
	}
	return d
}

// jwtPattern matches what looks like a JWT or JWS in compact form: a
// base64url JSON header ("eyJ…"), a payload and a signature.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// RedactSecrets replaces every Jeton token in text with its hint, and
// every JWT with "[jwt]": a leak report's source is written to the audit
// log, where no secret may go, and whoever pastes a leaked key's
// surroundings there may paste other keys with it.
func RedactSecrets(text string) string {
	found := tokenfmt.ScanIndex([]byte(text))
	if len(found) > 0 {
		var b strings.Builder
		last := 0
		for _, m := range found {
			b.WriteString(text[last:m[0]])
			b.WriteString(tokenfmt.Hint(text[m[0]:m[1]]))
			last = m[1]
		}
		b.WriteString(text[last:])
		text = b.String()
	}
	return jwtPattern.ReplaceAllLiteralString(text, "[jwt]")
}

// ReportLeak makes an API key or an opaque access token that was found
// where it should not be useless at once, and says what it was. A token's
// current secret revokes the token; a secret that a rotation replaced,
// still in its grace period, stops working without touching the current
// one (whoever rotated after the leak keeps working). Anything else
// changes nothing. Possession of the secret is the authority: the caller
// needs no other right to it.
func (s *Service) ReportLeak(ctx context.Context, secret, source string, by Actor) (LeakResult, error) {
	prefix, err := tokenfmt.Parse(secret)
	if err != nil {
		return LeakResult{Outcome: LeakMalformed}, nil
	}
	h := tokenfmt.HashOf(secret)
	// The store, not the cache: the answer must not depend on what this
	// node saw last.
	tok, secretExpires, err := s.store.LookupToken(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return LeakResult{Outcome: LeakUnknown}, nil
	}
	if err != nil {
		return LeakResult{}, fmt.Errorf("tokens: report leak: %w", err)
	}
	res := LeakResult{Kind: KindAPIKey, ID: tok.ID, Outcome: LeakInactive}
	if prefix == tokenfmt.PrefixAccess || tok.ClientID != "" {
		res.Kind = KindAccessToken
	}
	now := s.cfg.Now()
	switch {
	case !tok.Live(now), !secretExpires.IsZero() && !now.Before(secretExpires):
		return res, nil
	case !secretExpires.IsZero():
		_, changed, err := s.store.ExpireTokenSecret(ctx, h, now, s.event(by, ActionLeakReport, tok.ID, LeakDetails(res.Kind, LeakGraceEnded, secret, source)))
		if errors.Is(err, store.ErrNotFound) {
			return res, nil // rotated away meanwhile
		}
		if err != nil {
			return LeakResult{}, fmt.Errorf("tokens: report leak: %w", err)
		}
		s.cache.invalidate(h)
		if changed {
			res.Outcome = LeakGraceEnded
		}
		return res, nil
	}
	_, hashes, err := s.store.RevokeToken(ctx, tok.ID, LeakReasonRevoked, now, s.event(by, ActionLeakReport, tok.ID, LeakDetails(res.Kind, LeakRevoked, secret, source)))
	if errors.Is(err, store.ErrNotFound) {
		return res, nil // deleted meanwhile
	}
	if err != nil {
		return LeakResult{}, fmt.Errorf("tokens: report leak: %w", err)
	}
	s.cache.invalidate(hashes...)
	res.Outcome = LeakRevoked
	return res, nil
}
