package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// request is what the fake server saw.
type request struct {
	Method string
	Path   string
	Query  string
	Auth   string
	Type   string
	Body   any // decoded JSON; nil when there was no body
}

// fakeServer answers every request with status and body and records it.
func fakeServer(t *testing.T, status int, body string) (*httptest.Server, *[]request) {
	t.Helper()
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		rec := request{
			Method: r.Method,
			Path:   r.URL.EscapedPath(),
			Query:  r.URL.RawQuery,
			Auth:   r.Header.Get("Authorization"),
			Type:   r.Header.Get("Content-Type"),
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &rec.Body); err != nil {
				t.Errorf("request body %q is not JSON: %v", b, err)
			}
		}
		got = append(got, rec)
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

// js decodes a JSON literal for comparison with a recorded body.
func js(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON in test: %v", err)
	}
	return v
}

func ptr[T any](v T) *T { return &v }

var (
	t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	t1 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
)

const tokenJSON = `{"id":"tok_1","api":"api_1","name":"ci","subject":"u1","scopes":["read"],
"hint":"jt_ab…yz","metadata":{"team":"x"},"allowed_cidrs":["10.0.0.0/8"],
"rate_limit":{"limit":100,"window":60},"quota":{"remaining":5,"refill":{"amount":10,"interval":"daily"}},
"created_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:00:00Z","expires_at":"2026-11-24T10:00:00Z",
"revoked_at":null,"revoke_reason":"","rotated_at":null,"last_used_at":null,"last_used_ip":"","use_count":3}`

var wantToken = Token{
	ID: "tok_1", API: "api_1", Name: "ci", Subject: "u1", Scopes: []string{"read"},
	Hint: "jt_ab…yz", Metadata: json.RawMessage(`{"team":"x"}`), AllowedCIDRs: []string{"10.0.0.0/8"},
	RateLimit: &RateLimit{Limit: 100, Window: 60},
	Quota:     &Quota{Remaining: 5, Refill: &Refill{Amount: 10, Interval: "daily"}},
	CreatedAt: t0, UpdatedAt: t0, ExpiresAt: &t1, UseCount: 3,
}

const apiJSON = `{"id":"api_1","name":"Billing","identifier":"https://billing","scopes":["read","write"],
"key_prefix":"bill","default_ttl":3600,"max_ttl":0,"builtin":false,
"created_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:00:00Z"}`

var wantAPI = API{
	ID: "api_1", Name: "Billing", Identifier: "https://billing", Scopes: []string{"read", "write"},
	KeyPrefix: "bill", DefaultTTL: 3600, CreatedAt: t0, UpdatedAt: t0,
}

func TestCalls(t *testing.T) {
	withSecret := wantToken
	withSecret.Secret = "jt_secret"
	tests := []struct {
		name    string
		call    func(context.Context, *Client) (any, error)
		status  int
		respond string
		want    request
		wantOut any
	}{
		{
			name: "create api",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateAPI(ctx, CreateAPIRequest{Name: "Billing", Identifier: "https://billing", Scopes: []string{"read", "write"}, KeyPrefix: "bill", DefaultTTL: 3600})
			},
			status: 201, respond: apiJSON,
			want:    request{Method: "POST", Path: "/v1/apis", Body: `{"name":"Billing","identifier":"https://billing","scopes":["read","write"],"key_prefix":"bill","default_ttl":3600}`},
			wantOut: &wantAPI,
		},
		{
			name:   "list apis",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.ListAPIs(ctx) },
			status: 200, respond: `{"apis":[` + apiJSON + `]}`,
			want:    request{Method: "GET", Path: "/v1/apis"},
			wantOut: &APIList{APIs: []API{wantAPI}},
		},
		{
			name:   "get api escapes the id",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.GetAPI(ctx, "https://billing") },
			status: 200, respond: apiJSON,
			want:    request{Method: "GET", Path: "/v1/apis/https:%2F%2Fbilling"},
			wantOut: &wantAPI,
		},
		{
			name: "update api",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.UpdateAPI(ctx, "api_1", UpdateAPIRequest{Name: ptr("B2"), AddScopes: []string{"admin"}, MaxTTL: ptr(int64(0))})
			},
			status: 200, respond: apiJSON,
			want:    request{Method: "PATCH", Path: "/v1/apis/api_1", Body: `{"name":"B2","add_scopes":["admin"],"max_ttl":0}`},
			wantOut: &wantAPI,
		},
		{
			name:   "delete api",
			call:   func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteAPI(ctx, "api_1", false) },
			status: 204,
			want:   request{Method: "DELETE", Path: "/v1/apis/api_1"},
		},
		{
			name:   "delete api forced",
			call:   func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteAPI(ctx, "api_1", true) },
			status: 204,
			want:   request{Method: "DELETE", Path: "/v1/apis/api_1", Query: "force=true"},
		},
		{
			name: "create token",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateToken(ctx, CreateTokenRequest{
					API: "billing", Name: "ci", Scopes: []string{"read"}, ExpiresIn: 86400,
					Metadata:  json.RawMessage(`{"team":"x"}`),
					RateLimit: &RateLimit{Limit: 100, Window: 60},
					Quota:     &Quota{Remaining: 5, Refill: &Refill{Amount: 10, Interval: "daily"}},
				})
			},
			status: 201, respond: strings.Replace(tokenJSON, `"use_count":3`, `"use_count":3,"token":"jt_secret"`, 1),
			want: request{Method: "POST", Path: "/v1/tokens", Body: `{"api":"billing","name":"ci","scopes":["read"],"expires_in":86400,
				"metadata":{"team":"x"},"rate_limit":{"limit":100,"window":60},
				"quota":{"remaining":5,"refill":{"amount":10,"interval":"daily"}}}`},
			wantOut: &withSecret,
		},
		{
			name: "list tokens with filter",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ListTokens(ctx, TokenFilter{API: "billing", Subject: "u 1", Cursor: "c1", Limit: 50})
			},
			status: 200, respond: `{"tokens":[` + tokenJSON + `],"next_cursor":"c2"}`,
			want:    request{Method: "GET", Path: "/v1/tokens", Query: "api=billing&cursor=c1&limit=50&subject=u+1"},
			wantOut: &TokenList{Tokens: []Token{wantToken}, NextCursor: "c2"},
		},
		{
			name:   "list tokens without filter",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.ListTokens(ctx, TokenFilter{}) },
			status: 200, respond: `{"tokens":[],"next_cursor":""}`,
			want:    request{Method: "GET", Path: "/v1/tokens"},
			wantOut: &TokenList{Tokens: []Token{}},
		},
		{
			name:   "get token",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.GetToken(ctx, "tok_1") },
			status: 200, respond: tokenJSON,
			want:    request{Method: "GET", Path: "/v1/tokens/tok_1"},
			wantOut: &wantToken,
		},
		{
			name: "update token sets and clears",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.UpdateToken(ctx, "tok_1", UpdateTokenRequest{
					Scopes:       []string{},
					AllowedCIDRs: []string{"10.0.0.0/8"},
					RateLimit:    Null[RateLimit](),
					Quota:        Set(Quota{Remaining: 7}),
				})
			},
			status: 200, respond: tokenJSON,
			want: request{Method: "PATCH", Path: "/v1/tokens/tok_1",
				Body: `{"scopes":[],"allowed_cidrs":["10.0.0.0/8"],"rate_limit":null,"quota":{"remaining":7,"refill":null}}`},
			wantOut: &wantToken,
		},
		{
			name: "update token name only",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.UpdateToken(ctx, "tok_1", UpdateTokenRequest{Name: ptr("n")})
			},
			status: 200, respond: tokenJSON,
			want:    request{Method: "PATCH", Path: "/v1/tokens/tok_1", Body: `{"name":"n"}`},
			wantOut: &wantToken,
		},
		{
			name:   "revoke token with reason",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.RevokeToken(ctx, "tok_1", "leaked") },
			status: 200, respond: tokenJSON,
			want:    request{Method: "DELETE", Path: "/v1/tokens/tok_1", Body: `{"reason":"leaked"}`},
			wantOut: &wantToken,
		},
		{
			name:   "revoke token without reason",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.RevokeToken(ctx, "tok_1", "") },
			status: 200, respond: tokenJSON,
			want:    request{Method: "DELETE", Path: "/v1/tokens/tok_1"},
			wantOut: &wantToken,
		},
		{
			name:   "rotate token",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.RotateToken(ctx, "tok_1", 24*time.Hour) },
			status: 200, respond: strings.Replace(tokenJSON, `"use_count":3`, `"use_count":3,"token":"jt_secret"`, 1),
			want:    request{Method: "POST", Path: "/v1/tokens/tok_1/rotate", Body: `{"grace_period":86400}`},
			wantOut: &withSecret,
		},
		{
			name: "usage",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Usage(ctx, "tok_1", t0, t1.In(time.FixedZone("X", 3600)))
			},
			status: 200, respond: `{"token_id":"tok_1","total_uses":3,"last_used_at":"2026-11-23T10:00:00Z","last_used_ip":"10.1.1.1","hours":[{"hour":"2026-11-23T10:00:00Z","allowed":2,"denied":1}]}`,
			want: request{Method: "GET", Path: "/v1/tokens/tok_1/usage", Query: "from=2026-11-23T10%3A00%3A00Z&to=2026-11-24T10%3A00%3A00Z"},
			wantOut: &Usage{TokenID: "tok_1", TotalUses: 3, LastUsedAt: &t0, LastUsedIP: "10.1.1.1",
				Hours: []UsageHour{{Hour: t0, Allowed: 2, Denied: 1}}},
		},
		{
			name: "usage default range",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Usage(ctx, "tok_1", time.Time{}, time.Time{})
			},
			status: 200, respond: `{"token_id":"tok_1","total_uses":0,"last_used_at":null,"last_used_ip":"","hours":[]}`,
			want:    request{Method: "GET", Path: "/v1/tokens/tok_1/usage"},
			wantOut: &Usage{TokenID: "tok_1", Hours: []UsageHour{}},
		},
		{
			name: "list audit",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ListAudit(ctx, AuditFilter{Action: "token.create", Actor: "tok_admin", Target: "tok_1", Cursor: 42, Limit: 10})
			},
			status: 200, respond: `{"events":[{"seq":41,"id":"evt_1","time":"2026-11-23T10:00:00Z","actor":"tok_admin","action":"token.create","target":"tok_1","remote_addr":"127.0.0.1","details":{"a":1},"prev_hash":"aa","hash":"bb"}],"next_cursor":40}`,
			want: request{Method: "GET", Path: "/v1/audit", Query: "action=token.create&actor=tok_admin&cursor=42&limit=10&target=tok_1"},
			wantOut: &AuditPage{Events: []AuditEvent{{Seq: 41, ID: "evt_1", Time: t0, Actor: "tok_admin", Action: "token.create",
				Target: "tok_1", RemoteAddr: "127.0.0.1", Details: json.RawMessage(`{"a":1}`), PrevHash: "aa", Hash: "bb"}}, NextCursor: 40},
		},
		{
			name: "verify",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Verify(ctx, "jt_secret", "billing", []string{"read"})
			},
			status: 200, respond: `{"valid":true,"code":"valid","token":{"id":"tok_1","api":"api_1","subject":"u1","scopes":["read"],"expires_at":null,"metadata":{}},"rate_limit":{"limit":100,"remaining":99,"reset":"2026-11-23T10:01:00Z"},"quota":{"remaining":4}}`,
			want: request{Method: "POST", Path: "/v1/verify", Body: `{"token":"jt_secret","scopes":["read"],"api":"billing"}`},
			wantOut: &VerifyResult{Valid: true, Code: "valid",
				Token:     &VerifiedToken{ID: "tok_1", API: "api_1", Subject: "u1", Scopes: []string{"read"}, Metadata: json.RawMessage(`{}`)},
				RateLimit: &VerifyRateLimit{Limit: 100, Remaining: 99, Reset: json.RawMessage(`"2026-11-23T10:01:00Z"`)},
				Quota:     &VerifyQuota{Remaining: 4}},
		},
		{
			name:   "verify invalid token is not an error",
			call:   func(ctx context.Context, c *Client) (any, error) { return c.Verify(ctx, "jt_x", "", nil) },
			status: 200, respond: `{"valid":false,"code":"revoked"}`,
			want:    request{Method: "POST", Path: "/v1/verify", Body: `{"token":"jt_x"}`},
			wantOut: &VerifyResult{Code: "revoked"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := fakeServer(t, tt.status, tt.respond)
			c := &Client{BaseURL: srv.URL + "/", Token: "adm_tok", HTTP: srv.Client()}
			out, err := tt.call(t.Context(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			want := tt.want
			want.Auth = "Bearer adm_tok"
			if s, ok := want.Body.(string); ok {
				want.Body = js(t, s)
				want.Type = "application/json"
			}
			if diff := cmp.Diff(*got, []request{want}); diff != "" {
				t.Errorf("requests (-got +want):\n%s", diff)
			}
			// Compare ignoring Raw, whose presence is checked below.
			ignoreRaw := cmpopts.IgnoreFields
			opts := cmp.Options{
				ignoreRaw(API{}, "Raw"), ignoreRaw(APIList{}, "Raw"), ignoreRaw(Token{}, "Raw"),
				ignoreRaw(TokenList{}, "Raw"), ignoreRaw(Usage{}, "Raw"), ignoreRaw(AuditPage{}, "Raw"),
				ignoreRaw(VerifyResult{}, "Raw"),
				cmp.Comparer(func(a, b json.RawMessage) bool { return jsonEqual(a, b) }),
			}
			if tt.wantOut == nil {
				return
			}
			if diff := cmp.Diff(out, tt.wantOut, opts); diff != "" {
				t.Errorf("result (-got +want):\n%s", diff)
			}
		})
	}
}

func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return string(a) == string(b)
	}
	return cmp.Equal(va, vb)
}

func TestRawIsTheServersBytes(t *testing.T) {
	const body = `{"id":"api_1","future_field":{"x":1}}`
	srv, _ := fakeServer(t, 200, body)
	c := &Client{BaseURL: srv.URL, Token: "t"}
	a, err := c.GetAPI(t.Context(), "api_1")
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Raw) != body {
		t.Errorf("Raw = %s, want %s", a.Raw, body)
	}
}

func TestNoTokenNoHeader(t *testing.T) {
	srv, got := fakeServer(t, 200, `{"apis":[]}`)
	c := &Client{BaseURL: srv.URL}
	if _, err := c.ListAPIs(t.Context()); err != nil {
		t.Fatal(err)
	}
	if auth := (*got)[0].Auth; auth != "" {
		t.Errorf("Authorization = %q, want none", auth)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		respond string
		want    *APIError
		wantMsg string
	}{
		{
			name: "documented error", status: 404,
			respond: `{"error":{"code":"not_found","message":"no such token"}}`,
			want:    &APIError{Status: 404, Code: "not_found", Message: "no such token"},
			wantMsg: "get token: not_found: no such token",
		},
		{
			name: "conflict", status: 409,
			respond: `{"error":{"code":"api_in_use","message":"api has live tokens"}}`,
			want:    &APIError{Status: 409, Code: "api_in_use", Message: "api has live tokens"},
			wantMsg: "get token: api_in_use: api has live tokens",
		},
		{
			name: "not json", status: 502, respond: `<html>bad gateway</html>`,
			want:    &APIError{Status: 502},
			wantMsg: "get token: HTTP 502: Bad Gateway",
		},
		{
			name: "empty body", status: 500,
			want:    &APIError{Status: 500},
			wantMsg: "get token: HTTP 500: Internal Server Error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := fakeServer(t, tt.status, tt.respond)
			c := &Client{BaseURL: srv.URL, Token: "secret-admin-token"}
			_, err := c.GetToken(t.Context(), "tok_1")
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if diff := cmp.Diff(apiErr, tt.want); diff != "" {
				t.Errorf("APIError (-got +want):\n%s", diff)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("message = %q, want %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "secret-admin-token") {
				t.Errorf("error leaks the admin token: %v", err)
			}
		})
	}
}

func TestResponseTooLarge(t *testing.T) {
	big := `{"apis":[],"pad":"` + strings.Repeat("x", MaxResponseBytes) + `"}`
	srv, _ := fakeServer(t, 200, big)
	c := &Client{BaseURL: srv.URL, Token: "t"}
	_, err := c.ListAPIs(t.Context())
	if !errors.Is(err, errResponseTooLarge) {
		t.Errorf("err = %v, want %v", err, errResponseTooLarge)
	}
}

func TestBadResponse(t *testing.T) {
	srv, _ := fakeServer(t, 200, `{"apis":`)
	c := &Client{BaseURL: srv.URL, Token: "t"}
	if _, err := c.ListAPIs(t.Context()); err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Errorf("err = %v, want a decode error", err)
	}
}

func TestRotateRejectsFractionalGrace(t *testing.T) {
	srv, got := fakeServer(t, 200, tokenJSON)
	c := &Client{BaseURL: srv.URL, Token: "t"}
	for _, g := range []time.Duration{1500 * time.Millisecond, -time.Second} {
		if _, err := c.RotateToken(t.Context(), "tok_1", g); err == nil {
			t.Errorf("RotateToken(%v) succeeded, want an error", g)
		}
	}
	if len(*got) != 0 {
		t.Errorf("sent %d requests, want none", len(*got))
	}
}

func TestContextCanceled(t *testing.T) {
	srv, _ := fakeServer(t, 200, `{"apis":[]}`)
	c := &Client{BaseURL: srv.URL, Token: "t"}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.ListAPIs(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
