package oauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

// env is a complete Jeton server (store, token service, signing keys,
// users, pages, OAuth server and HTTP API) on a real listener, with a user
// "alice" who can sign in.
type env struct {
	*apitest.Server
	t        *testing.T
	url      string
	clock    *apitest.Clock
	db       *sqlstore.DB
	tokens   *tokens.Service
	users    *users.Service
	keys     *signing.Ring
	oauth    *oauth.Server
	admin    string // admin token (also verifies every API)
	api      store.API
	password string // of user "alice"
	alice    store.User
}

type envOptions struct {
	retryWindow time.Duration
	prePublish  time.Duration
	dsn         string // a shared store: servers on one DSN are a cluster
	tls         bool   // serve https (e.Client trusts its certificate)
	clientTTL   time.Duration
	onError     func(op string) // oauth.Config.OnError
}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	pre := opts.prePublish
	if pre == 0 {
		pre = -1 // no delay unless a test asks for one
	}
	srv := apitest.NewWith(t, apitest.Options{KeyPrePublish: pre, RefreshRetryWindow: opts.retryWindow, DeviceInterval: time.Second, DSN: opts.dsn, TLS: opts.tls, ClientCacheTTL: opts.clientTTL, OnOAuthError: opts.onError})
	e := &env{Server: srv, t: t, url: srv.URL, clock: srv.Clock, db: srv.DB, tokens: srv.Tokens, users: srv.Users,
		keys: srv.Keys, oauth: srv.OAuth, admin: srv.Admin, api: srv.API, password: "correct horse battery"}
	var err error
	e.alice, err = e.users.Create(context.Background(), users.CreateParams{Username: "alice", Email: "alice@example.com", Password: e.password}, tokens.Actor{ID: "test"})
	if errors.Is(err, store.ErrAlreadyExists) { // another node of the cluster made her
		var list []store.User
		list, _, err = e.users.List(context.Background(), "", 10)
		for _, u := range list {
			if u.Username == "alice" {
				e.alice = u
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// client registers a client; edit adjusts the defaults (a confidential
// web client for every grant, opaque tokens).
func (e *env) client(edit func(*oauth.ClientParams)) (store.Client, string) {
	e.t.Helper()
	p := oauth.ClientParams{Name: "Test App", GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken, oauth.GrantClientCredentials, oauth.GrantDeviceCode},
		RedirectURIs: []string{"https://app.example.com/callback"}, APIs: []string{e.api.ID},
		Scopes: []string{"repos:read", "repos:write", "openid", "profile", "email", "offline_access"}}
	if edit != nil {
		edit(&p)
	}
	if p.Type == store.ClientPublic {
		p.GrantTypes = slices.DeleteFunc(slices.Clone(p.GrantTypes), func(g string) bool { return g == oauth.GrantClientCredentials })
	}
	c, secret, err := e.oauth.CreateClient(context.Background(), p, tokens.Actor{ID: "test"})
	if err != nil {
		e.t.Fatalf("CreateClient: %v", err)
	}
	return c, secret
}

// codeConfig is the golang.org/x/oauth2 configuration of confidential
// client c, with its secret, for the authorization code flow of the server
// at base: scope repos:read, HTTP Basic client authentication.
func codeConfig(base string, c store.Client, secret string) oauth2.Config {
	return oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://app.example.com/callback",
		Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth2/authorize", TokenURL: base + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"repos:read"}}
}

// deviceClient registers a public client of the device flow (and refresh
// tokens), edited by edit if not nil, and returns it with its
// golang.org/x/oauth2 configuration for scope repos:read.
func (e *env) deviceClient(edit func(*oauth.ClientParams)) (store.Client, oauth2.Config) {
	e.t.Helper()
	c, _ := e.client(func(p *oauth.ClientParams) {
		p.Type = store.ClientPublic
		p.GrantTypes = []string{oauth.GrantDeviceCode, oauth.GrantRefreshToken}
		p.RedirectURIs = nil
		if edit != nil {
			edit(p)
		}
	})
	return c, oauth2.Config{ClientID: c.ID, Scopes: []string{"repos:read"},
		Endpoint: oauth2.Endpoint{DeviceAuthURL: e.url + "/oauth2/device_authorization", TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// deviceAuth starts the device flow of conf (RFC 8628 §3.1).
func (e *env) deviceAuth(conf oauth2.Config) *oauth2.DeviceAuthResponse {
	e.t.Helper()
	da, err := conf.DeviceAuth(context.Background())
	if err != nil {
		e.t.Fatalf("device authorization: %v", err)
	}
	return da
}

// pollDevice asks once for the token of deviceCode, as public client c,
// and returns the error code of the answer ("" for tokens).
func (e *env) pollDevice(c store.Client, deviceCode string) string {
	e.t.Helper()
	_, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {oauth.GrantDeviceCode}, "device_code": {deviceCode}, "client_id": {c.ID}}, "", "")
	code, _ := m["error"].(string)
	return code
}

// postForm posts a form to path with optional Basic credentials and
// returns the status and decoded JSON body.
func (e *env) postForm(path string, form url.Values, user, pass string) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(body, &m)
	return resp.StatusCode, m, resp.Header
}

// introspect asks RFC 7662 introspection about tok with the admin token.
func (e *env) introspect(tok string) map[string]any {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/oauth2/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.Client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		e.t.Fatalf("introspect: %v", err)
	}
	return m
}

// browser is a user agent with cookies that does not follow redirects, so
// tests see every hop of the authorization flow.
type browser struct {
	t    *testing.T
	e    *env
	http *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status   int
	location string
	body     string
}

func (b *browser) do(method, rawURL string, form url.Values) page {
	b.t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = b.e.url + rawURL
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, rawURL, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(raw)}
}

var inputRE = regexp.MustCompile(`(?s)<input\b[^>]*>`)
var attrRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// formValues returns the named input fields of a page with their values.
func (p page) formValues() url.Values {
	v := url.Values{}
	for _, tag := range inputRE.FindAllString(p.body, -1) {
		attrs := map[string]string{}
		for _, m := range attrRE.FindAllStringSubmatch(tag, -1) {
			attrs[strings.ToLower(m[1])] = html.UnescapeString(m[2])
		}
		if name := attrs["name"]; name != "" && attrs["type"] != "submit" {
			v.Set(name, attrs["value"])
		}
	}
	return v
}

// login fills the login page p and returns the page after the redirect
// back.
func (b *browser) login(p page, username, password string) page {
	b.t.Helper()
	if p.status != http.StatusOK || !strings.Contains(p.body, `name="password"`) {
		b.t.Fatalf("expected the login page, got %d %s", p.status, truncateBody(p.body))
	}
	f := p.formValues()
	f.Set("username", username)
	f.Set("password", password)
	after := b.do("POST", "/login", f)
	if after.status != http.StatusSeeOther {
		b.t.Fatalf("login: got %d, want 303: %s", after.status, truncateBody(after.body))
	}
	return b.do("GET", after.location, nil)
}

func truncateBody(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// decodeSegment decodes one base64url JWT segment into a map.
func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decode segment: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("segment %s: %v", b, err)
	}
	return m
}

func mustf(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

var actor = tokens.Actor{ID: "test"}

func apiParams(name string) tokens.APIParams {
	return tokens.APIParams{Name: name, Identifier: "https://" + name + ".example.com", Scopes: []string{"read"}}
}
