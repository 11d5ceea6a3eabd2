package httpapi

import (
	"net/http"
	"slices"
	"strings"
)

// corsMaxAge is how long, in seconds, a browser may reuse the answer to
// a preflight request.
const corsMaxAge = "86400"

// corsHeaders are the request headers a cross-origin script may send to
// the OAuth endpoints: a Bearer token to userinfo, HTTP Basic client
// credentials, and the form's content type.
const corsHeaders = "Authorization, Content-Type"

// cors lets scripts of any origin call the OAuth endpoints that a
// browser-based application (a public client, RFC 9700 §2.1.1, the
// OAuth 2.0 for Browser-Based Applications BCP) calls itself: the token,
// revocation, userinfo and device authorization endpoints, discovery and
// the JWKS. It answers preflight requests and marks every response
// readable by any origin, without credentials: these endpoints never
// read cookies, so a script elsewhere gains nothing a server could not do
// with the same parameters. The pages (sign in, consent, device) and the
// admin API get no such header.
type cors struct {
	methods string // the methods of the endpoint, for Access-Control-Allow-Methods
}

// wrap marks next's responses readable from any origin.
func (c cors) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
		next.ServeHTTP(w, r)
	})
}

// preflight answers an OPTIONS request for the endpoint (Fetch standard,
// CORS protocol): 204, with the methods and request headers allowed.
func (c cors) preflight() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", c.methods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		h.Set("Allow", "OPTIONS, "+c.methods)
		w.WriteHeader(http.StatusNoContent)
	})
}

// corsRoutes registers handlers, keyed by "METHOD /path", with cors, and
// one preflight route per path.
func corsRoutes(register func(pattern string, h http.Handler), handlers map[string]http.Handler) {
	methods := map[string][]string{} // by path
	for pattern := range handlers {
		method, path, _ := strings.Cut(pattern, " ")
		methods[path] = append(methods[path], method)
	}
	for path, ms := range methods {
		slices.Sort(ms)
		c := cors{methods: strings.Join(ms, ", ")}
		for _, m := range ms {
			register(m+" "+path, c.wrap(handlers[m+" "+path]))
		}
		register("OPTIONS "+path, c.preflight())
	}
}
