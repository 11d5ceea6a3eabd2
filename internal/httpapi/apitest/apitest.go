// Package apitest runs a complete Jeton HTTP API (SQLite store, token
// service, signing keys, users and the OAuth server) on a local listener,
// for the tests of the programs that call it (the admin client and the
// command line) and of the OAuth flows.
package apitest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/httpapi"
	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/password"
	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
	"github.com/jetonhq/jeton/internal/web"
)

// MasterKey is the master key of every test server: standard base64 of 32
// bytes, for tests only.
const MasterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// KeyPrePublish is how long a rotated signing key waits before it signs.
const KeyPrePublish = 10 * time.Minute

// Clock is the wall clock plus an offset that tests advance, so that
// expiry and key rotation are tested without sleeping.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the current time of the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// Server is a running API with its parts.
type Server struct {
	URL    string       // base URL, such as http://127.0.0.1:12345
	Client *http.Client // a client for URL (it trusts the certificate of a TLS server)
	Admin  string       // an admin token
	Verify string       // a token with only the verify scope
	API    store.API    // "acme": https://api.acme.test, scopes repos:read and repos:write

	DB     *sqlstore.DB
	Tokens *tokens.Service
	Users  *users.Service
	Keys   *signing.Ring
	OAuth  *oauth.Server
	Clock  *Clock
}

// Options adjust a test server; zero values keep the defaults.
type Options struct {
	KeyPrePublish      time.Duration // default KeyPrePublish; negative: none
	RefreshRetryWindow time.Duration // default 0
	DeviceInterval     time.Duration // default the OAuth server's (5s)
	// DSN, if set, is the store to use instead of a fresh SQLite file:
	// several servers on one PostgreSQL DSN are the nodes of a cluster.
	DSN string
	// ClientCacheTTL is how long the OAuth server caches a client
	// (default the OAuth server's, 2s).
	ClientCacheTTL time.Duration
	// TLS serves https with httptest's self-signed certificate: the
	// issuer is https and the pages' cookies are Secure and __Host-
	// prefixed, as `jeton serve` makes them for an https issuer.
	// Server.Client trusts the certificate.
	TLS bool
	// OnOAuthError is the OAuth server's Config.OnError.
	OnOAuthError func(op string)
}

// New starts a server on a fresh store in t.TempDir(); t's cleanup stops
// it.
func New(t testing.TB) *Server { return NewWith(t, Options{}) }

// NewWith is New with options.
func NewWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.KeyPrePublish == 0 {
		opts.KeyPrePublish = KeyPrePublish
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	s := &Server{Clock: &Clock{}}
	fatal := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dsn := opts.DSN
	if dsn == "" {
		dsn = filepath.Join(t.TempDir(), "jeton.db")
	}
	db, err := sqlstore.Open(ctx, dsn, sqlstore.Options{})
	fatal(err)
	t.Cleanup(func() { db.Close() })
	s.DB = db
	s.Tokens, err = tokens.New(ctx, tokens.Config{Store: db, Logger: log, Now: s.Clock.Now})
	fatal(err)
	t.Cleanup(func() { s.Tokens.Close(context.Background()) })
	admin, err := s.Tokens.IssueAdminToken(ctx, "test admin")
	fatal(err)
	s.Admin = admin.Secret
	master, err := signing.ParseMasterKey(MasterKey)
	fatal(err)
	s.Keys, err = signing.NewRing(ctx, signing.Config{Store: db, MasterKey: master, Logger: log, Now: s.Clock.Now,
		PrePublish: opts.KeyPrePublish, Reload: -1})
	fatal(err)
	t.Cleanup(s.Keys.Close)
	pages, err := web.New(web.Config{SessionKey: master.Derive("web session"), Secure: opts.TLS, Now: s.Clock.Now, Logger: log})
	fatal(err)
	// Cheap password hashing: these servers protect nothing.
	hasher := password.NewHasher(password.Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}, 0)
	s.Users = users.New(users.Config{Store: db, Evict: s.Tokens.Evict, Now: s.Clock.Now, Logger: log, Hasher: hasher})

	srv := httptest.NewUnstartedServer(nil)
	s.URL = "http://" + srv.Listener.Addr().String()
	if opts.TLS {
		s.URL = "https://" + srv.Listener.Addr().String()
	}
	s.OAuth, err = oauth.New(oauth.Config{Issuer: s.URL, Store: db, Tokens: s.Tokens, Users: s.Users, Keys: s.Keys,
		Pages: pages, MasterKey: master, Logger: log, Now: s.Clock.Now,
		RefreshRetryWindow: opts.RefreshRetryWindow, DeviceInterval: opts.DeviceInterval, ClientCacheTTL: opts.ClientCacheTTL,
		OnError: opts.OnOAuthError})
	fatal(err)
	t.Cleanup(s.OAuth.Close)
	api, err := httpapi.New(ctx, httpapi.Config{Tokens: s.Tokens, Store: db, Logger: log, OAuth: s.OAuth, Users: s.Users,
		Keys: s.Keys, Now: s.Clock.Now})
	fatal(err)
	srv.Config.Handler = api
	if opts.TLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	s.Client = srv.Client()
	t.Cleanup(func() {
		// Shutdown first: it runs the server's shutdown hooks, which end
		// open revocation streams; Close alone would wait for them.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Config.Shutdown(ctx)
		srv.Close()
	})

	by := tokens.Actor{ID: "test"}
	s.API, err = s.Tokens.CreateAPI(ctx, tokens.APIParams{Name: "acme", Identifier: "https://api.acme.test",
		Scopes: []string{"repos:read", "repos:write"}}, by)
	if errors.Is(err, store.ErrAlreadyExists) { // another node of the cluster made it
		var a *store.API
		a, err = s.Tokens.ResolveAPI(ctx, "acme")
		if a != nil {
			s.API = *a
		}
	}
	fatal(err)
	jeton, err := s.Tokens.ResolveAPI(ctx, tokens.BuiltinAPIName)
	fatal(err)
	verify, err := s.Tokens.CreateToken(ctx, tokens.CreateParams{API: jeton.ID,
		Settings: tokens.Settings{Scopes: []string{"verify"}}}, by)
	fatal(err)
	s.Verify = verify.Secret
	return s
}
