package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// csrfSetup returns a token and the cookies that go with it.
func csrfSetup(t *testing.T, p *Pages) (string, []*http.Cookie) {
	t.Helper()
	rec := httptest.NewRecorder()
	tok := p.CSRFToken(rec, httptest.NewRequest("GET", "/login", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "jeton_csrf" {
		t.Fatalf("CSRFToken set cookies %v", cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
		t.Errorf("CSRF cookie attributes: %+v", c)
	}
	return tok, cookies
}

func formPost(body string, cookies []*http.Cookie) *http.Request {
	r := httptest.NewRequest("POST", "/login", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

func TestCSRF(t *testing.T) {
	p, _ := newPages(t, nil)
	other, _ := newPages(t, func(c *Config) { c.SessionKey[0] ^= 1 })
	tok, cookies := csrfSetup(t, p)
	otherTok, otherCookies := csrfSetup(t, p) // another browser
	foreignTok, _ := csrfSetup(t, other)      // another key, same cookie name
	tests := []struct {
		name    string
		body    string
		query   string
		cookies []*http.Cookie
		ct      string
		wantErr bool
	}{
		{name: "round trip", body: "csrf=" + tok, cookies: cookies},
		{name: "with other fields", body: url.Values{"csrf": {tok}, "decision": {"allow"}}.Encode(), cookies: cookies},
		{name: "no cookie", body: "csrf=" + tok, wantErr: true},
		{name: "no token", body: "decision=allow", cookies: cookies, wantErr: true},
		{name: "empty token", body: "csrf=", cookies: cookies, wantErr: true},
		{name: "wrong token", body: "csrf=" + strings.Repeat("A", csrfTokenLen), cookies: cookies, wantErr: true},
		{name: "token of another browser", body: "csrf=" + otherTok, cookies: cookies, wantErr: true},
		{name: "cookie of another browser", body: "csrf=" + tok, cookies: otherCookies, wantErr: true},
		{name: "token under another key", body: "csrf=" + foreignTok, cookies: cookies, wantErr: true},
		{name: "token twice", body: "csrf=" + tok + "&csrf=" + tok, cookies: cookies, wantErr: true},
		{name: "token in the query only", query: "?csrf=" + tok, cookies: cookies, wantErr: true},
		{name: "malformed cookie", body: "csrf=" + tok, cookies: []*http.Cookie{{Name: "jeton_csrf", Value: "short"}}, wantErr: true},
		{name: "not a form", body: "csrf=" + tok, cookies: cookies, ct: "text/plain", wantErr: true},
	}
	for _, tt := range tests {
		for _, protected := range []bool{false, true} {
			name := tt.name
			if protected {
				name += " (protected)"
			}
			t.Run(name, func(t *testing.T) {
				r := formPost(tt.body, tt.cookies)
				r.URL.RawQuery = strings.TrimPrefix(tt.query, "?")
				if tt.ct != "" {
					r.Header.Set("Content-Type", tt.ct)
				}
				var err error
				check := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { err = p.CheckCSRF(r) })
				if protected {
					p.Protect(check).ServeHTTP(httptest.NewRecorder(), r)
				} else {
					check.ServeHTTP(httptest.NewRecorder(), r)
				}
				if tt.wantErr != (err != nil) {
					t.Errorf("CheckCSRF = %v, want error %v", err, tt.wantErr)
				}
				if err != nil && !errors.Is(err, ErrCSRF) {
					t.Errorf("error %v is not ErrCSRF", err)
				}
			})
		}
	}
}

func TestCSRFTokenStable(t *testing.T) {
	p, _ := newPages(t, func(c *Config) { c.Secure = true })
	// Twice in one response: one cookie, one token.
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/device", nil)
	t1, t2 := p.CSRFToken(rec, r), p.CSRFToken(rec, r)
	cookies := rec.Result().Cookies()
	if t1 != t2 || len(cookies) != 1 {
		t.Fatalf("tokens %q %q, cookies %v", t1, t2, cookies)
	}
	if c := cookies[0]; c.Name != "__Host-jeton_csrf" || !c.Secure {
		t.Errorf("secure CSRF cookie: %+v", c)
	}
	// A browser that has the cookie keeps it and gets the same token.
	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "/device", nil)
	r.AddCookie(cookies[0])
	if got := p.CSRFToken(rec, r); got != t1 {
		t.Errorf("token changed: %q, want %q", got, t1)
	}
	if got := rec.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("cookie set again: %v", got)
	}
	// A different browser gets a different token.
	if got := p.CSRFToken(httptest.NewRecorder(), httptest.NewRequest("GET", "/device", nil)); got == t1 {
		t.Errorf("two browsers share a token")
	}
}
