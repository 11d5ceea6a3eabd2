// Package storetest is the conformance suite for store.Store: the single
// specification of storage behaviour. Every backend runs it with Run.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// Run runs every conformance test. newStore must return a fresh, empty,
// migrated store for each call and arrange for it to be closed.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"APICRUD", testAPICRUD},
		{"APIUniqueness", testAPIUniqueness},
		{"DeleteAPI", testDeleteAPI},
		{"TokenRoundTrip", testTokenRoundTrip},
		{"TokenTimeZones", testTokenTimeZones},
		{"TokenDuplicateChangesNothing", testTokenDuplicate},
		{"TokenNotFound", testTokenNotFound},
		{"RotateToken", testRotateToken},
		{"RevokeToken", testRevokeToken},
		{"ExpireTokenSecret", testExpireTokenSecret},
		{"UpdateTokenFailureChangesNothing", testUpdateTokenFailure},
		{"ListTokens", testListTokens},
		{"NewestFirst", NewestFirst},
		{"LostUpdates", testLostUpdates},
		{"Usage", testUsage},
		{"UsageManyTokens", testUsageManyTokens},
		{"UsageFlushAppliedOnce", testUsageFlushAppliedOnce},
		{"UsageFlushBadAddress", testUsageFlushBadAddress},
		{"PurgeUsageFlushes", testPurgeUsageFlushes},
		{"Quota", testQuota},
		{"AuditChain", testAuditChain},
		{"ListAudit", testListAudit},
		{"ConcurrentAudit", testConcurrentAudit},
		{"AuditHead", testAuditHead},
		{"CancelledWrites", testCancelledWrites},
		{"PurgeTokens", testPurgeTokens},
	}
	for _, group := range [][]storeTest{clientTests, grantTests, userTests, keyTests, revocationTests} {
		for _, tt := range group {
			tests = append(tests, struct {
				name string
				fn   func(t *testing.T, s store.Store)
			}{tt.name, tt.fn})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// storeTest is one conformance test. Each group of entities keeps its tests
// in its own file (clients.go, grants.go, users.go, keys.go, revocations.go).
type storeTest struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

var ctx = context.Background()

// base is a fixed instant; tests never read the wall clock for stored times.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

func newAPI(name string) store.API {
	return store.API{
		ID: ids.New(ids.API, base), Name: name, Identifier: "https://" + name + ".example.com",
		Scopes: []string{"repos:read", "repos:write"}, KeyPrefix: "jtp",
		CreatedAt: base, UpdatedAt: base,
	}
}

func newToken(apiID string) (store.Token, tokenfmt.Hash) {
	secret, err := tokenfmt.Generate("jtp")
	if err != nil {
		panic(err)
	}
	return store.Token{
		ID: ids.New(ids.Token, base), APIID: apiID, Name: "ci", Subject: "cus_1",
		Scopes: []string{"repos:read"}, Hint: tokenfmt.Hint(secret),
		CreatedAt: base, UpdatedAt: base,
	}, tokenfmt.HashOf(secret)
}

func ev(action, target string) store.AuditEvent {
	return store.AuditEvent{Time: base, Actor: "test", Action: action, Target: target}
}

func mustCreateAPI(t *testing.T, s store.Store, name string) store.API {
	t.Helper()
	a := newAPI(name)
	if err := s.CreateAPI(ctx, a, ev("api.create", a.ID)); err != nil {
		t.Fatalf("CreateAPI: %v", err)
	}
	return a
}

func mustCreateToken(t *testing.T, s store.Store, apiID string, edit func(*store.Token)) (store.Token, tokenfmt.Hash) {
	t.Helper()
	tok, h := newToken(apiID)
	if edit != nil {
		edit(&tok)
	}
	if err := s.CreateToken(ctx, tok, h, ev("token.create", tok.ID)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return tok, h
}

// audit returns every audit event, oldest first.
func audit(t *testing.T, s store.Store) []store.AuditEvent {
	t.Helper()
	evs, err := s.ScanAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatalf("ScanAudit: %v", err)
	}
	return evs
}

func testAPICRUD(t *testing.T, s store.Store) {
	a := newAPI("acme")
	a.DefaultTTL, a.MaxTTL = time.Hour, 24*time.Hour
	a.ScopeDescriptions = map[string]string{"repos:read": "Read your repositories, \"private\" ones too"}
	if err := s.CreateAPI(ctx, a, ev("api.create", a.ID)); err != nil {
		t.Fatalf("CreateAPI: %v", err)
	}
	got, err := s.GetAPI(ctx, a.ID)
	if err != nil {
		t.Fatalf("GetAPI: %v", err)
	}
	if diff := cmp.Diff(got, a); diff != "" {
		t.Errorf("GetAPI (-got +want):\n%s", diff)
	}
	later := base.Add(time.Minute)
	upd, err := s.UpdateAPI(ctx, a.ID, func(x *store.API) error {
		x.Scopes = append(x.Scopes, "admin")
		x.ScopeDescriptions = map[string]string{"admin": "Do anything"}
		x.UpdatedAt = later
		return nil
	}, ev("api.update", a.ID))
	if err != nil {
		t.Fatalf("UpdateAPI: %v", err)
	}
	want := a
	want.Scopes = []string{"repos:read", "repos:write", "admin"}
	want.ScopeDescriptions = map[string]string{"admin": "Do anything"}
	want.UpdatedAt = later
	if diff := cmp.Diff(upd, want); diff != "" {
		t.Errorf("UpdateAPI result (-got +want):\n%s", diff)
	}
	list, err := s.ListAPIs(ctx)
	if err != nil {
		t.Fatalf("ListAPIs: %v", err)
	}
	if diff := cmp.Diff(list, []store.API{want}); diff != "" {
		t.Errorf("ListAPIs (-got +want):\n%s", diff)
	}
	if _, err := s.GetAPI(ctx, "api_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAPI(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateAPI(ctx, "api_missing", func(*store.API) error { return nil }, ev("api.update", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateAPI(missing) = %v, want ErrNotFound", err)
	}
	if got := len(audit(t, s)); got != 2 {
		t.Errorf("%d audit events, want 2 (create, update)", got)
	}
}

func testAPIUniqueness(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	// APIs are found by name or identifier: each must be unique, and one
	// API's name must not be another's identifier, either way round.
	var refused []store.API
	for _, tt := range []struct {
		name              string
		apiName, apiIdent string
	}{
		{"same name and identifier", "acme", ""},
		{"same identifier", "other", a.Identifier},
		{"name = another's identifier", a.Identifier, ""},
		{"identifier = another's name", "fifth", a.Name},
	} {
		x := newAPI(tt.apiName)
		if tt.apiIdent != "" {
			x.Identifier = tt.apiIdent
		}
		if err := s.CreateAPI(ctx, x, ev("api.create", x.ID)); !errors.Is(err, store.ErrAlreadyExists) {
			t.Errorf("CreateAPI(%s) = %v, want ErrAlreadyExists", tt.name, err)
		}
		refused = append(refused, x)
	}
	d := mustCreateAPI(t, s, "third")
	if _, err := s.UpdateAPI(ctx, d.ID, func(x *store.API) error { x.Name = "acme"; return nil }, ev("api.update", d.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("UpdateAPI(rename onto existing) = %v, want ErrAlreadyExists", err)
	}
	if _, err := s.UpdateAPI(ctx, d.ID, func(x *store.API) error { x.Name = a.Identifier; return nil }, ev("api.update", d.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("UpdateAPI(rename onto another's identifier) = %v, want ErrAlreadyExists", err)
	}
	// Its own identifier is no conflict.
	if _, err := s.UpdateAPI(ctx, d.ID, func(x *store.API) error { x.Name = d.Identifier; return nil }, ev("api.update", d.ID)); err != nil {
		t.Errorf("UpdateAPI(rename to its own identifier) = %v", err)
	}
	// Failed writes leave no audit trace: two creates and an update
	// succeeded.
	if got := len(audit(t, s)); got != 3 {
		t.Errorf("%d audit events, want 3", got)
	}
	for _, x := range refused {
		if _, err := s.GetAPI(ctx, x.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused API was stored: %v", err)
		}
	}
}

func testDeleteAPI(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	_, h := mustCreateToken(t, s, a.ID, nil)
	now := base.Add(time.Hour)
	if _, err := s.DeleteAPI(ctx, a.ID, false, now, ev("api.delete", a.ID)); !errors.Is(err, store.ErrAPIInUse) {
		t.Fatalf("DeleteAPI with live token = %v, want ErrAPIInUse", err)
	}
	if _, _, err := s.LookupToken(ctx, h); err != nil {
		t.Fatalf("refused delete changed the token: %v", err)
	}
	// An expired or revoked token does not keep the API alive.
	b := mustCreateAPI(t, s, "beta")
	mustCreateToken(t, s, b.ID, func(tok *store.Token) { tok.ExpiresAt = now.Add(-time.Second) })
	if _, err := s.DeleteAPI(ctx, b.ID, false, now, ev("api.delete", b.ID)); err != nil {
		t.Errorf("DeleteAPI with only expired tokens = %v", err)
	}
	hashes, err := s.DeleteAPI(ctx, a.ID, true, now, ev("api.delete", a.ID))
	if err != nil {
		t.Fatalf("DeleteAPI(force): %v", err)
	}
	if diff := cmp.Diff(hashes, []tokenfmt.Hash{h}); diff != "" {
		t.Errorf("DeleteAPI hashes (-got +want):\n%s", diff)
	}
	if _, _, err := s.LookupToken(ctx, h); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token of deleted API still found: %v", err)
	}
	if _, err := s.GetAPI(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted API still found: %v", err)
	}
	builtin := newAPI("jeton")
	builtin.Builtin = true
	if err := s.CreateAPI(ctx, builtin, ev("api.create", builtin.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteAPI(ctx, builtin.ID, true, now, ev("api.delete", builtin.ID)); !errors.Is(err, store.ErrBuiltin) {
		t.Errorf("DeleteAPI(builtin) = %v, want ErrBuiltin", err)
	}
	if _, err := s.DeleteAPI(ctx, "api_missing", true, now, ev("api.delete", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteAPI(missing) = %v, want ErrNotFound", err)
	}
}

func fullToken(apiID string) (store.Token, tokenfmt.Hash) {
	tok, h := newToken(apiID)
	tok.Metadata = json.RawMessage(`{"plan":"pro","seats":3}`)
	tok.AllowedCIDRs = []string{"10.0.0.0/8", "2001:db8::/32"}
	tok.RateLimit = &store.RateLimit{Limit: 100, Window: time.Minute}
	tok.Quota = &store.Quota{Remaining: 1000, RefillAmount: 1000, RefillInterval: store.RefillDaily, PeriodStart: base.Truncate(24 * time.Hour), Version: 1_780_000_000_123}
	tok.ExpiresAt = base.Add(30 * 24 * time.Hour)
	return tok, h
}

func testTokenRoundTrip(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, h := fullToken(a.ID)
	if err := s.CreateToken(ctx, tok, h, ev("token.create", tok.ID)); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	got, err := s.GetToken(ctx, tok.ID)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if diff := cmp.Diff(got, tok); diff != "" {
		t.Errorf("GetToken (-got +want):\n%s", diff)
	}
	got, exp, err := s.LookupToken(ctx, h)
	if err != nil {
		t.Fatalf("LookupToken: %v", err)
	}
	if diff := cmp.Diff(got, tok); diff != "" {
		t.Errorf("LookupToken (-got +want):\n%s", diff)
	}
	if !exp.IsZero() {
		t.Errorf("current secret expiry = %v, want zero", exp)
	}
	// A bare token (no optional settings) round-trips with nils intact.
	bare, bh := mustCreateToken(t, s, a.ID, nil)
	got, _, err = s.LookupToken(ctx, bh)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, bare); diff != "" {
		t.Errorf("bare token (-got +want):\n%s", diff)
	}
}

func testTokenTimeZones(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	for _, zone := range []string{"UTC", "America/Los_Angeles", "Asia/Kolkata"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Skipf("no tzdata for %s", zone)
		}
		expires := base.Add(time.Hour).In(loc)
		tok, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = expires })
		got, err := s.GetToken(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.ExpiresAt.Equal(expires) || got.ExpiresAt.Location() != time.UTC {
			t.Errorf("%s: ExpiresAt = %v, want %v in UTC", zone, got.ExpiresAt, expires)
		}
		// Boundaries: live one millisecond before expiry, dead at it.
		if !got.Live(expires.Add(-time.Millisecond)) || got.Live(expires) {
			t.Errorf("%s: Live is wrong at the expiry boundary", zone)
		}
	}
}

func testTokenDuplicate(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, h := mustCreateToken(t, s, a.ID, nil)
	before := len(audit(t, s))
	// Same secret hash, new id: refused, and nothing of it is stored.
	dup, _ := newToken(a.ID)
	if err := s.CreateToken(ctx, dup, h, ev("token.create", dup.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateToken(dup hash) = %v, want ErrAlreadyExists", err)
	}
	if _, err := s.GetToken(ctx, dup.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused token was stored: %v", err)
	}
	// Same id, new hash.
	_, h2 := newToken(a.ID)
	if err := s.CreateToken(ctx, tok, h2, ev("token.create", tok.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateToken(dup id) = %v, want ErrAlreadyExists", err)
	}
	if _, _, err := s.LookupToken(ctx, h2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused secret was stored: %v", err)
	}
	// Unknown API.
	orphan, oh := newToken("api_missing")
	if err := s.CreateToken(ctx, orphan, oh, ev("token.create", orphan.ID)); err == nil {
		t.Errorf("CreateToken for a missing API succeeded")
	}
	if got := len(audit(t, s)); got != before {
		t.Errorf("failed creates appended %d audit events", got-before)
	}
}

func testTokenNotFound(t *testing.T, s store.Store) {
	if _, err := s.GetToken(ctx, "tok_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetToken = %v", err)
	}
	if _, _, err := s.LookupToken(ctx, tokenfmt.Hash{1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupToken = %v", err)
	}
	if _, _, err := s.UpdateToken(ctx, "tok_missing", func(*store.Token) error { return nil }, ev("token.update", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateToken = %v", err)
	}
	if _, _, err := s.RevokeToken(ctx, "tok_missing", "", base, ev("token.revoke", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeToken = %v", err)
	}
	if _, _, err := s.RotateToken(ctx, "tok_missing", tokenfmt.Hash{2}, "h", base, base, ev("token.rotate", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateToken = %v", err)
	}
	if got := len(audit(t, s)); got != 0 {
		t.Errorf("%d audit events for failed calls", got)
	}
}

func testRotateToken(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, h1 := mustCreateToken(t, s, a.ID, nil)
	now := base.Add(time.Hour)
	grace := now.Add(10 * time.Minute)
	_, h2 := newToken(a.ID)
	got, changed, err := s.RotateToken(ctx, tok.ID, h2, "jtp_…abcd", grace, now, ev("token.rotate", tok.ID))
	if err != nil {
		t.Fatalf("RotateToken: %v", err)
	}
	if got.Hint != "jtp_…abcd" || !got.RotatedAt.Equal(now) {
		t.Errorf("rotated token hint %q rotated %v", got.Hint, got.RotatedAt)
	}
	if diff := cmp.Diff(changed, []tokenfmt.Hash{h1, h2}, cmpopts.SortSlices(func(a, b tokenfmt.Hash) bool { return string(a[:]) < string(b[:]) })); diff != "" {
		t.Errorf("changed hashes (-got +want):\n%s", diff)
	}
	if _, exp, err := s.LookupToken(ctx, h1); err != nil || !exp.Equal(grace) {
		t.Errorf("old secret: expiry %v, err %v; want %v", exp, err, grace)
	}
	if _, exp, err := s.LookupToken(ctx, h2); err != nil || !exp.IsZero() {
		t.Errorf("new secret: expiry %v, err %v; want current", exp, err)
	}
	// A second rotation drops the oldest secret; without grace the previous
	// one goes at once.
	_, h3 := newToken(a.ID)
	if _, _, err := s.RotateToken(ctx, tok.ID, h3, "jtp_…efgh", now, now, ev("token.rotate", tok.ID)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []tokenfmt.Hash{h1, h2} {
		if _, _, err := s.LookupToken(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("retired secret still found: %v", err)
		}
	}
	if _, _, err := s.LookupToken(ctx, h3); err != nil {
		t.Errorf("new secret: %v", err)
	}
	// Rotating onto an existing hash is refused and changes nothing.
	other, oh := mustCreateToken(t, s, a.ID, nil)
	if _, _, err := s.RotateToken(ctx, tok.ID, oh, "x", grace, now, ev("token.rotate", tok.ID)); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("RotateToken onto a used hash = %v", err)
	}
	if got, _, err := s.LookupToken(ctx, oh); err != nil || got.ID != other.ID {
		t.Errorf("other token's secret: %v %v", got.ID, err)
	}
	if _, exp, err := s.LookupToken(ctx, h3); err != nil || !exp.IsZero() {
		t.Errorf("failed rotation changed the current secret: %v %v", exp, err)
	}
}

func testRevokeToken(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, h := mustCreateToken(t, s, a.ID, nil)
	now := base.Add(time.Hour)
	got, hashes, err := s.RevokeToken(ctx, tok.ID, "leaked", now, ev("token.revoke", tok.ID))
	if err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if !got.RevokedAt.Equal(now) || got.RevokeReason != "leaked" || got.Live(now) {
		t.Errorf("revoked token: %+v", got)
	}
	if diff := cmp.Diff(hashes, []tokenfmt.Hash{h}); diff != "" {
		t.Errorf("hashes (-got +want):\n%s", diff)
	}
	stored, _, err := s.LookupToken(ctx, h)
	if err != nil || !stored.RevokedAt.Equal(now) {
		t.Errorf("stored revocation: %v %v", stored.RevokedAt, err)
	}
	// Revoking again keeps the first revocation and audits nothing.
	n := len(audit(t, s))
	again, _, err := s.RevokeToken(ctx, tok.ID, "again", now.Add(time.Hour), ev("token.revoke", tok.ID))
	if err != nil || !again.RevokedAt.Equal(now) || again.RevokeReason != "leaked" {
		t.Errorf("second revoke: %v %q %v", again.RevokedAt, again.RevokeReason, err)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("second revoke appended %d audit events", got-n)
	}
}

func testExpireTokenSecret(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, h1 := mustCreateToken(t, s, a.ID, nil)
	now := base.Add(time.Hour)
	grace := now.Add(10 * time.Minute)
	_, h2 := newToken(a.ID)
	if _, _, err := s.RotateToken(ctx, tok.ID, h2, "jtp_…abcd", grace, now, ev("token.rotate", tok.ID)); err != nil {
		t.Fatal(err)
	}
	n := len(audit(t, s))

	// Not a retired secret: the current one, or unknown. Nothing changes.
	for name, h := range map[string]tokenfmt.Hash{"current": h2, "unknown": {1}} {
		if _, _, err := s.ExpireTokenSecret(ctx, h, now, ev("leak.report", tok.ID)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ExpireTokenSecret(%s) = %v, want ErrNotFound", name, err)
		}
	}
	if _, exp, err := s.LookupToken(ctx, h2); err != nil || !exp.IsZero() {
		t.Errorf("current secret after refusals: expiry %v, err %v", exp, err)
	}

	// The retired secret in its grace period ends now; the current one
	// stays, and the token is not revoked.
	at := now.Add(time.Minute)
	got, changed, err := s.ExpireTokenSecret(ctx, h1, at, ev("leak.report", tok.ID))
	if err != nil || !changed || got.ID != tok.ID || !got.RevokedAt.IsZero() {
		t.Fatalf("ExpireTokenSecret = %s revoked %v, %v, %v; want the live token, true", got.ID, got.RevokedAt, changed, err)
	}
	if _, exp, err := s.LookupToken(ctx, h1); err != nil || !exp.Equal(at) {
		t.Errorf("retired secret: expiry %v, err %v; want %v", exp, err, at)
	}
	if _, exp, err := s.LookupToken(ctx, h2); err != nil || !exp.IsZero() {
		t.Errorf("current secret: expiry %v, err %v; want current", exp, err)
	}
	evs := audit(t, s)
	if len(evs) != n+1 || evs[len(evs)-1].Action != "leak.report" {
		t.Errorf("audit after expiring: %d new events", len(evs)-n)
	}

	// Again, or later: its grace is over, nothing changes.
	if _, changed, err := s.ExpireTokenSecret(ctx, h1, at.Add(time.Minute), ev("leak.report", tok.ID)); err != nil || changed {
		t.Errorf("ExpireTokenSecret of an expired secret = %v, %v; want false, nil", changed, err)
	}
	if _, exp, _ := s.LookupToken(ctx, h1); !exp.Equal(at) {
		t.Errorf("expired secret's expiry moved to %v", exp)
	}
	if got := len(audit(t, s)); got != n+1 {
		t.Errorf("a change of nothing appended %d audit events", got-n-1)
	}
}

func testUpdateTokenFailure(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, _ := mustCreateToken(t, s, a.ID, nil)
	n := len(audit(t, s))
	boom := errors.New("boom")
	if _, _, err := s.UpdateToken(ctx, tok.ID, func(x *store.Token) error { x.Name = "changed"; return boom }, ev("token.update", tok.ID)); !errors.Is(err, boom) {
		t.Errorf("UpdateToken = %v, want the updater's error", err)
	}
	got, err := s.GetToken(ctx, tok.ID)
	if err != nil || got.Name != tok.Name {
		t.Errorf("failed update changed the token: %q %v", got.Name, err)
	}
	if got := len(audit(t, s)); got != n {
		t.Errorf("failed update appended %d audit events", got-n)
	}
	upd, hashes, err := s.UpdateToken(ctx, tok.ID, func(x *store.Token) error {
		x.Name, x.Scopes = "renamed", []string{"repos:read", "repos:write"}
		x.RateLimit = &store.RateLimit{Limit: 5, Window: time.Second}
		return nil
	}, ev("token.update", tok.ID))
	if err != nil || len(hashes) != 1 {
		t.Fatalf("UpdateToken: %v (%d hashes)", err, len(hashes))
	}
	got, _ = s.GetToken(ctx, tok.ID)
	if diff := cmp.Diff(got, upd); diff != "" {
		t.Errorf("stored update (-got +want):\n%s", diff)
	}
}

func testListTokens(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	b := mustCreateAPI(t, s, "beta")
	var want []string
	for i := range 7 {
		api := a.ID
		if i%3 == 0 {
			api = b.ID
		}
		tok, _ := mustCreateToken(t, s, api, func(tok *store.Token) {
			tok.ID = ids.New(ids.Token, base.Add(time.Duration(i)*time.Second))
			tok.Subject = fmt.Sprintf("cus_%d", i%2)
		})
		if api == a.ID && tok.Subject == "cus_1" {
			want = append([]string{tok.ID}, want...) // newest first
		}
	}
	var got []string
	cursor := ""
	for range 10 {
		page, next, err := s.ListTokens(ctx, store.TokenFilter{APIID: a.ID, Subject: "cus_1", After: cursor, Limit: 1})
		if err != nil {
			t.Fatalf("ListTokens: %v", err)
		}
		for _, tok := range page {
			got = append(got, tok.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("paged list (-got +want):\n%s", diff)
	}
	all, next, err := s.ListTokens(ctx, store.TokenFilter{})
	if err != nil || len(all) != 7 || next != "" {
		t.Errorf("unfiltered list: %d tokens, next %q, err %v", len(all), next, err)
	}
}

func testLostUpdates(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, _ := mustCreateToken(t, s, a.ID, nil)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, _, err := s.UpdateToken(ctx, tok.ID, func(x *store.Token) error {
				x.UseCount++
				return nil
			}, ev("token.update", tok.ID))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("UpdateToken: %v", err)
		}
	}
	got, err := s.GetToken(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UseCount != n {
		t.Errorf("UseCount = %d after %d concurrent increments: lost updates", got.UseCount, n)
	}
}

func testUsage(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, _ := mustCreateToken(t, s, a.ID, nil)
	h0 := base.Truncate(time.Hour)
	h1 := h0.Add(time.Hour)
	d := []store.UsageDelta{{
		TokenID:    tok.ID,
		Hours:      []store.UsageHour{{Hour: h0, Allowed: 3, Denied: 1}, {Hour: h1, Allowed: 2}},
		LastUsedAt: h1.Add(time.Minute), LastUsedIP: "192.0.2.1",
	}, {
		TokenID: "tok_deleted_meanwhile",
		Hours:   []store.UsageHour{{Hour: h0, Allowed: 1}}, LastUsedAt: h0, LastUsedIP: "192.0.2.9",
	}}
	if err := s.RecordUsage(ctx, flush(d, nil)); err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	// A second, older delta adds counts but does not move last use back.
	if err := s.RecordUsage(ctx, flush([]store.UsageDelta{{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: h0, Allowed: 1, Denied: 4}}, LastUsedAt: h0, LastUsedIP: "192.0.2.2"}}, nil)); err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	hours, err := s.Usage(ctx, tok.ID, h0, h1.Add(time.Hour))
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	want := []store.UsageHour{{Hour: h0, Allowed: 4, Denied: 5}, {Hour: h1, Allowed: 2}}
	if diff := cmp.Diff(hours, want); diff != "" {
		t.Errorf("Usage (-got +want):\n%s", diff)
	}
	if hours, _ := s.Usage(ctx, tok.ID, h1, h1.Add(time.Hour)); len(hours) != 1 {
		t.Errorf("Usage range [h1, h1+1h) returned %d hours, want 1", len(hours))
	}
	got, _ := s.GetToken(ctx, tok.ID)
	if got.UseCount != 6 || !got.LastUsedAt.Equal(h1.Add(time.Minute)) || got.LastUsedIP != "192.0.2.1" {
		t.Errorf("last use: count %d at %v from %q", got.UseCount, got.LastUsedAt, got.LastUsedIP)
	}
}

// flushSeq numbers the flushes of flush.
var flushSeq atomic.Int64

// flush returns a usage flush of usage and quota under a fresh id.
func flush(usage []store.UsageDelta, quota []store.QuotaDelta) store.UsageFlush {
	return store.UsageFlush{ID: fmt.Sprint("flush-", flushSeq.Add(1)), At: base, Usage: usage, Quota: quota}
}

// testUsageFlushAppliedOnce: a flush sent again under its id (its first
// reply was lost) changes nothing, usage, last use and quota alike, also
// when sent concurrently; a flush without an id is refused and changes
// nothing.
func testUsageFlushAppliedOnce(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	remaining := int64(100)
	tok, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.Quota = &store.Quota{Remaining: remaining} })
	h0 := base.Truncate(time.Hour)
	f := store.UsageFlush{ID: "node-a/1", At: base,
		Usage: []store.UsageDelta{{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: h0, Allowed: 3, Denied: 1}}, LastUsedAt: h0.Add(time.Minute), LastUsedIP: "192.0.2.1"}},
		Quota: []store.QuotaDelta{{TokenID: tok.ID, Consumed: 3}},
	}
	check := func(when string, allowed, denied, uses, remaining int64) {
		t.Helper()
		hours, err := s.Usage(ctx, tok.ID, h0, h0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []store.UsageHour{{Hour: h0, Allowed: allowed, Denied: denied}}
		if diff := cmp.Diff(hours, want); diff != "" {
			t.Errorf("%s: Usage (-got +want):\n%s", when, diff)
		}
		got, err := s.GetToken(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.UseCount != uses || got.Quota == nil || got.Quota.Remaining != remaining {
			t.Errorf("%s: use count %d, quota %+v; want %d uses, %d remaining", when, got.UseCount, got.Quota, uses, remaining)
		}
	}
	if err := s.RecordUsage(ctx, f); err != nil {
		t.Fatal(err)
	}
	check("after the flush", 3, 1, 3, 97)
	// sendAtOnce sends f n times concurrently.
	sendAtOnce := func(what string, f store.UsageFlush, n int) {
		t.Helper()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if err := s.RecordUsage(ctx, f); err != nil {
					t.Errorf("%s: %v", what, err)
				}
			})
		}
		wg.Wait()
	}
	sendAtOnce("the flush sent again", f, 10)
	check("after sending it again ten times", 3, 1, 3, 97)

	// Of one new flush sent 20 times at once, one is applied.
	g := f
	g.ID = "node-a/2"
	sendAtOnce("a new flush sent concurrently", g, 20)
	check("after a second flush, sent 20 times at once", 6, 2, 6, 94)

	// The same id from another node would be a bug of the caller, but
	// another id with the same deltas is another flush.
	g.ID = "node-b/1"
	if err := s.RecordUsage(ctx, g); err != nil {
		t.Fatal(err)
	}
	check("after a third flush", 9, 3, 9, 91)

	g.ID = ""
	if err := s.RecordUsage(ctx, g); err == nil {
		t.Error("a flush without an id was accepted")
	}
	check("after a flush without an id", 9, 3, 9, 91)

	// A flush that says node-a/1 and node-a/2 were written makes the store
	// forget them (the node will not send them again), whether it is
	// applied or not: sent again, they would now count.
	forget := store.UsageFlush{ID: "node-a/3", At: base, Written: []string{"node-a/1", "node-a/2"}}
	if err := s.RecordUsage(ctx, forget); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(ctx, f); err != nil {
		t.Fatal(err)
	}
	check("after node-a/1 was forgotten and sent again", 12, 4, 12, 88)
	if n, err := s.PurgeUsageFlushes(ctx, base.Add(time.Hour), 100); err != nil || n != 2 {
		t.Errorf("PurgeUsageFlushes = %d, %v; want 2 (node-a/1 again and node-b/1; a flush that only forgets keeps no id)", n, err)
	}
}

// testUsageFlushBadAddress: a last-use address that is not an IP address,
// or carries a zone in any bytes, never makes a flush fail (it would be
// sent again, unchanged, for ever): it is stored without the zone, or as
// "".
func testUsageFlushBadAddress(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	h0 := base.Truncate(time.Hour)
	for _, tt := range []struct{ ip, want string }{
		{"fe80::1%\xff", "fe80::1"},
		{"fe80::1%eth0", "fe80::1"},
		{"not an address \xff", ""},
		{"192.0.2.1", "192.0.2.1"},
	} {
		tok, _ := mustCreateToken(t, s, a.ID, nil)
		d := []store.UsageDelta{{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: h0, Allowed: 1}}, LastUsedAt: h0, LastUsedIP: tt.ip}}
		if err := s.RecordUsage(ctx, flush(d, nil)); err != nil {
			t.Errorf("last use from %q: RecordUsage: %v", tt.ip, err)
			continue
		}
		got, err := s.GetToken(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.LastUsedIP != tt.want || got.UseCount != 1 {
			t.Errorf("last use from %q: stored %q with %d uses, want %q and 1", tt.ip, got.LastUsedIP, got.UseCount, tt.want)
		}
	}
}

// testPurgeUsageFlushes: the purge forgets only ids recorded before the
// cutoff, at most limit at a time; a forgotten id is a new flush again.
func testPurgeUsageFlushes(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	tok, _ := mustCreateToken(t, s, a.ID, nil)
	for i := range 5 {
		f := store.UsageFlush{ID: fmt.Sprint("f", i), At: base.Add(time.Duration(i) * time.Minute),
			Usage: []store.UsageDelta{{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: base.Truncate(time.Hour), Allowed: 1}}}}}
		if err := s.RecordUsage(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	purge := func(cutoff time.Time, limit, want int) {
		t.Helper()
		if n, err := s.PurgeUsageFlushes(ctx, cutoff, limit); err != nil || n != want {
			t.Fatalf("PurgeUsageFlushes(%v, %d) = %d, %v; want %d", cutoff.Sub(base), limit, n, err, want)
		}
	}
	purge(base, 100, 0)
	purge(base.Add(3*time.Minute), 2, 2)
	purge(base.Add(3*time.Minute), 100, 1)
	purge(base.Add(3*time.Minute), 100, 0)
	uses := func() int64 {
		t.Helper()
		got, err := s.GetToken(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.UseCount
	}
	before := uses()
	for _, id := range []string{"f3", "f0"} { // kept, then forgotten
		f := store.UsageFlush{ID: id, At: base, Usage: []store.UsageDelta{{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: base.Truncate(time.Hour), Allowed: 1}}}}}
		if err := s.RecordUsage(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if got := uses(); got != before+1 {
		t.Errorf("use count %d after sending a kept and a forgotten id again, want %d", got, before+1)
	}
}

// testUsageManyTokens records one flush of 300 tokens in one call, in which
// one token appears twice (both deltas count; the later use wins) and one
// no longer exists.
func testUsageManyTokens(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	h0 := base.Truncate(time.Hour)
	h1 := h0.Add(time.Hour)
	var toks []store.Token
	var deltas []store.UsageDelta
	for i := range 300 {
		tok, _ := mustCreateToken(t, s, a.ID, nil)
		toks = append(toks, tok)
		deltas = append(deltas, store.UsageDelta{TokenID: tok.ID, Hours: []store.UsageHour{{Hour: h0, Allowed: int64(i + 1), Denied: 1}},
			LastUsedAt: h0.Add(time.Duration(i) * time.Second), LastUsedIP: "192.0.2.1"})
	}
	twice := toks[7]
	deltas = append(deltas,
		store.UsageDelta{TokenID: twice.ID, Hours: []store.UsageHour{{Hour: h0, Allowed: 10}, {Hour: h1, Allowed: 5, Denied: 2}},
			LastUsedAt: h1.Add(time.Minute), LastUsedIP: "192.0.2.7"},
		store.UsageDelta{TokenID: "tok_deleted_meanwhile", Hours: []store.UsageHour{{Hour: h0, Allowed: 1}}, LastUsedAt: h0, LastUsedIP: "192.0.2.9"})
	if err := s.RecordUsage(ctx, flush(deltas, nil)); err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	for i, tok := range toks {
		want := []store.UsageHour{{Hour: h0, Allowed: int64(i + 1), Denied: 1}}
		wantCount, wantAt, wantIP := int64(i+1), h0.Add(time.Duration(i)*time.Second), "192.0.2.1"
		if tok.ID == twice.ID {
			want = []store.UsageHour{{Hour: h0, Allowed: int64(i + 1 + 10), Denied: 1}, {Hour: h1, Allowed: 5, Denied: 2}}
			wantCount, wantAt, wantIP = int64(i+1+15), h1.Add(time.Minute), "192.0.2.7"
		}
		hours, err := s.Usage(ctx, tok.ID, h0, h1.Add(time.Hour))
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		if diff := cmp.Diff(hours, want); diff != "" {
			t.Errorf("token %d: Usage (-got +want):\n%s", i, diff)
		}
		got, _ := s.GetToken(ctx, tok.ID)
		if got.UseCount != wantCount || !got.LastUsedAt.Equal(wantAt) || got.LastUsedIP != wantIP {
			t.Errorf("token %d: last use: count %d at %v from %q, want %d at %v from %q", i, got.UseCount, got.LastUsedAt, got.LastUsedIP, wantCount, wantAt, wantIP)
		}
	}
}

func testQuota(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	day := base.Truncate(24 * time.Hour)
	tok, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) {
		tok.Quota = &store.Quota{Remaining: 10, RefillAmount: 100, RefillInterval: store.RefillDaily, PeriodStart: day}
	})
	plain, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.Quota = &store.Quota{Remaining: 5} })
	steps := []struct {
		setPlain    *store.Quota // if set, plain's quota is set to it first
		deltas      []store.QuotaDelta
		wantTok     int64
		wantPlain   int64
		description string
	}{
		{nil, []store.QuotaDelta{{TokenID: tok.ID, PeriodStart: day, RefillAmount: 100, Consumed: 4}, {TokenID: plain.ID, Consumed: 2}}, 6, 3, "same period subtracts"},
		{nil, []store.QuotaDelta{{TokenID: tok.ID, PeriodStart: day, RefillAmount: 100, Consumed: 50}, {TokenID: plain.ID, Consumed: 9}}, 0, 0, "clamped at zero"},
		{nil, []store.QuotaDelta{{TokenID: tok.ID, PeriodStart: day.Add(24 * time.Hour), RefillAmount: 100, Consumed: 7}}, 93, 0, "new period refills first"},
		{nil, []store.QuotaDelta{{TokenID: tok.ID, PeriodStart: day, RefillAmount: 100, Consumed: 7}}, 93, 0, "stale period is dropped"},
		// Counted against a quota set since (by a PATCH): neither taken
		// from the quota that replaced it nor refilled to its old amount.
		{nil, []store.QuotaDelta{{TokenID: tok.ID, PeriodStart: day.Add(48 * time.Hour), RefillAmount: 100, Consumed: 1, Version: 1}}, 93, 0, "another quota version is dropped"},
		{&store.Quota{Remaining: 50, Version: 2}, []store.QuotaDelta{{TokenID: plain.ID, Consumed: 9}}, 93, 50, "the replaced version's delta is dropped"},
		{nil, []store.QuotaDelta{{TokenID: plain.ID, Consumed: 9, Version: 2}}, 93, 41, "the new version's delta subtracts"},
	}
	for _, st := range steps {
		if st.setPlain != nil {
			if _, _, err := s.UpdateToken(ctx, plain.ID, func(tok *store.Token) error {
				tok.Quota = st.setPlain
				return nil
			}, ev("token.update", plain.ID)); err != nil {
				t.Fatalf("%s: UpdateToken: %v", st.description, err)
			}
		}
		if err := s.RecordUsage(ctx, flush(nil, st.deltas)); err != nil {
			t.Fatalf("%s: RecordUsage: %v", st.description, err)
		}
		g1, _ := s.GetToken(ctx, tok.ID)
		g2, _ := s.GetToken(ctx, plain.ID)
		if g1.Quota.Remaining != st.wantTok || g2.Quota.Remaining != st.wantPlain {
			t.Errorf("%s: remaining %d and %d, want %d and %d", st.description, g1.Quota.Remaining, g2.Quota.Remaining, st.wantTok, st.wantPlain)
		}
	}
}

func testAuditChain(t *testing.T, s store.Store) {
	details := json.RawMessage(`{"name":"ci"}`)
	for i := range 5 {
		e := ev("token.create", fmt.Sprintf("tok_%d", i))
		e.Details = details
		e.RemoteAddr = "192.0.2.7"
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	evs := audit(t, s)
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5", len(evs))
	}
	prev := ""
	for i, e := range evs {
		if e.Seq != int64(i+1) || e.PrevHash != prev || e.Hash != e.ChainHash(prev) || e.ID == "" {
			t.Errorf("event %d breaks the chain: %+v", i, e)
		}
		if string(e.Details) != string(details) || e.RemoteAddr != "192.0.2.7" || !e.Time.Equal(base) {
			t.Errorf("event %d fields did not round-trip: %+v", i, e)
		}
		prev = e.Hash
	}
	if err := s.AppendAudit(ctx, store.AuditEvent{}); err == nil {
		t.Errorf("AppendAudit without an action succeeded")
	}
}

func testListAudit(t *testing.T, s store.Store) {
	for i := range 6 {
		e := ev([]string{"token.create", "token.revoke"}[i%2], fmt.Sprintf("tok_%d", i%3))
		e.Time = base.Add(time.Duration(i) * time.Minute)
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	evs, next, err := s.ListAudit(ctx, store.AuditFilter{Action: "token.revoke", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Seq != 6 || evs[1].Seq != 4 || next != 4 {
		t.Fatalf("first page: %d events, next %d", len(evs), next)
	}
	evs, next, err = s.ListAudit(ctx, store.AuditFilter{Action: "token.revoke", Limit: 2, Before: next})
	if err != nil || len(evs) != 1 || evs[0].Seq != 2 || next != 0 {
		t.Fatalf("second page: %v, next %d, err %v", evs, next, err)
	}
	evs, _, err = s.ListAudit(ctx, store.AuditFilter{Target: "tok_0", From: base.Add(time.Minute), To: base.Add(4 * time.Minute)})
	if err != nil || len(evs) != 1 || evs[0].Seq != 4 {
		t.Errorf("target+time filter: %v %v", evs, err)
	}
}

func testConcurrentAudit(t *testing.T, s store.Store) {
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := s.AppendAudit(ctx, ev("token.create", "tok_x")); err != nil {
				t.Errorf("AppendAudit: %v", err)
			}
		})
	}
	wg.Wait()
	evs := audit(t, s)
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	prev := ""
	for i, e := range evs {
		if e.PrevHash != prev || e.Hash != e.ChainHash(prev) {
			t.Fatalf("chain forked at event %d", i)
		}
		prev = e.Hash
	}
}

// testAuditHead proves that the head is the newest event of the log: on an
// empty log, after appends of their own and inside other writes, and after
// concurrent appends.
func testAuditHead(t *testing.T, s store.Store) {
	head := func(when string) (int64, string) {
		t.Helper()
		seq, hash, err := s.AuditHead(ctx)
		if err != nil {
			t.Fatalf("AuditHead %s: %v", when, err)
		}
		return seq, hash
	}
	wantNewest := func(when string) {
		t.Helper()
		seq, hash := head(when)
		evs := audit(t, s)
		if len(evs) == 0 {
			t.Fatalf("%s: no events", when)
		}
		last := evs[len(evs)-1]
		if diff := cmp.Diff([]any{seq, hash}, []any{last.Seq, last.Hash}); diff != "" {
			t.Errorf("AuditHead %s: (-got +want)\n%s", when, diff)
		}
	}
	if seq, hash := head("of an empty log"); seq != 0 || hash != "" {
		t.Errorf("AuditHead of an empty log = %d, %q; want 0, \"\"", seq, hash)
	}
	for i := range 3 {
		if err := s.AppendAudit(ctx, ev("token.revoke", fmt.Sprintf("tok_%d", i))); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	wantNewest("after three appends")
	mustCreateAPI(t, s, "acme")
	wantNewest("after a create")
	if seq, _ := head("after a create"); seq != 4 {
		t.Errorf("AuditHead after four events: seq %d, want 4", seq)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := s.AppendAudit(ctx, ev("token.create", "tok_x")); err != nil {
				t.Errorf("AppendAudit: %v", err)
			}
		})
	}
	wg.Wait()
	wantNewest("after concurrent appends")
	if seq, _ := head("after concurrent appends"); seq != 24 {
		t.Errorf("AuditHead after 24 events: seq %d, want 24", seq)
	}
}

// testCancelledWrites cancels creates at every stage, from before they are
// submitted to after they commit. A create reported as done is stored with
// its audit event; one reported as failed says that it was cancelled and left
// nothing behind; and the audit chain stays whole.
func testCancelledWrites(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	const n = 200
	type result struct {
		id  string
		err error
	}
	results := make([]result, n)
	// burst runs n concurrent creates; the i-th is cancelled after delay(i),
	// or never when delay returns a negative duration.
	burst := func(delay func(i int) time.Duration) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				tok, h := newToken(a.ID)
				c, cancel := context.WithCancel(ctx)
				defer cancel()
				if d := delay(i); d == 0 {
					cancel()
				} else if d > 0 {
					time.AfterFunc(d, cancel)
				}
				results[i] = result{tok.ID, s.CreateToken(c, tok, h, ev("token.create", tok.ID))}
			})
		}
		wg.Wait()
	}
	// Time an uncancelled burst, then spread the cancellations of the next
	// one over twice that time, so that they land at every stage of the
	// writes on any store and machine.
	start := time.Now()
	burst(func(int) time.Duration { return -1 })
	spread := 2 * time.Since(start)
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("uncancelled create %d: %v", i, r.err)
		}
	}
	burst(func(i int) time.Duration {
		if i == n-1 {
			return -1 // never cancelled: must succeed
		}
		return spread * time.Duration(i) / n // the first is cancelled before the call
	})

	audited := map[string]int{}
	prev := ""
	evs, err := s.ScanAudit(ctx, 0, 3*n)
	if err != nil {
		t.Fatalf("ScanAudit: %v", err)
	}
	for i, e := range evs {
		if e.PrevHash != prev || e.Hash != e.ChainHash(prev) {
			t.Fatalf("audit chain broken at event %d", i)
		}
		prev = e.Hash
		audited[e.Target]++
	}
	var done, failed int
	for i, r := range results {
		_, getErr := s.GetToken(ctx, r.id)
		switch {
		case r.err == nil:
			done++
			if getErr != nil || audited[r.id] != 1 {
				t.Errorf("create %d reported done: GetToken = %v, %d audit events, want the token and 1 event", i, getErr, audited[r.id])
			}
		case !errors.Is(r.err, context.Canceled):
			t.Errorf("create %d failed with %q, which does not say that it was cancelled", i, r.err)
		default:
			failed++
			if !errors.Is(getErr, store.ErrNotFound) || audited[r.id] != 0 {
				t.Errorf("create %d reported cancelled: GetToken = %v, %d audit events, want ErrNotFound and none", i, getErr, audited[r.id])
			}
		}
	}
	if results[0].err == nil || results[n-1].err != nil {
		t.Errorf("pre-cancelled create: %v (want an error); uncancelled create: %v (want nil)", results[0].err, results[n-1].err)
	}
	t.Logf("%d creates done, %d cancelled; %d audit events", done, failed, len(evs))
}

func testPurgeTokens(t *testing.T, s store.Store) {
	a := mustCreateAPI(t, s, "acme")
	cutoff := base.Add(time.Hour)
	live, liveHash := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = cutoff.Add(time.Hour) })
	var victims []string
	for i := range 5 {
		tok, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = cutoff.Add(-time.Minute * time.Duration(i+1)) })
		victims = append(victims, tok.ID)
	}
	revoked, _ := mustCreateToken(t, s, a.ID, nil)
	if _, _, err := s.RevokeToken(ctx, revoked.ID, "", cutoff.Add(-time.Second), ev("token.revoke", revoked.ID)); err != nil {
		t.Fatal(err)
	}
	victims = append(victims, revoked.ID)
	recent, _ := mustCreateToken(t, s, a.ID, nil)
	if _, _, err := s.RevokeToken(ctx, recent.ID, "", cutoff.Add(time.Second), ev("token.revoke", recent.ID)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(ctx, flush([]store.UsageDelta{{TokenID: victims[0], Hours: []store.UsageHour{{Hour: base, Allowed: 1}}}}, nil)); err != nil {
		t.Fatal(err)
	}
	// A rotated-out secret whose grace ended before the cutoff goes too.
	_, next := newToken(a.ID)
	if _, _, err := s.RotateToken(ctx, live.ID, next, "h", cutoff.Add(-time.Second), base, ev("token.rotate", live.ID)); err != nil {
		t.Fatal(err)
	}
	// OAuth access tokens have their own, shorter retention: one that
	// expired after cutoff but before accessCutoff goes; an API key that
	// did the same, and an access token still within it, stay.
	accessCutoff := cutoff.Add(2 * time.Hour)
	oldAccess, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) {
		tok.ClientID, tok.ExpiresAt = "cli_x", cutoff.Add(time.Hour)
	})
	victims = append(victims, oldAccess.ID)
	keptAccess, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) {
		tok.ClientID, tok.ExpiresAt = "cli_x", accessCutoff.Add(time.Minute)
	})
	keptKey, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ExpiresAt = cutoff.Add(time.Hour) })
	total := 0
	for {
		n, err := s.PurgeTokens(ctx, cutoff, accessCutoff, 4)
		if err != nil {
			t.Fatalf("PurgeTokens: %v", err)
		}
		if n > 4 {
			t.Fatalf("PurgeTokens deleted %d, over its batch of 4", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total != len(victims) {
		t.Errorf("purged %d tokens, want %d", total, len(victims))
	}
	for _, id := range victims {
		if _, err := s.GetToken(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("victim %s survived: %v", id, err)
		}
	}
	for _, id := range []string{live.ID, recent.ID, keptAccess.ID, keptKey.ID} {
		if _, err := s.GetToken(ctx, id); err != nil {
			t.Errorf("token %s was purged: %v", id, err)
		}
	}
	if _, _, err := s.LookupToken(ctx, liveHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotated-out secret survived the purge: %v", err)
	}
	if _, _, err := s.LookupToken(ctx, next); err != nil {
		t.Errorf("current secret was purged: %v", err)
	}
}
