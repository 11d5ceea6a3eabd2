package oauth_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// revokeAsResource posts tok to /oauth2/revoke authenticated as a resource
// server (Bearer Jeton token) and returns the status and body.
func (e *env) revokeAsResource(tok, bearer string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/oauth2/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// feed returns the revocation feed's live entries.
func (e *env) feed() []store.Revocation {
	e.t.Helper()
	revs, err := e.db.ListRevocations(context.Background(), 0, nil, e.clock.Now(), 1000)
	if err != nil {
		e.t.Fatalf("ListRevocations: %v", err)
	}
	return revs
}

// userJWT runs an authorization code flow for a confidential client that
// gets JWT access tokens and returns the client, its secret and the tokens.
func (e *env) userJWT() (store.Client, string, *oauth2.Token, oauth2.Config) {
	e.t.Helper()
	c, secret := e.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT })
	conf := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://app.example.com/callback",
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"openid", "repos:read"}}
	q := e.authorize(e.browser(), conf.AuthCodeURL("s"), true)
	tok, err := conf.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return c, secret, tok, conf
}

func TestJWTAccessTokensCarryTheirGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, _, tok, conf := e.userJWT()
	grants, err := e.db.ListGrants(context.Background(), e.alice.ID)
	mustf(t, err == nil && len(grants) == 1 && grants[0].ClientID == c.ID, "grants of alice: %v, %v", grants, err)
	claims := e.verifyJWT(tok.AccessToken, "at+jwt")
	mustf(t, claims["sid"] == grants[0].ID, "sid of an authorization code token = %v, want the grant %s", claims["sid"], grants[0].ID)

	// A refreshed token belongs to the same grant.
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(context.Background(), tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	mustf(t, fresh.AccessToken != tok.AccessToken, "refresh returned the same access token")
	claims = e.verifyJWT(fresh.AccessToken, "at+jwt")
	mustf(t, claims["sid"] == grants[0].ID, "sid of a refreshed token = %v, want %s", claims["sid"], grants[0].ID)

	// Client credentials issue no grant, so no sid.
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: conf.ClientSecret, TokenURL: e.url + "/oauth2/token"}
	m2m, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	claims = e.verifyJWT(m2m.AccessToken, "at+jwt")
	_, has := claims["sid"]
	mustf(t, !has, "a client credentials token has sid %v", claims["sid"])
}

func TestRevokeJWTAccessToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	c, secret, tok, _ := e.userJWT()
	other, otherSecret := e.client(nil)
	jti, _ := e.verifyJWT(tok.AccessToken, "at+jwt")["jti"].(string)
	exp := int64(e.verifyJWT(tok.AccessToken, "at+jwt")["exp"].(float64))
	beta, err := e.tokens.CreateAPI(ctx, apiParams("beta"), actor)
	if err != nil {
		t.Fatal(err)
	}
	jeton, err := e.tokens.ResolveAPI(ctx, tokens.BuiltinAPIName)
	if err != nil {
		t.Fatal(err)
	}
	betaVerifier, err := e.tokens.CreateToken(ctx, tokens.CreateParams{API: jeton.ID, Settings: tokens.Settings{Scopes: []string{tokens.ScopeVerifyAPIPrefix + beta.ID}}}, actor)
	if err != nil {
		t.Fatal(err)
	}
	mustf(t, e.introspect(tok.AccessToken)["active"] == true, "JWT inactive before revocation")
	userinfo := func() int {
		req, _ := http.NewRequest("GET", e.url+"/oauth2/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	mustf(t, userinfo() == http.StatusOK, "userinfo refused the JWT before revocation")

	// Callers that may not revoke it get 200 and change nothing (RFC 7009
	// §2.1, §2.2): another client, and a resource server of another API.
	status, _, _ := e.postForm("/oauth2/revoke", url.Values{"token": {tok.AccessToken}}, other.ID, otherSecret)
	mustf(t, status == 200, "revocation by another client: %d", status)
	status, body := e.revokeAsResource(tok.AccessToken, betaVerifier.Secret)
	mustf(t, status == 200, "revocation by another API's verifier: %d %s", status, body)
	mustf(t, e.introspect(tok.AccessToken)["active"] == true, "a foreign caller revoked the JWT")
	mustf(t, len(e.feed()) == 0, "a foreign revocation was published: %+v", e.feed())

	// The client itself revokes it: introspection says inactive and the
	// feed carries its jti until it expires.
	before, _, _ := e.db.ListAudit(ctx, store.AuditFilter{Action: "token.revoke", Target: jti})
	status, _, _ = e.postForm("/oauth2/revoke", url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}, c.ID, secret)
	mustf(t, status == 200, "revocation by its client: %d", status)
	mustf(t, e.introspect(tok.AccessToken)["active"] == false, "revoked JWT still active")
	mustf(t, userinfo() == http.StatusUnauthorized, "userinfo accepted a revoked JWT")
	feed := e.feed()
	mustf(t, len(feed) == 1, "feed after revocation: %+v", feed)
	r := feed[0]
	mustf(t, r.Kind == store.RevocationToken && r.Ref == jti && r.APIID == e.api.ID && r.ExpiresAt.Equal(time.Unix(exp, 0)),
		"feed entry %+v, want token %s of %s until %v", r, jti, e.api.ID, time.Unix(exp, 0))
	after, _, _ := e.db.ListAudit(ctx, store.AuditFilter{Action: "token.revoke", Target: jti})
	mustf(t, len(after) == len(before)+1 && after[0].Actor == c.ID, "revocation audited %d times by %v", len(after)-len(before), after)

	// Again, also through the admin path: nothing more is recorded.
	status, body = e.revokeAsResource(tok.AccessToken, e.admin)
	mustf(t, status == 200, "second revocation: %d %s", status, body)
	mustf(t, len(e.feed()) == 1, "second revocation published again: %+v", e.feed())

	// A resource server of the token's API revokes another JWT (client
	// credentials, no grant).
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.url + "/oauth2/token"}
	m2m, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status, body = e.revokeAsResource(m2m.AccessToken, e.Verify)
	mustf(t, status == 200, "revocation by the API's verifier: %d %s", status, body)
	mustf(t, e.introspect(m2m.AccessToken)["active"] == false, "client credentials JWT still active")
	mustf(t, len(e.feed()) == 2, "feed: %+v", e.feed())

	// An expired JWT, garbage and a JWT of another issuer are 200 and
	// change nothing.
	late, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	for name, tk := range map[string]string{"expired": late.AccessToken, "garbage": "a.b.c", "forged": flipLast(m2m.AccessToken)} {
		status, body = e.revokeAsResource(tk, e.admin)
		mustf(t, status == 200, "%s JWT: %d %s", name, status, body)
	}
	e.clock.Advance(-2 * time.Hour)
	mustf(t, len(e.feed()) == 2, "feed after ignored revocations: %+v", e.feed())

	// An ID token is not a credential: unsupported_token_type.
	idTok, _ := tok.Extra("id_token").(string)
	mustf(t, idTok != "", "no id_token")
	status, m, _ := e.postForm("/oauth2/revoke", url.Values{"token": {idTok}}, c.ID, secret)
	mustf(t, status == 400 && m["error"] == "unsupported_token_type", "ID token revocation: %d %v", status, m)
}

func TestIntrospectJWTOfRevokedGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret, tok, _ := e.userJWT()
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.url + "/oauth2/token"}
	m2m, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustf(t, e.introspect(tok.AccessToken)["active"] == true, "JWT inactive before its grant was revoked")

	// Revoking the refresh token revokes the grant: the JWT issued from it
	// (its sid) is inactive too, and the feed says so; the client
	// credentials JWT is not of the grant.
	status, _, _ := e.postForm("/oauth2/revoke", url.Values{"token": {tok.RefreshToken}}, c.ID, secret)
	mustf(t, status == 200, "revoke refresh token: %d", status)
	mustf(t, e.introspect(tok.AccessToken)["active"] == false, "JWT of a revoked grant still active")
	mustf(t, e.introspect(m2m.AccessToken)["active"] == true, "an unrelated JWT became inactive")
	sid, _ := e.verifyJWT(tok.AccessToken, "at+jwt")["sid"].(string)
	feed := e.feed()
	mustf(t, len(feed) == 1 && feed[0].Kind == store.RevocationGrant && feed[0].Ref == sid && feed[0].APIID == e.api.ID,
		"feed after grant revocation: %+v, want grant %s", feed, sid)
}

// A resource server accepts a JWT for its leeway past exp, so a JWT just
// past exp can still be revoked, and the feed carries it; one past every
// leeway is left alone.
func TestRevokeJWTJustPastItsExpiry(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		past    time.Duration // after exp
		revoked bool
	}{
		{"within the grace", time.Minute, true},
		{"past the grace", store.RevocationGrace + time.Second, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c, secret, tok, _ := e.userJWT()
			claims := e.verifyJWT(tok.AccessToken, "at+jwt")
			jti, _ := claims["jti"].(string)
			exp := time.Unix(int64(claims["exp"].(float64)), 0)
			e.clock.Advance(exp.Sub(e.clock.Now()) + tt.past)
			status, _, _ := e.postForm("/oauth2/revoke", url.Values{"token": {tok.AccessToken}}, c.ID, secret)
			mustf(t, status == 200, "revocation: %d", status)
			inFeed := slices.ContainsFunc(e.feed(), func(r store.Revocation) bool { return r.Ref == jti })
			mustf(t, inFeed == tt.revoked, "in the feed: %v, want %v", inFeed, tt.revoked)
		})
	}
}
