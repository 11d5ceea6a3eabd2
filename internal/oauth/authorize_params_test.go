package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// TestMalformedRequestsOfAKnownClientGoBack proves RFC 6749 §4.1.2.1: once
// the client and its redirect URI are known to be valid, an invalid
// request ("includes a parameter more than once, or is otherwise
// malformed") is answered at the redirect URI with invalid_request and the
// state, not with a page; and with prompt=none no page is ever shown
// (OIDC Core §3.1.2.1).
func TestMalformedRequestsOfAKnownClientGoBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	b := e.browser()
	e.authorize(b, conf.AuthCodeURL("s"), true) // signed in, consented
	for _, tt := range []struct{ name, url string }{
		{"scope repeated", conf.AuthCodeURL("s") + "&scope=repos:write"},
		// RFC 8707 §2 lets a client send several resource parameters.
		{"resource repeated", conf.AuthCodeURL("s") + "&resource=" + url.QueryEscape(e.api.Identifier) + "&resource=" + url.QueryEscape(e.api.Identifier)},
		{"nonce over the bound", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("nonce", strings.Repeat("n", oauth.MaxParamLen+1)))},
		{"prompt=none, nonce repeated", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")) + "&nonce=a&nonce=b"},
	} {
		p := b.do("GET", tt.url, nil)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "https://app.example.com/callback?") {
			t.Errorf("%s: %d %q, want a 303 to the client's redirect URI", tt.name, p.status, p.location)
			continue
		}
		q, _ := url.Parse(p.location)
		if code := q.Query().Get("error"); (code != "invalid_request" && code != "invalid_target") || q.Query().Get("state") != "s" || q.Query().Get("iss") == "" {
			t.Errorf("%s: redirected with %v", tt.name, q.Query())
		}
	}
	// Where the answer would go cannot be told: a page, never a redirect.
	other := url.QueryEscape("https://evil.example/cb")
	for _, tt := range []struct{ name, url string }{
		{"redirect_uri repeated", conf.AuthCodeURL("s") + "&redirect_uri=" + other + "&scope=a&scope=b"},
		{"client_id repeated", conf.AuthCodeURL("s") + "&client_id=cli_other&scope=a&scope=b"},
		{"redirect_uri over the bound", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("redirect_uri", "https://app.example.com/callback?"+strings.Repeat("x", oauth.MaxParamLen)))},
	} {
		p := b.do("GET", tt.url, nil)
		mustf(t, p.status == http.StatusBadRequest && p.location == "", "%s: %d %q, want an error page", tt.name, p.status, p.location)
	}
}

// TestUnknownParametersAreIgnored proves RFC 6749 §3.1 ("The authorization
// server MUST ignore unrecognized request parameters"): a parameter with
// an empty name must not break the consent page.
func TestUnknownParametersAreIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	b := e.browser()
	p := b.login(b.do("GET", conf.AuthCodeURL("s")+"&=x", nil), "alice", e.password)
	mustf(t, p.status == http.StatusOK && strings.Contains(p.body, `value="allow"`), "consent page: %d %s", p.status, truncateBody(p.body))
	f := p.formValues()
	f.Set("decision", "allow")
	p = b.do("POST", "/oauth2/authorize", f)
	mustf(t, p.status == http.StatusSeeOther && strings.Contains(p.location, "code="), "after allowing: %d %q", p.status, p.location)
}

// TestIDTokenHint proves OIDC Core §3.1.2.1 (id_token_hint): when the user
// the hint names is not the one signed in, prompt=none is answered
// login_required, never with a code for whoever happens to be signed in,
// and an interactive request asks for a sign-in, after which the user who
// signed in is answered (no loop back to the login page). A hint that is
// not an ID token of this server is invalid_request; one naming the
// signed-in user changes nothing.
func TestIDTokenHint(t *testing.T) {
	t.Parallel()
	e := newLogoutEnv(t)
	pw := e.bob()
	// Bob signs in to the client in his browser; the client keeps his ID token.
	_, bobIDToken := e.signInAs("bob", pw)

	// Alice is signed in in this browser. The client silently
	// re-authenticates bob, naming him in the hint.
	alice, _ := e.signIn()
	p := alice.do("GET", e.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none"), oauth2.SetAuthURLParam("id_token_hint", bobIDToken)), nil)
	q, _ := url.Parse(p.location)
	mustf(t, p.status == http.StatusSeeOther && q != nil && q.Query().Get("code") == "" && q.Query().Get("error") == "login_required",
		"prompt=none with bob's hint in alice's browser: %d %q", p.status, p.location)

	// Without prompt=none, alice's browser is asked to sign in; bob does,
	// and gets his code.
	p = alice.do("GET", e.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("id_token_hint", bobIDToken)), nil)
	mustf(t, p.status == http.StatusOK && strings.Contains(p.body, `name="password"`), "bob's hint in alice's browser: %d, want the login page", p.status)
	p = alice.login(p, "bob", pw)
	q, _ = url.Parse(p.location)
	mustf(t, p.status == http.StatusSeeOther && q != nil && q.Query().Get("code") != "", "after bob signs in: %d %q", p.status, p.location)
	tok, err := e.conf.Exchange(context.Background(), q.Query().Get("code"))
	mustf(t, err == nil && tok.Extra("id_token") != nil, "exchange of bob's code: %v", err)
	claims := decodeSegment(t, strings.Split(tok.Extra("id_token").(string), ".")[1])
	mustf(t, claims["sub"] == decodeSegment(t, strings.Split(bobIDToken, ".")[1])["sub"], "code for %v, want bob", claims["sub"])

	// Now bob is signed in there: his hint with prompt=none gets a code.
	p = alice.do("GET", e.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none"), oauth2.SetAuthURLParam("id_token_hint", bobIDToken)), nil)
	q, _ = url.Parse(p.location)
	mustf(t, q != nil && q.Query().Get("code") != "", "prompt=none with the signed-in user's hint: %d %q", p.status, p.location)

	// A hint this server did not sign is refused at the redirect URI.
	parts := strings.Split(bobIDToken, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	p = alice.do("GET", e.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("id_token_hint", forged)), nil)
	q, _ = url.Parse(p.location)
	mustf(t, q != nil && q.Query().Get("error") == "invalid_request" && q.Query().Get("code") == "", "forged hint: %d %q", p.status, p.location)
}

// TestDeviceOfADisabledClientIsNotApproved proves that the device page, like
// the authorization endpoint, refuses to ask for or record an approval for
// a client that is disabled: an approval given while it was disabled must
// not yield tokens later.
func TestDeviceOfADisabledClientIsNotApproved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, conf := e.deviceClient(nil)
	da := e.deviceAuth(conf)
	setDisabled := func(v bool) {
		if _, err := e.oauth.UpdateClient(context.Background(), c.ID, oauth.ClientUpdate{Disabled: &v}, tokens.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	setDisabled(true)
	b := e.browser()
	p := b.login(b.do("GET", da.VerificationURIComplete, nil), "alice", e.password)
	p = b.do("POST", "/device", p.formValues())
	confirm := p.status == http.StatusOK && strings.Contains(p.body, `value="allow"`)
	if confirm {
		f := p.formValues()
		f.Set("decision", "allow")
		p = b.do("POST", "/device", f)
	}
	d, err := e.db.GetDeviceCodeByUserCode(context.Background(), strings.ReplaceAll(da.UserCode, "-", ""))
	if err != nil {
		t.Fatal(err)
	}
	if confirm || d.Status != store.DevicePending {
		t.Errorf("disabled client: confirmation page shown: %v; device code %s after allowing (last page %d)", confirm, d.Status, p.status)
	}
	setDisabled(false)
	if e.pollDevice(c, da.DeviceCode) == "" {
		t.Errorf("an approval given while the client was disabled yielded tokens once it was enabled again")
	}
}

// TestConsentToARequestWithManyParameters proves that an authorization
// request the endpoint accepts, with as many parameters as it allows, can
// be answered on the consent page: the form carries the request's
// parameters back together with its own csrf and decision fields, and
// both Allow and Deny must reach the client.
func TestConsentToARequestWithManyParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	u, _ := url.Parse(conf.AuthCodeURL("s"))
	q := u.Query()
	for i := 0; len(q) < 40; i++ { // 40 is the most parameters a request may have
		q.Set("ext"+strconv.Itoa(i), "1")
	}
	u.RawQuery = q.Encode()
	b := e.browser()
	p := b.login(b.do("GET", u.String(), nil), "alice", e.password)
	mustf(t, p.status == http.StatusOK && strings.Contains(p.body, `value="allow"`), "consent page: %d %s", p.status, truncateBody(p.body))
	for _, decision := range []string{"deny", "allow"} {
		f := p.formValues()
		f.Set("decision", decision)
		got := b.do("POST", "/oauth2/authorize", f)
		mustf(t, got.status == http.StatusSeeOther && strings.HasPrefix(got.location, "https://app.example.com/callback?"),
			"%s on the consent page of a 40-parameter request: %d %q", decision, got.status, got.location)
	}
}
