package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/store/storetest"
	"github.com/jetonhq/jeton/internal/tokens"
)

type env struct {
	srv    *httptest.Server
	db     *sqlstore.DB
	svc    *tokens.Service
	admin  string
	apiID  string
	key    string // a key of apiID with scope repos:read
	keyID  string
	verify string // a jeton token with only the verify scope
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	return newEnvOn(t, cfg, filepath.Join(t.TempDir(), "jeton.db"))
}

// newEnvOn is newEnv on the store at dsn (a SQLite path, or a PostgreSQL
// DSN from storetest.PostgresDSN).
func newEnvOn(t *testing.T, cfg Config, dsn string) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := tokens.New(ctx, tokens.Config{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(ctx) })
	admin, err := svc.IssueAdminToken(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tokens, cfg.Store, cfg.Logger = svc, db, slog.New(slog.DiscardHandler)
	api, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	e := &env{srv: srv, db: db, svc: svc, admin: admin.Secret}
	var a apiJSON
	e.mustDo(t, "POST", "/v1/apis", e.admin, `{"name":"acme","identifier":"https://api.acme.test","scopes":["repos:read","repos:write"]}`, 201, &a)
	e.apiID = a.ID
	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","name":"ci","subject":"cus_1","scopes":["repos:read"]}`, 201, &k)
	e.key, e.keyID = k.Token, k.ID
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","name":"rs","scopes":["verify"]}`, 201, &k)
	e.verify = k.Token
	return e
}

func (e *env) do(t *testing.T, method, path, token, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *env) mustDo(t *testing.T, method, path, token, body string, status int, out any) {
	t.Helper()
	resp, b := e.do(t, method, path, token, body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// snapshot is everything a bad request must leave unchanged.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	apis, _ := e.db.ListAPIs(ctx)
	toks, _, _ := e.db.ListTokens(ctx, store.TokenFilter{Limit: 1000})
	b, _ := json.Marshal(struct {
		A []store.API
		T []store.Token
	}{apis, toks})
	return string(b)
}

// TestBadInputChangesNothing runs on SQLite and, when
// JETON_TEST_POSTGRES_DSN is set, on PostgreSQL, whose text refuses bytes
// SQLite keeps.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		testBadInputChangesNothing(t, newEnv(t, Config{}))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		testBadInputChangesNothing(t, newEnvOn(t, Config{}, storetest.PostgresDSN(t)))
	})
}

func testBadInputChangesNothing(t *testing.T, e *env) {
	long := strings.Repeat("a", MaxBodyBytes+1)
	tests := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"malformed json", "POST", "/v1/tokens", "admin", `{"api":`, 400, "malformed_json"},
		{"not an object", "POST", "/v1/tokens", "admin", `[1,2]`, 400, "malformed_json"},
		{"trailing data", "POST", "/v1/tokens", "admin", `{"api":"acme"} {}`, 400, "malformed_json"},
		{"empty body", "POST", "/v1/apis", "admin", ``, 400, "malformed_json"},
		{"unknown field", "POST", "/v1/tokens", "admin", `{"api":"acme","scopez":["x"]}`, 400, "unknown_field"},
		{"wrong type", "POST", "/v1/tokens", "admin", `{"api":"acme","expires_in":"soon"}`, 400, "invalid_request"},
		{"oversize body", "POST", "/v1/tokens", "admin", `{"api":"acme","name":"` + long + `"}`, 413, "body_too_large"},
		{"missing auth", "POST", "/v1/tokens", "", `{"api":"acme"}`, 401, "unauthorized"},
		{"garbage auth", "POST", "/v1/tokens", "garbage", `{"api":"acme"}`, 401, "unauthorized"},
		{"key of another api as admin", "POST", "/v1/tokens", "key", `{"api":"acme"}`, 401, "unauthorized"},
		{"verify scope on admin route", "POST", "/v1/tokens", "verify", `{"api":"acme"}`, 403, "forbidden"},
		{"unknown token id", "GET", "/v1/tokens/tok_nope", "admin", ``, 404, "not_found"},
		{"revoke unknown id", "DELETE", "/v1/tokens/tok_nope", "admin", ``, 404, "not_found"},
		{"unknown api", "POST", "/v1/tokens", "admin", `{"api":"nope"}`, 400, "invalid_request"},
		{"missing api", "POST", "/v1/tokens", "admin", `{"name":"x"}`, 400, "invalid_request"},
		{"invalid prefix", "POST", "/v1/apis", "admin", `{"name":"b","identifier":"b","key_prefix":"bad-prefix"}`, 400, "invalid_prefix"},
		{"scope not defined", "POST", "/v1/tokens", "admin", `{"api":"acme","scopes":["admin"]}`, 400, "invalid_scope"},
		{"expiry in the past", "POST", "/v1/tokens", "admin", `{"api":"acme","expires_at":"2001-01-01T00:00:00Z"}`, 400, "invalid_expiry"},
		{"negative expires_in", "POST", "/v1/tokens", "admin", `{"api":"acme","expires_in":-5}`, 400, "invalid_expiry"},
		{"negative rate limit", "POST", "/v1/tokens", "admin", `{"api":"acme","rate_limit":{"limit":-1,"window":60}}`, 400, "invalid_limit"},
		{"negative quota", "POST", "/v1/tokens", "admin", `{"api":"acme","quota":{"remaining":-1}}`, 400, "invalid_limit"},
		{"bad refill interval", "POST", "/v1/tokens", "admin", `{"api":"acme","quota":{"remaining":1,"refill":{"amount":1,"interval":"hourly"}}}`, 400, "invalid_limit"},
		{"metadata not object", "POST", "/v1/tokens", "admin", `{"api":"acme","metadata":"x"}`, 400, "invalid_metadata"},
		{"bad cidr", "POST", "/v1/tokens", "admin", `{"api":"acme","allowed_cidrs":["nope"]}`, 400, "invalid_cidr"},
		{"description of an undefined scope", "POST", "/v1/apis", "admin", `{"name":"b","identifier":"b","scopes":["x"],"scope_descriptions":{"y":"Why"}}`, 400, "invalid_scope"},
		{"empty scope description", "POST", "/v1/apis", "admin", `{"name":"b","identifier":"b","scopes":["x"],"scope_descriptions":{"x":" "}}`, 400, "invalid_request"},
		{"scope description with a control character", "PATCH", "/v1/apis/acme", "admin", `{"scope_descriptions":{"repos:read":"a\u0007b"}}`, 400, "invalid_request"},
		{"scope description too long", "PATCH", "/v1/apis/acme", "admin", `{"scope_descriptions":{"repos:read":"` + strings.Repeat("d", 201) + `"}}`, 400, "invalid_request"},
		{"scope descriptions not an object", "PATCH", "/v1/apis/acme", "admin", `{"scope_descriptions":["x"]}`, 400, "invalid_request"},
		{"describe a scope of the builtin api", "PATCH", "/v1/apis/jeton", "admin", `{"scope_descriptions":{"admin":"Everything"}}`, 409, "conflict"},
		{"duplicate api name", "POST", "/v1/apis", "admin", `{"name":"acme","identifier":"other"}`, 409, "conflict"},
		{"delete api in use", "DELETE", "/v1/apis/acme", "admin", ``, 409, "api_in_use"},
		{"delete builtin", "DELETE", "/v1/apis/jeton?force=true", "admin", ``, 409, "conflict"},
		{"bad force flag", "DELETE", "/v1/apis/acme?force=maybe", "admin", ``, 400, "invalid_request"},
		{"grace too long", "POST", "/v1/tokens/KEYID/rotate", "admin", `{"grace_period":999999999}`, 400, "invalid_request"},
		// 18446744074 s is 2^64 ns and a little more: it wrapped around to a
		// fraction of a second when converted to a time.Duration.
		{"expires_in beyond a duration", "POST", "/v1/tokens", "admin", `{"api":"acme","expires_in":18446744074}`, 400, "invalid_request"},
		{"expires_in far below zero", "POST", "/v1/tokens", "admin", `{"api":"acme","expires_in":-18446744074}`, 400, "invalid_request"},
		{"rate limit window beyond a duration", "POST", "/v1/tokens", "admin", `{"api":"acme","rate_limit":{"limit":5,"window":18446744075}}`, 400, "invalid_request"},
		{"update rate limit window beyond a duration", "PATCH", "/v1/tokens/KEYID", "admin", `{"rate_limit":{"limit":5,"window":18446744075}}`, 400, "invalid_request"},
		{"default_ttl beyond a duration", "POST", "/v1/apis", "admin", `{"name":"b","identifier":"b","default_ttl":18446744074}`, 400, "invalid_request"},
		{"update max_ttl beyond a duration", "PATCH", "/v1/apis/acme", "admin", `{"max_ttl":18446744074}`, 400, "invalid_request"},
		{"grace beyond a duration", "POST", "/v1/tokens/KEYID/rotate", "admin", `{"grace_period":18446744074}`, 400, "invalid_request"},
		{"update scope not defined", "PATCH", "/v1/tokens/KEYID", "admin", `{"scopes":["nope"]}`, 400, "invalid_scope"},
		{"bad list limit", "GET", "/v1/tokens?limit=0", "admin", ``, 400, "invalid_request"},
		{"bad usage range", "GET", "/v1/tokens/KEYID/usage?from=yesterday", "admin", ``, 400, "invalid_request"},
		{"verify without token", "POST", "/v1/verify", "admin", `{"api":"acme"}`, 400, "invalid_request"},
		{"verify unknown api", "POST", "/v1/verify", "admin", `{"token":"x","api":"nope"}`, 400, "invalid_request"},
		{"unknown route", "GET", "/v1/nothing", "admin", ``, 404, "not_found"},
		{"wrong method on a collection", "PUT", "/v1/apis", "admin", `{}`, 405, "method_not_allowed"},
		{"wrong method on an item", "POST", "/v1/tokens/KEYID", "admin", `{}`, 405, "method_not_allowed"},
		{"wrong method on verify", "GET", "/v1/verify", "admin", ``, 405, "method_not_allowed"},
		{"leak report without tokens", "POST", "/v1/leaks", "", `{"tokens":[]}`, 400, "invalid_request"},
		{"leak report without a body", "POST", "/v1/leaks", "", ``, 400, "malformed_json"},
		{"leak report tokens not a list", "POST", "/v1/leaks", "", `{"tokens":"jtp_x"}`, 400, "invalid_request"},
		{"leak report with too many tokens", "POST", "/v1/leaks", "", `{"tokens":[` + strings.Repeat(`"a",`, MaxLeakTokens) + `"a"]}`, 400, "invalid_request"},
		{"leak report with an unknown field", "POST", "/v1/leaks", "", `{"tokens":["x"],"url":"u"}`, 400, "unknown_field"},
		{"leak source with a control character", "POST", "/v1/leaks", "", `{"tokens":["KEY"],"source":"a\u0007b"}`, 400, "invalid_request"},
		{"leak source too long", "POST", "/v1/leaks", "", `{"tokens":["KEY"],"source":"` + strings.Repeat("s", MaxLeakSourceBytes+1) + `"}`, 400, "invalid_request"},
		{"oversize leak report", "POST", "/v1/leaks", "", `{"tokens":["KEY","` + long + `"]}`, 413, "body_too_large"},
		{"leak report with garbage auth", "POST", "/v1/leaks", "garbage", `{"tokens":["KEY"]}`, 401, "unauthorized"},
		{"leak report with a verify token", "POST", "/v1/leaks", "verify", `{"tokens":["KEY"]}`, 403, "forbidden"},
		{"wrong method on leaks", "GET", "/v1/leaks", "", ``, 405, "method_not_allowed"},
		// APIs are found by name or identifier: neither may be another's.
		{"api name is another api's identifier", "POST", "/v1/apis", "admin", `{"name":"https://api.acme.test","identifier":"other"}`, 409, "conflict"},
		{"api identifier is another api's name", "POST", "/v1/apis", "admin", `{"name":"other","identifier":"acme"}`, 409, "conflict"},
		// Text PostgreSQL refuses: a 400, not a store error.
		{"body not UTF-8", "POST", "/v1/tokens", "admin", "{\"api\":\"acme\",\"metadata\":{\"plan\":\"\xff\xfe\"}}", 400, "malformed_json"},
		{"update body not UTF-8", "PATCH", "/v1/tokens/KEYID", "admin", "{\"metadata\":{\"plan\":\"\xff\"}}", 400, "malformed_json"},
		{"NUL in a body", "DELETE", "/v1/tokens/KEYID", "admin", `{"reason":"a\u0000b"}`, 400, "invalid_request"},
		{"NUL in metadata", "POST", "/v1/tokens", "admin", `{"api":"acme","metadata":{"a\u0000":1}}`, 400, "invalid_request"},
		{"path id not UTF-8", "GET", "/v1/tokens/tok_%FF", "admin", ``, 400, "invalid_request"},
		{"NUL in a path id", "GET", "/v1/tokens/tok_%00", "admin", ``, 400, "invalid_request"},
		{"update of an id not UTF-8", "PATCH", "/v1/tokens/tok_%FF", "admin", `{"name":"x"}`, 400, "invalid_request"},
		{"rotate of an id not UTF-8", "POST", "/v1/tokens/tok_%FF/rotate", "admin", ``, 400, "invalid_request"},
		{"client id not UTF-8", "GET", "/v1/clients/%FF", "admin", ``, 400, "invalid_request"},
		{"user id not UTF-8", "GET", "/v1/users/%FF", "admin", ``, 400, "invalid_request"},
		{"filter not UTF-8", "GET", "/v1/tokens?subject=%FF", "admin", ``, 400, "invalid_request"},
		{"cursor not UTF-8", "GET", "/v1/tokens?cursor=%FF", "admin", ``, 400, "invalid_request"},
		{"NUL in an audit filter", "GET", "/v1/audit?target=%00", "admin", ``, 400, "invalid_request"},
		{"IPv4-mapped prefix wider than the mapped range", "POST", "/v1/tokens", "admin", `{"api":"acme","allowed_cidrs":["::ffff:0:0/95"]}`, 400, "invalid_cidr"},
		// The zero time is long past, not "no expiry".
		{"expires_at at year 1", "POST", "/v1/tokens", "admin", `{"api":"acme","expires_at":"0001-01-01T00:00:00Z"}`, 400, "invalid_expiry"},
	}
	tokenFor := map[string]string{"admin": e.admin, "key": e.key, "verify": e.verify, "garbage": "jtp_garbage", "": ""}
	before := e.snapshot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := e.do(t, tt.method, strings.ReplaceAll(tt.path, "KEYID", e.keyID), tokenFor[tt.token], strings.ReplaceAll(tt.body, "KEY", e.key))
			var got struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(b, &got)
			if resp.StatusCode != tt.status || got.Error.Code != tt.code || got.Error.Message == "" {
				t.Errorf("status %d code %q (%s), want %d %q", resp.StatusCode, got.Error.Code, b, tt.status, tt.code)
			}
			if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if resp.StatusCode == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow (RFC 9110 §15.5.6)")
			}
			if strings.Contains(string(b), e.admin) || strings.Contains(string(b), e.key) {
				t.Errorf("error response leaks a secret: %s", b)
			}
		})
	}
	if after := e.snapshot(t); after != before {
		t.Errorf("bad requests changed the store")
	}
}

func TestVerifyEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var res verifyResponse
	e.mustDo(t, "POST", "/v1/verify", e.verify, `{"token":"`+e.key+`","api":"https://api.acme.test","scopes":["repos:read"]}`, 200, &res)
	if !res.Valid || res.Code != "valid" || res.Token == nil || res.Token.Subject != "cus_1" || res.Token.ID != e.keyID {
		t.Errorf("valid key: %+v", res)
	}
	cases := map[string]string{
		`{"token":"jtp_xyz"}`:                                "malformed",
		`{"token":"` + e.key + `","scopes":["repos:write"]}`: "insufficient_scope",
		`{"token":"` + e.key + `","api":"jeton"}`:            "wrong_api",
	}
	for body, want := range cases {
		var r verifyResponse
		e.mustDo(t, "POST", "/v1/verify", e.verify, body, 200, &r)
		if r.Valid || r.Code != want {
			t.Errorf("%s: %+v, want %s", body, r, want)
		}
	}
	// A verify key restricted to another API cannot probe acme's keys.
	var other apiJSON
	e.mustDo(t, "POST", "/v1/apis", e.admin, `{"name":"other","identifier":"other"}`, 201, &other)
	var rk tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","scopes":["verify:`+other.ID+`"]}`, 201, &rk)
	var r verifyResponse
	e.mustDo(t, "POST", "/v1/verify", rk.Token, `{"token":"`+e.key+`"}`, 200, &r)
	if r.Code != "wrong_api" || r.Token != nil {
		t.Errorf("restricted caller: %+v", r)
	}
	e.mustDo(t, "POST", "/v1/verify", rk.Token, `{"token":"`+e.key+`","api":"acme"}`, 403, nil)
	// Revocation is immediate.
	e.mustDo(t, "DELETE", "/v1/tokens/"+e.keyID, e.admin, `{"reason":"leaked"}`, 200, nil)
	e.mustDo(t, "POST", "/v1/verify", e.verify, `{"token":"`+e.key+`"}`, 200, &r)
	if r.Code != "revoked" || r.Token != nil {
		t.Errorf("after revoke: %+v", r)
	}
}

// TestVerifyAnswerEndsWithTheSecret checks that the expires_at of a verify
// answer for a secret a rotation replaced is the end of its grace period,
// not the token's expiry: verifiers cache an answer until expires_at, and
// must not go on accepting the old secret after its grace.
func TestVerifyAnswerEndsWithTheSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","expires_in":2592000}`, 201, &k)
	var next tokenJSON
	e.mustDo(t, "POST", "/v1/tokens/"+k.ID+"/rotate", e.admin, `{"grace_period":60}`, 200, &next)
	var k2, next2 tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme"}`, 201, &k2)
	e.mustDo(t, "POST", "/v1/tokens/"+k2.ID+"/rotate", e.admin, `{"grace_period":0}`, 200, &next2)
	tests := []struct {
		name, secret string
		wantCode     string
		wantExpires  *time.Time
	}{
		{"replaced with grace", k.Token, "valid", next.PreviousExpiresAt},
		{"current", next.Token, "valid", k.ExpiresAt},
		{"replaced without grace", k2.Token, "not_found", nil},
		{"current of a key that never expires", next2.Token, "valid", nil},
	}
	for _, tt := range tests {
		var r verifyResponse
		e.mustDo(t, "POST", "/v1/verify", e.verify, `{"token":"`+tt.secret+`"}`, 200, &r)
		var gotExpires *time.Time
		if r.Token != nil {
			gotExpires = r.Token.ExpiresAt
		}
		if r.Code != tt.wantCode || !cmp.Equal(gotExpires, tt.wantExpires) {
			t.Errorf("%s: %s, expires_at %v; want %s, %v", tt.name, r.Code, gotExpires, tt.wantCode, tt.wantExpires)
		}
		// RFC 7662 introspection says the same.
		resp, b := e.do(t, "POST", "/oauth2/introspect", e.verify, "token="+tt.secret, "Content-Type", "application/x-www-form-urlencoded")
		var in struct {
			Active bool
			Exp    *int64
		}
		if err := json.Unmarshal(b, &in); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: introspect: %d %s", tt.name, resp.StatusCode, b)
		}
		var wantExp *int64
		if tt.wantExpires != nil {
			u := tt.wantExpires.Unix()
			wantExp = &u
		}
		if in.Active != (tt.wantCode == "valid") || !cmp.Equal(in.Exp, wantExp) {
			t.Errorf("%s: introspection active %v exp %v; want exp %v", tt.name, in.Active, in.Exp, wantExp)
		}
	}
}

func TestTrustedProxyHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","allowed_cidrs":["203.0.113.0/24"]}`, 201, &k)
	check := func(xff, want string) {
		t.Helper()
		_, b := e.do(t, "POST", "/v1/verify", e.verify, `{"token":"`+k.Token+`"}`, "X-Forwarded-For", xff)
		var r verifyResponse
		json.Unmarshal(b, &r)
		if r.Code != want {
			t.Errorf("X-Forwarded-For %q: %s, want %s", xff, r.Code, want)
		}
	}
	check("203.0.113.9", "valid")
	check("198.51.100.1", "forbidden_ip")
	// A client cannot spoof by prepending: the rightmost untrusted address counts.
	check("203.0.113.9, 198.51.100.1", "forbidden_ip")
	check("garbage", "forbidden_ip") // falls back to the proxy's own address
	// A zone names an interface of another host: it is dropped, in
	// whatever bytes, and the address is checked without it.
	var k6 tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","allowed_cidrs":["2001:db8::/32"]}`, 201, &k6)
	for _, xff := range []string{"2001:db8::9%eth0", "2001:db8::9%\xff"} {
		_, b := e.do(t, "POST", "/v1/verify", e.verify, `{"token":"`+k6.Token+`"}`, "X-Forwarded-For", xff)
		var r verifyResponse
		json.Unmarshal(b, &r)
		if r.Code != "valid" {
			t.Errorf("X-Forwarded-For %q: %s, want valid", xff, b)
		}
	}
	// Without trusted proxies the header is ignored.
	e2 := newEnv(t, Config{})
	e2.mustDo(t, "POST", "/v1/tokens", e2.admin, `{"api":"acme","allowed_cidrs":["203.0.113.0/24"]}`, 201, &k)
	_, b := e2.do(t, "POST", "/v1/verify", e2.verify, `{"token":"`+k.Token+`"}`, "X-Forwarded-For", "203.0.113.9")
	if !strings.Contains(string(b), "forbidden_ip") {
		t.Errorf("untrusted X-Forwarded-For was believed: %s", b)
	}
}

// TestVerifyClientIP checks the client_ip of a verify request: the
// address the verified token's allowed ranges are checked against, while
// the resource server's own credential is checked against the server's own
// address, so that a server need not be a trusted proxy to say who its
// client is, and its key can be pinned to its address.
func TestVerifyClientIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var k, rs, local, open tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","allowed_cidrs":["203.0.113.0/24"]}`, 201, &k)
	// Allowed from where the resource server connects from, and anywhere.
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","allowed_cidrs":["127.0.0.1/32"]}`, 201, &local)
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme"}`, 201, &open)
	// The resource server's own key, pinned to its address (the tests
	// connect from 127.0.0.1).
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","scopes":["verify"],"allowed_cidrs":["127.0.0.1/32"]}`, 201, &rs)
	for _, tt := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"token":"` + k.Token + `","client_ip":"203.0.113.9"}`, 200, "valid"},
		{`{"client_ip":"203.0.113.9","token":"` + k.Token + `"}`, 200, "valid"},
		{`{"token":"` + k.Token + `","client_ip":"::ffff:203.0.113.9"}`, 200, "valid"},
		{`{"token":"` + k.Token + `","client_ip":"198.51.100.1"}`, 200, "forbidden_ip"},
		{`{"token":"` + k.Token + `"}`, 200, "forbidden_ip"}, // the request's own address
		{`{"token":"` + k.Token + `","client_ip":"203.0.113.9\u0020"}`, 400, "invalid_request"},
		{`{"token":"` + k.Token + `","client_ip":"fe80::1%eth0"}`, 400, "invalid_request"},
		{`{"token":"` + k.Token + `","client_ip":"nope"}`, 400, "invalid_request"},
		// Unknown (a Unix socket): no range is satisfied, not even the
		// resource server's own address; an unrestricted key is valid.
		{`{"token":"` + local.Token + `","client_ip":"unknown"}`, 200, "forbidden_ip"},
		{`{"token":"` + local.Token + `"}`, 200, "valid"},
		{`{"token":"` + open.Token + `","client_ip":"unknown"}`, 200, "valid"},
	} {
		resp, b := e.do(t, "POST", "/v1/verify", rs.Token, tt.body)
		var r struct {
			Code  string
			Error struct{ Code string }
		}
		json.Unmarshal(b, &r)
		got := r.Code
		if got == "" {
			got = r.Error.Code
		}
		if resp.StatusCode != tt.status || got != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.body, resp.StatusCode, b, tt.status, tt.code)
		}
	}
}

func TestIntrospectAndRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	form := func(path, token, value string) (*http.Response, map[string]any) {
		resp, b := e.do(t, "POST", path, token, url.Values{"token": {value}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
		var m map[string]any
		json.Unmarshal(b, &m)
		return resp, m
	}
	resp, m := form("/oauth2/introspect", e.verify, e.key)
	if resp.StatusCode != 200 || m["active"] != true || m["sub"] != "cus_1" || m["scope"] != "repos:read" || m["aud"] != "https://api.acme.test" || m["jti"] != e.keyID {
		t.Errorf("introspect valid key: %d %v", resp.StatusCode, m)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("introspection response is cacheable")
	}
	for _, v := range []string{"garbage", "jtp_" + strings.Repeat("0", 49)} {
		if _, m := form("/oauth2/introspect", e.verify, v); len(m) != 1 || m["active"] != false {
			t.Errorf("introspect %q: %v (must be exactly active:false)", v, m)
		}
	}
	resp, m = form("/oauth2/introspect", "", e.key)
	if resp.StatusCode != 401 || m["error"] != "invalid_token" || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("unauthenticated introspect: %d %v", resp.StatusCode, m)
	}
	resp, _ = e.do(t, "POST", "/oauth2/introspect", e.verify, `{"token":"x"}`, "Content-Type", "application/json")
	if resp.StatusCode != 400 {
		t.Errorf("JSON introspect body: %d", resp.StatusCode)
	}
	if resp, _ := form("/oauth2/revoke", e.verify, "jtp_unknown"); resp.StatusCode != 200 {
		t.Errorf("revoke unknown: %d", resp.StatusCode)
	}
	if resp, _ := form("/oauth2/revoke", e.verify, e.key); resp.StatusCode != 200 {
		t.Errorf("revoke: %d", resp.StatusCode)
	}
	if _, m := form("/oauth2/introspect", e.verify, e.key); m["active"] != false {
		t.Errorf("revoked key still active: %v", m)
	}
}

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var rot tokenJSON
	e.mustDo(t, "POST", "/v1/tokens/"+e.keyID+"/rotate", e.admin, `{"grace_period":3600}`, 200, &rot)
	if rot.Token == "" || rot.Token == e.key || rot.PreviousExpiresAt == nil {
		t.Fatalf("rotate: %+v", rot)
	}
	for _, k := range []string{e.key, rot.Token} {
		var r verifyResponse
		e.mustDo(t, "POST", "/v1/verify", e.verify, `{"token":"`+k+`"}`, 200, &r)
		if !r.Valid {
			t.Errorf("during grace: %+v", r)
		}
	}
	var got tokenJSON
	e.mustDo(t, "GET", "/v1/tokens/"+e.keyID, e.admin, ``, 200, &got)
	if got.Token != "" || got.Hint != rot.Hint {
		t.Errorf("GET shows secret %q or stale hint %q", got.Token, got.Hint)
	}
	var upd tokenJSON
	e.mustDo(t, "PATCH", "/v1/tokens/"+e.keyID, e.admin, `{"name":"renamed","scopes":["repos:read","repos:write"],"metadata":{"a":1},"rate_limit":{"limit":10,"window":60}}`, 200, &upd)
	if upd.Name != "renamed" || len(upd.Scopes) != 2 || upd.RateLimit == nil || upd.RateLimit.Limit != 10 || string(upd.Metadata) != `{"a":1}` {
		t.Errorf("update: %+v", upd)
	}
	var r verifyResponse
	e.mustDo(t, "POST", "/v1/verify", e.verify, `{"token":"`+rot.Token+`","scopes":["repos:write"]}`, 200, &r)
	if !r.Valid || r.RateLimit == nil || r.RateLimit.Remaining != 9 {
		t.Errorf("update not applied at once: %+v", r)
	}
	e.mustDo(t, "PATCH", "/v1/tokens/"+e.keyID, e.admin, `{"rate_limit":null}`, 200, &upd)
	if upd.RateLimit != nil {
		t.Errorf("rate_limit null did not clear the limit")
	}
	var list struct {
		Tokens     []tokenJSON `json:"tokens"`
		NextCursor string      `json:"next_cursor"`
	}
	e.mustDo(t, "GET", "/v1/tokens?api=acme&limit=1", e.admin, ``, 200, &list)
	if len(list.Tokens) != 1 || list.NextCursor != "" || strings.Contains(toJSON(list), e.key) {
		t.Errorf("list: %+v", list)
	}
	var usage struct {
		TotalUses int64 `json:"total_uses"`
		Hours     []struct{ Allowed, Denied int64 }
	}
	e.mustDo(t, "GET", "/v1/tokens/"+e.keyID+"/usage", e.admin, ``, 200, &usage)
	if usage.TotalUses != 3 || len(usage.Hours) != 1 || usage.Hours[0].Allowed != 3 {
		t.Errorf("usage: %+v", usage)
	}
	var audit struct {
		Events []auditJSON `json:"events"`
	}
	e.mustDo(t, "GET", "/v1/audit?target="+e.keyID, e.admin, ``, 200, &audit)
	var actions []string
	for _, ev := range audit.Events {
		actions = append(actions, ev.Action)
	}
	if strings.Join(actions, ",") != "token.update,token.update,token.rotate,token.create" {
		t.Errorf("audit actions %v", actions)
	}
	all := toJSON(audit)
	if strings.Contains(all, e.key) || strings.Contains(all, rot.Token) {
		t.Errorf("audit log contains a secret")
	}
}

// TestAuthFailuresAreAuditedAndBounded checks that failed admin
// authentications are audited, in a bounded number of entries each of a
// bounded size: the path is the client's to choose, up to the header
// limit.
// TestAdminTokenRateLimit: a Jeton token over its own rate limit gets 429
// rate_limited with the Retry-After its limiter knows, so a resource
// server's verify key can back off for as long as it must.
func TestAdminTokenRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var k tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"jeton","name":"rs","scopes":["verify"],"rate_limit":{"limit":1,"window":60}}`, 201, &k)
	body := `{"token":"` + e.key + `","api":"acme"}`
	e.mustDo(t, "POST", "/v1/verify", k.Token, body, 200, nil)
	resp, b := e.do(t, "POST", "/v1/verify", k.Token, body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), `"rate_limited"`) {
		t.Fatalf("over the limit: %d %s", resp.StatusCode, b)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want 1 to 60 seconds", resp.Header.Get("Retry-After"))
	}
}

func TestAuthFailuresAreAuditedAndBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	long := "/v1/tokens/tok_" + strings.Repeat("A", 12000)
	for i := range 30 {
		path := "/v1/apis"
		if i%2 == 0 {
			path = long
		}
		e.do(t, "GET", path, "jtp_garbage", ``)
	}
	// Auditing runs in the background: wait for it. (Waiting for a number
	// of other requests instead failed on a loaded machine, where the
	// audit writes' fsyncs took longer than 200 requests.)
	e.srv.Config.Handler.(*API).Wait()
	evs, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "auth.failure"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != authFailuresPerMinute {
		t.Errorf("%d auth.failure events for 30 failures, want %d (bounded)", len(evs), authFailuresPerMinute)
	}
	for _, ev := range evs {
		if len(ev.Details) > maxAuditedPath+200 {
			t.Errorf("an auth.failure entry holds %d bytes of details", len(ev.Details))
		}
	}
}

// TestWaitStoresTheBackgroundAudits checks that API.Wait, which the
// server calls on shutdown before closing the store, returns only once the
// audit entries of failed authentications, written in the background, are
// stored: none is lost at shutdown.
func TestWaitStoresTheBackgroundAudits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for range 3 {
		e.do(t, "GET", "/v1/apis", "jtp_garbage", ``)
	}
	e.srv.Config.Handler.(*API).Wait()
	evs, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "auth.failure"})
	if err != nil || len(evs) != 3 {
		t.Errorf("after Wait: %d auth.failure events (%v), want 3", len(evs), err)
	}
}

// TestAuthFailureAuditsFromAnAddressSpray checks that failures from fresh
// addresses stay bounded: one IPv6 host taking a new address of its /64
// for each request counts as one address, and addresses beyond count
// towards a bound for all.
func TestAuthFailureAuditsFromAnAddressSpray(t *testing.T) {
	t.Parallel()
	var later atomic.Int64 // how far the clock has been advanced
	now := func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
	e := newEnv(t, Config{Now: now, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}})
	// audited returns the auth.failure events once there are want of them
	// (auditing runs in the background), and a little later, so that any
	// more would show.
	audited := func(want int) []store.AuditEvent {
		t.Helper()
		list := func() []store.AuditEvent {
			evs, _, _ := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "auth.failure", Limit: 1000})
			return evs
		}
		for deadline := time.Now().Add(5 * time.Second); len(list()) < want && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		return list()
	}
	for i := range 50 {
		e.do(t, "GET", "/v1/apis", "jtp_garbage", ``, "X-Forwarded-For", fmt.Sprintf("2001:db8:1:2::%x", i+1))
	}
	if n := len(audited(authFailuresPerMinute)); n != authFailuresPerMinute {
		t.Fatalf("%d auth.failure events for 50 failures from one /64, want %d", n, authFailuresPerMinute)
	}
	for i := range authFailuresPerMinuteInAll + 100 {
		e.do(t, "GET", "/v1/apis", "jtp_garbage", ``, "X-Forwarded-For", fmt.Sprintf("10.%d.%d.1", i/256, i%256))
	}
	evs := audited(authFailuresPerMinuteInAll)
	if len(evs) != authFailuresPerMinuteInAll {
		t.Fatalf("%d auth.failure events in a minute from %d addresses, want %d (the bound for all)", len(evs), authFailuresPerMinuteInAll+100, authFailuresPerMinuteInAll)
	}

	// A minute later the next audited failure says how many were not.
	later.Add(int64(time.Minute))
	e.do(t, "GET", "/v1/apis", "jtp_garbage", ``, "X-Forwarded-For", "192.0.2.1")
	evs = audited(authFailuresPerMinuteInAll + 1)
	var details map[string]any
	json.Unmarshal(evs[0].Details, &details)
	// Of the IPv4 spray, 600-10 were audited: the /64's 40 suppressed
	// failures were reported by the spray's first entry.
	if got, want := details["suppressed"], float64(100+authFailuresPerMinute); got != want {
		t.Errorf("suppressed = %v, want %v (the failures not audited since the last entry)", got, want)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func FuzzVerifyRequest(f *testing.F) {
	f.Add([]byte(`{"token":"jtp_x","scopes":["a"],"api":"acme"}`))
	f.Add([]byte(`{"token":1}`))
	f.Add([]byte(`{"token":"a"} x`))
	f.Add([]byte(`{"scopes":[null]}`))
	f.Add([]byte(`{"token":"a","token":"b"}`))
	f.Add([]byte(`{"TOKEN":"a","scopes":[[[1]]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req VerifyRequest
		err := DecodeStrict(body, &req)
		if err == nil {
			return
		}
		var he *Error
		if !asError(err, &he) || he.Status != 400 || he.Code == "" || he.Message == "" {
			t.Fatalf("DecodeStrict(%q) = %v, want a 400 with a code", body, err)
		}
	})
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	*target = e
	return ok
}

func FuzzBearer(f *testing.F) {
	f.Add("Bearer jtp_abc")
	f.Add("bearer  x")
	f.Add("Basic abc")
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := bearer(h)
		if ok && (tok == "" || strings.ContainsAny(tok, " \t") || len(tok) > 4096) {
			t.Fatalf("bearer(%q) = %q", h, tok)
		}
	})
}

func TestAPIScopeDescriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var a apiJSON
	e.mustDo(t, "POST", "/v1/apis", e.admin, `{"name":"shop","identifier":"https://shop.test","scopes":["orders:read","orders:write"],
		"scope_descriptions":{"orders:read":"See your orders"}}`, 201, &a)
	if diff := cmp.Diff(a.ScopeDescriptions, map[string]string{"orders:read": "See your orders"}); diff != "" {
		t.Errorf("created (-got +want):\n%s", diff)
	}
	// An update sets the descriptions it names, for new scopes too, and
	// removes those it empties; the others stay.
	e.mustDo(t, "PATCH", "/v1/apis/shop", e.admin, `{"add_scopes":["refunds"],"scope_descriptions":{"refunds":"Refund your orders","orders:write":"Place orders for you"}}`, 200, &a)
	var upd apiJSON // a fresh one: decoding into a map merges
	e.mustDo(t, "PATCH", "/v1/apis/shop", e.admin, `{"scope_descriptions":{"orders:read":""}}`, 200, &upd)
	want := map[string]string{"orders:write": "Place orders for you", "refunds": "Refund your orders"}
	if diff := cmp.Diff(upd.ScopeDescriptions, want); diff != "" {
		t.Errorf("after updates (-got +want):\n%s", diff)
	}
	var got apiJSON
	e.mustDo(t, "GET", "/v1/apis/shop", e.admin, ``, 200, &got)
	if diff := cmp.Diff(got.ScopeDescriptions, want); diff != "" {
		t.Errorf("GET (-got +want):\n%s", diff)
	}
	// None is {}, never null.
	_, b := e.do(t, "GET", "/v1/apis/acme", e.admin, ``)
	if !strings.Contains(string(b), `"scope_descriptions":{}`) {
		t.Errorf("an API without descriptions: %s", b)
	}
}
