package web

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxEntryQueryBytes bounds the form of a cross-origin POST that
// [Pages.ProtectEntry] turns into a GET's query.
const MaxEntryQueryBytes = 16 << 10

// MaxBodyBytes bounds the body of a request to a protected page. Forms
// are far smaller; a larger body is refused with 413 before the page
// handler runs.
const MaxBodyBytes = 64 << 10

// contentSecurityPolicy allows the page's own stylesheet and images and
// nothing else: no script, no frames, no plugins, no <base>. It has no
// form-action directive on purpose: browsers apply form-action to the
// redirects that follow a form post too, and the consent form's answer is
// a redirect to the client's redirect URI.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"

// referrerPolicy keeps the page's address (an authorization request's
// state, say) from other sites, and only from them. It must not be
// "no-referrer": under that policy a browser sends "Origin: null" with the
// page's own form posts, and where it sends no Sec-Fetch-Site header (a
// server reached over plain http by a name that is not loopback, or an
// older browser) the cross-origin check has only that Origin to go by, and
// refuses every form.
const referrerPolicy = "same-origin"

// setSecurityHeaders sets the headers every page carries.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", referrerPolicy)
	h.Set("Cache-Control", "no-store")
}

// bodyKey is the context key of a protected request's buffered body.
type bodyKey struct{}

// Protect wraps a page handler. It sets the security headers on every
// response (a Content-Security-Policy without script, X-Frame-Options
// DENY, nosniff, no referrer to other origins, no caching), refuses cross-origin unsafe
// requests with [http.CrossOriginProtection] (403, a message page), and
// bounds the request body to [MaxBodyBytes] (413).
//
// The body of a POST is read once here and handed to h unread, so h may
// parse the form however it likes and still call [Pages.CheckCSRF]
// afterwards.
func (p *Pages) Protect(h http.Handler) http.Handler {
	return p.protect(h, false)
}

// ProtectEntry is [Pages.Protect] for the endpoints that other sites send
// browsers to, with a GET or with a form they post: OpenID Connect's
// authorization and logout requests (OIDC Core §3.1.2.1, RP-Initiated
// Logout §2). A cross-origin POST is not refused but answered with a 303
// to the same path with the posted form as its query, so that h sees it
// as the GET it is equivalent to. The redirect also lets the browser send
// the session cookie, which SameSite=Lax withholds from a cross-site POST
// but not from a top-level GET. Nothing posted from another site reaches
// h as a POST, so h's forms keep their protection.
func (p *Pages) ProtectEntry(h http.Handler) http.Handler {
	return p.protect(h, true)
}

func (p *Pages) protect(h http.Handler, entry bool) http.Handler {
	cop := http.NewCrossOriginProtection()
	refuse := func(w http.ResponseWriter) {
		p.Message(w, http.StatusForbidden, MessagePage{Title: "Request refused",
			Message: "This form was sent from another site, so it was not accepted. Go back to the application and start again."})
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
			var tooLarge *http.MaxBytesError
			switch {
			case errors.As(err, &tooLarge):
				p.Message(w, http.StatusRequestEntityTooLarge, MessagePage{Title: "Request too large",
					Message: "The form sent was too large. Go back and try again."})
				return
			case err != nil:
				p.Message(w, http.StatusBadRequest, MessagePage{Title: "Invalid request",
					Message: "The form could not be read. Go back and try again."})
				return
			}
			r.Body.Close()
			r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		h.ServeHTTP(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		if cop.Check(r) != nil {
			if entry && r.Method == http.MethodPost {
				p.redirectAsGet(w, r)
				return
			}
			refuse(w)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

// redirectAsGet answers a cross-origin form POST with a 303 to the same
// path, the form as its query. A body that is not a bounded, well-formed
// form is refused.
func (p *Pages) redirectAsGet(w http.ResponseWriter, r *http.Request) {
	bad := func(status int, msg string) {
		p.Message(w, status, MessagePage{Title: "Invalid request", Message: msg})
	}
	if mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		bad(http.StatusBadRequest, "The request must be a form.")
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxEntryQueryBytes+1))
	if err != nil || len(b) > MaxEntryQueryBytes {
		bad(http.StatusRequestEntityTooLarge, "The application's request is too large.")
		return
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		bad(http.StatusBadRequest, "The application's request could not be read.")
		return
	}
	// The same path, as a path only: never "//host", which a browser
	// would take for another site. (EscapedPath escapes a backslash.)
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
		bad(http.StatusBadRequest, "The address is not valid.")
		return
	}
	http.Redirect(w, r, path+"?"+form.Encode(), http.StatusSeeOther)
}
