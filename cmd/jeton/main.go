// Command jeton is the Jeton access-token server and its command-line client.
//
//	jeton serve                 run the server
//	jeton proxy                 a gateway that checks tokens in front of any API
//	jeton admin bootstrap       create an admin token directly in the store
//	jeton api ...               manage APIs            (calls the admin API)
//	jeton token ...             manage tokens          (calls the admin API)
//	jeton client ...            manage OAuth clients   (calls the admin API)
//	jeton user ...              manage users           (calls the admin API)
//	jeton key list|rotate       show or rotate signing keys (calls the admin API)
//	jeton audit list|verify     read or prove the audit log
//	jeton scan [PATH...]        find leaked Jeton tokens in files
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jetonhq/jeton/internal/audit"
	"github.com/jetonhq/jeton/internal/server"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokens"
)

const usage = `usage: jeton <command> [flags]

commands:
  serve             run the server (--addr, --db)
  proxy             guard an API: check tokens, then forward (--listen, --upstream, --config)
  admin bootstrap   create an admin token in the store and print it (--db)
  api               create, list, get, update, delete APIs
  token             create, list, get, update, revoke, rotate, usage, verify tokens
  client            create, list, get, update, delete OAuth clients, rotate their secrets
  user              create, list, get, update, delete users; list and revoke their consents
  key               list or rotate the signing keys of JWTs
  audit list        list audit events
  audit verify      prove the audit log's hash chain is intact (--db)
  scan              find Jeton tokens in files or standard input (exit 1 if any)

Run 'jeton <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ec *exitCode
		switch {
		case errors.Is(err, errTokensFound):
			// scan said what it found
		case !errors.Is(err, flag.ErrHelp):
			fmt.Fprintln(os.Stderr, "jeton:", err)
		}
		if errors.As(err, &ec) {
			os.Exit(ec.code)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return runServe(ctx, rest, stderr)
	case "proxy":
		return runProxyMain(ctx, rest, stderr)
	case "admin":
		if len(rest) == 0 || rest[0] != "bootstrap" {
			return errors.New("usage: jeton admin bootstrap [--db DSN]")
		}
		return runBootstrap(ctx, rest[1:], stdout, stderr)
	case "api":
		return runAPI(ctx, rest, stdout, stderr)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "client":
		return runClient(ctx, rest, stdout, stderr)
	case "user":
		return runUser(ctx, rest, stdout, stderr)
	case "key":
		return runKey(ctx, rest, stdout, stderr)
	case "audit":
		if len(rest) > 0 && rest[0] == "verify" {
			return runAuditVerify(ctx, rest[1:], stdout, stderr)
		}
		if len(rest) > 0 && rest[0] == "list" {
			return runAuditList(ctx, rest[1:], stdout, stderr)
		}
		return errors.New("usage: jeton audit list|verify")
	case "scan":
		return runScan(ctx, rest, os.Stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func dbFlag(fs *flag.FlagSet) *string {
	return fs.String("db", envOr("JETON_DB", "jeton.db"), "store: a file path, sqlite:PATH or a postgres:// URL (env JETON_DB)")
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("JETON_ADDR", "127.0.0.1:8080"), "listen address (env JETON_ADDR)")
	db := dbFlag(fs)
	proxies := fs.String("trusted-proxies", os.Getenv("JETON_TRUSTED_PROXIES"), "comma-separated CIDRs of proxies whose client-address header is trusted (env JETON_TRUSTED_PROXIES)")
	header := fs.String("client-ip-header", envOr("JETON_CLIENT_IP_HEADER", "X-Forwarded-For"), "header a trusted proxy puts the client address in (env JETON_CLIENT_IP_HEADER)")
	retention := fs.Duration("retention", 30*24*time.Hour, "how long expired and revoked tokens are kept before the janitor deletes them")
	accessRetention := fs.Duration("access-token-retention", 24*time.Hour, "how long expired and revoked OAuth access tokens are kept (at most --retention)")
	logLevel := fs.String("log-level", envOr("JETON_LOG_LEVEL", "info"), "debug, info, warn or error (env JETON_LOG_LEVEL)")
	issuer := fs.String("issuer", os.Getenv("JETON_ISSUER"), "public base URL of the authorization server (env JETON_ISSUER; default http://<addr>)")
	keyFile := fs.String("master-key-file", os.Getenv("JETON_MASTER_KEY_FILE"), "file holding the base64 master key that seals signing keys (env JETON_MASTER_KEY_FILE; or set JETON_MASTER_KEY itself)")
	prePublish := fs.Duration("key-prepublish", 10*time.Minute, "how long a new signing key is in the JWKS before it signs")
	retryWindow := fs.Duration("refresh-retry-window", 0, "how long a concurrent retry of the same refresh gets the same answer instead of tripping reuse detection (at most 5s)")
	sessionTTL := fs.Duration("session-ttl", 12*time.Hour, "how long a sign-in on Jeton's pages lasts (1m to 720h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	trusted, err := parseCIDRs(*proxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return server.Run(ctx, server.Config{Addr: *addr, DB: *db, TrustedProxies: trusted, ClientIPHeader: *header,
		Retention: *retention, AccessTokenRetention: *accessRetention, Logger: log, Notice: stderr, Issuer: *issuer, MasterKey: os.Getenv("JETON_MASTER_KEY"),
		MasterKeyFile: *keyFile, KeyPrePublish: *prePublish, RefreshRetryWindow: *retryWindow, SessionTTL: *sessionTTL})
}

func openService(ctx context.Context, dsn string) (*sqlstore.DB, *tokens.Service, error) {
	db, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
	if err != nil {
		return nil, nil, err
	}
	svc, err := tokens.New(ctx, tokens.Config{Store: db, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, svc, nil
}

func runBootstrap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := dbFlag(fs)
	name := fs.String("name", "bootstrap admin token", "name of the new token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, svc, err := openService(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	defer svc.Close(ctx)
	c, err := svc.IssueAdminToken(ctx, *name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, c.Secret)
	return nil
}

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := dbFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !sqlstore.IsPostgres(*db) {
		// Opening a SQLite file creates it: a mistyped path would verify
		// a new, empty log and pass.
		if _, err := os.Stat(strings.TrimPrefix(*db, "sqlite:")); err != nil {
			return fmt.Errorf("audit verify: no database at %s: %w", *db, err)
		}
	}
	st, err := sqlstore.Open(ctx, *db, sqlstore.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := audit.Verify(ctx, st)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit log intact: %d entries verified\n", n)
	return nil
}
