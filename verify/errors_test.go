package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/verify"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", verify.MaxTokenLen)
	tests := []struct {
		name    string
		headers []string
		want    string
		err     error
		code    string
	}{
		{"none", nil, "", verify.ErrNoToken, ""},
		{"plain", []string{"Bearer abc.def-ghi_jkl~+/=="}, "abc.def-ghi_jkl~+/==", nil, ""},
		{"lower-case scheme", []string{"bearer tok"}, "tok", nil, ""},
		{"upper-case scheme", []string{"BEARER tok"}, "tok", nil, ""},
		{"extra spaces", []string{"Bearer    tok"}, "tok", nil, ""},
		{"max length", []string{"Bearer " + long}, long, nil, ""},
		{"too long", []string{"Bearer " + long + "a"}, "", verify.ErrMalformed, "invalid_request"},
		{"other scheme", []string{"Basic dXNlcjpwYXNz"}, "", verify.ErrNoToken, ""},
		{"empty header", []string{""}, "", verify.ErrNoToken, ""},
		{"scheme only", []string{"Bearer"}, "", verify.ErrMalformed, "invalid_request"},
		{"scheme and space", []string{"Bearer "}, "", verify.ErrMalformed, "invalid_request"},
		{"two tokens", []string{"Bearer a b"}, "", verify.ErrMalformed, "invalid_request"},
		{"bad character", []string{"Bearer a,b"}, "", verify.ErrMalformed, "invalid_request"},
		{"quote", []string{`Bearer "a"`}, "", verify.ErrMalformed, "invalid_request"},
		{"padding inside", []string{"Bearer a=b"}, "", verify.ErrMalformed, "invalid_request"},
		{"only padding", []string{"Bearer ==="}, "", verify.ErrMalformed, "invalid_request"},
		{"non-ASCII", []string{"Bearer tök"}, "", verify.ErrMalformed, "invalid_request"},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", verify.ErrMalformed, "invalid_request"},
		{"tab separator", []string{"Bearer\ttok"}, "", verify.ErrNoToken, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := verify.BearerToken(r)
			if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("BearerToken = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
			if err != nil {
				var e *verify.Error
				if !errors.As(err, &e) || e.Code != tt.code {
					t.Errorf("error code %q, want %q", e.Code, tt.code)
				}
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	rateLimited := &verify.Error{Code: "rate_limited", Description: "the access token is over its rate limit", Status: 429,
		RetryAfter: 2500 * time.Millisecond, RateLimit: &verify.RateLimit{Limit: 100, Remaining: 0, Reset: 30 * time.Second}, Err: verify.ErrRateLimited}
	tests := []struct {
		name    string
		err     error
		status  int
		headers map[string]string
		body    map[string]string
	}{
		{"no token", must(verify.BearerToken(httptest.NewRequest("GET", "/", nil))), 401,
			map[string]string{"WWW-Authenticate": "Bearer"},
			map[string]string{"error": "unauthorized", "error_description": "the request has no access token"}},
		{"malformed header", must(verify.BearerToken(reqWith("Bearer a b"))), 400,
			map[string]string{"WWW-Authenticate": `Bearer error="invalid_request", error_description="the Authorization header is malformed"`},
			map[string]string{"error": "invalid_request", "error_description": "the Authorization header is malformed"}},
		{"expired", &verify.Error{Code: "invalid_token", Description: "the access token expired", Status: 401, Err: verify.ErrExpired}, 401,
			map[string]string{"WWW-Authenticate": `Bearer error="invalid_token", error_description="the access token expired"`},
			map[string]string{"error": "invalid_token", "error_description": "the access token expired"}},
		{"insufficient scope", &verify.Error{Code: "insufficient_scope", Description: "needs more", Status: 403, Scope: "a b", Err: verify.ErrInsufficientScope}, 403,
			map[string]string{"WWW-Authenticate": `Bearer error="insufficient_scope", error_description="needs more", scope="a b"`},
			map[string]string{"error": "insufficient_scope", "error_description": "needs more", "scope": "a b"}},
		{"quotes are escaped", &verify.Error{Code: "invalid_token", Description: "say \"hi\" \\ \x01 é", Status: 401, Err: verify.ErrMalformed}, 401,
			map[string]string{"WWW-Authenticate": `Bearer error="invalid_token", error_description="say \"hi\" \\ ? ??"`},
			map[string]string{"error": "invalid_token", "error_description": "say \"hi\" \\ \x01 é"}},
		{"rate limited", rateLimited, 429,
			map[string]string{"Retry-After": "3", "RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "30", "WWW-Authenticate": ""},
			map[string]string{"error": "rate_limited", "error_description": "the access token is over its rate limit"}},
		{"unavailable", fmt.Errorf("wrapped: %w", &verify.Error{Code: "temporarily_unavailable", Description: "try later", Status: 503, Err: verify.ErrUnavailable}), 503,
			map[string]string{"WWW-Authenticate": ""},
			map[string]string{"error": "temporarily_unavailable", "error_description": "try later"}},
		{"bare sentinel", verify.ErrRevoked, 401,
			map[string]string{"WWW-Authenticate": `Bearer error="invalid_token", error_description="the access token was revoked"`},
			map[string]string{"error": "invalid_token", "error_description": "the access token was revoked"}},
		{"bare signature sentinel", verify.ErrInvalidSignature, 401, nil,
			map[string]string{"error": "invalid_token", "error_description": "the access token is invalid"}},
		{"bare scope sentinel", verify.ErrInsufficientScope, 403, nil,
			map[string]string{"error": "insufficient_scope", "error_description": "the access token lacks a required scope"}},
		{"bare quota sentinel", fmt.Errorf("x: %w", verify.ErrQuotaExceeded), 429, nil,
			map[string]string{"error": "quota_exceeded", "error_description": "the access token has used up its quota"}},
		{"forbidden ip", verify.ErrForbiddenIP, 403, nil,
			map[string]string{"error": "invalid_token", "error_description": "the access token may not be used from this address"}},
		{"other error", errors.New("boom: secret detail"), 500, map[string]string{"WWW-Authenticate": ""},
			map[string]string{"error": "server_error", "error_description": "internal error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			verify.WriteError(w, tt.err)
			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			for k, want := range tt.headers {
				if got := w.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if diff := cmp.Diff(body, tt.body); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
		})
	}
}

func must(_ string, err error) error { return err }

func reqWith(auth string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", auth)
	return r
}

// TestEverySentinelThroughWriteError: each sentinel Verify can return maps
// to its documented status.
func TestEverySentinelThroughWriteError(t *testing.T) {
	t.Parallel()
	want := map[error]int{
		verify.ErrNoToken: 401, verify.ErrMalformed: 401, verify.ErrInvalidSignature: 401, verify.ErrExpired: 401,
		verify.ErrNotYetValid: 401, verify.ErrWrongIssuer: 401, verify.ErrWrongAudience: 401, verify.ErrWrongType: 401,
		verify.ErrRevoked: 401, verify.ErrUnknownToken: 401, verify.ErrInsufficientScope: 403, verify.ErrRateLimited: 429,
		verify.ErrQuotaExceeded: 429, verify.ErrForbiddenIP: 403, verify.ErrUnavailable: 503,
	}
	for sentinel, status := range want {
		w := httptest.NewRecorder()
		verify.WriteError(w, sentinel)
		if w.Code != status {
			t.Errorf("%v: status %d, want %d", sentinel, w.Code, status)
		}
	}
}

// TestTokenNeverLeaks feeds tokens through every failure path and checks
// that no error string, response and log line contains them.
func TestTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	var logs logBuffer
	var results []verify.Result
	v := f.newVerifier(t, func(c *verify.Config) {
		c.Logger = debugLogger(&logs)
		c.OnVerify = func(r verify.Result) { results = append(results, r) }
		c.CacheTTL = -1
	})
	ctx := context.Background()
	opaqueTok := newToken(t, "jtp")
	f.addToken(opaqueTok, opaque{Code: "revoked"})
	jwtTok := f.mint(t, es, nil, func(m map[string]any) { m["exp"] = f.clock.Now().Add(-time.Hour).Unix() })
	unknownKid := f.mint(t, newSigner(t, "ES256", "k9"), nil, nil)
	secrets := []string{opaqueTok, jwtTok, unknownKid, opaqueTok[4:], strings.Split(jwtTok, ".")[2]}
	var texts []string
	check := func(err error) {
		if err == nil {
			t.Fatal("expected an error")
		}
		texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		var e *verify.Error
		if errors.As(err, &e) {
			texts = append(texts, e.Description, e.Scope)
		}
		w := httptest.NewRecorder()
		verify.WriteError(w, err)
		texts = append(texts, w.Body.String(), fmt.Sprint(w.Header()))
	}
	_, err := v.Verify(ctx, opaqueTok)
	check(err)
	_, err = v.Verify(ctx, jwtTok)
	check(err)
	_, err = v.Verify(ctx, unknownKid)
	check(err)
	_, err = v.Verify(ctx, opaqueTok[:len(opaqueTok)-1]+"Z") // bad checksum
	check(err)
	_, err = v.Verify(ctx, opaqueTok+"."+opaqueTok+"."+opaqueTok) // JWT-shaped garbage
	check(err)
	_, err = v.VerifyRequest(reqWith("Bearer " + opaqueTok + " " + opaqueTok))
	check(err)
	// Jeton failing, and Jeton down.
	f.set(func(f *fakeJeton) { f.verifyStatus = 500; f.jwksStatus = 500 })
	_, err = v.Verify(ctx, opaqueTok)
	check(err)
	f.srv.Close()
	other := newToken(t, "jtp")
	secrets = append(secrets, other)
	_, err = v.Verify(ctx, other)
	check(err)
	_, err = v.Verify(ctx, f.mint(t, newSigner(t, "ES256", "k10"), nil, nil))
	check(err)
	for _, r := range results {
		if r.Err != nil {
			texts = append(texts, r.Err.Error())
		}
	}
	texts = append(texts, logs.String())
	if !strings.Contains(logs.String(), "unavailable") {
		t.Errorf("expected an unavailability warning in the log, got %q", logs.String())
	}
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("a token leaked into %q", text)
			}
		}
	}
}
