// Package client is a small typed HTTP client for Jeton's admin API (v1),
// whose JSON contract is described in docs/admin-api.md.
//
// Every call takes a context, sends the admin token as a Bearer credential
// and decodes the answer into a plain struct. Result types keep the exact
// bytes the server sent in their Raw field, for callers that want to pass
// the answer on unchanged (the CLI's --json mode). A non-2xx answer is
// returned as an *APIError.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxResponseBytes is the largest response body the client reads. A larger
// answer is an error rather than an unbounded allocation.
const MaxResponseBytes = 8 << 20

// Client calls the admin API of one Jeton server.
type Client struct {
	// BaseURL is the server's root URL, such as "http://127.0.0.1:8080".
	// The "/v1/…" paths are appended to it.
	BaseURL string
	// Token is the admin token sent as "Authorization: Bearer <Token>".
	// It is never included in errors.
	Token string
	// HTTP is the client used for requests; nil means http.DefaultClient.
	HTTP *http.Client
}

// APIError is an error answer (a 4xx or 5xx status) from the admin API,
// decoded from {"error": {"code": "...", "message": "..."}}.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the machine-readable error code, such as "not_found". It is
	// empty when the answer did not carry the documented error body.
	Code string
	// Message is the human-readable explanation.
	Message string
}

// Error returns "code: message", or the HTTP status when the server sent no
// error code.
func (e *APIError) Error() string {
	if e.Code == "" {
		msg := e.Message
		if msg == "" {
			msg = http.StatusText(e.Status)
		}
		return fmt.Sprintf("HTTP %d: %s", e.Status, msg)
	}
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Nullable is a field of an update request with three states: absent (the
// zero value: the setting is left unchanged), null (the setting is cleared)
// and a value. Build it with [Set] or [Null].
type Nullable[T any] struct {
	set bool
	v   *T
}

// Set returns a Nullable that sets the field to v.
func Set[T any](v T) Nullable[T] { return Nullable[T]{set: true, v: &v} }

// Null returns a Nullable that clears the field (JSON null).
func Null[T any]() Nullable[T] { return Nullable[T]{set: true} }

// IsZero reports whether n is absent; the field is then omitted from the
// request (it is tagged omitzero).
func (n Nullable[T]) IsZero() bool { return !n.set }

// Value returns the value and whether there is one (false for absent and
// for null).
func (n Nullable[T]) Value() (T, bool) {
	if n.v == nil {
		var zero T
		return zero, false
	}
	return *n.v, true
}

// MarshalJSON encodes the value, or null.
func (n Nullable[T]) MarshalJSON() ([]byte, error) {
	if n.v == nil {
		return []byte("null"), nil
	}
	return json.Marshal(*n.v)
}

// API is a resource server that tokens are issued for.
type API struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Identifier string   `json:"identifier"`
	Scopes     []string `json:"scopes"`
	// ScopeDescriptions says in words what scopes allow (consent pages).
	ScopeDescriptions map[string]string `json:"scope_descriptions"`
	KeyPrefix         string            `json:"key_prefix"`
	DefaultTTL        int64             `json:"default_ttl"` // seconds; 0 means none
	MaxTTL            int64             `json:"max_ttl"`     // seconds; 0 means none
	Builtin           bool              `json:"builtin"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// APIList is the answer of ListAPIs.
type APIList struct {
	APIs []API `json:"apis"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// CreateAPIRequest is the body of POST /v1/apis.
type CreateAPIRequest struct {
	Name       string   `json:"name"`
	Identifier string   `json:"identifier"`
	Scopes     []string `json:"scopes"`
	// ScopeDescriptions: see API; each key must be one of Scopes.
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`
	KeyPrefix         string            `json:"key_prefix,omitempty"`
	DefaultTTL        int64             `json:"default_ttl,omitempty"` // seconds
	MaxTTL            int64             `json:"max_ttl,omitempty"`     // seconds
}

// UpdateAPIRequest is the body of PATCH /v1/apis/{id}. Nil fields are left
// unchanged.
type UpdateAPIRequest struct {
	Name      *string  `json:"name,omitempty"`
	AddScopes []string `json:"add_scopes,omitempty"`
	// ScopeDescriptions sets the descriptions of the scopes it names; an
	// empty description removes one. The others stay.
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`
	DefaultTTL        *int64            `json:"default_ttl,omitempty"` // seconds
	MaxTTL            *int64            `json:"max_ttl,omitempty"`     // seconds
}

// RateLimit allows Limit uses per Window seconds.
type RateLimit struct {
	Limit  int64 `json:"limit"`
	Window int64 `json:"window"` // seconds
}

// Refill tops a quota up to Amount every Interval ("daily" or "monthly").
type Refill struct {
	Amount   int64  `json:"amount"`
	Interval string `json:"interval"`
}

// Quota is a number of remaining uses, optionally refilled.
type Quota struct {
	Remaining int64   `json:"remaining"`
	Refill    *Refill `json:"refill"`
}

// Token is an API key as the admin API describes it. Secret is set only in
// the answers of CreateToken and RotateToken.
type Token struct {
	ID           string          `json:"id"`
	API          string          `json:"api"`
	Name         string          `json:"name"`
	Subject      string          `json:"subject"`
	Scopes       []string        `json:"scopes"`
	Hint         string          `json:"hint"`
	Metadata     json.RawMessage `json:"metadata"`
	AllowedCIDRs []string        `json:"allowed_cidrs"`
	RateLimit    *RateLimit      `json:"rate_limit"`
	Quota        *Quota          `json:"quota"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
	ExpiresAt    *time.Time      `json:"expires_at"`
	RevokedAt    *time.Time      `json:"revoked_at"`
	RevokeReason string          `json:"revoke_reason"`
	RotatedAt    *time.Time      `json:"rotated_at"`
	LastUsedAt   *time.Time      `json:"last_used_at"`
	LastUsedIP   string          `json:"last_used_ip"`
	UseCount     int64           `json:"use_count"`
	// Secret is the token itself ("token" in JSON). The server shows it once.
	Secret string `json:"token,omitempty"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// TokenList is one page of ListTokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
	// NextCursor is passed as TokenFilter.Cursor for the next page; empty on
	// the last page.
	NextCursor string `json:"next_cursor"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// TokenFilter selects the tokens ListTokens returns. Zero fields are not sent.
type TokenFilter struct {
	API     string
	Subject string
	Cursor  string
	Limit   int
}

// CreateTokenRequest is the body of POST /v1/tokens. Set at most one of
// ExpiresIn and ExpiresAt.
type CreateTokenRequest struct {
	API          string          `json:"api"`
	Name         string          `json:"name,omitempty"`
	Subject      string          `json:"subject,omitempty"`
	Scopes       []string        `json:"scopes,omitempty"`
	ExpiresIn    int64           `json:"expires_in,omitempty"` // seconds
	ExpiresAt    *time.Time      `json:"expires_at,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	AllowedCIDRs []string        `json:"allowed_cidrs,omitempty"`
	RateLimit    *RateLimit      `json:"rate_limit,omitempty"`
	Quota        *Quota          `json:"quota,omitempty"`
}

// UpdateTokenRequest is the body of PATCH /v1/tokens/{id}. Nil fields (and
// absent Nullables) are left unchanged; a non-nil empty slice sets an empty
// list.
type UpdateTokenRequest struct {
	Name         *string             `json:"name,omitempty"`
	Scopes       []string            `json:"scopes,omitzero"`
	Metadata     json.RawMessage     `json:"metadata,omitzero"`
	AllowedCIDRs []string            `json:"allowed_cidrs,omitzero"`
	RateLimit    Nullable[RateLimit] `json:"rate_limit,omitzero"`
	Quota        Nullable[Quota]     `json:"quota,omitzero"`
}

// UsageHour counts the verifications of one hour.
type UsageHour struct {
	Hour    time.Time `json:"hour"`
	Allowed int64     `json:"allowed"`
	Denied  int64     `json:"denied"`
}

// Usage is the answer of Usage.
type Usage struct {
	TokenID    string      `json:"token_id"`
	TotalUses  int64       `json:"total_uses"`
	LastUsedAt *time.Time  `json:"last_used_at"`
	LastUsedIP string      `json:"last_used_ip"`
	Hours      []UsageHour `json:"hours"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// VerifiedToken describes a recognised, live token in a VerifyResult.
type VerifiedToken struct {
	ID        string          `json:"id"`
	API       string          `json:"api"`
	Subject   string          `json:"subject"`
	Scopes    []string        `json:"scopes"`
	ExpiresAt *time.Time      `json:"expires_at"`
	Metadata  json.RawMessage `json:"metadata"`
}

// VerifyRateLimit is the rate-limit state reported by Verify.
type VerifyRateLimit struct {
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	// Reset is kept as the server sent it: the contract does not fix
	// whether it is a time or a number of seconds.
	Reset json.RawMessage `json:"reset"`
}

// VerifyQuota is the quota state reported by Verify.
type VerifyQuota struct {
	Remaining int64 `json:"remaining"`
}

// VerifyResult is the answer of Verify. Code is one of "valid",
// "malformed", "not_found", "expired", "revoked", "insufficient_scope",
// "wrong_api", "forbidden_ip", "rate_limited" or "quota_exceeded".
type VerifyResult struct {
	Valid     bool             `json:"valid"`
	Code      string           `json:"code"`
	Token     *VerifiedToken   `json:"token"`
	RateLimit *VerifyRateLimit `json:"rate_limit"`
	Quota     *VerifyQuota     `json:"quota"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// AuditEvent is one entry of the hash-chained audit log.
type AuditEvent struct {
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

// AuditPage is one page of ListAudit, newest first.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
	// NextCursor is passed as AuditFilter.Cursor for the next page; 0 on the
	// last page.
	NextCursor int64 `json:"next_cursor"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// AuditFilter selects the events ListAudit returns. Zero fields are not sent.
type AuditFilter struct {
	Action string
	Actor  string
	Target string
	From   time.Time
	To     time.Time
	Cursor int64
	Limit  int
}

// CreateAPI registers a new API (POST /v1/apis).
func (c *Client) CreateAPI(ctx context.Context, req CreateAPIRequest) (*API, error) {
	var a API
	err := c.do(ctx, http.MethodPost, "/v1/apis", nil, req, &a, &a.Raw)
	if err != nil {
		return nil, fmt.Errorf("create api: %w", err)
	}
	return &a, nil
}

// ListAPIs returns every API (GET /v1/apis).
func (c *Client) ListAPIs(ctx context.Context) (*APIList, error) {
	var l APIList
	if err := c.do(ctx, http.MethodGet, "/v1/apis", nil, nil, &l, &l.Raw); err != nil {
		return nil, fmt.Errorf("list apis: %w", err)
	}
	return &l, nil
}

// GetAPI returns one API by id, name or identifier (GET /v1/apis/{id}).
func (c *Client) GetAPI(ctx context.Context, id string) (*API, error) {
	var a API
	if err := c.do(ctx, http.MethodGet, "/v1/apis/"+url.PathEscape(id), nil, nil, &a, &a.Raw); err != nil {
		return nil, fmt.Errorf("get api: %w", err)
	}
	return &a, nil
}

// UpdateAPI changes an API (PATCH /v1/apis/{id}).
func (c *Client) UpdateAPI(ctx context.Context, id string, req UpdateAPIRequest) (*API, error) {
	var a API
	if err := c.do(ctx, http.MethodPatch, "/v1/apis/"+url.PathEscape(id), nil, req, &a, &a.Raw); err != nil {
		return nil, fmt.Errorf("update api: %w", err)
	}
	return &a, nil
}

// DeleteAPI deletes an API (DELETE /v1/apis/{id}). Unless force is set, the
// server refuses ("api_in_use") to delete an API that has live tokens.
func (c *Client) DeleteAPI(ctx context.Context, id string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	if err := c.do(ctx, http.MethodDelete, "/v1/apis/"+url.PathEscape(id), q, nil, nil, nil); err != nil {
		return fmt.Errorf("delete api: %w", err)
	}
	return nil
}

// CreateToken issues a token (POST /v1/tokens). The answer's Secret holds
// the token itself, which the server never shows again.
func (c *Client) CreateToken(ctx context.Context, req CreateTokenRequest) (*Token, error) {
	var t Token
	if err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, req, &t, &t.Raw); err != nil {
		return nil, fmt.Errorf("create token: %w", err)
	}
	return &t, nil
}

// ListTokens returns one page of tokens (GET /v1/tokens).
func (c *Client) ListTokens(ctx context.Context, f TokenFilter) (*TokenList, error) {
	q := url.Values{}
	setNonEmpty(q, "api", f.API)
	setNonEmpty(q, "subject", f.Subject)
	setNonEmpty(q, "cursor", f.Cursor)
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var l TokenList
	if err := c.do(ctx, http.MethodGet, "/v1/tokens", q, nil, &l, &l.Raw); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return &l, nil
}

// GetToken returns one token (GET /v1/tokens/{id}).
func (c *Client) GetToken(ctx context.Context, id string) (*Token, error) {
	var t Token
	if err := c.do(ctx, http.MethodGet, "/v1/tokens/"+url.PathEscape(id), nil, nil, &t, &t.Raw); err != nil {
		return nil, fmt.Errorf("get token: %w", err)
	}
	return &t, nil
}

// UpdateToken changes a token (PATCH /v1/tokens/{id}).
func (c *Client) UpdateToken(ctx context.Context, id string, req UpdateTokenRequest) (*Token, error) {
	var t Token
	if err := c.do(ctx, http.MethodPatch, "/v1/tokens/"+url.PathEscape(id), nil, req, &t, &t.Raw); err != nil {
		return nil, fmt.Errorf("update token: %w", err)
	}
	return &t, nil
}

// RevokeToken revokes a token (DELETE /v1/tokens/{id}) and returns it. The
// reason is recorded when not empty.
func (c *Client) RevokeToken(ctx context.Context, id, reason string) (*Token, error) {
	var body any
	if reason != "" {
		body = struct {
			Reason string `json:"reason"`
		}{reason}
	}
	var t Token
	if err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, body, &t, &t.Raw); err != nil {
		return nil, fmt.Errorf("revoke token: %w", err)
	}
	return &t, nil
}

// RotateToken replaces a token's secret (POST /v1/tokens/{id}/rotate). The
// old secret keeps working for grace (whole seconds, at most 7 days). The
// answer's Secret holds the new token.
func (c *Client) RotateToken(ctx context.Context, id string, grace time.Duration) (*Token, error) {
	if grace < 0 || grace%time.Second != 0 {
		return nil, fmt.Errorf("rotate token: grace period %v is not a whole number of seconds", grace)
	}
	body := struct {
		GracePeriod int64 `json:"grace_period"`
	}{int64(grace / time.Second)}
	var t Token
	if err := c.do(ctx, http.MethodPost, "/v1/tokens/"+url.PathEscape(id)+"/rotate", nil, body, &t, &t.Raw); err != nil {
		return nil, fmt.Errorf("rotate token: %w", err)
	}
	return &t, nil
}

// Usage returns a token's hourly usage between from and to
// (GET /v1/tokens/{id}/usage). Zero times are not sent; the server then
// defaults to the last 24 hours.
func (c *Client) Usage(ctx context.Context, id string, from, to time.Time) (*Usage, error) {
	q := url.Values{}
	setTime(q, "from", from)
	setTime(q, "to", to)
	var u Usage
	if err := c.do(ctx, http.MethodGet, "/v1/tokens/"+url.PathEscape(id)+"/usage", q, nil, &u, &u.Raw); err != nil {
		return nil, fmt.Errorf("token usage: %w", err)
	}
	return &u, nil
}

// ListAudit returns one page of audit events, newest first (GET /v1/audit).
func (c *Client) ListAudit(ctx context.Context, f AuditFilter) (*AuditPage, error) {
	q := url.Values{}
	setNonEmpty(q, "action", f.Action)
	setNonEmpty(q, "actor", f.Actor)
	setNonEmpty(q, "target", f.Target)
	setTime(q, "from", f.From)
	setTime(q, "to", f.To)
	if f.Cursor != 0 {
		q.Set("cursor", strconv.FormatInt(f.Cursor, 10))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var p AuditPage
	if err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &p, &p.Raw); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return &p, nil
}

// Verify checks token (POST /v1/verify): that it is live, belongs to api
// (when not empty) and grants every scope in scopes. An invalid token is
// not an error: the answer's Valid is false and Code says why.
func (c *Client) Verify(ctx context.Context, token, api string, scopes []string) (*VerifyResult, error) {
	body := struct {
		Token  string   `json:"token"`
		Scopes []string `json:"scopes,omitempty"`
		API    string   `json:"api,omitempty"`
	}{token, scopes, api}
	var r VerifyResult
	if err := c.do(ctx, http.MethodPost, "/v1/verify", nil, body, &r, &r.Raw); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return &r, nil
}

// LeakReport is the answer to ReportLeaks. Without an admin token the
// server says only how many tokens it received (Received); with one it says
// what each token was and what was done (Results, in request order).
type LeakReport struct {
	Received int          `json:"received"`
	Results  []LeakResult `json:"results"`
	// Raw is the server's JSON answer, unchanged.
	Raw json.RawMessage `json:"-"`
}

// LeakResult is what one reported token turned out to be.
type LeakResult struct {
	Hint    string `json:"hint"`    // prefix and last 4 characters; empty if malformed
	Kind    string `json:"kind"`    // api_key, access_token, refresh_token or client_secret
	Outcome string `json:"outcome"` // revoked, grace_ended, inactive, unknown or malformed
	ID      string `json:"id"`      // the token, grant or client
}

// ReportLeaks reports tokens found where they should not be, such as in a
// public repository (POST /v1/leaks): every one the server issued stops
// working at once. source says where they were found. The call needs no
// admin token; with an empty Token none is sent.
func (c *Client) ReportLeaks(ctx context.Context, tokens []string, source string) (*LeakReport, error) {
	body := struct {
		Tokens []string `json:"tokens"`
		Source string   `json:"source,omitempty"`
	}{tokens, source}
	var r LeakReport
	if err := c.do(ctx, http.MethodPost, "/v1/leaks", nil, body, &r, &r.Raw); err != nil {
		return nil, fmt.Errorf("report leaks: %w", err)
	}
	if r.Received == 0 {
		r.Received = len(r.Results)
	}
	return &r, nil
}

// errResponseTooLarge is returned when an answer exceeds MaxResponseBytes.
var errResponseTooLarge = errors.New("response larger than 8 MiB")

// do sends one request and decodes a 2xx answer into out (when not nil),
// storing the body's bytes in raw (when not nil). A nil in sends no body.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any, raw *json.RawMessage) error {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if len(b) > MaxResponseBytes {
		return errResponseTooLarge
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp.StatusCode, b)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if raw != nil {
		*raw = b
	}
	return nil
}

// decodeError builds the *APIError for a non-2xx answer. A body that is not
// the documented error object yields an APIError with only the status.
func decodeError(status int, b []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	apiErr := &APIError{Status: status}
	if json.Unmarshal(b, &e) == nil {
		apiErr.Code = e.Error.Code
		apiErr.Message = e.Error.Message
	}
	return apiErr
}

func setNonEmpty(q url.Values, key, v string) {
	if v != "" {
		q.Set(key, v)
	}
}

func setTime(q url.Values, key string, t time.Time) {
	if !t.IsZero() {
		q.Set(key, t.UTC().Format(time.RFC3339))
	}
}
