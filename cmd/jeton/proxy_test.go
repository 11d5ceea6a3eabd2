package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/tokens"
)

// syncBuffer is a bytes.Buffer safe for the proxy's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProxyCommand runs `jeton proxy` against a real Jeton server and a
// real upstream: it forwards with identity, refuses without a token,
// keeps its rules when a reload brings a bad file (and counts it as a
// failed reload), takes a good one, and stops cleanly.
func TestProxyCommand(t *testing.T) {
	t.Parallel()
	s := apitest.New(t)
	key, err := s.Tokens.CreateToken(context.Background(), tokens.CreateParams{API: s.API.ID,
		Settings: tokens.Settings{Subject: new("cus_42"), Scopes: []string{"repos:read"}}}, tokens.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	writer, err := s.Tokens.CreateToken(context.Background(), tokens.CreateParams{API: s.API.ID,
		Settings: tokens.Settings{Subject: new("cus_43"), Scopes: []string{"repos:write"}}}, tokens.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	slow := make(chan struct{}) // closed when a slow request reached the upstream
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(slow)
			time.Sleep(300 * time.Millisecond) // still running when shutdown begins
		}
		io.WriteString(w, "hello "+r.Header.Get("X-Jeton-Subject"))
	}))
	defer up.Close()

	dir := t.TempDir()
	routes := filepath.Join(dir, "proxy.yaml")
	write := func(s string) {
		if err := os.WriteFile(routes, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("api: https://api.acme.test\nroutes:\n  - path: /**\n    scopes: [repos:read]\n")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(s.Verify+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan os.Signal, 1)
	ready := make(chan [2]string, 1)
	var log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runProxy(ctx, []string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", up.URL,
			"--config", routes, "--issuer", s.URL, "--token-file", tokenFile}, &log,
			proxyOptions{reload: reload, ready: func(addr, admin string) { ready <- [2]string{addr, admin} }})
	}()
	var addr, admin string
	select {
	case a := <-ready:
		addr, admin = a[0], a[1]
	case err := <-done:
		t.Fatalf("proxy exited: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("proxy did not start")
	}
	get := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/repos", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(key.Secret); code != 200 || body != "hello cus_42" {
		t.Fatalf("with a key: %d %q", code, body)
	}
	if code, _ := get(""); code != 401 {
		t.Fatalf("without a token: %d", code)
	}

	// waitLog waits until the proxy's log contains s (the reload is
	// asynchronous).
	waitLog := func(s string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(log.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("log never said %q:\n%s", s, log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	write("api: https://api.acme.test\nroutes:\n  - path: /**\n    scope: [repos:write]\n")
	reload <- os.Interrupt
	waitLog("route file refused")
	if !strings.Contains(log.String(), `proxy.yaml:4: unknown key \"scope\"`) {
		t.Errorf("the refusal does not name the line:\n%s", log.String())
	}
	if code, _ := get(key.Secret); code != 200 {
		t.Fatalf("after a refused reload: %d, want the old rules (200)", code)
	}
	// docs/proxy.md: operators alert on failed reloads, and a file that
	// does not parse is the usual one.
	if m := reloadMetrics(t, admin); !strings.Contains(m, `jeton_proxy_rule_reloads_total{result="error"} 1`) {
		t.Errorf("a refused route file is not counted as a failed reload; metrics say:\n%s", m)
	}

	write("api: https://api.acme.test\nroutes:\n  - path: /**\n    scopes: [repos:write]\n")
	reload <- os.Interrupt
	waitLog("route file reloaded")
	if code, _ := get(key.Secret); code != 403 {
		t.Fatalf("after a good reload: %d, want 403 (repos:write now required)", code)
	}
	if m := reloadMetrics(t, admin); !strings.Contains(m, `jeton_proxy_rule_reloads_total{result="ok"} 1`) {
		t.Errorf("a good reload is not counted; metrics say:\n%s", m)
	}
	if strings.Contains(log.String(), key.Secret) || strings.Contains(log.String(), s.Verify) {
		t.Error("a token appears in the proxy's log")
	}

	// Shutdown lets a request in flight finish.
	inflight := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/slow", nil)
		req.Header.Set("Authorization", "Bearer "+writer.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inflight <- 0
			return
		}
		resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	<-slow
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("proxy did not stop")
	}
	if code := <-inflight; code != 200 {
		t.Errorf("the request in flight at shutdown got %d, want 200", code)
	}
}

// reloadMetrics returns the jeton_proxy_rule_reloads_total lines of the
// proxy admin listener at admin.
func reloadMetrics(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "jeton_proxy_rule_reloads_total") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func TestProxyCommandErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("api: x\nroutes:\n  - path: /a\n    method: get\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no upstream", []string{"--config", bad}, "--upstream"},
		{"bad upstream", []string{"--upstream", "ftp://x", "--config", bad}, "--upstream"},
		{"no config", []string{"--upstream", "http://127.0.0.1:1"}, "--config is required"},
		{"missing config", []string{"--upstream", "http://127.0.0.1:1", "--config", filepath.Join(dir, "nope.yaml")}, "no such file"},
		{"bad config", []string{"--upstream", "http://127.0.0.1:1", "--config", bad}, "bad.yaml:4:"},
		{"bad cidr", []string{"--upstream", "http://127.0.0.1:1", "--config", bad, "--trusted-proxies", "10.0.0.0/99"}, "not a CIDR"},
		{"extra argument", []string{"--upstream", "http://127.0.0.1:1", "--config", bad, "serve"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			err := runProxy(context.Background(), tt.args, &stderr, proxyOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestProxyHelpNamesEnvironment: every environment variable `jeton proxy`
// reads is named in its -h text, as docs/proxy.md lists them.
func TestProxyHelpNamesEnvironment(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if err := runProxy(context.Background(), []string{"-h"}, &stderr, proxyOptions{}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, env := range []string{"JETON_PROXY_LISTEN", "JETON_PROXY_UPSTREAM", "JETON_PROXY_CONFIG", "JETON_ISSUER",
		"JETON_PROXY_TOKEN_FILE", "JETON_PROXY_TOKEN", "JETON_PROXY_ADMIN_LISTEN", "JETON_TRUSTED_PROXIES", "JETON_LOG_LEVEL"} {
		if !strings.Contains(stderr.String(), env) {
			t.Errorf("-h does not name %s:\n%s", env, stderr.String())
		}
	}
}
