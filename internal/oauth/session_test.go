package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

// TestSessionsEndWithTheCredential proves that a browser signed in before a
// password reset, a disable or an explicit "sign out everywhere" is signed
// out by it. A session is a sealed cookie the server does not store, so
// without this a stolen session would keep authorizing clients (prompt=none
// included) until it expired, though the reset revoked every grant.
func TestSessionsEndWithTheCredential(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	by := tokens.Actor{ID: "test"}
	for _, tt := range []struct {
		name string
		end  func(e *env) // what ends alice's sessions
	}{
		{"password reset", func(e *env) {
			pw := "a brand new password"
			if _, err := e.users.Update(ctx, e.alice.ID, users.UpdateParams{Password: &pw}, by); err != nil {
				t.Fatal(err)
			}
			e.password = pw
		}},
		{"disabled, then enabled again", func(e *env) {
			for _, off := range []bool{true, false} {
				if _, err := e.users.Update(ctx, e.alice.ID, users.UpdateParams{Disabled: &off}, by); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"signed out everywhere", func(e *env) {
			if err := e.users.EndSessions(ctx, e.alice.ID, by); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c, secret := e.client(nil)
			conf := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://app.example.com/callback",
				Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token"},
				Scopes:   []string{"repos:read"}}
			thief, other := e.browser(), e.browser()
			e.authorize(thief, conf.AuthCodeURL("s"), true)
			e.authorize(other, conf.AuthCodeURL("s"), true)
			// Both sessions work silently before.
			for _, b := range []*browser{thief, other} {
				p := b.do("GET", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")), nil)
				mustf(t, p.status == http.StatusSeeOther && strings.Contains(p.location, "code="), "before: %d %s", p.status, p.location)
			}
			e.clock.Advance(time.Second)
			tt.end(e)
			for _, b := range []*browser{thief, other} {
				p := b.do("GET", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")), nil)
				u, _ := url.Parse(p.location)
				mustf(t, p.status == http.StatusSeeOther && u != nil && u.Query().Get("error") == "login_required",
					"prompt=none after: %d %s", p.status, p.location)
				p = b.do("GET", "/device", nil)
				mustf(t, p.status == http.StatusOK && strings.Contains(p.body, `name="password"`), "device page after: %d, not the login page", p.status)
			}
			// Signing in again works. (A session begun in the same
			// millisecond as the reset would have ended with it: the
			// cookie's time has millisecond precision, and a tie goes to
			// ending it.)
			e.clock.Advance(time.Millisecond)
			e.authorize(other, conf.AuthCodeURL("s"), true)
			p := other.do("GET", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")), nil)
			mustf(t, p.status == http.StatusSeeOther && strings.Contains(p.location, "code="), "after signing in again: %d %s", p.status, p.location)
		})
	}
}
