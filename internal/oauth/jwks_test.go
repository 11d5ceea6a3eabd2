package oauth_test

import (
	"net/http"
	"testing"
)

// TestJWKSConditionalGet: If-None-Match is compared with the weak
// comparison function and may list several entity tags or be "*"
// (RFC 9110 §13.1.2); a client or cache that holds the current JWKS
// must get 304 Not Modified.
func TestJWKSConditionalGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	resp, err := http.Get(e.url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	mustf(t, etag != "", "no ETag")
	for _, inm := range []string{etag, `"stale", ` + etag, "W/" + etag, "*"} {
		req, _ := http.NewRequest("GET", e.url+"/.well-known/jwks.json", nil)
		req.Header.Set("If-None-Match", inm)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match: %s -> %d, want 304", inm, r.StatusCode)
		}
	}
}
