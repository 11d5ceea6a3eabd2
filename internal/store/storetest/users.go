package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// userTests cover users and consents.
var userTests = []storeTest{
	{"UserRoundTrip", testUserRoundTrip},
	{"UserUniqueness", testUserUniqueness},
	{"UpdateUserFailureChangesNothing", testUpdateUserFailure},
	{"ListUsers", testListUsers},
	{"DeleteUser", testDeleteUser},
	{"ConsentUpsert", testConsentUpsert},
	{"DeleteConsent", testDeleteConsent},
	{"DeleteConsentEndsADeviceApproval", testDeleteConsentEndsADeviceApproval},
	{"UpdateUserRevokingGrants", testUpdateUserRevokingGrants},
	{"RevocationRacesIssuance", testRevocationRacesIssuance},
}

// userFixture returns a user created at base+offset with a PHC-shaped
// password hash (the store does not interpret it).
func userFixture(username string, offset time.Duration) store.User {
	at := base.Add(offset)
	return store.User{
		ID: ids.New(ids.User, at), Username: username, Email: username + "@example.com",
		PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		CreatedAt:    at, UpdatedAt: at,
	}
}

func mustCreateUser(t *testing.T, s store.Store, username string) store.User {
	t.Helper()
	u := userFixture(username, 0)
	if err := s.CreateUser(ctx, u, ev("user.create", u.ID)); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return u
}

// mustCreateUserClient stores a confidential authorization-code client.
func mustCreateUserClient(t *testing.T, s store.Store, name, apiID string) store.Client {
	t.Helper()
	c := store.Client{
		ID: ids.New(ids.Client, base), Name: name, Type: store.ClientConfidential,
		GrantTypes: []string{"authorization_code", "refresh_token"}, RedirectURIs: []string{"https://" + name + ".example.com/cb"},
		APIs: []string{apiID}, Scopes: []string{"repos:read", "repos:write"}, TokenFormat: store.FormatOpaque, SigningAlg: "ES256",
		AccessTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour, AuthMethod: "client_secret_basic",
		CreatedAt: base, UpdatedAt: base,
	}
	if err := s.CreateClient(ctx, c, nil, ev("client.create", c.ID)); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	return c
}

// userGrant is a grant made through the store's own methods: an
// authorization code of user for client, redeemed, and an opaque access token
// and a refresh token issued from the grant.
type userGrant struct {
	grant   store.Grant
	access  store.Token
	hash    tokenfmt.Hash // of the access token
	refresh tokenfmt.Hash
}

func mustCreateUserGrant(t *testing.T, s store.Store, userID string, c store.Client) userGrant {
	t.Helper()
	return mustCreateUserGrantAt(t, s, userID, c, base)
}

// mustCreateUserGrantAt is mustCreateUserGrant with everything made at.
func mustCreateUserGrantAt(t *testing.T, s store.Store, userID string, c store.Client, base time.Time) userGrant {
	t.Helper()
	secret := func(prefix string) tokenfmt.Hash {
		v, err := tokenfmt.Generate(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return tokenfmt.HashOf(v)
	}
	code := store.AuthCode{
		Hash: secret("code"), ClientID: c.ID, UserID: userID, RedirectURI: c.RedirectURIs[0], APIID: c.APIs[0],
		Scopes: []string{"repos:read"}, Challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", ChallengeMethod: "S256",
		AuthTime: base, CreatedAt: base, ExpiresAt: base.Add(time.Minute),
	}
	if err := s.CreateAuthCode(ctx, code); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	g := store.Grant{ID: ids.New(ids.Grant, base), ClientID: c.ID, CreatedAt: base}
	if _, err := s.RedeemAuthCode(ctx, code.Hash, g, base, ev("grant.create", g.ID)); err != nil {
		t.Fatalf("RedeemAuthCode: %v", err)
	}
	g, err := s.GetGrant(ctx, g.ID)
	if err != nil {
		t.Fatalf("GetGrant: %v", err)
	}
	access := store.Token{
		ID: ids.New(ids.Token, base), APIID: g.APIID, Name: c.Name, Subject: userID, Scopes: g.Scopes,
		Hint: "jta_test", CreatedAt: base, UpdatedAt: base, ExpiresAt: base.Add(time.Hour), ClientID: c.ID, GrantID: g.ID,
	}
	ug := userGrant{grant: g, access: access, hash: secret(tokenfmt.PrefixAccess), refresh: secret(tokenfmt.PrefixRefresh)}
	refresh := store.RefreshToken{Hash: ug.refresh, GrantID: g.ID, CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour)}
	if err := s.IssueGrantTokens(ctx, g.ID, &access, ug.hash, &refresh); err != nil {
		t.Fatalf("IssueGrantTokens: %v", err)
	}
	return ug
}

func testUserRoundTrip(t *testing.T, s store.Store) {
	u := userFixture("alice", 0)
	if err := s.CreateUser(ctx, u, ev("user.create", u.ID)); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	got, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if diff := cmp.Diff(got, u); diff != "" {
		t.Errorf("GetUser (-got +want):\n%s", diff)
	}
	got, err = s.GetUserByUsername(ctx, "alice")
	if err != nil {
		t.Fatalf("GetUserByUsername: %v", err)
	}
	if diff := cmp.Diff(got, u); diff != "" {
		t.Errorf("GetUserByUsername (-got +want):\n%s", diff)
	}
	// Every field changes, in another time zone: times come back in UTC.
	later := base.Add(time.Minute)
	zone := time.FixedZone("UTC+9", 9*3600)
	upd, err := s.UpdateUser(ctx, u.ID, func(x *store.User) error {
		x.Username, x.Email, x.PasswordHash = "alice2", "a2@example.com", "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
		x.DisabledAt, x.UpdatedAt, x.SessionsEndedAt = later.In(zone), later.In(zone), later.In(zone)
		return nil
	}, ev("user.update", u.ID))
	if err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	want := u
	want.Username, want.Email, want.PasswordHash = "alice2", "a2@example.com", "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
	want.DisabledAt, want.UpdatedAt, want.SessionsEndedAt = later, later, later
	stored, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if diff := cmp.Diff(stored, want); diff != "" {
		t.Errorf("stored update (-got +want):\n%s", diff)
	}
	if !upd.DisabledAt.Equal(later) || upd.Username != "alice2" {
		t.Errorf("UpdateUser result: %+v", upd)
	}
	if _, err := s.GetUserByUsername(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUserByUsername(old name) = %v, want ErrNotFound", err)
	}
	// Re-enabling stores a NULL disabled_at again.
	if _, err := s.UpdateUser(ctx, u.ID, func(x *store.User) error { x.DisabledAt = time.Time{}; return nil }, ev("user.update", u.ID)); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	if stored, _ := s.GetUser(ctx, u.ID); !stored.DisabledAt.IsZero() || !stored.SessionsEndedAt.Equal(later) {
		t.Errorf("re-enabled user has DisabledAt %v, SessionsEndedAt %v (want %v)", stored.DisabledAt, stored.SessionsEndedAt, later)
	}

	if _, err := s.GetUser(ctx, "usr_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetUserByUsername(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUserByUsername(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateUser(ctx, "usr_missing", func(*store.User) error { return nil }, ev("user.update", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateUser(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteUser(ctx, "usr_missing", ev("user.delete", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUser(missing) = %v, want ErrNotFound", err)
	}
	var actions []string
	for _, e := range audit(t, s) {
		actions = append(actions, e.Action)
	}
	if diff := cmp.Diff(actions, []string{"user.create", "user.update", "user.update"}); diff != "" {
		t.Errorf("audit actions (-got +want):\n%s", diff)
	}
}

func testUserUniqueness(t *testing.T, s store.Store) {
	a := mustCreateUser(t, s, "alice")
	dupName := userFixture("alice", time.Second)
	if err := s.CreateUser(ctx, dupName, ev("user.create", dupName.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateUser(dup username) = %v, want ErrAlreadyExists", err)
	}
	dupID := userFixture("bob", 0)
	dupID.ID = a.ID
	if err := s.CreateUser(ctx, dupID, ev("user.create", dupID.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateUser(dup id) = %v, want ErrAlreadyExists", err)
	}
	b := userFixture("bob", time.Second)
	if err := s.CreateUser(ctx, b, ev("user.create", b.ID)); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if _, err := s.UpdateUser(ctx, b.ID, func(x *store.User) error { x.Username = "alice"; return nil }, ev("user.update", b.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("UpdateUser(rename onto existing) = %v, want ErrAlreadyExists", err)
	}
	if got, _ := s.GetUser(ctx, b.ID); got.Username != "bob" {
		t.Errorf("failed rename changed the username to %q", got.Username)
	}
	if got := len(audit(t, s)); got != 2 {
		t.Errorf("%d audit events, want 2 (two creates)", got)
	}
}

func testUpdateUserFailure(t *testing.T, s store.Store) {
	u := mustCreateUser(t, s, "alice")
	n := len(audit(t, s))
	boom := errors.New("boom")
	_, err := s.UpdateUser(ctx, u.ID, func(x *store.User) error {
		x.Email, x.DisabledAt = "changed@example.com", base
		return boom
	}, ev("user.update", u.ID))
	if !errors.Is(err, boom) {
		t.Errorf("UpdateUser = %v, want the updater's error", err)
	}
	got, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, u); diff != "" {
		t.Errorf("failed update changed the user (-got +want):\n%s", diff)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("failed update appended %d audit events", got-n)
	}
}

func testListUsers(t *testing.T, s store.Store) {
	var want []store.User
	for i := range 5 {
		u := userFixture(fmt.Sprintf("user%d", i), time.Duration(i)*time.Second)
		if err := s.CreateUser(ctx, u, ev("user.create", u.ID)); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		want = append([]store.User{u}, want...) // newest first
	}
	var got []store.User
	cursor := ""
	for range 10 {
		page, next, err := s.ListUsers(ctx, cursor, 2)
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d users, limit 2", len(page))
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("paged list (-got +want):\n%s", diff)
	}
	all, next, err := s.ListUsers(ctx, "", 0)
	if err != nil || len(all) != 5 || next != "" {
		t.Errorf("ListUsers(default limit): %d users, next %q, err %v", len(all), next, err)
	}
}

func testDeleteUser(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateUserClient(t, s, "app", a.ID)
	u := mustCreateUser(t, s, "alice")
	other := userFixture("bob", time.Second)
	if err := s.CreateUser(ctx, other, ev("user.create", other.ID)); err != nil {
		t.Fatal(err)
	}
	g := mustCreateUserGrant(t, s, u.ID, c)
	kept := mustCreateUserGrant(t, s, other.ID, c)
	for _, uid := range []string{u.ID, other.ID} {
		if err := s.PutConsent(ctx, store.Consent{UserID: uid, ClientID: c.ID, APIID: a.ID, Scopes: []string{"repos:read"}, CreatedAt: base, UpdatedAt: base}, store.AuditEvent{}); err != nil {
			t.Fatalf("PutConsent: %v", err)
		}
	}
	// An unredeemed authorization code of the user.
	pending := store.AuthCode{Hash: tokenfmt.HashOf("pending-code"), ClientID: c.ID, UserID: u.ID, RedirectURI: c.RedirectURIs[0],
		APIID: a.ID, Scopes: []string{"repos:read"}, AuthTime: base, CreatedAt: base, ExpiresAt: base.Add(time.Minute)}
	if err := s.CreateAuthCode(ctx, pending); err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}

	hashes, err := s.DeleteUser(ctx, u.ID, ev("user.delete", u.ID))
	if err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if diff := cmp.Diff(hashes, []tokenfmt.Hash{g.hash}); diff != "" {
		t.Errorf("DeleteUser hashes (-got +want):\n%s", diff)
	}
	if _, err := s.GetUser(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted user still found: %v", err)
	}
	if _, _, err := s.LookupToken(ctx, g.hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("access token of deleted user: %v, want ErrNotFound", err)
	}
	if _, err := s.GetToken(ctx, g.access.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetToken of deleted user's token: %v, want ErrNotFound", err)
	}
	if _, err := s.GetGrant(ctx, g.grant.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant of deleted user: %v, want ErrNotFound", err)
	}
	if _, _, err := s.GetRefreshToken(ctx, g.refresh); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh token of deleted user: %v, want ErrNotFound", err)
	}
	if grants, err := s.ListGrants(ctx, u.ID); err != nil || len(grants) != 0 {
		t.Errorf("ListGrants(deleted user) = %d grants, %v", len(grants), err)
	}
	if cs, err := s.ListConsents(ctx, u.ID); err != nil || len(cs) != 0 {
		t.Errorf("ListConsents(deleted user) = %d consents, %v", len(cs), err)
	}
	if _, err := s.RedeemAuthCode(ctx, pending.Hash, store.Grant{ID: ids.New(ids.Grant, base), ClientID: c.ID, CreatedAt: base}, base, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemAuthCode(code of deleted user) = %v, want ErrNotFound", err)
	}

	// The other user keeps everything.
	if tok, _, err := s.LookupToken(ctx, kept.hash); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("other user's token: revoked %v, %v", tok.RevokedAt, err)
	}
	if _, err := s.GetGrant(ctx, kept.grant.ID); err != nil {
		t.Errorf("other user's grant: %v", err)
	}
	if cs, err := s.ListConsents(ctx, other.ID); err != nil || len(cs) != 1 {
		t.Errorf("other user's consents: %d, %v", len(cs), err)
	}
	evs := audit(t, s)
	if last := evs[len(evs)-1]; last.Action != "user.delete" || last.Target != u.ID {
		t.Errorf("last audit event %q %q, want user.delete of %s", last.Action, last.Target, u.ID)
	}
}

func testConsentUpsert(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	b := mustCreateAPI(t, s, "beta")
	c := mustCreateUserClient(t, s, "app", a.ID)
	u := mustCreateUser(t, s, "alice")
	first := store.Consent{UserID: u.ID, ClientID: c.ID, APIID: a.ID, Scopes: []string{"repos:read"}, CreatedAt: base, UpdatedAt: base}
	if err := s.PutConsent(ctx, first, ev("consent.grant", u.ID)); err != nil {
		t.Fatalf("PutConsent: %v", err)
	}
	got, err := s.GetConsent(ctx, u.ID, c.ID, a.ID)
	if err != nil {
		t.Fatalf("GetConsent: %v", err)
	}
	if diff := cmp.Diff(got, first); diff != "" {
		t.Errorf("GetConsent (-got +want):\n%s", diff)
	}
	// Replacing keeps the creation time and takes the new scopes.
	later := base.Add(time.Hour)
	second := first
	second.Scopes = []string{"repos:read", "repos:write"}
	second.CreatedAt, second.UpdatedAt = later, later
	if err := s.PutConsent(ctx, second, ev("consent.grant", u.ID)); err != nil {
		t.Fatalf("PutConsent(replace): %v", err)
	}
	other := store.Consent{UserID: u.ID, ClientID: c.ID, APIID: b.ID, CreatedAt: base, UpdatedAt: base}
	if err := s.PutConsent(ctx, other, ev("consent.grant", u.ID)); err != nil {
		t.Fatalf("PutConsent(other api): %v", err)
	}
	want := second
	want.CreatedAt = base
	got, err = s.GetConsent(ctx, u.ID, c.ID, a.ID)
	if err != nil {
		t.Fatalf("GetConsent: %v", err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("replaced consent (-got +want):\n%s", diff)
	}
	list, err := s.ListConsents(ctx, u.ID)
	if err != nil {
		t.Fatalf("ListConsents: %v", err)
	}
	other.Scopes = []string{} // nil is stored as an empty list
	wantList := []store.Consent{want, other}
	if a.ID > b.ID {
		wantList = []store.Consent{other, want}
	}
	if diff := cmp.Diff(list, wantList); diff != "" {
		t.Errorf("ListConsents (-got +want):\n%s", diff)
	}
	if _, err := s.GetConsent(ctx, u.ID, c.ID, "api_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetConsent(missing) = %v, want ErrNotFound", err)
	}
	n := len(audit(t, s))
	for _, bad := range []store.Consent{
		{UserID: "usr_missing", ClientID: c.ID, APIID: a.ID, CreatedAt: base, UpdatedAt: base},
		{UserID: u.ID, ClientID: "cli_missing", APIID: a.ID, CreatedAt: base, UpdatedAt: base},
	} {
		if err := s.PutConsent(ctx, bad, ev("consent.grant", bad.UserID)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutConsent(%s, %s) = %v, want ErrNotFound", bad.UserID, bad.ClientID, err)
		}
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("refused PutConsent appended %d audit events", got-n)
	}
}

func testDeleteConsent(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	app := mustCreateUserClient(t, s, "app", a.ID)
	keep := mustCreateUserClient(t, s, "keep", a.ID)
	u := mustCreateUser(t, s, "alice")
	g1 := mustCreateUserGrant(t, s, u.ID, app)
	g2 := mustCreateUserGrant(t, s, u.ID, app)
	gk := mustCreateUserGrant(t, s, u.ID, keep)
	for _, cid := range []string{app.ID, keep.ID} {
		if err := s.PutConsent(ctx, store.Consent{UserID: u.ID, ClientID: cid, APIID: a.ID, Scopes: []string{"repos:read"}, CreatedAt: base, UpdatedAt: base}, store.AuditEvent{}); err != nil {
			t.Fatalf("PutConsent: %v", err)
		}
	}
	// A token revoked earlier keeps its revocation and is not reported.
	earlier := base.Add(time.Minute)
	if _, _, err := s.RevokeToken(ctx, g2.access.ID, "earlier", earlier, store.AuditEvent{}); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}

	now := base.Add(time.Hour)
	n := len(audit(t, s))
	hashes, err := s.DeleteConsent(ctx, u.ID, app.ID, now, ev("consent.revoke", u.ID))
	if err != nil {
		t.Fatalf("DeleteConsent: %v", err)
	}
	if diff := cmp.Diff(hashes, []tokenfmt.Hash{g1.hash}); diff != "" {
		t.Errorf("DeleteConsent hashes (-got +want):\n%s", diff)
	}
	tok, _, err := s.LookupToken(ctx, g1.hash)
	if err != nil || !tok.RevokedAt.Equal(now) || tok.RevokeReason == "" {
		t.Errorf("access token after DeleteConsent: revoked %v %q, %v; want revoked at %v", tok.RevokedAt, tok.RevokeReason, err, now)
	}
	if tok, _, err := s.LookupToken(ctx, g2.hash); err != nil || !tok.RevokedAt.Equal(earlier) || tok.RevokeReason != "earlier" {
		t.Errorf("earlier revoked token: %v %q, %v", tok.RevokedAt, tok.RevokeReason, err)
	}
	for _, g := range []userGrant{g1, g2} {
		got, err := s.GetGrant(ctx, g.grant.ID)
		if err != nil || !got.RevokedAt.Equal(now) || got.RevokeReason == "" {
			t.Errorf("grant after DeleteConsent: revoked %v %q, %v", got.RevokedAt, got.RevokeReason, err)
		}
	}
	if _, err := s.RotateRefreshToken(ctx, g1.refresh, store.RefreshToken{Hash: tokenfmt.HashOf("next"), GrantID: g1.grant.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		nil, tokenfmt.Hash{}, nil, time.Time{}, now); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("RotateRefreshToken after DeleteConsent = %v, want ErrRevoked", err)
	}
	if _, err := s.GetConsent(ctx, u.ID, app.ID, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted consent: %v, want ErrNotFound", err)
	}
	// The other client keeps its consent, grant and token.
	if _, err := s.GetConsent(ctx, u.ID, keep.ID, a.ID); err != nil {
		t.Errorf("other client's consent: %v", err)
	}
	if tok, _, err := s.LookupToken(ctx, gk.hash); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("other client's token: revoked %v, %v", tok.RevokedAt, err)
	}
	if got, err := s.GetGrant(ctx, gk.grant.ID); err != nil || !got.RevokedAt.IsZero() {
		t.Errorf("other client's grant: revoked %v, %v", got.RevokedAt, err)
	}
	evs := audit(t, s)
	if len(evs) != n+1 || evs[n].Action != "consent.revoke" {
		t.Errorf("DeleteConsent appended %d audit events, want one consent.revoke", len(evs)-n)
	}
	// Nothing left to revoke: ErrNotFound, and nothing audited.
	if _, err := s.DeleteConsent(ctx, u.ID, app.ID, now, ev("consent.revoke", u.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteConsent = %v, want ErrNotFound", err)
	}
	if got := len(audit(t, s)); got != n+1 {
		t.Errorf("second DeleteConsent appended %d audit events", got-n-1)
	}
}

// testDeleteConsentEndsADeviceApproval: a device approval not yet redeemed
// stores no grant; withdrawing what the user allowed the client must end it
// all the same, and not answer ErrNotFound (which rolled the deletion back).
func testDeleteConsentEndsADeviceApproval(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateUserClient(t, s, "tv", a.ID)
	u := mustCreateUser(t, s, "alice")
	v, err := tokenfmt.Generate("dev")
	if err != nil {
		t.Fatal(err)
	}
	d := store.DeviceCode{Hash: tokenfmt.HashOf(v), UserCode: "BCDFGHJK", ClientID: c.ID, APIID: a.ID, Scopes: []string{"repos:read"},
		CreatedAt: base, ExpiresAt: base.Add(15 * time.Minute), Interval: 5 * time.Second, Status: store.DevicePending}
	if err := s.CreateDeviceCode(ctx, d); err != nil {
		t.Fatalf("CreateDeviceCode: %v", err)
	}
	if _, err := s.UpdateDeviceCode(ctx, tokenfmt.Hash{}, d.UserCode, func(x *store.DeviceCode) (*store.Grant, error) {
		x.Status, x.UserID, x.AuthTime = store.DeviceApproved, u.ID, base
		return nil, nil
	}, ev("device.approve", c.ID)); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if _, err := s.DeleteConsent(ctx, u.ID, c.ID, base.Add(time.Minute), ev("consent.revoke", u.ID)); err != nil {
		t.Errorf("DeleteConsent with only an approval waiting = %v, want success", err)
	}
	if _, err := s.UpdateDeviceCode(ctx, d.Hash, "", func(x *store.DeviceCode) (*store.Grant, error) {
		t.Errorf("device code still there, %s, after DeleteConsent", x.Status)
		return nil, nil
	}, store.AuditEvent{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device code after DeleteConsent: %v, want ErrNotFound", err)
	}
}

// testUpdateUserRevokingGrants: disabling a user (or resetting their
// password) revokes, in the same transaction, every live grant of theirs
// and the access tokens issued from them, and audits each; a failed update
// changes nothing.
func testUpdateUserRevokingGrants(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	app := mustCreateUserClient(t, s, "app", a.ID)
	u := mustCreateUser(t, s, "alice")
	other := mustCreateUser(t, s, "bob")
	g1 := mustCreateUserGrant(t, s, u.ID, app)
	g2 := mustCreateUserGrant(t, s, u.ID, app)
	gb := mustCreateUserGrant(t, s, other.ID, app)
	earlier := base.Add(time.Minute)
	if _, err := s.RevokeGrant(ctx, g2.grant.ID, "earlier", earlier, ev("grant.revoke", g2.grant.ID)); err != nil {
		t.Fatalf("RevokeGrant: %v", err)
	}
	now := base.Add(30 * time.Minute) // the access tokens expire at base+1h
	grantEvent := func(g store.Grant) store.AuditEvent {
		return store.AuditEvent{Time: now, Actor: "test", Action: "grant.revoke", Target: g.ID}
	}
	disable := func(x *store.User) error {
		x.DisabledAt, x.SessionsEndedAt, x.UpdatedAt = now, now, now
		return nil
	}

	// A failed update revokes nothing.
	n := len(audit(t, s))
	refused := errors.New("refused")
	if _, _, err := s.UpdateUserRevokingGrants(ctx, u.ID, func(*store.User) error { return refused }, ev("user.update", u.ID),
		"user_disabled", grantEvent); !errors.Is(err, refused) {
		t.Fatalf("UpdateUserRevokingGrants with a failing update = %v, want its error", err)
	}
	if got, err := s.GetGrant(ctx, g1.grant.ID); err != nil || !got.RevokedAt.IsZero() {
		t.Errorf("grant after a failed update: revoked %v, %v", got.RevokedAt, err)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("a failed update appended %d audit events", got-n)
	}
	if _, _, err := s.UpdateUserRevokingGrants(ctx, "usr_missing", disable, ev("user.update", "usr_missing"),
		"user_disabled", grantEvent); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateUserRevokingGrants of a missing user = %v, want ErrNotFound", err)
	}

	feedBefore := revocations(t, s, 0, now)
	upd := store.AuditEvent{Time: now, Actor: "test", Action: "user.update", Target: u.ID}
	got, hashes, err := s.UpdateUserRevokingGrants(ctx, u.ID, disable, upd, "user_disabled", grantEvent)
	if err != nil {
		t.Fatalf("UpdateUserRevokingGrants: %v", err)
	}
	if !got.DisabledAt.Equal(now) {
		t.Errorf("returned user disabled at %v, want %v", got.DisabledAt, now)
	}
	if stored, err := s.GetUser(ctx, u.ID); err != nil || !stored.DisabledAt.Equal(now) {
		t.Errorf("stored user disabled at %v, %v", stored.DisabledAt, err)
	}
	if diff := cmp.Diff(hashes, []tokenfmt.Hash{g1.hash}); diff != "" {
		t.Errorf("hashes of the revoked access tokens (-got +want):\n%s", diff)
	}
	if g, err := s.GetGrant(ctx, g1.grant.ID); err != nil || !g.RevokedAt.Equal(now) || g.RevokeReason != "user_disabled" {
		t.Errorf("live grant: revoked %v %q, %v; want at %v for user_disabled", g.RevokedAt, g.RevokeReason, err, now)
	}
	if g, err := s.GetGrant(ctx, g2.grant.ID); err != nil || !g.RevokedAt.Equal(earlier) || g.RevokeReason != "earlier" {
		t.Errorf("grant revoked earlier: revoked %v %q, %v; want its first revocation kept", g.RevokedAt, g.RevokeReason, err)
	}
	if tok, _, err := s.LookupToken(ctx, g1.hash); err != nil || !tok.RevokedAt.Equal(now) {
		t.Errorf("access token: revoked %v, %v", tok.RevokedAt, err)
	}
	if _, err := s.RotateRefreshToken(ctx, g1.refresh, store.RefreshToken{Hash: tokenfmt.HashOf("next"), GrantID: g1.grant.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		nil, tokenfmt.Hash{}, nil, time.Time{}, now); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("RotateRefreshToken of a disabled user's grant = %v, want ErrRevoked", err)
	}
	// Another user's grant is untouched.
	if g, err := s.GetGrant(ctx, gb.grant.ID); err != nil || !g.RevokedAt.IsZero() {
		t.Errorf("other user's grant: revoked %v, %v", g.RevokedAt, err)
	}
	if tok, _, err := s.LookupToken(ctx, gb.hash); err != nil || !tok.RevokedAt.IsZero() {
		t.Errorf("other user's access token: revoked %v, %v", tok.RevokedAt, err)
	}
	// Audited: the update, then the grant.
	evs := audit(t, s)
	if len(evs) != n+2 || evs[n].Action != "user.update" || evs[n+1].Action != "grant.revoke" || evs[n+1].Target != g1.grant.ID {
		t.Errorf("audit after the update: %d new events %+v, want user.update then grant.revoke of %s", len(evs)-n, evs[n:], g1.grant.ID)
	}
	// Published: the grant and its access token.
	var refs []string
	for _, r := range revocations(t, s, 0, now)[len(feedBefore):] {
		refs = append(refs, r.Kind+":"+r.Ref)
	}
	slices.Sort(refs)
	want := []string{store.RevocationGrant + ":" + g1.grant.ID, store.RevocationToken + ":" + g1.access.ID}
	slices.Sort(want)
	if diff := cmp.Diff(refs, want); diff != "" {
		t.Errorf("revocation feed entries (-got +want):\n%s", diff)
	}
	// With nothing left to revoke it is a plain update.
	if _, hashes, err := s.UpdateUserRevokingGrants(ctx, u.ID, disable, upd, "password_reset", grantEvent); err != nil || len(hashes) != 0 {
		t.Errorf("second UpdateUserRevokingGrants = %v, %v; want no hashes", hashes, err)
	}
	if got := len(audit(t, s)); got != n+3 {
		t.Errorf("second update appended %d audit events, want 1", got-n-2)
	}
}

// testRevocationRacesIssuance issues access tokens from grants while
// DeleteConsent, UpdateUserRevokingGrants, then DeleteUser, run: no token whose issuance succeeded
// may stay live.
func testRevocationRacesIssuance(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateUserClient(t, s, "app", a.ID)
	u := mustCreateUser(t, s, "alice")
	now := base.Add(time.Minute)
	race := func(g store.Grant, revoke func() error) []tokenfmt.Hash {
		const n = 20
		var wg sync.WaitGroup
		var mu sync.Mutex
		var issued []tokenfmt.Hash
		for i := range n {
			wg.Go(func() {
				secret, err := tokenfmt.Generate(tokenfmt.PrefixAccess)
				if err != nil {
					t.Error(err)
					return
				}
				tok := store.Token{ID: ids.New(ids.Token, base), APIID: a.ID, Name: fmt.Sprint(i), Subject: u.ID, Hint: "jta_race",
					CreatedAt: base, UpdatedAt: base, ExpiresAt: now.Add(time.Hour), ClientID: c.ID, GrantID: g.ID}
				err = s.IssueGrantTokens(ctx, g.ID, &tok, tokenfmt.HashOf(secret), nil)
				switch {
				case err == nil:
					mu.Lock()
					issued = append(issued, tokenfmt.HashOf(secret))
					mu.Unlock()
				case !errors.Is(err, store.ErrRevoked) && !errors.Is(err, store.ErrNotFound):
					t.Errorf("IssueGrantTokens: %v", err)
				}
			})
		}
		if err := revoke(); err != nil {
			t.Errorf("revoke: %v", err)
		}
		wg.Wait()
		return issued
	}

	g := mustCreateUserGrant(t, s, u.ID, c)
	issued := race(g.grant, func() error {
		_, err := s.DeleteConsent(ctx, u.ID, c.ID, now, ev("consent.revoke", u.ID))
		return err
	})
	for _, h := range append(issued, g.hash) {
		if tok, _, err := s.LookupToken(ctx, h); err != nil || tok.Live(now) {
			t.Errorf("token issued during DeleteConsent: live %v, %v", tok.Live(now), err)
		}
	}

	g = mustCreateUserGrant(t, s, u.ID, c)
	issued = race(g.grant, func() error {
		_, _, err := s.UpdateUserRevokingGrants(ctx, u.ID, func(x *store.User) error { x.DisabledAt = now; return nil },
			ev("user.update", u.ID), "user_disabled", func(g store.Grant) store.AuditEvent { return ev("grant.revoke", g.ID) })
		return err
	})
	for _, h := range append(issued, g.hash) {
		if tok, _, err := s.LookupToken(ctx, h); err != nil || tok.Live(now) {
			t.Errorf("token issued during UpdateUserRevokingGrants: live %v, %v", tok.Live(now), err)
		}
	}

	g = mustCreateUserGrant(t, s, u.ID, c)
	issued = race(g.grant, func() error {
		_, err := s.DeleteUser(ctx, u.ID, ev("user.delete", u.ID))
		return err
	})
	for _, h := range append(issued, g.hash) {
		if _, _, err := s.LookupToken(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token issued during DeleteUser survived: %v", err)
		}
	}
}
