package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

// sessionEnds are the ways alice's sessions end: each ends them in e.
var sessionEnds = []struct {
	name string
	end  func(t *testing.T, e *env)
}{
	{"password reset", func(t *testing.T, e *env) {
		pw := "a brand new password"
		if _, err := e.users.Update(context.Background(), e.alice.ID, users.UpdateParams{Password: &pw}, tokens.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
		e.password = pw
	}},
	{"disabled, then enabled again", func(t *testing.T, e *env) {
		for _, off := range []bool{true, false} {
			if _, err := e.users.Update(context.Background(), e.alice.ID, users.UpdateParams{Disabled: &off}, tokens.Actor{ID: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"signed out everywhere", func(t *testing.T, e *env) {
		if err := e.users.EndSessions(context.Background(), e.alice.ID, tokens.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}},
}

// TestSessionsEndWithTheCredential proves that a browser signed in before a
// password reset, a disable or an explicit "sign out everywhere" is signed
// out by it. A session is a sealed cookie the server does not store, so
// without this a stolen session would keep authorizing clients (prompt=none
// included) until it expired, though the reset revoked every grant.
func TestSessionsEndWithTheCredential(t *testing.T) {
	t.Parallel()
	for _, tt := range sessionEnds {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c, secret := e.client(nil)
			conf := codeConfig(e.url, c, secret)
			thief, other := e.browser(), e.browser()
			e.authorize(thief, conf.AuthCodeURL("s"), true)
			e.authorize(other, conf.AuthCodeURL("s"), true)
			// Both sessions work silently before.
			for _, b := range []*browser{thief, other} {
				p := b.do("GET", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")), nil)
				mustf(t, p.status == http.StatusSeeOther && strings.Contains(p.location, "code="), "before: %d %s", p.status, p.location)
			}
			e.clock.Advance(time.Second)
			tt.end(t, e)
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

// TestCodesEndWithTheSession proves that an authorization code, or a device
// code the user approved, that was issued before a password reset, a
// disable or a "sign out everywhere" yields no tokens when redeemed after
// it. The end revokes the grants the user had, but a code's grant is made
// only when the code is redeemed, so without this a code stolen with the
// credential would outlive the reset. A code from a sign-in after the end
// still works.
func TestCodesEndWithTheSession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range sessionEnds {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c, secret := e.client(nil)
			conf := codeConfig(e.url, c, secret)
			code := e.authorize(e.browser(), conf.AuthCodeURL("s"), true).Get("code")
			dc, dconf := e.deviceClient(nil)
			da, err := dconf.DeviceAuth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e.approveDevice(e.browser(), da.VerificationURIComplete)

			e.clock.Advance(time.Second)
			tt.end(t, e)
			e.clock.Advance(time.Second)

			_, err = conf.Exchange(ctx, code)
			mustf(t, isOAuthErr(err, "invalid_grant"), "authorization code from before the end: %v, want invalid_grant", err)
			mustf(t, e.pollDevice(dc, da.DeviceCode) == "invalid_grant", "device code approved before the end was not invalid_grant")
			grants, err := e.db.ListGrants(ctx, e.alice.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range grants {
				mustf(t, !g.RevokedAt.IsZero(), "grant %s of a code from before the end is live", g.ID)
			}

			// Signed in again, the user's new codes work.
			if _, err := conf.Exchange(ctx, e.authorize(e.browser(), conf.AuthCodeURL("s"), true).Get("code")); err != nil {
				t.Errorf("authorization code from a sign-in after the end: %v", err)
			}
			da, err = dconf.DeviceAuth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e.approveDevice(e.browser(), da.VerificationURIComplete)
			mustf(t, e.pollDevice(dc, da.DeviceCode) == "", "device code approved after the end was refused")
		})
	}
}

// TestMaxAge proves max_age (OIDC Core §3.1.2.1) against a session an hour
// old: an older demand sends the user to sign in once, after which the
// client gets its code (max_age=0 included: the sign-in satisfies it,
// though time passes after it); a younger one does not, however large,
// even too large to be a time.Duration of seconds or an int64.
func TestMaxAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	for _, tt := range []struct {
		maxAge    string
		wantLogin bool
		wantError string // the error sent back to the client, "" for a code
	}{
		{maxAge: "0", wantLogin: true},
		{maxAge: "60", wantLogin: true},
		{maxAge: "7200"},
		{maxAge: "9223372037"}, // × time.Second overflows int64
		{maxAge: "99999999999999999999999"},
		{maxAge: "-1", wantError: "invalid_request"},
		{maxAge: "+60", wantError: "invalid_request"},
		{maxAge: "sixty", wantError: "invalid_request"},
	} {
		// Not parallel: the subtests share the env's clock.
		t.Run(tt.maxAge, func(t *testing.T) {
			b := e.browser()
			e.authorize(b, conf.AuthCodeURL("s"), true) // signed in, consented
			e.clock.Advance(time.Hour)
			p := b.do("GET", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("max_age", tt.maxAge)), nil)
			gotLogin := strings.Contains(p.body, `name="password"`)
			if gotLogin != tt.wantLogin {
				t.Fatalf("login page: %v, want %v (%d %s)", gotLogin, tt.wantLogin, p.status, p.location)
			}
			if gotLogin {
				f := p.formValues()
				f.Set("username", "alice")
				f.Set("password", e.password)
				p = b.do("POST", "/login", f)
				mustf(t, p.status == http.StatusSeeOther, "login: %d", p.status)
				// The user's browser follows the redirect a moment later.
				e.clock.Advance(time.Second)
				p = b.do("GET", p.location, nil)
			}
			mustf(t, p.status == http.StatusSeeOther, "not redirected to the client: %d %s", p.status, truncateBody(p.body))
			u, err := url.Parse(p.location)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Query().Get("error"); got != tt.wantError {
				t.Fatalf("error = %q, want %q (%s)", got, tt.wantError, p.location)
			}
			if tt.wantError == "" {
				mustf(t, u.Query().Get("code") != "", "no code: %s", p.location)
			}
		})
	}
}

// TestSignInRacingAnEndIsEnded proves that a sign-in that was under way
// while alice's sessions were ended does not survive the end. Such a
// sign-in read alice before the end committed, so it checked the old
// password, and it began after the end's stamp, which is taken before the
// commit: the time check keeps it. Here the end is written straight to the
// store with a stamp before the sign-in began, as a slow commit leaves it.
func TestSignInRacingAnEndIsEnded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	b := e.browser()
	beforeSignIn := e.clock.Now()
	e.clock.Advance(time.Millisecond)
	e.authorize(b, conf.AuthCodeURL("s"), true)
	silent := func() *url.URL {
		p := b.do("GET", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")), nil)
		u, _ := url.Parse(p.location)
		mustf(t, p.status == http.StatusSeeOther && u != nil, "prompt=none: %d %q", p.status, p.location)
		return u
	}
	mustf(t, silent().Query().Get("code") != "", "the session does not work before the end")
	e.clock.Advance(time.Second)
	if _, err := e.db.UpdateUser(context.Background(), e.alice.ID, func(u *store.User) error {
		u.SessionsEndedAt = beforeSignIn
		return nil
	}, store.AuditEvent{Time: e.clock.Now(), Actor: "test", Action: "user.end_sessions", Target: e.alice.ID}); err != nil {
		t.Fatal(err)
	}
	mustf(t, silent().Query().Get("error") == "login_required", "the racing sign-in survived the end of alice's sessions")
}
