package oauth_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// TestTokenRequestResourceOutsideTheGrant proves RFC 8707 §2 / §2.2 at the
// token endpoint for the grants whose audience the user authorized (an
// authorization code, a refresh token): a resource the grant does not
// cover is refused with invalid_target, not silently replaced by the
// grant's API, which would hand the client a token for an audience other
// than the one it asked for.
func TestTokenRequestResourceOutsideTheGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	other := e.apiNamed("billing")
	c, secret := e.client(func(p *oauth.ClientParams) {
		p.APIs = []string{e.api.ID, other.ID}
		p.Scopes = append(p.Scopes, "read")
		p.TokenFormat = store.FormatJWT
	})
	conf := codeConfig(e.url, c, secret)
	token := func(form url.Values) (int, map[string]any) {
		t.Helper()
		status, m, _ := e.postForm("/oauth2/token", form, c.ID, secret)
		return status, m
	}
	aud := func(m map[string]any) any {
		at, _ := m["access_token"].(string)
		if parts := strings.Split(at, "."); len(parts) == 3 {
			return decodeSegment(t, parts[1])["aud"]
		}
		return nil
	}
	// The user authorizes the client's first API, e.api.
	b := e.browser()
	tok, err := conf.Exchange(context.Background(), e.authorize(b, conf.AuthCodeURL("s"), true).Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	// The grant's own API as resource is fine.
	status, m := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "resource": {e.api.Identifier}})
	mustf(t, status == 200 && aud(m) == e.api.Identifier, "refresh with the grant's resource: %d %v", status, m)
	rt, _ := m["refresh_token"].(string)

	// Another API, which the user never authorized for this grant.
	status, m = token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "resource": {other.Identifier}})
	if status != 400 || m["error"] != "invalid_target" {
		t.Errorf("refresh with resource %s: %d, aud %v, scope %v; want 400 invalid_target", other.Identifier, status, aud(m), m["scope"])
	}
	code := e.authorize(b, conf.AuthCodeURL("s2"), false).Get("code")
	status, m = token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {conf.RedirectURL}, "resource": {other.Identifier}})
	if status != 400 || m["error"] != "invalid_target" {
		t.Errorf("code exchange with resource %s: %d, aud %v, scope %v; want 400 invalid_target", other.Identifier, status, aud(m), m["scope"])
	}
}

// TestRepeatedResourceIsInvalidTarget proves RFC 8707 §2: resource is the
// one token request parameter that may be repeated (one per target), so a
// request naming two APIs is well formed; Jeton issues tokens for one
// audience, so it must answer invalid_target ("does not consider the
// resource(s) acceptable"), not invalid_request ("repeats a parameter").
func TestRepeatedResourceIsInvalidTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	other := e.apiNamed("billing")
	c, secret := e.client(func(p *oauth.ClientParams) { p.APIs = []string{e.api.ID, other.ID} })
	status, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "resource": {e.api.Identifier, other.Identifier}}, c.ID, secret)
	mustf(t, status == 400 && m["error"] == "invalid_target", "two resources: %d %v; want 400 invalid_target", status, m)
}

// TestDeviceTokenResourceOutsideTheGrant checks RFC 8707 §2.2 for the
// device flow: a poll naming another API than the device code's is
// invalid_target and changes nothing, so the poll without it goes on.
func TestDeviceTokenResourceOutsideTheGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	other := e.apiNamed("billing")
	c, conf := e.deviceClient(func(p *oauth.ClientParams) { p.APIs = []string{e.api.ID, other.ID} })
	da := e.deviceAuth(conf)
	e.approveDevice(e.browser(), da.VerificationURIComplete)
	poll := func(extra url.Values) (int, map[string]any) {
		f := url.Values{"grant_type": {oauth.GrantDeviceCode}, "device_code": {da.DeviceCode}, "client_id": {c.ID}}
		for k, v := range extra {
			f[k] = v
		}
		status, m, _ := e.postForm("/oauth2/token", f, "", "")
		return status, m
	}
	status, m := poll(url.Values{"resource": {other.Identifier}})
	mustf(t, status == 400 && m["error"] == "invalid_target", "poll for another API: %d %v", status, m)
	status, m = poll(url.Values{"resource": {e.api.Identifier}})
	mustf(t, status == 200 && m["access_token"] != nil, "poll for the code's API after that: %d %v", status, m)
}

// TestRedirectURIOnlyAtTheTokenEndpoint checks that a code requested
// without redirect_uri (the client has one registered, RFC 6749 §3.1.2.3)
// is redeemed by a token request that names that one URI, as clients that
// always send their configured redirect URI do, and not by one naming
// another URI.
func TestRedirectURIOnlyAtTheTokenEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	b := e.browser()
	noURI := conf
	noURI.RedirectURL = ""
	code := e.authorize(b, noURI.AuthCodeURL("s"), true).Get("code")
	_, err := conf.Exchange(context.Background(), code)
	mustf(t, err == nil, "exchange naming the one registered URI: %v", err)

	code = e.authorize(b, noURI.AuthCodeURL("s"), false).Get("code")
	status, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"https://app.example.com/other"}}, c.ID, secret)
	mustf(t, status == 400 && m["error"] == "invalid_grant", "exchange naming another URI: %d %v", status, m)
}

func TestErrorDescription(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"scope repos:read was not granted", "scope repos:read was not granted"},
		{`grant type "password" is not supported`, "grant type 'password' is not supported"},
		{`a\b`, "a/b"},
		{"https://x.example/aaa…", "https://x.example/aaa..."},
		{"tab\there, é, \x00", "tab?here, ?, ?"},
	} {
		if got := oauth.ErrorDescription(tt.in); got != tt.want {
			t.Errorf("ErrorDescription(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestErrorDescriptionCharset proves RFC 6749 §5.2: error_description
// values "MUST NOT include characters outside the set %x20-21 / %x23-5B /
// %x5D-7E", that is printable ASCII without '"' and '\'.
func TestErrorDescriptionCharset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	for _, form := range []url.Values{
		{"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}},
		{"grant_type": {"client_credentials"}, "scope": {"admin"}},
		{"grant_type": {"client_credentials"}, "resource": {"https://nowhere.example.com/" + strings.Repeat("a", 100)}},
	} {
		status, m, _ := e.postForm("/oauth2/token", form, c.ID, secret)
		desc, _ := m["error_description"].(string)
		for _, r := range desc {
			if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
				t.Errorf("%v: %d %v: error_description has %q, outside RFC 6749 §5.2's set", form, status, m["error"], r)
				break
			}
		}
	}
}

// TestMalformedCodeVerifierChangesNothing checks that a code_verifier that
// is not RFC 7636 §4.1 syntax is answered invalid_request before the code
// is looked at: the code is not spent, and the corrected request succeeds.
func TestMalformedCodeVerifierChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	pub, _ := e.client(func(p *oauth.ClientParams) { p.Type = store.ClientPublic })
	conf := oauth2.Config{ClientID: pub.ID, RedirectURL: "https://app.example.com/callback",
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{"repos:read"}}
	verifier := oauth2.GenerateVerifier()
	code := e.authorize(e.browser(), conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), true).Get("code")
	status, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {pub.ID},
		"redirect_uri": {conf.RedirectURL}, "code_verifier": {"too-short"}}, "", "")
	mustf(t, status == 400 && m["error"] == "invalid_request", "malformed code_verifier: %d %v", status, m)
	if _, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("exchange with the right verifier after a malformed one: %v", err)
	}
}

// TestDeviceApprovalIsListedAsAConsent: what a user allowed a device is
// listed where it can be withdrawn (GET /v1/users/{id}/consents), and
// withdrawing it ends the device's grant.
func TestDeviceApprovalIsListedAsAConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, conf := e.deviceClient(nil)
	da := e.deviceAuth(conf)
	e.approveDevice(e.browser(), da.VerificationURIComplete)
	consents, err := e.users.Consents(context.Background(), e.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(consents) != 1 || consents[0].ClientID != c.ID || consents[0].APIID != e.api.ID || !slices.Equal(consents[0].Scopes, []string{"repos:read"}) {
		t.Fatalf("consents after a device approval: %+v, want one for %s on %s with repos:read", consents, c.ID, e.api.ID)
	}
	if err := e.users.RevokeConsent(context.Background(), e.alice.ID, c.ID, tokens.Actor{ID: "test"}); err != nil {
		t.Fatalf("RevokeConsent: %v", err)
	}
	if code := e.pollDevice(c, da.DeviceCode); code == "" {
		t.Error("the device got tokens after the consent was withdrawn")
	}
}
