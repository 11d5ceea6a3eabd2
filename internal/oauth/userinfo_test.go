package oauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestUserinfoAccessTokenMethods proves how userinfo takes its access
// token: in the Authorization header (RFC 6750 §2.1) or, on a POST, as
// access_token in a form body (RFC 6750 §2.2; OIDC Core §5.3.1), never in
// the query (§2.3) and by one method only (§2). A request without a token
// gets a challenge naming no error (§3.1); a bad token sent gets
// invalid_token.
func TestUserinfoAccessTokenMethods(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	conf.Scopes = []string{"openid", "email"}
	q := e.authorize(e.browser(), conf.AuthCodeURL("s"), true)
	tok, err := conf.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	good := tok.AccessToken
	bad := flipLast(good)
	inBody := func(tok string) string { return url.Values{"access_token": {tok}}.Encode() }
	const (
		form      = "application/x-www-form-urlencoded"
		noToken   = `Bearer realm="jeton"`
		badToken  = `Bearer realm="jeton", error="invalid_token"`
		badMethod = `Bearer realm="jeton", error="invalid_request"`
	)
	type answer struct {
		Status    int
		Challenge string
		Sub       any
	}
	ok := answer{Status: http.StatusOK, Sub: e.alice.ID}
	for _, tt := range []struct {
		name          string
		method, query string
		authorization string
		contentType   string
		body          string
		want          answer
	}{
		{name: "GET without a token", method: "GET", want: answer{Status: 401, Challenge: noToken}},
		{name: "POST without a token", method: "POST", want: answer{Status: 401, Challenge: noToken}},
		{name: "POST with an empty form", method: "POST", contentType: form, want: answer{Status: 401, Challenge: noToken}},
		{name: "another scheme", method: "GET", authorization: "Basic YTpi", want: answer{Status: 401, Challenge: noToken}},
		{name: "GET with the header", method: "GET", authorization: "Bearer " + good, want: ok},
		{name: "POST with the header", method: "POST", authorization: "Bearer " + good, want: ok},
		{name: "POST with the form body", method: "POST", contentType: form, body: inBody(good), want: ok},
		{name: "form body with a charset", method: "POST", contentType: form + "; charset=UTF-8", body: inBody(good), want: ok},
		{name: "form body and another scheme", method: "POST", authorization: "Basic YTpi", contentType: form, body: inBody(good), want: ok},
		{name: "bad token in the header", method: "GET", authorization: "Bearer " + bad, want: answer{Status: 401, Challenge: badToken}},
		{name: "empty Bearer header", method: "GET", authorization: "Bearer ", want: answer{Status: 401, Challenge: badToken}},
		{name: "bad token in the form body", method: "POST", contentType: form, body: inBody(bad), want: answer{Status: 401, Challenge: badToken}},
		{name: "header and form body", method: "POST", authorization: "Bearer " + good, contentType: form, body: inBody(good),
			want: answer{Status: 400, Challenge: badMethod}},
		{name: "token in the query", method: "GET", query: inBody(good), want: answer{Status: 400, Challenge: badMethod}},
		{name: "token in the query and the header", method: "GET", query: inBody(good), authorization: "Bearer " + good,
			want: answer{Status: 400, Challenge: badMethod}},
		{name: "form body on a GET", method: "GET", contentType: form, body: inBody(good), want: answer{Status: 401, Challenge: noToken}},
		{name: "body that is not a form", method: "POST", contentType: "text/plain", body: inBody(good), want: answer{Status: 401, Challenge: noToken}},
		{name: "repeated access_token", method: "POST", contentType: form, body: inBody(good) + "&" + inBody(good),
			want: answer{Status: 400, Challenge: badMethod}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := e.url + "/oauth2/userinfo"
			if tt.query != "" {
				u += "?" + tt.query
			}
			req, err := http.NewRequest(tt.method, u, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatal(err)
			}
			got := answer{Status: resp.StatusCode, Challenge: resp.Header.Get("WWW-Authenticate"), Sub: m["sub"]}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("(-got +want):\n%s\nbody %v", diff, m)
			}
		})
	}
}
