package verify_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/verify"
)

// tcpProxy forwards connections to a target and can drop them all and
// refuse new ones, to break the revocation stream like a network would.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	down   bool
	served int // connections forwarded
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		ln.Close()
		p.drop()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	p.served++
	return true
}

func (p *tcpProxy) serve(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(c, u) {
		c.Close()
		if u != nil {
			u.Close()
		}
		return
	}
	go func() {
		io.Copy(u, c)
		u.Close()
	}()
	io.Copy(c, u)
	c.Close()
}

// drop closes every open connection.
func (p *tcpProxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *tcpProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served
}

func (p *tcpProxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.drop()
	}
}

// streamVia sends the revocation stream's requests through a proxy
// address and every other request directly.
type streamVia struct {
	direct, proxied http.RoundTripper
}

func (s streamVia) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/v1/revocations/stream") {
		return s.proxied.RoundTrip(r)
	}
	return s.direct.RoundTrip(r)
}

// TestIntegrationRevocations: a subscribed verifier learns of revocations
// from the real server's feed. A revoked API key (cached as valid) and a
// revoked JWT access token are refused within milliseconds; the stream is
// broken, revocations happen while it is down (polling sees them), it
// resumes, and every event arrives exactly once.
func TestIntegrationRevocations(t *testing.T) {
	t.Parallel()
	j := newJeton(t, apitest.Options{KeyPrePublish: -1})
	u, _ := url.Parse(j.URL)
	proxy := newTCPProxy(t, u.Host)
	proxied := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, proxy.ln.Addr().String())
	}}
	t.Cleanup(proxied.CloseIdleConnections)
	var rec seqRecorder
	cfg := verify.Config{Issuer: j.URL, Audience: j.API.Identifier, Credential: j.Verify, Now: j.Clock.Now,
		Revocations: true, PollInterval: 50 * time.Millisecond,
		HTTPClient: &http.Client{Transport: streamVia{direct: http.DefaultTransport, proxied: proxied}}}
	v, err := verify.NewWithEventHook(context.Background(), cfg, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	ctx := context.Background()

	// rejected waits until Verify refuses tok as revoked, and returns how
	// long that took.
	rejected := func(tok string, since time.Time) time.Duration {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := v.Verify(ctx, tok)
			if errors.Is(err, verify.ErrRevoked) {
				return time.Since(since)
			}
			if err != nil {
				t.Fatalf("while waiting for the revocation: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatal("the revocation never reached the verifier")
			}
			time.Sleep(200 * time.Microsecond)
		}
	}

	// API keys, cached as valid, revoked with DELETE /v1/tokens/{id}.
	// Enough samples for a p99 that is not simply the maximum.
	const keyRevocations, jwtRevocations = 80, 20
	var lat []time.Duration
	for range keyRevocations {
		key, id := j.apiKey(j.API.ID, nil)
		if _, err := v.Verify(ctx, key); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		j.admin("DELETE", "/v1/tokens/"+id)
		lat = append(lat, rejected(key, start))
	}
	// A JWT access token, revoked by its client at /oauth2/revoke (RFC 7009).
	c, secret, err := j.OAuth.CreateClient(ctx, oauth.ClientParams{Name: "svc", GrantTypes: []string{oauth.GrantClientCredentials},
		APIs: []string{j.API.ID}, Scopes: []string{"repos:read"}, TokenFormat: store.FormatJWT}, actor)
	if err != nil {
		t.Fatal(err)
	}
	for range jwtRevocations {
		jwt := j.token(c.ID, secret, j.API.Identifier, "repos:read")
		if _, err := v.Verify(ctx, jwt); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		req, _ := http.NewRequest("POST", j.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {jwt}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(c.ID, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("revoke the JWT: %v %v", err, resp)
		}
		resp.Body.Close()
		lat = append(lat, rejected(jwt, start))
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	p99 := lat[len(lat)*99/100]
	t.Logf("revocation to rejection over %d revocations: p50 %v, p99 %v, max %v", len(lat), lat[len(lat)/2], p99, lat[len(lat)-1])
	if p99 > time.Second {
		t.Errorf("p99 revocation latency %v", p99)
	}

	// Break the stream; revoke while it is down; resume.
	// Each key is verified first, so that its valid answer is cached and
	// only the feed can make it fail before CacheTTL.
	revokeCached := func() {
		for range 5 {
			key, id := j.apiKey(j.API.ID, nil)
			if _, err := v.Verify(ctx, key); err != nil {
				t.Fatal(err)
			}
			j.admin("DELETE", "/v1/tokens/"+id)
			rejected(key, time.Now())
		}
	}
	proxy.setDown(true)
	revokeCached() // learnt by polling
	before := proxy.connections()
	proxy.setDown(false)
	waitFor(t, "the stream to reconnect", func() bool { return proxy.connections() > before })
	revokeCached()
	total := keyRevocations + jwtRevocations + 10
	feed, err := j.DB.ListRevocations(ctx, 0, nil, j.Clock.Now(), 2*total)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int64, len(feed))
	for i, r := range feed {
		want[i] = r.Seq
	}
	if len(want) != total {
		t.Fatalf("the feed holds %d entries, want %d", len(want), total)
	}
	waitFor(t, "every event", func() bool { return rec.has(want[len(want)-1]) })
	if got := rec.get(); !slices.Equal(got, want) {
		t.Errorf("applied seqs %v: want the feed's %v, each once, in order", got, want)
	}
}

// TestSubscribedVerifierDropsEndedSecrets: a secret that stops working
// before its time without its token being revoked (a replaced secret whose
// grace a leak report ends, a rotation without grace) must reach a
// subscribed Verifier that cached it as valid, which then asks again,
// while the token's current secret keeps working.
func TestSubscribedVerifierDropsEndedSecrets(t *testing.T) {
	t.Parallel()
	j := newJeton(t, apitest.Options{KeyPrePublish: -1})
	ctx := context.Background()
	v := j.verifier(func(c *verify.Config) { c.Revocations, c.CacheTTL = true, 5*time.Minute })
	direct := j.verifier(func(c *verify.Config) { c.CacheTTL, c.NegativeCacheTTL = -1, -1 })
	refused := func(secret string) bool { _, err := v.Verify(ctx, secret); return err != nil }

	// Rotated with a grace period, then the old secret is reported leaked.
	old, id := j.apiKey(j.API.ID, nil)
	rot, err := j.Tokens.RotateToken(ctx, id, time.Hour, actor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatalf("old secret in its grace period: %v", err)
	}
	if res, err := j.Tokens.ReportLeak(ctx, old, "test", actor); err != nil || res.Outcome != tokens.LeakGraceEnded {
		t.Fatalf("ReportLeak: %+v %v", res, err)
	}
	if _, err := direct.Verify(ctx, old); err == nil {
		t.Fatal("Jeton still accepts the leaked secret")
	}
	waitFor(t, "the subscribed verifier to refuse the leaked secret", func() bool { return refused(old) })
	if _, err := v.Verify(ctx, rot.Secret); err != nil {
		t.Errorf("current secret after the old one's grace ended: %v", err)
	}

	// Rotated without grace: the old secret ends at once.
	old2, id2 := j.apiKey(j.API.ID, nil)
	if _, err := v.Verify(ctx, old2); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Tokens.RotateToken(ctx, id2, 0, actor); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscribed verifier to refuse the replaced secret", func() bool { return refused(old2) })
}
