package tokens

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/store/storetest"
)

// onEachStore runs test on a fresh SQLite store and, when
// JETON_TEST_POSTGRES_DSN is set, on a fresh PostgreSQL schema.
func onEachStore(t *testing.T, test func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, filepath.Join(t.TempDir(), "jeton.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, storetest.PostgresDSN(t))
	})
}

// nodeOn opens the store at dsn and starts a service on it with clk, as a
// node of a cluster does; both end with t.
func nodeOn(t *testing.T, dsn string, clk *clock) *Service {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := New(ctx, Config{Store: db, Now: clk.Now, UsageFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(ctx) })
	return svc
}

// newKey creates a key of api on svc.
func newKey(t *testing.T, svc *Service, api string) Created {
	t.Helper()
	c, err := svc.CreateToken(context.Background(), CreateParams{API: api}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mustRotate rotates key id on svc with grace.
func mustRotate(t *testing.T, svc *Service, id string, grace time.Duration) Created {
	t.Helper()
	c, err := svc.RotateToken(context.Background(), id, grace, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// codeOf verifies secret on svc and returns the outcome.
func codeOf(t *testing.T, svc *Service, secret string) Code {
	t.Helper()
	res, err := svc.Verify(context.Background(), &Request{Token: secret})
	if err != nil {
		t.Fatal(err)
	}
	return res.Code
}

func acmeAPI(t *testing.T, svc *Service) store.API {
	t.Helper()
	api, err := svc.CreateAPI(context.Background(), APIParams{Name: "acme", Identifier: "https://acme.test", Scopes: []string{"read"}}, Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// TestRevokeSecretOfARotatedKey: RFC 7009 revocation (RevokeSecret, behind
// /oauth2/revoke) of a secret a rotation replaced ends only that secret's
// grace, and past its grace changes nothing (it is no longer a valid
// token, RFC 7009 §2.2): whoever kept an old key must not be able to
// revoke the new one. The current secret revokes the token.
func TestRevokeSecretOfARotatedKey(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clk := &clock{now: time.Date(2026, 5, 31, 12, 0, 0, 0, time.UTC)}
		svc := nodeOn(t, dsn, clk)
		api := acmeAPI(t, svc)
		verify := func(secret string) Code { return codeOf(t, svc, secret) }
		revoke := func(secret string) {
			t.Helper()
			if found, err := svc.RevokeSecret(ctx, secret, nil, "oauth2_revoke", Actor{ID: "test"}); err != nil || !found {
				t.Fatalf("RevokeSecret = %v, %v; want found", found, err)
			}
		}

		// Past its grace.
		old := newKey(t, svc, api.ID)
		rot := mustRotate(t, svc, old.Token.ID, time.Hour)
		clk.Add(2 * time.Hour)
		if got := verify(old.Secret); got != Expired {
			t.Fatalf("old secret after its grace: %v, want expired", got)
		}
		revoke(old.Secret)
		if got := verify(rot.Secret); got != Valid {
			t.Errorf("current secret after revoking the old one past its grace: %v, want valid", got)
		}

		// Within its grace (and cached as valid).
		again := mustRotate(t, svc, old.Token.ID, time.Hour)
		if got := verify(rot.Secret); got != Valid {
			t.Fatalf("replaced secret within its grace: %v, want valid", got)
		}
		revoke(rot.Secret)
		if got := verify(rot.Secret); got != Expired {
			t.Errorf("replaced secret revoked within its grace: %v, want expired", got)
		}
		if got := verify(again.Secret); got != Valid {
			t.Errorf("current secret after revoking the replaced one: %v, want valid", got)
		}

		// The current secret revokes the token.
		revoke(again.Secret)
		if got := verify(again.Secret); got != Revoked {
			t.Errorf("current secret revoked: %v, want revoked", got)
		}
	})
}

// TestRotationKeepsEarlierGrace: a rotation keeps what the one before it
// promised: the secret the first rotation replaced works until the
// previous_expires_at it answered, whatever rotations come after, up to
// store.MaxSecretsInGrace secrets in their grace; a rotation past that is
// refused, and one without a grace period ends them all.
func TestRotationKeepsEarlierGrace(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clk := &clock{now: time.Date(2026, 5, 31, 12, 0, 0, 0, time.UTC)}
		svc := nodeOn(t, dsn, clk)
		api := acmeAPI(t, svc)
		orig := newKey(t, svc, api.ID)
		verify := func(secret string) Code { return codeOf(t, svc, secret) }
		secrets := []string{orig.Secret}
		for i := range store.MaxSecretsInGrace {
			clk.Add(time.Hour)
			grace := 7 * 24 * time.Hour
			if i == 1 {
				grace = time.Hour // ends before the others
			}
			r, err := svc.RotateToken(ctx, orig.Token.ID, grace, Actor{ID: "test"})
			if err != nil {
				t.Fatalf("rotation %d: %v", i+1, err)
			}
			secrets = append(secrets, r.Secret)
		}
		for i, s := range secrets {
			switch got := verify(s); {
			case i == 1 && got == Valid: // its one-hour grace ended with the next rotations
				t.Errorf("secret 1 after its grace: valid")
			case i != 1 && got != Valid:
				t.Errorf("secret %d after %d rotations: %v, want valid", i, len(secrets)-1, got)
			}
		}
		// One secret's grace has ended, so one more rotation fits.
		r, err := svc.RotateToken(ctx, orig.Token.ID, time.Hour, Actor{ID: "test"})
		if err != nil {
			t.Fatalf("rotation after a grace ended: %v", err)
		}
		secrets = append(secrets, r.Secret)
		if _, err := svc.RotateToken(ctx, orig.Token.ID, time.Hour, Actor{ID: "test"}); !errors.Is(err, store.ErrTooManySecrets) {
			t.Errorf("rotation beyond %d secrets in their grace = %v, want ErrTooManySecrets", store.MaxSecretsInGrace, err)
		}
		if got := verify(secrets[0]); got != Valid {
			t.Errorf("first secret after a refused rotation: %v, want valid", got)
		}
		// Without a grace period every earlier secret ends at once.
		last, err := svc.RotateToken(ctx, orig.Token.ID, 0, Actor{ID: "test"})
		if err != nil {
			t.Fatalf("rotation without grace: %v", err)
		}
		for i, s := range secrets {
			if got := verify(s); got == Valid {
				t.Errorf("secret %d after a rotation without grace: valid", i)
			}
		}
		if got := verify(last.Secret); got != Valid {
			t.Errorf("new secret: %v, want valid", got)
		}
	})
}

// TestQuotaSetAfterRemovalAppliesOnThisNode checks that a quota set
// by PATCH applies at once on the node that set it, when the token's
// quota had been removed (on another node) since this node counted
// against it. Nodes' clocks differ a little; here node a's is a minute
// ahead. The removal used to store no quota version, so the new quota's
// version, this node's clock, was below the one its counter was built
// from, and the counter (and the cut-off customer's 999 units) was kept.
func TestQuotaSetAfterRemovalAppliesOnThisNode(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clkB := &clock{now: time.Date(2026, 5, 31, 12, 0, 0, 0, time.UTC)}
		clkA := &clock{now: clkB.now.Add(time.Minute)}
		a := nodeOn(t, dsn, clkA)
		b := nodeOn(t, dsn, clkB)
		api := acmeAPI(t, a)
		q := &store.Quota{Remaining: 1000}
		c, err := a.CreateToken(ctx, CreateParams{API: api.ID, Settings: Settings{Quota: &q}}, Actor{ID: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if res, _ := b.Verify(ctx, &Request{Token: c.Secret}); res.Code != Valid {
			t.Fatalf("on node b: %v", res.Code)
		}
		var none *store.Quota
		if _, err := a.UpdateToken(ctx, c.Token.ID, Settings{Quota: &none}, Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
		clkA.Add(time.Second)
		clkB.Add(time.Second)
		zero := &store.Quota{Remaining: 0} // cut the customer off, on node b
		if _, err := b.UpdateToken(ctx, c.Token.ID, Settings{Quota: &zero}, Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if res, _ := b.Verify(ctx, &Request{Token: c.Secret}); res.Code != QuotaExceeded {
				t.Errorf("verification %d on node b after it set the quota to 0: %v (quota remaining %d), want quota_exceeded", i, res.Code, res.Quota)
			}
		}
	})
}
