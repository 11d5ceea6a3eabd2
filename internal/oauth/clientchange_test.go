package oauth_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/tokens"
)

// clientChanges are the ways an admin narrows a client after a user
// approved a grant for it (for repos:read and repos:write of the test API),
// and what a refresh of that grant may still get: the scopes, or an error.
var clientChanges = []struct {
	name    string
	update  func(e *env) oauth.ClientUpdate
	scope   string // what a refresh gets, if it gets anything
	refused string // the error code of a refresh otherwise
	lost    string // a granted scope the client lost: asking for it is refused
}{
	{"nothing changed", func(e *env) oauth.ClientUpdate {
		name := "renamed"
		return oauth.ClientUpdate{Name: &name}
	}, "repos:read repos:write", "", ""},
	{"one scope taken away", func(e *env) oauth.ClientUpdate {
		return oauth.ClientUpdate{Scopes: []string{"repos:read", "openid"}}
	}, "repos:read", "", "repos:write"},
	{"every scope of the grant taken away", func(e *env) oauth.ClientUpdate {
		return oauth.ClientUpdate{Scopes: []string{"openid"}}
	}, "", "invalid_grant", ""},
	{"the api taken away", func(e *env) oauth.ClientUpdate {
		return oauth.ClientUpdate{APIs: []string{e.apiNamed("billing").ID}, Scopes: []string{"read"}}
	}, "", "invalid_grant", ""},
}

// TestRefreshGetsOnlyWhatTheClientStillHas proves that a grant does not
// keep what its client lost: after an admin takes a scope or an API away
// from a client, a refresh of an older grant is issued only what the
// client may still have, or refused.
func TestRefreshGetsOnlyWhatTheClientStillHas(t *testing.T) {
	t.Parallel()
	for _, tt := range clientChanges {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c, secret := e.client(nil)
			conf := codeConfig(e.url, c, secret)
			conf.Scopes = []string{"repos:read", "repos:write"}
			q := e.authorize(e.browser(), conf.AuthCodeURL("s"), true)
			tok, err := conf.Exchange(context.Background(), q.Get("code"))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if _, err := e.oauth.UpdateClient(context.Background(), c.ID, tt.update(e), tokens.Actor{ID: "test"}); err != nil {
				t.Fatalf("UpdateClient: %v", err)
			}

			refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
			if tt.lost != "" {
				// Asking for it is refused, and spends nothing.
				refresh.Set("scope", tt.lost)
				status, m, _ := e.postForm("/oauth2/token", refresh, c.ID, secret)
				mustf(t, status == 400 && m["error"] == "invalid_scope", "asked for a lost scope: %d %v", status, m)
				refresh.Del("scope")
			}
			status, m, _ := e.postForm("/oauth2/token", refresh, c.ID, secret)
			if tt.refused != "" {
				mustf(t, status == 400 && m["error"] == tt.refused, "refresh: %d %v, want %s", status, m, tt.refused)
				return
			}
			mustf(t, status == 200 && m["scope"] == tt.scope, "refresh: %d %v, want scope %q", status, m, tt.scope)
			in := e.introspect(m["access_token"].(string))
			mustf(t, in["active"] == true && in["scope"] == tt.scope, "the refreshed access token: %v", in)
		})
	}
}

// TestCodeRedeemedAfterTheClientLostTheAPI proves that an authorization
// code approved for an API its client has lost since yields no tokens, and
// leaves no live grant behind.
func TestCodeRedeemedAfterTheClientLostTheAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	q := e.authorize(e.browser(), conf.AuthCodeURL("s"), true)
	if _, err := e.oauth.UpdateClient(context.Background(), c.ID, oauth.ClientUpdate{APIs: []string{e.apiNamed("billing").ID}, Scopes: []string{"read"}}, tokens.Actor{ID: "test"}); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	_, err := conf.Exchange(context.Background(), q.Get("code"))
	var re *oauth2.RetrieveError
	mustf(t, errors.As(err, &re) && re.ErrorCode == "invalid_grant", "exchange: %v, want invalid_grant", err)
	grants, err := e.db.ListGrants(context.Background(), e.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		mustf(t, !g.RevokedAt.IsZero(), "grant %s of the refused code is live", g.ID)
	}
}
