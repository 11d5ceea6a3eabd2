package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/password"
	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
	"github.com/jetonhq/jeton/internal/web"
)

// testClock is the wall clock plus an offset that tests advance, so that
// key rotation can be tested without sleeping.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// testMasterKey is standard base64 of 32 bytes, for tests only.
const testMasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// keyPrePublish is how long a rotated key waits before it signs.
const keyPrePublish = 10 * time.Minute

// oauthEnv is env with the OAuth server, users and signing keys.
type oauthEnv struct {
	*env
	clock *testClock
	users *users.Service
	keys  *signing.Ring
	alice userJSON // created through the API
}

// newOAuthEnv builds the whole server on a fresh SQLite store: the "acme"
// API (scopes repos:read, repos:write), an admin token, a verify token and
// the user alice.
func newOAuthEnv(t *testing.T) *oauthEnv {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	clock := &testClock{}
	db, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "jeton.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := tokens.New(ctx, tokens.Config{Store: db, Logger: log, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	admin, err := svc.IssueAdminToken(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	master, err := signing.ParseMasterKey(testMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := signing.NewRing(ctx, signing.Config{Store: db, MasterKey: master, Logger: log, Now: clock.Now,
		PrePublish: keyPrePublish, Reload: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	pages, err := web.New(web.Config{SessionKey: master.Derive("web session"), Now: clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hasher := password.NewHasher(password.Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}, 0)
	us := users.New(users.Config{Store: db, Evict: svc.Evict, Now: clock.Now, Logger: log, Hasher: hasher})
	srv := httptest.NewUnstartedServer(nil)
	o, err := oauth.New(oauth.Config{Issuer: "http://" + srv.Listener.Addr().String(), Store: db, Tokens: svc, Users: us,
		Keys: keys, Pages: pages, MasterKey: master, Logger: log, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	api, err := New(ctx, Config{Tokens: svc, Store: db, Logger: log, OAuth: o, Users: us, Keys: keys, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = api
	srv.Start()
	t.Cleanup(srv.Close)

	e := &oauthEnv{env: &env{srv: srv, db: db, svc: svc, admin: admin.Secret}, clock: clock, users: us, keys: keys}
	var a apiJSON
	e.mustDo(t, "POST", "/v1/apis", e.admin, `{"name":"acme","identifier":"https://api.acme.test","scopes":["repos:read","repos:write"]}`, 201, &a)
	e.apiID = a.ID
	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","name":"rs","scopes":["verify"]}`, 201, &k)
	e.verify = k.Token
	e.mustDo(t, "POST", "/v1/users", e.admin, `{"username":"alice","email":"alice@example.com","password":"correct horse battery"}`, 201, &e.alice)
	return e
}

// oauthSnapshot is everything a bad request must leave unchanged: clients,
// users (with their password hashes), consents, signing keys and the audit
// log (without auth failures, which are the point of some requests).
func (e *oauthEnv) oauthSnapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	clients, _, err := e.db.ListClients(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	us, _, err := e.db.ListUsers(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var consents []store.Consent
	for _, u := range us {
		cs, err := e.db.ListConsents(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		consents = append(consents, cs...)
	}
	keys, err := e.db.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := e.db.ListAudit(ctx, store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	evs = slices.DeleteFunc(evs, func(ev store.AuditEvent) bool { return ev.Action == "auth.failure" })
	b, err := json.Marshal(struct {
		C []store.Client
		U []store.User
		S []store.Consent
		K []store.SigningKey
		E []store.AuditEvent
	}{clients, us, consents, keys, evs})
	if err != nil {
		t.Fatal(err)
	}
	return e.snapshot(t) + string(b)
}

// createClient registers a client through the API; body's fields override
// a confidential client_credentials client of acme. It moves the clock on
// by a millisecond, so that clients created one after the other list in
// that order: IDs sort by their millisecond only.
func (e *oauthEnv) createClient(t *testing.T, body string) clientJSON {
	t.Helper()
	var c clientJSON
	e.mustDo(t, "POST", "/v1/clients", e.admin, body, 201, &c)
	e.clock.Advance(time.Millisecond)
	return c
}

const m2mClient = `{"name":"billing","grant_types":["client_credentials"],"apis":["acme"],"scopes":["repos:read"]}`

const webClient = `{"name":"web","grant_types":["authorization_code","refresh_token"],"redirect_uris":["https://app.example.com/cb"],
"apis":["acme"],"scopes":["openid","repos:read","repos:write"],"token_format":"jwt","access_token_ttl":600,"refresh_token_ttl":86400}`

const publicClient = `{"name":"cli","type":"public","grant_types":["urn:ietf:params:oauth:grant-type:device_code","refresh_token"],"apis":["acme"],"scopes":["repos:read"]}`

func TestOAuthAdminBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	e := newOAuthEnv(t)
	m2m := e.createClient(t, m2mClient)
	pub := e.createClient(t, publicClient)
	long := strings.Repeat("a", MaxBodyBytes+1)
	tests := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"client: malformed json", "POST", "/v1/clients", "admin", `{"name":`, 400, "malformed_json"},
		{"client: empty body", "POST", "/v1/clients", "admin", ``, 400, "malformed_json"},
		{"client: unknown field", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"client_secret":"jts_mine"}`, 400, "unknown_field"},
		{"client: wrong type", "POST", "/v1/clients", "admin", `{"name":"x","redirect_uris":"https://a.example"}`, 400, "invalid_request"},
		{"client: oversize body", "POST", "/v1/clients", "admin", `{"name":"` + long + `"}`, 413, "body_too_large"},
		{"client: missing name", "POST", "/v1/clients", "admin", `{"grant_types":["client_credentials"]}`, 400, "invalid_request"},
		{"client: password grant", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["password"]}`, 400, "invalid_request"},
		{"client: implicit grant", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["implicit"],"redirect_uris":["https://a.example/cb"]}`, 400, "invalid_request"},
		{"client: unknown grant", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["magic"]}`, 400, "invalid_request"},
		{"client: grant listed twice", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials","client_credentials"]}`, 400, "invalid_request"},
		{"client: public with client_credentials", "POST", "/v1/clients", "admin", `{"name":"x","type":"public","grant_types":["client_credentials"]}`, 400, "invalid_request"},
		{"client: http redirect to a remote host", "POST", "/v1/clients", "admin", `{"name":"x","redirect_uris":["http://app.example.com/cb"]}`, 400, "invalid_redirect_uri"},
		{"client: redirect with fragment", "POST", "/v1/clients", "admin", `{"name":"x","redirect_uris":["https://app.example.com/cb#x"]}`, 400, "invalid_redirect_uri"},
		{"client: javascript redirect", "POST", "/v1/clients", "admin", `{"name":"x","redirect_uris":["javascript:alert(1)"]}`, 400, "invalid_redirect_uri"},
		{"client: code grant without redirect", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["authorization_code"]}`, 400, "invalid_redirect_uri"},
		{"client: public with a secret method", "POST", "/v1/clients", "admin", `{"name":"x","type":"public","token_endpoint_auth_method":"client_secret_basic","redirect_uris":["http://127.0.0.1/cb"]}`, 400, "invalid_request"},
		{"client: confidential without authentication", "POST", "/v1/clients", "admin", `{"name":"x","token_endpoint_auth_method":"none","grant_types":["client_credentials"]}`, 400, "invalid_request"},
		{"client: bad client type", "POST", "/v1/clients", "admin", `{"name":"x","type":"trusted","grant_types":["client_credentials"]}`, 400, "invalid_request"},
		{"client: scope not defined by its apis", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"apis":["acme"],"scopes":["admin"]}`, 400, "invalid_scope"},
		{"client: scope without apis", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"scopes":["repos:read"]}`, 400, "invalid_scope"},
		{"client: unknown api", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"apis":["nope"]}`, 400, "unknown_api"},
		{"client: the built-in api", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"apis":["jeton"]}`, 400, "invalid_request"},
		{"client: bad token format", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"token_format":"saml"}`, 400, "invalid_request"},
		{"client: bad signing alg", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"signing_alg":"HS256"}`, 400, "invalid_request"},
		{"client: negative ttl", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"access_token_ttl":-1}`, 400, "invalid_expiry"},
		{"client: overflowing ttl", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"access_token_ttl":9223372036854775807}`, 400, "invalid_expiry"},
		{"client: ttl over the maximum", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"access_token_ttl":31536000}`, 400, "invalid_expiry"},
		{"client: short refresh ttl", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"refresh_token_ttl":5}`, 400, "invalid_expiry"},
		{"client: jwks without private_key_jwt", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"jwks_uri":"https://a.example/jwks"}`, 400, "invalid_request"},
		{"client: private_key_jwt without keys", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt"}`, 400, "invalid_request"},
		{"client: private jwk", "POST", "/v1/clients", "admin", `{"name":"x","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}}`, 400, "invalid_request"},
		{"client: get unknown", "GET", "/v1/clients/cli_nope", "admin", ``, 404, "not_found"},
		{"client: delete unknown", "DELETE", "/v1/clients/cli_nope", "admin", ``, 404, "not_found"},
		{"client: update unknown", "PATCH", "/v1/clients/cli_nope", "admin", `{"name":"y"}`, 404, "not_found"},
		{"client: update type", "PATCH", "/v1/clients/M2M", "admin", `{"type":"public"}`, 400, "invalid_request"},
		{"client: update auth method", "PATCH", "/v1/clients/M2M", "admin", `{"token_endpoint_auth_method":"none"}`, 400, "invalid_request"},
		{"client: update nothing", "PATCH", "/v1/clients/M2M", "admin", `{}`, 400, "invalid_request"},
		{"client: update only nulls", "PATCH", "/v1/clients/M2M", "admin", `{"name":null,"scopes":null}`, 400, "invalid_request"},
		{"client: update unknown field", "PATCH", "/v1/clients/M2M", "admin", `{"secret_hint":"x"}`, 400, "unknown_field"},
		{"client: update bad grant", "PATCH", "/v1/clients/M2M", "admin", `{"grant_types":["password"]}`, 400, "invalid_request"},
		{"client: update http redirect", "PATCH", "/v1/clients/M2M", "admin", `{"redirect_uris":["http://evil.example/cb"]}`, 400, "invalid_redirect_uri"},
		{"client: update undefined scope", "PATCH", "/v1/clients/M2M", "admin", `{"scopes":["repos:delete"]}`, 400, "invalid_scope"},
		{"client: update empty name", "PATCH", "/v1/clients/M2M", "admin", `{"name":""}`, 400, "invalid_request"},
		{"client: update negative ttl", "PATCH", "/v1/clients/M2M", "admin", `{"access_token_ttl":-5}`, 400, "invalid_expiry"},
		{"client: rotate public client", "POST", "/v1/clients/PUB/rotate-secret", "admin", ``, 400, "invalid_request"},
		{"client: rotate grace too long", "POST", "/v1/clients/M2M/rotate-secret", "admin", `{"grace_period":999999999}`, 400, "invalid_request"},
		{"client: rotate negative grace", "POST", "/v1/clients/M2M/rotate-secret", "admin", `{"grace_period":-1}`, 400, "invalid_request"},
		{"client: rotate unknown", "POST", "/v1/clients/cli_nope/rotate-secret", "admin", ``, 404, "not_found"},
		{"client: bad list limit", "GET", "/v1/clients?limit=0", "admin", ``, 400, "invalid_request"},
		{"client: list limit not a number", "GET", "/v1/clients?limit=ten", "admin", ``, 400, "invalid_request"},
		{"client: no auth", "POST", "/v1/clients", "", m2mClient, 401, "unauthorized"},
		{"client: verify scope", "POST", "/v1/clients", "verify", m2mClient, 403, "forbidden"},
		{"client: verify scope lists", "GET", "/v1/clients", "verify", ``, 403, "forbidden"},

		{"user: unknown field", "POST", "/v1/users", "admin", `{"username":"bob","password":"pw pw pw pw","password_hash":"x"}`, 400, "unknown_field"},
		{"user: empty password", "POST", "/v1/users", "admin", `{"username":"bob","email":"bob@example.com","password":""}`, 400, "invalid_password"},
		{"user: no password", "POST", "/v1/users", "admin", `{"username":"bob"}`, 400, "invalid_password"},
		{"user: empty username", "POST", "/v1/users", "admin", `{"username":"","password":"correct horse battery"}`, 400, "invalid_request"},
		{"user: duplicate username", "POST", "/v1/users", "admin", `{"username":"alice","password":"another good password"}`, 409, "conflict"},
		{"user: duplicate username other case", "POST", "/v1/users", "admin", `{"username":"Alice","password":"another good password"}`, 409, "conflict"},
		{"user: get unknown", "GET", "/v1/users/usr_nope", "admin", ``, 404, "not_found"},
		{"user: delete unknown", "DELETE", "/v1/users/usr_nope", "admin", ``, 404, "not_found"},
		{"user: update unknown", "PATCH", "/v1/users/usr_nope", "admin", `{"disabled":true}`, 404, "not_found"},
		{"user: short password", "POST", "/v1/users", "admin", `{"username":"bob","password":"short"}`, 400, "invalid_password"},
		{"user: bad email", "POST", "/v1/users", "admin", `{"username":"bob","email":"Bob <bob@example.com>","password":"correct horse battery"}`, 400, "invalid_request"},
		{"user: username like an id", "POST", "/v1/users", "admin", `{"username":"ALICE","password":"correct horse battery"}`, 400, "invalid_request"},
		{"user: revoke consent never given", "DELETE", "/v1/users/ALICE/consents/cli_nope", "admin", ``, 404, "not_found"},
		{"user: update nothing", "PATCH", "/v1/users/ALICE", "admin", `{}`, 400, "invalid_request"},
		{"user: update empty password", "PATCH", "/v1/users/ALICE", "admin", `{"password":""}`, 400, "invalid_password"},
		{"user: update username", "PATCH", "/v1/users/ALICE", "admin", `{"username":"mallory"}`, 400, "unknown_field"},
		{"user: consents of unknown user", "GET", "/v1/users/usr_nope/consents", "admin", ``, 404, "not_found"},
		{"user: bad list limit", "GET", "/v1/users?limit=5000", "admin", ``, 400, "invalid_request"},
		{"user: verify scope", "GET", "/v1/users", "verify", ``, 403, "forbidden"},

		{"keys: no auth", "GET", "/v1/keys", "", ``, 401, "unauthorized"},
		{"keys: verify scope rotates", "POST", "/v1/keys/rotate", "verify", ``, 403, "forbidden"},
		{"keys: rotate with unknown field", "POST", "/v1/keys/rotate", "admin", `{"alg":"HS256"}`, 400, "unknown_field"},
	}
	tokenFor := map[string]string{"admin": e.admin, "verify": e.verify, "": ""}
	ids := strings.NewReplacer("M2M", m2m.ID, "PUB", pub.ID, "ALICE", e.alice.ID)
	before := e.oauthSnapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := e.do(t, tt.method, ids.Replace(tt.path), tokenFor[tt.token], ids.Replace(tt.body))
			var got struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(b, &got)
			if resp.StatusCode != tt.status || got.Error.Code != tt.code || got.Error.Message == "" {
				t.Errorf("status %d code %q (%s), want %d %q", resp.StatusCode, got.Error.Code, b, tt.status, tt.code)
			}
			if strings.Contains(string(b), e.admin) || strings.Contains(string(b), "correct horse") {
				t.Errorf("error response leaks a secret: %s", b)
			}
		})
	}
	if after := e.oauthSnapshot(t); after != before {
		t.Errorf("bad requests changed the store:\n%s", cmp.Diff(before, after))
	}
}

// listAll pages through a list endpoint with ?cursor=, limit per page.
func listAll[T any](t *testing.T, e *oauthEnv, path, field string, limit int) (items []T, pages int) {
	t.Helper()
	after := ""
	for {
		var page map[string]json.RawMessage
		e.mustDo(t, "GET", path+"?limit="+itoa(limit)+"&cursor="+after, e.admin, ``, 200, &page)
		var got []T
		if err := json.Unmarshal(page[field], &got); err != nil || got == nil {
			t.Fatalf("%s: %s is %s", path, field, page[field])
		}
		items = append(items, got...)
		pages++
		var next string
		json.Unmarshal(page["next_cursor"], &next)
		if next == "" {
			return items, pages
		}
		if pages > 10 {
			t.Fatalf("%s: pagination does not end", path)
		}
		after = next
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestClientAdminLifecycle(t *testing.T) {
	t.Parallel()
	e := newOAuthEnv(t)

	resp, b := e.do(t, "POST", "/v1/clients", e.admin, m2mClient)
	if resp.StatusCode != 201 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), b)
	}
	var m2m clientJSON
	if err := json.Unmarshal(b, &m2m); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Millisecond) // as createClient does: the next client lists before it
	if !strings.HasPrefix(m2m.Secret, "jts_") || m2m.SecretHint == "" || !strings.HasSuffix(m2m.Secret, m2m.SecretHint[len(m2m.SecretHint)-4:]) {
		t.Errorf("secret %q, hint %q", m2m.Secret, m2m.SecretHint)
	}
	want := clientJSON{ID: m2m.ID, Name: "billing", Type: "confidential", GrantTypes: []string{"client_credentials"},
		RedirectURIs: []string{}, PostLogout: []string{}, APIs: []string{e.apiID}, Scopes: []string{"repos:read"}, TokenFormat: "opaque",
		SigningAlg: "ES256", AccessTokenTTL: 3600, RefreshTokenTTL: 30 * 24 * 3600, AuthMethod: "client_secret_basic",
		JWKS: json.RawMessage("null"), SecretHint: m2m.SecretHint, CreatedAt: m2m.CreatedAt, UpdatedAt: m2m.UpdatedAt,
		Secret: m2m.Secret}
	if diff := cmp.Diff(m2m, want); diff != "" {
		t.Errorf("created client (-got +want):\n%s", diff)
	}
	// Lists are [] rather than null, and the secret is not there.
	var raw map[string]any
	json.Unmarshal(b, &raw)
	if _, ok := raw["redirect_uris"].([]any); !ok {
		t.Errorf("redirect_uris is %v, want []", raw["redirect_uris"])
	}

	web := e.createClient(t, webClient)
	if web.Secret == "" || web.TokenFormat != "jwt" || web.AccessTokenTTL != 600 || web.RefreshTokenTTL != 86400 {
		t.Errorf("web client: %+v", web)
	}
	pub := e.createClient(t, publicClient)
	if pub.Secret != "" || pub.SecretHint != "" || pub.AuthMethod != "none" {
		t.Errorf("public client has a secret: %+v", pub)
	}

	// GET never shows a secret.
	var got clientJSON
	_, gb := e.do(t, "GET", "/v1/clients/"+m2m.ID, e.admin, ``)
	json.Unmarshal(gb, &got)
	want.Secret = ""
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("GET client (-got +want):\n%s", diff)
	}
	if strings.Contains(string(gb), m2m.Secret) || strings.Contains(string(gb), "client_secret\"") {
		t.Errorf("GET shows the secret: %s", gb)
	}

	// Pagination, newest first, two per page.
	list, pages := listAll[clientJSON](t, e, "/v1/clients", "clients", 2)
	var listed []string
	for _, c := range list {
		listed = append(listed, c.ID)
		if c.Secret != "" {
			t.Errorf("list shows a secret of %s", c.ID)
		}
	}
	if diff := cmp.Diff(listed, []string{pub.ID, web.ID, m2m.ID}); diff != "" || pages != 2 {
		t.Errorf("listed (-got +want), %d pages:\n%s", pages, diff)
	}

	// Update: rename, disable, change TTL; the rest stays.
	var upd clientJSON
	e.mustDo(t, "PATCH", "/v1/clients/"+m2m.ID, e.admin, `{"name":"billing v2","disabled":true,"access_token_ttl":120}`, 200, &upd)
	if upd.Name != "billing v2" || !upd.Disabled || upd.AccessTokenTTL != 120 || upd.SecretHint != m2m.SecretHint || upd.Secret != "" {
		t.Errorf("update: %+v", upd)
	}
	e.mustDo(t, "PATCH", "/v1/clients/"+m2m.ID, e.admin, `{"disabled":false}`, 200, &upd)
	if upd.Disabled || upd.Name != "billing v2" {
		t.Errorf("re-enable: %+v", upd)
	}
	e.mustDo(t, "PATCH", "/v1/clients/"+web.ID, e.admin, `{"redirect_uris":["https://app.example.com/cb","http://127.0.0.1:8765/cb"],"scopes":["repos:read"]}`, 200, &upd)
	if diff := cmp.Diff(upd.RedirectURIs, []string{"https://app.example.com/cb", "http://127.0.0.1:8765/cb"}); diff != "" || len(upd.Scopes) != 1 {
		t.Errorf("update redirect uris (-got +want):\n%s", diff)
	}
	// Post-logout redirect URIs: set, kept by other changes, refused
	// when invalid, cleared by [].
	e.mustDo(t, "PATCH", "/v1/clients/"+web.ID, e.admin, `{"post_logout_redirect_uris":["https://app.example.com/bye"]}`, 200, &upd)
	e.mustDo(t, "PATCH", "/v1/clients/"+web.ID, e.admin, `{"name":"web 2"}`, 200, &upd)
	if diff := cmp.Diff(upd.PostLogout, []string{"https://app.example.com/bye"}); diff != "" {
		t.Errorf("post_logout_redirect_uris (-got +want):\n%s", diff)
	}
	for _, body := range []string{
		`{"post_logout_redirect_uris":["http://app.example.com/bye"]}`,
		`{"post_logout_redirect_uris":["https://app.example.com/bye#top"]}`,
		`{"post_logout_redirect_uris":["/bye"]}`,
		`{"post_logout_redirect_uris":["https://a.example/x","https://a.example/x"]}`,
	} {
		e.mustDo(t, "PATCH", "/v1/clients/"+web.ID, e.admin, body, 400, nil)
	}
	e.mustDo(t, "PATCH", "/v1/clients/"+web.ID, e.admin, `{"post_logout_redirect_uris":[]}`, 200, &upd)
	if len(upd.PostLogout) != 0 {
		t.Errorf("post_logout_redirect_uris not cleared: %v", upd.PostLogout)
	}

	// Rotation: a new secret once, and when the old one stops working.
	before := e.clock.Now()
	var rot clientJSON
	e.mustDo(t, "POST", "/v1/clients/"+m2m.ID+"/rotate-secret", e.admin, `{"grace_period":3600}`, 200, &rot)
	if !strings.HasPrefix(rot.Secret, "jts_") || rot.Secret == m2m.Secret || rot.SecretHint == m2m.SecretHint || rot.SecretPreviousExpiresAt == nil {
		t.Fatalf("rotate: %+v", rot)
	}
	if d := rot.SecretPreviousExpiresAt.Sub(before); d < time.Hour || d > time.Hour+time.Minute {
		t.Errorf("secret_previous_expires_at is %v after the call, want an hour", d)
	}
	var rot2 clientJSON
	e.mustDo(t, "POST", "/v1/clients/"+m2m.ID+"/rotate-secret", e.admin, ``, 200, &rot2)
	if rot2.Secret == "" || rot2.Secret == rot.Secret || rot2.SecretPreviousExpiresAt != nil {
		t.Errorf("rotate without grace: %+v", rot2)
	}

	// The audit log records every change, without a secret.
	var audit struct {
		Events []auditJSON `json:"events"`
	}
	e.mustDo(t, "GET", "/v1/audit?target="+m2m.ID, e.admin, ``, 200, &audit)
	var actions []string
	for _, ev := range audit.Events {
		actions = append(actions, ev.Action)
	}
	wantActions := []string{"client.rotate_secret", "client.rotate_secret", "client.update", "client.update", "client.create"}
	if diff := cmp.Diff(actions, wantActions); diff != "" {
		t.Errorf("audit actions (-got +want):\n%s", diff)
	}
	var all struct {
		Events []auditJSON `json:"events"`
	}
	e.mustDo(t, "GET", "/v1/audit?limit=1000", e.admin, ``, 200, &all)
	dump := toJSON(all)
	for _, s := range []string{m2m.Secret, web.Secret, rot.Secret, rot2.Secret} {
		if strings.Contains(dump, s) {
			t.Errorf("audit log contains a client secret")
		}
	}

	// Delete.
	e.mustDo(t, "DELETE", "/v1/clients/"+m2m.ID, e.admin, ``, 204, nil)
	e.mustDo(t, "GET", "/v1/clients/"+m2m.ID, e.admin, ``, 404, nil)
	e.mustDo(t, "DELETE", "/v1/clients/"+m2m.ID, e.admin, ``, 404, nil)
}

func TestClientJWKS(t *testing.T) {
	t.Parallel()
	e := newOAuthEnv(t)
	jwk := `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`
	c := e.createClient(t, `{"name":"pkj","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[`+jwk+`]}}`)
	if c.Secret != "" || c.SecretHint != "" || !strings.Contains(string(c.JWKS), `"P-256"`) {
		t.Errorf("private_key_jwt client: %+v", c)
	}
	// Swap the inline keys for a URL: null clears jwks.
	var upd clientJSON
	e.mustDo(t, "PATCH", "/v1/clients/"+c.ID, e.admin, `{"jwks":null,"jwks_uri":"https://app.example.com/jwks.json"}`, 200, &upd)
	if string(upd.JWKS) != "null" || upd.JWKSURI != "https://app.example.com/jwks.json" {
		t.Errorf("after swap: jwks %s, jwks_uri %q", upd.JWKS, upd.JWKSURI)
	}
	// Clearing both is refused.
	e.mustDo(t, "PATCH", "/v1/clients/"+c.ID, e.admin, `{"jwks_uri":""}`, 400, nil)
	e.mustDo(t, "POST", "/v1/clients/"+c.ID+"/rotate-secret", e.admin, ``, 400, nil)
}

func TestUserAdminLifecycle(t *testing.T) {
	t.Parallel()
	e := newOAuthEnv(t)
	const pw = "correct horse battery"

	if e.alice.ID == "" || e.alice.Username != "alice" || e.alice.Email != "alice@example.com" || e.alice.Disabled {
		t.Errorf("created user: %+v", e.alice)
	}
	// Ids sort by their millisecond, then at random: bob is listed first
	// only if created in a later one than alice.
	e.clock.Advance(time.Millisecond)
	resp, b := e.do(t, "POST", "/v1/users", e.admin, `{"username":"Bob","email":"bob@example.com","password":"`+pw+` 2"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("create bob: %d %s", resp.StatusCode, b)
	}
	var bob userJSON
	json.Unmarshal(b, &bob)
	var keys map[string]any
	json.Unmarshal(b, &keys)
	for k := range keys {
		if strings.Contains(k, "password") || strings.Contains(k, "hash") {
			t.Errorf("user answer has field %q", k)
		}
	}
	if strings.Contains(string(b), pw) || strings.Contains(string(b), "argon2") {
		t.Errorf("user answer leaks the password or hash: %s", b)
	}

	var got userJSON
	e.mustDo(t, "GET", "/v1/users/"+bob.ID, e.admin, ``, 200, &got)
	if diff := cmp.Diff(got, bob); diff != "" {
		t.Errorf("GET user (-got +want):\n%s", diff)
	}
	list, _ := listAll[userJSON](t, e, "/v1/users", "users", 1)
	if len(list) != 2 || list[0].ID != bob.ID || list[1].ID != e.alice.ID {
		t.Errorf("users: %+v", list)
	}

	var upd userJSON
	e.mustDo(t, "PATCH", "/v1/users/"+bob.ID, e.admin, `{"email":"robert@example.com","disabled":true}`, 200, &upd)
	if upd.Email != "robert@example.com" || !upd.Disabled || upd.Username != bob.Username {
		t.Errorf("update: %+v", upd)
	}
	// Disabling ended bob's sessions; an email change alone does not.
	if bob.SessionsEndedAt != nil || upd.SessionsEndedAt == nil {
		t.Errorf("sessions_ended_at: %v at creation, %v after the disable", bob.SessionsEndedAt, upd.SessionsEndedAt)
	}
	disabledAt := *upd.SessionsEndedAt
	e.clock.Advance(time.Second)
	e.mustDo(t, "PATCH", "/v1/users/"+bob.ID, e.admin, `{"email":"bob@example.com"}`, 200, &upd)
	if !upd.SessionsEndedAt.Equal(disabledAt) {
		t.Errorf("an email change moved sessions_ended_at to %v", upd.SessionsEndedAt)
	}
	// Sign out everywhere.
	e.clock.Advance(time.Second)
	e.mustDo(t, "DELETE", "/v1/users/"+bob.ID+"/sessions", e.admin, ``, 204, nil)
	e.mustDo(t, "GET", "/v1/users/"+bob.ID, e.admin, ``, 200, &upd)
	if upd.SessionsEndedAt.Sub(disabledAt) < 2*time.Second {
		t.Errorf("sessions_ended_at after DELETE sessions: %v, want 2 s or more after %v", upd.SessionsEndedAt, disabledAt)
	}
	e.mustDo(t, "DELETE", "/v1/users/usr_missing/sessions", e.admin, ``, 404, nil)
	e.mustDo(t, "DELETE", "/v1/users/"+bob.ID+"/sessions", e.verify, ``, 403, nil)
	hashBefore := e.userHash(t, bob.ID)
	e.mustDo(t, "PATCH", "/v1/users/"+bob.ID, e.admin, `{"password":"a brand new passphrase","disabled":false}`, 200, &upd)
	if upd.Disabled || e.userHash(t, bob.ID) == hashBefore {
		t.Errorf("password update: %+v (hash changed: %v)", upd, e.userHash(t, bob.ID) != hashBefore)
	}

	// Consents: one given through the store (as the consent page does).
	web := e.createClient(t, webClient)
	ctx := context.Background()
	now := e.clock.Now().UTC().Truncate(time.Millisecond)
	if err := e.db.PutConsent(ctx, store.Consent{UserID: bob.ID, ClientID: web.ID, APIID: e.apiID, Scopes: []string{"repos:read"},
		CreatedAt: now, UpdatedAt: now}, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	var consents struct {
		Consents []consentJSON `json:"consents"`
	}
	e.mustDo(t, "GET", "/v1/users/"+bob.ID+"/consents", e.admin, ``, 200, &consents)
	wantConsents := []consentJSON{{UserID: bob.ID, ClientID: web.ID, API: e.apiID, Scopes: []string{"repos:read"}, CreatedAt: now, UpdatedAt: now}}
	if diff := cmp.Diff(consents.Consents, wantConsents); diff != "" {
		t.Errorf("consents (-got +want):\n%s", diff)
	}
	e.mustDo(t, "DELETE", "/v1/users/"+bob.ID+"/consents/"+web.ID, e.admin, ``, 204, nil)
	_, cb := e.do(t, "GET", "/v1/users/"+bob.ID+"/consents", e.admin, ``)
	if strings.TrimSpace(string(cb)) != `{"consents":[]}` {
		t.Errorf("consents after revoke: %s", cb)
	}

	// The audit log has the changes and no password.
	var audit struct {
		Events []auditJSON `json:"events"`
	}
	e.mustDo(t, "GET", "/v1/audit?target="+bob.ID, e.admin, ``, 200, &audit)
	if len(audit.Events) < 5 {
		t.Errorf("audit events of bob: %d, want create, three updates and end_sessions at least", len(audit.Events))
	}
	ended := 0
	for _, ev := range audit.Events {
		if ev.Action == "user.end_sessions" {
			ended++
		}
	}
	if ended != 1 {
		t.Errorf("user.end_sessions audited %d times, want 1", ended)
	}
	e.mustDo(t, "GET", "/v1/audit?limit=1000", e.admin, ``, 200, &audit)
	dump := toJSON(audit)
	for _, s := range []string{pw, "a brand new passphrase", "argon2", hashBefore} {
		if strings.Contains(dump, s) {
			t.Errorf("audit log contains %q", s)
		}
	}

	e.mustDo(t, "DELETE", "/v1/users/"+bob.ID, e.admin, ``, 204, nil)
	e.mustDo(t, "GET", "/v1/users/"+bob.ID, e.admin, ``, 404, nil)
	list, _ = listAll[userJSON](t, e, "/v1/users", "users", 10)
	if len(list) != 1 || list[0].ID != e.alice.ID {
		t.Errorf("users after delete: %+v", list)
	}
}

func (e *oauthEnv) userHash(t *testing.T, id string) string {
	t.Helper()
	u, err := e.db.GetUser(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u.PasswordHash
}

func TestKeysAdmin(t *testing.T) {
	t.Parallel()
	e := newOAuthEnv(t)
	type keysAnswer struct {
		Keys []keyJSON `json:"keys"`
	}
	states := func(ks []keyJSON) map[string]string {
		m := map[string]string{}
		for _, k := range ks {
			m[k.ID] = k.State
			if strings.Contains(string(k.PublicJWK), `"d"`) || !strings.Contains(string(k.PublicJWK), k.ID) {
				t.Errorf("key %s: public_jwk %s", k.ID, k.PublicJWK)
			}
		}
		return m
	}
	var before keysAnswer
	e.mustDo(t, "GET", "/v1/keys", e.admin, ``, 200, &before)
	if len(before.Keys) == 0 {
		t.Fatal("no signing keys")
	}
	for _, k := range before.Keys {
		if k.State != "active" || k.Alg == "" || k.RetiredAt != nil {
			t.Errorf("initial key: %+v", k)
		}
	}

	var rotated keysAnswer
	e.mustDo(t, "POST", "/v1/keys/rotate", e.admin, ``, 200, &rotated)
	if len(rotated.Keys) == 0 {
		t.Fatal("rotate returned no keys")
	}
	for _, k := range rotated.Keys {
		if k.State != "next" || !k.ActiveAt.After(k.CreatedAt) {
			t.Errorf("new key is %s (created %v, active %v), want next", k.State, k.CreatedAt, k.ActiveAt)
		}
	}

	var during keysAnswer
	e.mustDo(t, "GET", "/v1/keys", e.admin, ``, 200, &during)
	if len(during.Keys) != len(before.Keys)+len(rotated.Keys) {
		t.Errorf("%d keys after rotation, want %d", len(during.Keys), len(before.Keys)+len(rotated.Keys))
	}

	// Once the pre-publication delay is over, the new keys sign and the old
	// ones are retired (still published).
	e.clock.Advance(keyPrePublish + time.Second)
	var after keysAnswer
	e.mustDo(t, "GET", "/v1/keys", e.admin, ``, 200, &after)
	got := states(after.Keys)
	want := map[string]string{}
	for _, k := range before.Keys {
		want[k.ID] = "retired"
	}
	for _, k := range rotated.Keys {
		want[k.ID] = "active"
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("key states after the delay (-got +want):\n%s", diff)
	}

	var audit struct {
		Events []auditJSON `json:"events"`
	}
	e.mustDo(t, "GET", "/v1/audit?limit=1000", e.admin, ``, 200, &audit)
	if dump := toJSON(audit); strings.Contains(dump, `"d":`) || strings.Contains(dump, "PRIVATE") {
		t.Errorf("audit log holds private key material")
	}
}

func TestToKeyJSONState(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := store.SigningKey{ID: "key_1", Alg: "ES256", CreatedAt: t0, ActiveAt: t0.Add(time.Hour), RetiredAt: t0.Add(2 * time.Hour)}
	for _, tt := range []struct {
		at   time.Duration
		want string
	}{{0, "next"}, {time.Hour - 1, "next"}, {time.Hour, "active"}, {2*time.Hour - 1, "active"}, {2 * time.Hour, "retired"}} {
		if got := toKeyJSON(&k, t0.Add(tt.at)).State; got != tt.want {
			t.Errorf("at +%v: %s, want %s", tt.at, got, tt.want)
		}
	}
	k.RetiredAt = time.Time{}
	if got := toKeyJSON(&k, t0.Add(1000*time.Hour)).State; got != "active" {
		t.Errorf("never retired: %s", got)
	}
}
