// Package proxy is the gateway behind `jeton proxy`: it checks the token of
// every request against a route file's rules with the public verify
// package, then forwards the request, with the caller's identity in
// headers, to an upstream API written in any language.
package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetonhq/jeton/verify"
)

// Verifier checks a request's token; *verify.Verifier implements it.
type Verifier interface {
	VerifyRequest(r *http.Request, scopes ...string) (*verify.Claims, error)
	Close() error
}

// Config configures a Proxy.
type Config struct {
	// Upstream is where requests go (required): scheme, host and an
	// optional base path.
	Upstream *url.URL
	// Rules are the initial route rules (required).
	Rules *Rules
	// NewVerifier returns the verifier for tokens of one API (the route
	// file's api values) (required).
	NewVerifier func(ctx context.Context, api string) (Verifier, error)
	// TrustedProxies are the peers whose X-Forwarded-For, -Host and -Proto
	// headers are believed. From anyone else they are replaced.
	TrustedProxies []netip.Prefix
	// Transport reaches the upstream; default: a tuned clone of
	// http.DefaultTransport with DialTimeout and ResponseHeaderTimeout.
	Transport http.RoundTripper
	// DialTimeout bounds connecting to the upstream; default 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers (not the body, which may stream); default 60s.
	ResponseHeaderTimeout time.Duration
	// Logger gets one line per upstream failure and reload; default: discard.
	Logger *slog.Logger
	// Registry receives the proxy's metrics; default: a new private one.
	Registry *prometheus.Registry
}

func (c Config) withDefaults() Config {
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ResponseHeaderTimeout <= 0 {
		c.ResponseHeaderTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the upstream is reached directly, whatever HTTP_PROXY says
		t.DialContext = (&net.Dialer{Timeout: c.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
		t.ResponseHeaderTimeout = c.ResponseHeaderTimeout
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 512 // one per concurrent client request, so connections are reused
		t.IdleConnTimeout = 90 * time.Second
		c.Transport = t
	}
	return c
}

// Proxy is an http.Handler that guards an upstream.
type Proxy struct {
	cfg     Config
	rp      *httputil.ReverseProxy
	metrics *metrics
	state   atomic.Pointer[state]
	mu      sync.Mutex // serializes Reload and Close
	closed  bool
}

// state is one generation of rules and the verifiers they need.
type state struct {
	rules     *Rules
	verifiers map[string]Verifier // by API
	strip     []string            // identity header names clients may not send
}

// New builds a proxy; it creates a verifier for every API the rules name.
func New(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.Upstream == nil || (cfg.Upstream.Scheme != "http" && cfg.Upstream.Scheme != "https") || cfg.Upstream.Host == "" {
		return nil, errors.New("proxy: upstream must be an http:// or https:// URL")
	}
	if cfg.Rules == nil || cfg.NewVerifier == nil {
		return nil, errors.New("proxy: rules and NewVerifier are required")
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, metrics: m}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      cfg.Transport,
		FlushInterval:  100 * time.Millisecond, // event streams and chunked bodies flush at once anyway
		ErrorHandler:   p.upstreamError,
		ModifyResponse: p.modifyResponse,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		BufferPool:     copyBuffers{},
	}
	st, err := p.build(ctx, cfg.Rules, nil)
	if err != nil {
		return nil, err
	}
	p.state.Store(st)
	return p, nil
}

// build makes the state for rules, reusing old's verifiers where the API is
// the same. On error it closes what it created.
func (p *Proxy) build(ctx context.Context, rules *Rules, old *state) (*state, error) {
	st := &state{rules: rules, verifiers: map[string]Verifier{}}
	var created []Verifier
	for i := range rules.Routes {
		r := &rules.Routes[i]
		if r.Public {
			continue
		}
		api := r.Audience(rules)
		if _, ok := st.verifiers[api]; ok {
			continue
		}
		if old != nil {
			if v, ok := old.verifiers[api]; ok {
				st.verifiers[api] = v
				continue
			}
		}
		v, err := p.cfg.NewVerifier(ctx, api)
		if err != nil {
			for _, c := range created {
				c.Close()
			}
			return nil, fmt.Errorf("proxy: verifier for api %q (route %s): %w", api, r.Name, err)
		}
		created = append(created, v)
		st.verifiers[api] = v
	}
	st.strip = rules.Headers.names()
	return st, nil
}

// Reload replaces the rules. If a verifier for a new API cannot be made,
// the old rules stay and the error says why.
func (p *Proxy) Reload(ctx context.Context, rules *Rules) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: closed")
	}
	old := p.state.Load()
	st, err := p.build(ctx, rules, old)
	if err != nil {
		p.metrics.reloads.WithLabelValues("error").Inc()
		return err
	}
	p.state.Store(st)
	p.metrics.reloads.WithLabelValues("ok").Inc()
	for api, v := range old.verifiers {
		if st.verifiers[api] != v {
			v.Close()
		}
	}
	return nil
}

// ReloadFile reads the route file at path and puts its rules in force, as
// Reload does. A file that cannot be read or does not parse is refused
// like a verifier that cannot start: the rules in force stay, and the
// failure is counted as a reload with result "error".
func (p *Proxy) ReloadFile(ctx context.Context, path string) (*Rules, error) {
	rules, err := LoadRules(path)
	if err != nil {
		p.metrics.reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	if err := p.Reload(ctx, rules); err != nil {
		return nil, err
	}
	return rules, nil
}

// Close closes every verifier (and so their revocation subscriptions).
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, v := range p.state.Load().verifiers {
		errs = append(errs, v.Close())
	}
	return errors.Join(errs...)
}

// Rules returns the rules in force.
func (p *Proxy) Rules() *Rules { return p.state.Load().rules }

// routeKey carries the matched route to rewrite and modifyResponse.
type routeKey struct{}

// ServeHTTP checks the request against the rules and forwards it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Let the upstream's answer stream back while the request body is
	// still being forwarded (HTTP/1 otherwise ends reading at the first
	// response write).
	_ = http.NewResponseController(w).EnableFullDuplex()
	sw := &statusWriter{ResponseWriter: w}
	routeName := "unmatched"
	defer func() {
		p.metrics.observe(routeName, sw.code(), time.Since(start))
	}()

	// Routes name methods in upper case and match them exactly, but some
	// upstreams (Django, Flask, Rails) upper-case the method they get:
	// "delete" would skip a DELETE route here and be served as DELETE
	// there.
	if !validMethod(r.Method) {
		p.deny(sw, "bad_method", &verify.Error{Code: "invalid_request", Description: "the method must be an upper-case token, such as GET", Status: http.StatusBadRequest})
		return
	}
	if msg := pathProblem(r); msg != "" {
		p.deny(sw, "bad_path", &verify.Error{Code: "invalid_request", Description: msg, Status: http.StatusBadRequest})
		return
	}
	st := p.state.Load()
	route, err := st.rules.Match(r.Method, r.URL.Path)
	switch {
	case errors.Is(err, ErrAmbiguousRoute):
		// Refused whatever the default: either route may be the one the
		// upstream serves.
		p.refuse(sw, "ambiguous_route", http.StatusForbidden, "access_denied",
			"the path with and without its trailing slash match different routes")
		return
	case err != nil && st.rules.Default == Deny:
		p.refuse(sw, "no_route", http.StatusForbidden, "access_denied", "no route allows this request")
		return
	case err == nil:
		routeName = route.Name
	}
	ctx := context.WithValue(r.Context(), routeKey{}, st)
	if route != nil && !route.Public {
		v := st.verifiers[route.Audience(st.rules)]
		vr := r
		if ip := p.clientIP(r); ip.IsValid() {
			c := *r
			c.RemoteAddr = netip.AddrPortFrom(ip, 0).String()
			vr = &c
		}
		claims, err := v.VerifyRequest(vr, route.Scopes...)
		if err != nil {
			p.deny(sw, denyReason(err), err)
			return
		}
		ctx = verify.NewContext(ctx, claims)
	}
	p.rp.ServeHTTP(sw, r.WithContext(ctx))
}

// deny answers a request the token check (or the request's form)
// refused, as RFC 6750 §3 says, and counts it under reason.
func (p *Proxy) deny(w http.ResponseWriter, reason string, err error) {
	p.metrics.denied.WithLabelValues(reason).Inc()
	verify.WriteError(w, err)
}

// refuse answers a request the routes do not allow, whatever its token,
// and counts it under reason. It sends no WWW-Authenticate challenge:
// another token would not help, and code is not one of the RFC 6750 §3.1
// codes a Bearer challenge may carry.
func (p *Proxy) refuse(w http.ResponseWriter, reason string, status int, code, desc string) {
	p.metrics.denied.WithLabelValues(reason).Inc()
	writeError(w, status, code, desc)
}

// denyReason is the jeton_proxy_denied_total reason for a verifier error:
// no_token for a request without a bearer token (which has no RFC 6750
// error code), the error code otherwise, and "error" for an error that
// has none.
func denyReason(err error) string {
	if errors.Is(err, verify.ErrNoToken) {
		return "no_token"
	}
	var ve *verify.Error
	if errors.As(err, &ve) && ve.Code != "" {
		return ve.Code
	}
	return "error"
}

// writeError writes one of the proxy's own error answers, with the body
// verify.WriteError writes: {"error": code, "error_description": desc}.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, desc})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// pathProblem says why a request path cannot be forwarded safely, or "".
// The rules match the decoded path; the upstream must see the same one, so
// dot segments, empty segments, encoded slashes and backslashes, control
// characters and semicolons are refused rather than guessed at.
//
// A ';' (or "%3B") is refused outright, as Spring Security's
// StrictHttpFirewall does by default. Servlet containers (Tomcat, Jetty,
// Spring's UrlPathHelper) cut each segment at ';' before routing, and
// everyone else reads it as a literal character; the proxy cannot know
// which its upstream does, and the two readings route differently:
// "/public/..;/repos/a" is "/repos/a" to Tomcat, and "/repos;x/a/settings"
// is "/repos/a/settings" while its first segment here is not "repos", so
// it would skip a "/repos/*/settings" route. Refusing only dot segments
// would leave the second case open, and matching both readings would
// still depend on how each container treats "%3B" and empty parameters.
// Matrix parameters and ";jsessionid" are rare in APIs behind a token
// gateway.
func pathProblem(r *http.Request) string {
	p := r.URL.Path
	if p == "" || p[0] != '/' {
		return "the request target must be an absolute path"
	}
	if CleanPath(p) != p {
		return "the path must not contain empty, '.' or '..' segments"
	}
	for i := 0; i < len(p); i++ {
		if p[i] < ' ' || p[i] == 0x7f || p[i] == '\\' {
			return "the path contains a control character or a backslash"
		}
		if p[i] == ';' {
			return "the path must not contain ';' (path parameters)"
		}
	}
	if raw := r.URL.RawPath; raw != "" {
		l := strings.ToLower(raw)
		if strings.Contains(l, "%2f") || strings.Contains(l, "%5c") {
			return "the path must not contain encoded slashes"
		}
	}
	return ""
}

// clientIP is the address of the client: the peer, or when the peer is a
// trusted proxy, the rightmost X-Forwarded-For hop that is not one.
func (p *Proxy) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !p.trusted(ip) {
		return ip
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip // a garbled chain: trust no further than the peer
			}
			a = a.Unmap()
			if !p.trusted(a) {
				return a
			}
			ip = a
		}
	}
	return ip
}

func (p *Proxy) trusted(ip netip.Addr) bool {
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// rewrite builds the upstream request: the upstream URL, X-Forwarded-*,
// X-Real-IP, no Authorization, no client-sent identity headers, and the
// verified identity.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.cfg.Upstream)
	in, out := pr.In, pr.Out
	// Other spellings of the forwarding headers (X_Real_IP) would reach
	// applications as the headers themselves (see identityHeader) beside
	// the values set below: none is passed on.
	for name := range out.Header {
		for _, h := range forwardingHeaders {
			if name != h && headerNameEqual(name, h) {
				delete(out.Header, name)
			}
		}
		for _, h := range overrideHeaders {
			if headerNameEqual(name, h) {
				delete(out.Header, name)
			}
		}
	}
	peer, _ := netip.ParseAddrPort(in.RemoteAddr)
	if p.trusted(peer.Addr().Unmap()) {
		// ReverseProxy removed these from out; a trusted proxy's chain is
		// kept and extended.
		if v := in.Header.Values("X-Forwarded-For"); len(v) > 0 {
			out.Header["X-Forwarded-For"] = v
		}
		pr.SetXForwarded()
		for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := in.Header.Get(h); v != "" {
				out.Header.Set(h, v)
			}
		}
	} else {
		pr.SetXForwarded()
		out.Header.Del("Forwarded")
	}
	// X-Real-IP, which many applications read, is the client's address
	// as the proxy resolved it, never what the client claims.
	out.Header.Del("X-Real-Ip")
	if ip := p.clientIP(in); ip.IsValid() {
		out.Header.Set("X-Real-Ip", ip.String())
	}
	out.Header.Del("Authorization")
	st, _ := in.Context().Value(routeKey{}).(*state)
	for name := range out.Header {
		if st.identityHeader(name) {
			delete(out.Header, name)
		}
	}
	claims, ok := verify.FromContext(in.Context())
	if !ok || st == nil {
		return
	}
	h := st.rules.Headers
	set := func(name, v string) {
		if name != "" && v != "" {
			out.Header.Set(name, headerValue(v))
		}
	}
	set(h.Subject, claims.Subject)
	set(h.Scopes, strings.Join(claims.Scopes, " "))
	set(h.TokenID, claims.TokenID)
	set(h.ClientID, claims.ClientID)
}

// forwardingHeaders are the headers in which the proxy tells the upstream
// who the client is, in their canonical spelling.
var forwardingHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "Forwarded"}

// overrideHeaders are headers with which frameworks let a request say it
// has another method or path than the one it was sent with (Express's
// method-override, Symfony, IIS, Spring). The routes decide on the method
// and path the proxy saw, so a client-sent one would let a request the
// routes allowed act as one they did not: none is passed on.
var overrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
	"X-Original-URL", "X-Rewrite-URL", "X-Original-Method"}

// identityHeader reports whether a client-sent header named name must not
// reach the upstream: its name starts with "X-Jeton-" or is one of the
// identity headers of st (which may be nil), compared without regard to
// case and with '_' taken for '-'. CGI, WSGI and Rack turn both
// "X-Jeton-Subject" and "X_Jeton_Subject" into HTTP_X_JETON_SUBJECT, so
// either spelling would pass for the identity the proxy sets.
func (st *state) identityHeader(name string) bool {
	const prefix = "X-Jeton-"
	if len(name) >= len(prefix) && headerNameEqual(name[:len(prefix)], prefix) {
		return true
	}
	if st == nil {
		return false
	}
	for _, s := range st.strip {
		if headerNameEqual(name, s) {
			return true
		}
	}
	return false
}

// headerNameEqual reports whether header names a and b are equal under
// ASCII case folding, with '_' and '-' taken as the same character.
func headerNameEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// headerValue makes v safe as a header value: bytes outside printable
// ASCII and '%' itself are percent-encoded, so a subject can never split a
// header or smuggle another.
func headerValue(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// modifyResponse tells the client its rate limit (RateLimit-* headers, as
// in the IETF httpapi draft) when the key has one.
func (p *Proxy) modifyResponse(res *http.Response) error {
	claims, ok := verify.FromContext(res.Request.Context())
	if !ok || claims.RateLimit == nil {
		return nil
	}
	verify.SetRateLimitHeaders(res.Header, claims.RateLimit)
	return nil
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		w.WriteHeader(499)
		return
	}
	p.metrics.upstreamErrors.Inc()
	status, code, msg := http.StatusBadGateway, "bad_gateway", "the upstream could not be reached"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status, code, msg = http.StatusGatewayTimeout, "gateway_timeout", "the upstream did not answer in time"
	}
	p.cfg.Logger.Warn("upstream request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, status, code, msg)
}

// copyBuffers reuses the buffers that copy bodies; without it every
// request allocates (and the GC clears) 32 KiB.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (copyBuffers) Get() []byte { return copyBufferPool.Get().(*[32 << 10]byte)[:] }

func (copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		copyBufferPool.Put((*[32 << 10]byte)(b[:32<<10]))
	}
}

// statusWriter records the status code for metrics; Unwrap lets
// http.ResponseController reach Flush and Hijack underneath, which
// streaming and protocol upgrades need.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 || s.status < 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack records a protocol switch (WebSocket) and hands over the
// connection.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil {
		s.status = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
