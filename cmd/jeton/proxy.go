package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jetonhq/jeton/internal/proxy"
	"github.com/jetonhq/jeton/verify"
)

// proxyOptions are what runProxy needs besides flags; tests replace them.
type proxyOptions struct {
	// reload delivers a signal whenever the route file should be re-read
	// (SIGHUP in main).
	reload <-chan os.Signal
	// ready, if set, is told the listen addresses once both are serving.
	ready func(addr, adminAddr string)
}

func runProxyMain(ctx context.Context, args []string, stderr io.Writer) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runProxy(ctx, args, stderr, proxyOptions{reload: hup})
}

func runProxy(ctx context.Context, args []string, stderr io.Writer, opts proxyOptions) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", envOr("JETON_PROXY_LISTEN", "127.0.0.1:9000"), "address to serve the guarded API on (env JETON_PROXY_LISTEN)")
	upstream := fs.String("upstream", os.Getenv("JETON_PROXY_UPSTREAM"), "base URL of the API to guard, e.g. http://127.0.0.1:3000 (env JETON_PROXY_UPSTREAM)")
	config := fs.String("config", os.Getenv("JETON_PROXY_CONFIG"), "route file (YAML); re-read on SIGHUP (env JETON_PROXY_CONFIG)")
	issuer := fs.String("issuer", envOr("JETON_ISSUER", "http://127.0.0.1:8080"), "the Jeton server's issuer URL (env JETON_ISSUER)")
	tokenFile := fs.String("token-file", os.Getenv("JETON_PROXY_TOKEN_FILE"), "file holding the proxy's own Jeton token (verify scope) (env JETON_PROXY_TOKEN_FILE); or set JETON_PROXY_TOKEN to the token")
	adminListen := fs.String("admin-listen", envOr("JETON_PROXY_ADMIN_LISTEN", "127.0.0.1:9001"), "address for /healthz, /readyz and /metrics; empty: none (env JETON_PROXY_ADMIN_LISTEN)")
	proxies := fs.String("trusted-proxies", os.Getenv("JETON_TRUSTED_PROXIES"), "comma-separated CIDRs of proxies in front of this one whose X-Forwarded-* headers are trusted (env JETON_TRUSTED_PROXIES, shared with jeton serve)")
	revocations := fs.Bool("revocations", true, "subscribe to Jeton's revocation stream (needs a token)")
	cacheTTL := fs.Duration("cache-ttl", 10*time.Second, "how long a valid opaque token or API key is remembered (at most 5m; keys with a rate limit or quota are checked every time)")
	headerTimeout := fs.Duration("upstream-timeout", 60*time.Second, "how long to wait for the upstream's response headers")
	shutdownTimeout := fs.Duration("shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish on shutdown")
	logLevel := fs.String("log-level", envOr("JETON_LOG_LEVEL", "info"), "debug, info, warn or error (env JETON_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("proxy: unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	up, err := url.Parse(*upstream)
	if err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return errors.New("--upstream must be an http:// or https:// URL")
	}
	if *config == "" {
		return errors.New("--config is required: the route file that says which scopes each path needs")
	}
	trusted, err := parseCIDRs(*proxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	credential, err := proxyCredential(*tokenFile)
	if err != nil {
		return err
	}
	rules, err := proxy.LoadRules(*config)
	if err != nil {
		return err
	}
	newVerifier := func(ctx context.Context, api string) (proxy.Verifier, error) {
		return verify.New(ctx, verify.Config{Issuer: strings.TrimRight(*issuer, "/"), Audience: api, Credential: credential,
			Revocations: *revocations && credential != "", CacheTTL: *cacheTTL, Logger: log})
	}
	p, err := proxy.New(ctx, proxy.Config{Upstream: up, Rules: rules, NewVerifier: newVerifier, TrustedProxies: trusted,
		ResponseHeaderTimeout: *headerTimeout, Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()

	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	servers := []*http.Server{srv}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	adminAddr := ""
	if *adminListen != "" {
		aln, err := net.Listen("tcp", *adminListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("proxy: admin listener: %w", err)
		}
		admin := &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, admin)
		adminAddr = aln.Addr().String()
		go func() { errc <- admin.Serve(aln) }()
	}
	log.Info("jeton proxy serving", "addr", ln.Addr().String(), "upstream", up.Redacted(), "routes", len(rules.Routes), "admin", adminAddr)
	if opts.ready != nil {
		opts.ready(ln.Addr().String(), adminAddr)
	}

	for {
		select {
		case <-opts.reload:
			next, err := p.ReloadFile(ctx, *config)
			if err != nil {
				log.Error("route file refused; the previous rules stay in force", "err", err)
				continue
			}
			log.Info("route file reloaded", "routes", len(next.Routes))
		case err := <-errc:
			for _, s := range servers {
				s.Close()
			}
			return fmt.Errorf("proxy: %w", err)
		case <-ctx.Done():
			log.Info("shutting down")
			shutCtx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
			defer cancel()
			var errs []error
			for _, s := range servers {
				if err := s.Shutdown(shutCtx); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}
	}
}

// proxyCredential reads the proxy's own Jeton token from a file or the
// environment. It is never a flag value, which ps would show.
func proxyCredential(file string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv("JETON_PROXY_TOKEN")), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
