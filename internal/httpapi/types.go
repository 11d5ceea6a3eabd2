package httpapi

import (
	"encoding/json"
	"time"

	"github.com/jetonhq/jeton/internal/store"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

type apiJSON struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Identifier string   `json:"identifier"`
	Scopes     []string `json:"scopes"`
	// ScopeDescriptions is {} when the API describes none.
	ScopeDescriptions map[string]string `json:"scope_descriptions"`
	KeyPrefix         string            `json:"key_prefix"`
	DefaultTTL        int64             `json:"default_ttl"`
	MaxTTL            int64             `json:"max_ttl"`
	Builtin           bool              `json:"builtin"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
}

func toAPIJSON(a *store.API) apiJSON {
	scopes := a.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	descs := a.ScopeDescriptions
	if descs == nil {
		descs = map[string]string{}
	}
	return apiJSON{ID: a.ID, Name: a.Name, Identifier: a.Identifier, Scopes: scopes, ScopeDescriptions: descs, KeyPrefix: a.KeyPrefix,
		DefaultTTL: int64(a.DefaultTTL / time.Second), MaxTTL: int64(a.MaxTTL / time.Second), Builtin: a.Builtin,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

type rateLimitJSON struct {
	Limit  int64 `json:"limit"`
	Window int64 `json:"window"`
}

type refillJSON struct {
	Amount   int64  `json:"amount"`
	Interval string `json:"interval"`
}

type quotaJSON struct {
	Remaining int64       `json:"remaining"`
	Refill    *refillJSON `json:"refill"`
}

type tokenJSON struct {
	ID           string          `json:"id"`
	API          string          `json:"api"`
	Name         string          `json:"name"`
	Subject      string          `json:"subject"`
	Scopes       []string        `json:"scopes"`
	Hint         string          `json:"hint"`
	Metadata     json.RawMessage `json:"metadata"`
	AllowedCIDRs []string        `json:"allowed_cidrs"`
	RateLimit    *rateLimitJSON  `json:"rate_limit"`
	Quota        *quotaJSON      `json:"quota"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
	ExpiresAt    *time.Time      `json:"expires_at"`
	RevokedAt    *time.Time      `json:"revoked_at"`
	RevokeReason string          `json:"revoke_reason"`
	RotatedAt    *time.Time      `json:"rotated_at"`
	LastUsedAt   *time.Time      `json:"last_used_at"`
	LastUsedIP   string          `json:"last_used_ip"`
	UseCount     int64           `json:"use_count"`
	// Secret fields, set only in the create and rotate responses.
	Token             string     `json:"token,omitempty"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toTokenJSON(t *store.Token) tokenJSON {
	out := tokenJSON{ID: t.ID, API: t.APIID, Name: t.Name, Subject: t.Subject, Scopes: t.Scopes, Hint: t.Hint,
		Metadata: t.Metadata, AllowedCIDRs: t.AllowedCIDRs, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		ExpiresAt: timePtr(t.ExpiresAt), RevokedAt: timePtr(t.RevokedAt), RevokeReason: t.RevokeReason,
		RotatedAt: timePtr(t.RotatedAt), LastUsedAt: timePtr(t.LastUsedAt), LastUsedIP: t.LastUsedIP, UseCount: t.UseCount}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if out.AllowedCIDRs == nil {
		out.AllowedCIDRs = []string{}
	}
	if out.Metadata == nil {
		out.Metadata = json.RawMessage("{}")
	}
	if rl := t.RateLimit; rl != nil {
		out.RateLimit = &rateLimitJSON{Limit: rl.Limit, Window: int64(rl.Window / time.Second)}
	}
	if q := t.Quota; q != nil {
		out.Quota = &quotaJSON{Remaining: q.Remaining}
		if q.RefillInterval != "" {
			out.Quota.Refill = &refillJSON{Amount: q.RefillAmount, Interval: q.RefillInterval}
		}
	}
	return out
}

// VerifyRequest is the body of POST /v1/verify.
type VerifyRequest struct {
	Token  string   `json:"token"`
	Scopes []string `json:"scopes"`
	API    string   `json:"api"`
	// ClientIP is the address of the client that presented Token to the
	// resource server calling, as that server saw it: the address the
	// token's allowed_cidrs are checked against. Without it, the address
	// of the request (X-Forwarded-For from a trusted proxy) is used, for
	// the caller's own credential too. ClientIPUnknown says the caller
	// cannot tell: no address then satisfies allowed_cidrs.
	ClientIP string `json:"client_ip"`
}

// ClientIPUnknown is the client_ip of a verify request whose caller cannot
// tell the client's address (a Unix socket): a token restricted by
// allowed_cidrs then verifies as forbidden_ip, whatever the caller's own
// address.
const ClientIPUnknown = "unknown"

// verifyTokenJSON is the token of a verify answer. Its ExpiresAt is when
// the answer stops holding for the secret presented: the token's expiry
// or, if earlier, the end of the grace period of a secret a rotation
// replaced. Verifiers cache an answer until then.
type verifyTokenJSON struct {
	ID        string          `json:"id"`
	API       string          `json:"api"`
	Subject   string          `json:"subject"`
	Scopes    []string        `json:"scopes"`
	ExpiresAt *time.Time      `json:"expires_at"`
	Metadata  json.RawMessage `json:"metadata"`
}

type verifyRateJSON struct {
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	Reset     int64 `json:"reset"` // seconds until the limit is full again
}

type verifyQuotaJSON struct {
	Remaining int64 `json:"remaining"`
}

type verifyResponse struct {
	Valid     bool             `json:"valid"`
	Code      string           `json:"code"`
	Token     *verifyTokenJSON `json:"token,omitempty"`
	RateLimit *verifyRateJSON  `json:"rate_limit,omitempty"`
	Quota     *verifyQuotaJSON `json:"quota,omitempty"`
}

type auditJSON struct {
	Seq        int64           `json:"seq"`
	ID         string          `json:"id"`
	Time       time.Time       `json:"time"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	Target     string          `json:"target"`
	RemoteAddr string          `json:"remote_addr"`
	Details    json.RawMessage `json:"details"`
	PrevHash   string          `json:"prev_hash"`
	Hash       string          `json:"hash"`
}
