package web

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
)

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
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Message(w, http.StatusForbidden, MessagePage{Title: "Request refused",
			Message: "This form was sent from another site, so it was not accepted. Go back to the application and start again."})
	}))
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
	protected := cop.Handler(inner)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		protected.ServeHTTP(w, r)
	})
}
