package verify_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/verify"
)

func TestVerifyJWT(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	rs := newSigner(t, "RS256", "k-rsa")
	ed := newSigner(t, "EdDSA", "k-ed")
	f.addSigner(rs)
	f.addSigner(ed)
	v := f.newVerifier(t, nil)
	now := f.clock.Now()

	// HMAC keyed with the public key, in the forms a confused verifier
	// might use as the secret.
	ecDER, _ := x509.MarshalPKIXPublicKey(es.priv.Public())
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})
	rsDER, _ := x509.MarshalPKIXPublicKey(rs.priv.Public())
	rsPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsDER})
	jwkJSON, _ := json.Marshal(es.jwk(false))
	forged := func(alg, kid string, key []byte) string {
		return signJWT(t, map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"},
			map[string]any{"iss": f.URL, "sub": "usr_1", "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, nil, key)
	}
	attacker := newSigner(t, "ES256", "k1")
	valid := f.mint(t, es, nil, nil)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64([]byte(`{"iss":"`+f.URL+`","sub":"admin","aud":"`+testAudience+`","exp":9999999999,"jti":"tok_1"}`)) + "." + parts[2]
	setHdr := func(k string, val any) func(map[string]any) { return func(m map[string]any) { m[k] = val } }
	setClaim := setHdr

	tests := []struct {
		name   string
		token  string
		scopes []string
		want   error // nil: accepted
		code   string
	}{
		{"ES256", valid, []string{"repos:read"}, nil, ""},
		{"RS256", f.mint(t, rs, nil, nil), nil, nil, ""},
		{"EdDSA", f.mint(t, ed, nil, nil), []string{"repos:read", "repos:write"}, nil, ""},
		{"typ application/at+jwt", f.mint(t, es, setHdr("typ", "application/at+jwt"), nil), nil, nil, ""},
		{"typ in upper case", f.mint(t, es, setHdr("typ", "AT+JWT"), nil), nil, nil, ""},
		{"aud array", f.mint(t, es, nil, setClaim("aud", []string{"https://other", testAudience})), nil, nil, ""},
		{"exp within leeway", f.mint(t, es, nil, setClaim("exp", now.Add(-20*time.Second).Unix())), nil, nil, ""},
		{"nbf within leeway", f.mint(t, es, nil, setClaim("nbf", now.Add(20*time.Second).Unix())), nil, nil, ""},

		{"alg none", signJWT(t, map[string]any{"alg": "none", "kid": "k1", "typ": "at+jwt"}, map[string]any{"iss": f.URL, "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, nil, nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"alg None", signJWT(t, map[string]any{"alg": "None", "kid": "k1", "typ": "at+jwt"}, map[string]any{"iss": f.URL, "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, nil, nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"HS256 keyed with the EC public key (PEM)", forged("HS256", "k1", ecPEM), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"HS256 keyed with the EC public key (DER)", forged("HS256", "k1", ecDER), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"HS256 keyed with the JWK", forged("HS256", "k1", jwkJSON), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"HS256 keyed with the RSA public key", forged("HS256", "k-rsa", rsPEM), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"wrong typ JWT", f.mint(t, es, setHdr("typ", "JWT"), nil), nil, verify.ErrWrongType, "invalid_token"},
		{"no typ", f.mint(t, es, setHdr("typ", nil), nil), nil, verify.ErrWrongType, "invalid_token"},
		{"typ at+jwt+extra", f.mint(t, es, setHdr("typ", "application/at+jwt; x"), nil), nil, verify.ErrWrongType, "invalid_token"},
		{"wrong iss", f.mint(t, es, nil, setClaim("iss", "https://evil.example")), nil, verify.ErrWrongIssuer, "invalid_token"},
		{"iss with trailing slash", f.mint(t, es, nil, setClaim("iss", f.URL+"/")), nil, verify.ErrWrongIssuer, "invalid_token"},
		{"wrong aud", f.mint(t, es, nil, setClaim("aud", "https://other.example")), nil, verify.ErrWrongAudience, "invalid_token"},
		{"no aud", f.mint(t, es, nil, setClaim("aud", nil)), nil, verify.ErrWrongAudience, "invalid_token"},
		{"expired", f.mint(t, es, nil, setClaim("exp", now.Add(-time.Minute).Unix())), nil, verify.ErrExpired, "invalid_token"},
		{"no exp", f.mint(t, es, nil, setClaim("exp", nil)), nil, verify.ErrMalformed, "invalid_token"},
		{"exp as a string", f.mint(t, es, nil, setClaim("exp", "9999999999")), nil, verify.ErrMalformed, "invalid_token"},
		{"no jti", f.mint(t, es, nil, setClaim("jti", nil)), nil, verify.ErrMalformed, "invalid_token"},
		{"nbf in the future", f.mint(t, es, nil, setClaim("nbf", now.Add(time.Minute).Unix())), nil, verify.ErrNotYetValid, "invalid_token"},
		{"iat in the future", f.mint(t, es, nil, setClaim("iat", now.Add(time.Minute).Unix())), nil, verify.ErrNotYetValid, "invalid_token"},
		{"tampered payload", tampered, nil, verify.ErrInvalidSignature, "invalid_token"},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(f.mint(t, es, nil, setClaim("sub", "x")), ".")[2], nil, verify.ErrInvalidSignature, "invalid_token"},
		{"unknown kid", f.mint(t, es, setHdr("kid", "nope"), nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"no kid", f.mint(t, es, setHdr("kid", nil), nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"RS256 with the kid of the ES256 key", signJWT(t, map[string]any{"alg": "RS256", "kid": "k1", "typ": "at+jwt"}, map[string]any{"iss": f.URL, "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, rs.priv, nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"EdDSA with the kid of the RSA key", signJWT(t, map[string]any{"alg": "EdDSA", "kid": "k-rsa", "typ": "at+jwt"}, map[string]any{"iss": f.URL, "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, ed.priv, nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"PS256 (same key type) with the RSA kid", signJWT(t, map[string]any{"alg": "PS256", "kid": "k-rsa", "typ": "at+jwt"}, map[string]any{"iss": f.URL, "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, rs.priv, nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"crit header", f.mint(t, es, setHdr("crit", []string{"exp"}), nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"b64 header", f.mint(t, es, setHdr("b64", true), nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"embedded jwk of the attacker's key", signJWT(t, map[string]any{"alg": "ES256", "kid": "k1", "typ": "at+jwt", "jwk": attacker.jwk(false)},
			map[string]any{"iss": f.URL, "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, attacker.priv, nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"jku header", signJWT(t, map[string]any{"alg": "ES256", "kid": "k1", "typ": "at+jwt", "jku": "https://evil.example/jwks"},
			map[string]any{"iss": f.URL, "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "jti": "tok_1"}, attacker.priv, nil), nil, verify.ErrInvalidSignature, "invalid_token"},
		{"header not JSON", b64([]byte("nope")) + "." + parts[1] + "." + parts[2], nil, verify.ErrMalformed, "invalid_token"},
		{"bad base64", "a.b.c", nil, verify.ErrMalformed, "invalid_token"},
		{"claims not an object", jwtWithPayload(t, es, `["x"]`), nil, verify.ErrMalformed, "invalid_token"},
		{"insufficient scope", valid, []string{"repos:read", "repos:admin"}, verify.ErrInsufficientScope, "insufficient_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.Verify(context.Background(), tt.token, tt.scopes...)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Kind != verify.KindJWT || c.Subject != "usr_1" || c.TokenID != "tok_1" {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if c != nil {
				t.Errorf("claims %+v returned with an error", c)
			}
			var e *verify.Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Errorf("error %#v, want code %q", err, tt.code)
			}
		})
	}
}

// jwtWithPayload signs an arbitrary payload with s.
func jwtWithPayload(t testing.TB, s *signer, payload string) string {
	hb, _ := json.Marshal(map[string]any{"alg": s.alg, "kid": s.kid, "typ": "at+jwt"})
	input := b64(hb) + "." + b64([]byte(payload))
	return input + "." + signRaw(t, s.alg, s.priv, nil, input)
}

func TestVerifyJWTClaims(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	v := f.newVerifier(t, nil)
	now := f.clock.Now()
	tok := f.mint(t, es, nil, func(m map[string]any) {
		m["sid"] = "grt_1"
		m["aud"] = []string{testAudience, "https://b"}
		m["scope"] = "a  b c"
	})
	c, err := v.Verify(context.Background(), tok, "b")
	if err != nil {
		t.Fatal(err)
	}
	want := &verify.Claims{Kind: verify.KindJWT, TokenID: "tok_1", Subject: "usr_1", ClientID: "cli_1", GrantID: "grt_1",
		Audience: []string{testAudience, "https://b"}, Scopes: []string{"a", "b", "c"},
		IssuedAt: time.Unix(now.Unix(), 0), ExpiresAt: time.Unix(now.Add(time.Hour).Unix(), 0)}
	if diff := cmp.Diff(c, want); diff != "" {
		t.Errorf("claims (-got +want):\n%s", diff)
	}
	if !c.HasScope("c") || c.HasScope("d") {
		t.Errorf("HasScope wrong for %v", c.Scopes)
	}
}

func TestAlgorithmsConfig(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	rs := newSigner(t, "RS256", "k-rsa")
	f.addSigner(rs)
	v := f.newVerifier(t, func(c *verify.Config) { c.Algorithms = []string{"ES256"} })
	if _, err := v.Verify(context.Background(), f.mint(t, es, nil, nil)); err != nil {
		t.Errorf("ES256: %v", err)
	}
	if _, err := v.Verify(context.Background(), f.mint(t, rs, nil, nil)); !errors.Is(err, verify.ErrInvalidSignature) {
		t.Errorf("RS256 not in Algorithms: got %v", err)
	}
	for _, bad := range [][]string{{"none"}, {"HS256"}, {"ES256", "HS512"}, {"foo"}} {
		if _, err := verify.New(context.Background(), f.config(func(c *verify.Config) { c.Algorithms = bad })); err == nil {
			t.Errorf("Algorithms %v accepted", bad)
		}
	}
}

// TestJWKSKeyFilter: only signature keys with a kid, fitting their alg, and
// allowed, are used; a JWK without "alg" is pinned to its key type's.
func TestJWKSKeyFilter(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	enc := newSigner(t, "ES256", "k-enc")
	oct := json.RawMessage(`{"kty":"oct","kid":"k-oct","alg":"HS256","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}`)
	encJWK := enc.jwk(false)
	encJWK.Use = "enc"
	encRaw, _ := json.Marshal(encJWK)
	mismatch := newSigner(t, "ES256", "k-mismatch")
	mmJWK := mismatch.jwk(false)
	mmJWK.Algorithm = "RS256"
	mmRaw, _ := json.Marshal(mmJWK)
	f.set(func(f *fakeJeton) {
		f.noAlg = true
		f.extraKeys = []json.RawMessage{oct, encRaw, mmRaw, json.RawMessage(`{"kty":"EC","garbage":true}`)}
	})
	v := f.newVerifier(t, nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, f.mint(t, es, nil, nil)); err != nil {
		t.Errorf("key without alg: %v", err)
	}
	encTok := f.mint(t, enc, nil, nil)
	if _, err := v.Verify(ctx, encTok); !errors.Is(err, verify.ErrInvalidSignature) {
		t.Errorf("use=enc key accepted: %v", err)
	}
	hs := signJWT(t, map[string]any{"alg": "HS256", "kid": "k-oct", "typ": "at+jwt"}, map[string]any{"iss": f.URL, "aud": testAudience, "exp": f.clock.Now().Add(time.Hour).Unix(), "jti": "x"}, nil, []byte("secretsecretsecretsecretsecret12"))
	if _, err := v.Verify(ctx, hs); !errors.Is(err, verify.ErrInvalidSignature) {
		t.Errorf("oct key accepted: %v", err)
	}
	if _, err := v.Verify(ctx, f.mint(t, mismatch, nil, nil)); !errors.Is(err, verify.ErrInvalidSignature) {
		t.Errorf("key whose alg does not fit accepted: %v", err)
	}
}

// TestUnknownKidSingleFlight: 100 concurrent requests with a new kid cost
// one JWKS fetch, and all succeed.
func TestUnknownKidSingleFlight(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	v := f.newVerifier(t, nil)
	before := f.jwksCalls.Load()
	k2 := newSigner(t, "ES256", "k2")
	f.addSigner(k2)
	tok := f.mint(t, k2, nil, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Verify with the new kid: %v", err)
		}
	}
	if got := f.jwksCalls.Load() - before; got != 1 {
		t.Errorf("JWKS fetched %d times for 100 concurrent requests, want 1", got)
	}
}

// TestUnknownKidRateLimited: made-up kids refresh the JWKS at most once per
// 10 s.
func TestUnknownKidRateLimited(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	v := f.newVerifier(t, nil)
	ctx := context.Background()
	before := f.jwksCalls.Load()
	for i := range 20 {
		tok := f.mint(t, es, func(h map[string]any) { h["kid"] = "made-up-" + string(rune('a'+i)) }, nil)
		if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrInvalidSignature) {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if got := f.jwksCalls.Load() - before; got != 1 {
		t.Fatalf("20 made-up kids cost %d fetches, want 1", got)
	}
	// A real new key published within the 10 s is found after them.
	k2 := newSigner(t, "ES256", "k2")
	f.addSigner(k2)
	tok := f.mint(t, k2, nil, nil)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrInvalidSignature) {
		t.Fatalf("within 10 s: %v", err)
	}
	f.clock.Advance(10 * time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("after 10 s: %v", err)
	}
	if got := f.jwksCalls.Load() - before; got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
}

// TestJWKSRefreshFailureKeepsKeys: while the JWKS endpoint fails, known keys
// keep verifying and a token with an unknown kid cannot be checked
// (ErrUnavailable, 503), not declared invalid.
func TestJWKSRefreshFailureKeepsKeys(t *testing.T) {
	t.Parallel()
	f, es := newFake(t)
	v := f.newVerifier(t, nil)
	ctx := context.Background()
	f.set(func(f *fakeJeton) { f.jwksStatus = 500 })
	k2 := newSigner(t, "ES256", "k2")
	if _, err := v.Verify(ctx, f.mint(t, k2, nil, nil)); !errors.Is(err, verify.ErrUnavailable) {
		t.Errorf("unknown kid while the JWKS fails: %v, want ErrUnavailable", err)
	}
	if _, err := v.Verify(ctx, f.mint(t, es, nil, nil)); err != nil {
		t.Errorf("known key after a failed refresh: %v", err)
	}
}

func TestNewFailures(t *testing.T) {
	t.Parallel()
	f, _ := newFake(t)
	dead, _ := newFake(t)
	dead.srv.Close()
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(f *fakeJeton)
		edit  func(c *verify.Config)
		want  string
	}{
		{"no issuer", nil, func(c *verify.Config) { c.Issuer = "" }, "Issuer is required"},
		{"issuer not a URL", nil, func(c *verify.Config) { c.Issuer = "auth.example.com" }, "not an http(s) URL"},
		{"no audience", nil, func(c *verify.Config) { c.Audience = "" }, "Audience is required"},
		{"leeway too big", nil, func(c *verify.Config) { c.Leeway = time.Hour }, "Leeway"},
		{"cache TTL too big", nil, func(c *verify.Config) { c.CacheTTL = time.Hour }, "CacheTTL"},
		{"revocations without credential", nil, func(c *verify.Config) { c.Revocations, c.Credential = true, "" }, "Credential"},
		{"unreachable", nil, func(c *verify.Config) { c.Issuer = dead.URL }, "metadata"},
		{"issuer mismatch", func(f *fakeJeton) { f.issuer = "https://elsewhere" }, nil, "RFC 8414 §3.3"},
		{"issuer with trailing slash", nil, func(c *verify.Config) { c.Issuer += "/" }, "RFC 8414 §3.3"},
		{"JWKS fails", func(f *fakeJeton) { f.jwksStatus = 503 }, nil, "JWKS"},
		{"JWKS too large", func(f *fakeJeton) { f.jwksPadding = 1 << 20 }, nil, "too large"},
		{"revocations with a bad credential", nil, func(c *verify.Config) { c.Revocations, c.Credential = true, "jtp_wrong" }, "status 401"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.set(func(f *fakeJeton) { f.issuer, f.jwksStatus, f.jwksPadding = "", 0, 0 })
			if tt.setup != nil {
				f.set(tt.setup)
			}
			v, err := verify.New(ctx, f.config(tt.edit))
			if err == nil {
				v.Close()
				t.Fatalf("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}
