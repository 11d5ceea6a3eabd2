package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

// clientAssertionType is the only assertion type accepted (RFC 7523 §2.2).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionAlgs are the algorithms a client may sign its assertion with.
var assertionAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

// maxAssertionLifetime bounds how far in the future a client assertion may
// expire, and so, with assertionLeeway, how long its jti is remembered.
const maxAssertionLifetime = 10 * time.Minute

// assertionLeeway is the clock skew allowed between a client and this
// server on an assertion's exp, nbf and iat. An assertion is accepted until
// exp + assertionLeeway, so its jti is remembered that long too: a shorter
// memory would let it be replayed in the leeway.
const assertionLeeway = 30 * time.Second

// assertionPurgeDelay is how long after its end the janitor leaves an
// assertion's id in the store. The end is what the node that accepted it
// saw, and the janitor reads its own clock: a node whose clock runs behind
// the janitor's still accepts the assertion for the difference, and must
// still find its id. An expired id is recorded anew when used again, so
// keeping it longer changes nothing else.
const assertionPurgeDelay = time.Hour

// Failed client authentications are audited (client.auth_failure) at
// most clientAuthFailuresPerMinute times per address (IPv6: per /64) and
// clientAuthFailuresPerMinuteInAll times in all a minute; each entry says
// how many were not audited before it. They are the one record of someone
// trying a client's old, leaked or guessed credentials.
const (
	clientAuthFailuresPerMinute      = 10
	clientAuthFailuresPerMinuteInAll = 600
	maxAuditedClientID               = 64 // bytes of a presented client_id kept
)

// authenticateClient authenticates the client of a token, device
// authorization or revocation request (RFC 6749 §2.3). Exactly one method
// may be used; it must be the one the client registered. Every
// invalid_client answer is audited, within a budget (auditClientAuthFailure).
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, f form) (_ *cachedClient, err error) {
	var id, secret, method string
	defer func() {
		var e *Error
		if errors.As(err, &e) && e.Code == errInvalidClient {
			s.auditClientAuthFailure(ctx, r, id, method, e.Description)
		}
	}()
	basic := false
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return nil, invalidClient("client authentication must use HTTP Basic, not %s", safeName(scheme))
		}
		basic = true
		uid, pw, ok := parseBasic(rest)
		if !ok {
			return nil, invalidClient("the Basic credentials are malformed")
		}
		id, secret, method = uid, pw, AuthSecretBasic
	}
	methods := 0
	if basic {
		methods++
	}
	if f.get("client_secret") != "" {
		methods++
		id, secret, method = f.get("client_id"), f.get("client_secret"), AuthSecretPost
	}
	if f.get("client_assertion") != "" || f.get("client_assertion_type") != "" {
		methods++
		method = AuthPrivateKeyJWT
	}
	if methods > 1 {
		return nil, badRequest("use exactly one client authentication method (RFC 6749 §2.3)")
	}
	if methods == 0 {
		id, method = f.get("client_id"), AuthNone
		if id == "" {
			return nil, invalidClient("client authentication is required")
		}
	}
	if method == AuthPrivateKeyJWT {
		var err error
		if id, err = s.assertionClientID(f); err != nil {
			return nil, err
		}
	}
	if fid := f.get("client_id"); fid != "" && fid != id {
		return nil, invalidClient("client_id does not match the authenticated client")
	}
	e, err := s.client(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidClient("unknown client or wrong credentials")
	}
	if err != nil {
		return nil, err
	}
	c := &e.client
	now := s.cfg.Now()
	switch {
	case !c.DisabledAt.IsZero():
		return nil, invalidClient("the client is disabled")
	case c.AuthMethod != method:
		return nil, invalidClient("the client is registered for %s, not %s", c.AuthMethod, method)
	}
	switch method {
	case AuthSecretBasic, AuthSecretPost:
		if !e.checkSecret(secret, now) {
			return nil, invalidClient("unknown client or wrong credentials")
		}
	case AuthPrivateKeyJWT:
		if err := s.checkAssertion(ctx, c, f.get("client_assertion"), now); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// auditClientAuthFailure records a failed authentication of client id
// (as presented: it may name no client) by method, for the reason the
// answer gave, unless the address or everyone used up the audit budget.
// A failure to record it is logged: the answer does not depend on it.
func (s *Server) auditClientAuthFailure(ctx context.Context, r *http.Request, id, method, reason string) {
	ip := s.cfg.ClientIP(r)
	suppressed, ok := s.authLog.Take(ip, s.cfg.Now())
	if !ok {
		return
	}
	id = tokens.TruncateUTF8(id, maxAuditedClientID)
	details := map[string]any{"reason": reason}
	if method != "" {
		details["method"] = method
	}
	if suppressed > 0 {
		details["suppressed"] = suppressed // failures not audited before this one
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.AppendAudit(ctx, s.event(tokens.Actor{ID: "anonymous", RemoteAddr: ip.String()}, "client.auth_failure", id, details)); err != nil {
		s.log.Error("oauth: audit failed client authentication", "err", err)
	}
}

// parseBasic decodes RFC 7617 credentials whose parts are form-URL-encoded
// as RFC 6749 §2.3.1 requires.
func parseBasic(b64 string) (id, secret string, ok bool) {
	if len(b64) > 1024 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return "", "", false
	}
	uid, pw, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(uid); err != nil {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(pw); err != nil {
		return "", "", false
	}
	return id, secret, id != ""
}

// assertionClientID reads the client id from an unverified client
// assertion (its iss and sub), for the lookup of the key that verifies it.
func (s *Server) assertionClientID(f form) (string, error) {
	if f.get("client_assertion_type") != clientAssertionType {
		return "", invalidClient("client_assertion_type must be %s", clientAssertionType)
	}
	tok, err := jwt.ParseSigned(f.get("client_assertion"), assertionAlgs)
	if err != nil {
		return "", invalidClient("client_assertion is not a signed JWT")
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return "", invalidClient("client_assertion has malformed claims")
	}
	if c.Issuer == "" || c.Issuer != c.Subject {
		return "", invalidClient("client_assertion iss and sub must both be the client_id")
	}
	return c.Issuer, nil
}

// checkAssertion verifies a private_key_jwt client assertion (RFC 7523 §3,
// OIDC Core §9): signature by one of the client's keys, iss = sub =
// client_id, aud naming this server, unexpired, and a jti never seen before.
func (s *Server) checkAssertion(ctx context.Context, c *store.Client, assertion string, now time.Time) error {
	tok, err := jwt.ParseSigned(assertion, assertionAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return invalidClient("client_assertion is not a signed JWT")
	}
	set, err := s.clientKeys(ctx, c, tok.Headers[0].KeyID)
	if err != nil {
		return err
	}
	var claims jwt.Claims
	verified := false
	for i := range set.Keys {
		k := &set.Keys[i]
		if tok.Headers[0].KeyID != "" && k.KeyID != tok.Headers[0].KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != tok.Headers[0].Algorithm {
			continue
		}
		if signingKeyProblem(k) != "" {
			// A jwks_uri document is not checked as a registered jwks
			// is, and may rightly hold keys for encryption; a jwks
			// registered before keys were checked may hold weak ones.
			// Neither kind ever authenticates the client.
			continue
		}
		if err := tok.Claims(k.Key, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return invalidClient("client_assertion signature does not verify with the client's keys")
	}
	aud := []string{s.cfg.Issuer, s.endpoints.token}
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: c.ID, Subject: c.ID, Time: now}, assertionLeeway); err != nil {
		return invalidClient("client_assertion is invalid: %v", err)
	}
	if !slices.ContainsFunc(claims.Audience, func(a string) bool { return slices.Contains(aud, a) }) {
		return invalidClient("client_assertion aud must be the issuer or the token endpoint")
	}
	if claims.Expiry == nil || claims.Expiry.Time().After(now.Add(maxAssertionLifetime)) {
		return invalidClient("client_assertion must expire within %v", maxAssertionLifetime)
	}
	if claims.ID == "" {
		return invalidClient("client_assertion needs a jti")
	}
	// ValidateWithLeeway accepts the assertion up to and including exp +
	// leeway, so its id is forgotten only at the instant after that. The
	// store remembers it, not this node: a replay to another node of the
	// cluster, or after a restart, is refused as well.
	forget := claims.Expiry.Time().Add(assertionLeeway + time.Nanosecond)
	switch err := s.store.UseClientAssertion(ctx, assertionID(c.ID, claims.ID), forget, now); {
	case errors.Is(err, store.ErrUsed):
		return invalidClient("client_assertion was already used")
	case err != nil:
		return fmt.Errorf("oauth: record client assertion: %w", err)
	}
	return nil
}

// assertionID is what the store knows a client assertion by: the hash of
// its client and jti, a fixed size whatever the jti's length.
func assertionID(clientID, jti string) tokenfmt.Hash {
	return tokenfmt.Hash(sha256.Sum256([]byte(clientID + "\x00" + jti)))
}

// jwksCache holds the fetched jwks_uri documents of private_key_jwt
// clients, and when each URI was last tried. Anyone can make the server
// look a client's keys up, by sending an assertion in its name, so a URI
// is fetched at most once every jwksMinRefetch whether the fetch works or
// not, and concurrent lookups of one URI share one fetch.
type jwksCache struct {
	mu sync.Mutex
	m  map[string]*fetchedJWKS
}

// fetchedJWKS is the state of one jwks_uri; jwksCache.mu guards it.
type fetchedJWKS struct {
	set       *jose.JSONWebKeySet // the last good document; nil if none yet
	fetched   time.Time           // when set was fetched
	attempted time.Time           // when the last fetch began, good or not
	err       error               // why the last fetch failed; nil if it did not
	done      chan struct{}       // closed when the fetch in flight ends; nil if none is
}

const (
	jwksTTL         = 5 * time.Minute
	jwksMinRefetch  = 30 * time.Second
	jwksFetchBudget = 5 * time.Second
)

var jwksClient = &http.Client{Timeout: jwksFetchBudget, CheckRedirect: func(*http.Request, []*http.Request) error {
	return errors.New("redirects are not followed")
}}

// clientKeys returns the public keys of a private_key_jwt client: its
// registered jwks, or its jwks_uri document, refetched when stale or when
// kid is unknown, at most every jwksMinRefetch. While the URI fails, the
// last good document stays in use.
func (s *Server) clientKeys(ctx context.Context, c *store.Client, kid string) (*jose.JSONWebKeySet, error) {
	if len(c.JWKS) > 0 {
		set, err := parsePublicJWKS(c.JWKS)
		if err != nil {
			return nil, invalidClient("the client's registered jwks is invalid")
		}
		return set, nil
	}
	uri := c.JWKSURI
	s.jwks.mu.Lock()
	f := s.jwks.m[uri]
	if f == nil {
		if len(s.jwks.m) >= maxCachedClients {
			// A fetch in flight keeps its entry; it is only no longer found.
			clear(s.jwks.m)
		}
		f = &fetchedJWKS{}
		s.jwks.m[uri] = f
	}
	for f.done != nil {
		// Another request is fetching this URI: wait for its answer
		// rather than fetch again.
		done := f.done
		s.jwks.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("oauth: wait for jwks_uri fetch: %w", ctx.Err())
		}
		s.jwks.mu.Lock()
	}
	now := s.cfg.Now()
	switch {
	case f.set != nil && now.Sub(f.fetched) < jwksTTL && (kid == "" || len(f.set.Key(kid)) > 0):
		set := f.set
		s.jwks.mu.Unlock()
		return set, nil
	case !f.attempted.IsZero() && now.Sub(f.attempted) < jwksMinRefetch:
		// Tried too recently (this covers a fetch that just ended while
		// this request waited): answer from what that fetch left.
		set, err := f.set, f.err
		s.jwks.mu.Unlock()
		return jwksAnswer(set, err)
	}
	f.attempted, f.done = now, make(chan struct{})
	s.jwks.mu.Unlock()
	return jwksAnswer(s.jwks.fetch(ctx, f, uri, now))
}

// fetch fetches uri into f, which must have been marked in flight (f.done
// set), and returns f's last good document and the fetch's error.
func (j *jwksCache) fetch(ctx context.Context, f *fetchedJWKS, uri string, now time.Time) (set *jose.JSONWebKeySet, err error) {
	defer func() {
		// Deferred so that waiters are released however the fetch ends.
		j.mu.Lock()
		f.err = err
		if err == nil {
			f.set, f.fetched = set, now
		}
		set = f.set
		close(f.done)
		f.done = nil
		j.mu.Unlock()
	}()
	// The fetch answers every request waiting for it, so the cancellation
	// of the one that started it must not end it; fetchJWKS bounds it.
	set, err = fetchJWKS(context.WithoutCancel(ctx), uri)
	if err != nil {
		return nil, fmt.Errorf("oauth: fetch jwks_uri: %w", err)
	}
	return set, nil
}

// jwksAnswer is the answer of clientKeys from a jwks_uri's last good
// document and its last fetch's error: the document if there is one (a
// failing URI does not lock a client out while its keys are known), else
// invalid_client.
func jwksAnswer(set *jose.JSONWebKeySet, err error) (*jose.JSONWebKeySet, error) {
	if set != nil {
		return set, nil
	}
	if err == nil {
		err = errors.New("oauth: jwks_uri not fetched")
	}
	return nil, &Error{Code: errInvalidClient, Status: http.StatusUnauthorized, Description: "the client's jwks_uri could not be fetched", Err: err}
}

// fetchJWKS gets the JWK set at uri, within jwksFetchBudget and
// maxJWKSBytes, without following redirects.
func fetchJWKS(ctx context.Context, uri string) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchBudget)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := jwksClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_uri answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks_uri document is over %d bytes", maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	return &set, nil
}
