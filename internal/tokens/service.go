// Package tokens issues, verifies, rotates and revokes tokens. Verify is the
// hot path: it parses the token, checks it against a sharded in-memory cache
// (falling back to the store with single-flight), applies expiry, audience,
// address, scope, rate-limit and quota checks, and counts usage in memory
// for batched flushes, so that a cache hit never touches the store.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/jetonhq/jeton/internal/ratelimit"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// Code is the outcome of a verification.
type Code uint8

// Verification outcomes. Their String forms are part of the public API.
// The zero Code is none of them, so that a Result left unset reads as not
// valid: a verification fails closed.
const (
	codeUnset Code = iota
	Valid
	Malformed
	NotFound
	Expired
	Revoked
	InsufficientScope
	WrongAPI
	ForbiddenIP
	RateLimited
	QuotaExceeded
	numCodes
)

var codeNames = [numCodes]string{"unset", "valid", "malformed", "not_found", "expired", "revoked",
	"insufficient_scope", "wrong_api", "forbidden_ip", "rate_limited", "quota_exceeded"}

func (c Code) String() string {
	if c < numCodes {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", c)
}

// Codes lists every outcome, for metrics that want one series per outcome.
func Codes() []Code {
	out := make([]Code, 0, numCodes-Valid)
	for c := Valid; c < numCodes; c++ {
		out = append(out, c)
	}
	return out
}

// Config configures a Service. Zero values are replaced by the documented
// defaults in withDefaults.
type Config struct {
	Store   store.Store       // required
	Limiter ratelimit.Limiter // default: an in-memory limiter
	Logger  *slog.Logger      // default: slog.Default()
	Now     func() time.Time  // default: time.Now

	CacheSize   int           // positive and negative entries; default 1,000,000
	CacheTTL    time.Duration // bound on a positive entry's age; default 30s
	NegativeTTL time.Duration // bound on a negative entry's age; default 5s

	UsageFlushInterval time.Duration // default 10s
	// APIReloadInterval is how often the in-memory copy of every API is
	// read again from the store, to pick up changes made on other nodes
	// (a lowered max_ttl, a new key prefix); default 5s.
	APIReloadInterval time.Duration
	Retention         time.Duration // how long expired/revoked tokens are kept; default 30 days
	// AccessTokenRetention is how long expired or revoked OAuth access
	// tokens are kept; default 24h (they are short-lived and can be issued
	// thousands of times a second). Never longer than Retention.
	AccessTokenRetention time.Duration
	JanitorInterval      time.Duration // default 1h
	JanitorBatch         int           // tokens deleted per transaction; default 500
	// JanitorPause is the janitor's pause between two batches, leaving
	// the store to other writers; default 10ms, negative for none.
	JanitorPause time.Duration

	// OnVerify, if set, is called after every verification (for metrics).
	OnVerify func(Code, time.Duration)
	// OnStoreError, if set, is called when a background store write fails
	// ("flush", "janitor", …) or when this node stops hearing the other
	// nodes' changes ("listen").
	OnStoreError func(op string)
}

func (c Config) withDefaults() Config {
	if c.Limiter == nil {
		c.Limiter = ratelimit.NewMemory()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 1_000_000
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = 30 * time.Second
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = 5 * time.Second
	}
	if c.UsageFlushInterval <= 0 {
		c.UsageFlushInterval = 10 * time.Second
	}
	if c.APIReloadInterval <= 0 {
		c.APIReloadInterval = 5 * time.Second
	}
	if c.Retention <= 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	if c.AccessTokenRetention <= 0 {
		c.AccessTokenRetention = 24 * time.Hour
	}
	if c.JanitorInterval <= 0 {
		c.JanitorInterval = time.Hour
	}
	if c.JanitorBatch <= 0 {
		c.JanitorBatch = 500
	}
	if c.JanitorPause == 0 {
		c.JanitorPause = 10 * time.Millisecond
	}
	return c
}

// Service is the token engine. Create it with New and stop it with Close.
type Service struct {
	cfg    Config
	store  store.Store
	cache  *cache
	flight flight
	usage  *meter
	apis   apiIndex

	// flushMu serialises usage flushes; unsent holds the writes of a
	// failed one, to be sent again as they are, and written the ids of
	// the writes since seen written, for the store to forget (FlushUsage).
	flushMu sync.Mutex
	unsent  []store.UsageFlush
	written []string

	stop      chan struct{}
	cancelSub context.CancelFunc
	wg        sync.WaitGroup
}

// invalidationSource is implemented by stores that tell every node which
// secrets changed on another node (PostgreSQL's LISTEN/NOTIFY).
type invalidationSource interface {
	SubscribeInvalidations(ctx context.Context, onHash func(tokenfmt.Hash), onReset func(), onError func(error))
}

// New returns a running Service: its usage flusher and janitor run in the
// background until Close.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("tokens: no store")
	}
	cfg = cfg.withDefaults()
	s := &Service{
		cfg:    cfg,
		store:  cfg.Store,
		cache:  newCache(cfg.CacheSize, cfg.CacheTTL, cfg.NegativeTTL),
		flight: flight{m: make(map[tokenfmt.Hash]*call)},
		usage:  newMeter(),
		stop:   make(chan struct{}),
	}
	apisChanged := s.apisChanged() // before the first load: see apiReloadLoop
	if err := s.apis.reload(ctx, s.store); err != nil {
		return nil, err
	}
	s.wg.Go(s.flushLoop)
	s.wg.Go(s.janitorLoop)
	s.wg.Go(func() { s.apiReloadLoop(apisChanged) })
	subCtx, cancel := context.WithCancel(context.Background())
	s.cancelSub = cancel
	if src, ok := cfg.Store.(invalidationSource); ok {
		s.wg.Go(func() {
			src.SubscribeInvalidations(subCtx, func(h tokenfmt.Hash) { s.cache.invalidate(h) }, s.cache.clear, s.listenFailed)
		})
	}
	return s, nil
}

// listenFailed reports that this node could not listen for, or stopped
// hearing, the other nodes' changes. Until it listens again a token
// revoked on another node stays valid here for up to the cache's TTL; the
// cache is dropped when it does.
func (s *Service) listenFailed(err error) {
	s.cfg.Logger.Warn("not hearing other nodes' changes; retrying, and this node's token cache is dropped once heard again", "err", err)
	if s.cfg.OnStoreError != nil {
		s.cfg.OnStoreError("listen")
	}
}

// Close stops the background work and flushes counted usage to the store.
func (s *Service) Close(ctx context.Context) error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.cancelSub()
	s.wg.Wait()
	return s.FlushUsage(ctx)
}

// Request is one verification.
type Request struct {
	Token    string
	APIID    string     // required audience; "" accepts any API in AllowedAPIs
	Scopes   []string   // every one must be granted
	ClientIP netip.Addr // checked against the token's allowed CIDRs
	// AllowedAPIs limits which APIs' tokens the caller may verify; nil
	// means any. A token of another API verifies as WrongAPI.
	AllowedAPIs []string
	// NoLimits skips rate limit and quota, for a check that is not a use
	// of the token's budget: userinfo's check of an opaque access token,
	// whose rate limit (none today) would be the client's. Jeton's own
	// admin calls are metered: a rate limit or quota on an admin or verify
	// key caps the caller holding it.
	NoLimits bool
}

// Result is the outcome of Verify. Token is set when the token was
// recognised and is live; it is shared with the cache and must not be
// modified.
type Result struct {
	Code  Code
	Token *store.Token
	// ExpiresAt, set with Token, is when the answer stops being true for
	// the presented secret: the earlier of the token's expiry and, for a
	// secret a rotation replaced, the end of its grace period. Zero for
	// never. A verifier must not cache the answer beyond it.
	ExpiresAt time.Time
	RateLimit *ratelimit.Decision // set when the token has a rate limit and it was checked
	Quota     int64               // remaining quota, when HasQuota
	HasQuota  bool
}

// Valid reports whether the verification succeeded.
func (r *Result) Valid() bool { return r.Code == Valid }

// Verify checks req.Token. Only a store failure is an error; every other
// outcome is a Code.
func (s *Service) Verify(ctx context.Context, req *Request) (Result, error) {
	start := s.cfg.Now()
	res, err := s.verify(ctx, req, start)
	if s.cfg.OnVerify != nil && err == nil {
		s.cfg.OnVerify(res.Code, s.cfg.Now().Sub(start))
	}
	return res, err
}

func (s *Service) verify(ctx context.Context, req *Request, now time.Time) (Result, error) {
	if _, err := tokenfmt.Parse(req.Token); err != nil {
		return Result{Code: Malformed}, nil
	}
	h := tokenfmt.HashOf(req.Token)
	rec, err := s.lookup(ctx, &h, now)
	if err != nil {
		return Result{}, err
	}
	if rec == nil {
		return Result{Code: NotFound}, nil
	}
	tok := &rec.tok
	code := s.check(rec, req, now)
	if code != Valid {
		if code != Revoked && code != Expired {
			s.usage.count(tok.ID, now, req.ClientIP, false)
		}
		res := Result{Code: code}
		if code == InsufficientScope || code == ForbiddenIP {
			res.Token, res.ExpiresAt = tok, rec.expires
		}
		return res, nil
	}
	res := Result{Code: Valid, Token: tok, ExpiresAt: rec.expires}
	if !req.NoLimits {
		if rec.rate.Rate > 0 {
			d, err := s.cfg.Limiter.Allow(ctx, tok.ID, rec.rate, now)
			if err != nil {
				return Result{}, fmt.Errorf("tokens: rate limit: %w", err)
			}
			res.RateLimit = &d
			if !d.Allowed {
				res.Code = RateLimited
			}
		}
		if res.Code == Valid && tok.Quota != nil {
			remaining, ok := s.usage.takeQuota(tok.ID, tok.Quota, now)
			res.Quota, res.HasQuota = remaining, true
			if !ok {
				res.Code = QuotaExceeded
			}
		}
	}
	s.usage.count(tok.ID, now, req.ClientIP, res.Code == Valid)
	return res, nil
}

// check applies the checks that need no counters, in DESIGN order.
func (s *Service) check(rec *record, req *Request, now time.Time) Code {
	tok := &rec.tok
	if !tok.RevokedAt.IsZero() {
		return Revoked
	}
	if !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt) {
		return Expired
	}
	if !rec.secretExpires.IsZero() && !now.Before(rec.secretExpires) {
		return Expired // a rotated-out secret past its grace period
	}
	if req.APIID != "" && tok.APIID != req.APIID {
		return WrongAPI
	}
	if req.AllowedAPIs != nil && !contains(req.AllowedAPIs, tok.APIID) {
		return WrongAPI
	}
	if len(rec.cidrs) > 0 {
		ok := false
		ip := req.ClientIP.Unmap()
		for _, p := range rec.cidrs {
			if p.Contains(ip) {
				ok = true
				break
			}
		}
		if !ok {
			return ForbiddenIP
		}
	}
	for _, sc := range req.Scopes {
		if !contains(tok.Scopes, sc) {
			return InsufficientScope
		}
	}
	return Valid
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// lookup returns the record for h (nil if no such token), from the cache
// or, on a miss, from the store with one load per hash at a time (see
// flight.do for what happens when the request that started it goes away).
func (s *Service) lookup(ctx context.Context, h *tokenfmt.Hash, now time.Time) (*record, error) {
	nowNS := now.UnixNano()
	if rec, ok := s.cache.get(h, nowNS); ok {
		return rec, nil
	}
	key := *h
	// The generation is read before the load is looked for: a load of an
	// earlier one may predate an invalidation this request must see.
	return s.flight.do(ctx, key, s.cache.gen.Load(), func(ctx context.Context, gen uint64) (*record, error) {
		tok, secretExpires, err := s.store.LookupToken(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			s.cache.put(key, nil, gen, nowNS)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tokens: lookup: %w", err)
		}
		rec := newRecord(tok, secretExpires)
		s.cache.put(key, rec, gen, nowNS)
		return rec, nil
	})
}
