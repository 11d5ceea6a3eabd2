package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/verify"
)

// jetonProxy is a proxy with real verifiers in front of a real upstream,
// checking tokens against a real Jeton server.
type jetonProxy struct {
	t   *testing.T
	j   *apitest.Server
	url string
}

func newJetonProxy(t *testing.T, j *apitest.Server) *jetonProxy {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Jeton-Subject")+"|"+r.Header.Get("X-Jeton-Token-Id")+"|"+r.Header.Get("Authorization"))
	}))
	t.Cleanup(up.Close)
	rules, err := ParseRules("proxy.yaml", []byte("api: "+j.API.Identifier+`
routes:
  - methods: [GET]
    path: /repos/**
    scopes: [repos:read]
  - methods: [POST]
    path: /repos/*
    scopes: [repos:write]
`))
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(up.URL)
	p, err := New(context.Background(), Config{Upstream: target, Rules: rules,
		NewVerifier: func(ctx context.Context, api string) (Verifier, error) {
			return verify.New(ctx, verify.Config{Issuer: j.URL, Audience: api, Credential: j.Verify, Revocations: true, Now: j.Clock.Now})
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return &jetonProxy{t: t, j: j, url: srv.URL}
}

func (p *jetonProxy) do(method, path, tok string) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// accessToken gets an access token of format for a new client with the
// client credentials grant, through the real token endpoint.
func accessToken(t *testing.T, j *apitest.Server, format string) (tok, clientID, secret string) {
	t.Helper()
	c, secret, err := j.OAuth.CreateClient(context.Background(), oauth.ClientParams{Name: "svc " + format,
		GrantTypes: []string{oauth.GrantClientCredentials}, APIs: []string{j.API.ID},
		Scopes: []string{"repos:read"}, TokenFormat: format}, tokens.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return clientCredentials(t, j, c.ID, secret), c.ID, secret
}

func clientCredentials(t *testing.T, j *apitest.Server, clientID, secret string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"repos:read"}}
	req, _ := http.NewRequest("POST", j.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

func adminCall(t *testing.T, j *apitest.Server, method, path, form string) {
	t.Helper()
	req, _ := http.NewRequest(method, j.URL+path, strings.NewReader(form))
	req.Header.Set("Authorization", "Bearer "+j.Admin)
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}

// TestProxyWithJeton sends every kind of token through the proxy to a real
// upstream, checked by a real Jeton server: each is accepted with its
// identity, refused without the scope a route needs, and refused once
// revoked (the revocation stream reaches the proxy's verifier, well before
// any cache would expire).
func TestProxyWithJeton(t *testing.T) {
	t.Parallel()
	j := apitest.New(t)
	p := newJetonProxy(t, j)
	sub := "cus_42"
	key, err := j.Tokens.CreateToken(context.Background(), tokens.CreateParams{API: j.API.ID,
		Settings: tokens.Settings{Subject: &sub, Scopes: []string{"repos:read"}}}, tokens.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	opaque, opaqueClient, _ := accessToken(t, j, store.FormatOpaque)
	jwt, jwtClient, _ := accessToken(t, j, store.FormatJWT)

	kinds := []struct {
		name, tok, subject string
		revoke             func()
	}{
		{"api key", key.Secret, "cus_42", func() { adminCall(t, j, "DELETE", "/v1/tokens/"+key.Token.ID, "") }},
		{"opaque access token", opaque, opaqueClient, func() { adminCall(t, j, "POST", "/oauth2/revoke", "token="+opaque) }},
		{"JWT access token", jwt, jwtClient, func() { adminCall(t, j, "POST", "/oauth2/revoke", "token="+jwt) }},
	}
	for _, k := range kinds {
		code, body := p.do("GET", "/repos/jeton", k.tok)
		fields := strings.Split(body, "|")
		if code != 200 || len(fields) != 3 || fields[0] != k.subject || fields[1] == "" || fields[2] != "" {
			t.Fatalf("%s: %d %q (want subject %s, a token id, no Authorization)", k.name, code, body, k.subject)
		}
		if code, _ := p.do("POST", "/repos/jeton", k.tok); code != http.StatusForbidden {
			t.Errorf("%s without repos:write: %d, want 403", k.name, code)
		}
	}
	if code, _ := p.do("GET", "/repos/jeton", "jtp_notatoken"); code != http.StatusUnauthorized {
		t.Errorf("garbage token: %d, want 401", code)
	}
	for _, k := range kinds {
		k.revoke()
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, _ := p.do("GET", "/repos/jeton", k.tok)
			if code == http.StatusUnauthorized {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still accepted 5 s after its revocation: %d", k.name, code)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestProxyAcrossKeyRotation keeps requests with fresh JWTs flowing through
// the proxy while Jeton rotates its signing key: none fails.
func TestProxyAcrossKeyRotation(t *testing.T) {
	t.Parallel()
	j := apitest.NewWith(t, apitest.Options{KeyPrePublish: 300 * time.Millisecond})
	p := newJetonProxy(t, j)
	first, clientID, secret := accessToken(t, j, store.FormatJWT)
	kid := func(tok string) string { h, _, _ := strings.Cut(tok, "."); return h } // the header names the key

	var (
		ok, failed atomic.Int64
		newKey     atomic.Bool
		stop       = make(chan struct{})
		wg         sync.WaitGroup
		mu         sync.Mutex
		firstErr   string
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tok := clientCredentials(t, j, clientID, secret)
			req, _ := http.NewRequest("GET", p.url+"/repos/x", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				mu.Lock()
				if firstErr == "" {
					firstErr = "request failed"
					if resp != nil {
						b, _ := io.ReadAll(resp.Body)
						firstErr = resp.Status + " " + string(b)
					}
				}
				mu.Unlock()
			} else {
				ok.Add(1)
				if kid(tok) != kid(first) {
					newKey.Store(true)
				}
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	})
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUntil("requests before the rotation", func() bool { return ok.Load() > 20 })
	adminCall(t, j, "POST", "/v1/keys/rotate", "")
	waitUntil("a token of the new key through the proxy", newKey.Load)
	after := ok.Load()
	waitUntil("requests after the rotation", func() bool { return ok.Load() > after+20 })
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed across the rotation; first: %s", n, firstErr)
	}
}
