package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

// oauthAdminRoutes registers the admin API of OAuth clients, users and
// signing keys. routes calls it when the OAuth server is configured.
func (a *API) oauthAdminRoutes(handle func(string, handlerFunc), admin func(authedFunc) handlerFunc) {
	handle("POST /v1/clients", admin(a.createClient))
	handle("GET /v1/clients", admin(a.listClients))
	handle("GET /v1/clients/{id}", admin(a.getClient))
	handle("PATCH /v1/clients/{id}", admin(a.updateClient))
	handle("DELETE /v1/clients/{id}", admin(a.deleteClient))
	handle("POST /v1/clients/{id}/rotate-secret", admin(a.rotateClientSecret))

	if a.cfg.Users != nil {
		a.userRoutes(handle, admin)
	}
	if a.cfg.Keys != nil {
		handle("GET /v1/keys", admin(a.listKeys))
		handle("POST /v1/keys/rotate", admin(a.rotateKeys))
	}
}

func (a *API) userRoutes(handle func(string, handlerFunc), admin func(authedFunc) handlerFunc) {
	handle("POST /v1/users", admin(a.createUser))
	handle("GET /v1/users", admin(a.listUsers))
	handle("GET /v1/users/{id}", admin(a.getUser))
	handle("PATCH /v1/users/{id}", admin(a.updateUser))
	handle("DELETE /v1/users/{id}", admin(a.deleteUser))
	handle("DELETE /v1/users/{id}/sessions", admin(a.endSessions))
	handle("GET /v1/users/{id}/consents", admin(a.listConsents))
	handle("DELETE /v1/users/{id}/consents/{client_id}", admin(a.revokeConsent))
}

// maxTTLSeconds bounds every lifetime given in seconds, so that converting
// it to a time.Duration cannot overflow (about 292 years fit).
const maxTTLSeconds = 100 * 365 * 24 * 3600

// ttlField converts a lifetime in seconds, rejecting values no duration can
// hold (the service checks the real bounds).
func ttlField(name string, n int64) (time.Duration, error) {
	if n < 0 || n > maxTTLSeconds {
		return 0, errorf(http.StatusBadRequest, "invalid_expiry", "%s must be a positive number of seconds", name)
	}
	return seconds(n), nil
}

// pageQuery reads the ?cursor= and ?limit= of a paginated list, as every
// list of the admin API names them.
func pageQuery(r *http.Request, idPrefix string) (after string, limit int, err error) {
	q := r.URL.Query()
	after = q.Get("cursor")
	if after != "" && !ids.Valid(idPrefix, after) {
		// A page after a cursor that matches nothing would be empty, and
		// the list would look complete.
		return "", 0, errorf(http.StatusBadRequest, "invalid_request", "cursor is not a cursor this server returned")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, errorf(http.StatusBadRequest, "invalid_request", "limit must be a number from 1 to 1000")
		}
		limit = n
	}
	return after, limit, nil
}

// nonEmpty returns l, or an empty list for nil, so lists are never null in
// answers.
func nonEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// rawJWKS treats an absent or null jwks the same: none.
func rawJWKS(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

type clientJSON struct {
	ID              string          `json:"client_id"`
	Name            string          `json:"name"`
	Type            string          `json:"type"`
	GrantTypes      []string        `json:"grant_types"`
	RedirectURIs    []string        `json:"redirect_uris"`
	PostLogout      []string        `json:"post_logout_redirect_uris"`
	APIs            []string        `json:"apis"`
	Scopes          []string        `json:"scopes"`
	TokenFormat     string          `json:"token_format"`
	SigningAlg      string          `json:"signing_alg"`
	AccessTokenTTL  int64           `json:"access_token_ttl"`
	RefreshTokenTTL int64           `json:"refresh_token_ttl"`
	AuthMethod      string          `json:"token_endpoint_auth_method"`
	JWKS            json.RawMessage `json:"jwks"`
	JWKSURI         string          `json:"jwks_uri"`
	SecretHint      string          `json:"secret_hint"`
	Disabled        bool            `json:"disabled"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	// Secret fields, set only in the create and rotate-secret responses.
	Secret                  string     `json:"client_secret,omitempty"`
	SecretPreviousExpiresAt *time.Time `json:"secret_previous_expires_at,omitempty"`
}

func toClientJSON(c *store.Client) clientJSON {
	out := clientJSON{ID: c.ID, Name: c.Name, Type: c.Type, GrantTypes: nonEmpty(c.GrantTypes),
		RedirectURIs: nonEmpty(c.RedirectURIs), PostLogout: nonEmpty(c.PostLogoutRedirectURIs), APIs: nonEmpty(c.APIs), Scopes: nonEmpty(c.Scopes),
		TokenFormat: c.TokenFormat, SigningAlg: c.SigningAlg, AccessTokenTTL: int64(c.AccessTokenTTL / time.Second),
		RefreshTokenTTL: int64(c.RefreshTokenTTL / time.Second), AuthMethod: c.AuthMethod, JWKS: rawJWKS(c.JWKS),
		JWKSURI: c.JWKSURI, SecretHint: c.SecretHint, Disabled: !c.DisabledAt.IsZero(),
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	if out.JWKS == nil {
		out.JWKS = json.RawMessage("null")
	}
	return out
}

func (a *API) createClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Name            string          `json:"name"`
		Type            string          `json:"type"`
		GrantTypes      []string        `json:"grant_types"`
		RedirectURIs    []string        `json:"redirect_uris"`
		PostLogout      []string        `json:"post_logout_redirect_uris"`
		APIs            []string        `json:"apis"`
		Scopes          []string        `json:"scopes"`
		TokenFormat     string          `json:"token_format"`
		SigningAlg      string          `json:"signing_alg"`
		AccessTokenTTL  int64           `json:"access_token_ttl"`
		RefreshTokenTTL int64           `json:"refresh_token_ttl"`
		AuthMethod      string          `json:"token_endpoint_auth_method"`
		JWKS            json.RawMessage `json:"jwks"`
		JWKSURI         string          `json:"jwks_uri"`
	}
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	p := oauth.ClientParams{Name: req.Name, Type: req.Type, GrantTypes: req.GrantTypes, RedirectURIs: req.RedirectURIs,
		PostLogoutRedirectURIs: req.PostLogout, APIs: req.APIs, Scopes: req.Scopes, TokenFormat: req.TokenFormat, SigningAlg: req.SigningAlg,
		AuthMethod: req.AuthMethod, JWKS: rawJWKS(req.JWKS), JWKSURI: req.JWKSURI}
	var err error
	if p.AccessTokenTTL, err = ttlField("access_token_ttl", req.AccessTokenTTL); err != nil {
		return err
	}
	if p.RefreshTokenTTL, err = ttlField("refresh_token_ttl", req.RefreshTokenTTL); err != nil {
		return err
	}
	cl, secret, err := a.cfg.OAuth.CreateClient(r.Context(), p, c.actor())
	if err != nil {
		return err
	}
	out := toClientJSON(&cl)
	out.Secret = secret
	return writeJSON(w, http.StatusCreated, out)
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request, c *caller) error {
	return writePage(w, r, "clients", ids.Client, a.cfg.OAuth.ListClients, toClientJSON)
}

func (a *API) getClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	cl, err := a.cfg.OAuth.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toClientJSON(&cl))
}

func (a *API) updateClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Name            *string                   `json:"name"`
		GrantTypes      []string                  `json:"grant_types"`
		RedirectURIs    []string                  `json:"redirect_uris"`
		PostLogout      []string                  `json:"post_logout_redirect_uris"`
		APIs            []string                  `json:"apis"`
		Scopes          []string                  `json:"scopes"`
		TokenFormat     *string                   `json:"token_format"`
		SigningAlg      *string                   `json:"signing_alg"`
		AccessTokenTTL  *int64                    `json:"access_token_ttl"`
		RefreshTokenTTL *int64                    `json:"refresh_token_ttl"`
		JWKS            optional[json.RawMessage] `json:"jwks"`
		JWKSURI         *string                   `json:"jwks_uri"`
		Disabled        *bool                     `json:"disabled"`
		// Fixed at creation; named here only to refuse them clearly.
		Type       *string `json:"type"`
		AuthMethod *string `json:"token_endpoint_auth_method"`
	}
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.Type != nil || req.AuthMethod != nil {
		return errorf(http.StatusBadRequest, "invalid_request", "type and token_endpoint_auth_method cannot change; register a new client")
	}
	if req.Name == nil && req.GrantTypes == nil && req.RedirectURIs == nil && req.PostLogout == nil && req.APIs == nil && req.Scopes == nil &&
		req.TokenFormat == nil && req.SigningAlg == nil && req.AccessTokenTTL == nil && req.RefreshTokenTTL == nil &&
		!req.JWKS.Set && req.JWKSURI == nil && req.Disabled == nil {
		return errorf(http.StatusBadRequest, "invalid_request", "nothing to change")
	}
	u := oauth.ClientUpdate{Name: req.Name, GrantTypes: req.GrantTypes, RedirectURIs: req.RedirectURIs,
		PostLogoutRedirectURIs: req.PostLogout, APIs: req.APIs,
		Scopes: req.Scopes, TokenFormat: req.TokenFormat, SigningAlg: req.SigningAlg, JWKSURI: req.JWKSURI, Disabled: req.Disabled}
	if req.JWKS.Set {
		u.JWKS = json.RawMessage{} // null clears the keys
		if v := req.JWKS.Value; v != nil {
			u.JWKS = *v
		}
	}
	for _, f := range []struct {
		name string
		in   *int64
		out  **time.Duration
	}{{"access_token_ttl", req.AccessTokenTTL, &u.AccessTokenTTL}, {"refresh_token_ttl", req.RefreshTokenTTL, &u.RefreshTokenTTL}} {
		if f.in == nil {
			continue
		}
		d, err := ttlField(f.name, *f.in)
		if err != nil {
			return err
		}
		*f.out = &d
	}
	cl, err := a.cfg.OAuth.UpdateClient(r.Context(), r.PathValue("id"), u, c.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toClientJSON(&cl))
}

func (a *API) deleteClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.cfg.OAuth.DeleteClient(r.Context(), r.PathValue("id"), c.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) rotateClientSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		GracePeriod int64 `json:"grace_period"`
	}
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	grace := seconds(req.GracePeriod)
	if req.GracePeriod < 0 || req.GracePeriod > int64(tokens.MaxGracePeriod/time.Second) {
		grace = -1 // refused by the service with the allowed range
	}
	// The old secret's grace starts at the rotation, a moment after now:
	// the time reported is never later than the real end.
	now := a.cfg.Now()
	cl, secret, err := a.cfg.OAuth.RotateClientSecret(r.Context(), r.PathValue("id"), grace, c.actor())
	if err != nil {
		return err
	}
	out := toClientJSON(&cl)
	out.Secret = secret
	if grace > 0 {
		until := now.Add(grace)
		out.SecretPreviousExpiresAt = &until
	}
	return writeJSON(w, http.StatusOK, out)
}

type userJSON struct {
	ID              string     `json:"id"`
	Username        string     `json:"username"`
	Email           string     `json:"email"`
	Disabled        bool       `json:"disabled"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	SessionsEndedAt *time.Time `json:"sessions_ended_at"`
}

// toUserJSON describes a user; the password hash never leaves the server.
func toUserJSON(u *store.User) userJSON {
	return userJSON{ID: u.ID, Username: u.Username, Email: u.Email, Disabled: !u.DisabledAt.IsZero(),
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, SessionsEndedAt: timePtr(u.SessionsEndedAt)}
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Username string `json:"username"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	u, err := a.cfg.Users.Create(r.Context(), users.CreateParams{Username: req.Username, Email: req.Email, Password: req.Password}, c.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, toUserJSON(&u))
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, c *caller) error {
	return writePage(w, r, "users", ids.User, a.cfg.Users.List, toUserJSON)
}

// writePage answers a cursor-paged list of items whose ids start with
// idPrefix: the page of the query's cursor and limit, converted for the
// wire, under key, with next_cursor.
func writePage[T, J any](w http.ResponseWriter, r *http.Request, key, idPrefix string,
	list func(ctx context.Context, after string, limit int) ([]T, string, error), toJSON func(*T) J) error {
	after, limit, err := pageQuery(r, idPrefix)
	if err != nil {
		return err
	}
	items, next, err := list(r.Context(), after, limit)
	if err != nil {
		return err
	}
	out := make([]J, 0, len(items))
	for i := range items {
		out = append(out, toJSON(&items[i]))
	}
	return writeJSON(w, http.StatusOK, map[string]any{key: out, "next_cursor": next})
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := a.cfg.Users.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toUserJSON(&u))
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Email    *string `json:"email"`
		Disabled *bool   `json:"disabled"`
		Password *string `json:"password"`
	}
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.Email == nil && req.Disabled == nil && req.Password == nil {
		return errorf(http.StatusBadRequest, "invalid_request", "nothing to change: set email, disabled or password")
	}
	u, err := a.cfg.Users.Update(r.Context(), r.PathValue("id"), users.UpdateParams{Email: req.Email, Disabled: req.Disabled, Password: req.Password}, c.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toUserJSON(&u))
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.cfg.Users.Delete(r.Context(), r.PathValue("id"), c.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// endSessions signs a user out of every browser.
func (a *API) endSessions(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.cfg.Users.EndSessions(r.Context(), r.PathValue("id"), c.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type consentJSON struct {
	UserID    string    `json:"user_id"`
	ClientID  string    `json:"client_id"`
	API       string    `json:"api"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (a *API) listConsents(w http.ResponseWriter, r *http.Request, c *caller) error {
	// An unknown user is a 404, not an empty list.
	list, err := a.cfg.Users.Consents(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	out := make([]consentJSON, 0, len(list))
	for _, cs := range list {
		out = append(out, consentJSON{UserID: cs.UserID, ClientID: cs.ClientID, API: cs.APIID, Scopes: nonEmpty(cs.Scopes),
			CreatedAt: cs.CreatedAt, UpdatedAt: cs.UpdatedAt})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"consents": out})
}

func (a *API) revokeConsent(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.cfg.Users.RevokeConsent(r.Context(), r.PathValue("id"), r.PathValue("client_id"), c.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Signing key states, from the key's times and now.
const (
	keyNext    = "next"    // published, not signing yet
	keyActive  = "active"  // signing
	keyRetired = "retired" // published until its tokens expire, no longer signing
)

type keyJSON struct {
	ID        string          `json:"id"`
	Alg       string          `json:"alg"`
	State     string          `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	ActiveAt  time.Time       `json:"active_at"`
	RetiredAt *time.Time      `json:"retired_at"`
	ExpiresAt *time.Time      `json:"expires_at"`
	PublicJWK json.RawMessage `json:"public_jwk"`
}

func toKeyJSON(k *store.SigningKey, now time.Time) keyJSON {
	state := keyActive
	switch {
	case !k.RetiredAt.IsZero() && !now.Before(k.RetiredAt):
		state = keyRetired
	case now.Before(k.ActiveAt):
		state = keyNext
	}
	jwk := k.PublicJWK
	if len(jwk) == 0 {
		jwk = json.RawMessage("null")
	}
	return keyJSON{ID: k.ID, Alg: k.Alg, State: state, CreatedAt: k.CreatedAt, ActiveAt: k.ActiveAt,
		RetiredAt: timePtr(k.RetiredAt), ExpiresAt: timePtr(k.ExpiresAt), PublicJWK: jwk}
}

func keysJSON(keys []store.SigningKey, now time.Time) map[string]any {
	out := make([]keyJSON, 0, len(keys))
	for i := range keys {
		out = append(out, toKeyJSON(&keys[i], now))
	}
	return map[string]any{"keys": out}
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	return writeJSON(w, http.StatusOK, keysJSON(a.cfg.Keys.Keys(), a.cfg.Now()))
}

func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := decodeJSON(w, r, &struct{}{}, true); err != nil {
		return err
	}
	act := c.actor()
	keys, err := a.cfg.Keys.Rotate(r.Context(), act.ID, act.RemoteAddr)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, keysJSON(keys, a.cfg.Now()))
}
