// Package store defines Jeton's persistent state: the model types, the Store
// interface every backend implements, and the sentinel errors callers branch
// on. Backends live in subpackages (sqlstore); their shared behaviour is
// specified once, by the conformance suite in storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// Sentinel errors. Backends wrap them; callers use errors.Is.
var (
	ErrNotFound      = errors.New("store: not found")
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrAPIInUse is returned by DeleteAPI when the API still has live tokens
	// and the deletion was not forced.
	ErrAPIInUse = errors.New("store: api has live tokens")
	// ErrBuiltin is returned when a change is refused because it would break
	// a built-in object (the jeton API).
	ErrBuiltin = errors.New("store: built-in object")
	// ErrBusy is returned when a write gave up waiting for a lock that
	// another transaction held. It changed nothing and may be retried.
	ErrBusy = errors.New("store: busy")
	// ErrRefused wraps the error of a write the database answered with an
	// error: nothing of it was written. A write that failed otherwise (the
	// connection broke) may have been committed.
	ErrRefused = errors.New("store: write refused")
	// ErrTooManySecrets is returned by RotateToken when the token already
	// has MaxSecretsInGrace replaced secrets in their grace period.
	ErrTooManySecrets = errors.New("store: too many secrets in their grace period")
)

// MaxSecretsInGrace bounds the secrets of one token that rotations replaced
// and that still work, in their grace period: a rotation with a grace
// period beyond it is refused rather than cutting an earlier promise short.
const MaxSecretsInGrace = 5

// API is a resource server that tokens are issued for.
type API struct {
	ID         string
	Name       string
	Identifier string   // the OAuth audience, e.g. https://api.example.com
	Scopes     []string // the scopes this API defines
	// ScopeDescriptions says in words what some of Scopes allow, for the
	// consent and device pages ("Read your repositories"); nil if none.
	ScopeDescriptions map[string]string
	KeyPrefix         string // prefix of its API keys
	DefaultTTL        time.Duration
	MaxTTL            time.Duration // 0: no maximum
	Builtin           bool
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// RateLimit allows Limit requests per Window.
type RateLimit struct {
	Limit  int64
	Window time.Duration
}

// Quota is a usage budget: Remaining uses, optionally refilled to
// RefillAmount at the start of every RefillInterval ("daily" or "monthly",
// in UTC). PeriodStart is the start of the period Remaining belongs to.
//
// Version identifies one setting of the quota: it changes (grows) every
// time the quota is set, and never when usage is recorded. Quota consumed
// under one version is recorded only against that version (see
// QuotaDelta), so that consumption counted before a quota was replaced is
// not applied to the new one.
type Quota struct {
	Remaining      int64
	RefillAmount   int64
	RefillInterval string
	PeriodStart    time.Time
	Version        int64
}

// Refill intervals.
const (
	RefillDaily   = "daily"
	RefillMonthly = "monthly"
)

// Token is an issued credential. The secret itself is never stored: a token
// has one current secret hash and, during a rotation grace period, the hash
// of the secret it replaced.
type Token struct {
	ID           string
	APIID        string
	Name         string
	Subject      string
	Scopes       []string
	Hint         string          // prefix and last four characters of the current secret
	Metadata     json.RawMessage // a JSON object, or nil
	AllowedCIDRs []string
	RateLimit    *RateLimit // nil: unlimited
	Quota        *Quota     // nil: no quota
	// LastQuotaVersion is, while Quota is nil, the Version of the quota
	// removed last (0: none), so that a quota set later gets a higher one
	// even from a node whose clock is behind the one that set the last.
	LastQuotaVersion int64
	CreatedAt        time.Time
	UpdatedAt        time.Time
	ExpiresAt        time.Time // zero: never
	RevokedAt        time.Time // zero: not revoked
	RevokeReason     string
	RotatedAt        time.Time // zero: never rotated
	LastUsedAt       time.Time // zero: never used
	LastUsedIP       string
	UseCount         int64
	// ClientID and GrantID are set on opaque OAuth access tokens: the
	// client it was issued to and, unless it came from client credentials,
	// the grant whose revocation revokes it.
	ClientID string
	GrantID  string
}

// Live reports whether t is neither revoked nor expired at now.
func (t *Token) Live(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// Secret is one hash under which a token can be presented. ExpiresAt is zero
// for the current secret and the end of the grace period for a rotated one.
type Secret struct {
	Hash      tokenfmt.Hash
	ExpiresAt time.Time
}

// TokenFilter selects tokens for ListTokens. Results are ordered newest
// first; After is the cursor returned by the previous page.
type TokenFilter struct {
	APIID   string
	Subject string
	After   string // return tokens with IDs strictly before this one
	Limit   int
}

// UsageHour is one hour of verification counts for a token.
type UsageHour struct {
	Hour    time.Time // start of the hour, UTC
	Allowed int64
	Denied  int64
}

// UsageDelta is what one node counted for a token since its last flush.
type UsageDelta struct {
	TokenID    string
	Hours      []UsageHour
	LastUsedAt time.Time // zero: no allowed use in this delta
	LastUsedIP string    // stored without a zone; "" if not an IP address
}

// UsageFlush is one write of the usage and quota consumption a node
// counted in memory. ID names it: a node that cannot tell whether a flush
// was written (its reply was lost, and the commit may have happened) sends
// it again, unchanged, under the same ID, and the store applies it once.
type UsageFlush struct {
	ID    string
	At    time.Time // when it is sent; kept with ID (PurgeUsageFlushes)
	Usage []UsageDelta
	Quota []QuotaDelta
	// Written are the IDs of the node's earlier flushes that it knows
	// were written: it will not send them again, so the store forgets
	// them.
	Written []string
}

// QuotaDelta is quota consumed by one node for a token in one period,
// counted against the quota of version Version. RecordUsage drops a delta
// whose Version is not the stored quota's: the quota was set again since.
type QuotaDelta struct {
	TokenID      string
	PeriodStart  time.Time
	RefillAmount int64 // the value Remaining resets to when a new period starts
	Consumed     int64
	Version      int64
}

// AuditEvent is one entry of the append-only, hash-chained audit log. Seq,
// PrevHash and Hash are assigned by the store when the event is appended.
// Details must never contain a secret.
type AuditEvent struct {
	Seq        int64
	ID         string
	Time       time.Time
	Actor      string // token ID of the caller, or "system"/"cli"
	Action     string // e.g. "token.create"
	Target     string // ID of the object acted on, if any
	RemoteAddr string
	Details    json.RawMessage // a JSON object, or nil
	PrevHash   string          // hex SHA-256 of the previous entry ("" for the first)
	Hash       string          // hex SHA-256 of this entry, chained to PrevHash
}

// AuditFilter selects audit events for ListAudit, newest first.
type AuditFilter struct {
	Action string
	Actor  string
	Target string
	From   time.Time
	To     time.Time
	Before int64 // cursor: return events with Seq < Before (0: from the newest)
	Limit  int
}

// Store is Jeton's persistent state. Every method is safe for concurrent
// use. Methods that change state take the AuditEvent that records the change
// and append it in the same transaction: a change is never acknowledged
// without its audit entry, and never recorded without having happened.
type Store interface {
	ClientStore
	UserStore
	GrantStore
	KeyStore
	RevocationStore

	// CreateAPI stores a new API; ErrAlreadyExists if its ID is taken, or
	// its name or identifier is another API's name or identifier (APIs
	// are found by either). UpdateAPI refuses a rename the same way.
	CreateAPI(ctx context.Context, api API, ev AuditEvent) error
	GetAPI(ctx context.Context, id string) (API, error)
	ListAPIs(ctx context.Context) ([]API, error)
	// UpdateAPI applies update to the stored API inside one transaction.
	UpdateAPI(ctx context.Context, id string, update func(*API) error, ev AuditEvent) (API, error)
	// DeleteAPI deletes an API and all its tokens. Unless force is set it
	// fails with ErrAPIInUse while the API has a token live at now. It
	// returns the secret hashes of the deleted tokens (for cache eviction).
	DeleteAPI(ctx context.Context, id string, force bool, now time.Time, ev AuditEvent) ([]tokenfmt.Hash, error)

	// CreateToken stores a new token under the hash of its secret.
	CreateToken(ctx context.Context, tok Token, secret tokenfmt.Hash, ev AuditEvent) error
	GetToken(ctx context.Context, id string) (Token, error)
	// LookupToken finds the token one of whose secrets hashes to h, and the
	// expiry of that secret (zero for the current one).
	LookupToken(ctx context.Context, h tokenfmt.Hash) (Token, time.Time, error)
	// ListTokens returns one page of tokens and the cursor of the next page
	// ("" on the last page).
	ListTokens(ctx context.Context, f TokenFilter) ([]Token, string, error)
	// UpdateToken applies update to the stored token inside one transaction
	// and returns the result and the token's secret hashes.
	UpdateToken(ctx context.Context, id string, update func(*Token) error, ev AuditEvent) (Token, []tokenfmt.Hash, error)
	// RotateToken makes next the token's current secret. With graceUntil
	// after now the previous current secret stays valid until then, and
	// secrets replaced earlier keep their own grace (those whose grace has
	// ended are dropped; ErrTooManySecrets if MaxSecretsInGrace would be
	// exceeded). Otherwise every earlier secret is dropped at once. It
	// returns the token and the hashes that changed.
	RotateToken(ctx context.Context, id string, next tokenfmt.Hash, hint string, graceUntil, now time.Time, ev AuditEvent) (Token, []tokenfmt.Hash, error)
	// RevokeToken marks a token revoked at now. Revoking a revoked token
	// changes nothing and is not an error.
	RevokeToken(ctx context.Context, id, reason string, now time.Time, ev AuditEvent) (Token, []tokenfmt.Hash, error)
	// ExpireTokenSecret ends at now the rotation grace period of the
	// retired secret h, the one a rotation replaced, and returns its token.
	// It reports whether anything changed: a secret whose grace already
	// ended stays as it is. h being no retired secret (unknown, or a
	// token's current secret) is ErrNotFound.
	ExpireTokenSecret(ctx context.Context, h tokenfmt.Hash, now time.Time, ev AuditEvent) (Token, bool, error)

	// RecordUsage adds usage counted in memory. Deltas for tokens that no
	// longer exist are dropped, and so are quota deltas for another quota
	// version than the stored one, or for an earlier period. A flush whose
	// ID was recorded before changes nothing but forgetting its Written,
	// and is not an error; an empty ID is refused. An error the database
	// answered is ErrRefused.
	RecordUsage(ctx context.Context, f UsageFlush) error
	// PurgeUsageFlushes forgets up to limit flush IDs recorded at (their
	// At) before cutoff, and returns how many it forgot.
	PurgeUsageFlushes(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// Usage returns the hourly counts of a token in [from, to).
	Usage(ctx context.Context, tokenID string, from, to time.Time) ([]UsageHour, error)

	// AppendAudit appends one event that records no other change.
	AppendAudit(ctx context.Context, ev AuditEvent) error
	// ListAudit returns one page of events, newest first, and the cursor of
	// the next page (0 on the last page).
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, int64, error)
	// ScanAudit returns up to limit events with Seq > after, oldest first.
	ScanAudit(ctx context.Context, after int64, limit int) ([]AuditEvent, error)
	// AuditHead returns the sequence number and hash of the newest event
	// of the log as the store records them apart from the events (0 and ""
	// while the log is empty). The head covers every event appended before
	// the call, and a ScanAudit after it returns every event up to it: an
	// intact log ends exactly at its head.
	AuditHead(ctx context.Context) (seq int64, hash string, err error)

	// PurgeTokens deletes up to limit tokens that expired or were revoked
	// before cutoff, OAuth access tokens (ClientID set) that expired or were
	// revoked before accessCutoff, and rotated-out secrets whose grace ended
	// before cutoff, and the grants whose last token it purged (as
	// PurgeGrants does). It returns how many tokens it deleted.
	PurgeTokens(ctx context.Context, cutoff, accessCutoff time.Time, limit int) (int, error)

	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	Close() error
}
