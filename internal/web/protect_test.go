package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var wantPageHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Frame-Options":         "DENY",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "same-origin",
	"Cache-Control":           "no-store",
}

func securityHeaders(h http.Header) map[string]string {
	got := map[string]string{}
	for k := range wantPageHeaders {
		got[k] = h.Get(k)
	}
	return got
}

func TestProtectHeaders(t *testing.T) {
	p, _ := newPages(t, nil)
	plain := p.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	page := p.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Message(w, http.StatusNotFound, MessagePage{Title: "Not found"})
	}))
	for _, tt := range []struct {
		name    string
		h       http.Handler
		method  string
		headers map[string]string
	}{
		{"handler that writes bytes", plain, "GET", nil},
		{"page", page, "GET", nil},
		{"post", page, "POST", map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{"refused cross-site post", page, "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://auth.example.com/login", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, r)
			if diff := cmp.Diff(securityHeaders(rec.Header()), wantPageHeaders); diff != "" {
				t.Errorf("headers (-got +want):\n%s", diff)
			}
			if strings.Contains(rec.Header().Get("Content-Security-Policy"), "form-action") {
				t.Errorf("CSP has form-action: it would block the redirect after the consent form")
			}
		})
	}

	// Pages carry the headers even when a handler forgot Protect.
	rec := httptest.NewRecorder()
	p.Message(rec, 200, MessagePage{Title: "x"})
	if diff := cmp.Diff(securityHeaders(rec.Header()), wantPageHeaders); diff != "" {
		t.Errorf("unprotected page headers (-got +want):\n%s", diff)
	}
}

func TestProtectCrossOrigin(t *testing.T) {
	p, _ := newPages(t, nil)
	tests := []struct {
		name       string
		method     string
		headers    map[string]string
		wantStatus int
	}{
		{"same-origin post", "POST", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://auth.example.com"}, 200},
		{"user-typed post", "POST", map[string]string{"Sec-Fetch-Site": "none"}, 200},
		{"post from a non-browser", "POST", nil, 200},
		{"post with matching Origin", "POST", map[string]string{"Origin": "https://auth.example.com"}, 200},
		{"cross-site post", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"same-site post", "POST", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.com"}, 403},
		{"post with a foreign Origin", "POST", map[string]string{"Origin": "https://evil.example"}, 403},
		{"put with a foreign Origin", "PUT", map[string]string{"Origin": "https://evil.example"}, 403},
		{"cross-site get", "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://client.example"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			h := p.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
			r := httptest.NewRequest(tt.method, "https://auth.example.com/oauth2/authorize", strings.NewReader("decision=allow"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tt.wantStatus || called != (tt.wantStatus == 200) {
				t.Errorf("status %d, handler called %v; want %d", rec.Code, called, tt.wantStatus)
			}
			if tt.wantStatus == 403 && !strings.Contains(rec.Body.String(), "<h1>Request refused</h1>") {
				t.Errorf("refusal is not a page:\n%s", rec.Body)
			}
		})
	}
}

func TestProtectEntry(t *testing.T) {
	p, _ := newPages(t, nil)
	cross := map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://client.example"}
	tests := []struct {
		name         string
		method       string
		headers      map[string]string
		contentType  string
		body         string
		wantStatus   int
		wantLocation string // for 303
	}{
		{"cross-site post becomes a get", "POST", cross, "application/x-www-form-urlencoded",
			"client_id=cli_1&state=a+b%26c&id_token_hint=x.y.z", 303, "/oauth2/logout?client_id=cli_1&id_token_hint=x.y.z&state=a+b%26c"},
		{"even with a form's fields", "POST", cross, "application/x-www-form-urlencoded", "decision=allow&csrf=forged", 303,
			"/oauth2/logout?csrf=forged&decision=allow"},
		{"cross-site post that is not a form", "POST", cross, "application/json", `{"a":1}`, 400, ""},
		{"cross-site post too large", "POST", cross, "application/x-www-form-urlencoded", "state=" + strings.Repeat("a", MaxEntryQueryBytes), 413, ""},
		{"cross-site post with bad encoding", "POST", cross, "application/x-www-form-urlencoded", "state=%zz", 400, ""},
		{"cross-site put", "PUT", cross, "application/x-www-form-urlencoded", "a=b", 403, ""},
		{"same-origin post reaches the handler", "POST", map[string]string{"Sec-Fetch-Site": "same-origin"}, "application/x-www-form-urlencoded", "a=b", 200, ""},
		{"cross-site get reaches the handler", "GET", cross, "", "", 200, ""},
	}
	t.Run("never to another host", func(t *testing.T) {
		h := p.ProtectEntry(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		crossSitePost := func(path string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("POST", "https://auth.example.com/", strings.NewReader("a=b"))
			r.URL.Path = path
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range cross {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			return rec
		}
		for _, path := range []string{"//evil.example/x", "///evil.example/x"} {
			if rec := crossSitePost(path); rec.Code != http.StatusBadRequest || rec.Header().Get("Location") != "" {
				t.Errorf("path %q: status %d, Location %q", path, rec.Code, rec.Header().Get("Location"))
			}
		}
		// A backslash, which browsers read as a slash, goes escaped.
		if loc := crossSitePost("/\\evil.example/x").Header().Get("Location"); !strings.HasPrefix(loc, "/%5C") {
			t.Errorf("backslash path: Location %q", loc)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			h := p.ProtectEntry(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := httptest.NewRequest(tt.method, "https://auth.example.com/oauth2/logout", body)
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tt.wantStatus || called != (tt.wantStatus == 200) {
				t.Errorf("status %d, handler called %v; want %d", rec.Code, called, tt.wantStatus)
			}
			if loc := rec.Header().Get("Location"); loc != tt.wantLocation {
				t.Errorf("Location %q, want %q", loc, tt.wantLocation)
			}
			if got := securityHeaders(rec.Header()); !called && !cmp.Equal(got, wantPageHeaders) {
				t.Errorf("headers (-got +want):\n%s", cmp.Diff(got, wantPageHeaders))
			}
		})
	}
}

func TestProtectBody(t *testing.T) {
	p, _ := newPages(t, nil)
	t.Run("too large", func(t *testing.T) {
		called := false
		h := p.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
		r := httptest.NewRequest("POST", "/login", strings.NewReader("a="+strings.Repeat("x", MaxBodyBytes)))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusRequestEntityTooLarge || called {
			t.Errorf("status %d, handler called %v; want 413", rec.Code, called)
		}
	})
	t.Run("handler reads the body itself", func(t *testing.T) {
		var got string
		h := p.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = readAll(t, r.Body)
		}))
		r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&csrf=x"))
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != "username=alice&csrf=x" {
			t.Errorf("handler read %q", got)
		}
	})
}

// TestCSRFAfterBodyRead follows the OAuth handlers: they read the form
// body themselves, then call CheckCSRF.
func TestCSRFAfterBodyRead(t *testing.T) {
	p, _ := newPages(t, nil)
	rec := httptest.NewRecorder()
	tok := p.CSRFToken(rec, httptest.NewRequest("GET", "/login", nil))
	cookies := rec.Result().Cookies()
	var checkErr error
	h := p.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<10))
		checkErr = p.CheckCSRF(r)
	}))
	r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"csrf": {tok}, "username": {"alice"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	h.ServeHTTP(httptest.NewRecorder(), r)
	if checkErr != nil {
		t.Errorf("CheckCSRF after the handler read the body: %v", checkErr)
	}
}
