package oauth_test

import (
	"context"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
)

// TestDeletedClientEndsItsJWTAccessTokens: docs/oauth.md says the access
// tokens a client holds end at once when the client is deleted. Its
// opaque client-credentials token does become inactive; its JWT
// client-credentials token (no grant, no sid) must too, and not be
// introspected as active for a client that no longer exists.
func TestDeletedClientEndsItsJWTAccessTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	c, secret := e.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT })
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.url + "/oauth2/token"}
	jwtTok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o, oSecret := e.client(nil) // opaque tokens, for comparison
	opaqueTok, err := (&clientcredentials.Config{ClientID: o.ID, ClientSecret: oSecret, TokenURL: e.url + "/oauth2/token"}).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustf(t, e.introspect(jwtTok.AccessToken)["active"] == true, "JWT inactive before the client was deleted")
	mustf(t, e.introspect(opaqueTok.AccessToken)["active"] == true, "opaque token inactive before the client was deleted")

	for _, id := range []string{c.ID, o.ID} {
		if err := e.oauth.DeleteClient(ctx, id, actor); err != nil {
			t.Fatal(err)
		}
	}
	mustf(t, e.introspect(opaqueTok.AccessToken)["active"] == false, "opaque token of a deleted client still active")
	if in := e.introspect(jwtTok.AccessToken); in["active"] != false {
		t.Errorf("JWT access token of a deleted client is still introspected as active: %v", in)
	}
}
