// Package server wires Jeton together: configuration to store, token
// service and HTTP API, and runs the HTTP server until its context ends,
// then shuts down gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/httpapi"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
	"github.com/jetonhq/jeton/internal/web"
)

// Config is everything `jeton serve` can be told.
type Config struct {
	Addr           string // default 127.0.0.1:8080
	DB             string // file path, sqlite:PATH or postgres:// URL; default ./jeton.db
	TrustedProxies []netip.Prefix
	ClientIPHeader string
	Retention      time.Duration
	// AccessTokenRetention is how long expired or revoked OAuth access
	// tokens are kept (default 24h).
	AccessTokenRetention time.Duration
	Logger               *slog.Logger
	// Notice receives the one-time admin token printed on first start.
	Notice io.Writer
	// Ready, if set, receives the bound address once the server listens.
	Ready chan<- string
	// ShutdownTimeout bounds how long in-flight requests may take to finish.
	ShutdownTimeout time.Duration

	// Issuer is the public base URL of the authorization server; default
	// http://<listen address>.
	Issuer string
	// MasterKey (standard base64 of 32 bytes) or MasterKeyFile seals the
	// private signing keys. With neither, a SQLite store gets a key file
	// beside the database, created on first start; PostgreSQL refuses to
	// start.
	MasterKey     string
	MasterKeyFile string
	// KeyPrePublish is how long a new signing key is published before it
	// signs (default 10m); RefreshRetryWindow see oauth.Config.
	KeyPrePublish      time.Duration
	RefreshRetryWindow time.Duration
	// SessionTTL is how long a sign-in on Jeton's pages lasts (default
	// 12h, between web.MinSessionTTL and web.MaxSessionTTL).
	SessionTTL time.Duration
	// Now, if set, replaces the clock (tests).
	Now func() time.Time
}

// validate checks the settings that would otherwise fail only after the
// first start had created a store and a master key file: a bad setting
// changes nothing.
func (c Config) validate() error {
	if c.SessionTTL != 0 && (c.SessionTTL < web.MinSessionTTL || c.SessionTTL > web.MaxSessionTTL) {
		return fmt.Errorf("server: session lifetime %v is not between %v and %v", c.SessionTTL, web.MinSessionTTL, web.MaxSessionTTL)
	}
	if c.RefreshRetryWindow < 0 || c.RefreshRetryWindow > oauth.MaxRetryWindow {
		return fmt.Errorf("server: refresh retry window %v is not between 0 and %v", c.RefreshRetryWindow, oauth.MaxRetryWindow)
	}
	if c.Issuer != "" {
		if err := oauth.ValidIssuer(strings.TrimRight(c.Issuer, "/")); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	if c.KeyPrePublish != 0 && c.KeyPrePublish < oauth.JWKSMaxAge {
		// A key must be in every verifier's copy of the JWKS before it
		// signs; they may cache it that long.
		return fmt.Errorf("server: key pre-publication %v is shorter than the %v the JWKS may be cached", c.KeyPrePublish, oauth.JWKSMaxAge)
	}
	if c.MasterKey != "" && c.MasterKeyFile != "" {
		return errors.New("server: both a master key (JETON_MASTER_KEY) and a master key file (--master-key-file) are set; give one, so that the signing keys are sealed under the key you meant")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.DB == "" {
		c.DB = "jeton.db"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Notice == nil {
		c.Notice = io.Discard
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	return c
}

// Run serves until ctx is cancelled, then stops accepting connections,
// waits for in-flight requests, flushes usage counters and closes the store.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.Logger
	master, err := masterKey(cfg, log)
	if err != nil {
		return err
	}
	db, err := sqlstore.Open(ctx, cfg.DB, sqlstore.Options{})
	if err != nil {
		return err
	}
	defer db.Close()

	metrics := httpapi.NewMetrics()
	if db.Dialect() == "sqlite" {
		metrics.WatchWAL(db)
	} else {
		metrics.WatchAudit(db)
	}
	svc, err := tokens.New(ctx, tokens.Config{Store: db, Logger: log, Retention: cfg.Retention, AccessTokenRetention: cfg.AccessTokenRetention, Now: cfg.Now,
		OnVerify: metrics.OnVerify, OnStoreError: metrics.OnStoreError})
	if err != nil {
		return err
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := svc.Close(flushCtx); err != nil {
			log.Error("flush usage on shutdown", "err", err)
		}
	}()

	if _, created, err := svc.EnsureBuiltinAPI(ctx); err != nil {
		return err
	} else if created {
		c, err := svc.IssueAdminToken(ctx, "initial admin token")
		if err != nil {
			return err
		}
		fmt.Fprintf(cfg.Notice, "\nJeton created a new store with an admin token. It will not be shown again; store it now:\n\n    %s\n\n", c.Secret)
	}

	ring, err := signing.NewRing(ctx, signing.Config{Store: db, MasterKey: master, Logger: log, Now: cfg.Now, PrePublish: cfg.KeyPrePublish})
	if err != nil {
		return err
	}
	defer ring.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	defer ln.Close()
	issuer := cfg.Issuer
	if issuer == "" {
		issuer = "http://" + ln.Addr().String()
	}
	pages, err := web.New(web.Config{SessionKey: master.Derive("web session"), Secure: strings.HasPrefix(issuer, "https://"),
		SessionTTL: cfg.SessionTTL, Now: cfg.Now, Logger: log})
	if err != nil {
		return err
	}
	userSvc := users.New(users.Config{Store: db, Evict: svc.Evict, Now: cfg.Now, Logger: log})
	// The client address is resolved by the API's one rule (trusted
	// proxies); the OAuth server asks it through this indirection.
	var api *httpapi.API
	clientIP := func(r *http.Request) netip.Addr { return api.ClientIP(r) }
	authz, err := oauth.New(oauth.Config{Issuer: issuer, Store: db, Tokens: svc, Users: userSvc, Keys: ring, Pages: pages,
		MasterKey: master, Logger: log, Now: cfg.Now, ClientIP: clientIP, RefreshRetryWindow: cfg.RefreshRetryWindow,
		OnError: metrics.OnStoreError})
	if err != nil {
		return err
	}
	defer authz.Close()
	api, err = httpapi.New(ctx, httpapi.Config{Tokens: svc, Store: db, Logger: log, Metrics: metrics,
		TrustedProxies: cfg.TrustedProxies, ClientIPHeader: cfg.ClientIPHeader, OAuth: authz, Users: userSvc, Keys: ring, Now: cfg.Now})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info("jeton listening", "addr", ln.Addr().String(), "store", db.Dialect(), "issuer", issuer)
	if cfg.Ready != nil {
		cfg.Ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	api.Wait() // its background audit writes, before the store closes
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

// masterKey returns the key that seals private signing keys: given, read
// from a file, or (SQLite only) generated on first start into a file
// beside the database and reused afterwards.
func masterKey(cfg Config, log *slog.Logger) (*signing.MasterKey, error) {
	switch {
	case cfg.MasterKey != "":
		k, err := signing.ParseMasterKey(cfg.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("server: master key: %w", err)
		}
		return k, nil
	case cfg.MasterKeyFile != "":
		k, err := signing.LoadMasterKeyFile(cfg.MasterKeyFile)
		if err != nil {
			return nil, fmt.Errorf("server: master key file: %w", err)
		}
		return k, nil
	case sqlstore.IsPostgres(cfg.DB):
		return nil, errors.New("server: PostgreSQL needs a master key shared by every node: set JETON_MASTER_KEY (base64 of 32 random bytes, e.g. `openssl rand -base64 32`) or --master-key-file")
	}
	path := filepath.Clean(strings.TrimPrefix(cfg.DB, "sqlite:")) + ".master-key"
	k, err := signing.LoadMasterKeyFile(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("server: master key file: %w", err)
	}
	k, err = signing.CreateMasterKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: create master key file: %w", err)
	}
	log.Warn("generated a master key for the signing keys; back it up with the database, without it the signing keys cannot be opened", "file", path)
	return k, nil
}
