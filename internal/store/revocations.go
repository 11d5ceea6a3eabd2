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
	// RevocationClient names a client id: every access token issued to the
	// client (the JWT "client_id" claim) is revoked. DeleteClient records
	// one per API of the client, for the JWT access tokens it got by
	// client credentials, which no grant or stored token stands for.
	RevocationClient = "client"
	// RevocationSecret names a token id one of whose secrets stopped
	// working before its time: a rotation without a grace period, or a
	// replaced secret whose grace a leak report or RFC 7009 revocation
	// ended. The token itself is not revoked: verifiers drop the answers
	// they cached for it, and deny nothing (its current secret works).
	RevocationSecret = "secret"
)

// RevocationTTL bounds how long a revocation of a stored token or of a
// grant is published: longer than a JWT access token lives by default
// (oauth.Config.MaxAccessTTL) and than any verifier caches a positive
// answer. A revoked JWT access token is published until its own expiry.
// Either way the entry stays in the feed RevocationGrace longer.
const RevocationTTL = 24 * time.Hour

// RevocationGrace is how long an entry stays in the revocation feed past
// its ExpiresAt. A resource server accepts a JWT access token until its
// exp plus its clock-skew leeway, so it must still be able to learn of the
// token's revocation, and keep it, for that long: the verify package
// keeps each entry for its Config.Leeway past ExpiresAt, and a Leeway is
// at most verify.MaxLeeway, which this must equal (a test in verify
// checks it: store, below verify's users, must not import it).
const RevocationGrace = 5 * time.Minute

// Revocation is one entry of the revocation feed that resource servers
// follow to reject revoked tokens they would otherwise accept offline (JWT
// access tokens) or from a cache.
type Revocation struct {
	// Seq orders the feed. It is assigned in commit order: once a reader
	// has seen Seq n, no entry with a smaller Seq appears later. It never
	// falls behind the time in microseconds, so that a store restored from
	// a backup still numbers its new entries above the cursors verifiers
	// kept from before; expect large gaps.
	Seq       int64
	Kind      string // RevocationToken, RevocationGrant or RevocationClient
	Ref       string // the token id (or jti), the grant id or the client id
	APIID     string // the API the token or grant is for
	RevokedAt time.Time
	// ExpiresAt is when the revoked tokens expire: the token's expiry (a
	// JWT's exp), or RevokedAt+RevocationTTL, whichever is first. The
	// entry stays in the feed until ExpiresAt+RevocationGrace, for
	// verifiers that accept a token for a leeway past its expiry.
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
	// first, leaving out those whose ExpiresAt+RevocationGrace is at or
	// before now. apiIDs, if not nil, keeps only the entries of those APIs.
	ListRevocations(ctx context.Context, after int64, apiIDs []string, now time.Time, limit int) ([]Revocation, error)
	// RevokeAccessJWT records the revocation of the JWT access token with
	// ID jti, for apiID, that expires at expiresAt (its exp), and appends
	// ev. A token past its exp but within RevocationGrace of it is still
	// recorded: verifiers may accept it for that long. Revoking a jti
	// already revoked, or one whose expiresAt+RevocationGrace is at or
	// before now, records nothing.
	RevokeAccessJWT(ctx context.Context, jti, apiID string, expiresAt, now time.Time, ev AuditEvent) error
	// IsRevoked reports whether any of ids (token ids, jtis, grant ids or
	// client ids) has a revocation entry or is a revoked grant.
	IsRevoked(ctx context.Context, ids ...string) (bool, error)
	// PurgeRevocations deletes up to limit entries whose
	// ExpiresAt+RevocationGrace is at or before now, and returns how many
	// it deleted.
	PurgeRevocations(ctx context.Context, now time.Time, limit int) (int, error)
	// RevocationsChanged returns a channel that is closed when entries are
	// next recorded, by this process or (on a shared database) by another
	// node. Take it before reading the feed, then wait on it: a change
	// between the two closes the channel already taken, so none is missed.
	// It may also be closed when nothing changed (after a reconnection to
	// the database); readers then find nothing new.
	RevocationsChanged() <-chan struct{}
}
