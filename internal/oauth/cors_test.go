package oauth_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestCORS checks which endpoints a script of another origin may read:
// those a browser-based application calls itself (token, revocation,
// userinfo, device authorization, discovery, JWKS) answer preflight
// requests and carry Access-Control-Allow-Origin: *, never with
// credentials; the pages, introspection and the admin API carry nothing.
func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	do := func(method, path string, h map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, e.url+path, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := e.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	origin := map[string]string{"Origin": "https://spa.example.com"}
	preflight := func(method string) map[string]string {
		return map[string]string{"Origin": "https://spa.example.com", "Access-Control-Request-Method": method,
			"Access-Control-Request-Headers": "authorization,content-type"}
	}

	for _, tt := range []struct{ method, path, methods string }{
		{"POST", "/oauth2/token", "POST"},
		{"POST", "/oauth2/revoke", "POST"},
		{"GET", "/oauth2/userinfo", "GET, POST"},
		{"POST", "/oauth2/device_authorization", "POST"},
		{"GET", "/.well-known/openid-configuration", "GET"},
		{"GET", "/.well-known/oauth-authorization-server", "GET"},
		{"GET", "/.well-known/jwks.json", "GET"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp := do("OPTIONS", tt.path, preflight(tt.method))
			h := resp.Header
			mustf(t, resp.StatusCode == http.StatusNoContent && h.Get("Access-Control-Allow-Origin") == "*" &&
				h.Get("Access-Control-Allow-Methods") == tt.methods && strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") &&
				h.Get("Access-Control-Allow-Credentials") == "", "preflight: %d %v", resp.StatusCode, h)
			resp = do(tt.method, tt.path, origin) // an error answer, mostly: it must be readable too
			mustf(t, resp.Header.Get("Access-Control-Allow-Origin") == "*" && resp.Header.Get("Access-Control-Allow-Credentials") == "",
				"%s %s: %d %v", tt.method, tt.path, resp.StatusCode, resp.Header)
		})
	}
	for _, tt := range []struct{ method, path string }{
		{"GET", "/login"},
		{"GET", "/device"},
		{"GET", "/oauth2/authorize"},
		{"POST", "/oauth2/introspect"},
		{"GET", "/v1/tokens"},
		{"OPTIONS", "/v1/tokens"},
		{"OPTIONS", "/oauth2/introspect"},
		{"OPTIONS", "/login"},
	} {
		t.Run("none for "+tt.method+" "+tt.path, func(t *testing.T) {
			resp := do(tt.method, tt.path, preflight("POST"))
			mustf(t, resp.Header.Get("Access-Control-Allow-Origin") == "", "%s %s: %d %v", tt.method, tt.path, resp.StatusCode, resp.Header)
		})
	}
}
