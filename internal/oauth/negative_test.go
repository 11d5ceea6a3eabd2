package oauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/storetest"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
	"github.com/jetonhq/jeton/internal/users"
)

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	pub, _ := e.client(func(p *oauth.ClientParams) { p.Type = store.ClientPublic })
	onlyCode, onlyCodeSecret := e.client(func(p *oauth.ClientParams) { p.GrantTypes = []string{oauth.GrantAuthorizationCode} })
	other := e.apiNamed("billing")
	cc := url.Values{"grant_type": {"client_credentials"}}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		code       string
	}{
		{"wrong secret", cc, c.ID, flipLast(secret), 401, "invalid_client"},
		{"secret of another client", cc, onlyCode.ID, secret, 401, "invalid_client"},
		{"unknown client", cc, "cli_0000000000000000000000", secret, 401, "invalid_client"},
		{"no authentication", cc, "", "", 401, "invalid_client"},
		{"two authentication methods", with(cc, "client_id", c.ID, "client_secret", secret), c.ID, secret, 400, "invalid_request"},
		{"missing grant_type", url.Values{}, c.ID, secret, 400, "invalid_request"},
		{"password grant", with(cc, "grant_type", "password", "username", "alice", "password", "x"), c.ID, secret, 400, "unsupported_grant_type"},
		{"grant not allowed to the client", cc, onlyCode.ID, onlyCodeSecret, 400, "unauthorized_client"},
		{"public client cannot use client credentials", with(cc, "client_id", pub.ID), "", "", 400, "unauthorized_client"},
		{"scope not allowed", with(cc, "scope", "admin"), c.ID, secret, 400, "invalid_scope"},
		{"openid with client credentials", with(cc, "scope", "openid"), c.ID, secret, 400, "invalid_scope"},
		{"api not allowed", with(cc, "resource", other.Identifier), c.ID, secret, 400, "invalid_target"},
		{"unknown resource", with(cc, "resource", "https://nowhere.example.com"), c.ID, secret, 400, "invalid_target"},
		{"garbage code", url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "redirect_uri": {"https://app.example.com/callback"}}, c.ID, secret, 400, "invalid_grant"},
		{"missing code", url.Values{"grant_type": {"authorization_code"}}, c.ID, secret, 400, "invalid_request"},
		{"garbage refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"jtr_x"}}, c.ID, secret, 400, "invalid_grant"},
		{"oversized parameter", with(cc, "scope", strings.Repeat("a", oauth.MaxParamLen+1)), c.ID, secret, 400, "invalid_request"},
		{"oversized body", with(cc, "x", strings.Repeat("a", oauth.MaxFormBytes)), c.ID, secret, 413, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m, h := e.postForm("/oauth2/token", tt.form, tt.user, tt.pass)
			if status != tt.status || m["error"] != tt.code {
				t.Fatalf("got %d %v, want %d %s", status, m, tt.status, tt.code)
			}
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", h.Get("Cache-Control"))
			}
			// RFC 6749 §5.2: Basic, the header scheme the token endpoint
			// takes, whether or not the client used it. Not Bearer: that
			// would ask the client for an access token.
			if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without WWW-Authenticate: Basic (got %q)", h.Get("WWW-Authenticate"))
			}
		})
	}
	// A repeated parameter is refused (RFC 6749 §3.2).
	req, _ := http.NewRequest("POST", e.url+"/oauth2/token", strings.NewReader("grant_type=client_credentials&grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, secret)
	resp, err := http.DefaultClient.Do(req)
	mustf(t, err == nil && resp.StatusCode == 400, "repeated parameter: %v %v", err, resp.StatusCode)
	resp.Body.Close()
}

// flipLast returns s with its last character replaced by a different one, so
// the result never equals s (a fixed replacement would, one time in 62).
func flipLast(s string) string {
	last := "x"
	if strings.HasSuffix(s, last) {
		last = "y"
	}
	return s[:len(s)-1] + last
}

func (e *env) apiNamed(name string) store.API {
	e.t.Helper()
	a, err := e.tokens.CreateAPI(context.Background(), apiParams(name), actor)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func TestAuthorizationErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	pub, _ := e.client(func(p *oauth.ClientParams) { p.Type = store.ClientPublic })
	conf := codeConfig(e.url, c, secret)
	b := e.browser()

	// Errors before the redirect URI is trusted are shown, never redirected.
	for name, u := range map[string]string{
		"wrong redirect_uri": strings.Replace(conf.AuthCodeURL("s"), url.QueryEscape("https://app.example.com/callback"), url.QueryEscape("https://evil.example.com/callback"), 1),
		"unknown client":     strings.Replace(conf.AuthCodeURL("s"), c.ID, "cli_0000000000000000000000", 1),
	} {
		p := b.do("GET", u, nil)
		mustf(t, p.status == 400 && p.location == "", "%s: %d location %q", name, p.status, p.location)
	}
	// Errors after it go back to the client with the state.
	redirected := func(p page) url.Values {
		t.Helper()
		mustf(t, p.status == http.StatusSeeOther && strings.HasPrefix(p.location, "https://app.example.com/callback?"), "not redirected: %d %s", p.status, truncateBody(p.body))
		u, _ := url.Parse(p.location)
		return u.Query()
	}
	pubConf := conf
	pubConf.ClientID = pub.ID
	for _, tt := range []struct {
		name, url, code string
	}{
		{"public client without PKCE", pubConf.AuthCodeURL("s"), "invalid_request"},
		{"plain PKCE", pubConf.AuthCodeURL("s", oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 43))), "invalid_request"},
		{"implicit flow", strings.Replace(conf.AuthCodeURL("s"), "response_type=code", "response_type=token", 1), "unsupported_response_type"},
		{"scope not allowed", strings.Replace(conf.AuthCodeURL("s"), "scope=repos%3Aread", "scope=admin", 1), "invalid_scope"},
		{"prompt=none without a session", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "none")), "login_required"},
		// OIDC Core §3.1.2.6: one error per way of passing a request object.
		{"request object", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("request", "eyJhbGciOiJub25lIn0.e30.")), "request_not_supported"},
		{"request_uri", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("request_uri", "https://app.example.com/requests/1")), "request_uri_not_supported"},
	} {
		q := redirected(b.do("GET", tt.url, nil))
		mustf(t, q.Get("error") == tt.code && q.Get("state") == "s", "%s: %v", tt.name, q)
	}

	// PKCE: a missing or wrong verifier fails.
	verifier := oauth2.GenerateVerifier()
	q := e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), true)
	_, err := conf.Exchange(context.Background(), q.Get("code"))
	mustf(t, isOAuthErr(err, "invalid_grant"), "exchange without the verifier: %v", err)
	q = e.authorize(b, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), false)
	_, err = conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	mustf(t, isOAuthErr(err, "invalid_grant"), "exchange with a wrong verifier: %v", err)
	// A verifier for a code issued without a challenge is a downgrade.
	q = e.authorize(b, conf.AuthCodeURL("s"), false)
	_, err = conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	mustf(t, isOAuthErr(err, "invalid_grant"), "verifier without challenge: %v", err)
	// A redirect_uri different from the request's fails.
	q = e.authorize(b, conf.AuthCodeURL("s"), false)
	wrong := conf
	wrong.RedirectURL = "https://app.example.com/other"
	_, err = wrong.Exchange(context.Background(), q.Get("code"))
	mustf(t, isOAuthErr(err, "invalid_grant"), "exchange with another redirect_uri: %v", err)
	// An expired code fails.
	q = e.authorize(b, conf.AuthCodeURL("s"), false)
	e.clock.Advance(2 * time.Minute)
	_, err = conf.Exchange(context.Background(), q.Get("code"))
	mustf(t, isOAuthErr(err, "invalid_grant"), "expired code: %v", err)
	// The user denies.
	p := b.do("GET", conf.AuthCodeURL("s", oauth2.SetAuthURLParam("prompt", "consent")), nil)
	f := p.formValues()
	f.Set("decision", "deny")
	q = redirected(b.do("POST", "/oauth2/authorize", f))
	mustf(t, q.Get("error") == "access_denied", "deny: %v", q)
	// A consent form without its CSRF token is refused.
	f.Del("csrf")
	f.Set("decision", "allow")
	p = b.do("POST", "/oauth2/authorize", f)
	mustf(t, p.status == http.StatusForbidden, "consent without CSRF token: %d", p.status)
	// A wrong password shows the login page again.
	b2 := e.browser()
	p = b2.do("GET", conf.AuthCodeURL("s"), nil)
	lf := p.formValues()
	lf.Set("username", "alice")
	lf.Set("password", "wrong password")
	p = b2.do("POST", "/login", lf)
	mustf(t, p.status == http.StatusUnauthorized && strings.Contains(p.body, `name="password"`), "wrong password: %d", p.status)
	// An authorization request too large for the login form's return_to
	// is refused at the client's redirect URI, never with a 500.
	big := conf.AuthCodeURL(strings.Repeat("s", 4090), oauth2.SetAuthURLParam("nonce", strings.Repeat("n", 4090)))
	q = redirected(e.browser().do("GET", big, nil))
	mustf(t, q.Get("error") == "invalid_request" && q.Get("state") == strings.Repeat("s", 4090), "oversized authorization request: %v", q.Get("error"))
	// Pages cannot be framed.
	req, _ := http.NewRequest("GET", conf.AuthCodeURL("s"), nil)
	resp, err := http.DefaultClient.Do(req)
	mustf(t, err == nil && resp.Header.Get("X-Frame-Options") == "DENY" && strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'"),
		"clickjacking headers missing: %v", resp.Header)
	resp.Body.Close()
}

func isOAuthErr(err error, code string) bool {
	re, ok := err.(*oauth2.RetrieveError)
	return ok && re.ErrorCode == code
}

// TestForgedJWTsAreInactive proves introspection refuses JWTs that are not
// signed by a published key with its own algorithm.
func TestForgedJWTsAreInactive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT })
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.url + "/oauth2/token", Scopes: []string{"repos:read"}}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustf(t, e.introspect(tok.AccessToken)["active"] == true, "genuine token inactive")
	parts := strings.Split(tok.AccessToken, ".")
	header := decodeSegment(t, parts[0])
	claims := decodeSegment(t, parts[1])
	claims["scope"] = "repos:read repos:write"
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }

	none := map[string]any{"alg": "none", "typ": "at+jwt", "kid": header["kid"]}
	_, set := e.discovery()
	pubDER, err := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", header["kid"]))
	if err != nil {
		t.Fatal(err)
	}
	hsTok, err := jwt.Signed(hs).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	jwkJSON, _ := set.Keys[0].MarshalJSON()
	hs2, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jwkJSON}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", header["kid"]))
	hsTok2, _ := jwt.Signed(hs2).Claims(claims).Serialize()
	idHeader := map[string]any{"alg": header["alg"], "typ": "JWT", "kid": header["kid"]}
	for name, forged := range map[string]string{
		"alg none":                   enc(none) + "." + enc(claims) + ".",
		"HS256 with the public key":  hsTok,
		"HS256 with the JWK":         hsTok2,
		"tampered payload":           parts[0] + "." + enc(claims) + "." + parts[2],
		"wrong typ header":           enc(idHeader) + "." + parts[1] + "." + parts[2],
		"truncated":                  parts[0] + "." + parts[1],
		"signature of another token": parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4] + "AAAA",
	} {
		if in := e.introspect(forged); in["active"] != false {
			t.Errorf("%s: introspection says %v", name, in)
		}
	}
	// An expired JWT is inactive too.
	e.clock.Advance(2 * time.Hour)
	mustf(t, e.introspect(tok.AccessToken)["active"] == false, "expired JWT still active")
}

// TestDeviceUserCodeGuessesAreLimited checks the limit on wrong user codes
// on the device page (RFC 8628 §5.1): per user, so that concurrent wrong
// guesses get no more answers than the limit, not counting right codes
// even when many are entered at once, and per address apart from the
// user's.
func TestDeviceUserCodeGuessesAreLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	_, conf := e.deviceClient(nil)
	da := e.deviceAuth(conf)
	const otherPassword = "another horse battery"
	for _, name := range []string{"bob", "carol"} {
		if _, err := e.users.Create(context.Background(), users.CreateParams{Username: name, Email: name + "@example.com", Password: otherPassword}, tokens.Actor{ID: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	signIn := func(name, password string) (*browser, string) {
		b := e.browser()
		p := b.login(b.do("GET", "/device", nil), name, password)
		return b, p.formValues().Get("csrf")
	}
	// enter posts a user code to the device page, as the entry form does,
	// and returns the status; it is safe to call from any goroutine.
	enter := func(b *browser, csrf, code string) (int, error) {
		req, _ := http.NewRequest("POST", e.url+"/device", strings.NewReader(url.Values{"user_code": {code}, "csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.http.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	alice, aliceCSRF := signIn("alice", e.password)

	// Right codes do not count, however many, however many at once.
	var wg sync.WaitGroup
	rights := make(chan int, 32)
	for range 32 {
		wg.Go(func() {
			status, err := enter(alice, aliceCSRF, da.UserCode)
			if err != nil {
				status = 0
			}
			rights <- status
		})
	}
	wg.Wait()
	close(rights)
	for status := range rights {
		if status != http.StatusOK {
			t.Fatalf("one of 32 concurrent right codes: %d, want 200", status)
		}
	}

	// 30 wrong codes at once: 10 are checked, the others refused.
	statuses := make(chan int, 30)
	for range 30 {
		wg.Go(func() {
			status, err := enter(alice, aliceCSRF, "BCDF-GHJK")
			if err != nil {
				status = 0
			}
			statuses <- status
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusBadRequest] != 10 || count[http.StatusTooManyRequests] != 20 {
		t.Fatalf("30 concurrent wrong codes answered %v, want 10 × 400 and 20 × 429", count)
	}
	if status, err := enter(alice, aliceCSRF, da.UserCode); err != nil || status != http.StatusTooManyRequests {
		t.Fatalf("right code after 10 wrong ones: %d %v, want 429", status, err)
	}

	// Another user at the same address: the address has 10 wrong codes of 20.
	bob, bobCSRF := signIn("bob", otherPassword)
	if status, err := enter(bob, bobCSRF, da.UserCode); err != nil || status != http.StatusOK {
		t.Fatalf("another user's right code: %d %v, want 200", status, err)
	}
	for i := range 10 {
		if status, err := enter(bob, bobCSRF, "BCDF-GHJK"); err != nil || status != http.StatusBadRequest {
			t.Fatalf("another user's wrong code %d: %d %v, want 400", i+1, status, err)
		}
	}
	// Now the address has 20: refused for a user with no wrong code of hers.
	carol, carolCSRF := signIn("carol", otherPassword)
	if status, err := enter(carol, carolCSRF, da.UserCode); err != nil || status != http.StatusTooManyRequests {
		t.Fatalf("right code from an address with 20 wrong ones: %d %v, want 429", status, err)
	}

	// The window passes (and with it the device code's life).
	e.clock.Advance(16 * time.Minute)
	da = e.deviceAuth(conf)
	if status, err := enter(alice, aliceCSRF, da.UserCode); err != nil || status != http.StatusOK {
		t.Fatalf("right code after the window: %d %v, want 200", status, err)
	}
}

// clientKey is a private_key_jwt client's key pair: it signs the client's
// assertions, and jwks is the JWK set of its public half.
type clientKey struct {
	signer jose.Signer
	jwks   []byte
}

func newClientKey(t *testing.T, kid string) clientKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return clientKeyOf(t, priv, jose.ES256, kid, "sig")
}

// clientKeyOf is the clientKey of priv, signing with alg, whose JWK has
// kid and use (none if empty).
func clientKeyOf(t *testing.T, priv crypto.Signer, alg jose.SignatureAlgorithm, kid, use string) clientKey {
	t.Helper()
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.Public(), KeyID: kid, Algorithm: string(alg), Use: use}}})
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{signer: signer, jwks: jwks}
}

// keySet is the JWK set of the public halves of keys.
func keySet(t *testing.T, keys ...clientKey) []byte {
	t.Helper()
	var all jose.JSONWebKeySet
	for _, k := range keys {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(k.jwks, &set); err != nil {
			t.Fatal(err)
		}
		all.Keys = append(all.Keys, set.Keys...)
	}
	b, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// weakClientKeys returns client keys that must never authenticate a
// client: an RSA key of 1024 bits (RFC 7518 §3.3 and §3.5 require 2048),
// with kid "weak" and, as weakNoKid, without one (its assertions are
// tried against every key), and an EC key marked for encryption (RFC 7517
// §4.2), kid "enc".
func weakClientKeys(t *testing.T) (weak, weakNoKid, enc clientKey) {
	t.Helper()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return clientKeyOf(t, rsa1024, jose.RS256, "weak", "sig"), clientKeyOf(t, rsa1024, jose.RS256, "", "sig"),
		clientKeyOf(t, ec, jose.ES256, "enc", "enc")
}

// TestClientKeysThatCannotSignAreRefused proves that a private_key_jwt
// client can register, at creation or by an update, only keys fit to sign
// its assertions, and that the refusal names the key and why; the keys it
// accepts authenticate the client.
func TestClientKeysThatCannotSignAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	weak, weakNoKid, enc := weakClientKeys(t)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := newClientKey(t, "good")
	for _, tt := range []struct {
		name    string
		key     clientKey
		jwks    []byte // if not key.jwks
		wantErr string // in the refusal; "" if accepted
	}{
		{name: "RSA 1024 bits", key: weak, wantErr: `jwks key "weak" is a 1024-bit RSA key`},
		{name: "RSA 1024 bits without a kid", key: weakNoKid, wantErr: "jwks key #1 is a 1024-bit RSA key"},
		{name: "RSA 1024 bits beside a good key", key: good, jwks: keySet(t, good, weak), wantErr: `jwks key "weak" is a 1024-bit RSA key`},
		{name: "key for encryption", key: enc, wantErr: `jwks key "enc" is for encryption`},
		{name: "RSA 2048 bits, RS256", key: clientKeyOf(t, rsa2048, jose.RS256, "rs", "sig")},
		{name: "RSA 2048 bits, PS256, no use", key: clientKeyOf(t, rsa2048, jose.PS256, "ps", "")},
		{name: "EC P-384", key: clientKeyOf(t, ec, jose.ES384, "es", "sig")},
		{name: "Ed25519", key: clientKeyOf(t, ed, jose.EdDSA, "ed", "sig")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jwks := tt.jwks
			if jwks == nil {
				jwks = tt.key.jwks
			}
			p := oauth.ClientParams{Name: "Keyed app", GrantTypes: []string{oauth.GrantClientCredentials}, APIs: []string{e.api.ID},
				Scopes: []string{"repos:read"}, AuthMethod: oauth.AuthPrivateKeyJWT, JWKS: jwks}
			c, _, createErr := e.oauth.CreateClient(context.Background(), p, actor)
			p.JWKS = good.jwks
			other, _, err := e.oauth.CreateClient(context.Background(), p, actor)
			if err != nil {
				t.Fatal(err)
			}
			_, updateErr := e.oauth.UpdateClient(context.Background(), other.ID, oauth.ClientUpdate{JWKS: jwks}, actor)
			for op, err := range map[string]error{"create": createErr, "update": updateErr} {
				var inv *tokens.InvalidError
				switch {
				case tt.wantErr == "" && err != nil:
					t.Errorf("%s: %v, want the keys accepted", op, err)
				case tt.wantErr != "" && (!errors.As(err, &inv) || !strings.Contains(inv.Message, tt.wantErr)):
					t.Errorf("%s: %v, want an invalid_request with %q", op, err, tt.wantErr)
				}
			}
			if tt.wantErr != "" {
				return
			}
			form, err := tt.key.assertionForm(c.ID, e.url+"/oauth2/token", "jti-1", e.clock.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if status, m, _ := e.postForm("/oauth2/token", form, "", ""); status != http.StatusOK {
				t.Errorf("assertion signed with an accepted key: %d %v", status, m)
			}
		})
	}
}

// TestClientKeysThatCannotSignNeverAuthenticate proves that keys a
// registration would refuse, but which reach the server anyway, are
// ignored: in a jwks_uri document, which the server does not check when it
// is published (and which may rightly hold keys for encryption), and in a
// jwks registered before keys were checked, whose client can still be
// changed. The good keys beside them keep working.
func TestClientKeysThatCannotSignNeverAuthenticate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	weak, weakNoKid, enc := weakClientKeys(t)
	good := newClientKey(t, "good")
	doc := keySet(t, weak, enc, good)
	jwksServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	}))
	t.Cleanup(jwksServer.Close)
	fetched, _ := e.client(func(p *oauth.ClientParams) {
		p.AuthMethod = oauth.AuthPrivateKeyJWT
		p.JWKSURI = jwksServer.URL + "/jwks"
	})
	registered, _ := e.client(func(p *oauth.ClientParams) {
		p.AuthMethod = oauth.AuthPrivateKeyJWT
		p.JWKS = good.jwks
	})
	// What an older server accepted: only the store holds it now.
	_, err := e.db.UpdateClient(context.Background(), registered.ID, func(c *store.Client) error {
		c.JWKS = doc
		return nil
	}, store.AuditEvent{Time: e.clock.Now(), Actor: "test", Action: "client.update", Target: registered.ID})
	if err != nil {
		t.Fatal(err)
	}
	name := "Renamed"
	if _, err := e.oauth.UpdateClient(context.Background(), registered.ID, oauth.ClientUpdate{Name: &name}, actor); err != nil {
		t.Errorf("renaming a client with a weak key registered: %v", err)
	}
	jti := 0
	for source, c := range map[string]store.Client{"jwks_uri": fetched, "registered jwks": registered} {
		for _, tt := range []struct {
			name string
			key  clientKey
			want int
		}{
			{"RSA 1024 bits", weak, http.StatusUnauthorized},
			{"RSA 1024 bits, no kid", weakNoKid, http.StatusUnauthorized},
			{"key for encryption", enc, http.StatusUnauthorized},
			{"good key", good, http.StatusOK},
		} {
			jti++
			form, err := tt.key.assertionForm(c.ID, e.url+"/oauth2/token", fmt.Sprint("jti-", jti), e.clock.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if status, m, _ := e.postForm("/oauth2/token", form, "", ""); status != tt.want {
				t.Errorf("%s, %s: %d %v, want %d", source, tt.name, status, m, tt.want)
			}
		}
	}
}

// assertionForm returns a client credentials request of clientID
// authenticated by an assertion (RFC 7523 §2.2) with jti and exp for the
// token endpoint at tokenURL. It is safe to call from any goroutine.
func (k clientKey) assertionForm(clientID, tokenURL, jti string, exp time.Time) (url.Values, error) {
	return k.assertionFormFor(clientID, jwt.Audience{tokenURL}, jti, exp)
}

// assertionFormFor is assertionForm for an assertion whose aud is aud.
func (k clientKey) assertionFormFor(clientID string, aud jwt.Audience, jti string, exp time.Time) (url.Values, error) {
	a, err := jwt.Signed(k.signer).Claims(jwt.Claims{Issuer: clientID, Subject: clientID, Audience: aud,
		ID: jti, Expiry: jwt.NewNumericDate(exp)}).Serialize()
	if err != nil {
		return nil, err
	}
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {a}}, nil
}

// TestClientAssertionIsSingleUse proves that a private_key_jwt assertion
// is accepted once (RFC 7523 §3), also when replayed after its exp but
// within the clock skew allowed on exp, when it would pass the expiry
// check again.
func TestClientAssertionIsSingleUse(t *testing.T) {
	t.Parallel()
	const leeway = 30 * time.Second // assertionLeeway in clientauth.go
	e := newEnv(t, envOptions{})
	key := newClientKey(t, "k1")
	c, _ := e.client(func(p *oauth.ClientParams) { p.AuthMethod = oauth.AuthPrivateKeyJWT; p.JWKS = key.jwks })
	// Whole seconds, as the JWT carries it, so that each step below is
	// where its name says.
	exp := e.clock.Now().Truncate(time.Second).Add(2 * time.Second)
	form, err := key.assertionForm(c.ID, e.url+"/oauth2/token", "jti-1", exp)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		name     string
		at       time.Duration // from exp
		status   int
		describe string // in error_description
	}{
		{"first use", -time.Second, 200, ""},
		{"replay before exp", -time.Second, 401, "already used"},
		{"replay after exp, in the leeway", 10 * time.Second, 401, "already used"},
		{"replay at the end of the leeway", leeway - time.Second, 401, "already used"},
		{"replay after the leeway", leeway + time.Second, 401, "expired"},
	} {
		if d := exp.Add(st.at).Sub(e.clock.Now()); d > 0 {
			e.clock.Advance(d)
		}
		status, m, _ := e.postForm("/oauth2/token", form, "", "")
		desc, _ := m["error_description"].(string)
		if status != st.status || !strings.Contains(desc, st.describe) {
			t.Errorf("%s: %d %v, want %d with %q", st.name, status, m, st.status, st.describe)
		}
	}
}

// TestClientAssertionIsSingleUseAcrossNodes proves that the store, not a
// node's memory, remembers a used assertion: replayed to another node of
// the cluster (or to a restarted one) it is refused too, and the janitor
// forgets it once it can no longer be accepted.
func TestClientAssertionIsSingleUseAcrossNodes(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			dsn := filepath.Join(t.TempDir(), "cluster.db") // two servers on one file
			if backend == "postgres" {
				dsn = storetest.PostgresDSN(t) // skips without JETON_TEST_POSTGRES_DSN
			}
			a := newEnv(t, envOptions{dsn: dsn})
			b := newEnv(t, envOptions{dsn: dsn})
			key := newClientKey(t, "k1")
			c, _ := a.client(func(p *oauth.ClientParams) { p.AuthMethod = oauth.AuthPrivateKeyJWT; p.JWKS = key.jwks })
			// Each test node is its own issuer: the assertion names both.
			aud := jwt.Audience{a.url + "/oauth2/token", b.url + "/oauth2/token"}
			exp := a.clock.Now().Add(time.Minute)
			form, err := key.assertionFormFor(c.ID, aud, "jti-cluster", exp)
			if err != nil {
				t.Fatal(err)
			}
			other, err := key.assertionFormFor(c.ID, aud, "jti-other", exp)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range []struct {
				name     string
				node     *env
				form     url.Values
				status   int
				describe string
			}{
				{"first use, at a", a, form, 200, ""},
				{"replay at b", b, form, 401, "already used"},
				{"replay at a", a, form, 401, "already used"},
				{"another jti, at b", b, other, 200, ""},
				{"its replay at a", a, other, 401, "already used"},
			} {
				status, m, _ := st.node.postForm("/oauth2/token", st.form, "", "")
				desc, _ := m["error_description"].(string)
				if status != st.status || !strings.Contains(desc, st.describe) {
					t.Errorf("%s: %d %v, want %d with %q", st.name, status, m, st.status, st.describe)
				}
			}

			// Both ids live until exp + the leeway (30 s); the janitor
			// deletes them an hour after that (for nodes whose clocks run
			// behind its own), and nothing else.
			if n, err := a.oauth.PurgeExpired(context.Background()); err != nil || n != 0 {
				t.Errorf("PurgeExpired while the assertions live = %d, %v; want 0", n, err)
			}
			a.clock.Advance(time.Minute + 31*time.Second + 59*time.Minute)
			if n, err := a.oauth.PurgeExpired(context.Background()); err != nil || n != 0 {
				t.Errorf("PurgeExpired within the hour after the assertions expired = %d, %v; want 0", n, err)
			}
			a.clock.Advance(time.Minute)
			if n, err := a.oauth.PurgeExpired(context.Background()); err != nil || n != 2 {
				t.Errorf("PurgeExpired an hour after the assertions expired = %d, %v; want 2", n, err)
			}
		})
	}
}

// TestClientAssertionReplayAfterJanitorOfSkewedNode: nodes of a cluster
// read their own clocks. A node whose clock runs ahead must not purge an
// assertion id at its own exp + leeway while a node whose clock is behind
// still accepts the assertion: replayed to that node, it would be
// accepted a second time (RFC 7523 §3).
func TestClientAssertionReplayAfterJanitorOfSkewedNode(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			dsn := filepath.Join(t.TempDir(), "cluster.db")
			if backend == "postgres" {
				dsn = storetest.PostgresDSN(t) // skips without JETON_TEST_POSTGRES_DSN
			}
			a := newEnv(t, envOptions{dsn: dsn})
			b := newEnv(t, envOptions{dsn: dsn})
			const skew = 2 * time.Second
			a.clock.Advance(skew) // a's clock runs 2 s ahead of b's
			key := newClientKey(t, "k1")
			c, _ := a.client(func(p *oauth.ClientParams) { p.AuthMethod = oauth.AuthPrivateKeyJWT; p.JWKS = key.jwks })
			aud := jwt.Audience{a.url + "/oauth2/token", b.url + "/oauth2/token"}
			exp := b.clock.Now().Truncate(time.Second).Add(time.Minute)
			form, err := key.assertionFormFor(c.ID, aud, "jti-skew", exp)
			if err != nil {
				t.Fatal(err)
			}
			if status, m, _ := b.postForm("/oauth2/token", form, "", ""); status != 200 {
				t.Fatalf("first use at b: %d %v", status, m)
			}
			// b is 1 s inside the 30 s leeway; a is past it, and its
			// janitor runs.
			d := exp.Add(29 * time.Second).Sub(b.clock.Now())
			a.clock.Advance(d)
			b.clock.Advance(d)
			if _, err := a.oauth.PurgeExpired(context.Background()); err != nil {
				t.Fatal(err)
			}
			status, m, _ := b.postForm("/oauth2/token", form, "", "")
			desc, _ := m["error_description"].(string)
			if status != 401 || !strings.Contains(desc, "already used") {
				t.Errorf("replay at b, inside its leeway, after a's janitor: %d %v, want 401 already used", status, m)
			}
		})
	}
}

// TestJWKSURIFetchesAreThrottled proves that assertions in the name of a
// jwks_uri client, which anyone can send, make the server fetch the URI at
// most once every 30 s, also while the fetches fail, and that the keys
// are fetched again after that.
func TestJWKSURIFetchesAreThrottled(t *testing.T) {
	t.Parallel()
	const minRefetch = 30 * time.Second // jwksMinRefetch in clientauth.go
	e := newEnv(t, envOptions{})
	key, forger := newClientKey(t, "k1"), newClientKey(t, "k1")
	var fetches atomic.Int64
	var up atomic.Bool
	jwksServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if !up.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(key.jwks)
	}))
	t.Cleanup(jwksServer.Close)
	c, _ := e.client(func(p *oauth.ClientParams) {
		p.AuthMethod = oauth.AuthPrivateKeyJWT
		p.JWKSURI = jwksServer.URL + "/jwks"
	})
	jti := 0
	send := func(k clientKey, n int) (statuses map[int]int) {
		t.Helper()
		statuses = map[int]int{}
		for range n {
			jti++
			form, err := k.assertionForm(c.ID, e.url+"/oauth2/token", fmt.Sprint("jti-", jti), e.clock.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			status, _, _ := e.postForm("/oauth2/token", form, "", "")
			statuses[status]++
		}
		return statuses
	}
	for _, st := range []struct {
		name        string
		advance     time.Duration
		up          bool
		key         clientKey
		n           int
		want        map[int]int // statuses
		wantFetches int64       // in all
	}{
		{"down: forged assertions", 0, false, forger, 20, map[int]int{401: 20}, 1},
		{"down: a moment later", 10 * time.Second, false, forger, 20, map[int]int{401: 20}, 1},
		{"up again, but too soon to ask", 0, true, key, 1, map[int]int{401: 1}, 1},
		{"up, 30 s after the last fetch", minRefetch, true, key, 1, map[int]int{200: 1}, 2},
		{"up: forged assertions of a known kid", 0, true, forger, 20, map[int]int{401: 20}, 2},
		{"down again, keys known: no fetch until the document is old", minRefetch, false, key, 5, map[int]int{200: 5}, 2},
	} {
		e.clock.Advance(st.advance)
		up.Store(st.up)
		got := send(st.key, st.n)
		if diff := cmp.Diff(got, st.want); diff != "" {
			t.Errorf("%s: statuses (-got +want):\n%s", st.name, diff)
		}
		if n := fetches.Load(); n != st.wantFetches {
			t.Errorf("%s: jwks_uri fetched %d times in all, want %d", st.name, n, st.wantFetches)
		}
	}
}

// TestJWKSURIFetchIsShared proves that concurrent assertions of a
// jwks_uri client whose keys are not yet known wait for one fetch of the
// URI, and all verify with the keys it brings.
func TestJWKSURIFetchIsShared(t *testing.T) {
	t.Parallel()
	const n = 16
	e := newEnv(t, envOptions{})
	key := newClientKey(t, "k1")
	var fetches atomic.Int64
	release := make(chan struct{})
	jwksServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release // slow: the other requests arrive meanwhile
		w.Header().Set("Content-Type", "application/json")
		w.Write(key.jwks)
	}))
	t.Cleanup(jwksServer.Close)
	c, _ := e.client(func(p *oauth.ClientParams) {
		p.AuthMethod = oauth.AuthPrivateKeyJWT
		p.JWKSURI = jwksServer.URL + "/jwks"
	})

	// The fetch is held until every request has been sent.
	var sent, done sync.WaitGroup
	sent.Add(n)
	statuses := make(chan int, n)
	for i := range n {
		done.Go(func() {
			form, err := key.assertionForm(c.ID, e.url+"/oauth2/token", fmt.Sprint("jti-", i), e.clock.Now().Add(time.Minute))
			if err != nil {
				sent.Done()
				statuses <- 0
				return
			}
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { sent.Done() }})
			req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/oauth2/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := e.Client.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	sent.Wait()
	close(release)
	done.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	if diff := cmp.Diff(got, map[int]int{200: n}); diff != "" {
		t.Errorf("statuses of %d concurrent assertions (-got +want):\n%s", n, diff)
	}
	if f := fetches.Load(); f != 1 {
		t.Errorf("jwks_uri fetched %d times for %d concurrent assertions, want 1", f, n)
	}
}

// TestSignInWithALongAuthorizationRequest proves that an authorization
// request the endpoint accepts can be completed by signing in, however
// much of its bound it uses: the sign-in form carries the whole request in
// return_to, which once had the bound of a single parameter (4 KiB) and
// refused every sign-in for a request with a state of a few KiB.
func TestSignInWithALongAuthorizationRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, secret := e.client(nil)
	conf := codeConfig(e.url, c, secret)
	state, nonce := strings.Repeat("s", 3000), strings.Repeat("n", 1200)
	q := e.authorize(e.browser(), conf.AuthCodeURL(state, oauth2.SetAuthURLParam("nonce", nonce)), true)
	mustf(t, q.Get("state") == state && q.Get("code") != "", "the long request did not complete: %v", q)
}

// TestFailedClientAuthenticationIsAudited: a wrong client secret, well
// formed or not, is audited as client.auth_failure (the one record of
// someone trying an old or leaked secret), without the secret, and within
// a budget per address.
func TestFailedClientAuthenticationIsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c, _ := e.client(func(p *oauth.ClientParams) { p.AuthMethod = oauth.AuthSecretPost })
	wrong, err := tokenfmt.Generate(tokenfmt.PrefixClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{wrong, "not-even-a-token"}
	for range 12 {
		secrets = append(secrets, wrong)
	}
	for _, secret := range secrets {
		status, _, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ID}, "client_secret": {secret}}, "", "")
		mustf(t, status == http.StatusUnauthorized, "wrong client secret: %d", status)
	}
	evs, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "client.auth_failure", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 {
		t.Errorf("%d failed client authentications from one address audited %d times, want the budget of 10", len(secrets), len(evs))
	}
	for _, ev := range evs {
		if ev.Target != c.ID || !strings.Contains(string(ev.Details), "client_secret_post") || strings.Contains(string(ev.Details), wrong) {
			t.Errorf("audit entry %s target %s details %s: want the client, the method, no secret", ev.Action, ev.Target, ev.Details)
		}
	}
}

// TestServerErrorsAreCounted: a request that fails for a reason of the
// server's (here the store is gone) answers server_error, or an error
// page, and is counted for the store-errors metric.
func TestServerErrorsAreCounted(t *testing.T) {
	t.Parallel()
	var failed atomic.Int64
	e := newEnv(t, envOptions{onError: func(op string) {
		if op == "oauth" {
			failed.Add(1)
		}
	}})
	c, secret := e.client(nil)
	e.db.Close()
	status, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"repos:read"}}, c.ID, secret)
	mustf(t, status == http.StatusInternalServerError && m["error"] == "server_error", "token request with the store closed: %d %v", status, m)
	if failed.Load() == 0 {
		t.Error("a server_error was not counted")
	}
}
