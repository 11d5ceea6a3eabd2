package oauth_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
)

// TestClusterOnPostgres runs two servers on one PostgreSQL store and proves
// that OAuth state is shared and that revocations on one node reach the
// other node's verify cache: a client revoking its access token, and a
// refresh token reuse revoking a whole grant.
func TestClusterOnPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t) // skips without JETON_TEST_POSTGRES_DSN
	a := newEnv(t, envOptions{dsn: dsn})
	b := newEnv(t, envOptions{dsn: dsn})
	c, secret := a.client(nil)

	// waitInactive polls node b until tok is inactive there, and returns
	// how long that took.
	waitInactive := func(what, tok string) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 5*time.Second {
			if b.introspect(tok)["active"] == false {
				return time.Since(start)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("%s: still active on the other node after 5s", what)
		return 0
	}

	// A client-credentials token issued by a, known to b, revoked at a.
	status, m, _ := a.postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, c.ID, secret)
	mustf(t, status == 200, "token from node a: %d %v", status, m)
	tok := m["access_token"].(string)
	mustf(t, b.introspect(tok)["active"] == true, "node b does not know node a's token")
	status, _, _ = a.postForm("/oauth2/revoke", url.Values{"token": {tok}}, c.ID, secret)
	mustf(t, status == 200, "revoke at node a: %d", status)
	t.Logf("access token revocation reached node b in %v", waitInactive("revoked access token", tok))

	// A user grant made through node a's pages, refreshed at node b; the
	// reuse of the old refresh token at node a revokes the family, and
	// node b stops accepting its access token.
	conf := codeConfig(a.url, c, secret)
	q := a.authorize(a.browser(), conf.AuthCodeURL("s"), true)
	first, err := conf.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	status, m, _ = b.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, c.ID, secret)
	mustf(t, status == 200, "refresh at node b: %d %v", status, m)
	second := m["access_token"].(string)
	mustf(t, b.introspect(second)["active"] == true, "node b's new access token is inactive")
	status, m, _ = a.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, c.ID, secret)
	mustf(t, status == 400 && m["error"] == "invalid_grant", "reuse at node a: %d %v", status, m)
	t.Logf("grant revocation reached node b in %v", waitInactive("access token of a revoked grant", second))
}

// TestClientAndKeyChangesReachEveryNode proves that a change of a client
// or of the signing keys on one node takes effect on the other within
// moments, through the store's change notices, and not at the end of the
// other node's cache lifetime (an hour here) or key reload (none here).
func TestClientAndKeyChangesReachEveryNode(t *testing.T) {
	dsn := storetest.PostgresDSN(t) // skips without JETON_TEST_POSTGRES_DSN
	a := newEnv(t, envOptions{dsn: dsn, clientTTL: time.Hour})
	b := newEnv(t, envOptions{dsn: dsn, clientTTL: time.Hour})
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(5 * time.Millisecond) {
			if ok() {
				return
			}
		}
		t.Fatalf("%s: not seen on the other node after 10s", what)
	}

	// A client secret reported as leaked at a stops working at b, which
	// had the client cached.
	c, secret := a.client(nil)
	cc := url.Values{"grant_type": {"client_credentials"}}
	status, m, _ := b.postForm("/oauth2/token", cc, c.ID, secret)
	mustf(t, status == 200, "token at node b before the report: %d %v", status, m)
	resp, err := a.Client.Post(a.url+"/v1/leaks", "application/json", strings.NewReader(`{"tokens":["`+secret+`"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustf(t, resp.StatusCode == 202, "leak report at node a: %d", resp.StatusCode)
	eventually("a leaked client secret", func() bool {
		status, _, _ := b.postForm("/oauth2/token", cc, c.ID, secret)
		return status == 401
	})

	// The first RS256 token made at a creates the RS256 key, which signs
	// at once: b publishes it and its key ring verifies the token. (Each
	// test node is its own issuer, so b's introspection would not.)
	rs, rsSecret := a.client(func(p *oauth.ClientParams) { p.TokenFormat, p.SigningAlg = store.FormatJWT, "RS256" })
	status, m, _ = a.postForm("/oauth2/token", cc, rs.ID, rsSecret)
	mustf(t, status == 200, "RS256 token at node a: %d %v", status, m)
	tok := m["access_token"].(string)
	eventually("a signing key made on first use", func() bool {
		_, jwks := b.discovery()
		_, err := b.keys.Verify(tok, "at+jwt")
		return len(jwks.Key(kidOf(t, tok))) == 1 && err == nil
	})
}
