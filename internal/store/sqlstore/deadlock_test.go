package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// taggedPostgresDSN returns storetest.PostgresDSN with an application_name
// of its own, which tells this test's connections apart in
// pg_stat_activity, and that name.
func taggedPostgresDSN(t *testing.T) (dsn, app string) {
	t.Helper()
	u, err := url.Parse(storetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	var tag [6]byte
	rand.Read(tag[:])
	app = "jeton-test-" + hex.EncodeToString(tag[:])
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String(), app
}

// lockTest opens a PostgreSQL store on a fresh schema for a test of row
// locks between transactions: its DSN and application name (to find its
// connections in pg_stat_activity), and a context that bounds the test.
func lockTest(t *testing.T) (db *DB, dsn, app string, ctx context.Context) {
	t.Helper()
	dsn, app = taggedPostgresDSN(t)
	db = openPostgresT(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return db, dsn, app, ctx
}

// waitForLockWaiters waits until n connections of app wait for a lock.
func waitForLockWaiters(t *testing.T, db *DB, app string, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var k int
		if err := db.read.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&k); err != nil {
			t.Fatal(err)
		}
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s wait for a lock", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPostgresJanitorNeverDeadlocksARevocation proves that the janitor,
// deleting an expired access token and then its grant, spent without it,
// does not deadlock with a revocation of that grant, which locks the grant
// first and its tokens second: the janitor skips a grant another
// transaction holds. (A deadlock would abort one of them, and the one
// PostgreSQL picked was the revocation a password reset depends on.) A
// third transaction holding the token puts the two in the order a busy
// server may run them in.
func TestPostgresJanitorNeverDeadlocksARevocation(t *testing.T) {
	t.Parallel()
	db, dsn, app, ctx := lockTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	base := now.Add(-72 * time.Hour)
	c, u, code := userWithCode(t, db, base)
	g := mustRedeem(t, db, c, code, base)
	// Expired two days ago, not revoked: the purge's (access tokens are
	// kept a day), and one of the grant's live tokens to RevokeGrant.
	secret := mustGenerate(t, tokenfmt.PrefixAccess)
	access := store.Token{ID: ids.New(ids.Token, base), APIID: code.APIID, Name: "oauth", Subject: u.ID, Scopes: []string{"repos:read"},
		Hint: tokenfmt.Hint(secret), CreatedAt: base, UpdatedAt: base, ExpiresAt: base.Add(time.Hour), ClientID: c.ID, GrantID: g.ID}
	if err := db.IssueGrantTokens(ctx, g.ID, &access, tokenfmt.HashOf(secret), nil); err != nil {
		t.Fatal(err)
	}

	release := holdLock(t, dsn, "SELECT id FROM tokens WHERE id = $1 FOR UPDATE", access.ID)
	purged := make(chan error, 1)
	go func() {
		_, err := db.PurgeTokens(ctx, now.Add(-30*24*time.Hour), now.Add(-24*time.Hour), 100)
		purged <- err
	}()
	waitForLockWaiters(t, db, app, 1, "PurgeTokens")
	revoked := make(chan error, 1)
	go func() {
		_, err := db.RevokeGrant(ctx, g.ID, "user_disabled", now, store.AuditEvent{Action: "grant.revoke", Target: g.ID})
		revoked <- err
	}()
	waitForLockWaiters(t, db, app, 2, "RevokeGrant")
	release()
	if err := <-purged; err != nil {
		t.Errorf("PurgeTokens while the grant is revoked: %v", err)
	}
	if err := <-revoked; err != nil {
		t.Errorf("RevokeGrant while the janitor purges its expired access token: %v", err)
	}
}

// TestPostgresUpdateAPIDuringItsDeletion proves that an update of an API
// being deleted waits for the deletion and finds the API gone, rather
// than deadlocking with it: every writer of apis takes the table's lock
// before the row's. A third transaction holding one of the API's tokens
// keeps the deletion between its first lock and its DELETE FROM apis, as
// the deletion of an API with many tokens would.
func TestPostgresUpdateAPIDuringItsDeletion(t *testing.T) {
	t.Parallel()
	db, dsn, app, ctx := lockTest(t)
	now := time.Now()
	api := createTestAPI(t, db)
	tok := createTestToken(t, db, api, nil)

	release := holdLock(t, dsn, "SELECT id FROM tokens WHERE id = $1 FOR UPDATE", tok.ID)
	deleted := make(chan error, 1)
	go func() {
		_, err := db.DeleteAPI(ctx, api.ID, true, now, store.AuditEvent{Action: "api.delete", Target: api.ID})
		deleted <- err
	}()
	waitForLockWaiters(t, db, app, 1, "DeleteAPI")
	updated := make(chan error, 1)
	go func() {
		_, err := db.UpdateAPI(ctx, api.ID, func(a *store.API) error { a.Scopes = append(a.Scopes, "repos:write"); return nil },
			store.AuditEvent{Action: "api.update", Target: api.ID})
		updated <- err
	}()
	waitForLockWaiters(t, db, app, 2, "UpdateAPI")
	release()
	if err := <-deleted; err != nil {
		t.Errorf("DeleteAPI during an update of the same API: %v", err)
	}
	if err := <-updated; !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateAPI during the deletion of the API = %v, want ErrNotFound", err)
	}
}

func mustGenerate(t *testing.T, prefix string) string {
	t.Helper()
	s, err := tokenfmt.Generate(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPostgresDeleteUserDuringARefresh proves that deleting a user while
// one of their refresh tokens is being redeemed does not deadlock: both
// must lock the grant and the refresh token in one order. DeleteUser locked
// the user's grants first and deleted their refresh tokens second, while
// RotateRefreshToken (and DeleteClient, which was ordered to match it)
// locks the refresh token first and the grant second. A third transaction
// holding the grant puts the two in the order a busy server may run them
// in; PostgreSQL then aborted one of them with a deadlock error (40P01).
func TestPostgresDeleteUserDuringARefresh(t *testing.T) {
	t.Parallel()
	db, dsn, app, ctx := lockTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	c, u, code := userWithCode(t, db, now)
	g := mustRedeem(t, db, c, code, now)
	old := store.RefreshToken{Hash: tokenfmt.HashOf(mustGenerate(t, tokenfmt.PrefixRefresh)), GrantID: g.ID, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	if err := db.IssueGrantTokens(ctx, g.ID, nil, tokenfmt.Hash{}, &old); err != nil {
		t.Fatal(err)
	}
	next := store.RefreshToken{Hash: tokenfmt.HashOf(mustGenerate(t, tokenfmt.PrefixRefresh)), GrantID: g.ID, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}

	release := holdLock(t, dsn, "SELECT id FROM grants WHERE id = $1 FOR UPDATE", g.ID)
	deleted := make(chan error, 1)
	go func() {
		_, err := db.DeleteUser(ctx, u.ID, store.AuditEvent{Time: now, Action: "user.delete", Target: u.ID})
		deleted <- err
	}()
	waitForLockWaiters(t, db, app, 1, "DeleteUser")
	rotated := make(chan error, 1)
	go func() {
		_, err := db.RotateRefreshToken(ctx, old.Hash, next, nil, tokenfmt.Hash{}, nil, time.Time{}, now)
		rotated <- err
	}()
	waitForLockWaiters(t, db, app, 2, "RotateRefreshToken")
	release()
	if err := <-deleted; err != nil {
		t.Errorf("DeleteUser while one of the user's refresh tokens is redeemed: %v", err)
	}
	if err := <-rotated; err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrRevoked) {
		t.Errorf("RotateRefreshToken while its user is deleted = %v, want success or ErrNotFound/ErrRevoked", err)
	}
}

// userWithCode stores an API, a client, a user and an authorization code
// of that user for that client, not yet redeemed.
func userWithCode(t *testing.T, db *DB, now time.Time) (store.Client, store.User, store.AuthCode) {
	t.Helper()
	ctx := context.Background()
	api := createTestAPI(t, db)
	c := store.Client{ID: ids.New(ids.Client, now), Name: "app", Type: store.ClientConfidential,
		GrantTypes: []string{"authorization_code", "refresh_token"}, RedirectURIs: []string{"https://app.example.com/cb"},
		APIs: []string{api.ID}, Scopes: []string{"repos:read"}, TokenFormat: store.FormatOpaque, SigningAlg: "ES256",
		AccessTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour, AuthMethod: "none", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateClient(ctx, c, nil, store.AuditEvent{Action: "client.create", Target: c.ID}); err != nil {
		t.Fatal(err)
	}
	u := store.User{ID: ids.New(ids.User, now), Username: "alice", PasswordHash: "x", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateUser(ctx, u, store.AuditEvent{Action: "user.create", Target: u.ID}); err != nil {
		t.Fatal(err)
	}
	code := store.AuthCode{Hash: tokenfmt.HashOf(mustGenerate(t, tokenfmt.PrefixAuthCode)), ClientID: c.ID, UserID: u.ID,
		RedirectURI: c.RedirectURIs[0], APIID: api.ID, Scopes: []string{"repos:read"}, AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := db.CreateAuthCode(ctx, code); err != nil {
		t.Fatal(err)
	}
	return c, u, code
}

// mustRedeem redeems code for client c at at, storing a grant, and returns
// the grant.
func mustRedeem(t *testing.T, db *DB, c store.Client, code store.AuthCode, at time.Time) store.Grant {
	t.Helper()
	g := store.Grant{ID: ids.New(ids.Grant, at), ClientID: c.ID, CreatedAt: at}
	if _, err := db.RedeemAuthCode(context.Background(), code.Hash, g, at, store.AuditEvent{Action: "grant.create", Target: g.ID}); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestPostgresDeleteUserDuringACodeRedemption: a redemption locks its code
// and then, storing the grant, takes a key share lock on the user's row
// (insertGrant); a DeleteUser that locked the user's row before deleting
// the codes would deadlock with it. A third transaction holding the code lines the two
// up: the redemption first in the code's queue, DeleteUser second.
func TestPostgresDeleteUserDuringACodeRedemption(t *testing.T) {
	t.Parallel()
	db, dsn, app, ctx := lockTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	c, u, code := userWithCode(t, db, now)

	release := holdLock(t, dsn, "SELECT hash FROM auth_codes WHERE hash = $1 FOR UPDATE", code.Hash[:])
	redeemed := make(chan error, 1)
	go func() {
		g := store.Grant{ID: ids.New(ids.Grant, now), ClientID: c.ID, CreatedAt: now}
		_, err := db.RedeemAuthCode(ctx, code.Hash, g, now, store.AuditEvent{Action: "grant.create", Target: g.ID})
		redeemed <- err
	}()
	waitForLockWaiters(t, db, app, 1, "RedeemAuthCode")
	deleted := make(chan error, 1)
	go func() {
		_, err := db.DeleteUser(ctx, u.ID, store.AuditEvent{Time: now, Action: "user.delete", Target: u.ID})
		deleted <- err
	}()
	waitForLockWaiters(t, db, app, 2, "DeleteUser")
	release()
	if err := <-redeemed; err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RedeemAuthCode while its user is deleted = %v, want success or ErrNotFound", err)
	}
	if err := <-deleted; err != nil {
		t.Errorf("DeleteUser while one of the user's codes is redeemed: %v", err)
	}
	if _, err := db.GetUser(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user after DeleteUser: %v, want ErrNotFound", err)
	}
	if gs, err := db.ListGrants(ctx, u.ID); err != nil || len(gs) != 0 {
		t.Errorf("grants left after DeleteUser: %+v, %v", gs, err)
	}
}

// TestPostgresDisableRacesACodeRedemption: disabling a user revokes, in one
// transaction, the grants it sees. A redemption storing a new grant for the
// user while that transaction is between its revocations and its commit
// must wait for it: otherwise its grant is seen neither by the disable nor,
// reading the user right after, by the token endpoint (which still sees
// the user enabled), and it outlives the disable.
func TestPostgresDisableRacesACodeRedemption(t *testing.T) {
	t.Parallel()
	db, _, app, ctx := lockTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	c, u, first := userWithCode(t, db, now)
	mustRedeem(t, db, c, first, now)
	second := first
	second.Hash = tokenfmt.HashOf(mustGenerate(t, tokenfmt.PrefixAuthCode))
	if err := db.CreateAuthCode(ctx, second); err != nil {
		t.Fatal(err)
	}

	// The disable stops inside its transaction, after revoking the first
	// grant, while it audits it.
	revoking, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	disabled := make(chan error, 1)
	go func() {
		_, _, err := db.UpdateUserRevokingGrants(ctx, u.ID, func(x *store.User) error { x.DisabledAt = now; return nil },
			store.AuditEvent{Time: now, Action: "user.update", Target: u.ID}, "user_disabled",
			func(g store.Grant) store.AuditEvent {
				once.Do(func() { close(revoking); <-resume })
				return store.AuditEvent{Time: now, Action: "grant.revoke", Target: g.ID}
			})
		disabled <- err
	}()
	<-revoking

	type outcome struct {
		grant       string
		err         error
		sawDisabled bool
	}
	redeemed := make(chan outcome, 1)
	go func() {
		g := store.Grant{ID: ids.New(ids.Grant, now.Add(time.Millisecond)), ClientID: c.ID, CreatedAt: now}
		_, err := db.RedeemAuthCode(ctx, second.Hash, g, now, store.AuditEvent{})
		after, _ := db.GetUser(ctx, u.ID) // as issueForGrant does
		redeemed <- outcome{g.ID, err, !after.DisabledAt.IsZero()}
	}()
	// Either the redemption waits for the disable, or it is done.
	var out outcome
	deadline := time.Now().Add(15 * time.Second)
wait:
	for {
		select {
		case out = <-redeemed:
			break wait
		default:
		}
		var k int
		if err := db.read.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&k); err != nil {
			t.Fatal(err)
		}
		if k > 0 {
			close(resume)
			out = <-redeemed
			resume = nil
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the redemption neither finished nor waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if resume != nil {
		close(resume)
	}
	if err := <-disabled; err != nil {
		t.Fatalf("UpdateUserRevokingGrants: %v", err)
	}
	if out.err != nil {
		t.Fatalf("RedeemAuthCode: %v", out.err)
	}
	g, err := db.GetGrant(ctx, out.grant)
	if err != nil {
		t.Fatal(err)
	}
	if g.RevokedAt.IsZero() && !out.sawDisabled {
		t.Error("a grant stored during the disable is live, and the user read right after it was stored is still enabled")
	}
}
