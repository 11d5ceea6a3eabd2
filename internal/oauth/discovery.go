package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

// metadata is the authorization server metadata (RFC 8414 §2) and OpenID
// Provider metadata (OpenID Connect Discovery 1.0 §3).
type metadata struct {
	Issuer                               string   `json:"issuer"`
	AuthorizationEndpoint                string   `json:"authorization_endpoint"`
	TokenEndpoint                        string   `json:"token_endpoint"`
	JWKSURI                              string   `json:"jwks_uri"`
	UserinfoEndpoint                     string   `json:"userinfo_endpoint"`
	RevocationEndpoint                   string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                string   `json:"introspection_endpoint"`
	DeviceAuthorizationEndpoint          string   `json:"device_authorization_endpoint"`
	EndSessionEndpoint                   string   `json:"end_session_endpoint"`
	ScopesSupported                      []string `json:"scopes_supported"`
	ResponseTypesSupported               []string `json:"response_types_supported"`
	ResponseModesSupported               []string `json:"response_modes_supported"`
	GrantTypesSupported                  []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods             []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethods        []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationEndpointAuthSigningAlgs    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthMethods     []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthSigningAlgs []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	CodeChallengeMethodsSupported        []string `json:"code_challenge_methods_supported"`
	SubjectTypesSupported                []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported     []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                      []string `json:"claims_supported"`
	PromptValuesSupported                []string `json:"prompt_values_supported"`
	AuthorizationResponseISSParameter    bool     `json:"authorization_response_iss_parameter_supported"`
	RequestParameterSupported            bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported         bool     `json:"request_uri_parameter_supported"`
	ClaimsParameterSupported             bool     `json:"claims_parameter_supported"`
	AccessTokenSigningAlgValues          []string `json:"access_token_signing_alg_values_supported,omitempty"`
}

// Metadata serves /.well-known/oauth-authorization-server and
// /.well-known/openid-configuration. Every endpoint that lists
// private_key_jwt lists the assertion's algorithms too, which RFC 8414 §2
// requires (no default is implied); they are the same at every endpoint,
// since one check serves them all.
func (s *Server) Metadata() http.Handler {
	e := s.endpoints
	m := metadata{
		Issuer: s.cfg.Issuer, AuthorizationEndpoint: e.authorize, TokenEndpoint: e.token, JWKSURI: e.jwks,
		UserinfoEndpoint: e.userinfo, RevocationEndpoint: e.revoke, IntrospectionEndpoint: e.introspect,
		DeviceAuthorizationEndpoint:          e.deviceAuth,
		EndSessionEndpoint:                   e.endSession,
		ScopesSupported:                      []string{ScopeOpenID, ScopeProfile, ScopeEmail, ScopeOfflineAccess},
		ResponseTypesSupported:               []string{"code"},
		ResponseModesSupported:               []string{"query"},
		GrantTypesSupported:                  []string{GrantAuthorizationCode, GrantClientCredentials, GrantRefreshToken, GrantDeviceCode},
		TokenEndpointAuthMethods:             []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthNone},
		TokenEndpointAuthSigningAlgs:         slices.Clone(assertionAlgNames),
		RevocationEndpointAuthMethods:        []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthNone},
		RevocationEndpointAuthSigningAlgs:    slices.Clone(assertionAlgNames),
		IntrospectionEndpointAuthMethods:     []string{"bearer", AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT},
		IntrospectionEndpointAuthSigningAlgs: slices.Clone(assertionAlgNames),
		CodeChallengeMethodsSupported:        []string{"S256"},
		SubjectTypesSupported:                []string{"public"},
		IDTokenSigningAlgValuesSupported:     slices.Clone(signing.Algorithms),
		ClaimsSupported:                      []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "preferred_username", "email", "email_verified"},
		PromptValuesSupported:                []string{"none", "login", "consent", "select_account"},
		AuthorizationResponseISSParameter:    true,
		AccessTokenSigningAlgValues:          slices.Clone(signing.Algorithms),
	}
	body, _ := json.MarshalIndent(m, "", "  ")
	body = append(body, '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=3600")
		w.Write(body)
	})
}

var assertionAlgNames = func() []string {
	out := make([]string, len(assertionAlgs))
	for i, a := range assertionAlgs {
		out[i] = string(a)
	}
	return out
}()

// JWKSMaxAge is how long clients may cache the JWKS. The signing keys'
// pre-publication delay must not be shorter, so that every verifier has
// fetched a new key before it signs anything.
const JWKSMaxAge = 5 * time.Minute

// JWKS serves /.well-known/jwks.json (RFC 7517 §5), cacheable, with an
// ETag. http.ServeContent answers conditional requests as RFC 9110 §13.1.2
// says: If-None-Match by weak comparison, with lists of tags and "*".
func (s *Server) JWKS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, etag := s.keys.JWKS()
		h := w.Header()
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(JWKSMaxAge/time.Second)))
		h.Set("ETag", etag)
		h.Set("Content-Type", "application/json")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

// UserInfo serves GET and POST /oauth2/userinfo (OIDC Core §5.3), a
// protected resource answering with RFC 6750 errors.
func (s *Server) UserInfo() http.Handler { return s.serve(s.userinfo) }

type userInfo struct {
	Subject           string `json:"sub"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     *bool  `json:"email_verified,omitempty"`
}

func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) error {
	tok, err := bearerToken(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	at, ok := s.accessToken(ctx, tok, nil, s.clientIP(r))
	if !ok {
		return &Error{Code: errInvalidToken, Status: http.StatusUnauthorized, Description: "the access token is invalid, expired or revoked"}
	}
	if !slices.Contains(at.Scopes, ScopeOpenID) {
		return &Error{Code: errInsufficientScope, Status: http.StatusForbidden, Description: "the access token lacks the openid scope"}
	}
	u, err := s.store.GetUser(ctx, at.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Code: errInvalidToken, Status: http.StatusUnauthorized, Description: "the access token does not belong to a user"}
	}
	if err != nil {
		return err
	}
	if !u.DisabledAt.IsZero() {
		return &Error{Code: errInvalidToken, Status: http.StatusUnauthorized, Description: "the user is disabled"}
	}
	out := userInfo{Subject: u.ID}
	if slices.Contains(at.Scopes, ScopeProfile) {
		out.PreferredUsername = u.Username
	}
	if slices.Contains(at.Scopes, ScopeEmail) && u.Email != "" {
		f := false
		out.Email, out.EmailVerified = u.Email, &f
	}
	return writeJSON(w, http.StatusOK, out)
}

// maxBearerLen bounds an access token sent to userinfo.
const maxBearerLen = 8 << 10

// bearerToken returns the access token of a request to userinfo, sent
// either in the Authorization header (RFC 6750 §2.1) or, on a POST with a
// form body, as its access_token parameter (RFC 6750 §2.2; OIDC Core
// §5.3.1). A request without one is answered with a challenge that names
// no error (RFC 6750 §3.1), one that sends a token by both methods with
// invalid_request (RFC 6750 §2: one method per request). A token in the
// URL query (RFC 6750 §2.3), where logs and Referer headers keep it, is
// refused with invalid_request rather than ignored.
func bearerToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if r.URL.Query().Has("access_token") {
		return "", bearerError(badRequest("the access token must not be sent in the URL: use the Authorization header or a POST form body"))
	}
	var header, body string
	sent := 0
	if scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
		header = strings.TrimSpace(tok)
		sent++
		if header == "" || len(header) > maxBearerLen {
			return "", &Error{Code: errInvalidToken, Status: http.StatusUnauthorized, Description: "the Authorization header holds no valid bearer token"}
		}
	}
	if r.Method == http.MethodPost && isFormBody(r) {
		f, err := parseForm(w, r)
		if err != nil {
			return "", bearerError(err)
		}
		if body = f.get("access_token"); body != "" {
			sent++
		}
	}
	switch {
	case sent > 1:
		return "", bearerError(badRequest("send the access token by one method only, the Authorization header or the form body (RFC 6750 §2)"))
	case header != "":
		return header, nil
	case body != "":
		return body, nil
	}
	return "", &Error{Status: http.StatusUnauthorized, Description: "send the access token as 'Authorization: Bearer <token>' or as access_token in a POST form body"}
}

// AccessToken is what introspection and userinfo know of a valid access
// token of either format.
type AccessToken struct {
	Subject   string
	ClientID  string
	Audience  string // the API identifier
	APIID     string
	Scopes    []string
	IssuedAt  int64
	ExpiresAt int64
	ID        string // token id or JWT jti
}

// accessToken checks an access token: opaque ones through the token
// service's verify path, JWTs (RFC 9068) against the signing keys with
// their iss, exp and aud. allowedAPIs limits the audiences (nil: any).
func (s *Server) accessToken(ctx context.Context, tok string, allowedAPIs []string, ip netip.Addr) (*AccessToken, bool) {
	if strings.Count(tok, ".") == 2 {
		return s.jwtAccessToken(ctx, tok, allowedAPIs)
	}
	p, err := tokenfmt.Parse(tok)
	if err != nil || p != tokenfmt.PrefixAccess {
		return nil, false
	}
	res, err := s.tokens.Verify(ctx, &tokens.Request{Token: tok, ClientIP: ip, AllowedAPIs: allowedAPIs, NoLimits: true})
	if err != nil || res.Code != tokens.Valid {
		return nil, false
	}
	t := res.Token
	at := &AccessToken{Subject: t.Subject, ClientID: t.ClientID, APIID: t.APIID, Scopes: t.Scopes, IssuedAt: t.CreatedAt.Unix(), ID: t.ID}
	if !t.ExpiresAt.IsZero() {
		at.ExpiresAt = t.ExpiresAt.Unix()
	}
	if a, err := s.tokens.ResolveAPI(ctx, t.APIID); err == nil {
		at.Audience = a.Identifier
	}
	return at, true
}

func (s *Server) jwtAccessToken(ctx context.Context, tok string, allowedAPIs []string) (*AccessToken, bool) {
	c, a, ok := s.accessJWT(ctx, tok, 0)
	if !ok || (allowedAPIs != nil && !slices.Contains(allowedAPIs, a.ID)) {
		return nil, false
	}
	// A revoked JWT (its jti, or the grant it came from) is refused here
	// as at introspection; a store failure refuses too.
	if revoked, err := s.store.IsRevoked(ctx, c.ID, c.SessionID, c.ClientID); err != nil || revoked {
		return nil, false
	}
	return &AccessToken{Subject: c.Subject, ClientID: c.ClientID, Audience: c.Audience, APIID: a.ID,
		Scopes: strings.Fields(c.Scope), IssuedAt: c.IssuedAt, ExpiresAt: c.Expiry, ID: c.ID}, true
}

// Static serves the pages' stylesheet under /static/.
func (s *Server) Static() http.Handler { return s.pages.Static() }
