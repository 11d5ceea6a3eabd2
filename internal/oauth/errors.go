package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/jetonhq/jeton/internal/web"
)

// Error is an OAuth 2.0 error response (RFC 6749 §5.2, RFC 6750 §3.1,
// RFC 8628 §3.5, RFC 7009 §2.2.1). Err, the cause, is logged and never sent.
// Code is empty only for a 401 of a protected resource to a request that
// sent no access token, whose challenge names no error (RFC 6750 §3.1).
type Error struct {
	Code        string
	Description string
	Status      int
	Err         error
	// bearer marks an error of a protected resource (userinfo): it is
	// answered with a Bearer challenge whatever its status (RFC 6750 §3).
	bearer bool
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("oauth: %s: %s: %v", e.Code, e.Description, e.Err)
	}
	return "oauth: " + e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

// RFC 6749 §5.2 error codes and the ones later RFCs added.
const (
	errInvalidRequest         = "invalid_request"
	errInvalidClient          = "invalid_client"
	errInvalidGrant           = "invalid_grant"
	errUnauthorizedClient     = "unauthorized_client"
	errUnsupportedGrantType   = "unsupported_grant_type"
	errInvalidScope           = "invalid_scope"
	errInvalidTarget          = "invalid_target" // RFC 8707 §2
	errAccessDenied           = "access_denied"
	errServerError            = "server_error"
	errUnsupportedResponse    = "unsupported_response_type"
	errLoginRequired          = "login_required"            // OIDC Core §3.1.2.6
	errConsentRequired        = "consent_required"          // OIDC Core §3.1.2.6
	errRequestNotSupported    = "request_not_supported"     // OIDC Core §3.1.2.6
	errRequestURINotSupported = "request_uri_not_supported" // OIDC Core §3.1.2.6
	errAuthorizationPending   = "authorization_pending"
	errSlowDown               = "slow_down"
	errExpiredToken           = "expired_token"
	errInvalidToken           = "invalid_token"      // RFC 6750 §3.1
	errInsufficientScope      = "insufficient_scope" // RFC 6750 §3.1
	errUnsupportedTokenType   = "unsupported_token_type"
)

func oerr(status int, code, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Description: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Error {
	return oerr(http.StatusBadRequest, errInvalidRequest, format, args...)
}

func invalidGrant(format string, args ...any) *Error {
	return oerr(http.StatusBadRequest, errInvalidGrant, format, args...)
}

func invalidClient(format string, args ...any) *Error {
	return oerr(http.StatusUnauthorized, errInvalidClient, format, args...)
}

// bearerError returns err, if it is an *Error, marked as an error of a
// protected resource.
func bearerError(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	be := *e
	be.bearer = true
	return &be
}

// handler is an endpoint that returns its error; serve writes it.
type handler func(w http.ResponseWriter, r *http.Request) error

// serve adapts a handler for the JSON endpoints: every error becomes an
// RFC 6749 §5.2 response with Cache-Control: no-store, internal errors are
// logged and answered with server_error, and panics are recovered.
func (s *Server) serve(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic in oauth handler", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				writeError(w, &Error{Code: errServerError, Description: "internal error", Status: 500})
			}
		}()
		if err := h(w, r); err != nil {
			if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
				return
			}
			writeError(w, s.public(err))
		}
	})
}

// public maps any error to what the client may see, logging causes.
func (s *Server) public(err error) *Error {
	var oe *Error
	if errors.As(err, &oe) {
		if oe.Err != nil {
			s.log.Debug("oauth request refused", "code", oe.Code, "err", oe.Err)
		}
		return oe
	}
	s.log.Error("oauth request failed", "err", err)
	s.failed()
	return &Error{Code: errServerError, Description: "internal error", Status: http.StatusInternalServerError}
}

// failed counts a request that failed for a reason of the server's.
func (s *Server) failed() {
	if s.cfg.OnError != nil {
		s.cfg.OnError("oauth")
	}
}

func writeError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	switch {
	case e.Code == errInvalidClient:
		// RFC 6749 §5.2: 401 with the header scheme the endpoint takes for
		// client authentication, Basic, whichever way the client tried.
		h.Set("WWW-Authenticate", `Basic realm="jeton", charset="UTF-8"`)
	case e.bearer || e.Status == http.StatusUnauthorized || e.Code == errInsufficientScope:
		// RFC 6750 §3: protected resources (userinfo) answer with Bearer,
		// naming no error to a request that sent no token (§3.1).
		challenge := `Bearer realm="jeton"`
		if e.Code != "" {
			challenge += `, error="` + e.Code + `"`
		}
		h.Set("WWW-Authenticate", challenge)
	}
	code := e.Code
	if code == "" {
		// The body still names something, as verify.WriteError's does.
		code = "unauthorized"
	}
	body := map[string]string{"error": code}
	if e.Description != "" {
		body["error_description"] = ErrorDescription(e.Description)
	}
	writeJSON(w, e.Status, body)
}

// ErrorDescription returns s fit to send as an error_description, which
// RFC 6749 §5.2 limits to printable ASCII without '"' and '\': a double
// quote becomes an apostrophe, a backslash a slash, an ellipsis three
// dots, and any other character outside the set a question mark.
func ErrorDescription(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteByte('\'')
		case r == '\\':
			b.WriteByte('/')
		case r == '…':
			b.WriteString("...")
		case r < 0x20 || r > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// writeJSON writes v with the headers every OAuth answer carries
// (RFC 6749 §5.1: Cache-Control: no-store, Pragma: no-cache).
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("oauth: encode response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}

// Bounds on requests.
const (
	// MaxFormBytes bounds a form body.
	MaxFormBytes = 16 << 10
	// MaxParamLen bounds one parameter's value.
	MaxParamLen = 4096
	maxParams   = 40
)

// form is a parsed, bounded request: query (GET) or form body (POST)
// parameters, each present at most once (RFC 6749 §3.1, §3.2).
type form url.Values

// parseForm reads the parameters of r. For POST the body must be
// application/x-www-form-urlencoded and the query is ignored.
func parseForm(w http.ResponseWriter, r *http.Request) (form, error) {
	raw, err := readParams(w, r)
	if err != nil {
		return nil, err
	}
	return parseParams(raw)
}

// readParams reads the URL-encoded parameters of r, unparsed: the query of
// a GET, the bounded body of a POST.
func readParams(w http.ResponseWriter, r *http.Request) (string, error) {
	var raw string
	if r.Method == http.MethodPost {
		if !isFormBody(r) {
			return "", badRequest("the body must be application/x-www-form-urlencoded")
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				return "", oerr(http.StatusRequestEntityTooLarge, errInvalidRequest, "the request body is over %d bytes", MaxFormBytes)
			}
			return "", badRequest("the request body could not be read")
		}
		raw = string(b)
	} else {
		raw = r.URL.RawQuery
		if len(raw) > MaxFormBytes {
			return "", badRequest("the query is over %d bytes", MaxFormBytes)
		}
	}
	return raw, nil
}

// isFormBody reports whether r's Content-Type is
// application/x-www-form-urlencoded, with or without parameters.
func isFormBody(r *http.Request) bool {
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded")
}

// parseParams parses URL-encoded parameters, refusing repeats, too many
// parameters and oversized values. Empty values count as absent (RFC 6749
// §3.1), and so do parameters without a name. resource is the one
// parameter that may be repeated (RFC 8707 §2); the endpoints that read it
// answer several with invalid_target (requestedAPI).
func parseParams(raw string) (form, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("the parameters are not valid URL encoding")
	}
	if len(vals) > maxParams {
		return nil, badRequest("too many parameters")
	}
	out := form{}
	for k, v := range vals {
		if k == "" {
			continue
		}
		if len(v) > 1 && k != "resource" {
			return nil, badRequest("parameter %s is repeated", safeName(k))
		}
		limit := paramLimit(k)
		v = slices.DeleteFunc(v, func(s string) bool { return s == "" })
		for _, s := range v {
			if len(s) > limit {
				return nil, badRequest("parameter %s is over %d bytes", safeName(k), limit)
			}
		}
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out, nil
}

// paramLimit returns the bound on the value of parameter k.
func paramLimit(k string) int {
	switch k {
	case "return_to":
		// The sign-in form carries a whole authorization request,
		// which Authorize bounds by the page's field size.
		return web.MaxFieldBytes
	case "access_token":
		// userinfo takes one in a form body as in its header.
		return maxBearerLen
	}
	return MaxParamLen
}

// safeName returns a parameter name fit to echo in an error description.
func safeName(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '?'
	}, k)
}

func (f form) get(k string) string {
	if v := f[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// logValue keeps request forms out of logs by accident.
func (f form) LogValue() slog.Value { return slog.StringValue("[form]") }
