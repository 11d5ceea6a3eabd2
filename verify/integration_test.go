package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/verify"
)

var actor = tokens.Actor{ID: "test"}

// jeton wraps a real server for these tests.
type jeton struct {
	*apitest.Server
	t *testing.T
}

func newJeton(t *testing.T, opts apitest.Options) *jeton {
	return &jeton{Server: apitest.NewWith(t, opts), t: t}
}

func (j *jeton) verifier(edit func(*verify.Config)) *verify.Verifier {
	j.t.Helper()
	cfg := verify.Config{Issuer: j.URL, Audience: j.API.Identifier, Credential: j.Verify, Now: j.Clock.Now}
	if edit != nil {
		edit(&cfg)
	}
	v, err := verify.New(context.Background(), cfg)
	if err != nil {
		j.t.Fatalf("verify.New: %v", err)
	}
	j.t.Cleanup(func() { v.Close() })
	return v
}

// apiKey creates an API key for the acme API (or api).
func (j *jeton) apiKey(api string, edit func(*tokens.CreateParams)) (string, string) {
	j.t.Helper()
	sub := "cus_42"
	p := tokens.CreateParams{API: api, Settings: tokens.Settings{Subject: &sub, Scopes: []string{"repos:read"},
		Metadata: json.RawMessage(`{"plan":"pro"}`)}}
	if edit != nil {
		edit(&p)
	}
	c, err := j.Tokens.CreateToken(context.Background(), p, actor)
	if err != nil {
		j.t.Fatalf("CreateToken: %v", err)
	}
	return c.Secret, c.Token.ID
}

// clientToken gets an access token with the client credentials grant.
func (j *jeton) clientToken(format, resource, scope string) (tok, clientID string) {
	j.t.Helper()
	c, secret, err := j.OAuth.CreateClient(context.Background(), oauth.ClientParams{Name: "svc " + format,
		GrantTypes: []string{oauth.GrantClientCredentials}, APIs: []string{j.API.ID, "other"},
		Scopes: []string{"repos:read", "repos:write", "read"}, TokenFormat: format}, actor)
	if err != nil {
		j.t.Fatalf("CreateClient: %v", err)
	}
	return j.token(c.ID, secret, resource, scope), c.ID
}

func (j *jeton) token(clientID, secret, resource, scope string) string {
	j.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if resource != "" {
		form.Set("resource", resource)
	}
	req, _ := http.NewRequest("POST", j.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		j.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != 200 {
		j.t.Fatalf("token endpoint: %d %s", resp.StatusCode, raw)
	}
	return body.AccessToken
}

// admin calls the admin API.
func (j *jeton) admin(method, path string) {
	j.t.Helper()
	req, _ := http.NewRequest(method, j.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+j.Admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		j.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		j.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
}

// TestIntegration verifies every kind of Jeton token against a real
// server, through Verify and through the Require middleware, accepted and
// rejected for the right reasons.
func TestIntegration(t *testing.T) {
	t.Parallel()
	j := newJeton(t, apitest.Options{KeyPrePublish: -1})
	ctx := context.Background()
	if _, err := j.Tokens.CreateAPI(ctx, tokens.APIParams{Name: "other", Identifier: "https://other.test", Scopes: []string{"read"}}, actor); err != nil {
		t.Fatal(err)
	}
	v := j.verifier(nil)

	key, keyID := j.apiKey(j.API.ID, nil)
	otherKey, _ := j.apiKey("other", func(p *tokens.CreateParams) { p.Settings.Scopes = []string{"read"} })
	revokedKey, revokedID := j.apiKey(j.API.ID, nil)
	expiringKey, _ := j.apiKey(j.API.ID, func(p *tokens.CreateParams) { p.ExpiresIn = time.Minute })
	rl := &store.RateLimit{Limit: 2, Window: time.Minute}
	limitedKey, _ := j.apiKey(j.API.ID, func(p *tokens.CreateParams) { p.Settings.RateLimit = &rl })
	q := &store.Quota{Remaining: 1}
	quotaKey, _ := j.apiKey(j.API.ID, func(p *tokens.CreateParams) { p.Settings.Quota = &q })
	cidrKey, _ := j.apiKey(j.API.ID, func(p *tokens.CreateParams) { p.Settings.AllowedCIDRs = []string{"10.0.0.0/8"} })
	opaqueAT, opaqueClient := j.clientToken(store.FormatOpaque, "", "repos:read")
	jwtAT, jwtClient := j.clientToken(store.FormatJWT, j.API.Identifier, "repos:read")
	otherJWT, _ := j.clientToken(store.FormatJWT, "https://other.test", "read")

	t.Run("accepted", func(t *testing.T) {
		c, err := v.Verify(ctx, key, "repos:read")
		if err != nil {
			t.Fatal(err)
		}
		want := &verify.Claims{Kind: verify.KindOpaque, TokenID: keyID, Subject: "cus_42", Audience: []string{j.API.Identifier},
			Scopes: []string{"repos:read"}, Metadata: json.RawMessage(`{"plan":"pro"}`)}
		if diff := cmp.Diff(c, want); diff != "" {
			t.Errorf("API key claims (-got +want):\n%s", diff)
		}
		c, err = v.Verify(ctx, opaqueAT, "repos:read")
		if err != nil {
			t.Fatal(err)
		}
		if c.Kind != verify.KindOpaque || c.Subject != opaqueClient || !strings.HasPrefix(c.TokenID, "tok_") || c.ExpiresAt.IsZero() {
			t.Errorf("opaque access token claims %+v", c)
		}
		c, err = v.Verify(ctx, jwtAT, "repos:read")
		if err != nil {
			t.Fatal(err)
		}
		if c.Kind != verify.KindJWT || c.Subject != jwtClient || c.ClientID != jwtClient || !strings.HasPrefix(c.TokenID, "tok_") ||
			!cmp.Equal(c.Audience, []string{j.API.Identifier}) || !cmp.Equal(c.Scopes, []string{"repos:read"}) {
			t.Errorf("JWT claims %+v", c)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		bad := key[:len(key)-1] + map[bool]string{true: "A", false: "B"}[key[len(key)-1] != 'A']
		tests := []struct {
			name   string
			token  string
			scopes []string
			want   error
		}{
			{"API key lacking a scope", key, []string{"repos:write"}, verify.ErrInsufficientScope},
			{"opaque access token lacking a scope", opaqueAT, []string{"repos:write"}, verify.ErrInsufficientScope},
			{"JWT lacking a scope", jwtAT, []string{"repos:write"}, verify.ErrInsufficientScope},
			{"API key of another API", otherKey, nil, verify.ErrWrongAudience},
			{"JWT for another API", otherJWT, nil, verify.ErrWrongAudience},
			{"bad checksum", bad, nil, verify.ErrMalformed},
			{"garbage", "jtp_" + strings.Repeat("0", 49), nil, verify.ErrMalformed},
			{"well-formed but unknown", newToken(t, "jtp"), nil, verify.ErrUnknownToken},
			{"address not allowed", cidrKey, nil, verify.ErrForbiddenIP},
			{"tampered JWT", jwtAT[:len(jwtAT)-4] + "AAAA", nil, verify.ErrInvalidSignature},
		}
		for _, tt := range tests {
			if _, err := v.Verify(ctx, tt.token, tt.scopes...); !errors.Is(err, tt.want) {
				t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
			}
		}
	})

	t.Run("rate limit and quota", func(t *testing.T) {
		for i := range 2 {
			c, err := v.Verify(ctx, limitedKey)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if c.RateLimit == nil || c.RateLimit.Limit != 2 || c.RateLimit.Remaining != int64(1-i) {
				t.Errorf("request %d: rate limit %+v", i, c.RateLimit)
			}
		}
		_, err := v.Verify(ctx, limitedKey)
		var e *verify.Error
		if !errors.Is(err, verify.ErrRateLimited) || !errors.As(err, &e) || e.RetryAfter <= 0 || e.RateLimit == nil {
			t.Fatalf("third request: %#v", err)
		}
		if _, err := v.Verify(ctx, quotaKey); err != nil {
			t.Fatalf("quota: %v", err)
		}
		if _, err := v.Verify(ctx, quotaKey); !errors.Is(err, verify.ErrQuotaExceeded) {
			t.Errorf("quota used up: %v", err)
		}
	})

	t.Run("middleware", func(t *testing.T) {
		mux := http.NewServeMux()
		mux.Handle("GET /repos", v.Require("repos:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := verify.FromContext(r.Context())
			fmt.Fprintf(w, "%s %s", c.Kind, c.Subject)
		})))
		mux.Handle("POST /repos", v.Require("repos:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
		api := httptest.NewServer(mux)
		defer api.Close()
		do := func(method, auth string) (int, string, http.Header) {
			req, _ := http.NewRequest(method, api.URL+"/repos", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b), resp.Header
		}
		for tok, want := range map[string]string{key: "opaque cus_42", opaqueAT: "opaque " + opaqueClient, jwtAT: "jwt " + jwtClient} {
			if code, body, _ := do("GET", "Bearer "+tok); code != 200 || body != want {
				t.Errorf("GET: %d %q, want 200 %q", code, body, want)
			}
			if code, _, h := do("POST", "Bearer "+tok); code != 403 || !strings.Contains(h.Get("WWW-Authenticate"), `scope="repos:write"`) {
				t.Errorf("POST: %d %q, want 403 insufficient_scope", code, h.Get("WWW-Authenticate"))
			}
		}
		if code, _, h := do("GET", ""); code != 401 || h.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("no token: %d %q", code, h.Get("WWW-Authenticate"))
		}
		if code, _, h := do("GET", "Bearer "+otherJWT); code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("other API's JWT: %d %q", code, h.Get("WWW-Authenticate"))
		}
		if code, _, _ := do("GET", "Bearer a b"); code != 400 {
			t.Errorf("malformed header: %d", code)
		}
		if code, _, h := do("GET", "Bearer "+limitedKey); code != 429 || h.Get("Retry-After") == "" || h.Get("RateLimit-Limit") != "2" {
			t.Errorf("rate limited: %d %v", code, h)
		}
		if code, _, _ := do("GET", "Bearer "+cidrKey); code != 403 {
			t.Errorf("forbidden address: %d", code)
		}
	})

	t.Run("revoked and expired", func(t *testing.T) {
		if _, err := v.Verify(ctx, revokedKey); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, expiringKey); err != nil {
			t.Fatal(err)
		}
		j.admin("DELETE", "/v1/tokens/"+revokedID)
		// Without the revocation feed, a cached answer lives CacheTTL.
		j.Clock.Advance(verify.DefaultCacheTTL)
		if _, err := v.Verify(ctx, revokedKey); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("revoked API key: %v", err)
		}
		j.Clock.Advance(time.Minute)
		if _, err := v.Verify(ctx, expiringKey); !errors.Is(err, verify.ErrExpired) {
			t.Errorf("expired API key: %v", err)
		}
		j.Clock.Advance(2 * time.Hour)
		if _, err := v.Verify(ctx, jwtAT); !errors.Is(err, verify.ErrExpired) {
			t.Errorf("expired JWT: %v", err)
		}
		if _, err := v.Verify(ctx, opaqueAT); !errors.Is(err, verify.ErrExpired) {
			t.Errorf("expired opaque access token: %v", err)
		}
	})
}

// TestIntegrationKeyRotation rotates the signing keys while verifications
// run concurrently: none fails, and tokens of the new key verify as soon
// as it signs (the unknown kid triggers one JWKS refresh).
func TestIntegrationKeyRotation(t *testing.T) {
	t.Parallel()
	j := newJeton(t, apitest.Options{KeyPrePublish: 300 * time.Millisecond})
	v := j.verifier(nil)
	c, secret, err := j.OAuth.CreateClient(context.Background(), oauth.ClientParams{Name: "svc", GrantTypes: []string{oauth.GrantClientCredentials},
		APIs: []string{j.API.ID}, Scopes: []string{"repos:read"}, TokenFormat: store.FormatJWT}, actor)
	if err != nil {
		t.Fatal(err)
	}
	first := j.token(c.ID, secret, j.API.Identifier, "repos:read")
	oldKid := kidOf(t, first)

	var (
		verified, failures atomic.Int64
		newKidSeen         atomic.Bool
		stop               = make(chan struct{})
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		errs               []error
	)
	fail := func(err error) {
		failures.Add(1)
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	// Fresh tokens, signed by whichever key signs now.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tok := j.token(c.ID, secret, j.API.Identifier, "repos:read")
			if _, err := v.Verify(context.Background(), tok, "repos:read"); err != nil {
				fail(fmt.Errorf("kid %s: %w", kidOf(t, tok), err))
				continue
			}
			verified.Add(1)
			if kidOf(t, tok) != oldKid {
				newKidSeen.Store(true)
			}
		}
	})
	// A token of the old key, which stays published.
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := v.Verify(context.Background(), first, "repos:read"); err != nil {
					fail(fmt.Errorf("old token: %w", err))
				}
				verified.Add(1)
			}
		})
	}
	waitFor(t, "verifications before the rotation", func() bool { return verified.Load() > 50 })
	j.admin("POST", "/v1/keys/rotate")
	waitFor(t, "a token of the new key", newKidSeen.Load)
	after := verified.Load()
	waitFor(t, "verifications after the rotation", func() bool { return verified.Load() > after+50 })
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d verifications failed across the rotation, first: %v", n, errs[0])
	}
}

// kidOf returns the kid header of a JWT.
func kidOf(t testing.TB, tok string) string {
	h, _, _ := strings.Cut(tok, ".")
	var hdr struct {
		Kid string `json:"kid"`
	}
	b, err := b64decode(h)
	if err != nil || json.Unmarshal(b, &hdr) != nil {
		t.Errorf("bad JWT header")
	}
	return hdr.Kid
}

// TestIntegrationClientAddress: a key allowed only from the resource
// server's own network is refused from a client outside it, whether or not
// the client's IPv6 address carries a zone: the zone is dropped, not the
// address (which would make Jeton check the resource server's address).
func TestIntegrationClientAddress(t *testing.T) {
	t.Parallel()
	j := newJeton(t, apitest.Options{KeyPrePublish: -1})
	v := j.verifier(func(c *verify.Config) { c.CacheTTL, c.NegativeCacheTTL = -1, -1 })
	key, _ := j.apiKey(j.API.ID, func(p *tokens.CreateParams) {
		p.Settings.AllowedCIDRs = []string{"127.0.0.0/8", "fe80::1/128"} // where the resource server runs, one link-local client
	})
	tests := []struct {
		remote string
		want   error
	}{
		{"[fe80::2]:1234", verify.ErrForbiddenIP},
		{"[fe80::2%eth0]:1234", verify.ErrForbiddenIP},
		{"[fe80::1%eth0]:1234", nil},
		{"192.0.2.1:1234", verify.ErrForbiddenIP},
		// No IP address (a Unix socket): unknown, so no range is
		// satisfied, not even the resource server's own.
		{"@", verify.ErrForbiddenIP},
		{"", verify.ErrForbiddenIP},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/repos", nil)
		r.RemoteAddr = tt.remote
		r.Header.Set("Authorization", "Bearer "+key)
		if _, err := v.VerifyRequest(r); !errors.Is(err, tt.want) {
			t.Errorf("client %s, key allowed from 127.0.0.0/8 and fe80::1: %v, want %v", tt.remote, err, tt.want)
		}
	}
}
