package web

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Bounds on page data. A page that breaks one is not rendered: the
// method answers with a generic 500 page and returns [ErrInvalidPage].
// Display texts (names, messages) are not refused but shortened.
const (
	MaxFields     = 64      // hidden fields in one form
	MaxFieldBytes = 8 << 10 // one hidden field's name plus value, and a login's ReturnTo
	MaxScopes     = 100     // scopes listed on one page
	MaxScopeBytes = 256     // one scope string
	maxURLBytes   = 2048    // a form's Action
	maxCSRFBytes  = 128
)

// Lengths at which display texts are cut, in characters.
const (
	nameRunes    = 120 // client, API and user names
	codeRunes    = 32  // a device user code
	titleRunes   = 120
	textRunes    = 2000 // error and message texts
	scopeDescLen = 300
)

// Field is a hidden form field that a handler carries through a form,
// e.g. the parameters of an authorization request on the consent page.
type Field struct {
	Name, Value string
}

// LoginPage is the sign-in form. It posts username, password, return_to
// and csrf to Action.
type LoginPage struct {
	Action     string // where the form posts; default "/login"
	ReturnTo   string // hidden return_to: where to go once signed in; the handler validates it
	ClientName string // the application asking, if any: "to continue to …"
	Username   string // prefilled after a failed attempt
	Error      string // shown above the form, e.g. "Wrong username or password."
	CSRF       string // from [Pages.CSRFToken]; required
}

// ConsentPage asks a signed-in user whether a client may access an API
// on their behalf with the listed scopes. The form posts the Hidden
// fields, csrf, and decision=allow or decision=deny to Action.
type ConsentPage struct {
	ClientName string
	APIName    string   // if empty, "your account"
	Scopes     []string // shown as they are, in this order
	// ScopeDescriptions optionally explains scopes in words, by scope.
	ScopeDescriptions map[string]string
	Username          string  // the signed-in user, with a "Not you? Sign out" form
	Action            string  // where the form posts; default "/oauth2/authorize"
	Hidden            []Field // carried through the form; not "csrf" nor "decision"
	CSRF              string  // from [Pages.CSRFToken]; required
}

// DeviceEntryPage asks a signed-in user for the code their device shows
// (RFC 8628 §3.3). The form posts user_code and csrf to Action.
type DeviceEntryPage struct {
	Action   string // where the form posts; default "/device"
	UserCode string // prefilled, e.g. from ?user_code=
	Username string // the signed-in user, with a "Not you? Sign out" form
	Error    string // e.g. "That code is not valid or has expired."
	CSRF     string // from [Pages.CSRFToken]; required
}

// DeviceConfirmPage asks a signed-in user whether the device showing
// UserCode may access an API on their behalf (RFC 8628 §5.4: the user
// compares the code). The form posts the Hidden fields, csrf, and
// decision=allow or decision=deny to Action.
type DeviceConfirmPage struct {
	ClientName        string
	APIName           string // if empty, "your account"
	Scopes            []string
	ScopeDescriptions map[string]string // optional, by scope
	UserCode          string            // shown for comparison, e.g. "BCDF-GHJK"
	Username          string            // the signed-in user, with a "Not you? Sign out" form
	Action            string            // where the form posts; default "/device"
	Hidden            []Field           // carried through the form; not "csrf" nor "decision"
	CSRF              string            // from [Pages.CSRFToken]; required
}

// LogoutPage asks a signed-in user whether to sign out (OpenID Connect
// RP-Initiated Logout 1.0 §2: the provider asks when it cannot tell that
// the request comes from the user's own application). The form posts the
// Hidden fields, csrf, and decision=signout or decision=stay to Action.
type LogoutPage struct {
	ClientName string  // the application asking, if known
	Username   string  // the signed-in user
	Action     string  // where the form posts; default "/oauth2/logout"
	Hidden     []Field // carried through the form; not "csrf" nor "decision"
	CSRF       string  // from [Pages.CSRFToken]; required
}

// MessagePage tells the user an outcome or an error, e.g. "You may close
// this window" or "This link is invalid or expired". It has no form.
type MessagePage struct {
	Title   string
	Message string
}

// Login writes the sign-in page with status (0 means 200).
func (p *Pages) Login(w http.ResponseWriter, status int, d LoginPage) error {
	if err := checkForm(d.CSRF, d.Action, nil); err != nil {
		return p.fail(w, err)
	}
	if len(d.ReturnTo) > MaxFieldBytes {
		return p.fail(w, fmt.Errorf("%w: return_to over %d bytes", ErrInvalidPage, MaxFieldBytes))
	}
	d.Action = orDefault(d.Action, "/login")
	d.ClientName, d.Username = clip(d.ClientName, nameRunes), clip(d.Username, nameRunes)
	d.Error = clip(d.Error, textRunes)
	return p.render(w, status, "login", "Sign in", d)
}

// Consent writes the consent page with status (0 means 200).
func (p *Pages) Consent(w http.ResponseWriter, status int, d ConsentPage) error {
	if err := checkForm(d.CSRF, d.Action, d.Hidden); err != nil {
		return p.fail(w, err)
	}
	descs, err := checkScopes(d.Scopes, d.ScopeDescriptions)
	if err != nil {
		return p.fail(w, err)
	}
	d.ScopeDescriptions = descs
	d.Action = orDefault(d.Action, "/oauth2/authorize")
	d.ClientName = orDefault(clip(d.ClientName, nameRunes), "An application")
	d.APIName, d.Username = clip(d.APIName, nameRunes), clip(d.Username, nameRunes)
	return p.render(w, status, "consent", "Allow access?", d)
}

// DeviceEntry writes the device code entry page with status (0 means 200).
func (p *Pages) DeviceEntry(w http.ResponseWriter, status int, d DeviceEntryPage) error {
	if err := checkForm(d.CSRF, d.Action, nil); err != nil {
		return p.fail(w, err)
	}
	d.Action = orDefault(d.Action, "/device")
	d.UserCode, d.Username = clip(d.UserCode, codeRunes), clip(d.Username, nameRunes)
	d.Error = clip(d.Error, textRunes)
	return p.render(w, status, "device_entry", "Connect a device", d)
}

// DeviceConfirm writes the device confirmation page with status (0 means
// 200).
func (p *Pages) DeviceConfirm(w http.ResponseWriter, status int, d DeviceConfirmPage) error {
	if err := checkForm(d.CSRF, d.Action, d.Hidden); err != nil {
		return p.fail(w, err)
	}
	descs, err := checkScopes(d.Scopes, d.ScopeDescriptions)
	if err != nil {
		return p.fail(w, err)
	}
	d.ScopeDescriptions = descs
	d.Action = orDefault(d.Action, "/device")
	d.ClientName = orDefault(clip(d.ClientName, nameRunes), "An application")
	d.APIName, d.Username = clip(d.APIName, nameRunes), clip(d.Username, nameRunes)
	d.UserCode = clip(d.UserCode, codeRunes)
	return p.render(w, status, "device_confirm", "Connect a device", d)
}

// Logout writes the sign-out confirmation page with status (0 means 200).
func (p *Pages) Logout(w http.ResponseWriter, status int, d LogoutPage) error {
	if err := checkForm(d.CSRF, d.Action, d.Hidden); err != nil {
		return p.fail(w, err)
	}
	d.Action = orDefault(d.Action, "/oauth2/logout")
	d.ClientName, d.Username = clip(d.ClientName, nameRunes), clip(d.Username, nameRunes)
	return p.render(w, status, "logout", "Sign out?", d)
}

// Message writes a message page with status (0 means 200).
func (p *Pages) Message(w http.ResponseWriter, status int, d MessagePage) error {
	d.Title = orDefault(clip(d.Title, titleRunes), p.cfg.Product)
	d.Message = clip(d.Message, textRunes)
	return p.render(w, status, "message", d.Title, d)
}

// checkForm checks the bounds shared by every form.
func checkForm(csrf, action string, hidden []Field) error {
	switch {
	case csrf == "":
		return fmt.Errorf("%w: no CSRF token", ErrInvalidPage)
	case len(csrf) > maxCSRFBytes:
		return fmt.Errorf("%w: CSRF token over %d bytes", ErrInvalidPage, maxCSRFBytes)
	case len(action) > maxURLBytes:
		return fmt.Errorf("%w: form action over %d bytes", ErrInvalidPage, maxURLBytes)
	case len(hidden) > MaxFields:
		return fmt.Errorf("%w: %d hidden fields, at most %d", ErrInvalidPage, len(hidden), MaxFields)
	}
	for i, f := range hidden {
		switch {
		case f.Name == "":
			return fmt.Errorf("%w: hidden field %d has no name", ErrInvalidPage, i)
		case f.Name == CSRFField || f.Name == "decision":
			return fmt.Errorf("%w: hidden field %q is reserved", ErrInvalidPage, f.Name)
		case len(f.Name)+len(f.Value) > MaxFieldBytes:
			return fmt.Errorf("%w: hidden field %d over %d bytes", ErrInvalidPage, i, MaxFieldBytes)
		}
	}
	return nil
}

// checkScopes checks the bounds on scopes and returns the descriptions of
// the listed scopes, shortened.
func checkScopes(scopes []string, descs map[string]string) (map[string]string, error) {
	if len(scopes) > MaxScopes {
		return nil, fmt.Errorf("%w: %d scopes, at most %d", ErrInvalidPage, len(scopes), MaxScopes)
	}
	var out map[string]string
	for i, s := range scopes {
		if len(s) > MaxScopeBytes {
			return nil, fmt.Errorf("%w: scope %d over %d bytes", ErrInvalidPage, i, MaxScopeBytes)
		}
		if d := descs[s]; d != "" {
			if out == nil {
				out = make(map[string]string)
			}
			out[s] = clip(d, scopeDescLen)
		}
	}
	return out, nil
}

// clip shortens s to at most n characters, marking the cut with an
// ellipsis, and replaces invalid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
