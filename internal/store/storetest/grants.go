package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// grantTests cover authorization codes, device codes, grants and refresh tokens.
var grantTests = []storeTest{
	{"AuthCodeRedeem", testAuthCodeRedeem},
	{"AuthCodeRedeemedOnce", testAuthCodeRedeemedOnce},
	{"RotateRefreshToken", testRotateRefreshToken},
	{"RefreshTokenRotatedOnce", testRefreshRotatedOnce},
	{"RevokedGrantIssuesNothing", testRevokedGrantIssuesNothing},
	{"RevokeGrant", testRevokeGrant},
	{"RevokeGrantRacesIssue", testRevokeGrantRacesIssue},
	{"DeviceCodeLifecycle", testDeviceCodeLifecycle},
	{"UpdateDeviceCodeFailureChangesNothing", testUpdateDeviceCodeFailure},
	{"PurgeGrants", testPurgeGrants},
	{"PurgeSpentGrants", testPurgeSpentGrants},
	{"GrantTimeZones", testGrantTimeZones},
}

var byHashBytes = cmpopts.SortSlices(func(x, y tokenfmt.Hash) bool { return string(x[:]) < string(y[:]) })

func mustCreateGrantUser(t *testing.T, s store.Store, username string) store.User {
	t.Helper()
	u := store.User{ID: ids.New(ids.User, base), Username: username, Email: username + "@example.com",
		PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", CreatedAt: base, UpdatedAt: base}
	if err := s.CreateUser(ctx, u, ev("user.create", u.ID)); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return u
}

// authCodeFixture returns an authorization code of user for client c,
// created at base+offset and valid for a minute.
func authCodeFixture(t *testing.T, c store.Client, userID string, offset time.Duration) store.AuthCode {
	at := base.Add(offset)
	return store.AuthCode{
		Hash: secretHash(t, tokenfmt.PrefixAuthCode), ClientID: c.ID, UserID: userID, RedirectURI: c.RedirectURIs[0],
		APIID: c.APIs[0], Scopes: []string{"openid", "repos:read"},
		Challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", ChallengeMethod: "S256", Nonce: "n-0S6_WzA2Mj",
		AuthTime: at.Add(-time.Minute), CreatedAt: at, ExpiresAt: at.Add(time.Minute),
	}
}

// deviceCodeFixture returns a pending device code of client c, created at
// base and valid for ten minutes.
func deviceCodeFixture(t *testing.T, c store.Client, userCode string) store.DeviceCode {
	return store.DeviceCode{
		Hash: secretHash(t, tokenfmt.PrefixDeviceCode), UserCode: userCode, ClientID: c.ID, APIID: c.APIs[0],
		Scopes: []string{"repos:read"}, CreatedAt: base, ExpiresAt: base.Add(10 * time.Minute), Interval: 5 * time.Second,
		Status: store.DevicePending,
	}
}

// grantFixture is the grant a client passes to RedeemAuthCode.
func grantFixture(c store.Client, at time.Time) store.Grant {
	return store.Grant{ID: ids.New(ids.Grant, at), ClientID: c.ID, CreatedAt: at}
}

func accessFixture(t *testing.T, g store.Grant, at time.Time) (store.Token, tokenfmt.Hash) {
	return store.Token{
		ID: ids.New(ids.Token, at), APIID: g.APIID, Name: "oauth", Subject: g.Subject, Scopes: g.Scopes, Hint: "jta_…wxyz",
		CreatedAt: at, UpdatedAt: at, ExpiresAt: at.Add(time.Hour), ClientID: g.ClientID, GrantID: g.ID,
	}, secretHash(t, tokenfmt.PrefixAccess)
}

func refreshFixture(t *testing.T, grantID string, at time.Time) store.RefreshToken {
	return store.RefreshToken{Hash: secretHash(t, tokenfmt.PrefixRefresh), GrantID: grantID, CreatedAt: at, ExpiresAt: at.Add(24 * time.Hour)}
}

// mustRedeem stores an authorization code of user for c, created at
// base+offset, redeems it at once and returns the code and the grant.
func mustRedeem(t *testing.T, s store.Store, c store.Client, userID string, offset time.Duration) (store.AuthCode, store.Grant) {
	t.Helper()
	code := authCodeFixture(t, c, userID, offset)
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	g := grantFixture(c, code.CreatedAt)
	if _, err := s.RedeemAuthCode(ctx, code.Hash, g, code.CreatedAt, ev("grant.create", g.ID)); err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	g, err := s.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatalf("GetGrant: %v", err)
	}
	return code, g
}

// issued is a grant with the tokens IssueGrantTokens stored for it.
type issued struct {
	grant      store.Grant
	access     store.Token
	accessHash tokenfmt.Hash
	refresh    store.RefreshToken
}

// mustGrant redeems a code of user for c created at base+offset (see
// mustRedeem) and issues tokens from its grant.
func mustGrant(t *testing.T, s store.Store, c store.Client, userID string, offset time.Duration) issued {
	t.Helper()
	_, g := mustRedeem(t, s, c, userID, offset)
	return mustIssue(t, s, g)
}

// mustIssue stores an access token and a refresh token of g, created at
// g.CreatedAt.
func mustIssue(t *testing.T, s store.Store, g store.Grant) issued {
	t.Helper()
	access, h := accessFixture(t, g, g.CreatedAt)
	refresh := refreshFixture(t, g.ID, g.CreatedAt)
	if err := s.IssueGrantTokens(ctx, g.ID, &access, h, &refresh); err != nil {
		t.Fatalf("IssueGrantTokens: %v", err)
	}
	return issued{grant: g, access: access, accessHash: h, refresh: refresh}
}

// grantSetup is an API, a client of it and a user.
type grantSetup struct {
	api    store.API
	client store.Client
	user   store.User
}

func mustSetUpGrants(t *testing.T, s store.Store) grantSetup {
	t.Helper()
	a := mustCreateAPI(t, s, "acme")
	return grantSetup{api: a, client: mustCreateClient(t, s, "app", a.ID, nil), user: mustCreateGrantUser(t, s, "alice")}
}

func testAuthCodeRedeem(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	code := authCodeFixture(t, e.client, e.user.ID, 0)
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	if err := s.CreateAuthCode(ctx, code); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateAuthCode(dup) = %v, want ErrAlreadyExists", err)
	}
	now := base.Add(30 * time.Second)
	g := grantFixture(e.client, now)
	n := len(audit(t, s))
	got, err := s.RedeemAuthCode(ctx, code.Hash, g, now, ev("grant.create", g.ID))
	if err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	wantCode := code
	wantCode.UsedAt, wantCode.GrantID = now, g.ID
	if diff := cmp.Diff(got, wantCode); diff != "" {
		t.Errorf("redeemed code (-got +want):\n%s", diff)
	}
	// The grant's user, subject, audience, scopes and auth time come from
	// the code.
	wantGrant := g
	wantGrant.UserID, wantGrant.Subject, wantGrant.APIID = e.user.ID, e.user.ID, e.api.ID
	wantGrant.Scopes, wantGrant.AuthTime = code.Scopes, code.AuthTime
	stored, err := s.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatalf("GetGrant: %v", err)
	}
	if diff := cmp.Diff(stored, wantGrant); diff != "" {
		t.Errorf("stored grant (-got +want):\n%s", diff)
	}
	list, err := s.ListGrants(ctx, e.user.ID)
	if err != nil {
		t.Fatalf("ListGrants: %v", err)
	}
	if diff := cmp.Diff(list, []store.Grant{wantGrant}); diff != "" {
		t.Errorf("ListGrants (-got +want):\n%s", diff)
	}
	evs := audit(t, s)
	if len(evs) != n+1 || evs[n].Action != "grant.create" || evs[n].Target != g.ID {
		t.Errorf("redemption audit: %d new events, want one grant.create", len(evs)-n)
	}

	// A second redemption returns the code with the first grant, and
	// stores nothing.
	second := grantFixture(e.client, now)
	again, err := s.RedeemAuthCode(ctx, code.Hash, second, now.Add(time.Second), ev("grant.create", second.ID))
	if !errors.Is(err, store.ErrUsed) {
		t.Fatalf("second RedeemAuthCode = %v, want ErrUsed", err)
	}
	if diff := cmp.Diff(again, wantCode); diff != "" {
		t.Errorf("code returned with ErrUsed (-got +want):\n%s", diff)
	}
	if _, err := s.GetGrant(ctx, second.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant of a refused redemption was stored: %v", err)
	}
	// Still ErrUsed once expired: late reuse is detected too.
	if _, err := s.RedeemAuthCode(ctx, code.Hash, grantFixture(e.client, now), code.ExpiresAt.Add(time.Hour), store.AuditEvent{}); !errors.Is(err, store.ErrUsed) {
		t.Errorf("RedeemAuthCode(used, expired) = %v, want ErrUsed", err)
	}

	// Expired at exactly ExpiresAt: not found, and nothing changes.
	late := authCodeFixture(t, e.client, e.user.ID, time.Second)
	if err := s.CreateAuthCode(ctx, late); err != nil {
		t.Fatal(err)
	}
	lateGrant := grantFixture(e.client, late.ExpiresAt)
	if _, err := s.RedeemAuthCode(ctx, late.Hash, lateGrant, late.ExpiresAt, ev("grant.create", lateGrant.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemAuthCode at ExpiresAt = %v, want ErrNotFound", err)
	}
	if _, err := s.GetGrant(ctx, lateGrant.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant of an expired code was stored: %v", err)
	}
	if _, err := s.RedeemAuthCode(ctx, late.Hash, lateGrant, late.ExpiresAt.Add(-time.Millisecond), ev("grant.create", lateGrant.ID)); err != nil {
		t.Errorf("RedeemAuthCode a millisecond before ExpiresAt = %v", err)
	}
	if _, err := s.RedeemAuthCode(ctx, tokenfmt.Hash{1}, grantFixture(e.client, now), now, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemAuthCode(unknown) = %v, want ErrNotFound", err)
	}
	if got := len(audit(t, s)); got != n+2 {
		t.Errorf("%d audit events after the redemptions, want %d (two grants)", got, n+2)
	}
}

func testAuthCodeRedeemedOnce(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	code := authCodeFixture(t, e.client, e.user.ID, 0)
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	n := len(audit(t, s))
	const attempts = 100
	grants := make([]string, attempts)
	codes := make([]store.AuthCode, attempts)
	errs := make([]error, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		g := grantFixture(e.client, base)
		grants[i] = g.ID
		wg.Go(func() {
			codes[i], errs[i] = s.RedeemAuthCode(ctx, code.Hash, g, base, ev("grant.create", g.ID))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("code redeemed twice: attempts %d and %d", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrUsed):
			t.Errorf("attempt %d: %v, want nil or ErrUsed", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no attempt redeemed the code")
	}
	for i, err := range errs {
		if errors.Is(err, store.ErrUsed) && codes[i].GrantID != grants[winner] {
			t.Errorf("attempt %d: ErrUsed with GrantID %q, want the winner's %q", i, codes[i].GrantID, grants[winner])
		}
	}
	list, err := s.ListGrants(ctx, e.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != grants[winner] {
		t.Errorf("%d grants stored, want only the winner's", len(list))
	}
	if got := len(audit(t, s)); got != n+1 {
		t.Errorf("%d audit events for one redemption", got-n)
	}
}

func testRotateRefreshToken(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	g := mustGrant(t, s, e.client, e.user.ID, 0)
	rt, grant, err := s.GetRefreshToken(ctx, g.refresh.Hash)
	if err != nil {
		t.Fatalf("GetRefreshToken: %v", err)
	}
	if diff := cmp.Diff(rt, g.refresh); diff != "" {
		t.Errorf("GetRefreshToken token (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(grant, g.grant); diff != "" {
		t.Errorf("GetRefreshToken grant (-got +want):\n%s", diff)
	}
	if _, _, err := s.GetRefreshToken(ctx, tokenfmt.Hash{1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRefreshToken(unknown) = %v, want ErrNotFound", err)
	}
	n := len(audit(t, s))

	// Expired at exactly ExpiresAt: not found, and nothing changes.
	expiry := g.refresh.ExpiresAt
	next := refreshFixture(t, g.grant.ID, expiry)
	if _, err := s.RotateRefreshToken(ctx, g.refresh.Hash, next, nil, tokenfmt.Hash{}, nil, time.Time{}, expiry); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateRefreshToken at ExpiresAt = %v, want ErrNotFound", err)
	}
	if _, _, err := s.GetRefreshToken(ctx, next.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("successor of an expired token was stored: %v", err)
	}
	if _, err := s.RotateRefreshToken(ctx, tokenfmt.Hash{1}, next, nil, tokenfmt.Hash{}, nil, time.Time{}, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateRefreshToken(unknown) = %v, want ErrNotFound", err)
	}

	// Used a millisecond before expiry, with an access token and a retry
	// blob.
	now := expiry.Add(-time.Millisecond)
	access, ah := accessFixture(t, g.grant, now)
	retry, retryUntil := []byte("sealed response"), now.Add(30*time.Second)
	used, err := s.RotateRefreshToken(ctx, g.refresh.Hash, next, &access, ah, retry, retryUntil, now)
	if err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	want := g.refresh
	want.UsedAt, want.Retry, want.RetryUntil = now, retry, retryUntil
	if diff := cmp.Diff(used, want); diff != "" {
		t.Errorf("used token (-got +want):\n%s", diff)
	}
	if stored, _, err := s.GetRefreshToken(ctx, next.Hash); err != nil || !cmp.Equal(stored, next) {
		t.Errorf("successor: %v (-got +want):\n%s", err, cmp.Diff(stored, next))
	}
	if stored, _, err := s.LookupToken(ctx, ah); err != nil || !cmp.Equal(stored, access) {
		t.Errorf("access token: %v (-got +want):\n%s", err, cmp.Diff(stored, access))
	}

	// Used again: the stored token with its retry blob, and nothing changes,
	// even after it expired.
	for _, at := range []time.Time{now, expiry.Add(time.Hour)} {
		other := refreshFixture(t, g.grant.ID, at)
		again, err := s.RotateRefreshToken(ctx, g.refresh.Hash, other, nil, tokenfmt.Hash{}, []byte("other"), at.Add(time.Minute), at)
		if !errors.Is(err, store.ErrUsed) {
			t.Fatalf("RotateRefreshToken(used) at %v = %v, want ErrUsed", at, err)
		}
		if diff := cmp.Diff(again, want); diff != "" {
			t.Errorf("token returned with ErrUsed (-got +want):\n%s", diff)
		}
		if _, _, err := s.GetRefreshToken(ctx, other.Hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("successor of a reused token was stored: %v", err)
		}
	}
	// Without retry blob and access token.
	last := refreshFixture(t, g.grant.ID, now)
	used, err = s.RotateRefreshToken(ctx, next.Hash, last, nil, tokenfmt.Hash{}, nil, time.Time{}, now)
	if err != nil {
		t.Fatalf("RotateRefreshToken(no retry): %v", err)
	}
	if used.Retry != nil || !used.RetryUntil.IsZero() || !used.UsedAt.Equal(now) {
		t.Errorf("used token without retry: %+v", used)
	}
	if again, err := s.RotateRefreshToken(ctx, next.Hash, refreshFixture(t, g.grant.ID, now), nil, tokenfmt.Hash{}, nil, time.Time{}, now); !errors.Is(err, store.ErrUsed) || again.Retry != nil {
		t.Errorf("RotateRefreshToken(used, no retry) = %v with retry %q, want ErrUsed and none", err, again.Retry)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("refresh rotations appended %d audit events, want none", got-n)
	}
}

func testRefreshRotatedOnce(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	g := mustGrant(t, s, e.client, e.user.ID, 0)
	now := base.Add(time.Minute)
	const attempts = 100
	type attempt struct {
		next       store.RefreshToken
		access     store.Token
		accessHash tokenfmt.Hash
		retry      []byte
		used       store.RefreshToken
		err        error
	}
	as := make([]attempt, attempts)
	for i := range as {
		as[i].next = refreshFixture(t, g.grant.ID, now)
		as[i].access, as[i].accessHash = accessFixture(t, g.grant, now)
		as[i].retry = []byte(fmt.Sprintf("sealed response %d", i))
	}
	retryUntil := now.Add(30 * time.Second)
	var wg sync.WaitGroup
	for i := range as {
		a := &as[i]
		wg.Go(func() {
			a.used, a.err = s.RotateRefreshToken(ctx, g.refresh.Hash, a.next, &a.access, a.accessHash, a.retry, retryUntil, now)
		})
	}
	wg.Wait()
	winner := -1
	for i, a := range as {
		switch {
		case a.err == nil:
			if winner >= 0 {
				t.Fatalf("refresh token used twice: attempts %d and %d", winner, i)
			}
			winner = i
		case !errors.Is(a.err, store.ErrUsed):
			t.Errorf("attempt %d: %v, want nil or ErrUsed", i, a.err)
		}
	}
	if winner < 0 {
		t.Fatal("no attempt used the refresh token")
	}
	for i, a := range as {
		if i == winner {
			continue
		}
		if errors.Is(a.err, store.ErrUsed) && (string(a.used.Retry) != string(as[winner].retry) || !a.used.RetryUntil.Equal(retryUntil)) {
			t.Errorf("attempt %d: ErrUsed with retry %q until %v, want the winner's %q until %v", i, a.used.Retry, a.used.RetryUntil, as[winner].retry, retryUntil)
		}
		if _, _, err := s.GetRefreshToken(ctx, a.next.Hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("attempt %d: its successor was stored: %v", i, err)
		}
		if _, _, err := s.LookupToken(ctx, a.accessHash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("attempt %d: its access token was stored: %v", i, err)
		}
	}
	if _, _, err := s.GetRefreshToken(ctx, as[winner].next.Hash); err != nil {
		t.Errorf("winner's successor: %v", err)
	}
	if _, _, err := s.LookupToken(ctx, as[winner].accessHash); err != nil {
		t.Errorf("winner's access token: %v", err)
	}
}

func testRevokedGrantIssuesNothing(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	g := mustGrant(t, s, e.client, e.user.ID, 0)
	now := base.Add(time.Minute)
	if _, err := s.RevokeGrant(ctx, g.grant.ID, "test", now, ev("grant.revoke", g.grant.ID)); err != nil {
		t.Fatalf("RevokeGrant: %v", err)
	}
	access, ah := accessFixture(t, g.grant, now)
	refresh := refreshFixture(t, g.grant.ID, now)
	if err := s.IssueGrantTokens(ctx, g.grant.ID, &access, ah, &refresh); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("IssueGrantTokens(revoked grant) = %v, want ErrRevoked", err)
	}
	if err := s.IssueGrantTokens(ctx, g.grant.ID, nil, tokenfmt.Hash{}, &refresh); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("IssueGrantTokens(revoked grant, refresh only) = %v, want ErrRevoked", err)
	}
	if _, _, err := s.LookupToken(ctx, ah); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("access token of a revoked grant was stored: %v", err)
	}
	if _, _, err := s.GetRefreshToken(ctx, refresh.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh token of a revoked grant was stored: %v", err)
	}
	// The unused refresh token of the revoked grant cannot be used, and
	// stays unused.
	access2, ah2 := accessFixture(t, g.grant, now)
	if _, err := s.RotateRefreshToken(ctx, g.refresh.Hash, refresh, &access2, ah2, []byte("x"), now.Add(time.Minute), now); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("RotateRefreshToken(revoked grant) = %v, want ErrRevoked", err)
	}
	if rt, _, err := s.GetRefreshToken(ctx, g.refresh.Hash); err != nil || !cmp.Equal(rt, g.refresh) {
		t.Errorf("refused rotation changed the token: %v (-got +want):\n%s", err, cmp.Diff(rt, g.refresh))
	}
	if _, _, err := s.GetRefreshToken(ctx, refresh.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("successor on a revoked grant was stored: %v", err)
	}
	if _, _, err := s.LookupToken(ctx, ah2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("access token on a revoked grant was stored: %v", err)
	}
	missing := store.Grant{ID: "grt_missing"}
	access3, ah3 := accessFixture(t, missing, now)
	if err := s.IssueGrantTokens(ctx, missing.ID, &access3, ah3, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("IssueGrantTokens(missing grant) = %v, want ErrNotFound", err)
	}
}

func testRevokeGrant(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	g := mustGrant(t, s, e.client, e.user.ID, 0)
	second, h2 := accessFixture(t, g.grant, base.Add(time.Second))
	if err := s.IssueGrantTokens(ctx, g.grant.ID, &second, h2, nil); err != nil {
		t.Fatalf("IssueGrantTokens: %v", err)
	}
	other := mustGrant(t, s, e.client, e.user.ID, time.Second)
	n := len(audit(t, s))

	now := base.Add(time.Hour)
	hashes, err := s.RevokeGrant(ctx, g.grant.ID, "user_revoked", now, ev("grant.revoke", g.grant.ID))
	if err != nil {
		t.Fatalf("RevokeGrant: %v", err)
	}
	if diff := cmp.Diff(hashes, []tokenfmt.Hash{g.accessHash, h2}, byHashBytes); diff != "" {
		t.Errorf("RevokeGrant hashes (-got +want):\n%s", diff)
	}
	for _, h := range []tokenfmt.Hash{g.accessHash, h2} {
		tok, _, err := s.LookupToken(ctx, h)
		if err != nil || !tok.RevokedAt.Equal(now) || tok.RevokeReason != "user_revoked" {
			t.Errorf("access token after RevokeGrant: revoked %v %q, %v", tok.RevokedAt, tok.RevokeReason, err)
		}
	}
	stored, err := s.GetGrant(ctx, g.grant.ID)
	if err != nil || !stored.RevokedAt.Equal(now) || stored.RevokeReason != "user_revoked" {
		t.Errorf("revoked grant: %v %q, %v", stored.RevokedAt, stored.RevokeReason, err)
	}
	if _, rg, err := s.GetRefreshToken(ctx, g.refresh.Hash); err != nil || !rg.RevokedAt.Equal(now) {
		t.Errorf("grant of the refresh token: revoked %v, %v", rg.RevokedAt, err)
	}
	if tok, _, err := s.LookupToken(ctx, other.accessHash); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("other grant's token: revoked %v, %v", tok.RevokedAt, err)
	}
	evs := audit(t, s)
	if len(evs) != n+1 || evs[n].Action != "grant.revoke" {
		t.Errorf("RevokeGrant appended %d audit events, want one grant.revoke", len(evs)-n)
	}

	// Revoking again changes nothing and audits nothing.
	hashes, err = s.RevokeGrant(ctx, g.grant.ID, "again", now.Add(time.Hour), ev("grant.revoke", g.grant.ID))
	if err != nil || len(hashes) != 0 {
		t.Errorf("second RevokeGrant = %d hashes, %v; want none, nil", len(hashes), err)
	}
	if again, _ := s.GetGrant(ctx, g.grant.ID); !cmp.Equal(again, stored) {
		t.Errorf("second revoke changed the grant (-got +want):\n%s", cmp.Diff(again, stored))
	}
	if tok, _, _ := s.LookupToken(ctx, h2); !tok.RevokedAt.Equal(now) || tok.RevokeReason != "user_revoked" {
		t.Errorf("second revoke changed a token: %v %q", tok.RevokedAt, tok.RevokeReason)
	}
	if got := len(audit(t, s)); got != n+1 {
		t.Errorf("second revoke appended %d audit events", got-n-1)
	}
	if _, err := s.RevokeGrant(ctx, "grt_missing", "x", now, ev("grant.revoke", "grt_missing")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeGrant(missing) = %v, want ErrNotFound", err)
	}
}

// testRevokeGrantRacesIssue revokes a grant while tokens are issued from it
// and refresh tokens of it are used: every access token stored must be
// revoked and its hash returned for eviction; every call that lost the race
// fails with ErrRevoked and stores nothing.
func testRevokeGrantRacesIssue(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	g := mustGrant(t, s, e.client, e.user.ID, 0)
	now := base.Add(time.Minute)
	const n = 40
	refresh := make([]store.RefreshToken, n)
	for i := range refresh {
		refresh[i] = refreshFixture(t, g.grant.ID, base)
		if i%2 == 1 {
			if err := s.IssueGrantTokens(ctx, g.grant.ID, nil, tokenfmt.Hash{}, &refresh[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	type result struct {
		access tokenfmt.Hash
		next   tokenfmt.Hash
		err    error
	}
	results := make([]result, n)
	var revoked []tokenfmt.Hash
	var revokeErr error
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			access, h := accessFixture(t, g.grant, now)
			next := refreshFixture(t, g.grant.ID, now)
			<-start
			results[i] = result{access: h, next: next.Hash}
			if i%2 == 0 {
				results[i].err = s.IssueGrantTokens(ctx, g.grant.ID, &access, h, &next)
			} else {
				_, results[i].err = s.RotateRefreshToken(ctx, refresh[i].Hash, next, &access, h, nil, time.Time{}, now)
			}
		})
	}
	wg.Go(func() {
		<-start
		revoked, revokeErr = s.RevokeGrant(ctx, g.grant.ID, "test", now, ev("grant.revoke", g.grant.ID))
	})
	close(start)
	wg.Wait()
	if revokeErr != nil {
		t.Fatalf("RevokeGrant: %v", revokeErr)
	}
	evicted := map[tokenfmt.Hash]bool{}
	for _, h := range revoked {
		evicted[h] = true
	}
	for i, r := range results {
		switch {
		case r.err == nil:
			tok, _, err := s.LookupToken(ctx, r.access)
			if err != nil || tok.RevokedAt.IsZero() {
				t.Errorf("call %d: access token issued around the revocation is live (revoked %v, %v)", i, tok.RevokedAt, err)
			}
			if !evicted[r.access] {
				t.Errorf("call %d: access token not among the hashes RevokeGrant returned", i)
			}
		case errors.Is(r.err, store.ErrRevoked):
			if _, _, err := s.LookupToken(ctx, r.access); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("call %d: refused, but its access token was stored: %v", i, err)
			}
			if _, _, err := s.GetRefreshToken(ctx, r.next); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("call %d: refused, but its refresh token was stored: %v", i, err)
			}
		default:
			t.Errorf("call %d: %v, want nil or ErrRevoked", i, r.err)
		}
	}
}

func testDeviceCodeLifecycle(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	d := deviceCodeFixture(t, e.client, "WDJBMJHT")
	if err := s.CreateDeviceCode(ctx, d); err != nil {
		t.Fatalf("CreateDeviceCode: %v", err)
	}
	got, err := s.GetDeviceCodeByUserCode(ctx, d.UserCode)
	if err != nil {
		t.Fatalf("GetDeviceCodeByUserCode: %v", err)
	}
	if diff := cmp.Diff(got, d); diff != "" {
		t.Errorf("GetDeviceCodeByUserCode (-got +want):\n%s", diff)
	}
	dupUser := deviceCodeFixture(t, e.client, d.UserCode)
	if err := s.CreateDeviceCode(ctx, dupUser); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateDeviceCode(taken user code) = %v, want ErrAlreadyExists", err)
	}
	dupHash := deviceCodeFixture(t, e.client, "BCDFGHJK")
	dupHash.Hash = d.Hash
	if err := s.CreateDeviceCode(ctx, dupHash); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateDeviceCode(taken hash) = %v, want ErrAlreadyExists", err)
	}
	if _, err := s.GetDeviceCodeByUserCode(ctx, "BCDFGHJK"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused device code was stored: %v", err)
	}
	n := len(audit(t, s))
	want := d

	// The device polls (by device code hash): no audit event.
	polled := base.Add(time.Second)
	got, err = s.UpdateDeviceCode(ctx, d.Hash, "", func(x *store.DeviceCode) (*store.Grant, error) {
		if x.Status != store.DevicePending {
			return nil, fmt.Errorf("status %q", x.Status)
		}
		x.LastPolledAt, x.Interval = polled, x.Interval+5*time.Second
		return nil, nil
	}, store.AuditEvent{})
	if err != nil {
		t.Fatalf("UpdateDeviceCode(poll): %v", err)
	}
	want.LastPolledAt, want.Interval = polled, 10*time.Second
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("polled device code (-got +want):\n%s", diff)
	}

	// The user approves (by user code): audited.
	authTime := base.Add(time.Minute)
	got, err = s.UpdateDeviceCode(ctx, tokenfmt.Hash{}, d.UserCode, func(x *store.DeviceCode) (*store.Grant, error) {
		x.Status, x.UserID, x.AuthTime = store.DeviceApproved, e.user.ID, authTime
		return nil, nil
	}, ev("device.approve", e.client.ID))
	if err != nil {
		t.Fatalf("UpdateDeviceCode(approve): %v", err)
	}
	want.Status, want.UserID, want.AuthTime = store.DeviceApproved, e.user.ID, authTime
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("approved device code (-got +want):\n%s", diff)
	}

	// The device redeems it: the grant is stored with it.
	now := base.Add(2 * time.Minute)
	g := store.Grant{ID: ids.New(ids.Grant, now), ClientID: e.client.ID, UserID: e.user.ID, Subject: e.user.ID,
		APIID: d.APIID, Scopes: d.Scopes, AuthTime: authTime, CreatedAt: now}
	got, err = s.UpdateDeviceCode(ctx, d.Hash, "", func(x *store.DeviceCode) (*store.Grant, error) {
		if x.Status != store.DeviceApproved {
			return nil, fmt.Errorf("status %q", x.Status)
		}
		x.Status, x.GrantID, x.LastPolledAt = store.DeviceRedeemed, g.ID, now
		return &g, nil
	}, store.AuditEvent{})
	if err != nil {
		t.Fatalf("UpdateDeviceCode(redeem): %v", err)
	}
	want.Status, want.GrantID, want.LastPolledAt = store.DeviceRedeemed, g.ID, now
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("redeemed device code (-got +want):\n%s", diff)
	}
	stored, err := s.GetDeviceCodeByUserCode(ctx, d.UserCode)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stored, want); diff != "" {
		t.Errorf("stored device code (-got +want):\n%s", diff)
	}
	if sg, err := s.GetGrant(ctx, g.ID); err != nil || !cmp.Equal(sg, g) {
		t.Errorf("grant of the device code: %v (-got +want):\n%s", err, cmp.Diff(sg, g))
	}
	if diff := cmp.Diff(auditActions(t, s)[n:], []string{"device.approve"}); diff != "" {
		t.Errorf("audit actions of the lifecycle (-got +want):\n%s", diff)
	}

	noop := func(*store.DeviceCode) (*store.Grant, error) { return nil, nil }
	if _, err := s.UpdateDeviceCode(ctx, tokenfmt.Hash{1}, "", noop, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateDeviceCode(unknown hash) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateDeviceCode(ctx, tokenfmt.Hash{}, "NOSUCHCD", noop, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateDeviceCode(unknown user code) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetDeviceCodeByUserCode(ctx, "NOSUCHCD"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDeviceCodeByUserCode(unknown) = %v, want ErrNotFound", err)
	}
}

func testUpdateDeviceCodeFailure(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	d := deviceCodeFixture(t, e.client, "WDJBMJHT")
	if err := s.CreateDeviceCode(ctx, d); err != nil {
		t.Fatal(err)
	}
	n := len(audit(t, s))
	now := base.Add(time.Minute)
	g := store.Grant{ID: ids.New(ids.Grant, now), ClientID: e.client.ID, UserID: e.user.ID, Subject: e.user.ID,
		APIID: d.APIID, Scopes: d.Scopes, AuthTime: now, CreatedAt: now}
	redeem := func(x *store.DeviceCode) {
		x.Status, x.UserID, x.AuthTime, x.GrantID, x.LastPolledAt, x.Interval = store.DeviceRedeemed, e.user.ID, now, g.ID, now, time.Minute
	}
	boom := errors.New("boom")
	_, err := s.UpdateDeviceCode(ctx, d.Hash, "", func(x *store.DeviceCode) (*store.Grant, error) {
		redeem(x)
		return &g, boom
	}, ev("device.approve", e.client.ID))
	if err != boom {
		t.Errorf("UpdateDeviceCode = %v, want the updater's error unchanged", err)
	}
	if _, err := s.GetGrant(ctx, g.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant of a failed update was stored: %v", err)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("failed update appended %d audit events", got-n)
	}
	// A grant that cannot be stored rolls the device code back too.
	_, taken := mustRedeem(t, s, e.client, e.user.ID, 0)
	n = len(audit(t, s))
	dup := g
	dup.ID = taken.ID
	if _, err := s.UpdateDeviceCode(ctx, tokenfmt.Hash{}, d.UserCode, func(x *store.DeviceCode) (*store.Grant, error) {
		redeem(x)
		x.GrantID = dup.ID
		return &dup, nil
	}, ev("device.approve", e.client.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("UpdateDeviceCode storing a taken grant ID = %v, want ErrAlreadyExists", err)
	}
	stored, err := s.GetDeviceCodeByUserCode(ctx, d.UserCode)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stored, d); diff != "" {
		t.Errorf("failed updates changed the device code (-got +want):\n%s", diff)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("failed updates appended %d audit events", got-n)
	}
}

func testPurgeGrants(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	cutoff := base.Add(time.Hour)

	// Used codes that expired before cutoff go (three, one per grant).
	// A code expiring at cutoff stays.
	usedCode, live := mustRedeem(t, s, e.client, e.user.ID, 0)
	liveCode := authCodeFixture(t, e.client, e.user.ID, 0)
	liveCode.ExpiresAt = cutoff
	if err := s.CreateAuthCode(ctx, liveCode); err != nil {
		t.Fatal(err)
	}
	// Device codes: one expired before cutoff goes, one expiring at it stays.
	oldDevice := deviceCodeFixture(t, e.client, "OLDCODE1")
	oldDevice.ExpiresAt = cutoff.Add(-time.Millisecond)
	keptDevice := deviceCodeFixture(t, e.client, "KEPTCODE")
	keptDevice.ExpiresAt = cutoff
	for _, d := range []store.DeviceCode{oldDevice, keptDevice} {
		if err := s.CreateDeviceCode(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// Refresh tokens: one used before cutoff and one expired before it go;
	// the successor stays.
	g := mustIssue(t, s, live)
	next := refreshFixture(t, g.grant.ID, base.Add(30*time.Minute))
	if _, err := s.RotateRefreshToken(ctx, g.refresh.Hash, next, nil, tokenfmt.Hash{}, nil, time.Time{}, next.CreatedAt); err != nil {
		t.Fatal(err)
	}
	expired := refreshFixture(t, g.grant.ID, base)
	expired.ExpiresAt = cutoff.Add(-time.Second)
	if err := s.IssueGrantTokens(ctx, g.grant.ID, nil, tokenfmt.Hash{}, &expired); err != nil {
		t.Fatal(err)
	}
	// A grant revoked before cutoff goes with its refresh token; one
	// revoked after cutoff stays with its own.
	revoked := mustGrant(t, s, e.client, e.user.ID, time.Second)
	recent := mustGrant(t, s, e.client, e.user.ID, 2*time.Second)
	for _, r := range []struct {
		id string
		at time.Time
	}{{revoked.grant.ID, cutoff.Add(-time.Minute)}, {recent.grant.ID, cutoff.Add(time.Minute)}} {
		if _, err := s.RevokeGrant(ctx, r.id, "test", r.at, store.AuditEvent{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RedeemAuthCode(ctx, usedCode.Hash, grantFixture(e.client, base), base, store.AuditEvent{}); !errors.Is(err, store.ErrUsed) {
		t.Fatalf("used code before the purge: %v, want ErrUsed", err)
	}

	const batch = 3
	const victims = 3 + 1 + 3 + 1 // codes, device code, refresh tokens, grant
	total := 0
	for range 10 {
		n, err := s.PurgeGrants(ctx, cutoff, batch)
		if err != nil {
			t.Fatalf("PurgeGrants: %v", err)
		}
		if n > batch {
			t.Fatalf("PurgeGrants deleted %d rows, over its batch of %d", n, batch)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total != victims {
		t.Errorf("purged %d rows, want %d", total, victims)
	}

	if _, err := s.RedeemAuthCode(ctx, usedCode.Hash, grantFixture(e.client, base), base, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("purged code: %v, want ErrNotFound", err)
	}
	if _, err := s.GetDeviceCodeByUserCode(ctx, oldDevice.UserCode); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired device code survived: %v", err)
	}
	for _, h := range []tokenfmt.Hash{g.refresh.Hash, expired.Hash, revoked.refresh.Hash} {
		if _, _, err := s.GetRefreshToken(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refresh token survived the purge: %v", err)
		}
	}
	if _, err := s.GetGrant(ctx, revoked.grant.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant revoked before cutoff survived: %v", err)
	}

	if _, err := s.GetDeviceCodeByUserCode(ctx, keptDevice.UserCode); err != nil {
		t.Errorf("device code expiring at cutoff was purged: %v", err)
	}
	for _, h := range []tokenfmt.Hash{next.Hash, recent.refresh.Hash} {
		if _, _, err := s.GetRefreshToken(ctx, h); err != nil {
			t.Errorf("live refresh token was purged: %v", err)
		}
	}
	for _, id := range []string{live.ID, recent.grant.ID} {
		if _, err := s.GetGrant(ctx, id); err != nil {
			t.Errorf("grant %s was purged: %v", id, err)
		}
	}
	if _, err := s.RedeemAuthCode(ctx, liveCode.Hash, grantFixture(e.client, base), base, store.AuditEvent{}); err != nil {
		t.Errorf("code expiring at cutoff: %v", err)
	}
}

func testGrantTimeZones(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	for i, zone := range []string{"UTC", "America/Los_Angeles", "Asia/Kolkata"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Skipf("no tzdata for %s", zone)
		}
		in := func(d time.Duration) time.Time { return base.Add(d).In(loc) }
		utc := func(what string, got, want time.Time) {
			t.Helper()
			if !got.Equal(want) || got.Location() != time.UTC {
				t.Errorf("%s: %s = %v, want %v in UTC", zone, what, got, want)
			}
		}

		// Authorization code: expired at ExpiresAt, live a millisecond
		// before.
		code := authCodeFixture(t, e.client, e.user.ID, 0)
		code.AuthTime, code.CreatedAt, code.ExpiresAt = in(-time.Minute), in(0), in(time.Minute)
		if err := s.CreateAuthCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		g := grantFixture(e.client, in(30*time.Second))
		if _, err := s.RedeemAuthCode(ctx, code.Hash, g, code.ExpiresAt, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: RedeemAuthCode at ExpiresAt = %v, want ErrNotFound", zone, err)
		}
		now := code.ExpiresAt.Add(-time.Millisecond)
		got, err := s.RedeemAuthCode(ctx, code.Hash, g, now, store.AuditEvent{})
		if err != nil {
			t.Fatalf("%s: RedeemAuthCode a millisecond before ExpiresAt: %v", zone, err)
		}
		utc("code AuthTime", got.AuthTime, code.AuthTime)
		utc("code CreatedAt", got.CreatedAt, code.CreatedAt)
		utc("code ExpiresAt", got.ExpiresAt, code.ExpiresAt)
		utc("code UsedAt", got.UsedAt, now)
		sg, err := s.GetGrant(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		utc("grant AuthTime", sg.AuthTime, code.AuthTime)
		utc("grant CreatedAt", sg.CreatedAt, g.CreatedAt)

		// Refresh token: the same boundary.
		rt := refreshFixture(t, g.ID, in(0))
		rt.ExpiresAt = in(time.Hour)
		if err := s.IssueGrantTokens(ctx, g.ID, nil, tokenfmt.Hash{}, &rt); err != nil {
			t.Fatal(err)
		}
		srt, _, err := s.GetRefreshToken(ctx, rt.Hash)
		if err != nil {
			t.Fatal(err)
		}
		utc("refresh CreatedAt", srt.CreatedAt, rt.CreatedAt)
		utc("refresh ExpiresAt", srt.ExpiresAt, rt.ExpiresAt)
		next := refreshFixture(t, g.ID, rt.ExpiresAt)
		if _, err := s.RotateRefreshToken(ctx, rt.Hash, next, nil, tokenfmt.Hash{}, nil, time.Time{}, rt.ExpiresAt); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: RotateRefreshToken at ExpiresAt = %v, want ErrNotFound", zone, err)
		}
		now = rt.ExpiresAt.Add(-time.Millisecond)
		if _, err := s.RotateRefreshToken(ctx, rt.Hash, next, nil, tokenfmt.Hash{}, []byte("r"), now.Add(time.Minute), now); err != nil {
			t.Fatalf("%s: RotateRefreshToken a millisecond before ExpiresAt: %v", zone, err)
		}
		used, err := s.RotateRefreshToken(ctx, rt.Hash, next, nil, tokenfmt.Hash{}, nil, time.Time{}, now)
		if !errors.Is(err, store.ErrUsed) {
			t.Fatalf("%s: RotateRefreshToken(used) = %v", zone, err)
		}
		utc("refresh UsedAt", used.UsedAt, now)
		utc("refresh RetryUntil", used.RetryUntil, now.Add(time.Minute))

		// Device code.
		d := deviceCodeFixture(t, e.client, fmt.Sprintf("ZONE%04d", i))
		d.CreatedAt, d.ExpiresAt, d.LastPolledAt, d.AuthTime = in(0), in(10*time.Minute), in(time.Second), in(2*time.Second)
		if err := s.CreateDeviceCode(ctx, d); err != nil {
			t.Fatal(err)
		}
		sd, err := s.GetDeviceCodeByUserCode(ctx, d.UserCode)
		if err != nil {
			t.Fatal(err)
		}
		utc("device CreatedAt", sd.CreatedAt, d.CreatedAt)
		utc("device ExpiresAt", sd.ExpiresAt, d.ExpiresAt)
		utc("device LastPolledAt", sd.LastPolledAt, d.LastPolledAt)
		utc("device AuthTime", sd.AuthTime, d.AuthTime)
	}
}

// testPurgeSpentGrants checks that a grant goes when the purge of its
// tokens leaves it with none (no refresh token, no opaque access token),
// and only then: a grant that can still issue stays.
func testPurgeSpentGrants(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	cutoff := base.Add(48 * time.Hour) // after every fixture's expiry

	// With only a refresh token, expired: spent by PurgeGrants.
	_, onlyRefresh := mustRedeem(t, s, e.client, e.user.ID, 0)
	if err := s.IssueGrantTokens(ctx, onlyRefresh.ID, nil, tokenfmt.Hash{}, ptr(refreshFixture(t, onlyRefresh.ID, base))); err != nil {
		t.Fatal(err)
	}
	// With only an access token, expired: spent by PurgeTokens.
	_, onlyAccess := mustRedeem(t, s, e.client, e.user.ID, time.Second)
	access, h := accessFixture(t, onlyAccess, base)
	if err := s.IssueGrantTokens(ctx, onlyAccess.ID, &access, h, nil); err != nil {
		t.Fatal(err)
	}
	// Both expired: spent once both purges ran.
	both := mustGrant(t, s, e.client, e.user.ID, 2*time.Second)
	// An expired refresh token, rotated into one that expires after
	// cutoff: the grant stays.
	rotated := mustGrant(t, s, e.client, e.user.ID, 3*time.Second)
	next := refreshFixture(t, rotated.grant.ID, cutoff.Add(-time.Hour))
	if _, err := s.RotateRefreshToken(ctx, rotated.refresh.Hash, next, nil, tokenfmt.Hash{}, nil, time.Time{}, base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A grant that never held a token (a JWT client without refresh
	// tokens): spent when its expired code is purged.
	_, tokenless := mustRedeem(t, s, e.client, e.user.ID, 5*time.Second)
	// An expired access token of a grant whose refresh token lives: stays.
	_, liveRefresh := mustRedeem(t, s, e.client, e.user.ID, 4*time.Second)
	access2, h2 := accessFixture(t, liveRefresh, base)
	live := refreshFixture(t, liveRefresh.ID, cutoff.Add(-time.Hour))
	live.ExpiresAt = cutoff.Add(time.Hour)
	if err := s.IssueGrantTokens(ctx, liveRefresh.ID, &access2, h2, &live); err != nil {
		t.Fatal(err)
	}

	for range 10 {
		n, err := s.PurgeGrants(ctx, cutoff, 100)
		if err != nil {
			t.Fatalf("PurgeGrants: %v", err)
		}
		m, err := s.PurgeTokens(ctx, cutoff, cutoff, 100)
		if err != nil {
			t.Fatalf("PurgeTokens: %v", err)
		}
		if n+m == 0 {
			break
		}
	}
	for _, id := range []string{onlyRefresh.ID, onlyAccess.ID, both.grant.ID, tokenless.ID} {
		if _, err := s.GetGrant(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("spent grant %s survived the purge: %v", id, err)
		}
	}
	for _, id := range []string{rotated.grant.ID, liveRefresh.ID} {
		if _, err := s.GetGrant(ctx, id); err != nil {
			t.Errorf("grant %s that can still issue was purged: %v", id, err)
		}
	}
	if _, _, err := s.GetRefreshToken(ctx, live.Hash); err != nil {
		t.Errorf("live refresh token: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
