package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Page selects one page of a list answered with a "next" cursor. Zero
// fields are not sent (the server's default page size, first page).
type Page struct {
	// After is the Next of the previous page.
	After string
	// Limit is the page size, 1 to 1000.
	Limit int
}

func (p Page) query() url.Values {
	q := url.Values{}
	setNonEmpty(q, "cursor", p.After)
	if p.Limit != 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	return q
}

// OAuthClient is an OAuth 2.0 client (application) as the admin API
// describes it. Secret is set only in the answers of CreateClient and
// RotateClientSecret.
type OAuthClient struct {
	ID           string   `json:"client_id"`
	Name         string   `json:"name"`
	Type         string   `json:"type"` // "confidential" or "public"
	GrantTypes   []string `json:"grant_types"`
	RedirectURIs []string `json:"redirect_uris"`
	// PostLogoutRedirectURIs are where OpenID Connect RP-initiated logout
	// may send the browser back to.
	PostLogoutRedirectURIs []string        `json:"post_logout_redirect_uris"`
	APIs                   []string        `json:"apis"` // API ids
	Scopes                 []string        `json:"scopes"`
	TokenFormat            string          `json:"token_format"` // "opaque" or "jwt"
	SigningAlg             string          `json:"signing_alg"`
	AccessTokenTTL         int64           `json:"access_token_ttl"`  // seconds
	RefreshTokenTTL        int64           `json:"refresh_token_ttl"` // seconds
	AuthMethod             string          `json:"token_endpoint_auth_method"`
	JWKS                   json.RawMessage `json:"jwks"` // null when none
	JWKSURI                string          `json:"jwks_uri"`
	SecretHint             string          `json:"secret_hint"`
	Disabled               bool            `json:"disabled"`
	CreatedAt              time.Time       `json:"created_at"`
	UpdatedAt              time.Time       `json:"updated_at"`
	// Secret is the client secret ("client_secret" in JSON). The server
	// shows it once.
	Secret string `json:"client_secret,omitempty"`
	// SecretPreviousExpiresAt is, after a rotation with a grace period,
	// when the replaced secret stops working.
	SecretPreviousExpiresAt *time.Time `json:"secret_previous_expires_at,omitempty"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// OAuthClientList is one page of ListClients.
type OAuthClientList struct {
	Clients []OAuthClient `json:"clients"`
	// Next is passed as Page.After for the next page; empty on the last
	// page.
	Next string `json:"next_cursor"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// CreateClientRequest is the body of POST /v1/clients. Empty fields take
// the server's defaults: a confidential client with the
// authorization_code and refresh_token grants, opaque tokens, ES256 and
// client_secret_basic (none for a public client).
type CreateClientRequest struct {
	Name         string   `json:"name"`
	Type         string   `json:"type,omitempty"`
	GrantTypes   []string `json:"grant_types,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// PostLogoutRedirectURIs: see OAuthClient.
	PostLogoutRedirectURIs []string        `json:"post_logout_redirect_uris,omitempty"`
	APIs                   []string        `json:"apis,omitempty"` // ids, names or identifiers
	Scopes                 []string        `json:"scopes,omitempty"`
	TokenFormat            string          `json:"token_format,omitempty"`
	SigningAlg             string          `json:"signing_alg,omitempty"`
	AccessTokenTTL         int64           `json:"access_token_ttl,omitempty"`  // seconds
	RefreshTokenTTL        int64           `json:"refresh_token_ttl,omitempty"` // seconds
	AuthMethod             string          `json:"token_endpoint_auth_method,omitempty"`
	JWKS                   json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                string          `json:"jwks_uri,omitempty"`
}

// UpdateClientRequest is the body of PATCH /v1/clients/{id}. Nil fields
// (and an absent JWKS) are left unchanged; a non-nil empty slice sets an
// empty list. A client's type and authentication method cannot change.
type UpdateClientRequest struct {
	Name         *string  `json:"name,omitempty"`
	GrantTypes   []string `json:"grant_types,omitzero"`
	RedirectURIs []string `json:"redirect_uris,omitzero"`
	// PostLogoutRedirectURIs: see OAuthClient.
	PostLogoutRedirectURIs []string                  `json:"post_logout_redirect_uris,omitzero"`
	APIs                   []string                  `json:"apis,omitzero"`
	Scopes                 []string                  `json:"scopes,omitzero"`
	TokenFormat            *string                   `json:"token_format,omitempty"`
	SigningAlg             *string                   `json:"signing_alg,omitempty"`
	AccessTokenTTL         *int64                    `json:"access_token_ttl,omitempty"`  // seconds
	RefreshTokenTTL        *int64                    `json:"refresh_token_ttl,omitempty"` // seconds
	JWKS                   Nullable[json.RawMessage] `json:"jwks,omitzero"`
	JWKSURI                *string                   `json:"jwks_uri,omitempty"`
	Disabled               *bool                     `json:"disabled,omitempty"`
}

// User is a local account as the admin API describes it. Its password is
// never sent back.
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// SessionsEndedAt is when the user's browser sessions were last ended
	// (password reset, disable, EndSessions); nil if never.
	SessionsEndedAt *time.Time `json:"sessions_ended_at"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// UserList is one page of ListUsers.
type UserList struct {
	Users []User `json:"users"`
	// Next is passed as Page.After for the next page; empty on the last
	// page.
	Next string `json:"next_cursor"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// CreateUserRequest is the body of POST /v1/users.
type CreateUserRequest struct {
	Username string `json:"username"`
	Email    string `json:"email,omitempty"`
	Password string `json:"password"`
}

// UpdateUserRequest is the body of PATCH /v1/users/{id}. Nil fields are
// left unchanged.
type UpdateUserRequest struct {
	Email    *string `json:"email,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
	Password *string `json:"password,omitempty"`
}

// Consent is what a user allowed a client for one API.
type Consent struct {
	UserID    string    `json:"user_id"`
	ClientID  string    `json:"client_id"`
	API       string    `json:"api"` // API id
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ConsentList is the answer of ListConsents.
type ConsentList struct {
	Consents []Consent `json:"consents"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// SigningKey is a key that signs JWTs. State is "next" (published, not
// signing yet), "active" (signing) or "retired" (published until the
// tokens it signed expire).
type SigningKey struct {
	ID        string          `json:"id"`
	Alg       string          `json:"alg"`
	State     string          `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	ActiveAt  time.Time       `json:"active_at"`
	RetiredAt *time.Time      `json:"retired_at"`
	ExpiresAt *time.Time      `json:"expires_at"`
	PublicJWK json.RawMessage `json:"public_jwk"`
}

// SigningKeyList is the answer of ListKeys and RotateKeys.
type SigningKeyList struct {
	Keys []SigningKey `json:"keys"`

	// Raw is the JSON object the server sent.
	Raw json.RawMessage `json:"-"`
}

// CreateClient registers an OAuth client (POST /v1/clients). For a client
// that authenticates with a secret, the answer's Secret holds it; the
// server never shows it again.
func (c *Client) CreateClient(ctx context.Context, req CreateClientRequest) (*OAuthClient, error) {
	var o OAuthClient
	if err := c.do(ctx, http.MethodPost, "/v1/clients", nil, req, &o, &o.Raw); err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &o, nil
}

// ListClients returns one page of OAuth clients, newest first
// (GET /v1/clients).
func (c *Client) ListClients(ctx context.Context, p Page) (*OAuthClientList, error) {
	var l OAuthClientList
	if err := c.do(ctx, http.MethodGet, "/v1/clients", p.query(), nil, &l, &l.Raw); err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return &l, nil
}

// GetClient returns one OAuth client (GET /v1/clients/{id}).
func (c *Client) GetClient(ctx context.Context, id string) (*OAuthClient, error) {
	var o OAuthClient
	if err := c.do(ctx, http.MethodGet, "/v1/clients/"+url.PathEscape(id), nil, nil, &o, &o.Raw); err != nil {
		return nil, fmt.Errorf("get client: %w", err)
	}
	return &o, nil
}

// UpdateClient changes an OAuth client (PATCH /v1/clients/{id}).
func (c *Client) UpdateClient(ctx context.Context, id string, req UpdateClientRequest) (*OAuthClient, error) {
	var o OAuthClient
	if err := c.do(ctx, http.MethodPatch, "/v1/clients/"+url.PathEscape(id), nil, req, &o, &o.Raw); err != nil {
		return nil, fmt.Errorf("update client: %w", err)
	}
	return &o, nil
}

// DeleteClient deletes an OAuth client with everything issued to it
// (DELETE /v1/clients/{id}).
func (c *Client) DeleteClient(ctx context.Context, id string) error {
	if err := c.do(ctx, http.MethodDelete, "/v1/clients/"+url.PathEscape(id), nil, nil, nil, nil); err != nil {
		return fmt.Errorf("delete client: %w", err)
	}
	return nil
}

// RotateClientSecret gives a client a new secret
// (POST /v1/clients/{id}/rotate-secret). The old secret keeps working for
// grace (whole seconds, at most 7 days). The answer's Secret holds the new
// secret.
func (c *Client) RotateClientSecret(ctx context.Context, id string, grace time.Duration) (*OAuthClient, error) {
	if grace < 0 || grace%time.Second != 0 {
		return nil, fmt.Errorf("rotate client secret: grace period %v is not a whole number of seconds", grace)
	}
	body := struct {
		GracePeriod int64 `json:"grace_period"`
	}{int64(grace / time.Second)}
	var o OAuthClient
	if err := c.do(ctx, http.MethodPost, "/v1/clients/"+url.PathEscape(id)+"/rotate-secret", nil, body, &o, &o.Raw); err != nil {
		return nil, fmt.Errorf("rotate client secret: %w", err)
	}
	return &o, nil
}

// CreateUser creates a local account (POST /v1/users).
func (c *Client) CreateUser(ctx context.Context, req CreateUserRequest) (*User, error) {
	var u User
	if err := c.do(ctx, http.MethodPost, "/v1/users", nil, req, &u, &u.Raw); err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	return &u, nil
}

// ListUsers returns one page of users, newest first (GET /v1/users).
func (c *Client) ListUsers(ctx context.Context, p Page) (*UserList, error) {
	var l UserList
	if err := c.do(ctx, http.MethodGet, "/v1/users", p.query(), nil, &l, &l.Raw); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return &l, nil
}

// GetUser returns one user (GET /v1/users/{id}).
func (c *Client) GetUser(ctx context.Context, id string) (*User, error) {
	var u User
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(id), nil, nil, &u, &u.Raw); err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return &u, nil
}

// UpdateUser changes a user's email, password or disabled state
// (PATCH /v1/users/{id}).
func (c *Client) UpdateUser(ctx context.Context, id string, req UpdateUserRequest) (*User, error) {
	var u User
	if err := c.do(ctx, http.MethodPatch, "/v1/users/"+url.PathEscape(id), nil, req, &u, &u.Raw); err != nil {
		return nil, fmt.Errorf("update user: %w", err)
	}
	return &u, nil
}

// DeleteUser deletes a user with their consents and grants
// (DELETE /v1/users/{id}).
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	if err := c.do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(id), nil, nil, nil, nil); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	return nil
}

// EndSessions signs a user out of every browser
// (DELETE /v1/users/{id}/sessions).
func (c *Client) EndSessions(ctx context.Context, id string) error {
	if err := c.do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(id)+"/sessions", nil, nil, nil, nil); err != nil {
		return fmt.Errorf("end sessions: %w", err)
	}
	return nil
}

// ListConsents returns what a user allowed each client
// (GET /v1/users/{id}/consents).
func (c *Client) ListConsents(ctx context.Context, userID string) (*ConsentList, error) {
	var l ConsentList
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(userID)+"/consents", nil, nil, &l, &l.Raw); err != nil {
		return nil, fmt.Errorf("list consents: %w", err)
	}
	return &l, nil
}

// RevokeConsent forgets what a user allowed a client and revokes the
// client's grants from that user
// (DELETE /v1/users/{id}/consents/{client_id}).
func (c *Client) RevokeConsent(ctx context.Context, userID, clientID string) error {
	path := "/v1/users/" + url.PathEscape(userID) + "/consents/" + url.PathEscape(clientID)
	if err := c.do(ctx, http.MethodDelete, path, nil, nil, nil, nil); err != nil {
		return fmt.Errorf("revoke consent: %w", err)
	}
	return nil
}

// ListKeys returns the signing keys (GET /v1/keys).
func (c *Client) ListKeys(ctx context.Context) (*SigningKeyList, error) {
	var l SigningKeyList
	if err := c.do(ctx, http.MethodGet, "/v1/keys", nil, nil, &l, &l.Raw); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return &l, nil
}

// RotateKeys starts a signing key rotation (POST /v1/keys/rotate) and
// returns the new keys, which sign once their ActiveAt has come.
func (c *Client) RotateKeys(ctx context.Context) (*SigningKeyList, error) {
	var l SigningKeyList
	if err := c.do(ctx, http.MethodPost, "/v1/keys/rotate", nil, nil, &l, &l.Raw); err != nil {
		return nil, fmt.Errorf("rotate keys: %w", err)
	}
	return &l, nil
}
