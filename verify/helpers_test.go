package verify_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/verify"
)

const (
	testAudience   = "https://api.acme.test"
	testCredential = "jtp_verifycredentialverifycredentialverifyc"
)

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// signer is a signing key of the fake issuer.
type signer struct {
	kid  string
	alg  string
	priv crypto.Signer
}

func newSigner(t testing.TB, alg, kid string) *signer {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no signer for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: alg, priv: priv}
}

// jwk is the public JWK of s, with "alg" unless noAlg.
func (s *signer) jwk(noAlg bool) jose.JSONWebKey {
	k := jose.JSONWebKey{Key: s.priv.Public(), KeyID: s.kid, Algorithm: s.alg, Use: "sig"}
	if noAlg {
		k.Algorithm = ""
	}
	return k
}

// b64 is base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signRaw signs the compact JWS input with alg using key material k (a
// signer, or raw bytes for HMAC); "none" gives an empty signature.
func signRaw(t testing.TB, alg string, priv crypto.Signer, hmacKey []byte, input string) string {
	t.Helper()
	h := sha256.Sum256([]byte(input))
	switch alg {
	case "none", "None":
		return ""
	case "HS256":
		m := hmac.New(sha256.New, hmacKey)
		m.Write([]byte(input))
		return b64(m.Sum(nil))
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return b64(sig)
	case "ES384":
		h := crypto.SHA384.New()
		h.Write([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), h.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 96)
		r.FillBytes(sig[:48])
		s.FillBytes(sig[48:])
		return b64(sig)
	case "RS256":
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return b64(sig)
	case "PS256":
		sig, err := rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, h[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		return b64(sig)
	case "EdDSA":
		return b64(ed25519.Sign(priv.(ed25519.PrivateKey), []byte(input)))
	}
	t.Fatalf("cannot sign %s", alg)
	return ""
}

// mint signs a JWT access token: header and claims start from the
// defaults (typ at+jwt, the fake issuer's claims) and edit functions
// change them (a nil value deletes a member).
func (f *fakeJeton) mint(t testing.TB, s *signer, editHeader, editClaims func(map[string]any)) string {
	t.Helper()
	now := f.clock.Now()
	hdr := map[string]any{"alg": s.alg, "kid": s.kid, "typ": "at+jwt"}
	claims := map[string]any{"iss": f.URL, "sub": "usr_1", "aud": testAudience, "exp": now.Add(time.Hour).Unix(),
		"iat": now.Unix(), "jti": "tok_1", "client_id": "cli_1", "scope": "repos:read repos:write"}
	if editHeader != nil {
		editHeader(hdr)
	}
	if editClaims != nil {
		editClaims(claims)
	}
	return signJWT(t, hdr, claims, s.priv, nil)
}

// signJWT builds a compact JWS from header and claims (nil values
// dropped), signed with the header's alg.
func signJWT(t testing.TB, hdr, claims map[string]any, priv crypto.Signer, hmacKey []byte) string {
	t.Helper()
	for k, v := range hdr {
		if v == nil {
			delete(hdr, k)
		}
	}
	for k, v := range claims {
		if v == nil {
			delete(claims, k)
		}
	}
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	input := b64(hb) + "." + b64(cb)
	alg, _ := hdr["alg"].(string)
	return input + "." + signRaw(t, alg, priv, hmacKey, input)
}

// opaque is the fake /v1/verify answer for one token.
type opaque struct {
	Code       string // default "valid"
	ID         string
	Subject    string
	Scopes     []string
	ExpiresAt  time.Time
	Metadata   string
	RateLimit  *[3]int64 // limit, remaining, reset
	Quota      *int64
	RetryAfter string
}

// fakeJeton speaks Jeton's protocol for a resource server: metadata, JWKS,
// POST /v1/verify, GET /v1/revocations and /v1/revocations/stream.
type fakeJeton struct {
	t     testing.TB
	URL   string
	srv   *httptest.Server
	clock *clock

	jwksCalls   atomic.Int64
	verifyCalls atomic.Int64
	pollCalls   atomic.Int64

	mu           sync.Mutex
	issuer       string // metadata issuer; default URL
	signers      []*signer
	extraKeys    []json.RawMessage
	noAlg        bool
	cacheControl string
	jwksStatus   int
	jwksPadding  int // bytes of padding in the JWKS (size limit tests)
	tokens       map[string]opaque
	perToken     map[string]int
	verifyStatus int
	gate         chan struct{} // if set, /v1/verify waits for it to close
	lastVerify   struct {
		Body verifyBody
		XFF  string
		Auth string
	}
	events     []map[string]any
	notify     chan struct{} // closed at every publish
	drop       chan struct{} // closed to drop every stream
	streamDown bool
	streamsUp  int
	lastIDs    []string // Last-Event-ID of each stream request
}

type verifyBody struct {
	Token    string   `json:"token"`
	Scopes   []string `json:"scopes"`
	API      string   `json:"api"`
	ClientIP string   `json:"client_ip"`
}

// newFake starts a fake Jeton with one ES256 key.
func newFake(t testing.TB) (*fakeJeton, *signer) {
	t.Helper()
	f := &fakeJeton{t: t, clock: newClock(), tokens: map[string]opaque{}, perToken: map[string]int{},
		notify: make(chan struct{}), drop: make(chan struct{}), cacheControl: "public, max-age=300"}
	f.srv = httptest.NewServer(f)
	f.URL = f.srv.URL
	t.Cleanup(func() {
		f.dropStreams()
		f.srv.Close()
	})
	s := newSigner(t, "ES256", "k1")
	f.signers = []*signer{s}
	return f, s
}

// newFakeHandler is a fake without a listener, for in-memory transports.
func newFakeHandler(t testing.TB, url string) (*fakeJeton, *signer) {
	f := &fakeJeton{t: t, URL: url, clock: newClock(), tokens: map[string]opaque{}, perToken: map[string]int{},
		notify: make(chan struct{}), drop: make(chan struct{}), cacheControl: "public, max-age=300"}
	s := newSigner(t, "ES256", "k1")
	f.signers = []*signer{s}
	return f, s
}

func (f *fakeJeton) set(fn func(f *fakeJeton)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeJeton) addSigner(s *signer) {
	f.set(func(f *fakeJeton) { f.signers = append(f.signers, s) })
}

// addToken registers an opaque token with the answer /v1/verify gives.
func (f *fakeJeton) addToken(tok string, o opaque) { f.set(func(f *fakeJeton) { f.tokens[tok] = o }) }

func (f *fakeJeton) calls(tok string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.perToken[tok]
}

// publish appends a revocation event and wakes the streams.
func (f *fakeJeton) publish(kind, id string, expires time.Time) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := int64(len(f.events) + 1)
	f.events = append(f.events, map[string]any{"seq": seq, "kind": kind, "id": id, "api": "api_1",
		"revoked_at": f.clock.Now().UTC(), "expires_at": expires.UTC()})
	close(f.notify)
	f.notify = make(chan struct{})
	return seq
}

// dropStreams ends every open stream.
func (f *fakeJeton) dropStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.drop)
	f.drop = make(chan struct{})
}

func (f *fakeJeton) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "GET" && r.URL.Path == "/.well-known/oauth-authorization-server":
		f.mu.Lock()
		iss := f.issuer
		f.mu.Unlock()
		if iss == "" {
			iss = f.URL
		}
		writeJSON(w, 200, map[string]any{"issuer": iss, "jwks_uri": f.URL + "/jwks", "introspection_endpoint": f.URL + "/oauth2/introspect"})
	case r.Method == "GET" && r.URL.Path == "/jwks":
		f.jwks(w)
	case r.Method == "POST" && r.URL.Path == "/v1/verify":
		f.verify(w, r)
	case r.Method == "GET" && r.URL.Path == "/v1/revocations":
		f.poll(w, r)
	case r.Method == "GET" && r.URL.Path == "/v1/revocations/stream":
		f.stream(w, r)
	default:
		writeJSON(w, 404, map[string]any{"error": map[string]any{"code": "not_found", "message": "no such endpoint"}})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeJeton) jwks(w http.ResponseWriter) {
	f.jwksCalls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jwksStatus != 0 {
		writeJSON(w, f.jwksStatus, map[string]any{"error": map[string]any{"code": "broken"}})
		return
	}
	keys := []json.RawMessage{}
	for _, s := range f.signers {
		b, err := json.Marshal(s.jwk(f.noAlg))
		if err != nil {
			f.t.Errorf("marshal JWK: %v", err)
		}
		keys = append(keys, b)
	}
	keys = append(keys, f.extraKeys...)
	body := map[string]any{"keys": keys}
	if f.jwksPadding > 0 {
		body["padding"] = strings.Repeat("x", f.jwksPadding)
	}
	if f.cacheControl != "" {
		w.Header().Set("Cache-Control", f.cacheControl)
	}
	writeJSON(w, 200, body)
}

func (f *fakeJeton) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer "+testCredential {
		writeJSON(w, 401, map[string]any{"error": map[string]any{"code": "unauthorized", "message": "send a Jeton admin token"}})
		return false
	}
	return true
}

func (f *fakeJeton) verify(w http.ResponseWriter, r *http.Request) {
	f.verifyCalls.Add(1)
	if !f.authorized(w, r) {
		return
	}
	var body verifyBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeJSON(w, 400, map[string]any{"error": map[string]any{"code": "invalid_json"}})
		return
	}
	f.mu.Lock()
	f.perToken[body.Token]++
	f.lastVerify.Body = body
	f.lastVerify.XFF = r.Header.Get("X-Forwarded-For")
	gate, status := f.gate, f.verifyStatus
	o, known := f.tokens[body.Token]
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		writeJSON(w, status, map[string]any{"error": map[string]any{"code": "internal", "message": "broken on purpose"}})
		return
	}
	if _, err := tokenfmt.Parse(body.Token); err != nil {
		writeJSON(w, 200, map[string]any{"valid": false, "code": "malformed"})
		return
	}
	if !known {
		writeJSON(w, 200, map[string]any{"valid": false, "code": "not_found"})
		return
	}
	code := o.Code
	if code == "" {
		code = "valid"
		for _, s := range body.Scopes {
			if !contains(o.Scopes, s) {
				code = "insufficient_scope"
			}
		}
	}
	resp := map[string]any{"valid": code == "valid", "code": code}
	if code == "valid" || code == "insufficient_scope" || code == "forbidden_ip" {
		tok := map[string]any{"id": o.ID, "api": "api_1", "subject": o.Subject, "scopes": o.Scopes, "expires_at": nil, "metadata": json.RawMessage("{}")}
		if !o.ExpiresAt.IsZero() {
			tok["expires_at"] = o.ExpiresAt.UTC()
		}
		if o.Metadata != "" {
			tok["metadata"] = json.RawMessage(o.Metadata)
		}
		resp["token"] = tok
	}
	if code == "valid" || code == "rate_limited" || code == "quota_exceeded" {
		if rl := o.RateLimit; rl != nil {
			resp["rate_limit"] = map[string]any{"limit": rl[0], "remaining": rl[1], "reset": rl[2]}
		}
		if o.Quota != nil {
			resp["quota"] = map[string]any{"remaining": *o.Quota}
		}
	}
	if o.RetryAfter != "" {
		w.Header().Set("Retry-After", o.RetryAfter)
	}
	writeJSON(w, 200, resp)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (f *fakeJeton) eventsAfter(after int64, limit int) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, ev := range f.events {
		if ev["seq"].(int64) > after && len(out) < limit {
			out = append(out, ev)
		}
	}
	return out
}

func (f *fakeJeton) poll(w http.ResponseWriter, r *http.Request) {
	f.pollCalls.Add(1)
	if !f.authorized(w, r) {
		return
	}
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 500
	}
	evs := f.eventsAfter(after, limit)
	next := after
	if len(evs) > 0 {
		next = evs[len(evs)-1]["seq"].(int64)
	}
	if evs == nil {
		evs = []map[string]any{}
	}
	writeJSON(w, 200, map[string]any{"revocations": evs, "next": next})
}

func (f *fakeJeton) stream(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	f.mu.Lock()
	down := f.streamDown
	f.lastIDs = append(f.lastIDs, r.Header.Get("Last-Event-ID"))
	if !down {
		f.streamsUp++
	}
	f.mu.Unlock()
	if down {
		writeJSON(w, 503, map[string]any{"error": map[string]any{"code": "unavailable", "message": "down on purpose"}})
		return
	}
	defer f.set(func(f *fakeJeton) { f.streamsUp-- })
	after, _ := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)
	if a := r.URL.Query().Get("after"); a != "" && after == 0 {
		after, _ = strconv.ParseInt(a, 10, 64)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	fmt.Fprint(w, ": hello\n\n")
	fl.Flush()
	for {
		f.mu.Lock()
		notify, drop := f.notify, f.drop
		f.mu.Unlock()
		for _, ev := range f.eventsAfter(after, 1<<30) {
			data, _ := json.Marshal(ev)
			after = ev["seq"].(int64)
			fmt.Fprintf(w, "id: %d\nevent: revocation\ndata: %s\n\n", after, data)
		}
		fl.Flush()
		select {
		case <-notify:
		case <-drop:
			// End mid-event, as a broken connection would.
			fmt.Fprintf(w, "id: %d\nevent: revocation\ndata: {\"seq\":", after+1)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// newVerifier starts a Verifier against f; edit adjusts the config.
func (f *fakeJeton) newVerifier(t testing.TB, edit func(*verify.Config)) *verify.Verifier {
	t.Helper()
	cfg := f.config(edit)
	v, err := verify.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("verify.New: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func (f *fakeJeton) config(edit func(*verify.Config)) verify.Config {
	cfg := verify.Config{Issuer: f.URL, Audience: testAudience, Credential: testCredential, Now: f.clock.Now}
	if edit != nil {
		edit(&cfg)
	}
	return cfg
}

// newToken returns a fresh well-formed Jeton token string.
func newToken(t testing.TB, prefix string) string {
	t.Helper()
	tok, err := tokenfmt.Generate(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func debugLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func b64decode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
