package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/tokens"
)

// oauthError writes an RFC 6749 §5.2 / RFC 6750 §3 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) error {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="jeton", error="`+code+`"`)
	}
	return writeJSON(w, status, map[string]string{"error": code, "error_description": oauth.ErrorDescription(desc)})
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) bool {
	oauthError(w, status, code, desc)
	return true
}

// oauthAuth authenticates the protected resource calling introspection or
// revocation with the same check as the admin API, but answers in the
// OAuth error format.
func (a *API) oauthAuth(next authedFunc) handlerFunc {
	inner := a.authenticate(needVerify, next)
	return func(w http.ResponseWriter, r *http.Request) error {
		err := inner(w, r)
		var he *Error
		if !errors.As(err, &he) {
			return err
		}
		switch he.Status {
		case http.StatusUnauthorized:
			return oauthError(w, http.StatusUnauthorized, "invalid_token", "authenticate with a Jeton token that has the verify or admin scope")
		case http.StatusForbidden:
			return oauthError(w, http.StatusForbidden, "insufficient_scope", "the verify or admin scope is required")
		case http.StatusTooManyRequests:
			return oauthError(w, http.StatusTooManyRequests, "slow_down", he.Message)
		}
		return oauthError(w, he.Status, "invalid_request", he.Message)
	}
}

// parseOAuthForm reads an application/x-www-form-urlencoded body (RFC 6749
// §3.2), bounded, and rejects repeated parameters (§3.1). When ok is false
// the error response has been written.
func parseOAuthForm(w http.ResponseWriter, r *http.Request) (token string, ok bool) {
	ct := r.Header.Get("Content-Type")
	if mt, _, _ := strings.Cut(ct, ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		return "", !writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return "", !writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the form body could not be parsed or is too large")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return "", !writeOAuthError(w, http.StatusBadRequest, "invalid_request", "parameter "+k+" is repeated")
		}
	}
	token = r.PostForm.Get("token")
	if token == "" {
		return "", !writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the token parameter is required")
	}
	return token, true
}

// revokeEndpoint serves RFC 7009 revocation for two kinds of caller: a
// resource server or admin presenting a Jeton token as Bearer (any token
// of the APIs it may verify), and an OAuth client authenticating as itself
// (only tokens issued to it).
func (a *API) revokeEndpoint() handlerFunc {
	asResource := a.oauthAuth(a.revoke)
	return func(w http.ResponseWriter, r *http.Request) error {
		scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if a.cfg.OAuth == nil || strings.EqualFold(scheme, "Bearer") {
			return asResource(w, r)
		}
		a.cfg.OAuth.RevokeAsClient().ServeHTTP(w, r)
		return nil
	}
}

// introspectEndpoint serves RFC 7662 introspection for two kinds of
// caller, as revokeEndpoint does: a resource server or admin presenting a
// Jeton token as Bearer (any token of the APIs it may verify), and an
// OAuth client authenticating as itself (only tokens issued to it).
func (a *API) introspectEndpoint() handlerFunc {
	asResource := a.oauthAuth(a.introspect)
	if a.cfg.OAuth == nil {
		return asResource
	}
	asClient := a.cfg.OAuth.IntrospectAsClient(func(w http.ResponseWriter, r *http.Request, tok, clientID string) error {
		return a.introspectToken(w, r, tok, a.clientIP(r), nil, clientID)
	})
	return func(w http.ResponseWriter, r *http.Request) error {
		scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if strings.EqualFold(scheme, "Bearer") || scheme == "" && !clientInBody(w, r) {
			return asResource(w, r)
		}
		asClient.ServeHTTP(w, r)
		return nil
	}
}

// clientInBody reports whether the form body of r names a client
// (client_secret_post, private_key_jwt, or a public client's client_id),
// and leaves the body to be read again. A request with neither an
// Authorization header nor a client is answered as an unauthenticated
// Bearer request (RFC 6750 §3.1).
func clientInBody(w http.ResponseWriter, r *http.Request) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	r.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return false
	}
	vals, err := url.ParseQuery(string(b))
	return err == nil && (vals.Get("client_id") != "" || vals.Get("client_assertion") != "")
}

// introspect implements RFC 7662 for a Bearer caller.
func (a *API) introspect(w http.ResponseWriter, r *http.Request, c *caller) error {
	tok, ok := parseOAuthForm(w, r)
	if !ok {
		return nil
	}
	return a.introspectToken(w, r, tok, c.ip, c.apis, "")
}

// introspectToken answers RFC 7662 for tok to a caller at ip who may learn
// about the tokens of apis (nil: all) issued to client (if not ""; an API
// key is issued to no client). Anything that would not verify as valid, or
// that the caller may not learn about, is {"active": false}, with no
// detail.
func (a *API) introspectToken(w http.ResponseWriter, r *http.Request, tok string, ip netip.Addr, apis []string, client string) error {
	if a.cfg.OAuth != nil && oauth.Handles(tok) {
		// JWT access tokens and refresh tokens.
		in, err := a.cfg.OAuth.Introspect(r.Context(), tok, apis)
		if err != nil {
			return err
		}
		if in == nil || client != "" && in.ClientID != client {
			return writeJSON(w, http.StatusOK, map[string]bool{"active": false})
		}
		return writeJSON(w, http.StatusOK, in)
	}
	res, err := a.tokens.Verify(r.Context(), &tokens.Request{Token: tok, ClientIP: ip, AllowedAPIs: apis})
	if err != nil {
		return err
	}
	if res.Code != tokens.Valid || client != "" && res.Token.ClientID != client {
		return writeJSON(w, http.StatusOK, map[string]bool{"active": false})
	}
	var aud string
	if api, err := a.tokens.ResolveAPI(r.Context(), res.Token.APIID); err == nil {
		aud = api.Identifier
	}
	var buf [512]byte
	return writeRaw(w, http.StatusOK, appendIntrospection(buf[:0], res.Token, res.ExpiresAt, aud))
}

// revoke implements RFC 7009: 200 whether or not the token was known.
func (a *API) revoke(w http.ResponseWriter, r *http.Request, c *caller) error {
	tok, ok := parseOAuthForm(w, r)
	if !ok {
		return nil
	}
	if a.cfg.OAuth != nil {
		err := a.cfg.OAuth.RevokeToken(r.Context(), tok, "", c.apis, c.actor())
		if errors.Is(err, oauth.ErrUnsupportedTokenType) {
			return oauthError(w, http.StatusBadRequest, "unsupported_token_type", "ID tokens cannot be revoked; revoke the grant or the access token instead")
		}
		if err != nil {
			return err
		}
	} else if _, err := a.tokens.RevokeSecret(r.Context(), tok, c.apis, "oauth2_revoke", c.actor()); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}
