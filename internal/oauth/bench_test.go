package oauth_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
)

// BenchmarkClientCredentialsJWT and BenchmarkClientCredentialsOpaque
// measure the token endpoint end to end in one process: an HTTP client
// with keep-alive, client authentication by secret, and an ES256 JWT or a
// durable opaque token. The load benchmark (bench/run.sh) compares the same
// requests with a trivial handler; these track regressions in go test.
func BenchmarkClientCredentialsJWT(b *testing.B) { benchmarkClientCredentials(b, store.FormatJWT) }

func BenchmarkClientCredentialsOpaque(b *testing.B) {
	benchmarkClientCredentials(b, store.FormatOpaque)
}

func benchmarkClientCredentials(b *testing.B, format string) {
	srv := apitest.NewWith(b, apitest.Options{KeyPrePublish: -1})
	c, secret, err := srv.OAuth.CreateClient(context.Background(), oauth.ClientParams{Name: "b", GrantTypes: []string{oauth.GrantClientCredentials},
		APIs: []string{srv.API.ID}, Scopes: []string{"repos:read"}, TokenFormat: format}, tokens.Actor{ID: "b"})
	if err != nil {
		b.Fatal(err)
	}
	body := url.Values{"grant_type": {"client_credentials"}}.Encode()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	// 32 concurrent clients, as in bench/run.sh: durable writes are
	// group-committed, so throughput depends on how many wait together.
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", srv.URL+"/oauth2/token", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(c.ID, secret)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.StatusCode)
			}
		}
	})
}
