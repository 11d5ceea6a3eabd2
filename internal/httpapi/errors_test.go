package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jetonhq/jeton/internal/store"
)

func TestPublicErrorStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{fmt.Errorf("sqlstore: get token: %w", store.ErrNotFound), http.StatusNotFound, "not_found", ""},
		{fmt.Errorf("sqlstore: create api: %w", store.ErrAlreadyExists), http.StatusConflict, "conflict", ""},
		{fmt.Errorf("sqlstore: create token: lock timeout (%w)", store.ErrBusy), http.StatusServiceUnavailable, "busy", "1"},
		{fmt.Errorf("sqlstore: rotate token: %w", store.ErrTooManySecrets), http.StatusConflict, "too_many_secrets", ""},
		{errors.New("disk on fire"), http.StatusInternalServerError, "internal", ""},
	}
	for _, tt := range tests {
		pe := publicError(tt.err)
		w := httptest.NewRecorder()
		writeError(w, pe)
		if w.Code != tt.status || pe.Code != tt.code || w.Header().Get("Retry-After") != tt.retryAfter {
			t.Errorf("%v: %d %s (Retry-After %q), want %d %s (Retry-After %q)",
				tt.err, w.Code, pe.Code, w.Header().Get("Retry-After"), tt.status, tt.code, tt.retryAfter)
		}
	}
}
