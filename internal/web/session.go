package web

import (
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"time"
)

// Session is a signed-in browser: who, when they last entered their
// password (OIDC auth_time), and the generation of the user's sessions it
// belongs to.
type Session struct {
	UserID   string
	AuthTime time.Time
	// Generation is the user's session generation as read when they
	// signed in, for the caller to compare with the current one: ending
	// a user's sessions moves it on (users.SessionGeneration), which ends
	// even a sign-in that was under way meanwhile.
	Generation uint64
}

const (
	// MaxUserIDLen bounds a session's user id.
	MaxUserIDLen = 256
	// sessionVersion is the first byte of a session cookie's payload,
	// and part of the data the seal authenticates.
	sessionVersion = 2
	// maxSessionCookieLen bounds the session cookie value looked at:
	// base64 of version, nonce, two times, the generation, the longest
	// user id and tag.
	maxSessionCookieLen = (1 + 12 + sessionHeader + MaxUserIDLen + 16 + 2) * 4 / 3
	// sessionHeader is the fixed part of a session's plaintext: auth time,
	// expiry and generation, 8 bytes each; the user id follows.
	sessionHeader = 24
)

// sessionAD is the additional data of the seal: it ties a sealed value to
// its purpose and format version.
var sessionAD = []byte("jeton session\x00\x02")

// Session returns the session of r's cookie. It reports false when there
// is none, or it is malformed, sealed by another key, tampered with, or
// expired (its expiry passed, or it is older than the configured
// SessionTTL allows).
func (p *Pages) Session(r *http.Request) (Session, bool) {
	for i, c := range r.CookiesNamed(p.sessionCookie) {
		if i == maxCookies {
			break
		}
		if s, ok := p.openSession(c.Value); ok {
			return s, true
		}
	}
	return Session{}, false
}

// StartSession sets the session cookie for s on w, valid for SessionTTL.
// A zero AuthTime means now. The cookie is HttpOnly, SameSite=Lax, Path=/,
// and Secure when the configuration says so. A user id over
// [MaxUserIDLen] bytes is a programming error: it is logged and no
// session is started.
func (p *Pages) StartSession(w http.ResponseWriter, s Session) {
	if s.UserID == "" || len(s.UserID) > MaxUserIDLen {
		p.cfg.Logger.Error("web: session not started: user id empty or too long", "len", len(s.UserID))
		return
	}
	now := p.cfg.Now()
	if s.AuthTime.IsZero() {
		s.AuthTime = now
	}
	exp := now.Add(p.cfg.SessionTTL)
	plain := make([]byte, sessionHeader, sessionHeader+len(s.UserID))
	binary.BigEndian.PutUint64(plain[0:], uint64(s.AuthTime.UnixMilli()))
	binary.BigEndian.PutUint64(plain[8:], uint64(exp.UnixMilli()))
	binary.BigEndian.PutUint64(plain[16:], s.Generation)
	plain = append(plain, s.UserID...)
	sealed := p.aead.Seal([]byte{sessionVersion}, nil, plain, sessionAD)
	http.SetCookie(w, &http.Cookie{Name: p.sessionCookie, Value: base64.RawURLEncoding.EncodeToString(sealed),
		Path: "/", MaxAge: int(p.cfg.SessionTTL / time.Second), HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
}

// EndSession deletes the session cookie (signing out).
func (p *Pages) EndSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: p.sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
}

func (p *Pages) openSession(v string) (Session, bool) {
	if len(v) > maxSessionCookieLen {
		return Session{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(raw) < 1 || raw[0] != sessionVersion {
		return Session{}, false
	}
	plain, err := p.aead.Open(nil, nil, raw[1:], sessionAD)
	if err != nil || len(plain) <= sessionHeader || len(plain) > sessionHeader+MaxUserIDLen {
		return Session{}, false
	}
	authTime := time.UnixMilli(int64(binary.BigEndian.Uint64(plain[0:]))).UTC()
	exp := time.UnixMilli(int64(binary.BigEndian.Uint64(plain[8:]))).UTC()
	now := p.cfg.Now()
	if !now.Before(exp) || exp.Sub(now) > p.cfg.SessionTTL || authTime.After(exp) {
		return Session{}, false
	}
	return Session{UserID: string(plain[sessionHeader:]), AuthTime: authTime, Generation: binary.BigEndian.Uint64(plain[16:])}, true
}
