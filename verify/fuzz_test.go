package verify_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jetonhq/jeton/verify"
)

// FuzzBearerToken checks the Authorization header parser: it never
// panics, returns only b64token strings within the length bound that occur
// in the header, and fails only with ErrNoToken or ErrMalformed.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{
		"Bearer abc", "bearer a.b.c", "BEARER jtp_abc==", "Bearer  x", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz",
		"Bearer a b", "Bearer a=b", "Bearer ===", "Bearer tök", "Bearer\ttok", "Bearer " + strings.Repeat("a", 9000),
		"", " Bearer x ", "Bearer x\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{h}
		tok, err := verify.BearerToken(r)
		if err != nil {
			var e *verify.Error
			if !errors.As(err, &e) || !(errors.Is(err, verify.ErrNoToken) || errors.Is(err, verify.ErrMalformed)) {
				t.Fatalf("error %#v", err)
			}
			if tok != "" {
				t.Fatalf("token %q with an error", tok)
			}
			if strings.Contains(err.Error(), h) && h != "" && len(h) > 8 {
				t.Fatalf("the header appears in the error %q", err)
			}
			return
		}
		if tok == "" || len(tok) > verify.MaxTokenLen || !strings.Contains(h, tok) {
			t.Fatalf("token %q from %q", tok, h)
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
				t.Fatalf("token %q has byte %q", tok, c)
			}
		}
		if strings.Contains(strings.TrimRight(tok, "="), "=") {
			t.Fatalf("token %q has padding inside", tok)
		}
	})
}
