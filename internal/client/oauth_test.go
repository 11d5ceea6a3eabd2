package client

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/store"
)

// realServer starts the real API and returns a client with its admin token.
func realServer(t *testing.T) (*apitest.Server, *Client) {
	t.Helper()
	s := apitest.New(t)
	return s, &Client{BaseURL: s.URL, Token: s.Admin}
}

// wantAPIError checks that err is an *APIError with status and code.
func wantAPIError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
		t.Errorf("%s: err = %v, want HTTP %d %s", what, err, status, code)
	}
}

func TestOAuthClients(t *testing.T) {
	t.Parallel()
	s, c := realServer(t)
	ctx := context.Background()

	created, err := c.CreateClient(ctx, CreateClientRequest{Name: "billing", GrantTypes: []string{"client_credentials"},
		APIs: []string{"acme"}, Scopes: []string{"repos:read"}, AccessTokenTTL: 600})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Secret, "jts_") || created.SecretHint == "" || !strings.Contains(string(created.Raw), created.Secret) {
		t.Errorf("created: secret %q, hint %q", created.Secret, created.SecretHint)
	}
	want := OAuthClient{ID: created.ID, Name: "billing", Type: "confidential", GrantTypes: []string{"client_credentials"},
		RedirectURIs: []string{}, PostLogoutRedirectURIs: []string{}, APIs: []string{s.API.ID}, Scopes: []string{"repos:read"}, TokenFormat: "opaque",
		SigningAlg: "ES256", AccessTokenTTL: 600, RefreshTokenTTL: 30 * 24 * 3600, AuthMethod: "client_secret_basic",
		JWKS: json.RawMessage("null"), SecretHint: created.SecretHint, CreatedAt: created.CreatedAt, UpdatedAt: created.UpdatedAt}
	ignoreRaw := cmpopts.IgnoreFields(OAuthClient{}, "Raw")

	got, err := c.GetClient(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*got, want, ignoreRaw); diff != "" {
		t.Errorf("GetClient (-got +want):\n%s", diff)
	}
	if strings.Contains(string(got.Raw), created.Secret) {
		t.Errorf("GetClient answer holds the secret")
	}

	pub, err := c.CreateClient(ctx, CreateClientRequest{Name: "cli", Type: "public",
		GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"http://127.0.0.1/cb"},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1/bye"}})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Secret != "" || pub.AuthMethod != "none" || !slices.Equal(pub.PostLogoutRedirectURIs, []string{"http://127.0.0.1/bye"}) {
		t.Errorf("public client: %+v", pub)
	}

	first, err := c.ListClients(ctx, Page{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Clients) != 1 || first.Clients[0].ID != pub.ID || first.Next == "" {
		t.Fatalf("first page: %+v", first)
	}
	second, err := c.ListClients(ctx, Page{After: first.Next, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Clients) != 1 || second.Clients[0].ID != created.ID || second.Next != "" {
		t.Errorf("second page: %+v", second)
	}

	name, disabled, ttl := "billing v2", true, int64(120)
	upd, err := c.UpdateClient(ctx, created.ID, UpdateClientRequest{Name: &name, Disabled: &disabled, AccessTokenTTL: &ttl})
	if err != nil {
		t.Fatal(err)
	}
	want.Name, want.Disabled, want.AccessTokenTTL, want.UpdatedAt = name, true, 120, upd.UpdatedAt
	if diff := cmp.Diff(*upd, want, ignoreRaw); diff != "" {
		t.Errorf("UpdateClient (-got +want):\n%s", diff)
	}
	// An empty non-nil list is sent, and the server refuses it for a
	// client whose grant needs a redirect URI.
	_, err = c.UpdateClient(ctx, pub.ID, UpdateClientRequest{RedirectURIs: []string{}})
	wantAPIError(t, "clear redirect uris", err, 400, "invalid_redirect_uri")

	rot, err := c.RotateClientSecret(ctx, created.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Secret == "" || rot.Secret == created.Secret || rot.SecretPreviousExpiresAt == nil {
		t.Errorf("rotate: %+v", rot)
	}
	if _, err := c.RotateClientSecret(ctx, created.ID, 1500*time.Millisecond); err == nil {
		t.Errorf("fractional grace accepted")
	}
	_, err = c.RotateClientSecret(ctx, pub.ID, 0)
	wantAPIError(t, "rotate public client", err, 400, "invalid_request")

	if err := c.DeleteClient(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetClient(ctx, created.ID)
	wantAPIError(t, "get deleted client", err, 404, "not_found")
	_, err = c.CreateClient(ctx, CreateClientRequest{Name: "bad", RedirectURIs: []string{"http://app.example.com/cb"}})
	wantAPIError(t, "http redirect", err, 400, "invalid_redirect_uri")
}

func TestOAuthClientJWKS(t *testing.T) {
	t.Parallel()
	_, c := realServer(t)
	ctx := context.Background()
	jwks := json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	o, err := c.CreateClient(ctx, CreateClientRequest{Name: "pkj", GrantTypes: []string{"client_credentials"},
		AuthMethod: "private_key_jwt", JWKS: jwks})
	if err != nil {
		t.Fatal(err)
	}
	if o.Secret != "" || !strings.Contains(string(o.JWKS), "P-256") {
		t.Errorf("created: %+v", o)
	}
	uri := "https://app.example.com/jwks.json"
	upd, err := c.UpdateClient(ctx, o.ID, UpdateClientRequest{JWKS: Null[json.RawMessage](), JWKSURI: &uri})
	if err != nil {
		t.Fatal(err)
	}
	if string(upd.JWKS) != "null" || upd.JWKSURI != uri {
		t.Errorf("after swap: jwks %s, jwks_uri %q", upd.JWKS, upd.JWKSURI)
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	s, c := realServer(t)
	ctx := context.Background()
	const pw = "correct horse battery"

	alice, err := c.CreateUser(ctx, CreateUserRequest{Username: "alice", Email: "alice@example.com", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	if alice.Username != "alice" || alice.Email != "alice@example.com" || alice.Disabled || strings.Contains(string(alice.Raw), pw) {
		t.Errorf("created: %+v %s", alice, alice.Raw)
	}
	_, err = c.CreateUser(ctx, CreateUserRequest{Username: "alice", Password: pw})
	wantAPIError(t, "duplicate user", err, 409, "conflict")
	if _, err = c.CreateUser(ctx, CreateUserRequest{Username: "bob"}); err == nil {
		t.Errorf("user without a password created")
	}
	bob, err := c.CreateUser(ctx, CreateUserRequest{Username: "bob", Password: pw})
	if err != nil {
		t.Fatal(err)
	}

	got, err := c.GetUser(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	ignoreRaw := cmpopts.IgnoreFields(User{}, "Raw")
	if diff := cmp.Diff(*got, *alice, ignoreRaw); diff != "" {
		t.Errorf("GetUser (-got +want):\n%s", diff)
	}
	l, err := c.ListUsers(ctx, Page{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Users) != 1 || l.Users[0].ID != bob.ID || l.Next == "" {
		t.Errorf("first page: %+v", l)
	}
	l, err = c.ListUsers(ctx, Page{After: l.Next})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Users) != 1 || l.Users[0].ID != alice.ID || l.Next != "" {
		t.Errorf("second page: %+v", l)
	}

	email, yes, newPW := "a@example.com", true, "a brand new passphrase"
	upd, err := c.UpdateUser(ctx, alice.ID, UpdateUserRequest{Email: &email, Disabled: &yes, Password: &newPW})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Email != email || !upd.Disabled {
		t.Errorf("update: %+v", upd)
	}
	if _, err := c.UpdateUser(ctx, alice.ID, UpdateUserRequest{}); err == nil {
		t.Errorf("empty update accepted")
	}

	// A consent, as the consent page stores it.
	web, err := c.CreateClient(ctx, CreateClientRequest{Name: "web", RedirectURIs: []string{"https://app.example.com/cb"},
		APIs: []string{"acme"}, Scopes: []string{"repos:read"}})
	if err != nil {
		t.Fatal(err)
	}
	now := s.Clock.Now().UTC().Truncate(time.Millisecond)
	if err := s.DB.PutConsent(ctx, store.Consent{UserID: alice.ID, ClientID: web.ID, APIID: s.API.ID,
		Scopes: []string{"repos:read"}, CreatedAt: now, UpdatedAt: now}, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	cs, err := c.ListConsents(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantCS := []Consent{{UserID: alice.ID, ClientID: web.ID, API: s.API.ID, Scopes: []string{"repos:read"}, CreatedAt: now, UpdatedAt: now}}
	if diff := cmp.Diff(cs.Consents, wantCS); diff != "" {
		t.Errorf("consents (-got +want):\n%s", diff)
	}
	if err := c.RevokeConsent(ctx, alice.ID, web.ID); err != nil {
		t.Fatal(err)
	}
	if cs, err = c.ListConsents(ctx, alice.ID); err != nil || len(cs.Consents) != 0 {
		t.Errorf("after revoke: %+v, %v", cs, err)
	}

	if err := c.DeleteUser(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetUser(ctx, alice.ID)
	wantAPIError(t, "get deleted user", err, 404, "not_found")
	_, err = c.ListConsents(ctx, alice.ID)
	wantAPIError(t, "consents of deleted user", err, 404, "not_found")
}

func TestSigningKeys(t *testing.T) {
	t.Parallel()
	s, c := realServer(t)
	ctx := context.Background()
	before, err := c.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Keys) == 0 || before.Keys[0].State != "active" {
		t.Fatalf("keys: %+v", before.Keys)
	}
	rotated, err := c.RotateKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated.Keys) == 0 || rotated.Keys[0].State != "next" || len(rotated.Keys[0].PublicJWK) == 0 {
		t.Fatalf("rotated: %+v", rotated.Keys)
	}
	s.Clock.Advance(apitest.KeyPrePublish)
	after, err := c.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]string{}
	for _, k := range after.Keys {
		state[k.ID] = k.State
	}
	if state[before.Keys[0].ID] != "retired" || state[rotated.Keys[0].ID] != "active" {
		t.Errorf("states after the delay: %v", state)
	}
	bad := &Client{BaseURL: s.URL, Token: s.Verify}
	_, err = bad.RotateKeys(ctx)
	wantAPIError(t, "rotate with the verify scope", err, 403, "forbidden")
}
