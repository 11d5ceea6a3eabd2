package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/web"
)

// logoutRequest is a validated RP-initiated logout request (OpenID Connect
// RP-Initiated Logout 1.0 §2).
type logoutRequest struct {
	client      *store.Client // named by the ID token hint or client_id; nil if neither
	hintSubject string        // the user of a valid id_token_hint; "" without one
	returnTo    string        // a registered post_logout_redirect_uri; "" for none
	state       string
}

// hintClaims are the claims of an id_token_hint that logout looks at.
type hintClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
}

// verifyHint checks an id_token_hint: an ID token this server signed, by a
// key still published, for its issuer. It may have expired: a hint only
// names the user (OIDC Core §3.1.2.1, RP-Initiated Logout §2).
func (s *Server) verifyHint(hint string) (hintClaims, error) {
	var c hintClaims
	payload, err := s.keys.Verify(hint, typIDToken)
	if err == nil {
		err = json.Unmarshal(payload, &c)
	}
	if err == nil && (c.Issuer != s.cfg.Issuer || c.Subject == "" || c.Audience == "") {
		err = errors.New("oauth: id_token_hint of another issuer, or without sub or aud")
	}
	return c, err
}

// parseLogoutRequest validates the parameters of a logout request. Every
// failure is a *pageError: nothing goes back to an address that was not
// verified (§4).
func (s *Server) parseLogoutRequest(ctx context.Context, f form) (*logoutRequest, error) {
	lr := &logoutRequest{state: f.get("state")}
	clientID := f.get("client_id")
	if hint := f.get("id_token_hint"); hint != "" {
		c, err := s.verifyHint(hint)
		if err != nil {
			return nil, &pageError{http.StatusBadRequest, "Invalid sign-out request",
				"The application sent an ID token that Jeton did not issue or no longer recognises. You are still signed in to Jeton."}
		}
		if clientID != "" && clientID != c.Audience {
			return nil, &pageError{http.StatusBadRequest, "Invalid sign-out request",
				"The application's ID token was issued to another application. You are still signed in to Jeton."}
		}
		clientID, lr.hintSubject = c.Audience, c.Subject
	}
	if clientID != "" {
		e, err := s.client(ctx, clientID)
		switch {
		case err == nil:
			c := e.client
			lr.client = &c
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	if uri := f.get("post_logout_redirect_uri"); uri != "" {
		// Exact match against the client's registered addresses (§3).
		if lr.client == nil || !lr.client.DisabledAt.IsZero() || !slices.Contains(lr.client.PostLogoutRedirectURIs, uri) {
			return nil, &pageError{http.StatusBadRequest, "Invalid sign-out request",
				"The application asked to send you to an address it has not registered for signing out. You are still signed in to Jeton."}
		}
		lr.returnTo = uri
	}
	return lr, nil
}

// EndSession serves GET and POST /oauth2/logout, the end_session_endpoint
// of OpenID Connect RP-Initiated Logout 1.0: an application sends the user
// here to sign out of Jeton too.
//
// The session ends at once when the request carries an id_token_hint
// naming the signed-in user; otherwise the user is asked (§2: the request
// may come from anywhere, and a forged one must not sign anyone out).
// Afterwards the browser goes to the post_logout_redirect_uri, with the
// state, if the client registered it (§3), or sees a "signed out" page.
func (s *Server) EndSession() http.Handler {
	return s.pages.ProtectEntry(http.HandlerFunc(s.endSession))
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	f, submitted, ok := s.entryForm(w, r, nil)
	if !ok {
		return
	}
	ctx := r.Context()
	lr, err := s.parseLogoutRequest(ctx, f)
	if err != nil {
		s.showError(w, err)
		return
	}
	user, _, signedIn := s.sessionUser(ctx, r)
	if !signedIn {
		// Nothing to end. (A cookie sent but no longer accepted is left
		// alone too: whatever the request, a logout only ends a session
		// it sees, after asking unless the hint names its user.)
		s.afterLogout(w, r, lr, true)
		return
	}
	decision := ""
	if submitted {
		decision = f.get("decision")
	}
	switch {
	case decision == "stay":
		s.afterLogout(w, r, lr, false)
		return
	case decision == "signout", decision == "" && lr.hintSubject == user.ID:
	case decision == "":
		s.showLogoutConfirm(w, r, user, lr)
		return
	default:
		s.message(w, http.StatusBadRequest, "Invalid request", "The form was not understood.")
		return
	}
	clientID := ""
	if lr.client != nil {
		clientID = lr.client.ID
	}
	s.signOut(w, r, user, clientID)
	s.afterLogout(w, r, lr, true)
}

// signOut ends the browser's session of user and audits it; clientID is
// the application that asked, if any.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request, user *store.User, clientID string) {
	s.pages.EndSession(w)
	var details map[string]any
	if clientID != "" {
		details = map[string]any{"client_id": clientID}
	}
	s.audit(r.Context(), s.event(tokens.Actor{ID: user.ID, RemoteAddr: s.remote(r)}, "user.logout", user.ID, details))
}

// afterLogout sends the browser back to the client, or says where the
// user stands.
func (s *Server) afterLogout(w http.ResponseWriter, r *http.Request, lr *logoutRequest, signedOut bool) {
	if lr.returnTo != "" {
		target, err := url.Parse(lr.returnTo)
		if err != nil { // validated at registration; cannot happen
			s.showError(w, err)
			return
		}
		if lr.state != "" {
			q := target.Query()
			q.Set("state", lr.state)
			target.RawQuery = q.Encode()
		}
		http.Redirect(w, r, target.String(), http.StatusSeeOther)
		return
	}
	if signedOut {
		s.message(w, http.StatusOK, "Signed out", "You are signed out of Jeton. You may close this window.")
		return
	}
	s.message(w, http.StatusOK, "Still signed in", "You are still signed in to Jeton.")
}

// showLogoutConfirm asks the user whether to sign out, carrying the
// request's verified parts through the form.
func (s *Server) showLogoutConfirm(w http.ResponseWriter, r *http.Request, user *store.User, lr *logoutRequest) {
	var hidden []web.Field
	name := ""
	if lr.client != nil {
		hidden = append(hidden, web.Field{Name: "client_id", Value: lr.client.ID})
		name = lr.client.Name
	}
	if lr.returnTo != "" {
		hidden = append(hidden, web.Field{Name: "post_logout_redirect_uri", Value: lr.returnTo})
	}
	if lr.state != "" {
		hidden = append(hidden, web.Field{Name: "state", Value: lr.state})
	}
	s.pages.Logout(w, http.StatusOK, web.LogoutPage{ClientName: name, Username: user.Username, Action: "/oauth2/logout",
		Hidden: hidden, CSRF: s.pages.CSRFToken(w, r)})
}
