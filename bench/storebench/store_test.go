package storebench

import (
	"context"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// callers is the number of concurrent callers, as wrk -c32 in run.sh.
const callers = 32

// parallelism is b.SetParallelism's argument for (at least) callers
// goroutines; goroutines is how many that makes.
func parallelism() (par, goroutines int) {
	p := runtime.GOMAXPROCS(0)
	par = (callers + p - 1) / p
	return par, par * p
}

// fixture is a store with an API, an opaque-token client, a user and one
// grant per caller goroutine, each with a live refresh token.
type fixture struct {
	db      *sqlstore.DB
	api     store.API
	client  store.Client
	user    store.User
	grants  []store.Grant
	refresh []tokenfmt.Hash // the live refresh token of each grant
}

func setup(b *testing.B) *fixture {
	b.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, filepath.Join(b.TempDir(), "jeton.db"), sqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	now := time.Now()
	f := &fixture{db: db}
	f.api = store.API{ID: ids.New(ids.API, now), Name: "bench", Identifier: "https://bench.jeton.test", KeyPrefix: "jtp",
		Scopes: []string{"repos:read"}, CreatedAt: now, UpdatedAt: now}
	if err := db.CreateAPI(ctx, f.api, store.AuditEvent{}); err != nil {
		b.Fatal(err)
	}
	f.client = store.Client{ID: ids.New(ids.Client, now), Name: "bench", Type: store.ClientConfidential,
		GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"}, RedirectURIs: []string{"http://127.0.0.1/cb"},
		APIs: []string{f.api.ID}, Scopes: []string{"repos:read"}, TokenFormat: store.FormatOpaque, SigningAlg: "ES256",
		AccessTokenTTL: time.Hour, RefreshTokenTTL: 30 * 24 * time.Hour, AuthMethod: "client_secret_basic", CreatedAt: now, UpdatedAt: now}
	secret := tokenfmt.HashOf("jts_bench")
	if err := db.CreateClient(ctx, f.client, &secret, store.AuditEvent{}); err != nil {
		b.Fatal(err)
	}
	f.user = store.User{ID: ids.New(ids.User, now), Username: "bench", PasswordHash: "x", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateUser(ctx, f.user, store.AuditEvent{}); err != nil {
		b.Fatal(err)
	}
	_, n := parallelism()
	for range n {
		code := mustSecret(tokenfmt.PrefixAuthCode)
		ac := store.AuthCode{Hash: tokenfmt.HashOf(code), ClientID: f.client.ID, UserID: f.user.ID, RedirectURI: "http://127.0.0.1/cb",
			APIID: f.api.ID, Scopes: []string{"repos:read"}, AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		if err := db.CreateAuthCode(ctx, ac); err != nil {
			b.Fatal(err)
		}
		g := store.Grant{ID: ids.New(ids.Grant, now), ClientID: f.client.ID, CreatedAt: now}
		if _, err := db.RedeemAuthCode(ctx, ac.Hash, g, now, store.AuditEvent{}); err != nil {
			b.Fatal(err)
		}
		g, err := db.GetGrant(ctx, g.ID)
		if err != nil {
			b.Fatal(err)
		}
		rt := f.refreshToken(g.ID, now)
		if err := db.IssueGrantTokens(ctx, g.ID, nil, tokenfmt.Hash{}, &rt); err != nil {
			b.Fatal(err)
		}
		f.grants = append(f.grants, g)
		f.refresh = append(f.refresh, rt.Hash)
	}
	return f
}

// mustSecret generates a token secret; it fails only if crypto/rand
// does, which is fatal anyway; it panics, as it may run on the
// benchmark's worker goroutines.
func mustSecret(prefix string) string {
	s, err := tokenfmt.Generate(prefix)
	if err != nil {
		panic(err)
	}
	return s
}

func (f *fixture) refreshToken(grantID string, now time.Time) store.RefreshToken {
	return store.RefreshToken{Hash: tokenfmt.HashOf(mustSecret(tokenfmt.PrefixRefresh)), GrantID: grantID,
		CreatedAt: now, ExpiresAt: now.Add(f.client.RefreshTokenTTL)}
}

// accessToken is an opaque access token as oauth's mint builds it.
func (f *fixture) accessToken(subject, grantID string, now time.Time) (*store.Token, tokenfmt.Hash) {
	secret := mustSecret(tokenfmt.PrefixAccess)
	return &store.Token{ID: ids.New(ids.Token, now), APIID: f.api.ID, Name: "access token", Subject: subject,
		Scopes: []string{"repos:read"}, Hint: tokenfmt.Hint(secret), CreatedAt: now, UpdatedAt: now,
		ExpiresAt: now.Add(f.client.AccessTokenTTL), ClientID: f.client.ID, GrantID: grantID}, tokenfmt.HashOf(secret)
}

// run runs op on the caller goroutines; each gets its own index. After
// the first error op is no longer called (a refresh chain that failed
// cannot go on).
func run(b *testing.B, op func(i int) error) {
	var next atomic.Int64
	var failed atomic.Bool
	par, _ := parallelism()
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1) - 1)
		for pb.Next() {
			if failed.Load() {
				continue
			}
			if err := op(i); err != nil {
				failed.Store(true)
				b.Error(err)
			}
		}
	})
}

// BenchmarkClientCredentials is the store work of row (e): one opaque
// access token stored per request.
func BenchmarkClientCredentials(b *testing.B) {
	f := setup(b)
	ctx := context.Background()
	run(b, func(int) error {
		now := time.Now()
		tok, h := f.accessToken(f.client.ID, "", now)
		return f.db.CreateToken(ctx, *tok, h, store.AuditEvent{})
	})
}

// BenchmarkRefresh is the store work of row (h): the two reads of the
// refresh handler, then the rotation (old token used, new refresh and
// access tokens stored) in one write.
func BenchmarkRefresh(b *testing.B) {
	benchmarkRefresh(b, true, true)
}

// BenchmarkRefreshRotateOnly is BenchmarkRefresh without the reads: the
// writer's share alone.
func BenchmarkRefreshRotateOnly(b *testing.B) {
	benchmarkRefresh(b, false, true)
}

// BenchmarkRefreshRotateNoAccess is BenchmarkRefreshRotateOnly for a
// client with JWT access tokens: the rotation stores no access token.
func BenchmarkRefreshRotateNoAccess(b *testing.B) {
	benchmarkRefresh(b, false, false)
}

func benchmarkRefresh(b *testing.B, reads, opaque bool) {
	f := setup(b)
	ctx := context.Background()
	run(b, func(i int) error {
		now := time.Now()
		old := f.refresh[i]
		g := f.grants[i]
		if reads {
			var err error
			if _, g, err = f.db.GetRefreshToken(ctx, old); err != nil {
				return err
			}
			if _, err := f.db.GetUser(ctx, g.UserID); err != nil {
				return err
			}
		}
		next := f.refreshToken(g.ID, now)
		var tok *store.Token
		var h tokenfmt.Hash
		if opaque {
			tok, h = f.accessToken(g.Subject, g.ID, now)
		}
		if _, err := f.db.RotateRefreshToken(ctx, old, next, tok, h, nil, time.Time{}, now); err != nil {
			return err
		}
		f.refresh[i] = next.Hash
		return nil
	})
}
