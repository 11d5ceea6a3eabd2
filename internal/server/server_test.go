package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/store/storetest"
)

// TestServeFirstStartAndGracefulShutdown starts the real server on an empty
// store, checks the one-time admin token, uses it, and proves that shutdown
// flushes the usage counted in memory.
func TestServeFirstStartAndGracefulShutdown(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "jeton.db")
	var notice bytes.Buffer
	srv := startServer(t, Config{DB: dbPath, Notice: &notice})
	admin, call := srv.admin, srv.call
	if admin == "" || !strings.Contains(notice.String(), "will not be shown again") {
		t.Fatalf("first start notice: %q", notice.String())
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := call("GET", p, ""); code != 200 {
			t.Errorf("%s: %d", p, code)
		}
	}
	for range 3 {
		if code, body := call("POST", "/v1/verify", `{"token":"`+admin+`"}`); code != 200 || !strings.Contains(body, `"valid":true`) {
			t.Fatalf("verify: %d %s", code, body)
		}
	}
	if _, body := call("GET", "/metrics", ""); !strings.Contains(body, `jeton_verify_results_total{code="valid"}`) ||
		!strings.Contains(body, `jeton_http_requests_total{code="200",route="POST /v1/verify"}`) ||
		!strings.Contains(body, "jeton_store_wal_bytes ") || !strings.Contains(body, "jeton_store_wal_restarts_total 0") {
		t.Errorf("metrics lack verify results, request counts or the WAL's figures")
	}
	srv.stop()
	// The usage flush interval (10s) has not passed: only the shutdown
	// flush can have written these counts.
	db, err := sqlstore.Open(context.Background(), dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	toks, _, err := db.ListTokens(context.Background(), store.TokenFilter{})
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens after shutdown: %d, %v", len(toks), err)
	}
	// 3 verify calls authenticate with the admin token and verify it too,
	// the metrics and health calls are unauthenticated.
	if got := toks[0].UseCount; got != 6 {
		t.Errorf("admin token use count after shutdown = %d, want 6 (flushed on shutdown)", got)
	}

	// A second start reuses the store and prints no new token.
	notice.Reset()
	startServer(t, Config{DB: dbPath, Notice: &notice}).stop()
	if notice.Len() != 0 {
		t.Errorf("second start printed %q", notice.String())
	}
}

// TestMasterKey covers where the key sealing the signing keys comes from:
// generated beside a SQLite database on first start and reused after,
// refused when missing on PostgreSQL, and a wrong key refuses to start
// rather than creating new signing keys.
func TestMasterKey(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "jeton.db")
	start := func(cfg Config) (string, func() error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		cfg.Addr, cfg.Ready, cfg.Logger = "127.0.0.1:0", ready, slog.New(slog.DiscardHandler)
		go func() { done <- Run(ctx, cfg) }()
		select {
		case addr := <-ready:
			return addr, func() error { cancel(); return <-done }
		case err := <-done:
			cancel()
			return "", func() error { return err }
		}
	}
	jwks := func(addr string) string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	addr, stop := start(Config{DB: dbPath})
	if addr == "" {
		t.Fatalf("first start: %v", stop())
	}
	first := jwks(addr)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dbPath + ".master-key")
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v, mode %v", err, info.Mode())
	}
	addr, stop = start(Config{DB: dbPath})
	if addr == "" {
		t.Fatalf("second start: %v", stop())
	}
	if again := jwks(addr); again != first {
		t.Errorf("the second start published other keys:\n%s\n%s", first, again)
	}
	stop()

	other := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	if addr, stop := start(Config{DB: dbPath, MasterKey: other}); addr != "" || stop() == nil || !strings.Contains(stop().Error(), "master key") {
		t.Errorf("a wrong master key did not refuse to start")
	}
	if addr, stop := start(Config{DB: "postgres://127.0.0.1:1/none"}); addr != "" || !strings.Contains(stop().Error(), "JETON_MASTER_KEY") {
		t.Errorf("PostgreSQL without a master key did not refuse to start with a clear message")
	}
}

// TestServeOnPostgres starts the real server on an empty PostgreSQL schema,
// creates an API through the admin API, and finds its audit event (chained
// after commit on PostgreSQL) and PostgreSQL's metrics.
func TestServeOnPostgres(t *testing.T) {
	srv := startServer(t, Config{DB: storetest.PostgresDSN(t), MasterKey: base64.StdEncoding.EncodeToString(make([]byte, 32))})
	if srv.admin == "" {
		t.Fatal("no admin token on the first start")
	}
	call := srv.call
	code, body := call("POST", "/v1/apis", `{"name":"acme","identifier":"https://acme.example.com","scopes":["repos:read"]}`)
	if code != 201 {
		t.Fatalf("create api: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/audit?action=api.create", ""); code != 200 || !strings.Contains(body, `"action":"api.create"`) {
		t.Errorf("audit right after the create: %d %s", code, body)
	}
	if _, body := call("GET", "/metrics", ""); !strings.Contains(body, "jeton_audit_chain_errors_total 0") ||
		strings.Contains(body, "jeton_store_wal_bytes") {
		t.Errorf("metrics: want jeton_audit_chain_errors_total and no WAL figures")
	}
	srv.stop()
}

// testServer is a server started by startServer.
type testServer struct {
	admin string // the one-time admin token of a first start ("" otherwise)
	// call sends a request with the admin token and returns the status and body.
	call func(method, path, body string) (int, string)
	// stop shuts the server down and fails the test if that fails.
	stop func()
}

// startServer runs Run with cfg on a free port of 127.0.0.1 until stop or
// the end of the test.
func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	notice := &bytes.Buffer{}
	if cfg.Notice == nil {
		cfg.Notice = notice
	} else {
		cfg.Notice = io.MultiWriter(cfg.Notice, notice)
	}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	cfg.Addr, cfg.Ready, cfg.Logger = "127.0.0.1:0", ready, slog.New(slog.DiscardHandler)
	go func() { done <- Run(ctx, cfg) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	srv := &testServer{admin: regexp.MustCompile(`jtp_[0-9A-Za-z]{49}`).FindString(notice.String())}
	srv.call = func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+srv.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var once sync.Once
	srv.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run after shutdown: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("shutdown did not finish")
			}
		})
	}
	t.Cleanup(srv.stop)
	return srv
}

// TestBadSettingsChangeNothing starts the server on a fresh directory with
// settings that are out of bounds: each is refused before a store or a
// master key file exists.
func TestBadSettingsChangeNothing(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"session lifetime too short", Config{SessionTTL: 5 * time.Second}, "session lifetime"},
		{"session lifetime too long", Config{SessionTTL: 365 * 24 * time.Hour}, "session lifetime"},
		{"negative session lifetime", Config{SessionTTL: -time.Hour}, "session lifetime"},
		{"refresh retry window too long", Config{RefreshRetryWindow: time.Minute}, "refresh retry window"},
		{"issuer without a scheme", Config{Issuer: "auth.example.com"}, "issuer"},
		{"issuer with a query", Config{Issuer: "https://auth.example.com/?x=1"}, "issuer"},
		{"issuer with a fragment", Config{Issuer: "https://auth.example.com/#x"}, "issuer"},
		{"key pre-publication shorter than the JWKS cache", Config{KeyPrePublish: time.Minute}, "pre-publication"},
		{"negative key pre-publication", Config{KeyPrePublish: -time.Second}, "pre-publication"},
		{"master key and master key file", Config{MasterKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", MasterKeyFile: "master.key"}, "master key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tt.cfg
			cfg.DB, cfg.Addr, cfg.Logger = filepath.Join(dir, "jeton.db"), "127.0.0.1:0", slog.New(slog.DiscardHandler)
			var notice bytes.Buffer
			cfg.Notice = &notice
			err := Run(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v, want an error about the %s", err, tt.want)
			}
			if notice.Len() != 0 {
				t.Errorf("the refused start printed %q", notice.String())
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("the refused start left %d files behind", len(entries))
			}
		})
	}
}
