package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jetonhq/jeton/verify"
)

// fakeVerifier is a hand-written Verifier: tokens map to claims; anything
// else is invalid. The real verifier is exercised in integration_test.go.
type fakeVerifier struct {
	api    string
	tokens map[string]*verify.Claims
	errs   map[string]error

	mu     sync.Mutex
	calls  int
	lastIP string
	closed bool
}

func (f *fakeVerifier) VerifyRequest(r *http.Request, scopes ...string) (*verify.Claims, error) {
	f.mu.Lock()
	f.calls++
	f.lastIP = r.RemoteAddr
	f.mu.Unlock()
	tok, err := verify.BearerToken(r)
	if err != nil {
		return nil, err
	}
	if err := f.errs[tok]; err != nil {
		return nil, err
	}
	c, ok := f.tokens[tok]
	if !ok {
		return nil, &verify.Error{Code: "invalid_token", Description: "the token is not valid", Status: http.StatusUnauthorized, Err: verify.ErrUnknownToken}
	}
	for _, s := range scopes {
		if !c.HasScope(s) {
			return nil, &verify.Error{Code: "insufficient_scope", Description: "the token lacks a scope", Status: http.StatusForbidden,
				Scope: strings.Join(scopes, " "), Err: verify.ErrInsufficientScope}
		}
	}
	return c, nil
}

func (f *fakeVerifier) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// upstream records what reached it and answers with a small JSON echo.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.RequestURI())
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

const testRules = `
api: https://api.example.com
routes:
  - name: public
    path: /public/**
    public: true
  - name: read
    methods: [GET]
    path: /repos/**
    scopes: [repos:read]
  - name: write
    methods: [POST]
    path: /repos/*
    scopes: [repos:write]
  - name: events
    path: /events
  - name: billing
    path: /billing/**
    api: https://billing.example.com
`

type fixture struct {
	proxy     *Proxy
	url       string
	up        *upstream
	verifiers map[string]*fakeVerifier
}

var reader = &verify.Claims{Kind: verify.KindOpaque, TokenID: "tok_reader", Subject: "alice", ClientID: "cli_1", Scopes: []string{"repos:read"}}

func newFixture(t *testing.T, rules string, h http.HandlerFunc, mod func(*Config)) *fixture {
	t.Helper()
	rs, err := ParseRules("test.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{up: newUpstream(t, h), verifiers: map[string]*fakeVerifier{}}
	var mu sync.Mutex
	target, _ := url.Parse(f.up.srv.URL + "/base")
	cfg := Config{Upstream: target, Rules: rs, NewVerifier: func(ctx context.Context, api string) (Verifier, error) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(api, "broken") {
			return nil, errors.New("discovery failed")
		}
		v := &fakeVerifier{api: api,
			tokens: map[string]*verify.Claims{
				"reader": reader,
				"writer": {Kind: verify.KindJWT, TokenID: "tok_writer", Subject: "bob\r\nX-Evil: 1", Scopes: []string{"repos:read", "repos:write"}},
				"limited": {Kind: verify.KindOpaque, TokenID: "tok_limited", Subject: "carol", Scopes: []string{"repos:read"},
					RateLimit: &verify.RateLimit{Limit: 10, Remaining: 9, Reset: 1500 * time.Millisecond}},
			},
			errs: map[string]error{
				"throttled": &verify.Error{Code: "rate_limited", Description: "rate limit exceeded", Status: http.StatusTooManyRequests,
					RetryAfter: 3 * time.Second, RateLimit: &verify.RateLimit{Limit: 10, Reset: 3 * time.Second}, Err: verify.ErrRateLimited},
			}}
		f.verifiers[api] = v
		return v, nil
	}}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	f.proxy, f.url = p, srv.URL
	return f
}

func (f *fixture) do(t *testing.T, method, path, token string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestForwardsWithIdentity(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	resp, body := f.do(t, "GET", "/repos/jeton?x=1", "reader", map[string]string{
		"X-Jeton-Subject": "mallory", "X-Jeton-Anything": "forged", "X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6",
		"X-Real-IP": "6.6.6.6",
	})
	if resp.StatusCode != 200 || body != "upstream saw GET /base/repos/jeton?x=1" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	got := f.up.last(t)
	for name, want := range map[string]string{
		"X-Jeton-Subject":   "alice",
		"X-Jeton-Scopes":    "repos:read",
		"X-Jeton-Token-Id":  "tok_reader",
		"X-Jeton-Client-Id": "cli_1",
		"X-Jeton-Anything":  "",
		"Authorization":     "",
		"Forwarded":         "",
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Real-Ip":         "127.0.0.1", // the peer, not what it claimed
	} {
		if v := strings.Join(got.Header.Values(name), ","); v != want {
			t.Errorf("upstream %s = %q, want %q", name, v, want)
		}
	}
	if h := got.Header.Get("X-Forwarded-Host"); !strings.HasPrefix(f.url, "http://"+h) {
		t.Errorf("X-Forwarded-Host = %q, proxy is %s", h, f.url)
	}
}

func TestIdentityValuesCannotSplitHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	resp, _ := f.do(t, "POST", "/repos/jeton", "writer", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := f.up.last(t)
	if s := got.Header.Get("X-Jeton-Subject"); s != "bob%0D%0AX-Evil: 1" {
		t.Errorf("subject header %q", s)
	}
	if got.Header.Get("X-Evil") != "" {
		t.Error("a subject smuggled a header")
	}
}

// TestClientIdentityHeadersRemoved: a header a client sends that could
// pass for an identity header is removed, whatever its case and whether it
// spells '-' as '_' (CGI, WSGI and Rack read X_User as X-User), on public
// and guarded routes alike; the upstream sees only the proxy's values.
func TestClientIdentityHeadersRemoved(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules+"headers:\n  subject: X-User\n", nil, nil)
	sent := map[string]string{
		"X-Jeton-Subject": "mallory", "X_Jeton_Scopes": "admin", "x_jeton_token_id": "tok_admin",
		"X-Jeton_Client-Id": "cli_admin", "X_JETON_ANYTHING": "forged", "X_User": "root", "x_user": "root",
		"X-USER": "root", "X_Request_Id": "req_1",
		// The forwarding headers, which the proxy sets, spelled otherwise.
		"X_Real_IP": "6.6.6.6", "X_Forwarded_For": "6.6.6.6", "x_forwarded_host": "evil.example",
		"X_FORWARDED_PROTO": "https", "X-Forwarded_Proto": "https",
		// Headers that would make the upstream take another method or path
		// than the one the routes decided on.
		"X-HTTP-Method-Override": "DELETE", "X_HTTP_Method": "DELETE", "x-method-override": "DELETE",
		"X-Original-URL": "/admin", "X-Rewrite-Url": "/admin", "X-Original-Method": "DELETE",
	}
	tests := []struct {
		name, path, token string
		want              map[string][]string // every upstream header that is not standard
	}{
		{"public route", "/public/readme", "", map[string][]string{"X_request_id": {"req_1"}}},
		{"guarded route", "/repos/a", "reader", map[string][]string{
			"X_request_id": {"req_1"}, "X-User": {"alice"}, "X-Jeton-Scopes": {"repos:read"},
			"X-Jeton-Token-Id": {"tok_reader"}, "X-Jeton-Client-Id": {"cli_1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.url+tt.path, nil)
			for k, v := range sent {
				req.Header[k] = []string{v} // sent as spelled
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := map[string][]string{}
			for k, v := range f.up.last(t).Header {
				switch k {
				case "Accept-Encoding", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip":
				default:
					got[k] = v
				}
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("upstream headers (-got +want):\n%s", diff)
			}
			if h := f.up.last(t).Header; h.Get("X-Real-Ip") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" {
				t.Errorf("X-Real-Ip %q, X-Forwarded-Proto %q: want the proxy's", h.Get("X-Real-Ip"), h.Get("X-Forwarded-Proto"))
			}
		})
	}
}

func TestIdentityHeaderNames(t *testing.T) {
	t.Parallel()
	st := &state{strip: DefaultHeaders.names()}
	custom := &state{strip: Headers{Subject: "X-User", Scopes: "Scopes"}.names()}
	tests := []struct {
		st   *state
		name string
		want bool
	}{
		{st, "X-Jeton-Subject", true},
		{st, "x-jeton-subject", true},
		{st, "X_Jeton_Subject", true},
		{st, "x_jeton_whatever", true},
		{st, "X-Jeton_", true},
		{st, "X-Jeton", false},
		{st, "X-Jetons-Subject", false},
		{st, "X-Request-Id", false},
		{nil, "X_JETON_SCOPES", true},
		{nil, "X-User", false},
		{custom, "X-User", true},
		{custom, "x_user", true},
		{custom, "X_USER", true},
		{custom, "X-Users", false},
		{custom, "X--User", false},
		{custom, "scopes", true},
		{custom, "X-Jeton-Subject", true},
	}
	for _, tt := range tests {
		if got := tt.st.identityHeader(tt.name); got != tt.want {
			t.Errorf("identityHeader(%q) with %v = %v, want %v", tt.name, tt.st, got, tt.want)
		}
	}
}

// TestDenials checks the answers the proxy gives itself, as docs/proxy.md
// lists them: the status, the body's error code and the RFC 6750 §3
// challenge, which a request without a token gets bare and which a
// refusal by the routes does not get at all (access_denied is no RFC 6750
// error code, and no other token would help).
func TestDenials(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	const none = "(none)"
	tests := []struct {
		name, method, path, token string
		status                    int
		code                      string // the body's "error"
		wwwAuth                   string // prefix of WWW-Authenticate; none: absent
	}{
		{"no token", "GET", "/repos/a", "", 401, "unauthorized", "Bearer"},
		{"unknown token", "GET", "/repos/a", "nope", 401, "invalid_token", `Bearer error="invalid_token"`},
		{"missing scope", "POST", "/repos/a", "reader", 403, "insufficient_scope", `Bearer error="insufficient_scope"`},
		{"no route", "GET", "/nowhere", "reader", 403, "access_denied", none},
		{"method without route", "DELETE", "/repos/a", "writer", 403, "access_denied", none},
		{"dot segments", "GET", "/public/../repos/a", "", 400, "invalid_request", ""},
		{"encoded dot segments", "GET", "/public/%2e%2e/repos/a", "", 400, "invalid_request", ""},
		{"encoded slash", "GET", "/public/a%2Fb", "", 400, "invalid_request", ""},
		{"double slash", "GET", "/public//a", "", 400, "invalid_request", ""},
		{"backslash", "GET", "/public/a%5C..%5Crepos", "", 400, "invalid_request", ""},
		{"dot segment with a path parameter", "GET", "/public/..;/repos/a", "", 400, "invalid_request", ""},
		{"dot segment with a parameter value", "GET", "/public/..;x=1/repos/a", "", 400, "invalid_request", ""},
		{"path parameter", "GET", "/public/a;jsessionid=1", "", 400, "invalid_request", ""},
		{"encoded semicolon", "GET", "/public/..%3B/repos/a", "", 400, "invalid_request", ""},
		{"lower-case method", "get", "/public/a", "", 400, "invalid_request", ""},
		{"mixed-case method", "Delete", "/repos/a", "writer", 400, "invalid_request", ""},
		{"method with a digit", "GET2", "/public/a", "", 400, "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.up.count()
			resp, body := sendAsWritten(t, tt.method, f.url, tt.path, tt.token)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
			var got struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(body, &got); err != nil || got.Error != tt.code {
				t.Errorf("body %s (%v), want error %q", body, err, tt.code)
			}
			switch h, ok := resp.Header["Www-Authenticate"]; {
			case tt.wwwAuth == none && ok:
				t.Errorf("WWW-Authenticate %q, want none", h)
			case tt.wwwAuth != none && tt.wwwAuth != "" && (len(h) != 1 || !strings.HasPrefix(h[0], tt.wwwAuth)):
				t.Errorf("WWW-Authenticate %q, want it to start with %q", h, tt.wwwAuth)
			}
			if tt.wwwAuth == "Bearer" && resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want a bare Bearer challenge (RFC 6750 §3.1)", resp.Header.Get("WWW-Authenticate"))
			}
			if f.up.count() != before {
				t.Error("a denied request reached the upstream")
			}
		})
	}
}

// TestNoFallThroughToWeakerRoute: spellings that an upstream reads as a
// request a strict route guards, but that would skip that route here
// (a lower-case method, a trailing slash, path parameters), are refused
// instead of matching a later, weaker route or the default.
func TestNoFallThroughToWeakerRoute(t *testing.T) {
	t.Parallel()
	deny := newFixture(t, `
api: https://api.example.com
routes:
  - name: delete
    methods: [DELETE]
    path: /repos/*
    scopes: [repos:admin]
  - name: settings
    path: /repos/*/settings
    scopes: [repos:write]
  - name: read
    path: /repos/**
    scopes: [repos:read]
  - name: public
    path: /public/**
    public: true
`, nil, nil)
	allow := newFixture(t, `
api: https://api.example.com
default: allow
routes:
  - name: admin
    path: /admin
    scopes: [admin]
  - name: settings
    path: /repos/*/settings
    scopes: [repos:write]
  - name: public
    path: /repos/**
    public: true
`, nil, nil)
	tests := []struct {
		name   string
		f      *fixture
		method string
		path   string // sent exactly as written
		token  string
		status int
	}{
		{"DELETE", deny, "DELETE", "/repos/a", "reader", 403},
		{"lower-case DELETE", deny, "delete", "/repos/a", "reader", 400},
		{"settings", deny, "GET", "/repos/a/settings", "reader", 403},
		{"settings with a trailing slash", deny, "GET", "/repos/a/settings/", "reader", 403},
		{"repository with a trailing slash", deny, "GET", "/repos/a/", "reader", 200},
		{"settings through a dot-dot parameter", deny, "GET", "/public/..;/repos/a/settings", "", 400},
		{"settings with a parameter", deny, "GET", "/repos;x/a/settings", "reader", 400},
		{"default allow: guarded with a trailing slash", allow, "GET", "/admin/", "", 401},
		{"default allow: ambiguous", allow, "GET", "/repos/a/settings/", "", 403},
		{"default allow: public with a trailing slash", allow, "GET", "/repos/a/", "", 200},
		{"default allow: unmatched with a trailing slash", allow, "GET", "/other/", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.f.up.count()
			resp, body := sendAsWritten(t, tt.method, tt.f.url, tt.path, tt.token)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.status)
			}
			if reached := tt.f.up.count() != before; reached != (tt.status == 200) {
				t.Errorf("reached the upstream: %v, want %v", reached, tt.status == 200)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	resp, _ := f.do(t, "GET", "/repos/a", "throttled", nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("throttled: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("RateLimit-Limit") != "10" || resp.Header.Get("RateLimit-Remaining") != "0" {
		t.Errorf("throttled RateLimit headers: %v", resp.Header)
	}
	resp, _ = f.do(t, "GET", "/repos/a", "limited", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("limited: %d", resp.StatusCode)
	}
	for h, want := range map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "9", "RateLimit-Reset": "2"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
}

func TestPublicAndDefaultAllow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	resp, _ := f.do(t, "GET", "/public/readme", "reader", map[string]string{"X-Jeton-Subject": "mallory"})
	if resp.StatusCode != 200 {
		t.Fatalf("public: %d", resp.StatusCode)
	}
	got := f.up.last(t)
	if got.Header.Get("Authorization") != "" || got.Header.Get("X-Jeton-Subject") != "" {
		t.Errorf("public route forwarded credentials or identity: %v", got.Header)
	}
	for _, v := range f.verifiers {
		if v.calls != 0 {
			t.Errorf("public route called the verifier of %s", v.api)
		}
	}

	open := newFixture(t, "api: x\ndefault: allow\nroutes:\n  - path: /private\n    scopes: [a]\n", nil, nil)
	if resp, _ := open.do(t, "GET", "/elsewhere", "", nil); resp.StatusCode != 200 {
		t.Errorf("default allow: %d", resp.StatusCode)
	}
	if resp, _ := open.do(t, "GET", "/private", "", nil); resp.StatusCode != 401 {
		t.Errorf("default allow still guards routes: %d", resp.StatusCode)
	}
}

func TestVerifierPerAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	if len(f.verifiers) != 2 || f.verifiers["https://api.example.com"] == nil || f.verifiers["https://billing.example.com"] == nil {
		t.Fatalf("verifiers: %v", f.verifiers)
	}
	f.do(t, "GET", "/billing/x", "reader", nil)
	if f.verifiers["https://billing.example.com"].calls != 1 || f.verifiers["https://api.example.com"].calls != 0 {
		t.Error("the billing route did not use the billing API's verifier")
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	})
	f.do(t, "GET", "/repos/a", "reader", map[string]string{"X-Forwarded-For": "203.0.113.9, 10.1.1.1", "X-Forwarded-Proto": "https", "X-Real-IP": "6.6.6.6"})
	v := f.verifiers["https://api.example.com"]
	if v.lastIP != "203.0.113.9:0" {
		t.Errorf("the verifier saw client %q, want 203.0.113.9", v.lastIP)
	}
	got := f.up.last(t)
	if xff := got.Header.Get("X-Forwarded-For"); xff != "203.0.113.9, 10.1.1.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", xff)
	}
	if ip := got.Header.Values("X-Real-Ip"); len(ip) != 1 || ip[0] != "203.0.113.9" {
		t.Errorf("X-Real-IP = %q, want the client address the proxy resolved", ip)
	}
	if got.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("X-Forwarded-Proto = %q", got.Header.Get("X-Forwarded-Proto"))
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	billing := f.verifiers["https://billing.example.com"]
	next, err := ParseRules("next.yaml", []byte("api: https://api.example.com\nroutes:\n  - path: /repos/**\n    scopes: [repos:admin]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.proxy.Reload(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.do(t, "GET", "/repos/a", "reader", nil); resp.StatusCode != 403 {
		t.Errorf("after reload: %d, want 403 (repos:admin now required)", resp.StatusCode)
	}
	if !billing.closed {
		t.Error("the verifier of an API no longer used was not closed")
	}
	if f.verifiers["https://api.example.com"].closed {
		t.Error("the verifier of an API still used was closed")
	}

	broken, err := ParseRules("broken.yaml", []byte("api: https://broken.example.com\nroutes:\n  - path: /**\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.proxy.Reload(context.Background(), broken); err == nil {
		t.Fatal("a reload whose verifier cannot be made succeeded")
	}
	if f.proxy.Rules() != next {
		t.Error("a failed reload replaced the rules")
	}
}

// TestReloadFile: a route file that does not parse is refused, the rules
// in force stay, and the failure is counted like any failed reload, so
// that operators can alert on it.
func TestReloadFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	before := f.proxy.Rules()
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(path, []byte("api: https://api.example.com\nroutes:\n  - path: /**\n    methods: [get]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.proxy.ReloadFile(context.Background(), path); err == nil || !strings.Contains(err.Error(), "proxy.yaml:4:") {
		t.Fatalf("err = %v, want the line of the bad method", err)
	}
	if _, err := f.proxy.ReloadFile(context.Background(), filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing route file was taken")
	}
	if f.proxy.Rules() != before {
		t.Error("a refused file replaced the rules")
	}
	if got := testutil.ToFloat64(f.proxy.metrics.reloads.WithLabelValues("error")); got != 2 {
		t.Errorf("failed reloads = %v, want 2", got)
	}

	if err := os.WriteFile(path, []byte("api: https://api.example.com\nroutes:\n  - path: /**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := f.proxy.ReloadFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if f.proxy.Rules() != rules || len(rules.Routes) != 1 {
		t.Errorf("the good file was not put in force: %+v", f.proxy.Rules())
	}
	if got := testutil.ToFloat64(f.proxy.metrics.reloads.WithLabelValues("ok")); got != 1 {
		t.Errorf("good reloads = %v, want 1", got)
	}
}

// TestUpstreamDown checks the answer when the upstream cannot be reached,
// and that the log line says why without the request's query, which may
// hold a secret.
func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	var log syncBuffer
	f := newFixture(t, testRules, nil, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
	f.up.srv.Close()
	resp, body := f.do(t, "GET", "/public/x?api_key=s3cr3t", "", nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "bad_gateway") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if out := log.String(); !strings.Contains(out, "upstream request failed") || !strings.Contains(out, "connect") || strings.Contains(out, "s3cr3t") {
		t.Errorf("log: %s", out)
	}
}

// TestUpstreamTimeout: an upstream that does not send its response
// headers within ResponseHeaderTimeout gets the client a 504 that says
// so, not the 502 of an upstream that cannot be reached.
func TestUpstreamTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until the proxy gives up
	}, func(c *Config) { c.ResponseHeaderTimeout = 50 * time.Millisecond })
	resp, body := f.do(t, "GET", "/public/x", "", nil)
	want := `{"error":"gateway_timeout","error_description":"the upstream did not answer in time"}` + "\n"
	if resp.StatusCode != http.StatusGatewayTimeout || body != want {
		t.Fatalf("got %d %s, want 504 %s", resp.StatusCode, body, want)
	}
	if got := testutil.ToFloat64(f.proxy.metrics.upstreamErrors); got != 1 {
		t.Errorf("upstream errors = %v, want 1", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStreamsBodies shows that neither direction is buffered: the upstream
// answers the first half of a request body before the client has sent
// the second, and the client reads each server-sent event as it is sent.
func TestStreamsBodies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		if r.Header.Get("Accept") == "text/event-stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				rc.Flush()
				// Wait for the client to ask for the next event.
				if _, err := io.ReadFull(r.Body, make([]byte, 1)); err != nil {
					return
				}
			}
			return
		}
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(w, "echo %s", line)
			rc.Flush()
		}
	}, nil)

	// Request body: each line is echoed before the next is written.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", f.url+"/events", pr)
	req.Header.Set("Authorization", "Bearer reader")
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			pw.CloseWithError(err)
			close(respc)
			return
		}
		respc <- resp
	}()
	fmt.Fprintln(pw, "one")
	resp := <-respc
	if resp == nil {
		t.Fatal("no response")
	}
	br := bufio.NewReader(resp.Body)
	for _, w := range []string{"one", "two", "three"} {
		if w != "one" {
			fmt.Fprintln(pw, w)
		}
		line, err := readLine(br, 5*time.Second)
		if err != nil || line != "echo "+w+"\n" {
			t.Fatalf("read %q, %v; want echo %s", line, err, w)
		}
	}
	pw.Close()
	resp.Body.Close()

	// Server-sent events arrive one by one.
	pr, pw = io.Pipe()
	req, _ = http.NewRequest("GET", f.url+"/events", pr)
	req.Header.Set("Authorization", "Bearer reader")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br = bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := readLine(br, 5*time.Second)
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		readLine(br, 5*time.Second) // the blank line
		pw.Write([]byte{'n'})
	}
	pw.Close()
}

func readLine(br *bufio.Reader, d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() {
		s, err := br.ReadString('\n')
		c <- res{s, err}
	}()
	select {
	case r := <-c:
		return r.s, r.err
	case <-time.After(d):
		return "", errors.New("timed out: the body was buffered")
	}
}

// TestWebSocketUpgrade drives a protocol switch through the proxy with a
// raw connection: the upstream accepts the upgrade and echoes bytes.
func TestWebSocketUpgrade(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Jeton-Subject") != "alice" {
			http.Error(w, "not an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo
	}, nil)
	addr := strings.TrimPrefix(f.url, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer reader\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	conn.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}

	// Without a token the upgrade is refused before reaching the upstream.
	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "GET /events HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", addr)
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("upgrade without token: %v %v", resp, err)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, testRules, nil, nil)
	f.do(t, "GET", "/repos/a", "reader", nil)
	f.do(t, "GET", "/repos/a", "", nil)
	admin := httptest.NewServer(f.proxy.AdminHandler())
	defer admin.Close()
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(admin.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`jeton_proxy_requests_total{code="200",route="read"} 1`,
		`jeton_proxy_requests_total{code="401",route="read"} 1`,
		// Clients that forgot their token are told apart from a broken
		// verifier (reason "error").
		`jeton_proxy_denied_total{reason="no_token"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(b), `jeton_proxy_denied_total{reason="error"}`) {
		t.Error(`a request without a token is counted as reason="error"`)
	}
	if strings.Contains(string(b), "reader") {
		t.Error("a token appears in the metrics")
	}
}

// sendAsWritten sends method with path exactly as written (no cleaning or
// escaping by the client) to the server at base, with token as a Bearer
// credential if not empty, and returns the response and its body.
func sendAsWritten(t *testing.T, method, base, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}
