// Package httpapi serves Jeton's admin REST API under /v1/, the fast verify
// endpoint, RFC 7662 introspection and RFC 7009 revocation, health checks
// and metrics.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// Error is an error with a public status, code and message. Err, the cause,
// is logged and never sent.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up): when a refused request may succeed.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// publicError maps any error to what the client may see.
func publicError(err error) *Error {
	var he *Error
	if errors.As(err, &he) {
		return he
	}
	var inv *tokens.InvalidError
	switch {
	case errors.As(err, &inv):
		return &Error{Status: http.StatusBadRequest, Code: inv.Code, Message: inv.Message}
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such object"}
	case errors.Is(err, store.ErrAlreadyExists):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: "an object with that name, identifier or secret already exists"}
	case errors.Is(err, store.ErrAPIInUse):
		return &Error{Status: http.StatusConflict, Code: "api_in_use", Message: "the api has live tokens; revoke them or delete with force=true"}
	case errors.Is(err, store.ErrBuiltin):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: "the built-in jeton api cannot be changed that way"}
	case errors.Is(err, store.ErrTooManySecrets):
		return &Error{Status: http.StatusConflict, Code: "too_many_secrets", Message: fmt.Sprintf(
			"the token already has %d replaced secrets in their grace period; rotate with grace_period 0 (ending them all now) or wait until one ends", store.MaxSecretsInGrace)}
	case errors.Is(err, store.ErrBusy):
		return &Error{Status: http.StatusServiceUnavailable, Code: "busy", Message: "the store is busy; nothing was changed, retry shortly", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Err: err}
}

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// adapter turns handlerFuncs into http.Handlers: it writes errors as JSON,
// logs their causes (never a secret: causes come from our own code), and
// turns a panic into a 500.
type adapter struct {
	log     *slog.Logger
	onError func(route string)
}

func (a adapter) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.log.Error("panic in handler", "route", r.Pattern, "panic", p, "stack", string(debug.Stack()))
				writeError(w, &Error{Status: 500, Code: "internal", Message: "internal error"})
			}
		}()
		err := badURLText(r)
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
				// The client went away; nobody is left to answer.
				a.log.Debug("client gone", "route", r.Pattern, "err", err)
				return
			}
			pe := publicError(err)
			if pe.Status >= 500 {
				a.log.Error("request failed", "route", r.Pattern, "err", err)
				if a.onError != nil {
					a.onError(r.Pattern)
				}
			}
			writeError(w, pe)
		}
	})
}

// badURLText refuses a request whose path or query, decoded, is not UTF-8
// or holds a NUL: every ID and filter in them reaches the store, whose
// PostgreSQL text refuses both, and the caller is owed a 400, not a 500.
func badURLText(r *http.Request) error {
	bad := func(s string) bool { return !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 }
	if bad(r.URL.Path) {
		return errorf(http.StatusBadRequest, "invalid_request", "the path is not UTF-8 or holds a NUL character")
	}
	if r.URL.RawQuery == "" {
		return nil
	}
	for k, vs := range r.URL.Query() {
		if bad(k) || slices.ContainsFunc(vs, bad) {
			return errorf(http.StatusBadRequest, "invalid_request", "the query is not UTF-8 or holds a NUL character")
		}
	}
	return nil
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(e.RetryAfter), 10))
	}
	switch e.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="jeton"`)
	case http.StatusServiceUnavailable:
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	writeJSON(w, e.Status, map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}
