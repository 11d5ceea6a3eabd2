package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
	"github.com/jetonhq/jeton/internal/web"
)

// authRequest is a validated authorization request (RFC 6749 §4.1.1, RFC
// 7636 §4.3, RFC 8707 §2, OIDC Core §3.1.2.1).
type authRequest struct {
	params      form // the request as received, for the forms that resume it
	client      *store.Client
	redirectURI string // where to send the answer
	givenURI    string // redirect_uri as sent ("" if omitted)
	state       string
	api         *store.API
	scopes      []string
	nonce       string
	challenge   string
	prompt      map[string]bool
	maxAge      int64  // seconds, at most maxMaxAge; -1: not given
	hintSubject string // the user an id_token_hint names; "" without one
}

// maxMaxAge caps max_age, in seconds, so that it converts to a
// time.Duration without overflow. OIDC Core §3.1.2.1 sets max_age no upper
// bound, and a larger one only asks less (any sign-in recent enough), so a
// larger value is clamped rather than refused: 2^32 s is 136 years, older
// than any session, so the clamped value asks exactly what was asked.
const maxMaxAge = 1 << 32

// pageError is an authorization error that cannot be sent to the client
// because its redirect URI is unknown: it is shown to the user (RFC 6749
// §4.1.2.1).
type pageError struct {
	status  int
	title   string
	message string
}

func (e *pageError) Error() string { return "oauth: " + e.message }

// authParams are the parameters of an authorization request that Jeton
// reads. The others are ignored (RFC 6749 §3.1) and not carried through
// the sign-in and consent forms.
var authParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "resource", "prompt", "max_age", "response_mode",
	"id_token_hint", "request", "request_uri"}

// authRequestOf returns the parameters of f that are authParams.
func authRequestOf(f form) form {
	out := form{}
	for _, k := range authParams {
		if v, ok := f[k]; ok {
			out[k] = v
		}
	}
	return out
}

// authTarget identifies the client of an authorization request and where
// to answer it, from client_id, redirect_uri and state. Its errors are
// *pageError: without a valid client and redirect URI, the answer cannot
// go back (RFC 6749 §4.1.2.1).
func (s *Server) authTarget(ctx context.Context, f form) (*authRequest, error) {
	ar := &authRequest{state: f.get("state"), maxAge: -1}
	id := f.get("client_id")
	if id == "" {
		return nil, &pageError{http.StatusBadRequest, "Invalid request", "The application did not say who it is (client_id is missing)."}
	}
	e, err := s.client(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &pageError{http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered."}
	}
	if err != nil {
		return nil, err
	}
	c := e.client
	ar.client = &c
	if !c.DisabledAt.IsZero() {
		return nil, &pageError{http.StatusBadRequest, "Application disabled", "The application that sent you here is disabled."}
	}
	ar.givenURI = f.get("redirect_uri")
	switch {
	case ar.givenURI != "":
		if !redirectRegistered(c.RedirectURIs, ar.givenURI) {
			return nil, &pageError{http.StatusBadRequest, "Invalid redirect", "The application asked to send you to an address it has not registered."}
		}
		ar.redirectURI = ar.givenURI
	case len(c.RedirectURIs) == 1:
		ar.redirectURI = c.RedirectURIs[0]
	default:
		return nil, &pageError{http.StatusBadRequest, "Invalid request", "The application did not say where to send you back (redirect_uri is missing)."}
	}
	return ar, nil
}

// parseAuthRequest validates an authorization request. Errors before the
// redirect URI is known are *pageError; later ones are *Error to be sent
// to the redirect URI.
func (s *Server) parseAuthRequest(ctx context.Context, f form) (*authRequest, error) {
	ar, err := s.authTarget(ctx, f)
	if err != nil {
		return nil, err
	}
	c := *ar.client
	ar.params, ar.nonce = f, f.get("nonce")
	// From here on, errors go back to the client.
	if rt := f.get("response_type"); rt != "code" {
		if rt == "" {
			return ar, badRequest("response_type is required")
		}
		return ar, oerr(http.StatusBadRequest, errUnsupportedResponse, "only response_type=code is supported")
	}
	// OIDC Core §3.1.2.6 has one error for each way of passing a
	// request object.
	if f.get("request") != "" {
		return ar, oerr(http.StatusBadRequest, errRequestNotSupported, "request objects are not supported")
	}
	if f.get("request_uri") != "" {
		return ar, oerr(http.StatusBadRequest, errRequestURINotSupported, "request_uri is not supported")
	}
	if !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		return ar, oerr(http.StatusBadRequest, errUnauthorizedClient, "the client may not use the authorization code grant")
	}
	if rm := f.get("response_mode"); rm != "" && rm != "query" {
		return ar, badRequest("only response_mode=query is supported")
	}
	ar.challenge = f.get("code_challenge")
	method := f.get("code_challenge_method")
	switch {
	case ar.challenge == "" && method != "":
		return ar, badRequest("code_challenge_method without code_challenge")
	case ar.challenge == "" && c.Type == store.ClientPublic:
		return ar, badRequest("public clients must use PKCE (code_challenge with S256)")
	case ar.challenge != "" && method != "S256":
		// An absent method means plain (RFC 7636 §4.3), which is refused.
		return ar, badRequest("code_challenge_method must be S256")
	case ar.challenge != "" && (len(ar.challenge) != 43 || !validVerifier(ar.challenge)):
		return ar, badRequest("code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
	}
	if ar.api, err = s.selectAPI(ctx, &c, f); err != nil {
		return ar, err
	}
	if ar.scopes, err = selectScopes(&c, ar.api, f.get("scope"), true); err != nil {
		return ar, err
	}
	ar.prompt = map[string]bool{}
	for p := range strings.FieldsSeq(f.get("prompt")) {
		switch p {
		case "none", "login", "consent", "select_account":
			ar.prompt[p] = true
		default:
			return ar, badRequest("unknown prompt value %q", truncate(safeName(p), 40))
		}
	}
	if ar.prompt["none"] && len(ar.prompt) > 1 {
		return ar, badRequest("prompt=none cannot be combined with other values")
	}
	if ma := f.get("max_age"); ma != "" {
		// ParseUint takes no sign; a number too large for it is only a
		// very large max_age.
		n, err := strconv.ParseUint(ma, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return ar, badRequest("max_age must be a non-negative integer")
		}
		ar.maxAge = int64(min(n, maxMaxAge))
	}
	if hint := f.get("id_token_hint"); hint != "" {
		claims, err := s.verifyHint(hint)
		if err != nil {
			return ar, badRequest("id_token_hint is not an ID token this server issued")
		}
		ar.hintSubject = claims.Subject
	}
	return ar, nil
}

// redirect sends the user back to the client with params, the state and
// the issuer (RFC 9207), keeping the redirect URI's own query (RFC 6749
// §3.1.2).
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, ar *authRequest, params url.Values) {
	if ar.state != "" {
		params.Set("state", ar.state)
	}
	params.Set("iss", s.cfg.Issuer)
	target := ar.redirectURI
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	http.Redirect(w, r, target+sep+params.Encode(), http.StatusSeeOther)
}

func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, ar *authRequest, e *Error) {
	v := url.Values{"error": {e.Code}}
	if e.Description != "" {
		v.Set("error_description", ErrorDescription(e.Description))
	}
	s.redirect(w, r, ar, v)
}

// Authorize serves GET and POST /oauth2/authorize (RFC 6749 §3.1): it
// validates the request, signs the user in, asks for consent, and sends
// an authorization code back to the client. A client may send the request
// as a form post too (OIDC Core §3.1.2.1).
func (s *Server) Authorize() http.Handler {
	return s.pages.ProtectEntry(http.HandlerFunc(s.authorize))
}

// entryForm reads a request to an endpoint that other sites send browsers
// to (authorization, logout): a GET, or a POST that is such a request sent
// as a form, or, if it carries a CSRF token or a decision, the endpoint's
// own form (consent, sign-out question), whose CSRF token must check. It
// reports whether the request is the endpoint's own form; when ok is
// false it has answered. Parameters that do not parse (repeated,
// oversized, too many) are answered by malformed if it is not nil, with
// the raw parameters and the error, else on an error page.
func (s *Server) entryForm(w http.ResponseWriter, r *http.Request, malformed func(raw string, err *Error)) (f form, submitted, ok bool) {
	raw, err := readParams(w, r)
	if err == nil {
		f, err = parseParams(raw)
		var oe *Error
		if err != nil && malformed != nil && errors.As(err, &oe) {
			malformed(raw, oe)
			return nil, false, false
		}
	}
	if err != nil {
		s.showError(w, err)
		return nil, false, false
	}
	submitted = r.Method == http.MethodPost && (f.get("csrf") != "" || f.get("decision") != "")
	if submitted && s.pages.CheckCSRF(r) != nil {
		s.refuseForm(w)
		return nil, false, false
	}
	return f, submitted, true
}

// refuseForm answers a form whose CSRF token does not check.
func (s *Server) refuseForm(w http.ResponseWriter) {
	s.message(w, http.StatusForbidden, "Request refused", "The form could not be verified. Go back and try again.")
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	params, submitted, ok := s.entryForm(w, r, func(raw string, err *Error) { s.malformedAuthRequest(w, r, raw, err) })
	if !ok {
		return
	}
	ctx := r.Context()
	decision := ""
	if submitted {
		decision = params.get("decision")
	}
	f := authRequestOf(params)
	ar, err := s.parseAuthRequest(ctx, f)
	if err != nil {
		var oe *Error
		if ar != nil && errors.As(err, &oe) {
			s.redirectError(w, r, ar, oe)
			return
		}
		s.showError(w, err)
		return
	}
	// The request travels on through the login form's return_to and the
	// consent form's fields, which the pages bound.
	if len(withoutLoginDemands(f)) > web.MaxFieldBytes-len("/oauth2/authorize?") {
		s.redirectError(w, r, ar, badRequest("the request is too large"))
		return
	}
	user, sess, ok := s.sessionUser(ctx, r)
	fresh := ok && (ar.maxAge < 0 || s.cfg.Now().Sub(sess.AuthTime) <= time.Duration(ar.maxAge)*time.Second)
	// An id_token_hint naming another user than the signed-in one asks for
	// that user's sign-in (OIDC Core §3.1.2.1).
	otherUser := ok && ar.hintSubject != "" && ar.hintSubject != user.ID
	if !fresh || otherUser || ar.prompt["login"] || ar.prompt["select_account"] {
		if ar.prompt["none"] {
			s.redirectError(w, r, ar, oerr(http.StatusBadRequest, errLoginRequired, "the user is not signed in"))
			return
		}
		s.showLogin(w, r, "/oauth2/authorize?"+withoutLoginDemands(f), ar.client.Name, "", "", http.StatusOK)
		return
	}
	switch decision {
	case "deny":
		s.audit(ctx, s.event(tokens.Actor{ID: user.ID, RemoteAddr: s.remote(r)}, "consent.deny", ar.client.ID, map[string]any{"scopes": ar.scopes, "api": ar.api.ID}))
		s.redirectError(w, r, ar, oerr(http.StatusBadRequest, errAccessDenied, "the user denied the request"))
		return
	case "allow":
		if err := s.rememberConsent(ctx, r, user, ar); err != nil {
			s.showError(w, err)
			return
		}
	case "":
		needed, err := s.needsConsent(ctx, user, ar)
		if err != nil {
			s.showError(w, err)
			return
		}
		if needed {
			if ar.prompt["none"] {
				s.redirectError(w, r, ar, oerr(http.StatusBadRequest, errConsentRequired, "the user has not consented to this request"))
				return
			}
			s.showConsent(w, r, user, ar)
			return
		}
	default:
		s.message(w, http.StatusBadRequest, "Invalid request", "The form was not understood.")
		return
	}
	code, err := s.issueCode(ctx, user, sess, ar)
	if err != nil {
		s.log.Error("oauth: issue code", "err", err)
		s.redirectError(w, r, ar, &Error{Code: errServerError, Description: "internal error", Status: 500})
		return
	}
	s.redirect(w, r, ar, url.Values{"code": {code}})
}

// malformedAuthRequest answers an authorization request whose parameters
// did not parse with err: at the client's redirect URI (RFC 6749
// §4.1.2.1: a repeated or malformed parameter is invalid_request, and
// several resources are invalid_target) when client_id and redirect_uri
// (if sent) are each there once and valid, and on a page otherwise, as for
// any request that cannot be answered at a redirect URI.
func (s *Server) malformedAuthRequest(w http.ResponseWriter, r *http.Request, raw string, err *Error) {
	vals, perr := url.ParseQuery(raw)
	target := form{}
	for _, k := range []string{"client_id", "redirect_uri", "state"} {
		switch v := vals[k]; {
		case len(v) == 1 && v[0] != "" && len(v[0]) <= MaxParamLen:
			target[k] = v
		case len(v) > 0 && k != "state":
			perr = err // sent, but not one usable value: no known target
		}
	}
	if perr != nil {
		s.showError(w, err)
		return
	}
	ar, terr := s.authTarget(r.Context(), target)
	if terr != nil {
		s.showError(w, terr)
		return
	}
	s.redirectError(w, r, ar, err)
}

// withoutLoginDemands re-encodes an authorization request for the login
// form's return_to, without what signing in satisfies: prompt=login or
// select_account, max_age (the sign-in is as recent as can be, but with
// max_age=0 any time after it would be too old, and the user would be sent
// back to the login page forever), and id_token_hint (the user chose whom
// to sign in as). Without the consent form's fields too.
func withoutLoginDemands(f form) string {
	v := url.Values{}
	for k, vals := range f {
		switch k {
		case "decision", "csrf", "max_age", "id_token_hint":
			continue
		case "prompt":
			var keep []string
			for p := range strings.FieldsSeq(vals[0]) {
				if p != "login" && p != "select_account" {
					keep = append(keep, p)
				}
			}
			if len(keep) > 0 {
				v.Set(k, strings.Join(keep, " "))
			}
			continue
		}
		v[k] = vals
	}
	return v.Encode()
}

// sessionUser returns the signed-in user, if the session is valid, the
// user exists and is enabled, nothing ended the user's sessions since this
// one began (users.SessionValid), nor since it read the user to sign in
// (users.SessionGeneration).
func (s *Server) sessionUser(ctx context.Context, r *http.Request) (*store.User, web.Session, bool) {
	sess, ok := s.pages.Session(r)
	if !ok {
		return nil, sess, false
	}
	u, err := s.store.GetUser(ctx, sess.UserID)
	if err != nil || !users.SessionValid(u, sess.AuthTime) || sess.Generation != users.SessionGeneration(u) {
		return nil, sess, false
	}
	return &u, sess, true
}

func (s *Server) needsConsent(ctx context.Context, u *store.User, ar *authRequest) (bool, error) {
	if ar.prompt["consent"] {
		return true, nil
	}
	c, err := s.store.GetConsent(ctx, u.ID, ar.client.ID, ar.api.ID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, sc := range ar.scopes {
		if !slices.Contains(c.Scopes, sc) {
			return true, nil
		}
	}
	return false, nil
}

// rememberConsent records that the user allowed the request's scopes (in
// addition to any allowed before).
func (s *Server) rememberConsent(ctx context.Context, r *http.Request, u *store.User, ar *authRequest) error {
	return s.putConsent(ctx, tokens.Actor{ID: u.ID, RemoteAddr: s.remote(r)}, ar.client.ID, ar.api.ID, ar.scopes)
}

// putConsent records that user by allowed client scopes of api, in
// addition to any allowed before: on the consent page, and when approving
// a device, so that every client holding what a user gave is listed where
// it can be withdrawn (GET /v1/users/{id}/consents).
func (s *Server) putConsent(ctx context.Context, by tokens.Actor, clientID, apiID string, scopes []string) error {
	now := s.now()
	c := store.Consent{UserID: by.ID, ClientID: clientID, APIID: apiID, Scopes: slices.Clone(scopes), CreatedAt: now, UpdatedAt: now}
	if prev, err := s.store.GetConsent(ctx, by.ID, clientID, apiID); err == nil {
		c.CreatedAt = prev.CreatedAt
		for _, sc := range prev.Scopes {
			if !slices.Contains(c.Scopes, sc) {
				c.Scopes = append(c.Scopes, sc)
			}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return s.store.PutConsent(ctx, c, s.event(by, "consent.grant", clientID, map[string]any{"api": apiID, "scopes": scopes}))
}

// issueCode stores a new authorization code bound to the client, redirect
// URI, PKCE challenge and nonce, and returns it.
func (s *Server) issueCode(ctx context.Context, u *store.User, sess web.Session, ar *authRequest) (string, error) {
	code, err := tokenfmt.Generate(tokenfmt.PrefixAuthCode)
	if err != nil {
		return "", err
	}
	now := s.now()
	ac := store.AuthCode{Hash: tokenfmt.HashOf(code), ClientID: ar.client.ID, UserID: u.ID, RedirectURI: ar.givenURI,
		APIID: ar.api.ID, Scopes: ar.scopes, Nonce: ar.nonce, AuthTime: sess.AuthTime.UTC().Truncate(time.Millisecond),
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.CodeTTL)}
	if ar.challenge != "" {
		ac.Challenge, ac.ChallengeMethod = ar.challenge, "S256"
	}
	if err := s.store.CreateAuthCode(ctx, ac); err != nil {
		return "", err
	}
	return code, nil
}

func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, u *store.User, ar *authRequest) {
	var hidden []web.Field
	keys := make([]string, 0, len(ar.params))
	for k := range ar.params {
		if k != "decision" && k != "csrf" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		hidden = append(hidden, web.Field{Name: k, Value: ar.params.get(k)})
	}
	s.pages.Consent(w, http.StatusOK, web.ConsentPage{
		ClientName: ar.client.Name, APIName: ar.api.Name, Scopes: ar.scopes, ScopeDescriptions: scopeDescriptions(ar.api), Username: u.Username,
		Action: "/oauth2/authorize", Hidden: hidden, CSRF: s.pages.CSRFToken(w, r),
	})
}

func (s *Server) showLogin(w http.ResponseWriter, r *http.Request, returnTo, clientName, username, errMsg string, status int) {
	s.pages.Login(w, status, web.LoginPage{Action: "/login", ReturnTo: returnTo, ClientName: clientName,
		Username: username, Error: errMsg, CSRF: s.pages.CSRFToken(w, r)})
}

func (s *Server) message(w http.ResponseWriter, status int, title, msg string) {
	s.pages.Message(w, status, web.MessagePage{Title: title, Message: msg})
}

// showError renders an error page for errors that cannot go to a client.
func (s *Server) showError(w http.ResponseWriter, err error) {
	var pe *pageError
	var oe *Error
	switch {
	case errors.As(err, &pe):
		s.message(w, pe.status, pe.title, pe.message)
	case errors.As(err, &oe) && oe.Status < 500:
		s.message(w, oe.Status, "Invalid request", oe.Description)
	default:
		s.log.Error("oauth page", "err", err)
		s.failed()
		s.message(w, http.StatusInternalServerError, "Something went wrong", "Jeton could not complete the request. Try again later.")
	}
}

// safeReturnTo reports whether a login form's return_to is one of our own
// pages, so the login form cannot be turned into an open redirect.
func safeReturnTo(rt string) bool {
	if len(rt) > MaxFormBytes || strings.ContainsAny(rt, "\\\r\n") {
		return false
	}
	path, _, _ := strings.Cut(rt, "?")
	return path == "/oauth2/authorize" || path == "/device"
}

// Login serves GET and POST /login: the sign-in form.
func (s *Server) Login() http.Handler {
	return s.pages.Protect(http.HandlerFunc(s.login))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	f, err := parseForm(w, r)
	if err != nil {
		s.showError(w, err)
		return
	}
	returnTo := f.get("return_to")
	if !safeReturnTo(returnTo) {
		returnTo = "/device"
	}
	if r.Method != http.MethodPost {
		s.showLogin(w, r, returnTo, "", "", "", http.StatusOK)
		return
	}
	if err := s.pages.CheckCSRF(r); err != nil {
		s.refuseForm(w)
		return
	}
	username, password := f.get("username"), f.get("password")
	if username == "" || password == "" {
		s.showLogin(w, r, returnTo, "", username, "Enter your username and password.", http.StatusBadRequest)
		return
	}
	// The session begins when the password check does: a password reset
	// or a disable that commits while it runs ends this session too.
	started := s.cfg.Now()
	u, err := s.users.Authenticate(r.Context(), username, password, s.clientIP(r))
	switch {
	case errors.Is(err, users.ErrThrottled):
		s.showLogin(w, r, returnTo, "", username, "Too many failed attempts. Wait a few minutes and try again.", http.StatusTooManyRequests)
		return
	case errors.Is(err, users.ErrBadCredentials):
		s.showLogin(w, r, returnTo, "", username, "Wrong username or password.", http.StatusUnauthorized)
		return
	case err != nil:
		s.showError(w, err)
		return
	}
	// The generation is the user's as read for the password check: a
	// reset committing meanwhile moves it on, ending this session.
	s.pages.StartSession(w, web.Session{UserID: u.ID, AuthTime: started, Generation: users.SessionGeneration(u)})
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// Logout serves POST /logout: it ends the session.
func (s *Server) Logout() http.Handler {
	return s.pages.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.pages.CheckCSRF(r); err != nil {
			s.refuseForm(w)
			return
		}
		if user, _, ok := s.sessionUser(r.Context(), r); ok {
			s.signOut(w, r, user, "")
		} else {
			s.pages.EndSession(w)
		}
		s.message(w, http.StatusOK, "Signed out", "You are signed out of Jeton.")
	}))
}
