package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkVerifyHandler measures POST /v1/verify through the whole handler
// stack (metrics, auth, decode, verify, encode) without the network.
func BenchmarkVerifyHandler(b *testing.B) {
	e := newEnv(&testing.T{}, Config{})
	defer e.srv.Close()
	h := e.srv.Config.Handler
	body := `{"token":"` + e.key + `","api":"acme","scopes":["repos:read"]}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/verify", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.verify)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// BenchmarkIntrospectHandler is BenchmarkVerifyHandler for RFC 7662.
func BenchmarkIntrospectHandler(b *testing.B) {
	e := newEnv(&testing.T{}, Config{})
	defer e.srv.Close()
	h := e.srv.Config.Handler
	body := url.Values{"token": {e.key}}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/oauth2/introspect", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.verify)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
