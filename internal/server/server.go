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
	"time"

	"github.com/jetonhq/jeton/internal/httpapi"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokens"
)

// Config is everything `jeton serve` can be told.
type Config struct {
	Addr           string // default 127.0.0.1:8080
	DB             string // file path, sqlite:PATH or postgres:// URL; default ./jeton.db
	TrustedProxies []netip.Prefix
	ClientIPHeader string
	Retention      time.Duration
	Logger         *slog.Logger
	// Notice receives the one-time admin token printed on first start.
	Notice io.Writer
	// Ready, if set, receives the bound address once the server listens.
	Ready chan<- string
	// ShutdownTimeout bounds how long in-flight requests may take to finish.
	ShutdownTimeout time.Duration
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
	log := cfg.Logger
	db, err := sqlstore.Open(ctx, cfg.DB, sqlstore.Options{})
	if err != nil {
		return err
	}
	defer db.Close()

	metrics := httpapi.NewMetrics()
	svc, err := tokens.New(ctx, tokens.Config{Store: db, Logger: log, Retention: cfg.Retention,
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

	api, err := httpapi.New(ctx, httpapi.Config{Tokens: svc, Store: db, Logger: log, Metrics: metrics,
		TrustedProxies: cfg.TrustedProxies, ClientIPHeader: cfg.ClientIPHeader})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
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
	log.Info("jeton listening", "addr", ln.Addr().String(), "store", db.Dialect())
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
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}
