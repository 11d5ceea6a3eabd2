package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
)

// CSRFField is the name of the hidden form field that carries the CSRF
// token. Handlers that forward a form's fields must not forward it.
const CSRFField = "csrf"

const (
	csrfSeedBytes = 32
	csrfSeedLen   = 43 // base64url, no padding, of 32 bytes
	csrfTokenLen  = 43 // base64url of an HMAC-SHA256
	maxCookies    = 4  // cookies of one name looked at, at most
)

// CSRFToken returns the CSRF token to put in a form's hidden "csrf" field
// (the page structs' CSRF). The token is an HMAC of a random per-browser
// cookie; if the browser has no such cookie yet, CSRFToken sets one on w,
// so it must be called before the page is written. Calling it twice for
// one response returns the same token.
//
// The token is defence in depth: [Pages.Protect] already refuses
// cross-origin posts.
func (p *Pages) CSRFToken(w http.ResponseWriter, r *http.Request) string {
	seed, ok := p.csrfSeed(r)
	if !ok {
		seed, ok = p.csrfSeedSetOn(w)
	}
	if !ok {
		var b [csrfSeedBytes]byte
		rand.Read(b[:])
		seed = base64.RawURLEncoding.EncodeToString(b[:])
		http.SetCookie(w, &http.Cookie{Name: p.csrfCookie, Value: seed, Path: "/",
			HttpOnly: true, Secure: p.cfg.Secure, SameSite: http.SameSiteLaxMode})
	}
	return p.csrfFor(seed)
}

// CheckCSRF reports with [ErrCSRF] whether the form posted in r lacks the
// CSRF token that matches the browser's CSRF cookie. Only the request
// body counts: a token in the URL query is ignored. The field must appear
// exactly once. The tokens are compared in constant time.
func (p *Pages) CheckCSRF(r *http.Request) error {
	seed, ok := p.csrfSeed(r)
	if !ok {
		return ErrCSRF
	}
	got, ok := postedCSRF(r)
	if !ok || len(got) != csrfTokenLen {
		return ErrCSRF
	}
	if !hmac.Equal([]byte(got), []byte(p.csrfFor(seed))) {
		return ErrCSRF
	}
	return nil
}

// postedCSRF returns the csrf field of r's form body: the body buffered
// by Protect if there is one, else r.PostForm (parsed here, bounded, if
// nobody has parsed it yet).
func postedCSRF(r *http.Request) (string, bool) {
	var vals []string
	if b, ok := r.Context().Value(bodyKey{}).([]byte); ok {
		if !isForm(r) {
			return "", false
		}
		q, err := url.ParseQuery(string(b))
		if err != nil {
			return "", false
		}
		vals = q[CSRFField]
	} else {
		if r.PostForm == nil {
			if r.Body != nil {
				r.Body = http.MaxBytesReader(nil, r.Body, MaxBodyBytes)
			}
			if r.ParseForm() != nil {
				return "", false
			}
		}
		vals = r.PostForm[CSRFField]
	}
	if len(vals) != 1 {
		return "", false
	}
	return vals[0], true
}

func isForm(r *http.Request) bool {
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded")
}

// csrfSeed returns the first well-formed CSRF cookie of r.
func (p *Pages) csrfSeed(r *http.Request) (string, bool) {
	for i, c := range r.CookiesNamed(p.csrfCookie) {
		if i == maxCookies {
			break
		}
		if validSeed(c.Value) {
			return c.Value, true
		}
	}
	return "", false
}

// csrfSeedSetOn returns the CSRF cookie already set on w by an earlier
// call for the same response.
func (p *Pages) csrfSeedSetOn(w http.ResponseWriter) (string, bool) {
	for _, line := range w.Header().Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == p.csrfCookie && validSeed(c.Value) {
			return c.Value, true
		}
	}
	return "", false
}

func validSeed(s string) bool {
	if len(s) != csrfSeedLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == csrfSeedBytes
}

func (p *Pages) csrfFor(seed string) string {
	m := hmac.New(sha256.New, p.csrfKey)
	m.Write([]byte(seed))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
