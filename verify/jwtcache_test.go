package verify_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/verify"
)

// TestJWTCache shows that a JWT presented again skips the signature check
// but never the checks whose outcome can change: scopes, expiry,
// revocation, and the key still being published.
func TestJWTCache(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	var mu sync.Mutex
	var results []verify.Result
	v := f.newVerifier(t, func(c *verify.Config) {
		c.Revocations = true
		c.OnVerify = func(r verify.Result) {
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}
	})
	last := func() verify.Result {
		mu.Lock()
		defer mu.Unlock()
		return results[len(results)-1]
	}
	ctx := context.Background()
	tok := f.mint(t, es, nil, func(m map[string]any) { m["jti"] = "tok_cached"; m["sid"] = "grt_cached" })

	if _, err := v.Verify(ctx, tok, "repos:read"); err != nil || last().Cached {
		t.Fatalf("first use: %v, cached %v", err, last().Cached)
	}
	c, err := v.Verify(ctx, tok, "repos:read")
	if err != nil || !last().Cached || c.TokenID != "tok_cached" || c.GrantID != "grt_cached" {
		t.Fatalf("second use: %v, cached %v, claims %+v", err, last().Cached, c)
	}
	if _, err := v.Verify(ctx, tok, "repos:admin"); !errors.Is(err, verify.ErrInsufficientScope) || !last().Cached {
		t.Errorf("cached token, missing scope: %v", err)
	}
	// A tampered copy is a different token: it is checked in full.
	if _, err := v.Verify(ctx, tok[:len(tok)-2]+"AA"); !errors.Is(err, verify.ErrInvalidSignature) {
		t.Errorf("tampered token: %v", err)
	}

	// The grant is revoked: the cached token is refused.
	f.publish("grant", "grt_cached", f.clock.Now().Add(time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(ctx, tok, "repos:read")
		if errors.Is(err, verify.ErrRevoked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cached token of a revoked grant: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Expiry is checked on every hit.
	tok2 := f.mint(t, es, nil, nil)
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	f.clock.Set(f.clock.Now().Add(2 * time.Hour))
	if _, err := v.Verify(ctx, tok2); !errors.Is(err, verify.ErrExpired) {
		t.Errorf("cached token after its expiry: %v", err)
	}
}

// TestJWTCacheKeyRetired shows that once the JWKS no longer publishes a
// key, tokens verified under it are not vouched for by the cache.
func TestJWTCacheKeyRetired(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	v := f.newVerifier(t, nil)
	ctx := context.Background()
	tok := f.mint(t, es, nil, nil)
	for range 2 {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	k2 := newSigner(t, "ES256", "k2")
	f.set(func(f *fakeJeton) { f.signers = []*signer{k2} })
	// A token of the new key makes the verifier fetch the new JWKS.
	if _, err := v.Verify(ctx, f.mint(t, k2, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrInvalidSignature) {
		t.Errorf("cached token of a retired key: %v, want ErrInvalidSignature", err)
	}
}

func TestJWTCacheDisabled(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	var cached bool
	v := f.newVerifier(t, func(c *verify.Config) {
		c.JWTCacheSize = -1
		c.OnVerify = func(r verify.Result) { cached = cached || r.Cached }
	})
	tok := f.mint(t, es, nil, nil)
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if cached {
		t.Error("a disabled cache answered")
	}
}
