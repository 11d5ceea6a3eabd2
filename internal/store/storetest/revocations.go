package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

var revocationTests = []storeTest{
	{"RevocationOfToken", testRevocationOfToken},
	{"RevocationOfGrant", testRevocationOfGrant},
	{"RevocationsOfDeleteClient", testRevocationsOfDeleteClient},
	{"RevocationsOfDeleteUser", testRevocationsOfDeleteUser},
	{"RevocationsOfDeleteConsent", testRevocationsOfDeleteConsent},
	{"RevocationsOfDeleteAPI", testRevocationsOfDeleteAPI},
	{"NoRevocationForRotationOrUpdate", testNoRevocationForRotation},
	{"SecretRevocations", testSecretRevocations},
	{"RevokeAccessJWT", testRevokeAccessJWT},
	{"IsRevoked", testIsRevoked},
	{"RevocationsExpireAndPurge", testRevocationsExpireAndPurge},
	{"ListRevocationsFilterAndPaging", testListRevocationsFilter},
	{"RevocationsChanged", testRevocationsChanged},
	{"RevocationsCommitInSeqOrder", testRevocationsCommitInSeqOrder},
}

// ignoreSeq compares entries without their sequence numbers, which tests
// check on their own (increasing, in commit order).
var ignoreSeq = cmpopts.IgnoreFields(store.Revocation{}, "Seq")

// byRef sorts entries recorded by one call, whose order within the call is
// not specified.
var byRef = cmpopts.SortSlices(func(a, b store.Revocation) bool { return a.Kind+a.Ref < b.Kind+b.Ref })

// revocations returns every entry with Seq > after that is live at now,
// checking that the sequence numbers increase.
func revocations(t *testing.T, s store.Store, after int64, now time.Time) []store.Revocation {
	t.Helper()
	var out []store.Revocation
	for {
		page, err := s.ListRevocations(ctx, after, nil, now, 1000)
		if err != nil {
			t.Fatalf("ListRevocations: %v", err)
		}
		for _, r := range page {
			if r.Seq <= after {
				t.Fatalf("ListRevocations after %d returned seq %d", after, r.Seq)
			}
			after = r.Seq
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out
		}
	}
}

// lastSeq returns the newest sequence number in the feed (0 if none).
func lastSeq(t *testing.T, s store.Store) int64 {
	t.Helper()
	all := revocations(t, s, 0, base.Add(-365*24*time.Hour))
	if len(all) == 0 {
		return 0
	}
	return all[len(all)-1].Seq
}

func tokenRev(id, apiID string, revoked, expires time.Time) store.Revocation {
	return store.Revocation{Kind: store.RevocationToken, Ref: id, APIID: apiID, RevokedAt: revoked, ExpiresAt: expires}
}

func grantRev(id, apiID string, revoked time.Time) store.Revocation {
	return store.Revocation{Kind: store.RevocationGrant, Ref: id, APIID: apiID, RevokedAt: revoked, ExpiresAt: revoked.Add(store.RevocationTTL)}
}

func testRevocationOfToken(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	now := base.Add(time.Hour)
	forever, _ := mustCreateToken(t, s, a.ID, nil)
	soon, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = now.Add(90 * time.Minute) })
	late, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = now.Add(48 * time.Hour) })
	expired, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = now })
	for _, id := range []string{forever.ID, soon.ID, late.ID, expired.ID} {
		if _, _, err := s.RevokeToken(ctx, id, "leaked", now, ev("token.revoke", id)); err != nil {
			t.Fatalf("RevokeToken: %v", err)
		}
	}
	// An expired token needs no entry: no verifier would accept it.
	want := []store.Revocation{
		tokenRev(forever.ID, a.ID, now, now.Add(store.RevocationTTL)),
		tokenRev(soon.ID, a.ID, now, now.Add(90*time.Minute)),
		tokenRev(late.ID, a.ID, now, now.Add(store.RevocationTTL)),
	}
	got := revocations(t, s, 0, now)
	if diff := cmp.Diff(got, want, ignoreSeq); diff != "" {
		t.Errorf("entries (-got +want):\n%s", diff)
	}
	// Revoking again records nothing.
	if _, _, err := s.RevokeToken(ctx, forever.ID, "again", now.Add(time.Minute), ev("token.revoke", forever.ID)); err != nil {
		t.Fatal(err)
	}
	if again := revocations(t, s, 0, now); len(again) != len(want) {
		t.Errorf("second revoke: %d entries, want %d", len(again), len(want))
	}
}

func testRevocationOfGrant(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	g := mustGrant(t, s, e.client, e.user.ID, 0) // access token expires at base+1h
	revokedBefore, h2 := accessFixture(t, g.grant, base.Add(time.Second))
	expired, h3 := accessFixture(t, g.grant, base.Add(2*time.Second))
	expired.ExpiresAt = base.Add(time.Minute)
	for _, x := range []struct {
		tok  *store.Token
		hash tokenfmt.Hash
	}{{&revokedBefore, h2}, {&expired, h3}} {
		if err := s.IssueGrantTokens(ctx, g.grant.ID, x.tok, x.hash, nil); err != nil {
			t.Fatalf("IssueGrantTokens: %v", err)
		}
	}
	other := mustGrant(t, s, e.client, e.user.ID, time.Second)
	early := base.Add(10 * time.Second)
	if _, _, err := s.RevokeToken(ctx, revokedBefore.ID, "", early, ev("token.revoke", revokedBefore.ID)); err != nil {
		t.Fatal(err)
	}
	after := lastSeq(t, s)

	now := base.Add(30 * time.Minute)
	if _, err := s.RevokeGrant(ctx, g.grant.ID, "user_revoked", now, ev("grant.revoke", g.grant.ID)); err != nil {
		t.Fatalf("RevokeGrant: %v", err)
	}
	// The grant, for its JWTs, and the one access token it revoked now.
	want := []store.Revocation{
		grantRev(g.grant.ID, e.api.ID, now),
		tokenRev(g.access.ID, e.api.ID, now, g.access.ExpiresAt),
	}
	got := revocations(t, s, after, now)
	if diff := cmp.Diff(got, want, ignoreSeq, byRef); diff != "" {
		t.Errorf("entries of RevokeGrant (-got +want):\n%s", diff)
	}
	// Revoking again records nothing; another grant is untouched.
	if _, err := s.RevokeGrant(ctx, g.grant.ID, "again", now.Add(time.Minute), ev("grant.revoke", g.grant.ID)); err != nil {
		t.Fatal(err)
	}
	if again := revocations(t, s, after, now); len(again) != len(want) {
		t.Errorf("second RevokeGrant: %d entries, want %d", len(again), len(want))
	}
	for _, r := range revocations(t, s, 0, base) {
		if r.Ref == other.grant.ID || r.Ref == other.access.ID {
			t.Errorf("entry for the other grant: %+v", r)
		}
	}
}

func testRevocationsOfDeleteClient(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateUserClient(t, s, "app", a.ID)
	kept := mustCreateUserClient(t, s, "kept", a.ID)
	u := mustCreateUser(t, s, "alice")
	live := mustCreateUserGrant(t, s, u.ID, c)
	dead := mustCreateUserGrant(t, s, u.ID, c)
	keptGrant := mustCreateUserGrant(t, s, u.ID, kept)
	if _, err := s.RevokeGrant(ctx, dead.grant.ID, "", base, ev("grant.revoke", dead.grant.ID)); err != nil {
		t.Fatal(err)
	}
	machine, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ClientID, tok.ExpiresAt = c.ID, base.Add(10*time.Minute) })
	mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ClientID, tok.ExpiresAt = c.ID, base.Add(-time.Minute) }) // expired
	after := lastSeq(t, s)

	at := base.Add(time.Minute)
	e := ev("client.delete", c.ID)
	e.Time = at
	if _, err := s.DeleteClient(ctx, c.ID, e); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	want := []store.Revocation{
		grantRev(live.grant.ID, a.ID, at),
		tokenRev(live.access.ID, a.ID, at, live.access.ExpiresAt),
		tokenRev(machine.ID, a.ID, at, machine.ExpiresAt),
		// The client, for its JWT access tokens of no grant.
		{Kind: store.RevocationClient, Ref: c.ID, APIID: a.ID, RevokedAt: at, ExpiresAt: at.Add(store.RevocationTTL)},
	}
	if diff := cmp.Diff(revocations(t, s, after, at), want, ignoreSeq, byRef); diff != "" {
		t.Errorf("entries of DeleteClient (-got +want):\n%s", diff)
	}
	for _, r := range revocations(t, s, 0, base) {
		if r.Ref == keptGrant.grant.ID || r.Ref == keptGrant.access.ID {
			t.Errorf("entry for another client's grant: %+v", r)
		}
	}
}

func testRevocationsOfDeleteUser(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateUserClient(t, s, "app", a.ID)
	u := mustCreateUser(t, s, "alice")
	bob := mustCreateUser(t, s, "bob")
	live := mustCreateUserGrant(t, s, u.ID, c)
	dead := mustCreateUserGrant(t, s, u.ID, c)
	bobs := mustCreateUserGrant(t, s, bob.ID, c)
	if _, err := s.RevokeGrant(ctx, dead.grant.ID, "", base, ev("grant.revoke", dead.grant.ID)); err != nil {
		t.Fatal(err)
	}
	after := lastSeq(t, s)

	at := base.Add(time.Minute)
	e := ev("user.delete", u.ID)
	e.Time = at
	if _, err := s.DeleteUser(ctx, u.ID, e); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	want := []store.Revocation{
		grantRev(live.grant.ID, a.ID, at),
		tokenRev(live.access.ID, a.ID, at, live.access.ExpiresAt),
	}
	if diff := cmp.Diff(revocations(t, s, after, at), want, ignoreSeq, byRef); diff != "" {
		t.Errorf("entries of DeleteUser (-got +want):\n%s", diff)
	}
	for _, r := range revocations(t, s, 0, base) {
		if r.Ref == bobs.grant.ID || r.Ref == bobs.access.ID {
			t.Errorf("entry for another user's grant: %+v", r)
		}
	}
}

func testRevocationsOfDeleteConsent(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	c := mustCreateUserClient(t, s, "app", a.ID)
	other := mustCreateUserClient(t, s, "other", a.ID)
	u := mustCreateUser(t, s, "alice")
	live := mustCreateUserGrant(t, s, u.ID, c)
	otherGrant := mustCreateUserGrant(t, s, u.ID, other)
	if err := s.PutConsent(ctx, store.Consent{UserID: u.ID, ClientID: c.ID, APIID: a.ID, Scopes: []string{"repos:read"}, CreatedAt: base, UpdatedAt: base}, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	after := lastSeq(t, s)

	now := base.Add(time.Minute)
	if _, err := s.DeleteConsent(ctx, u.ID, c.ID, now, ev("consent.delete", c.ID)); err != nil {
		t.Fatalf("DeleteConsent: %v", err)
	}
	want := []store.Revocation{
		grantRev(live.grant.ID, a.ID, now),
		tokenRev(live.access.ID, a.ID, now, live.access.ExpiresAt),
	}
	if diff := cmp.Diff(revocations(t, s, after, now), want, ignoreSeq, byRef); diff != "" {
		t.Errorf("entries of DeleteConsent (-got +want):\n%s", diff)
	}
	for _, r := range revocations(t, s, 0, base) {
		if r.Ref == otherGrant.grant.ID || r.Ref == otherGrant.access.ID {
			t.Errorf("entry for another client's grant: %+v", r)
		}
	}
}

func testRevocationsOfDeleteAPI(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	b := mustCreateAPI(t, s, "beta")
	now := base.Add(time.Hour)
	live, _ := mustCreateToken(t, s, a.ID, nil)
	revoked, _ := mustCreateToken(t, s, a.ID, nil)
	mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = now.Add(-time.Second) })
	mustCreateToken(t, s, b.ID, func(tok *store.Token) { tok.ExpiresAt = now.Add(-time.Second) })
	if _, _, err := s.RevokeToken(ctx, revoked.ID, "", base, ev("token.revoke", revoked.ID)); err != nil {
		t.Fatal(err)
	}
	after := lastSeq(t, s)

	// Deleting an API with only expired tokens publishes nothing.
	if _, err := s.DeleteAPI(ctx, b.ID, false, now, ev("api.delete", b.ID)); err != nil {
		t.Fatalf("DeleteAPI: %v", err)
	}
	if got := revocations(t, s, after, now); len(got) != 0 {
		t.Errorf("DeleteAPI of expired tokens recorded %+v", got)
	}
	// A refused deletion records nothing either.
	if _, err := s.DeleteAPI(ctx, a.ID, false, now, ev("api.delete", a.ID)); err == nil {
		t.Fatal("DeleteAPI of an API in use succeeded")
	}
	if got := revocations(t, s, after, now); len(got) != 0 {
		t.Errorf("refused DeleteAPI recorded %+v", got)
	}
	// Forced: the live token is published, the revoked and the expired
	// ones are not (again).
	if _, err := s.DeleteAPI(ctx, a.ID, true, now, ev("api.delete", a.ID)); err != nil {
		t.Fatalf("DeleteAPI(force): %v", err)
	}
	want := []store.Revocation{tokenRev(live.ID, a.ID, now, now.Add(store.RevocationTTL))}
	if diff := cmp.Diff(revocations(t, s, after, now), want, ignoreSeq); diff != "" {
		t.Errorf("entries of DeleteAPI (-got +want):\n%s", diff)
	}
}

// testNoRevocationForRotation: rotating a token's or a client's secret, or
// updating a token, revokes nothing (the token id stays valid with its new
// secret), so nothing is published.
func testNoRevocationForRotation(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, _ := mustCreateToken(t, s, a.ID, nil)
	_, next := newToken(a.ID)
	if _, _, err := s.RotateToken(ctx, tok.ID, next, "h", base.Add(time.Minute), base, ev("token.rotate", tok.ID)); err != nil {
		t.Fatalf("RotateToken: %v", err)
	}
	if _, _, err := s.UpdateToken(ctx, tok.ID, func(x *store.Token) error { x.Scopes = nil; return nil }, ev("token.update", tok.ID)); err != nil {
		t.Fatalf("UpdateToken: %v", err)
	}
	secret := secretHash(t, tokenfmt.PrefixClientSecret)
	c := mustCreateClient(t, s, "app", a.ID, &secret)
	if _, err := s.RotateClientSecret(ctx, c.ID, secretHash(t, tokenfmt.PrefixClientSecret), "h", base.Add(time.Minute), base, ev("client.rotate", c.ID)); err != nil {
		t.Fatalf("RotateClientSecret: %v", err)
	}
	if got := revocations(t, s, 0, base); len(got) != 0 {
		t.Errorf("rotation and update recorded %+v", got)
	}
}

// testSecretRevocations: a secret that stops working before its time, its
// token staying live, is published as a "secret" entry naming the token
// (verifiers drop what they cached for it), and does not make IsRevoked
// true for the token.
func testSecretRevocations(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, _ := mustCreateToken(t, s, a.ID, nil)
	now := base.Add(time.Minute)
	// A replaced secret whose grace a leak report ends.
	_, next := newToken(a.ID)
	if _, _, err := s.RotateToken(ctx, tok.ID, next, "h", now.Add(time.Hour), now, ev("token.rotate", tok.ID)); err != nil {
		t.Fatalf("RotateToken: %v", err)
	}
	var replaced tokenfmt.Hash
	if _, hashes, err := s.UpdateToken(ctx, tok.ID, func(*store.Token) error { return nil }, ev("token.update", tok.ID)); err != nil {
		t.Fatalf("UpdateToken: %v", err)
	} else {
		for _, h := range hashes {
			if h != next {
				replaced = h
			}
		}
	}
	if _, changed, err := s.ExpireTokenSecret(ctx, replaced, now, ev("leak.report", tok.ID)); err != nil || !changed {
		t.Fatalf("ExpireTokenSecret = %v, %v; want changed", changed, err)
	}
	want := []store.Revocation{{Kind: store.RevocationSecret, Ref: tok.ID, APIID: a.ID, RevokedAt: now, ExpiresAt: now.Add(store.RevocationTTL)}}
	if diff := cmp.Diff(revocations(t, s, 0, now), want, ignoreSeq); diff != "" {
		t.Errorf("entries after a replaced secret's grace ended (-got +want):\n%s", diff)
	}
	// A rotation without grace.
	later := now.Add(time.Minute)
	_, third := newToken(a.ID)
	if _, _, err := s.RotateToken(ctx, tok.ID, third, "h", later, later, ev("token.rotate", tok.ID)); err != nil {
		t.Fatalf("RotateToken without grace: %v", err)
	}
	want = append(want, store.Revocation{Kind: store.RevocationSecret, Ref: tok.ID, APIID: a.ID, RevokedAt: later, ExpiresAt: later.Add(store.RevocationTTL)})
	if diff := cmp.Diff(revocations(t, s, 0, later), want, ignoreSeq); diff != "" {
		t.Errorf("entries after a rotation without grace (-got +want):\n%s", diff)
	}
	if revoked, err := s.IsRevoked(ctx, tok.ID); err != nil || revoked {
		t.Errorf("IsRevoked(%s) after its secrets ended = %v, %v; want false: the token lives", tok.ID, revoked, err)
	}
}

func testRevokeAccessJWT(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	now := base.Add(time.Hour)
	jti := ids.New(ids.Token, base)
	exp := now.Add(30 * time.Minute)
	n := len(audit(t, s))
	if err := s.RevokeAccessJWT(ctx, jti, a.ID, exp, now, ev("token.revoke", jti)); err != nil {
		t.Fatalf("RevokeAccessJWT: %v", err)
	}
	want := []store.Revocation{tokenRev(jti, a.ID, now, exp)}
	if diff := cmp.Diff(revocations(t, s, 0, now), want, ignoreSeq); diff != "" {
		t.Errorf("entries (-got +want):\n%s", diff)
	}
	if evs := audit(t, s); len(evs) != n+1 || evs[n].Action != "token.revoke" || evs[n].Target != jti {
		t.Errorf("RevokeAccessJWT appended %d audit events, want one token.revoke of %s", len(evs)-n, jti)
	}
	// Idempotent: a second revocation, even with another expiry, records
	// and audits nothing.
	if err := s.RevokeAccessJWT(ctx, jti, a.ID, exp.Add(time.Hour), now.Add(time.Minute), ev("token.revoke", jti)); err != nil {
		t.Fatalf("second RevokeAccessJWT: %v", err)
	}
	if diff := cmp.Diff(revocations(t, s, 0, now), want, ignoreSeq); diff != "" {
		t.Errorf("entries after the second revocation (-got +want):\n%s", diff)
	}
	if got := len(audit(t, s)); got != n+1 {
		t.Errorf("second RevokeAccessJWT appended %d audit events", got-n-1)
	}
	// A JWT past its exp is still recorded, and listed, while a verifier
	// may accept it within its leeway (RevocationGrace); after that it
	// needs no entry.
	after, events := lastSeq(t, s), len(audit(t, s))
	for _, tt := range []struct {
		name   string
		exp    time.Time
		record bool
	}{
		{"at exp", now, true},
		{"past exp, within the grace", now.Add(-store.RevocationGrace + time.Millisecond), true},
		{"at the end of the grace", now.Add(-store.RevocationGrace), false},
		{"long expired", now.Add(-time.Hour), false},
	} {
		jti := ids.New(ids.Token, base)
		if err := s.RevokeAccessJWT(ctx, jti, a.ID, tt.exp, now, ev("token.revoke", jti)); err != nil {
			t.Fatalf("%s: RevokeAccessJWT: %v", tt.name, err)
		}
		var want []store.Revocation
		if tt.record {
			want = []store.Revocation{tokenRev(jti, a.ID, now, tt.exp)}
		}
		if diff := cmp.Diff(revocations(t, s, after, now), want, ignoreSeq, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: entries (-got +want):\n%s", tt.name, diff)
		}
		wantEvents := events
		if tt.record {
			wantEvents++
		}
		if got := len(audit(t, s)); got != wantEvents {
			t.Errorf("%s: appended %d audit events, want %d", tt.name, got-events, wantEvents-events)
		}
		after, events = lastSeq(t, s), len(audit(t, s))
	}
	// Concurrent revocations of one jti record one entry.
	racy := ids.New(ids.Token, base)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := s.RevokeAccessJWT(ctx, racy, a.ID, exp, now, ev("token.revoke", racy)); err != nil {
				t.Errorf("concurrent RevokeAccessJWT: %v", err)
			}
		})
	}
	wg.Wait()
	count := 0
	for _, r := range revocations(t, s, 0, now) {
		if r.Ref == racy {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d entries for a jti revoked concurrently, want 1", count)
	}
}

func testIsRevoked(t *testing.T, s store.Store) {
	e := mustSetUpGrants(t, s)
	live := mustGrant(t, s, e.client, e.user.ID, 0)
	dead := mustGrant(t, s, e.client, e.user.ID, time.Second)
	now := base.Add(time.Minute)
	if _, err := s.RevokeGrant(ctx, dead.grant.ID, "", now, ev("grant.revoke", dead.grant.ID)); err != nil {
		t.Fatal(err)
	}
	jti := ids.New(ids.Token, base)
	if err := s.RevokeAccessJWT(ctx, jti, e.api.ID, now.Add(time.Hour), now, ev("token.revoke", jti)); err != nil {
		t.Fatal(err)
	}
	otherJTI := ids.New(ids.Token, base)
	gone := mustCreateClient(t, s, "gone", e.api.ID, nil)
	if _, err := s.DeleteClient(ctx, gone.ID, ev("client.delete", gone.ID)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ids  []string
		want bool
	}{
		{"none", nil, false},
		{"empty ids", []string{"", ""}, false},
		{"unknown", []string{otherJTI, "grt_missing"}, false},
		{"live grant and jti", []string{otherJTI, live.grant.ID}, false},
		{"revoked jti", []string{jti}, true},
		{"revoked jti, live grant", []string{jti, live.grant.ID}, true},
		{"revoked grant", []string{otherJTI, dead.grant.ID}, true},
		{"opaque token revoked with its grant", []string{dead.access.ID}, true},
		{"many", []string{"a", "b", "c", "d", "e", dead.grant.ID}, true},
		{"live client", []string{otherJTI, "", e.client.ID}, false},
		{"deleted client", []string{otherJTI, "", gone.ID}, true},
	}
	for _, tt := range tests {
		got, err := s.IsRevoked(ctx, tt.ids...)
		if err != nil || got != tt.want {
			t.Errorf("%s: IsRevoked = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	// A revoked grant stays revoked after its entry expired and was purged.
	later := now.Add(store.RevocationTTL + time.Hour)
	if _, err := s.PurgeRevocations(ctx, later, 100); err != nil {
		t.Fatal(err)
	}
	if got, err := s.IsRevoked(ctx, dead.grant.ID); err != nil || !got {
		t.Errorf("IsRevoked(grant) after purge = %v, %v; want true", got, err)
	}
}

func testRevocationsExpireAndPurge(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	now := base.Add(time.Hour)
	var want []store.Revocation
	for i := range 7 {
		jti := ids.New(ids.Token, base)
		exp := now.Add(time.Duration(i+1) * time.Minute)
		if err := s.RevokeAccessJWT(ctx, jti, a.ID, exp, now, ev("token.revoke", jti)); err != nil {
			t.Fatal(err)
		}
		want = append(want, tokenRev(jti, a.ID, now, exp))
	}
	// An entry is live until, not at, its expiry plus RevocationGrace: a
	// verifier accepts a JWT for its leeway past exp, and must still be
	// able to learn of its revocation.
	at := now.Add(3*time.Minute + store.RevocationGrace)
	if diff := cmp.Diff(revocations(t, s, 0, at), want[3:], ignoreSeq); diff != "" {
		t.Errorf("entries live at +3m+grace (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(revocations(t, s, 0, at.Add(-time.Millisecond)), want[2:], ignoreSeq); diff != "" {
		t.Errorf("entries live just before +3m+grace (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(revocations(t, s, 0, now.Add(3*time.Minute)), want, ignoreSeq); diff != "" {
		t.Errorf("entries live at +3m, past the first three expiries (-got +want):\n%s", diff)
	}
	// Purging past their expiry but within the grace removes nothing.
	if n, err := s.PurgeRevocations(ctx, now.Add(3*time.Minute), 100); err != nil || n != 0 {
		t.Fatalf("PurgeRevocations at +3m = %d, %v; want 0", n, err)
	}
	// Purging in batches removes exactly the expired ones.
	total := 0
	for {
		n, err := s.PurgeRevocations(ctx, at, 2)
		if err != nil {
			t.Fatalf("PurgeRevocations: %v", err)
		}
		if n > 2 {
			t.Fatalf("PurgeRevocations deleted %d, over its batch of 2", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total != 3 {
		t.Errorf("purged %d entries, want 3", total)
	}
	// Purged entries are gone even for a reader that looks at an earlier
	// time; the live ones stay.
	if diff := cmp.Diff(revocations(t, s, 0, base), want[3:], ignoreSeq); diff != "" {
		t.Errorf("entries after purge (-got +want):\n%s", diff)
	}
	// Sequence numbers are never reused, even once every entry is gone.
	last := lastSeq(t, s)
	if _, err := s.PurgeRevocations(ctx, now.Add(time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	jti := ids.New(ids.Token, base)
	if err := s.RevokeAccessJWT(ctx, jti, a.ID, now.Add(2*time.Hour), now, ev("token.revoke", jti)); err != nil {
		t.Fatal(err)
	}
	if got := revocations(t, s, 0, now); len(got) != 1 || got[0].Seq <= last {
		t.Errorf("entry after a full purge: %+v, want a seq above %d", got, last)
	}
}

func testListRevocationsFilter(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	b := mustCreateAPI(t, s, "beta")
	c := mustCreateAPI(t, s, "gamma")
	now := base.Add(time.Hour)
	byAPI := map[string][]string{}
	for i := range 9 {
		api := []string{a.ID, b.ID, c.ID}[i%3]
		jti := ids.New(ids.Token, base)
		if err := s.RevokeAccessJWT(ctx, jti, api, now.Add(time.Hour), now, ev("token.revoke", jti)); err != nil {
			t.Fatal(err)
		}
		byAPI[api] = append(byAPI[api], jti)
	}
	refs := func(rs []store.Revocation) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Ref)
		}
		return out
	}
	tests := []struct {
		name string
		apis []string
		want []string
	}{
		{"one api", []string{b.ID}, byAPI[b.ID]},
		{"two apis", []string{a.ID, c.ID}, nil}, // filled below: in seq order
		{"unknown api", []string{"api_missing"}, nil},
		{"no api", []string{}, nil},
	}
	for _, r := range revocations(t, s, 0, now) {
		if r.APIID == a.ID || r.APIID == c.ID {
			tests[1].want = append(tests[1].want, r.Ref)
		}
	}
	for _, tt := range tests {
		got, err := s.ListRevocations(ctx, 0, tt.apis, now, 100)
		if err != nil {
			t.Fatalf("%s: ListRevocations: %v", tt.name, err)
		}
		if diff := cmp.Diff(refs(got), tt.want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", tt.name, diff)
		}
	}
	// Paging by cursor and limit visits every entry once, in order.
	var paged []string
	var after int64
	for range 20 {
		page, err := s.ListRevocations(ctx, after, nil, now, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d entries, over the limit of 2", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, refs(page)...)
		after = page[len(page)-1].Seq
	}
	if diff := cmp.Diff(paged, refs(revocations(t, s, 0, now))); diff != "" {
		t.Errorf("paged (-got +want):\n%s", diff)
	}
}

// testRevocationsChanged: a commit that records entries closes the channel
// taken before it, at once; a change that records none does not.
func testRevocationsChanged(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, _ := mustCreateToken(t, s, a.ID, nil)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := s.RevocationsChanged()
	if closed(ch) {
		t.Fatal("RevocationsChanged closed before any change")
	}
	if _, _, err := s.UpdateToken(ctx, tok.ID, func(x *store.Token) error { x.Name = "x"; return nil }, ev("token.update", tok.ID)); err != nil {
		t.Fatal(err)
	}
	if closed(ch) {
		t.Error("an update that revokes nothing closed RevocationsChanged")
	}
	if _, _, err := s.RevokeToken(ctx, tok.ID, "", base, ev("token.revoke", tok.ID)); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Error("RevokeToken returned before RevocationsChanged was closed")
	}
	next := s.RevocationsChanged()
	if closed(next) {
		t.Fatal("the next RevocationsChanged is already closed")
	}
	if _, _, err := s.RevokeToken(ctx, tok.ID, "", base, ev("token.revoke", tok.ID)); err != nil {
		t.Fatal(err)
	}
	if closed(next) {
		t.Error("a revocation that changed nothing closed RevocationsChanged")
	}
	jti := ids.New(ids.Token, base)
	if err := s.RevokeAccessJWT(ctx, jti, a.ID, base.Add(time.Hour), base, ev("token.revoke", jti)); err != nil {
		t.Fatal(err)
	}
	if !closed(next) {
		t.Error("RevokeAccessJWT returned before RevocationsChanged was closed")
	}
}

// testRevocationsCommitInSeqOrder revokes many tokens concurrently while a
// reader tails the feed with a cursor, as a subscriber does. If a
// transaction could commit after one with a higher seq, the reader would
// move its cursor past the lower seq and never see it. The reader must see
// every seq exactly once, with no gap.
func testRevocationsCommitInSeqOrder(t *testing.T, s store.Store) {
	const tokens, writers = 240, 16
	a := mustCreateAPI(t, s, "acme")
	toks := make([]string, tokens)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < tokens; i += writers {
				tok, h := newToken(a.ID)
				if err := s.CreateToken(ctx, tok, h, store.AuditEvent{}); err != nil {
					t.Errorf("CreateToken: %v", err)
					return
				}
				toks[i] = tok.ID
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	now := base.Add(time.Hour)
	seen := make(chan []int64, 1)
	stop := make(chan struct{})
	go func() {
		var got []int64
		var after int64
		deadline := time.After(60 * time.Second)
		for len(got) < tokens {
			changed := s.RevocationsChanged()
			page, err := s.ListRevocations(ctx, after, nil, now, 7)
			if err != nil {
				t.Errorf("ListRevocations: %v", err)
				break
			}
			for _, r := range page {
				got = append(got, r.Seq)
				after = r.Seq
			}
			if len(page) > 0 {
				continue
			}
			select {
			case <-changed:
			case <-time.After(20 * time.Millisecond): // a missed wake-up must not hang the test
			case <-stop:
				// The writers are done: one last look, then report.
				page, err := s.ListRevocations(ctx, after, nil, now, 1000)
				if err != nil {
					t.Errorf("ListRevocations: %v", err)
				}
				for _, r := range page {
					got = append(got, r.Seq)
				}
				seen <- got
				return
			case <-deadline:
				t.Errorf("reader timed out with %d of %d entries", len(got), tokens)
				seen <- got
				return
			}
		}
		seen <- got
	}()

	for w := range writers {
		wg.Go(func() {
			for i := w; i < tokens; i += writers {
				if _, _, err := s.RevokeToken(ctx, toks[i], "", now, ev("token.revoke", toks[i])); err != nil {
					t.Errorf("RevokeToken: %v", err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	got := <-seen

	// The reader saw what the feed now holds, in the same order: nothing
	// committed behind its back.
	feed := revocations(t, s, 0, now)
	want := make([]int64, len(feed))
	for i, r := range feed {
		want[i] = r.Seq
	}
	if !slices.IsSorted(want) || len(want) != tokens {
		t.Errorf("the feed holds %d entries, in seq order %t; want %d in order", len(want), slices.IsSorted(want), tokens)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("sequence numbers the tailing reader saw (-got +want the feed's):\n%s", diff)
	}
	// And the feed holds every token once.
	var refs []string
	for _, r := range feed {
		refs = append(refs, r.Ref)
	}
	slices.Sort(refs)
	sorted := slices.Clone(toks)
	slices.Sort(sorted)
	if diff := cmp.Diff(refs, sorted); diff != "" {
		t.Errorf("revoked tokens in the feed (-got +want):\n%s", diff)
	}
}
