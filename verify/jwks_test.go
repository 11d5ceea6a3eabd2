package verify_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jetonhq/jeton/verify"
)

// handlerTransport serves requests in memory, so that a test can run in a
// synctest bubble.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	resp := w.Result()
	resp.Request = r
	return resp, nil
}

// TestJWKSBackgroundRefresh: the JWKS is refreshed when 80% of its
// max-age has passed (clamped to [1 min, 1 h]), so a new key is known
// before any token uses it; a failed refresh keeps the keys and is retried.
func TestJWKSBackgroundRefresh(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cacheControl string
		lifetime     time.Duration
	}{
		{"public, max-age=300", 300 * time.Second},
		{"max-age=5", time.Minute},
		{"", 5 * time.Minute},
		{"max-age=86400", time.Hour},
	} {
		t.Run(tt.cacheControl, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				f, es := newFakeHandler(t, "https://jeton.test")
				f.cacheControl = tt.cacheControl
				v, err := verify.New(context.Background(), verify.Config{Issuer: f.URL, Audience: testAudience,
					HTTPClient: &http.Client{Transport: handlerTransport{f}}})
				if err != nil {
					t.Fatal(err)
				}
				defer v.Close()
				due := tt.lifetime * 4 / 5
				k2 := newSigner(t, "ES256", "k2")
				f.addSigner(k2)
				time.Sleep(due - time.Second)
				synctest.Wait()
				if n := f.jwksCalls.Load(); n != 1 {
					t.Fatalf("%d fetches before the refresh is due, want 1", n)
				}
				time.Sleep(2 * time.Second)
				synctest.Wait()
				if n := f.jwksCalls.Load(); n != 2 {
					t.Fatalf("%d fetches after the refresh is due, want 2", n)
				}
				ctx := context.Background()
				if _, err := v.Verify(ctx, f.mint(t, k2, nil, nil)); err != nil {
					t.Fatalf("new key after the background refresh: %v", err)
				}
				if n := f.jwksCalls.Load(); n != 2 {
					t.Errorf("the new key cost a fetch: %d", n)
				}
				// The endpoint fails: the refresh is retried with backoff, and
				// the keys stay.
				f.set(func(f *fakeJeton) { f.jwksStatus = 500 })
				time.Sleep(due + time.Minute)
				synctest.Wait()
				if n := f.jwksCalls.Load(); n < 4 {
					t.Errorf("%d fetches: failed refreshes are not retried", n)
				}
				f.clock.Set(time.Now()) // the bubble's clock, for the token's claims
				if _, err := v.Verify(ctx, f.mint(t, es, nil, nil)); err != nil {
					t.Errorf("old key after failed refreshes: %v", err)
				}
				f.set(func(f *fakeJeton) { f.jwksStatus = 0 })
				before := f.jwksCalls.Load()
				time.Sleep(2 * time.Minute)
				synctest.Wait()
				if f.jwksCalls.Load() == before {
					t.Error("no refresh after the endpoint recovered")
				}
			})
		})
	}
}
