package httpapi

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/signing"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/throttle"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

// Config configures the API handler.
type Config struct {
	Tokens *tokens.Service // required
	Store  store.Store     // required: audit log and readiness
	// OAuth, Users and Keys serve the OAuth 2.0 / OpenID Connect endpoints
	// and their admin API; when OAuth is nil only API keys are served.
	OAuth   *oauth.Server
	Users   *users.Service
	Keys    *signing.Ring
	Logger  *slog.Logger // default slog.Default()
	Metrics *Metrics     // default: a fresh private registry
	Now     func() time.Time

	// TrustedProxies are the peers whose ClientIPHeader is believed. With
	// none, the client address is always the connection's.
	TrustedProxies []netip.Prefix
	// ClientIPHeader names the header a trusted proxy sets; default
	// X-Forwarded-For (the rightmost untrusted address is used).
	ClientIPHeader string
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ClientIPHeader == "" {
		c.ClientIPHeader = "X-Forwarded-For"
	}
	return c
}

// API is the HTTP handler of Jeton's API.
type API struct {
	cfg     Config
	tokens  *tokens.Service
	store   store.Store
	log     *slog.Logger
	adapt   adapter
	mux     *http.ServeMux
	builtin string                // id of the jeton API
	authLog *throttle.AuditBudget // failed admin authentications audited
	// leakReports limits leak reports made without credentials.
	leakReports *throttle.Throttle
	// background counts the audit writes that answers do not wait for.
	background sync.WaitGroup
}

// Wait waits for the writes the API does in the background (the audit
// entries of failed authentications) to end. Call it once the http.Server
// has shut down, before the store closes, so that none is lost.
func (a *API) Wait() { a.background.Wait() }

// New returns the handler. The built-in jeton API must exist.
func New(ctx context.Context, cfg Config) (*API, error) {
	cfg = cfg.withDefaults()
	builtin, err := cfg.Tokens.ResolveAPI(ctx, tokens.BuiltinAPIName)
	if err != nil {
		return nil, err
	}
	a := &API{cfg: cfg, tokens: cfg.Tokens, store: cfg.Store, log: cfg.Logger, builtin: builtin.ID,
		authLog:     throttle.NewAuditBudget(authFailuresPerMinute, authFailuresPerMinuteInAll, time.Minute),
		leakReports: newLeakThrottle()}
	a.adapt = adapter{log: cfg.Logger, onError: func(string) { cfg.Metrics.storeErrors.WithLabelValues("request").Inc() }}
	a.mux = http.NewServeMux()
	a.routes()
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// ClientIP is the address of the client of r, resolved by the one rule
// every endpoint uses (see clientIP).
func (a *API) ClientIP(r *http.Request) netip.Addr { return a.clientIP(r) }

// clientIP is the address of the client: the connection's peer, or, when
// the peer is a trusted proxy, the rightmost untrusted address in the
// configured header; IPv4-mapped addresses unmapped, zones dropped.
func (a *API) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	var peer netip.Addr
	if err == nil {
		peer = ap.Addr().Unmap().WithZone("")
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		peer, _ = netip.ParseAddr(host)
		peer = peer.Unmap().WithZone("")
	}
	if len(a.cfg.TrustedProxies) == 0 || !a.trusted(peer) {
		return peer
	}
	values := r.Header.Values(a.cfg.ClientIPHeader)
	for i := len(values) - 1; i >= 0; i-- {
		parts := values[i]
		for parts != "" {
			var last string
			if j := strings.LastIndexByte(parts, ','); j >= 0 {
				last, parts = parts[j+1:], parts[:j]
			} else {
				last, parts = parts, ""
			}
			addr, err := netip.ParseAddr(strings.TrimSpace(last))
			if err != nil {
				return peer // a garbled header is not trusted any further
			}
			// A zone names an interface of the host that saw the address,
			// not this one's, and a proxy's header may put any bytes in it.
			addr = addr.Unmap().WithZone("")
			if !a.trusted(addr) {
				return addr
			}
			peer = addr
		}
	}
	return peer
}

func (a *API) trusted(addr netip.Addr) bool {
	for _, p := range a.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
