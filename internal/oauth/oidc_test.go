package oauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
)

// TestOpenIDConnectWithGoOIDC signs in through Jeton with
// github.com/coreos/go-oidc, the usual OpenID Connect relying-party library
// in Go, as an application would: discovery (which insists that the issuer
// in the metadata is the URL it was given), the authorization code flow,
// then the ID token checked against the JWKS (signature, iss, aud, exp, the
// algorithm among those discovery lists), its nonce and at_hash, and the
// userinfo endpoint. Each signing algorithm, and an ID token signed by a
// rotated key, which the library must find by refetching the JWKS.
func TestOpenIDConnectWithGoOIDC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{prePublish: time.Minute})
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, e.url)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}

	// signIn runs the authorization code flow for conf and returns the
	// tokens and the ID token, verified, with its compact form.
	signIn := func(t *testing.T, conf oauth2.Config, verifier *oidc.IDTokenVerifier) (*oauth2.Token, *oidc.IDToken, string) {
		t.Helper()
		pkce := oauth2.GenerateVerifier()
		q := e.authorize(e.browser(), conf.AuthCodeURL("st", oauth2.S256ChallengeOption(pkce), oidc.Nonce("n-42")), true)
		tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		raw, ok := tok.Extra("id_token").(string)
		mustf(t, ok, "no id_token")
		id, err := verifier.Verify(ctx, raw)
		if err != nil {
			t.Fatalf("go-oidc rejects the ID token: %v", err)
		}
		mustf(t, id.Nonce == "n-42", "nonce %q", id.Nonce)
		mustf(t, id.Subject == e.alice.ID, "sub %q, want %q", id.Subject, e.alice.ID)
		if err := id.VerifyAccessToken(tok.AccessToken); err != nil {
			t.Errorf("at_hash: %v", err)
		}
		return tok, id, raw
	}

	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			c, secret := e.client(func(p *oauth.ClientParams) {
				p.Name = "Relying party " + alg
				p.TokenFormat = store.FormatJWT
				p.SigningAlg = alg
			})
			conf := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://app.example.com/callback",
				Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
			verifier := provider.Verifier(&oidc.Config{ClientID: c.ID, Now: e.clock.Now})
			tok, id, _ := signIn(t, conf, verifier)
			var claims struct {
				Email             string `json:"email"`
				PreferredUsername string `json:"preferred_username"`
			}
			if err := id.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			mustf(t, claims.Email == "alice@example.com" && claims.PreferredUsername == "alice", "claims %+v", claims)

			info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			mustf(t, info.Subject == e.alice.ID && info.Email == "alice@example.com", "userinfo %+v", info)
		})
	}

	// After a rotation the new key signs (once its pre-publication delay
	// is over); the verifier has cached the old JWKS and must refetch it
	// for the new kid.
	c, secret := e.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT })
	conf := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://app.example.com/callback",
		Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID}}
	verifier := provider.Verifier(&oidc.Config{ClientID: c.ID, Now: e.clock.Now})
	_, _, before := signIn(t, conf, verifier)
	if _, err := e.keys.Rotate(ctx, "test", ""); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	e.clock.Advance(time.Minute + time.Second)
	_, _, after := signIn(t, conf, verifier)
	mustf(t, kidOf(t, after) != kidOf(t, before), "the rotated key did not sign")
}
