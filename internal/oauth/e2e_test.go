package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// discovery fetches the OpenID configuration and the JWKS it names, as a
// relying party would.
func (e *env) discovery() (map[string]any, *jose.JSONWebKeySet) {
	e.t.Helper()
	resp, err := http.Get(e.url + "/.well-known/openid-configuration")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil {
		e.t.Fatal(err)
	}
	resp2, err := http.Get(meta["jwks_uri"].(string))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp2.Body.Close()
	if cc := resp2.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age") {
		e.t.Errorf("JWKS Cache-Control = %q, want a max-age", cc)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp2.Body).Decode(&set); err != nil {
		e.t.Fatal(err)
	}
	return meta, &set
}

// verifyJWT checks a JWT against the published JWKS the way a resource
// server would, and returns its claims.
func (e *env) verifyJWT(tok, wantTyp string) map[string]any {
	e.t.Helper()
	_, set := e.discovery()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		e.t.Fatalf("parse JWT: %v", err)
	}
	h := parsed.Headers[0]
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != wantTyp {
		e.t.Errorf("typ = %q, want %q", typ, wantTyp)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		e.t.Fatalf("kid %q: %d keys in the JWKS", h.KeyID, len(keys))
	}
	if keys[0].Algorithm != h.Algorithm {
		e.t.Errorf("key alg %q, token alg %q", keys[0].Algorithm, h.Algorithm)
	}
	var claims map[string]any
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		e.t.Fatalf("JWT signature: %v", err)
	}
	return claims
}

func TestClientCredentialsOpaque(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.url + "/oauth2/token", Scopes: []string{"repos:read"}}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	mustf(t, strings.HasPrefix(tok.AccessToken, "jta_"), "access token %q is not an opaque jta_ token", tok.AccessToken[:6])
	mustf(t, tok.RefreshToken == "", "client credentials issued a refresh token")
	in := e.introspect(tok.AccessToken)
	want := map[string]any{"active": true, "client_id": c.ID, "sub": c.ID, "scope": "repos:read", "aud": e.api.Identifier, "token_type": "Bearer"}
	for k, v := range want {
		if in[k] != v {
			t.Errorf("introspection %s = %v, want %v (all: %v)", k, in[k], v, in)
		}
	}
	// The same token verifies on the fast path too.
	res := e.verify(tok.AccessToken, "repos:read")
	mustf(t, res["valid"] == true, "verify: %v", res)

	// Client secret basic with form-encoded credentials, and post.
	c2, secret2 := e.client(func(p *oauth.ClientParams) { p.AuthMethod = oauth.AuthSecretPost })
	cc2 := clientcredentials.Config{ClientID: c2.ID, ClientSecret: secret2, TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}
	if _, err := cc2.Token(context.Background()); err != nil {
		t.Fatalf("client_secret_post: %v", err)
	}
}

func (e *env) verify(tok string, scopes ...string) map[string]any {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"token": tok, "scopes": scopes})
	req, _ := http.NewRequest("POST", e.url+"/v1/verify", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return m
}

func TestClientCredentialsJWTAcrossKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{prePublish: time.Minute})
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			c, secret := e.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT; p.SigningAlg = alg })
			cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.url + "/oauth2/token",
				Scopes: []string{"repos:read", "repos:write"}, EndpointParams: url.Values{"resource": {e.api.Identifier}}}
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			claims := e.verifyJWT(tok.AccessToken, "at+jwt")
			for k, v := range map[string]any{"iss": e.url, "sub": c.ID, "aud": e.api.Identifier, "client_id": c.ID, "scope": "repos:read repos:write"} {
				if claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, claims[k], v)
				}
			}
			for _, k := range []string{"exp", "iat", "jti"} {
				if claims[k] == nil {
					t.Errorf("claim %s missing", k)
				}
			}
			if in := e.introspect(tok.AccessToken); in["active"] != true || in["client_id"] != c.ID {
				t.Errorf("introspection of a JWT access token: %v", in)
			}
		})
	}

	// Rotate: the new key is published at once but signs only after the
	// pre-publication delay; tokens signed before keep verifying.
	c, secret := e.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT })
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.url + "/oauth2/token"}
	before, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	oldKid := kidOf(t, before.AccessToken)
	newKeys, err := e.keys.Rotate(context.Background(), "test", "")
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	_, set := e.discovery()
	for _, k := range newKeys {
		mustf(t, len(set.Key(k.ID)) == 1, "new key %s is not published before it signs", k.ID)
	}
	during, _ := cc.Token(context.Background())
	mustf(t, kidOf(t, during.AccessToken) == oldKid, "a new key signed before its pre-publication delay ended")
	e.clock.Advance(time.Minute + time.Second)
	after, _ := cc.Token(context.Background())
	mustf(t, kidOf(t, after.AccessToken) != oldKid, "the new key does not sign after the delay")
	e.verifyJWT(before.AccessToken, "at+jwt") // the old key is still published
	e.verifyJWT(after.AccessToken, "at+jwt")
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h := decodeSegment(t, strings.Split(tok, ".")[0])
	kid, _ := h["kid"].(string)
	return kid
}

// authorize runs the browser side of an authorization code flow up to the
// redirect back to the client and returns the redirect's query.
func (e *env) authorize(b *browser, authURL string, login bool) url.Values {
	e.t.Helper()
	return e.authorizeTo(b, authURL, login, "https://app.example.com/callback")
}

// authorizeTo is authorize for a client that is sent back to redirectURI.
func (e *env) authorizeTo(b *browser, authURL string, login bool, redirectURI string) url.Values {
	e.t.Helper()
	p := b.do("GET", authURL, nil)
	if login {
		p = b.login(p, "alice", e.password)
	}
	if p.status == http.StatusOK && strings.Contains(p.body, `value="allow"`) {
		f := p.formValues()
		f.Set("decision", "allow")
		p = b.do("POST", "/oauth2/authorize", f)
	}
	if p.status != http.StatusSeeOther {
		e.t.Fatalf("authorization did not redirect back: %d %s", p.status, truncateBody(p.body))
	}
	u, err := url.Parse(p.location)
	if err != nil || !strings.HasPrefix(p.location, redirectURI+"?") {
		e.t.Fatalf("redirected to %q", p.location)
	}
	return u.Query()
}

func TestAuthorizationCodePKCEAndRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, _ := e.client(func(p *oauth.ClientParams) {
		p.Type = store.ClientPublic
		p.TokenFormat = store.FormatJWT
	})
	conf := oauth2.Config{ClientID: c.ID, RedirectURL: "https://app.example.com/callback",
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{"openid", "profile", "email", "repos:read"}}
	verifier := oauth2.GenerateVerifier()
	b := e.browser()
	q := e.authorize(b, conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n0nce")), true)
	mustf(t, q.Get("state") == "st4te", "state = %q", q.Get("state"))
	mustf(t, q.Get("iss") == e.url, "iss = %q (RFC 9207)", q.Get("iss"))
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	mustf(t, tok.RefreshToken != "", "no refresh token")
	idTok, _ := tok.Extra("id_token").(string)
	mustf(t, idTok != "", "no id_token")
	id := e.verifyJWT(idTok, "JWT")
	for k, v := range map[string]any{"iss": e.url, "sub": e.alice.ID, "aud": c.ID, "nonce": "n0nce", "preferred_username": "alice", "email": "alice@example.com"} {
		if id[k] != v {
			t.Errorf("id token %s = %v, want %v", k, id[k], v)
		}
	}
	sum := sha256.Sum256([]byte(tok.AccessToken))
	mustf(t, id["at_hash"] == base64.RawURLEncoding.EncodeToString(sum[:16]), "at_hash does not match the access token")
	mustf(t, id["auth_time"] != nil, "no auth_time")
	at := e.verifyJWT(tok.AccessToken, "at+jwt")
	mustf(t, at["sub"] == e.alice.ID && at["aud"] == e.api.Identifier, "access token claims: %v", at)

	// userinfo with the access token.
	req, _ := http.NewRequest("GET", e.url+"/oauth2/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ui map[string]any
	json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	mustf(t, ui["sub"] == e.alice.ID && ui["email"] == "alice@example.com", "userinfo: %d %v", resp.StatusCode, ui)

	// A second authorization is remembered: no login, no consent page.
	q2 := e.authorize(b, conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(verifier)), false)
	mustf(t, q2.Get("code") != "", "second authorization: %v", q2)

	// Refresh rotates; down-selection works; escalation does not.
	old := tok.RefreshToken
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(context.Background(), tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	mustf(t, fresh.RefreshToken != "" && fresh.RefreshToken != old, "refresh token was not rotated")
	status, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fresh.RefreshToken}, "client_id": {c.ID}, "scope": {"repos:read repos:write"}}, "", "")
	mustf(t, status == 400 && m["error"] == "invalid_scope", "scope escalation on refresh: %d %v", status, m)
	status, m, _ = e.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fresh.RefreshToken}, "client_id": {c.ID}, "scope": {"repos:read"}}, "", "")
	mustf(t, status == 200 && m["scope"] == "repos:read", "down-selection: %d %v", status, m)
	newest := m["refresh_token"].(string)

	// Reuse of a rotated refresh token revokes the whole family.
	status, m, _ = e.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old}, "client_id": {c.ID}}, "", "")
	mustf(t, status == 400 && m["error"] == "invalid_grant", "reuse: %d %v", status, m)
	status, m, _ = e.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {newest}, "client_id": {c.ID}}, "", "")
	mustf(t, status == 400 && m["error"] == "invalid_grant", "the family survived reuse: %d %v", status, m)
	evs, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "grant.refresh_reuse"})
	mustf(t, err == nil && len(evs) == 1, "refresh reuse audited %d times (%v)", len(evs), err)
}

// TestNativeAppLoopbackRedirect proves RFC 8252 §7.3: a native app that
// registered http://127.0.0.1/callback may be sent back to that address on
// any port, the one it is listening on, and must then redeem its code with
// the same redirect_uri, port included (RFC 6749 §4.1.3).
func TestNativeAppLoopbackRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, _ := e.client(func(p *oauth.ClientParams) {
		p.Type = store.ClientPublic
		p.RedirectURIs = []string{"http://127.0.0.1/callback"}
	})
	const listening = "http://127.0.0.1:49821/callback"
	conf := oauth2.Config{ClientID: c.ID, RedirectURL: listening, Scopes: []string{"repos:read"},
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	b := e.browser()
	q := e.authorizeTo(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), true, listening)

	other := conf
	other.RedirectURL = "http://127.0.0.1:49822/callback"
	_, err := other.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	mustf(t, errors.As(err, &re) && re.ErrorCode == "invalid_grant", "exchange on another port: %v", err)

	q = e.authorizeTo(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), false, listening)
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	mustf(t, err == nil && e.introspect(tok.AccessToken)["active"] == true, "exchange: %v", err)

	// Another path, or localhost, is not registered: the user sees an
	// error page and is sent nowhere.
	for _, uri := range []string{"http://127.0.0.1:49821/callback/other", "http://localhost:49821/callback"} {
		other.RedirectURL = uri
		p := b.do("GET", other.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), nil)
		mustf(t, p.status == http.StatusBadRequest && p.location == "", "redirect_uri %s: %d %q", uri, p.status, p.location)
	}
}

func TestCodeReuseRevokesWhatTheFirstIssued(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	q := e.authorize(e.browser(), conf.AuthCodeURL("s"), true)
	tok, err := conf.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	mustf(t, e.introspect(tok.AccessToken)["active"] == true, "access token inactive before reuse")
	_, err = conf.Exchange(context.Background(), q.Get("code"))
	var re *oauth2.RetrieveError
	mustf(t, errors.As(err, &re) && re.ErrorCode == "invalid_grant", "second use of a code: %v", err)
	mustf(t, e.introspect(tok.AccessToken)["active"] == false, "the access token of the first use survived code reuse")
	mustf(t, e.introspect(tok.RefreshToken)["active"] == false, "the refresh token of the first use survived code reuse")
}

func TestDeviceFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, conf := e.deviceClient(nil)
	ctx := context.Background()
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	mustf(t, len(da.UserCode) == 9 && da.VerificationURI == e.url+"/device", "device response: %+v", da)

	// Polling before the user answers: authorization_pending, then
	// slow_down when polling faster than the interval (on a second code,
	// so that the client library's own polling below is not slowed).
	probe, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	poll := url.Values{"grant_type": {oauth.GrantDeviceCode}, "device_code": {probe.DeviceCode}, "client_id": {c.ID}}
	first := time.Now()
	status, m, _ := e.postForm("/oauth2/token", poll, "", "")
	mustf(t, status == 400 && m["error"] == "authorization_pending", "first poll: %d %v", status, m)
	status, m, _ = e.postForm("/oauth2/token", poll, "", "")
	if time.Since(first) < 900*time.Millisecond { // else the machine was too slow to poll fast
		mustf(t, status == 400 && m["error"] == "slow_down", "fast second poll: %d %v", status, m)
	}
	e.clock.Advance(11 * time.Minute)
	status, m, _ = e.postForm("/oauth2/token", poll, "", "")
	mustf(t, status == 400 && m["error"] == "expired_token", "poll after expiry: %d %v", status, m)
	e.clock.Advance(-11 * time.Minute)

	var wg sync.WaitGroup
	var tok *oauth2.Token
	var pollErr error
	wg.Go(func() { tok, pollErr = conf.DeviceAccessToken(ctx, da) })

	b := e.browser()
	p := b.login(b.do("GET", da.VerificationURIComplete, nil), "alice", e.password)
	f := p.formValues()
	mustf(t, strings.EqualFold(strings.ReplaceAll(f.Get("user_code"), "-", ""), strings.ReplaceAll(da.UserCode, "-", "")), "user code not prefilled: %v", f)
	p = b.do("POST", "/device", f)
	mustf(t, p.status == 200 && strings.Contains(p.body, `value="allow"`), "device confirmation page: %d %s", p.status, truncateBody(p.body))
	f = p.formValues()
	f.Set("decision", "allow")
	p = b.do("POST", "/device", f)
	mustf(t, p.status == 200, "device approval: %d %s", p.status, truncateBody(p.body))
	wg.Wait()
	if pollErr != nil {
		t.Fatalf("device token: %v", pollErr)
	}
	in := e.introspect(tok.AccessToken)
	mustf(t, in["active"] == true && in["sub"] == e.alice.ID && in["client_id"] == c.ID, "device token introspection: %v", in)
	mustf(t, tok.RefreshToken != "", "device flow issued no refresh token")
	// The device code is single-use.
	mustf(t, e.pollDevice(c, da.DeviceCode) == "invalid_grant", "device code reuse was not invalid_grant")
	mustf(t, e.introspect(tok.AccessToken)["active"] == false, "device code reuse did not revoke the grant")
}

func TestRevocationByClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	other, otherSecret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	q := e.authorize(e.browser(), conf.AuthCodeURL("s"), true)
	tok, err := conf.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	// Another client cannot revoke it (RFC 7009 §2.1): 200, nothing happens.
	status, _, _ := e.postForm("/oauth2/revoke", url.Values{"token": {tok.RefreshToken}}, other.ID, otherSecret)
	mustf(t, status == 200, "foreign revoke: %d", status)
	mustf(t, e.introspect(tok.RefreshToken)["active"] == true, "another client revoked the token")
	// Revoking the refresh token revokes the grant's access tokens.
	status, _, _ = e.postForm("/oauth2/revoke", url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}, c.ID, secret)
	mustf(t, status == 200, "revoke: %d", status)
	mustf(t, e.introspect(tok.RefreshToken)["active"] == false, "refresh token still active")
	mustf(t, e.introspect(tok.AccessToken)["active"] == false, "access token of the revoked grant still active")
	mustf(t, e.verify(tok.AccessToken)["valid"] == false, "access token still verifies")
}

func TestRefreshRetryWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{retryWindow: 5 * time.Second})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	q := e.authorize(e.browser(), conf.AuthCodeURL("s"), true)
	tok, err := conf.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
	s1, m1, _ := e.postForm("/oauth2/token", form, c.ID, secret)
	s2, m2, _ := e.postForm("/oauth2/token", form, c.ID, secret)
	mustf(t, s1 == 200 && s2 == 200 && m1["refresh_token"] == m2["refresh_token"] && m1["access_token"] == m2["access_token"],
		"a retry within the window did not get the same answer: %d %d", s1, s2)
	e.clock.Advance(6 * time.Second)
	s3, m3, _ := e.postForm("/oauth2/token", form, c.ID, secret)
	mustf(t, s3 == 400 && m3["error"] == "invalid_grant", "reuse after the window: %d %v", s3, m3)
	mustf(t, e.introspect(m1["refresh_token"].(string))["active"] == false, "reuse after the window did not revoke the family")
}

// TestRefreshReuseRevokesTheFamily proves that presenting a rotated
// refresh token revokes its whole grant and is audited (RFC 9700
// §4.14.2), also after the rotated token's own expiry: it is no less a
// sign of a leak then, and the token it was rotated into is still live.
func TestRefreshReuseRevokesTheFamily(t *testing.T) {
	t.Parallel()
	const ttl = time.Minute
	for _, tt := range []struct {
		name  string
		reuse time.Duration // after the rotation, which is 50 s into the first token's minute
	}{
		{"before its expiry", 5 * time.Second},
		{"after its expiry", 20 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c, secret := e.client(func(p *oauth.ClientParams) { p.RefreshTokenTTL = ttl })
			conf := codeConfig(e.url, c, secret)
			tok, err := conf.Exchange(context.Background(), e.authorize(e.browser(), conf.AuthCodeURL("s"), true).Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			refresh := func(rt string) (int, map[string]any) {
				t.Helper()
				status, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.ID, secret)
				return status, m
			}
			e.clock.Advance(50 * time.Second)
			status, m := refresh(tok.RefreshToken)
			mustf(t, status == 200, "rotation: %d %v", status, m)
			rotated, _ := m["refresh_token"].(string)
			e.clock.Advance(tt.reuse)
			mustf(t, e.introspect(rotated)["active"] == true, "the rotated-into token is not live before the reuse")

			status, m = refresh(tok.RefreshToken)
			mustf(t, status == 400 && m["error"] == "invalid_grant", "reuse: %d %v", status, m)
			mustf(t, e.introspect(rotated)["active"] == false, "the family survived the reuse")
			status, m = refresh(rotated)
			mustf(t, status == 400 && m["error"] == "invalid_grant", "refresh with the rotated-into token after the reuse: %d %v", status, m)
			evs, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "grant.refresh_reuse"})
			mustf(t, err == nil && len(evs) == 1, "refresh reuse audited %d times (%v)", len(evs), err)
		})
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	meta, set := e.discovery()
	for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
		"revocation_endpoint", "introspection_endpoint", "device_authorization_endpoint"} {
		v, _ := meta[k].(string)
		mustf(t, strings.HasPrefix(v, e.url), "%s = %v", k, meta[k])
	}
	methods, _ := meta["code_challenge_methods_supported"].([]any)
	mustf(t, len(methods) == 1 && methods[0] == "S256", "code_challenge_methods_supported = %v", methods)
	mustf(t, len(set.Keys) >= 1 && set.Keys[0].IsPublic(), "JWKS: %+v", set)
	resp, err := http.Get(e.url + "/.well-known/oauth-authorization-server")
	mustf(t, err == nil && resp.StatusCode == 200, "RFC 8414 metadata: %v", err)
	resp.Body.Close()
	grants, _ := meta["grant_types_supported"].([]any)
	mustf(t, !slices.Contains(grants, any("password")) && !slices.Contains(grants, any("implicit")), "unsafe grants advertised: %v", grants)
}

// TestMetadataListsAssertionAlgsPerEndpoint proves RFC 8414 §2: each
// endpoint whose auth methods list private_key_jwt also lists the
// assertion's signing algorithms ("No default algorithms are implied"),
// the same ones at every endpoint, since one check serves them all.
func TestMetadataListsAssertionAlgsPerEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, wellKnown := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, err := http.Get(e.url + wellKnown)
		if err != nil {
			t.Fatal(err)
		}
		var meta map[string]any
		err = json.NewDecoder(resp.Body).Decode(&meta)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := []any{"ES256", "ES384", "RS256", "PS256", "EdDSA"}
		for _, ep := range []string{"token", "revocation", "introspection"} {
			methods, _ := meta[ep+"_endpoint_auth_methods_supported"].([]any)
			if !slices.Contains(methods, any(oauth.AuthPrivateKeyJWT)) {
				t.Errorf("%s: %s_endpoint_auth_methods_supported = %v, want private_key_jwt in it", wellKnown, ep, methods)
				continue
			}
			algs, _ := meta[ep+"_endpoint_auth_signing_alg_values_supported"].([]any)
			if diff := cmp.Diff(algs, want); diff != "" {
				t.Errorf("%s: %s_endpoint_auth_signing_alg_values_supported (-got +want):\n%s", wellKnown, ep, diff)
			}
		}
	}
}

// TestDevicePollingOnTimeIsNotTooFast polls a device code the way
// golang.org/x/oauth2 does, on a ticker of exactly the interval: the
// scheduling of the client and of the server can bring two polls a little
// closer than that (999 ms apart for a 1 s interval was seen), and such a
// poll must not be answered slow_down, which would add 5 s to every later
// wait. A poll well inside the interval still is.
func TestDevicePollingOnTimeIsNotTooFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, conf := e.deviceClient(nil)
	da := e.deviceAuth(conf)
	mustf(t, da.Interval == 1, "interval %d, want the test server's 1 s", da.Interval)
	mustf(t, e.pollDevice(c, da.DeviceCode) == "authorization_pending", "first poll")
	// The clock moves 900 ms; the real time the request takes adds a
	// little, far less than 100 ms.
	e.clock.Advance(900 * time.Millisecond)
	mustf(t, e.pollDevice(c, da.DeviceCode) == "authorization_pending", "a poll 0.9 intervals after the last was answered slow_down")
	mustf(t, e.pollDevice(c, da.DeviceCode) == "slow_down", "an immediate poll was not answered slow_down")
}

// TestPagesDescribeScopes checks that the consent and device pages say in
// words what each scope allows: the API's descriptions for its scopes,
// Jeton's for OpenID Connect's, and nothing for a scope left undescribed.
func TestPagesDescribeScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if _, err := e.tokens.UpdateAPI(context.Background(), e.api.ID, tokens.APIUpdate{ScopeDescriptions: map[string]string{"repos:read": "Read your <repositories>"}},
		tokens.Actor{ID: "test"}); err != nil {
		t.Fatal(err)
	}
	c, secret := e.client(nil)
	conf := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://app.example.com/callback",
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token"},
		Scopes:   []string{"openid", "repos:read", "repos:write"}}
	b := e.browser()
	p := b.login(b.do("GET", conf.AuthCodeURL("s"), nil), "alice", e.password)
	for _, want := range []string{"<li><code>repos:read</code><span>Read your &lt;repositories&gt;</span></li>",
		"<li><code>openid</code><span>Sign you in with your account</span></li>", "<li><code>repos:write</code></li>"} {
		mustf(t, strings.Contains(p.body, want), "consent page lacks %q:\n%s", want, p.body)
	}

	_, dconf := e.deviceClient(nil)
	da := e.deviceAuth(dconf)
	p = b.do("GET", da.VerificationURIComplete, nil)
	p = b.do("POST", "/device", p.formValues())
	mustf(t, strings.Contains(p.body, "<li><code>repos:read</code><span>Read your &lt;repositories&gt;</span></li>"), "device page lacks the description:\n%s", p.body)
}
