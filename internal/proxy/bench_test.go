package proxy

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxy is one request through the proxy (a verifier that
// answers from memory) to a trivial upstream, against the same request to
// the upstream alone, with keep-alive connections: the proxy's own cost.
// bench/proxy.sh measures the same with wrk and real tokens.
func BenchmarkProxy(b *testing.B) {
	t := &testing.T{}
	f := newFixture(t, testRules, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	run := func(b *testing.B, url string, auth string) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Authorization", auth)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	b.Run("upstream", func(b *testing.B) { run(b, f.up.srv.URL+"/base/repos/a", "Bearer reader") })
	b.Run("proxy", func(b *testing.B) { run(b, f.url+"/repos/a", "Bearer reader") })
}
