package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// JWKS caching bounds.
const (
	jwksDefaultTTL = 5 * time.Minute
	jwksMinTTL     = time.Minute
	jwksMaxTTL     = time.Hour
	// jwksUnknownKidEvery rate-limits the refreshes an unknown "kid"
	// triggers, so that tokens with made-up kids cannot make this Verifier
	// hammer the JWKS endpoint.
	jwksUnknownKidEvery = 10 * time.Second
	// jwksRetryMin and jwksRetryMax bound the background retry backoff
	// after a failed refresh.
	jwksRetryMin = 5 * time.Second
	jwksRetryMax = time.Minute
)

// publicKey is a JWKS key usable for verification, pinned to one
// algorithm.
type publicKey struct {
	kid string
	alg jose.SignatureAlgorithm
	key any // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
}

// keyState is one fetched JWKS.
type keyState struct {
	keys      map[string]*publicKey
	etag      string
	refreshAt time.Time // when the background refresh is due (wall clock)
}

// keySet is the issuer's JSON Web Key Set (RFC 7517 §5), fetched from the
// metadata's jwks_uri, cached for its Cache-Control max-age and refreshed
// in the background before it expires, and on demand (rate-limited,
// single-flight) when a token names an unknown kid. A failed refresh keeps
// the keys already known.
type keySet struct {
	v     *Verifier
	url   string
	state atomic.Pointer[keyState]

	mu           sync.Mutex
	flight       *keyFlight // the refresh in progress, if any
	lastOnDemand time.Time  // start of the last refresh an unknown kid caused
}

// keyFlight is one JWKS fetch that concurrent callers wait for.
type keyFlight struct {
	done chan struct{}
	err  error
}

func newKeySet(v *Verifier, url string) *keySet {
	return &keySet{v: v, url: url}
}

// load fetches the JWKS for the first time.
func (s *keySet) load(ctx context.Context) error {
	if err := s.fetch(ctx); err != nil {
		return fmt.Errorf("verify: fetch the JWKS: %w", err)
	}
	if len(s.state.Load().keys) == 0 {
		s.v.cfg.Logger.Warn("verify: the JWKS has no usable signing key", "jwks_uri", s.url,
			"algorithms", strings.Join(s.v.cfg.Algorithms, ","))
	}
	return nil
}

// get returns the key kid names, refreshing the set (at most once per
// jwksUnknownKidEvery, and once for all concurrent callers) if it is
// unknown. It returns nil if there is no such key, and an error only if
// the refresh it waited for failed.
func (s *keySet) get(ctx context.Context, kid string) (*publicKey, error) {
	if k := s.state.Load().keys[kid]; k != nil {
		return k, nil
	}
	s.mu.Lock()
	// Another caller's refresh may have brought the key in the meantime.
	if k := s.state.Load().keys[kid]; k != nil {
		s.mu.Unlock()
		return k, nil
	}
	f := s.flight
	if f == nil {
		now := s.v.cfg.Now()
		if !s.lastOnDemand.IsZero() && now.Sub(s.lastOnDemand) < jwksUnknownKidEvery {
			s.mu.Unlock()
			return nil, nil
		}
		s.lastOnDemand = now
		f = s.startLocked()
	}
	s.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if k := s.state.Load().keys[kid]; k != nil {
		return k, nil
	}
	return nil, f.err
}

// startLocked starts a refresh; s.mu is held.
func (s *keySet) startLocked() *keyFlight {
	f := &keyFlight{done: make(chan struct{})}
	s.flight = f
	go func() {
		// The fetch is not tied to any one caller's context: others wait
		// for it too. It is bounded by requestTimeout and by Close.
		f.err = s.fetch(s.v.ctx)
		s.mu.Lock()
		s.flight = nil
		s.mu.Unlock()
		close(f.done)
	}()
	return f
}

// refresh fetches the set now, joining a refresh in progress.
func (s *keySet) refresh(ctx context.Context) error {
	s.mu.Lock()
	f := s.flight
	if f == nil {
		f = s.startLocked()
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refreshLoop refreshes the set when 80% of its max-age has passed, and
// retries with backoff after a failure, until ctx ends.
func (s *keySet) refreshLoop(ctx context.Context) {
	backoff := jwksRetryMin
	for {
		t := time.NewTimer(time.Until(s.state.Load().refreshAt))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if time.Now().Before(s.state.Load().refreshAt) {
			continue // refreshed on demand meanwhile
		}
		if err := s.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.v.cfg.Logger.Warn("verify: JWKS refresh failed; keeping the known keys", "jwks_uri", s.url, "err", err)
			old := s.state.Load()
			st := *old
			st.refreshAt = time.Now().Add(backoff)
			s.state.CompareAndSwap(old, &st)
			backoff = min(backoff*2, jwksRetryMax)
			continue
		}
		backoff = jwksRetryMin
	}
}

// fetch GETs the JWKS and installs it. A 304 answer to If-None-Match
// extends the current set.
func (s *keySet) fetch(ctx context.Context) error {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	hdr := http.Header{}
	old := s.state.Load()
	if old != nil && old.etag != "" {
		hdr.Set("If-None-Match", old.etag)
	}
	status, err := s.v.getJSON(ctx, s.url, "", maxJWKSSize, &raw, hdr)
	if err != nil {
		return err
	}
	refreshAt := time.Now().Add(maxAge(hdr.Get("Cache-Control")) * 4 / 5)
	if status == http.StatusNotModified && old != nil {
		st := *old
		st.refreshAt = refreshAt
		s.state.Store(&st)
		return nil
	}
	if raw.Keys == nil {
		return errors.New("the JWKS has no \"keys\" member")
	}
	st := &keyState{keys: make(map[string]*publicKey, len(raw.Keys)), etag: hdr.Get("ETag"), refreshAt: refreshAt}
	for _, r := range raw.Keys {
		k, err := s.parseKey(r)
		if err != nil {
			s.v.cfg.Logger.Debug("verify: JWKS key skipped", "err", err)
			continue
		}
		if k == nil {
			continue
		}
		if _, dup := st.keys[k.kid]; dup {
			// Two keys under one kid: neither can be chosen safely.
			s.v.cfg.Logger.Warn("verify: JWKS has two keys with one kid; ignoring both", "kid", k.kid)
			st.keys[k.kid] = nil
			continue
		}
		st.keys[k.kid] = k
	}
	for kid, k := range st.keys {
		if k == nil {
			delete(st.keys, kid)
		}
	}
	s.state.Store(st)
	return nil
}

// parseKey returns the verification key of one JWK, or nil (and maybe an
// error saying why) when it cannot verify our tokens: not for signatures,
// no kid, a symmetric or private key, or an algorithm not accepted.
func (s *keySet) parseKey(raw json.RawMessage) (*publicKey, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("parse JWK: %w", err)
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return nil, nil
	}
	if jwk.KeyID == "" {
		return nil, errors.New("JWK without kid")
	}
	if !jwk.IsPublic() {
		return nil, fmt.Errorf("JWK %s is not a public key", jwk.KeyID)
	}
	alg := jose.SignatureAlgorithm(jwk.Algorithm)
	if alg == "" {
		alg = defaultAlg(jwk.Key)
	}
	if !keyFits(jwk.Key, alg) {
		return nil, fmt.Errorf("JWK %s: key type does not fit algorithm %q", jwk.KeyID, alg)
	}
	allowed := false
	for _, a := range s.v.algs {
		allowed = allowed || a == alg
	}
	if !allowed {
		return nil, nil
	}
	return &publicKey{kid: jwk.KeyID, alg: alg, key: jwk.Key}, nil
}

// defaultAlg is the algorithm a JWK without "alg" is pinned to: the only
// one its key type allows (RS256 for RSA, the common choice).
func defaultAlg(key any) jose.SignatureAlgorithm {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256
		case elliptic.P384():
			return jose.ES384
		case elliptic.P521():
			return jose.ES512
		}
	case *rsa.PublicKey:
		return jose.RS256
	case ed25519.PublicKey:
		return jose.EdDSA
	}
	return ""
}

// keyFits reports whether key can verify alg signatures (RFC 7518 §3).
func keyFits(key any, alg jose.SignatureAlgorithm) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return defaultAlg(k) == alg
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return k.N.BitLen() >= 2048
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// maxAge returns the JWKS lifetime from a Cache-Control header: its
// max-age clamped to [1 min, 1 h], or 5 minutes without one.
func maxAge(cc string) time.Duration {
	for part := range strings.SplitSeq(cc, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !strings.EqualFold(name, "max-age") {
			continue
		}
		n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
		if err != nil || n < 0 {
			break
		}
		return min(max(time.Duration(min(n, 1<<31))*time.Second, jwksMinTTL), jwksMaxTTL)
	}
	return jwksDefaultTTL
}
