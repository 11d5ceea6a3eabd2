package web

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startSession returns the session cookie StartSession sets for s.
func startSession(t *testing.T, p *Pages, s Session) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	p.StartSession(rec, s)
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("StartSession set cookies %v", cookies)
	}
	return cookies[0]
}

func sessionOf(p *Pages, c *http.Cookie) (Session, bool) {
	r := httptest.NewRequest("GET", "/oauth2/authorize", nil)
	if c != nil {
		r.AddCookie(c)
	}
	return p.Session(r)
}

func TestSessionRoundTrip(t *testing.T) {
	p, clk := newPages(t, nil)
	want := Session{UserID: "usr_01HZX", AuthTime: base.Add(-time.Minute), Generation: 1<<63 + 12345}
	c := startSession(t, p, want)
	if c.Name != "jeton_session" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge != 12*3600 {
		t.Errorf("cookie attributes: %+v", c)
	}
	if len(c.String()) > 600 {
		t.Errorf("cookie is %d bytes", len(c.String()))
	}
	got, ok := sessionOf(p, c)
	if !ok {
		t.Fatal("session not accepted")
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("session (-got +want):\n%s", diff)
	}
	// Another node with the same key accepts it.
	p2, _ := newPages(t, nil)
	if _, ok := sessionOf(p2, c); !ok {
		t.Error("a node with the same key refuses the session")
	}
	// A zero AuthTime means now.
	got, _ = sessionOf(p, startSession(t, p, Session{UserID: "usr_2"}))
	if !got.AuthTime.Equal(base) {
		t.Errorf("AuthTime %v, want %v", got.AuthTime, base)
	}
	// Valid until the TTL has passed.
	clk.now = base.Add(12*time.Hour - time.Millisecond)
	if _, ok := sessionOf(p, c); !ok {
		t.Error("session refused before it expired")
	}
}

func TestSessionRefused(t *testing.T) {
	p, clk := newPages(t, nil)
	c := startSession(t, p, Session{UserID: "usr_1", AuthTime: base})
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	otherKey, _ := newPages(t, func(cfg *Config) { cfg.SessionKey[31] ^= 0x80 })
	shorterTTL, _ := newPages(t, func(cfg *Config) { cfg.SessionTTL = time.Hour })
	secure, _ := newPages(t, func(cfg *Config) { cfg.Secure = true })
	with := func(v string) *http.Cookie { return &http.Cookie{Name: "jeton_session", Value: v} }
	tests := []struct {
		name   string
		p      *Pages
		cookie *http.Cookie
		now    time.Time
	}{
		{"no cookie", p, nil, base},
		{"expired", p, c, base.Add(12 * time.Hour)},
		{"long expired", p, c, base.Add(90 * 24 * time.Hour)},
		{"sealed under another key", otherKey, c, base},
		{"longer than the configured TTL", shorterTTL, c, base},
		{"under the other cookie name", secure, c, base},
		{"tampered version", p, with(flip(0)), base},
		{"tampered nonce", p, with(flip(3)), base},
		{"tampered ciphertext", p, with(flip(20)), base},
		{"tampered tag", p, with(flip(len(raw) - 1)), base},
		{"truncated", p, with(c.Value[:len(c.Value)-4]), base},
		{"empty", p, with(""), base},
		{"not base64", p, with("!!!" + c.Value), base},
		{"oversized", p, with(strings.Repeat("A", 4000)), base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.now = tt.now
			if s, ok := sessionOf(tt.p, tt.cookie); ok {
				t.Errorf("session accepted: %+v", s)
			}
		})
	}
}

func TestSessionSecureAndEnd(t *testing.T) {
	p, _ := newPages(t, func(c *Config) { c.Secure = true; c.SessionTTL = time.Hour })
	c := startSession(t, p, Session{UserID: "usr_1", AuthTime: base})
	if c.Name != "__Host-jeton_session" || !c.Secure || c.MaxAge != 3600 {
		t.Errorf("cookie attributes: %+v", c)
	}
	if _, ok := sessionOf(p, c); !ok {
		t.Error("secure session refused")
	}
	rec := httptest.NewRecorder()
	p.EndSession(rec)
	got := rec.Header().Get("Set-Cookie")
	for _, s := range []string{"__Host-jeton_session=;", "Max-Age=0", "Secure", "HttpOnly", "Path=/"} {
		if !strings.Contains(got, s) {
			t.Errorf("EndSession cookie %q lacks %q", got, s)
		}
	}
}

func TestSessionUserIDBound(t *testing.T) {
	p, _ := newPages(t, nil)
	for _, id := range []string{"", strings.Repeat("u", MaxUserIDLen+1)} {
		rec := httptest.NewRecorder()
		p.StartSession(rec, Session{UserID: id})
		if got := rec.Header().Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("user id of %d bytes: cookie set", len(id))
		}
	}
	long := strings.Repeat("u", MaxUserIDLen)
	c := startSession(t, p, Session{UserID: long})
	if s, ok := sessionOf(p, c); !ok || s.UserID != long {
		t.Errorf("longest user id: %v %v", s, ok)
	}
}
