package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

const signedOutURI = "https://app.example.com/signed-out"

// logoutEnv is an env with a client that registered signedOutURI, and
// helpers to sign alice in and to read where she stands.
type logoutEnv struct {
	*env
	client store.Client
	conf   oauth2.Config
}

func newLogoutEnv(t *testing.T) *logoutEnv {
	e := newEnv(t, envOptions{})
	c, secret := e.client(func(p *oauth.ClientParams) {
		p.Name = "Dashboard"
		p.PostLogoutRedirectURIs = []string{signedOutURI, "https://app.example.com/bye?from=jeton"}
	})
	return &logoutEnv{env: e, client: c, conf: oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://app.example.com/callback",
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token"},
		Scopes:   []string{"openid", "repos:read"}}}
}

// bob creates the user bob and returns his password.
func (e *logoutEnv) bob() string {
	e.t.Helper()
	const pw = "bob's password"
	if _, err := e.users.Create(context.Background(), users.CreateParams{Username: "bob", Password: pw}, tokens.Actor{ID: "test"}); err != nil {
		e.t.Fatal(err)
	}
	return pw
}

// signInAs signs a new browser in as username through the client, allows
// the client on the consent page, and returns the browser with the ID
// token the client got.
func (e *logoutEnv) signInAs(username, password string) (*browser, string) {
	e.t.Helper()
	b := e.browser()
	p := b.login(b.do("GET", e.conf.AuthCodeURL("s"), nil), username, password)
	f := p.formValues()
	f.Set("decision", "allow")
	p = b.do("POST", "/oauth2/authorize", f)
	u, _ := url.Parse(p.location)
	tok, err := e.conf.Exchange(context.Background(), u.Query().Get("code"))
	if err != nil {
		e.t.Fatalf("%s's exchange: %v", username, err)
	}
	idTok, _ := tok.Extra("id_token").(string)
	if idTok == "" {
		e.t.Fatal("no id_token")
	}
	return b, idTok
}

// signIn signs a new browser in as alice through the client and returns
// it with the ID token the client got.
func (e *logoutEnv) signIn() (*browser, string) {
	e.t.Helper()
	b := e.browser()
	q := e.authorize(b, e.conf.AuthCodeURL("s"), true)
	tok, err := e.conf.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	idTok, _ := tok.Extra("id_token").(string)
	if idTok == "" {
		e.t.Fatal("no id_token")
	}
	return b, idTok
}

// signedIn reports whether b's session still authorizes silently.
func (e *logoutEnv) signedIn(b *browser) bool {
	e.t.Helper()
	p := b.do("GET", e.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")), nil)
	return p.status == http.StatusSeeOther && strings.Contains(p.location, "code=")
}

func logoutURL(params ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		v.Set(params[i], params[i+1])
	}
	return "/oauth2/logout?" + v.Encode()
}

func (e *logoutEnv) logouts() int {
	e.t.Helper()
	evs, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "user.logout"})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(evs)
}

func TestLogoutWithIDTokenHint(t *testing.T) {
	t.Parallel()
	e := newLogoutEnv(t)
	b, idTok := e.signIn()
	other, _ := e.signIn() // another browser of alice's stays signed in
	mustf(t, e.signedIn(b), "not signed in after the flow")

	p := b.do("GET", logoutURL("id_token_hint", idTok, "post_logout_redirect_uri", signedOutURI, "state", "s t&u"), nil)
	mustf(t, p.status == http.StatusSeeOther && p.location == signedOutURI+"?state=s+t%26u", "logout: %d %q %s", p.status, p.location, truncateBody(p.body))
	mustf(t, !e.signedIn(b), "still signed in after logout")
	mustf(t, e.signedIn(other), "logout in one browser signed out another")
	evs, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "user.logout"})
	mustf(t, err == nil && len(evs) == 1 && evs[0].Actor == e.alice.ID && strings.Contains(string(evs[0].Details), e.client.ID),
		"audit: %v %+v", err, evs)

	// The registered URI's own query is kept; without a URI the user sees
	// a page.
	b, idTok = e.signIn()
	p = b.do("GET", logoutURL("id_token_hint", idTok, "post_logout_redirect_uri", "https://app.example.com/bye?from=jeton", "state", "x"), nil)
	mustf(t, p.status == http.StatusSeeOther && p.location == "https://app.example.com/bye?from=jeton&state=x", "logout with a query: %q", p.location)
	b, idTok = e.signIn()
	p = b.do("GET", logoutURL("id_token_hint", idTok), nil)
	mustf(t, p.status == http.StatusOK && strings.Contains(p.body, "You are signed out") && !e.signedIn(b), "logout without a URI: %d", p.status)

	// An expired ID token is still a hint (RP-Initiated Logout §2), while
	// its signing key is published.
	b, idTok = e.signIn()
	e.clock.Advance(2 * time.Hour)
	p = b.do("GET", logoutURL("id_token_hint", idTok, "client_id", e.client.ID, "post_logout_redirect_uri", signedOutURI), nil)
	mustf(t, p.status == http.StatusSeeOther && p.location == signedOutURI && !e.signedIn(b), "expired hint: %d %q", p.status, p.location)

	// Not signed in: straight back to the client.
	p = e.browser().do("GET", logoutURL("id_token_hint", idTok, "post_logout_redirect_uri", signedOutURI, "state", "z"), nil)
	mustf(t, p.status == http.StatusSeeOther && p.location == signedOutURI+"?state=z", "logout without a session: %d %q", p.status, p.location)
}

func TestLogoutAsksWithoutAHintForTheUser(t *testing.T) {
	t.Parallel()
	e := newLogoutEnv(t)
	pw := e.bob()
	b, _ := e.signIn()

	// A bare request, a client_id only, and another user's ID token all
	// ask first.
	_, bobTok := e.signInAs("bob", pw)
	for name, u := range map[string]string{
		"no parameters":        logoutURL(),
		"client_id":            logoutURL("client_id", e.client.ID, "post_logout_redirect_uri", signedOutURI, "state", "st"),
		"another user's token": logoutURL("id_token_hint", bobTok, "post_logout_redirect_uri", signedOutURI, "state", "st"),
	} {
		p := b.do("GET", u, nil)
		mustf(t, p.status == http.StatusOK && strings.Contains(p.body, `value="signout"`) && strings.Contains(p.body, "Signed in as <strong>alice</strong>"),
			"%s: no confirmation page: %d %q", name, p.status, p.location)
		mustf(t, e.signedIn(b), "%s: signed out without asking", name)
	}
	mustf(t, e.logouts() == 0, "logouts audited before any")

	// The confirmation page names the client and carries the verified
	// request.
	p := b.do("GET", logoutURL("client_id", e.client.ID, "post_logout_redirect_uri", signedOutURI, "state", "st"), nil)
	mustf(t, strings.Contains(p.body, "<strong>Dashboard</strong> asks you to sign out"), "client not named")
	f := p.formValues()
	mustf(t, f.Get("post_logout_redirect_uri") == signedOutURI && f.Get("state") == "st" && f.Get("client_id") == e.client.ID, "form fields: %v", f)

	// Without its CSRF token the form is refused and changes nothing.
	forged := url.Values{"decision": {"signout"}, "client_id": {e.client.ID}}
	p = b.do("POST", "/oauth2/logout", forged)
	mustf(t, p.status == http.StatusForbidden && e.signedIn(b), "confirmation without CSRF token: %d", p.status)

	// Stay: back to the client, still signed in.
	f.Set("decision", "stay")
	p = b.do("POST", "/oauth2/logout", f)
	mustf(t, p.status == http.StatusSeeOther && p.location == signedOutURI+"?state=st" && e.signedIn(b), "stay: %d %q", p.status, p.location)
	// Sign out.
	f.Set("decision", "signout")
	p = b.do("POST", "/oauth2/logout", f)
	mustf(t, p.status == http.StatusSeeOther && p.location == signedOutURI+"?state=st" && !e.signedIn(b), "sign out: %d %q", p.status, p.location)
	mustf(t, e.logouts() == 1, "logouts audited: %d", e.logouts())
	// Without a registered URI, a page.
	b, _ = e.signIn()
	f = b.do("GET", logoutURL(), nil).formValues()
	f.Set("decision", "signout")
	p = b.do("POST", "/oauth2/logout", f)
	mustf(t, p.status == http.StatusOK && strings.Contains(p.body, "You are signed out") && !e.signedIn(b), "sign out without a URI: %d", p.status)
}

func TestLogoutRefusesWhatItCannotVerify(t *testing.T) {
	t.Parallel()
	e := newLogoutEnv(t)
	other, _ := e.env.client(func(p *oauth.ClientParams) { p.PostLogoutRedirectURIs = []string{"https://other.example.com/bye"} })
	b, idTok := e.signIn()
	// An access token is not an ID token.
	jwtClient, jwtSecret := e.env.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT })
	_, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"repos:read"}}, jwtClient.ID, jwtSecret)
	accessJWT, _ := m["access_token"].(string)
	mustf(t, strings.Count(accessJWT, ".") == 2, "no JWT access token: %v", m)
	parts := strings.Split(idTok, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]

	for _, tt := range []struct{ name, url string }{
		{"unregistered URI", logoutURL("id_token_hint", idTok, "post_logout_redirect_uri", "https://evil.example/")},
		{"URI of another client", logoutURL("id_token_hint", idTok, "post_logout_redirect_uri", "https://other.example.com/bye")},
		{"URI near a registered one", logoutURL("id_token_hint", idTok, "post_logout_redirect_uri", signedOutURI+"/")},
		{"URI without a client", logoutURL("post_logout_redirect_uri", signedOutURI)},
		{"URI of an unknown client", logoutURL("client_id", "cli_nobody", "post_logout_redirect_uri", signedOutURI)},
		{"hint for another client_id", logoutURL("id_token_hint", idTok, "client_id", other.ID)},
		{"tampered hint", logoutURL("id_token_hint", tampered, "post_logout_redirect_uri", signedOutURI)},
		{"access token as hint", logoutURL("id_token_hint", accessJWT)},
		{"garbage hint", logoutURL("id_token_hint", "not-a-jwt")},
		{"repeated parameter", "/oauth2/logout?state=a&state=b"},
	} {
		p := b.do("GET", tt.url, nil)
		mustf(t, p.status == http.StatusBadRequest && p.location == "", "%s: %d %q", tt.name, p.status, p.location)
		mustf(t, e.signedIn(b), "%s: signed out", tt.name)
	}
	mustf(t, e.logouts() == 0, "logouts audited: %d", e.logouts())
}

// TestFormPostsFromTheClient sends an authorization request and a logout
// request as a client's page would with a form post (OIDC Core §3.1.2.1,
// RP-Initiated Logout §2): from another site, so the browser withholds
// the SameSite=Lax session cookie. Jeton answers with a 303 to the same
// request as a GET, on which the browser sends the cookie.
func TestFormPostsFromTheClient(t *testing.T) {
	t.Parallel()
	e := newLogoutEnv(t)
	b, idTok := e.signIn()
	crossSite := func(path string, form url.Values) page {
		req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		// No cookies, as SameSite=Lax has it.
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return page{status: resp.StatusCode, location: resp.Header.Get("Location")}
	}
	authURL, _ := url.Parse(e.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")))
	p := crossSite("/oauth2/authorize", authURL.Query())
	mustf(t, p.status == http.StatusSeeOther && strings.HasPrefix(p.location, "/oauth2/authorize?"), "authorize post: %d %q", p.status, p.location)
	p = b.do("GET", p.location, nil)
	mustf(t, p.status == http.StatusSeeOther && strings.Contains(p.location, "code="), "authorize after the 303: %d %q", p.status, p.location)

	// A same-origin POST without the consent form's fields is a request
	// too.
	p = b.do("POST", "/oauth2/authorize", authURL.Query())
	mustf(t, p.status == http.StatusSeeOther && strings.Contains(p.location, "code="), "same-origin authorize post: %d %q", p.status, p.location)
	// A cross-site consent form, decision and all, changes nothing.
	p = crossSite("/oauth2/authorize", url.Values{"decision": {"allow"}, "csrf": {"forged"}, "client_id": {e.client.ID}})
	mustf(t, p.status == http.StatusSeeOther, "cross-site consent: %d", p.status)
	p = b.do("GET", p.location, nil)
	mustf(t, p.status != http.StatusSeeOther || !strings.Contains(p.location, "code="), "a cross-site consent form issued a code: %q", p.location)

	p = crossSite("/oauth2/logout", url.Values{"id_token_hint": {idTok}, "post_logout_redirect_uri": {signedOutURI}, "state": {"s"}})
	mustf(t, p.status == http.StatusSeeOther && strings.HasPrefix(p.location, "/oauth2/logout?"), "logout post: %d %q", p.status, p.location)
	mustf(t, e.signedIn(b), "signed out before the 303 was followed")
	p = b.do("GET", p.location, nil)
	mustf(t, p.status == http.StatusSeeOther && p.location == signedOutURI+"?state=s" && !e.signedIn(b), "logout after the 303: %d %q", p.status, p.location)
}

func TestDiscoveryHasEndSessionEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	m, _ := e.discovery()
	mustf(t, m["end_session_endpoint"] == e.url+"/oauth2/logout", "end_session_endpoint = %v", m["end_session_endpoint"])
}
