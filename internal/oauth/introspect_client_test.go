package oauth_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// TestIntrospectionAsClient proves that an OAuth client can introspect
// the tokens issued to it with its own credentials (RFC 7662 §2.1), HTTP
// Basic or in the form, and gets the answer a Bearer caller gets; that any
// other token, an API key included, is inactive to it; and that public
// clients, wrong secrets and mixed methods are refused without an answer
// about the token.
func TestIntrospectionAsClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()

	app, appSecret := e.client(nil)
	cc := clientcredentials.Config{ClientID: app.ID, ClientSecret: appSecret, TokenURL: e.url + "/oauth2/token", Scopes: []string{"repos:read"}}
	opaque, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	web, webSecret, user, _ := e.userJWT()
	key, err := e.tokens.CreateToken(ctx, tokens.CreateParams{API: e.api.ID, Settings: tokens.Settings{Scopes: []string{"repos:read"}}}, actor)
	if err != nil {
		t.Fatal(err)
	}
	post, postSecret := e.client(func(p *oauth.ClientParams) { p.AuthMethod = oauth.AuthSecretPost })
	postTok, err := (&clientcredentials.Config{ClientID: post.ID, ClientSecret: postSecret, TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A client that lists no API gets its tokens for the built-in one.
	noAPI, noAPISecret := e.client(func(p *oauth.ClientParams) { p.APIs, p.Scopes = nil, []string{"openid", "profile"} })
	noAPITok, err := (&clientcredentials.Config{ClientID: noAPI.ID, ClientSecret: noAPISecret, TokenURL: e.url + "/oauth2/token"}).Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	basic := func(c store.Client, secret string) func(url.Values) (string, string) {
		return func(url.Values) (string, string) { return c.ID, secret }
	}
	inForm := func(c store.Client, secret string) func(url.Values) (string, string) {
		return func(f url.Values) (string, string) {
			f.Set("client_id", c.ID)
			f.Set("client_secret", secret)
			return "", ""
		}
	}
	for _, tt := range []struct {
		name   string
		tok    string
		as     func(url.Values) (string, string)
		active bool
	}{
		{"its opaque access token", opaque.AccessToken, basic(app, appSecret), true},
		{"its JWT access token", user.AccessToken, basic(web, webSecret), true},
		{"its refresh token", user.RefreshToken, basic(web, webSecret), true},
		{"its access token, client_secret_post", postTok.AccessToken, inForm(post, postSecret), true},
		{"its token for the built-in API", noAPITok.AccessToken, basic(noAPI, noAPISecret), true},
		{"another client's opaque access token", opaque.AccessToken, basic(web, webSecret), false},
		{"another client's JWT access token", user.AccessToken, basic(app, appSecret), false},
		{"another client's refresh token", user.RefreshToken, basic(app, appSecret), false},
		{"an API key", key.Secret, basic(app, appSecret), false},
		{"a wrong token", flipLast(opaque.AccessToken), basic(app, appSecret), false},
	} {
		f := url.Values{"token": {tt.tok}}
		u, p := tt.as(f)
		status, got, _ := e.postForm("/oauth2/introspect", f, u, p)
		if !tt.active {
			mustf(t, status == 200 && len(got) == 1 && got["active"] == false, "%s: %d %v, want inactive", tt.name, status, got)
			continue
		}
		want := e.introspect(tt.tok) // as the admin, by Bearer
		mustf(t, status == 200 && got["active"] == true && got["sub"] == want["sub"] && got["scope"] == want["scope"] &&
			got["aud"] == want["aud"] && got["client_id"] == want["client_id"] && got["exp"] == want["exp"],
			"%s: %d %v, want %v", tt.name, status, got, want)
	}

	public, _ := e.client(func(p *oauth.ClientParams) { p.Type = store.ClientPublic })
	for _, tt := range []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		code       string
	}{
		{"wrong secret", url.Values{}, app.ID, flipLast(appSecret), 401, "invalid_client"},
		{"secret of another client", url.Values{}, app.ID, webSecret, 401, "invalid_client"},
		{"a public client", url.Values{"client_id": {public.ID}}, "", "", 401, "invalid_client"},
		{"two methods", url.Values{"client_id": {post.ID}, "client_secret": {postSecret}}, app.ID, appSecret, 400, "invalid_request"},
		{"no credentials at all", url.Values{}, "", "", 401, "invalid_token"},
	} {
		tt.form.Set("token", opaque.AccessToken)
		status, got, h := e.postForm("/oauth2/introspect", tt.form, tt.user, tt.pass)
		mustf(t, status == tt.status && got["error"] == tt.code && got["active"] == nil,
			"%s: %d %v, want %d %s", tt.name, status, got, tt.status, tt.code)
		switch {
		case tt.status == 401 && tt.user != "":
			mustf(t, strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic"), "%s: WWW-Authenticate %q", tt.name, h.Get("WWW-Authenticate"))
		case tt.code == "invalid_token":
			mustf(t, strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer"), "%s: WWW-Authenticate %q", tt.name, h.Get("WWW-Authenticate"))
		}
	}

	// The metadata says so (RFC 8414 §2).
	md, _ := e.discovery()
	methods, _ := md["introspection_endpoint_auth_methods_supported"].([]any)
	for _, m := range []string{"bearer", oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthPrivateKeyJWT} {
		mustf(t, slices.Contains(methods, any(m)), "introspection_endpoint_auth_methods_supported %v lacks %s", methods, m)
	}
}
