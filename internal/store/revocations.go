package store

import (
	"context"
	"time"
)

// Revocation kinds.
const (
	// RevocationToken names a token id: an API key, an opaque access token,
	// or a JWT access token's jti.
	RevocationToken = "token"
	// RevocationGrant names a grant id: every access token issued from the
	// grant (the JWT "sid" claim) is revoked.
	RevocationGrant = "grant"
)

// RevocationTTL bounds how long a revocation of a stored token or of a
// grant is published: longer than a JWT access token lives by default
// (oauth.Config.MaxAccessTTL) and than any verifier caches a positive
// answer. A revoked JWT access token is published until its own expiry.
const RevocationTTL = 24 * time.Hour

// Revocation is one entry of the revocation feed that resource servers
// follow to reject revoked tokens they would otherwise accept offline (JWT
// access tokens) or from a cache.
type Revocation struct {
	// Seq orders the feed. It is assigned in commit order: once a reader
	// has seen Seq n, no entry with a smaller Seq appears later.
	Seq       int64
	Kind      string // RevocationToken or RevocationGrant
	Ref       string // the token id (or jti) or the grant id
	APIID     string // the API the token or grant is for
	RevokedAt time.Time
	// ExpiresAt is when no verifier needs the entry any more: the token's
	// expiry, or RevokedAt+RevocationTTL, whichever is first.
	ExpiresAt time.Time
}

// RevocationStore keeps the revocation feed. Every method that revokes or
// deletes live tokens or grants (RevokeToken, RevokeGrant, DeleteClient,
// DeleteUser, DeleteConsent, DeleteAPI) records its entries in the same
// transaction, so an entry is published if and only if the change commits.
// DeleteClient and DeleteUser, which take no clock, date their entries by
// the time of their audit event. Rotations and updates revoke nothing and
// record nothing.
type RevocationStore interface {
	// ListRevocations returns up to limit entries with Seq > after, oldest
	// first, leaving out those expired at now. apiIDs, if not nil, keeps
	// only the entries of those APIs.
	ListRevocations(ctx context.Context, after int64, apiIDs []string, now time.Time, limit int) ([]Revocation, error)
	// RevokeAccessJWT records the revocation of the JWT access token with
	// ID jti, for apiID, until expiresAt, and appends ev. Revoking a jti
	// already revoked, or one that expired at now, records nothing.
	RevokeAccessJWT(ctx context.Context, jti, apiID string, expiresAt, now time.Time, ev AuditEvent) error
	// IsRevoked reports whether any of ids (token ids, jtis or grant ids)
	// has a revocation entry or is a revoked grant.
	IsRevoked(ctx context.Context, ids ...string) (bool, error)
	// PurgeRevocations deletes up to limit entries expired at now and
	// returns how many it deleted.
	PurgeRevocations(ctx context.Context, now time.Time, limit int) (int, error)
	// RevocationsChanged returns a channel that is closed when entries are
	// next recorded, by this process or (on a shared database) by another
	// node. Take it before reading the feed, then wait on it: a change
	// between the two closes the channel already taken, so none is missed.
	// It may also be closed when nothing changed (after a reconnection to
	// the database); readers then find nothing new.
	RevocationsChanged() <-chan struct{}
}
