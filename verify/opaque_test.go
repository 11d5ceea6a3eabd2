package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/verify"
)

func TestVerifyOpaque(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, func(c *verify.Config) { c.CacheTTL, c.NegativeCacheTTL = -1, -1 })
	exp := f.clock.Now().Add(time.Hour).UTC().Truncate(time.Second)
	quota := int64(3)
	tok := func(o opaque) string {
		s := newToken(t, "jtp")
		f.addToken(s, o)
		return s
	}
	validKey := tok(opaque{ID: "tok_key", Subject: "cus_1", Scopes: []string{"repos:read"}, ExpiresAt: exp, Metadata: `{"plan":"pro"}`})
	tests := []struct {
		name      string
		token     string
		scopes    []string
		want      error
		status    int
		retry     time.Duration
		rateLimit *verify.RateLimit
	}{
		{"valid", validKey, []string{"repos:read"}, nil, 0, 0, nil},
		{"valid access token", tok(opaque{ID: "tok_at", Subject: "cli_1", Scopes: []string{"repos:read"}}), nil, nil, 0, 0, nil},
		{"insufficient scope", validKey, []string{"repos:write"}, verify.ErrInsufficientScope, 403, 0, nil},
		{"rate limited", tok(opaque{Code: "rate_limited", RateLimit: &[3]int64{10, 0, 7}, RetryAfter: "3"}), nil, verify.ErrRateLimited, 429, 3 * time.Second, &verify.RateLimit{Limit: 10, Remaining: 0, Reset: 7 * time.Second}},
		{"rate limited without Retry-After", tok(opaque{Code: "rate_limited", RateLimit: &[3]int64{10, 0, 7}}), nil, verify.ErrRateLimited, 429, 7 * time.Second, &verify.RateLimit{Limit: 10, Remaining: 0, Reset: 7 * time.Second}},
		{"quota exceeded", tok(opaque{Code: "quota_exceeded", Quota: &quota}), nil, verify.ErrQuotaExceeded, 429, 0, nil},
		{"forbidden ip", tok(opaque{Code: "forbidden_ip", ID: "tok_ip"}), nil, verify.ErrForbiddenIP, 403, 0, nil},
		{"revoked", tok(opaque{Code: "revoked"}), nil, verify.ErrRevoked, 401, 0, nil},
		{"expired", tok(opaque{Code: "expired"}), nil, verify.ErrExpired, 401, 0, nil},
		{"not found", newToken(t, "jtp"), nil, verify.ErrUnknownToken, 401, 0, nil},
		{"wrong api", tok(opaque{Code: "wrong_api"}), nil, verify.ErrWrongAudience, 401, 0, nil},
		{"malformed per Jeton", tok(opaque{Code: "malformed"}), nil, verify.ErrMalformed, 401, 0, nil},
		{"unknown code", tok(opaque{Code: "from_the_future"}), nil, verify.ErrUnknownToken, 401, 0, nil},
		{"bad checksum", validKey[:len(validKey)-1] + "x", nil, verify.ErrMalformed, 401, 0, nil},
		{"garbage", "hello", nil, verify.ErrMalformed, 401, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.Verify(context.Background(), tt.token, tt.scopes...)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Kind != verify.KindOpaque || c.TokenID == "" {
					t.Errorf("claims %+v", c)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var e *verify.Error
			errors.As(err, &e)
			if e.Status != tt.status || e.RetryAfter != tt.retry || !cmp.Equal(e.RateLimit, tt.rateLimit) {
				t.Errorf("error %+v: want status %d, retry %v, rate limit %+v", e, tt.status, tt.retry, tt.rateLimit)
			}
		})
	}
	t.Run("claims", func(t *testing.T) {
		t.Parallel()
		c, err := v.Verify(context.Background(), validKey)
		if err != nil {
			t.Fatal(err)
		}
		want := &verify.Claims{Kind: verify.KindOpaque, TokenID: "tok_key", Subject: "cus_1", Audience: []string{testAudience},
			Scopes: []string{"repos:read"}, ExpiresAt: exp, Metadata: json.RawMessage(`{"plan":"pro"}`)}
		if diff := cmp.Diff(c, want); diff != "" {
			t.Errorf("claims (-got +want):\n%s", diff)
		}
	})
	t.Run("bad checksum costs no round trip", func(t *testing.T) {
		t.Parallel()
		bad := newToken(t, "jtp")
		bad = bad[:len(bad)-2] + "00"
		if bad == validKey {
			t.Skip()
		}
		if _, err := v.Verify(context.Background(), bad); !errors.Is(err, verify.ErrMalformed) {
			t.Fatalf("got %v", err)
		}
		if n := f.calls(bad); n != 0 {
			t.Errorf("%d calls to /v1/verify for a bad checksum", n)
		}
	})
}

func TestVerifyOpaqueRequestShape(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, nil)
	tok := newToken(t, "jtp")
	f.addToken(tok, opaque{ID: "tok_1", Scopes: []string{"a", "b"}})
	r := httptest.NewRequest("GET", "/x", nil)
	r.RemoteAddr = "203.0.113.7:5555"
	r.Header.Set("Authorization", "Bearer "+tok)
	if _, err := v.VerifyRequest(r, "a", "b"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.lastVerify
	f.mu.Unlock()
	if diff := cmp.Diff(got.Body, verifyBody{Token: tok, Scopes: []string{"a", "b"}, API: testAudience, ClientIP: "203.0.113.7"}); diff != "" {
		t.Errorf("request body (-got +want):\n%s", diff)
	}
	// The client's address goes in the body: X-Forwarded-For would make
	// Jeton check this server's own credential against it.
	if got.XFF != "" {
		t.Errorf("X-Forwarded-For = %q, want none", got.XFF)
	}
}

// TestVerifyOpaqueClientAddress: the client_ip sent is the IP address of
// RemoteAddr in the form Jeton accepts (no zone, IPv4-mapped unmapped); a
// RemoteAddr without one sends none.
func TestVerifyOpaqueClientAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		remote string
		want   string // client_ip
	}{
		{"203.0.113.7:5555", "203.0.113.7"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:DB8:0::1]:443", "2001:db8::1"},
		{"[fe80::1%eth0]:1234", "fe80::1"},
		{"[fe80::1%2]:1234", "fe80::1"}, // an interface index
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"fe80::1%eth0", "fe80::1"},
		{"@", "unknown"}, // a Unix socket listener
		{"", "unknown"},
		{"example.com:80", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			t.Parallel()
			f, _ := newFake(t)
			v := f.newVerifier(t, nil)
			tok := newToken(t, "jtp")
			f.addToken(tok, opaque{ID: "tok_1"})
			r := httptest.NewRequest("GET", "/x", nil)
			r.RemoteAddr = tt.remote
			r.Header.Set("Authorization", "Bearer "+tok)
			if _, err := v.VerifyRequest(r); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			got := f.lastVerify.Body.ClientIP
			f.mu.Unlock()
			if got != tt.want {
				t.Errorf("client_ip %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOpaqueWithoutCredential(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	v := f.newVerifier(t, func(c *verify.Config) { c.Credential = "" })
	tok := newToken(t, "jtp")
	f.addToken(tok, opaque{ID: "tok_1"})
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, verify.ErrUnknownToken) {
		t.Errorf("opaque token without a credential: %v", err)
	}
	if f.verifyCalls.Load() != 0 {
		t.Errorf("/v1/verify called without a credential")
	}
	if _, err := v.Verify(context.Background(), f.mint(t, es, nil, nil)); err != nil {
		t.Errorf("JWT without a credential: %v", err)
	}
}

// TestOpaqueUnavailable: Jeton failing is ErrUnavailable (503), never
// valid, and never cached.
func TestOpaqueUnavailable(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, nil)
	tok := newToken(t, "jtp")
	f.addToken(tok, opaque{ID: "tok_1"})
	ctx := context.Background()
	for _, status := range []int{500, 401, 403, 429, 404} {
		f.set(func(f *fakeJeton) { f.verifyStatus = status })
		_, err := v.Verify(ctx, tok)
		if !errors.Is(err, verify.ErrUnavailable) {
			t.Fatalf("status %d: %v", status, err)
		}
		w := httptest.NewRecorder()
		verify.WriteError(w, err)
		if w.Code != 503 {
			t.Errorf("status %d: WriteError wrote %d", status, w.Code)
		}
	}
	f.set(func(f *fakeJeton) { f.verifyStatus = 0 })
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("after recovery: %v (an outage was cached?)", err)
	}
	f.srv.Close()
	other := newToken(t, "jtp")
	if _, err := v.Verify(ctx, other); !errors.Is(err, verify.ErrUnavailable) {
		t.Errorf("server down: %v", err)
	}
}

// TestOpaqueCache: positive and negative answers are reused, scopes are
// checked locally on a hit, and no entry outlives the token.
func TestOpaqueCache(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	var cached, total atomic.Int64
	v := f.newVerifier(t, func(c *verify.Config) {
		c.OnVerify = func(r verify.Result) {
			total.Add(1)
			if r.Cached {
				cached.Add(1)
			}
		}
	})
	ctx := context.Background()
	tok := newToken(t, "jtp")
	f.addToken(tok, opaque{ID: "tok_1", Scopes: []string{"a", "b"}, ExpiresAt: f.clock.Now().Add(3 * time.Second)})
	for range 5 {
		if _, err := v.Verify(ctx, tok, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(ctx, tok, "c"); !errors.Is(err, verify.ErrInsufficientScope) {
		t.Fatalf("scope checked on a hit: %v", err)
	}
	if n := f.calls(tok); n != 1 {
		t.Errorf("%d calls for 6 verifications, want 1", n)
	}
	if cached.Load() != 5 || total.Load() != 6 {
		t.Errorf("OnVerify: %d cached of %d, want 5 of 6", cached.Load(), total.Load())
	}
	// The token expires before CacheTTL: the entry does too.
	f.clock.Advance(3 * time.Second)
	f.addToken(tok, opaque{Code: "expired"})
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrExpired) {
		t.Errorf("after the token's expiry: %v", err)
	}

	// Negative answers are cached for NegativeCacheTTL.
	unknown := newToken(t, "jtp")
	for range 3 {
		if _, err := v.Verify(ctx, unknown); !errors.Is(err, verify.ErrUnknownToken) {
			t.Fatal(err)
		}
	}
	if n := f.calls(unknown); n != 1 {
		t.Errorf("unknown token: %d calls, want 1", n)
	}
	f.clock.Advance(verify.DefaultNegativeCacheTTL)
	v.Verify(ctx, unknown)
	if n := f.calls(unknown); n != 2 {
		t.Errorf("after NegativeCacheTTL: %d calls, want 2", n)
	}

	// Positive entries last CacheTTL.
	long := newToken(t, "jtp")
	f.addToken(long, opaque{ID: "tok_2"})
	v.Verify(ctx, long)
	f.clock.Advance(verify.DefaultCacheTTL - time.Millisecond)
	v.Verify(ctx, long)
	if n := f.calls(long); n != 1 {
		t.Errorf("within CacheTTL: %d calls", n)
	}
	f.clock.Advance(time.Millisecond)
	v.Verify(ctx, long)
	if n := f.calls(long); n != 2 {
		t.Errorf("after CacheTTL: %d calls, want 2", n)
	}

	// An insufficient_scope answer proves which scopes are missing, but a
	// request with the right scopes still asks Jeton (limits unknown).
	scoped := newToken(t, "jtp")
	f.addToken(scoped, opaque{ID: "tok_3", Scopes: []string{"a"}})
	for range 3 {
		if _, err := v.Verify(ctx, scoped, "b"); !errors.Is(err, verify.ErrInsufficientScope) {
			t.Fatal(err)
		}
	}
	if n := f.calls(scoped); n != 1 {
		t.Errorf("insufficient scope: %d calls, want 1", n)
	}
	if _, err := v.Verify(ctx, scoped, "a"); err != nil {
		t.Fatal(err)
	}
	if n := f.calls(scoped); n != 2 {
		t.Errorf("after insufficient scope, a sufficient request: %d calls, want 2", n)
	}
}

// TestOpaqueCachePerAddress: an answer for one client address is not
// reused for another (allowed_cidrs make it address-dependent).
func TestOpaqueCachePerAddress(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, nil)
	tok := newToken(t, "jtp")
	f.addToken(tok, opaque{Code: "forbidden_ip", ID: "tok_1"})
	req := func(addr string) error {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := v.VerifyRequest(r)
		return err
	}
	if err := req("198.51.100.1:1"); !errors.Is(err, verify.ErrForbiddenIP) {
		t.Fatal(err)
	}
	f.addToken(tok, opaque{ID: "tok_1"})
	if err := req("[2001:db8::1]:1"); err != nil {
		t.Errorf("another address reused the answer: %v", err)
	}
	if err := req("198.51.100.1:2"); !errors.Is(err, verify.ErrForbiddenIP) {
		t.Errorf("same address, negative cache: %v", err)
	}
}

// TestOpaqueSingleFlight: a burst of one token costs one call; requests
// with other scopes check them locally against the shared answer.
func TestOpaqueSingleFlight(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, nil)
	tok := newToken(t, "jtp")
	f.addToken(tok, opaque{ID: "tok_1", Scopes: []string{"a", "b"}})
	gate := make(chan struct{})
	f.set(func(f *fakeJeton) { f.gate = gate })
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	verifyAs := func(i int) {
		scopes, want := []string{"a"}, error(nil)
		switch i % 5 {
		case 1:
			scopes = []string{"a", "b"}
		case 2:
			scopes, want = []string{"b", "c"}, verify.ErrInsufficientScope // lacks c
		}
		_, err := v.Verify(context.Background(), tok, scopes...)
		if !errors.Is(err, want) || (want == nil && err != nil) {
			errs <- fmt.Errorf("request %d: %v, want %v", i, err, want)
		}
	}
	wg.Go(func() { verifyAs(0) }) // the leader, held at the gate
	waitFor(t, "the first call", func() bool { return f.calls(tok) == 1 })
	for i := 1; i < n; i++ {
		wg.Go(func() { verifyAs(i) })
	}
	waitFor(t, "the burst to queue behind the first call", func() bool { return verify.Joined(v) == n-1 })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := f.calls(tok); c != 1 {
		t.Errorf("%d calls for a burst of %d, want 1", c, n)
	}
}

// TestOpaqueSingleFlightMixedScopes: when the first request of a burst
// lacks a scope, Jeton's insufficient_scope answer cannot accept the
// others (it says nothing of rate limits), so they share a second call.
func TestOpaqueSingleFlightMixedScopes(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, nil)
	tok := newToken(t, "jtp")
	f.addToken(tok, opaque{ID: "tok_1", Scopes: []string{"a"}})
	gate := make(chan struct{})
	f.set(func(f *fakeJeton) { f.gate = gate })
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := v.Verify(context.Background(), tok, "z"); !errors.Is(err, verify.ErrInsufficientScope) {
			t.Errorf("leader: %v", err)
		}
	})
	waitFor(t, "the first call", func() bool { return f.calls(tok) == 1 })
	const n = 20
	for range n {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok, "a"); err != nil {
				t.Errorf("follower: %v", err)
			}
		})
	}
	waitFor(t, "the burst to queue", func() bool { return verify.Joined(v) == n })
	close(gate)
	wg.Wait()
	if c := f.calls(tok); c != 2 {
		t.Errorf("%d calls, want 2", c)
	}
}

// TestOpaqueLimitedNeverMerged: a token with a rate limit or quota reaches
// Jeton on every request, concurrent or not.
func TestOpaqueLimitedNeverMerged(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, nil)
	joined := int64(0)
	for _, o := range []opaque{
		{ID: "tok_rl", RateLimit: &[3]int64{1000, 999, 60}},
		{ID: "tok_q", Quota: new(int64(5))},
	} {
		tok := newToken(t, "jtp")
		f.addToken(tok, o)
		gate := make(chan struct{})
		f.set(func(f *fakeJeton) { f.gate = gate })
		const n = 20
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				c, err := v.Verify(context.Background(), tok)
				if err != nil {
					t.Errorf("%s: %v", o.ID, err)
					return
				}
				if c.RateLimit == nil && c.Quota == nil {
					t.Errorf("%s: claims lack the limit", o.ID)
				}
			})
		}
		// The first call is held at the gate: the rest of the burst joins it,
		// learns that the token is limited, and calls for itself.
		waitFor(t, "the burst to join the first call", func() bool { return verify.Joined(v) == joined+n-1 })
		joined += n - 1
		close(gate)
		wg.Wait()
		f.set(func(f *fakeJeton) { f.gate = nil })
		for range 10 {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
		}
		if c := f.calls(tok); c != n+10 {
			t.Errorf("%s: %d calls for %d requests, want one each", o.ID, c, n+10)
		}
	}
}

func TestVerifyRequestAndRequire(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	v := f.newVerifier(t, nil)
	var seen *verify.Claims
	h := v.Require("repos:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := verify.FromContext(r.Context())
		if !ok {
			t.Error("no claims in the context")
		}
		seen = c
		w.WriteHeader(204)
	}))
	do := func(auth ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/repos", nil)
		for _, a := range auth {
			r.Header.Add("Authorization", a)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	tok := f.mint(t, es, nil, nil)
	if w := do("Bearer " + tok); w.Code != 204 || seen == nil || seen.Subject != "usr_1" {
		t.Errorf("valid: %d %v", w.Code, seen)
	}
	if w := do(); w.Code != 401 || w.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("no token: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if w := do("Bearer "+tok, "Bearer "+tok); w.Code != 400 {
		t.Errorf("two headers: %d", w.Code)
	}
	narrow := f.mint(t, es, nil, func(m map[string]any) { m["scope"] = "repos:write" })
	w := do("Bearer " + narrow)
	if w.Code != 403 || w.Header().Get("WWW-Authenticate") != `Bearer error="insufficient_scope", error_description="the access token lacks a required scope", scope="repos:read"` {
		t.Errorf("insufficient scope: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if _, ok := verify.FromContext(context.Background()); ok {
		t.Error("FromContext on an empty context")
	}
}
