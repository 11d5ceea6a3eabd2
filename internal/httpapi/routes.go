package httpapi

import (
	"net/http"
	"strings"
)

// routes registers every endpoint. This is the only place routes live.
func (a *API) routes() {
	m := a.cfg.Metrics
	handle := func(pattern string, h handlerFunc) {
		a.mux.Handle(pattern, m.instrument(pattern, a.adapt.wrap(h)))
	}
	admin := func(h authedFunc) handlerFunc { return a.authenticate(needAdmin, h) }
	verifier := func(h authedFunc) handlerFunc { return a.authenticate(needVerify, h) }

	handle("POST /v1/apis", admin(a.createAPI))
	handle("GET /v1/apis", admin(a.listAPIs))
	handle("GET /v1/apis/{id}", admin(a.getAPI))
	handle("PATCH /v1/apis/{id}", admin(a.updateAPI))
	handle("DELETE /v1/apis/{id}", admin(a.deleteAPI))

	handle("POST /v1/tokens", admin(a.createToken))
	handle("GET /v1/tokens", admin(a.listTokens))
	handle("GET /v1/tokens/{id}", admin(a.getToken))
	handle("PATCH /v1/tokens/{id}", admin(a.updateToken))
	handle("DELETE /v1/tokens/{id}", admin(a.revokeToken))
	handle("POST /v1/tokens/{id}/revoke", admin(a.revokeToken))
	handle("POST /v1/tokens/{id}/rotate", admin(a.rotateToken))
	handle("GET /v1/tokens/{id}/usage", admin(a.tokenUsage))

	handle("GET /v1/audit", admin(a.listAudit))
	handle("POST /v1/leaks", a.reportLeaks())

	handle("POST /v1/verify", verifier(a.verify))
	feed := a.newRevocationFeed()
	handle("GET /v1/revocations", verifier(feed.list))
	handle("GET /v1/revocations/stream", verifier(feed.stream))
	handle("POST /oauth2/introspect", a.introspectEndpoint())
	raw := func(pattern string, h http.Handler) { a.mux.Handle(pattern, m.instrument(pattern, h)) }
	// What a browser-based application calls from its own scripts is
	// readable cross-origin (cors.go); the rest, pages included, is not.
	browserCallable := map[string]http.Handler{"POST /oauth2/revoke": a.adapt.wrap(a.revokeEndpoint())}

	if o := a.cfg.OAuth; o != nil {
		// The OAuth endpoints write their own RFC 6749 errors and pages.
		browserCallable["POST /oauth2/token"] = o.Token()
		browserCallable["POST /oauth2/device_authorization"] = o.DeviceAuthorization()
		browserCallable["GET /oauth2/userinfo"] = o.UserInfo()
		browserCallable["POST /oauth2/userinfo"] = o.UserInfo()
		browserCallable["GET /.well-known/oauth-authorization-server"] = o.Metadata()
		browserCallable["GET /.well-known/openid-configuration"] = o.Metadata()
		browserCallable["GET /.well-known/jwks.json"] = o.JWKS()
		raw("GET /oauth2/authorize", o.Authorize())
		raw("POST /oauth2/authorize", o.Authorize())
		raw("GET /login", o.Login())
		raw("POST /login", o.Login())
		raw("POST /logout", o.Logout())
		raw("GET /oauth2/logout", o.EndSession())
		raw("POST /oauth2/logout", o.EndSession())
		raw("GET /device", o.Device())
		raw("POST /device", o.Device())
		raw("GET /static/", o.Static())

		// Admin API of the OAuth entities (handlers in oauth_admin.go).
		a.oauthAdminRoutes(handle, admin)
	}
	corsRoutes(raw, browserCallable)

	handle("GET /healthz", a.healthz)
	handle("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", m.Handler())

	// Anything else is a JSON error, not the mux's text: 405 with Allow
	// for a path that exists with other methods, 404 for the rest.
	handle("/v1/", a.noRoute)
	handle("/", a.noRoute)
}

// fallbackPatterns are the catch-all patterns noRoute serves.
var fallbackPatterns = map[string]bool{"/": true, "/v1/": true}

// routeMethods are the methods noRoute looks for another route under.
var routeMethods = []string{"DELETE", "GET", "OPTIONS", "PATCH", "POST", "PUT"}

// noRoute answers a request no route takes. If the path has routes for
// other methods it is 405 Method Not Allowed with an Allow header (RFC
// 9110 §15.5.6); otherwise 404.
func (a *API) noRoute(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	probe := *r
	for _, m := range routeMethods {
		probe.Method = m
		if _, pattern := a.mux.Handler(&probe); !fallbackPatterns[pattern] {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s %s is not allowed; use %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
	}
	return errorf(http.StatusNotFound, "not_found", "no such endpoint: %s %s", r.Method, r.URL.Path)
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := a.store.Ping(r.Context()); err != nil {
		a.log.Warn("readiness: store unreachable", "err", err)
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "store unreachable"})
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
