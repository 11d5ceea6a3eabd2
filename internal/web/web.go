// Package web renders Jeton's server-side pages (sign in, consent, device
// code entry and confirmation, messages) and owns what keeps them safe:
// the browser session cookie, CSRF tokens, cross-origin and clickjacking
// protection, and the one embedded stylesheet.
//
// The OAuth handlers use it like this:
//
//	mux.Handle("GET /login", pages.Protect(loginHandler))  // every page handler
//	mux.Handle("GET /static/", pages.Static())
//
//	// GET: show a form.
//	pages.Login(w, http.StatusOK, web.LoginPage{ReturnTo: rt, CSRF: pages.CSRFToken(w, r)})
//
//	// POST: check the form, then act.
//	if err := pages.CheckCSRF(r); err != nil { ... 403 ... }
//	pages.StartSession(w, web.Session{UserID: u.ID, AuthTime: now})
//
//	// Later requests.
//	sess, ok := pages.Session(r)
//
// Protect buffers a request's (bounded) body and hands it on unread, so a
// handler may parse the form however it likes and call CheckCSRF after.
//
// A page method writes the whole response. Its error is for information
// only: when page data breaks a bound the method has already logged it
// and answered with a generic 500 page.
//
// Pages are rendered by html/template, so every value is escaped for the
// context it lands in; nothing here marks a caller's value as safe HTML or
// URL. Pages use no JavaScript, and the Content-Security-Policy set by
// Protect forbids it.
//
// Sessions are sealed with AES-256-GCM into a cookie; no server-side state
// is kept, so every node that shares the session key accepts them.
package web

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

//go:embed templates/*.html static/*
var files embed.FS

// Errors returned by the page and CSRF methods.
var (
	// ErrCSRF means a form's CSRF token is missing, malformed, or does not
	// match the browser's CSRF cookie.
	ErrCSRF = errors.New("web: missing or wrong CSRF token")
	// ErrInvalidPage means a page's data breaks a bound (too many hidden
	// fields or scopes, a value too long) or lacks its CSRF token.
	ErrInvalidPage = errors.New("web: invalid page data")
)

// Config configures Pages. Zero values take the documented defaults.
type Config struct {
	// SessionKey is the secret that seals session cookies (AES-256-GCM)
	// and signs CSRF tokens (HMAC-SHA256); a sub-key for each use is
	// derived from it with HKDF. The caller derives it from the master
	// key; every node must use the same one. Required: all zeros is refused.
	SessionKey [32]byte
	// Secure sets the cookies' Secure flag and gives them the __Host-
	// prefix, which stops a sibling subdomain from planting them. Set it
	// whenever the issuer is https.
	Secure bool
	// SessionTTL is how long a sign-in lasts: default 12h, at least
	// MinSessionTTL and at most MaxSessionTTL.
	SessionTTL time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives rendering failures; default slog.Default().
	Logger *slog.Logger
	// Product is the name shown in titles and at the top of every page;
	// default "Jeton".
	Product string
	// LogoutPath is where the "Not you? Sign out" form posts (with its
	// CSRF token); default "/logout".
	LogoutPath string
}

// Bounds on Config.SessionTTL.
const (
	MinSessionTTL = time.Minute
	MaxSessionTTL = 30 * 24 * time.Hour
)

func (c Config) withDefaults() Config {
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Product == "" {
		c.Product = "Jeton"
	}
	if c.LogoutPath == "" {
		c.LogoutPath = "/logout"
	}
	return c
}

// Pages renders Jeton's pages and manages their sessions and CSRF tokens.
// It is safe for concurrent use.
type Pages struct {
	cfg     Config
	aead    cipher.AEAD // seals session cookies
	csrfKey []byte      // HMAC key of CSRF tokens
	tmpl    map[string]*template.Template
	assets  map[string]asset // by URL path under /static/
	style   string           // URL of the stylesheet
	icon    string           // URL of the icon
	// Cookie names, with the __Host- prefix when Secure.
	sessionCookie, csrfCookie string
}

// New returns Pages for cfg. It parses the embedded templates once.
func New(cfg Config) (*Pages, error) {
	if cfg.SessionKey == ([32]byte{}) {
		return nil, errors.New("web: no session key")
	}
	cfg = cfg.withDefaults()
	if cfg.SessionTTL < MinSessionTTL || cfg.SessionTTL > MaxSessionTTL {
		return nil, fmt.Errorf("web: session lifetime %v is not between %v and %v", cfg.SessionTTL, MinSessionTTL, MaxSessionTTL)
	}
	sealKey, err := hkdf.Key(sha256.New, cfg.SessionKey[:], nil, "jeton web session cookie v1", 32)
	if err != nil {
		return nil, fmt.Errorf("web: derive session key: %w", err)
	}
	csrfKey, err := hkdf.Key(sha256.New, cfg.SessionKey[:], nil, "jeton web csrf v1", 32)
	if err != nil {
		return nil, fmt.Errorf("web: derive csrf key: %w", err)
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("web: session cipher: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("web: session cipher: %w", err)
	}
	p := &Pages{cfg: cfg, aead: aead, csrfKey: csrfKey, sessionCookie: "jeton_session", csrfCookie: "jeton_csrf"}
	if cfg.Secure {
		p.sessionCookie, p.csrfCookie = "__Host-"+p.sessionCookie, "__Host-"+p.csrfCookie
	}
	if err := p.loadAssets(); err != nil {
		return nil, err
	}
	if err := p.parseTemplates(); err != nil {
		return nil, err
	}
	return p, nil
}

// Page templates, by name: each file defines "content" and is executed
// inside layout.html.
var pageNames = []string{"login", "consent", "device_entry", "device_confirm", "logout", "message"}

func (p *Pages) parseTemplates() error {
	base, err := template.New("layout.html").ParseFS(files, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("web: parse layout: %w", err)
	}
	p.tmpl = make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(files, "templates/"+name+".html")
		}
		if err != nil {
			return fmt.Errorf("web: parse %s: %w", name, err)
		}
		p.tmpl[name] = t
	}
	return nil
}

// view is what layout.html is executed with.
type view struct {
	Product    string
	Title      string
	StyleURL   string
	IconURL    string
	LogoutPath string
	Page       any
}

// render executes page name into a buffer and only then writes the status
// and the HTML, so a failure never sends half a page. On failure it logs,
// sends a generic error page instead, and returns the error.
func (p *Pages) render(w http.ResponseWriter, status int, name, title string, page any) error {
	var buf bytes.Buffer
	v := view{Product: p.cfg.Product, Title: title, StyleURL: p.style, IconURL: p.icon, LogoutPath: p.cfg.LogoutPath, Page: page}
	if err := p.tmpl[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		return p.fail(w, fmt.Errorf("web: render %s: %w", name, err))
	}
	return p.write(w, status, buf.Bytes())
}

func (p *Pages) write(w http.ResponseWriter, status int, body []byte) error {
	if status == 0 {
		status = http.StatusOK
	}
	h := w.Header()
	setSecurityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("web: write page: %w", err)
	}
	return nil
}

// fail logs err and answers with a generic 500 page.
func (p *Pages) fail(w http.ResponseWriter, err error) error {
	p.cfg.Logger.Error("web: page not rendered", "err", err)
	var buf bytes.Buffer
	v := view{Product: p.cfg.Product, Title: "Something went wrong", StyleURL: p.style, IconURL: p.icon, LogoutPath: p.cfg.LogoutPath,
		Page: MessagePage{Title: "Something went wrong", Message: "This page could not be shown. Try again later."}}
	if p.tmpl["message"].ExecuteTemplate(&buf, "layout", v) != nil {
		buf.Reset()
		buf.WriteString("Something went wrong.\n")
	}
	p.write(w, http.StatusInternalServerError, buf.Bytes())
	return err
}
