package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// Sentinel errors of the OAuth entities.
var (
	// ErrUsed is returned when a single-use object (authorization code,
	// refresh token, device code) is presented again after it was used.
	// The call returns the stored object with it, so the caller can act on
	// the reuse (revoke what the first use issued).
	ErrUsed = errors.New("store: already used")
	// ErrRevoked is returned when tokens are issued from a revoked grant.
	ErrRevoked = errors.New("store: grant revoked")
)

// Client types.
const (
	ClientConfidential = "confidential"
	ClientPublic       = "public"
)

// Access token formats.
const (
	FormatOpaque = "opaque"
	FormatJWT    = "jwt"
)

// Client is an OAuth 2.0 client (application).
type Client struct {
	ID           string
	Name         string
	Type         string   // ClientConfidential or ClientPublic
	GrantTypes   []string // e.g. "authorization_code", "refresh_token"
	RedirectURIs []string // matched exactly
	// PostLogoutRedirectURIs are where RP-initiated logout may send the
	// browser back to (OpenID Connect RP-Initiated Logout 1.0 §3),
	// matched exactly.
	PostLogoutRedirectURIs []string
	APIs                   []string // ids of the APIs (audiences) it may get tokens for
	Scopes                 []string // the most it may be granted
	TokenFormat            string   // FormatOpaque or FormatJWT
	SigningAlg             string   // JWS algorithm of its JWTs: "ES256", "RS256" or "EdDSA"
	AccessTokenTTL         time.Duration
	RefreshTokenTTL        time.Duration
	AuthMethod             string          // token_endpoint_auth_method (RFC 7591 §2)
	JWKS                   json.RawMessage // public keys for private_key_jwt, or nil
	JWKSURI                string
	SecretHint             string    // hint of the current secret ("" for public clients)
	DisabledAt             time.Time // zero: enabled
	CreatedAt              time.Time
	UpdatedAt              time.Time
}

// ClientStore stores OAuth clients and the hashes of their secrets.
type ClientStore interface {
	// CreateClient stores a new client and, if secret is not nil, the hash
	// of its secret; ErrAlreadyExists if the ID or secret is taken.
	CreateClient(ctx context.Context, c Client, secret *tokenfmt.Hash, ev AuditEvent) error
	GetClient(ctx context.Context, id string) (Client, error)
	// ListClients returns one page of clients, newest first, and the cursor
	// of the next page ("" on the last page).
	ListClients(ctx context.Context, after string, limit int) ([]Client, string, error)
	// UpdateClient applies update to the stored client inside one transaction.
	UpdateClient(ctx context.Context, id string, update func(*Client) error, ev AuditEvent) (Client, error)
	// DeleteClient deletes a client with its secrets, codes, device codes,
	// consents, grants, refresh tokens and opaque access tokens. It returns
	// the hashes of the deleted access tokens (for cache eviction).
	DeleteClient(ctx context.Context, id string, ev AuditEvent) ([]tokenfmt.Hash, error)
	// ClientSecrets returns the secrets a client can authenticate with: the
	// current one (ExpiresAt zero) and, during a rotation grace period, the
	// one it replaced. The caller checks ExpiresAt.
	ClientSecrets(ctx context.Context, clientID string) ([]Secret, error)
	// RotateClientSecret makes next the client's current secret; the
	// previous one stays valid until graceUntil (if after now) and any older
	// one is dropped.
	RotateClientSecret(ctx context.Context, id string, next tokenfmt.Hash, hint string, graceUntil, now time.Time, ev AuditEvent) (Client, error)
	// ClientOfSecret returns the ID of the client one of whose secrets,
	// live or not, hashes to h; ErrNotFound if none.
	ClientOfSecret(ctx context.Context, h tokenfmt.Hash) (string, error)
	// RevokeClientSecret deletes the secret h of client id, if it is live
	// at now (current, or in its rotation grace period), and returns the
	// client. Deleting the current secret clears the client's SecretHint:
	// the client cannot authenticate until its secret is rotated. It
	// reports whether anything changed; an unknown client, or an h that is
	// not its secret, is ErrNotFound.
	RevokeClientSecret(ctx context.Context, id string, h tokenfmt.Hash, now time.Time, ev AuditEvent) (Client, bool, error)
	// UseClientAssertion records id, the hash of a client assertion's
	// client and jti, until expiresAt, when the assertion can no longer be
	// accepted, so that it is accepted once (RFC 7523 §3). An id recorded
	// and live at now (its expiresAt after now) is ErrUsed, and nothing
	// changes; an id whose time ended is recorded anew.
	UseClientAssertion(ctx context.Context, id tokenfmt.Hash, expiresAt, now time.Time) error
	// PurgeClientAssertions deletes up to limit assertion ids whose time
	// ended at or before now, and returns how many it deleted.
	PurgeClientAssertions(ctx context.Context, now time.Time, limit int) (int, error)
}

// User is a local account that can log in.
type User struct {
	ID           string
	Username     string // unique, stored lower-case
	Email        string
	PasswordHash string // argon2id, PHC string format
	DisabledAt   time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// SessionsEndedAt ends every browser session begun at or before it
	// (a password reset, a disable, "sign out everywhere"); zero: none.
	// Sessions are sealed cookies the store does not hold, so this is
	// how the server takes them back.
	SessionsEndedAt time.Time
}

// Consent is what a user allowed a client for one API, remembered so the
// consent page is not shown again for the same or fewer scopes.
type Consent struct {
	UserID    string
	ClientID  string
	APIID     string
	Scopes    []string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// UserStore stores users and their consents.
type UserStore interface {
	// CreateUser stores a new user; ErrAlreadyExists if the ID or username
	// is taken.
	CreateUser(ctx context.Context, u User, ev AuditEvent) error
	GetUser(ctx context.Context, id string) (User, error)
	GetUserByUsername(ctx context.Context, username string) (User, error)
	// ListUsers returns one page of users, newest first, and the cursor of
	// the next page ("" on the last page).
	ListUsers(ctx context.Context, after string, limit int) ([]User, string, error)
	// UpdateUser applies update to the stored user inside one transaction.
	UpdateUser(ctx context.Context, id string, update func(*User) error, ev AuditEvent) (User, error)
	// UpdateUserRevokingGrants is UpdateUser that, in the same
	// transaction, also revokes every live grant of the user with reason,
	// and the opaque access tokens issued from them, appending
	// grantEvent(g) to the audit log for each grant after ev. It returns
	// the hashes of the access tokens it revoked. A user disabled, or
	// whose password was reset, is never left with a live grant.
	UpdateUserRevokingGrants(ctx context.Context, id string, update func(*User) error, ev AuditEvent,
		reason string, grantEvent func(Grant) AuditEvent) (User, []tokenfmt.Hash, error)
	// DeleteUser deletes a user with their consents, codes and grants; the
	// grants' access tokens are deleted and their hashes returned.
	DeleteUser(ctx context.Context, id string, ev AuditEvent) ([]tokenfmt.Hash, error)

	GetConsent(ctx context.Context, userID, clientID, apiID string) (Consent, error)
	// PutConsent creates or replaces the consent of (UserID, ClientID, APIID).
	PutConsent(ctx context.Context, c Consent, ev AuditEvent) error
	ListConsents(ctx context.Context, userID string) ([]Consent, error)
	// DeleteConsent forgets a consent and revokes every grant the user gave
	// the client, returning the hashes of the revoked access tokens. It
	// also deletes the authorization codes and approved device codes of the
	// user for the client not yet redeemed. ErrNotFound when there was
	// none of these.
	DeleteConsent(ctx context.Context, userID, clientID string, now time.Time, ev AuditEvent) ([]tokenfmt.Hash, error)
}

// Grant is one authorization given to a client (by a user, through an
// authorization code or the device flow): the family of refresh tokens and
// opaque access tokens issued from it. Revoking it revokes them all.
type Grant struct {
	ID           string
	ClientID     string
	UserID       string
	Subject      string // the sub of its tokens
	APIID        string // audience
	Scopes       []string
	AuthTime     time.Time // when the user authenticated
	CreatedAt    time.Time
	RevokedAt    time.Time
	RevokeReason string
}

// RefreshToken is one refresh token of a grant. It is used once: using it
// rotates it to a successor. Retry, if set, is the sealed response of that
// use, kept until RetryUntil so a concurrent retry gets the same answer.
type RefreshToken struct {
	Hash       tokenfmt.Hash
	GrantID    string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	UsedAt     time.Time
	Retry      []byte
	RetryUntil time.Time
}

// AuthCode is an authorization code (RFC 6749 §4.1) with its PKCE
// challenge (RFC 7636) and OpenID Connect nonce.
type AuthCode struct {
	Hash            tokenfmt.Hash
	ClientID        string
	UserID          string
	RedirectURI     string
	APIID           string
	Scopes          []string
	Challenge       string
	ChallengeMethod string
	Nonce           string
	AuthTime        time.Time
	CreatedAt       time.Time
	ExpiresAt       time.Time
	UsedAt          time.Time
	GrantID         string // the grant created when it was redeemed
}

// Device code states.
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	DeviceRedeemed = "redeemed"
)

// DeviceCode is a device authorization (RFC 8628).
type DeviceCode struct {
	Hash         tokenfmt.Hash // of the device_code
	UserCode     string        // normalised: upper-case, no separator
	ClientID     string
	APIID        string
	Scopes       []string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	Interval     time.Duration // minimum polling interval
	LastPolledAt time.Time
	Status       string // DevicePending, DeviceApproved, DeviceDenied or DeviceRedeemed
	UserID       string // who approved or denied it
	AuthTime     time.Time
	GrantID      string // the grant created when it was redeemed
}

// GrantStore stores authorization codes, device codes, grants and refresh
// tokens. Every single-use object is consumed atomically, never
// read-then-written.
type GrantStore interface {
	CreateAuthCode(ctx context.Context, c AuthCode) error
	// RedeemAuthCode marks the code used and stores g, the grant it
	// creates, in one transaction. The grant's UserID, Subject (the user
	// id), APIID, Scopes and AuthTime are taken from the code. An unknown or expired code is
	// ErrNotFound. A code used before is returned with ErrUsed (and its
	// GrantID), and nothing is stored.
	RedeemAuthCode(ctx context.Context, h tokenfmt.Hash, g Grant, now time.Time, ev AuditEvent) (AuthCode, error)

	// CreateDeviceCode stores a new device authorization; ErrAlreadyExists
	// if its user code is taken.
	CreateDeviceCode(ctx context.Context, d DeviceCode) error
	GetDeviceCodeByUserCode(ctx context.Context, userCode string) (DeviceCode, error)
	// UpdateDeviceCode applies update to the device code with hash h (or,
	// if h is zero, the one with userCode) inside one transaction. If update
	// returns a grant, it is stored in the same transaction. An error from
	// update rolls everything back.
	UpdateDeviceCode(ctx context.Context, h tokenfmt.Hash, userCode string, update func(*DeviceCode) (*Grant, error), ev AuditEvent) (DeviceCode, error)

	GetGrant(ctx context.Context, id string) (Grant, error)
	// ListGrants returns the grants of a user, newest first.
	ListGrants(ctx context.Context, userID string) ([]Grant, error)
	// IssueGrantTokens stores tokens issued from a grant: an opaque access
	// token (with its secret hash) and/or a refresh token, after checking
	// under a lock on the grant that it is not revoked (ErrRevoked).
	IssueGrantTokens(ctx context.Context, grantID string, access *Token, accessHash tokenfmt.Hash, refresh *RefreshToken) error
	// GetRefreshToken returns a refresh token and its grant.
	GetRefreshToken(ctx context.Context, h tokenfmt.Hash) (RefreshToken, Grant, error)
	// RotateRefreshToken uses the refresh token old: if it is unused,
	// unexpired at now and its grant is live, it is marked used (keeping
	// retry until retryUntil), and next and access (if not nil) are stored,
	// in one transaction. An unknown or expired token is ErrNotFound, a
	// revoked grant ErrRevoked; a token used before is returned with ErrUsed
	// and nothing changes.
	RotateRefreshToken(ctx context.Context, old tokenfmt.Hash, next RefreshToken, access *Token, accessHash tokenfmt.Hash, retry []byte, retryUntil, now time.Time) (RefreshToken, error)
	// RevokeGrant revokes a grant and every opaque access token issued from
	// it, returning their hashes. Revoking a revoked grant is not an error.
	RevokeGrant(ctx context.Context, id, reason string, now time.Time, ev AuditEvent) ([]tokenfmt.Hash, error)

	// PurgeGrants deletes up to limit expired or used authorization codes,
	// device codes and refresh tokens, and revoked grants, whose expiry,
	// use or revocation is before cutoff, and the grants that purge leaves
	// spent: not revoked, with no refresh token and no opaque access token
	// left. It returns how many rows it deleted.
	PurgeGrants(ctx context.Context, cutoff time.Time, limit int) (int, error)
}

// SigningKey is a key pair that signs JWTs. It is published in the JWKS
// from creation, signs from ActiveAt until RetiredAt, and stays published
// until ExpiresAt (when every token it signed has expired).
type SigningKey struct {
	ID        string // also the JWK "kid"
	Alg       string // "ES256", "RS256" or "EdDSA"
	PublicJWK json.RawMessage
	Private   []byte // the private key, sealed under the master key
	CreatedAt time.Time
	ActiveAt  time.Time
	RetiredAt time.Time // zero: not retired
	ExpiresAt time.Time // zero: published until retired and expired
}

// KeyStore stores signing keys.
type KeyStore interface {
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// UpdateSigningKeys calls update with every stored key inside one
	// transaction that excludes concurrent UpdateSigningKeys calls on every
	// node, then inserts or replaces (by ID) the keys it returns in put and
	// deletes those whose IDs it returns in del.
	UpdateSigningKeys(ctx context.Context, update func(keys []SigningKey) (put []SigningKey, del []string, err error), ev AuditEvent) error
}
