package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// OAuth grant types, as the admin API and the token endpoint spell them.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
	grantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// oauthSeed prepares the OAuth runs of the benchmark:
//
//   - an opaque-token confidential client with every grant the benchmark
//     uses (client_credentials for runs (e) and (g), device_code and
//     refresh_token for run (h)) and a JWT (ES256) client_credentials
//     client for run (f), both for the benchmark API and its scope;
//   - a user, signed in once through the login form;
//   - refresh tokens, each from its own grant, obtained through the real
//     device flow (RFC 8628): device authorization, the user enters and
//     approves the code on /device, then one token request redeems it
//     (approving before the first poll means one poll suffices and the
//     server's 5 s polling interval never applies);
//   - opaque access tokens obtained by client_credentials.
type oauthSeed struct {
	admin   *client
	apiID   string
	suffix  string
	workers int
	out     string

	opaque, jwt creds
	username    string
	password    string
}

// creds are a confidential client's id and secret.
type creds struct {
	id, secret string
}

// basic returns the credentials for an HTTP Basic header (without the
// scheme), form-encoded first as RFC 6749 §2.3.1 requires.
func (c creds) basic() string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.id) + ":" + url.QueryEscape(c.secret)))
}

// tokenAnswer is what the seed reads of a token endpoint answer.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

func (o *oauthSeed) run(ctx context.Context, nAccess, nRefresh int) error {
	if err := o.createClients(ctx); err != nil {
		return err
	}
	if err := o.createUser(ctx); err != nil {
		return err
	}
	fmt.Printf("seed: created OAuth clients %s (opaque) and %s (jwt ES256), user %s\n", o.opaque.id, o.jwt.id, o.username)

	// One JWT issuance checks that the JWT client works before the run.
	var t tokenAnswer
	if err := o.token(ctx, o.jwt, url.Values{"grant_type": {grantClientCredentials}}, &t); err != nil {
		return fmt.Errorf("client_credentials for the jwt client: %w", err)
	}
	if strings.Count(t.AccessToken, ".") != 2 {
		return errors.New("client_credentials for the jwt client: the access token is not a JWT")
	}

	web, err := o.signIn(ctx)
	if err != nil {
		return err
	}
	csrf, err := web.csrf(ctx)
	if err != nil {
		return err
	}
	refresh := make([]string, nRefresh)
	start := time.Now()
	err = parallel(ctx, nRefresh, o.workers, func(ctx context.Context, i int) error {
		rt, err := o.deviceGrant(ctx, web, csrf)
		if err != nil {
			return fmt.Errorf("device grant %d: %w", i, err)
		}
		refresh[i] = rt
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	if err := writeLines(filepath.Join(o.out, "refresh_tokens.txt"), refresh); err != nil {
		return err
	}
	fmt.Printf("seed: obtained %d refresh tokens through the device flow in %s (%.0f grants/s, %d workers)\n",
		nRefresh, elapsed.Round(time.Millisecond), float64(nRefresh)/elapsed.Seconds(), o.workers)

	access := make([]string, nAccess)
	start = time.Now()
	err = parallel(ctx, nAccess, o.workers, func(ctx context.Context, i int) error {
		var t tokenAnswer
		if err := o.token(ctx, o.opaque, url.Values{"grant_type": {grantClientCredentials}}, &t); err != nil {
			return fmt.Errorf("access token %d: %w", i, err)
		}
		if !strings.HasPrefix(t.AccessToken, "jta_") {
			return fmt.Errorf("access token %d: not an opaque access token", i)
		}
		access[i] = t.AccessToken
		return nil
	})
	elapsed = time.Since(start)
	if err != nil {
		return err
	}
	if err := writeLines(filepath.Join(o.out, "access_tokens.txt"), access); err != nil {
		return err
	}
	fmt.Printf("seed: obtained %d opaque access tokens by client_credentials in %s (%.0f tokens/s, %d workers)\n",
		nAccess, elapsed.Round(time.Millisecond), float64(nAccess)/elapsed.Seconds(), o.workers)

	if err := writeLines(filepath.Join(o.out, "oauth_opaque_basic.txt"), []string{o.opaque.basic()}); err != nil {
		return err
	}
	return writeLines(filepath.Join(o.out, "oauth_jwt_basic.txt"), []string{o.jwt.basic()})
}

func (o *oauthSeed) createClients(ctx context.Context) error {
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	err := o.admin.post(ctx, "/v1/clients", map[string]any{
		"name":          "bench-opaque-" + o.suffix,
		"type":          "confidential",
		"grant_types":   []string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials, grantDeviceCode},
		"redirect_uris": []string{"http://127.0.0.1/cb"},
		"apis":          []string{o.apiID},
		"scopes":        []string{scope},
		"token_format":  "opaque",
	}, &c)
	if err == nil && (c.ID == "" || c.Secret == "") {
		err = errors.New("answer has no client_id or client_secret")
	}
	if err != nil {
		return fmt.Errorf("creating the opaque client: %w", err)
	}
	o.opaque = creds{c.ID, c.Secret}

	c.ID, c.Secret = "", ""
	err = o.admin.post(ctx, "/v1/clients", map[string]any{
		"name":         "bench-jwt-" + o.suffix,
		"type":         "confidential",
		"grant_types":  []string{grantClientCredentials},
		"apis":         []string{o.apiID},
		"scopes":       []string{scope},
		"token_format": "jwt",
		"signing_alg":  "ES256",
	}, &c)
	if err == nil && (c.ID == "" || c.Secret == "") {
		err = errors.New("answer has no client_id or client_secret")
	}
	if err != nil {
		return fmt.Errorf("creating the jwt client: %w", err)
	}
	o.jwt = creds{c.ID, c.Secret}
	return nil
}

func (o *oauthSeed) createUser(ctx context.Context) error {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	o.username = "bench-" + o.suffix
	o.password = base64.RawURLEncoding.EncodeToString(b[:])
	var u struct {
		ID string `json:"id"`
	}
	err := o.admin.post(ctx, "/v1/users", map[string]any{
		"username": o.username,
		"email":    o.username + "@bench.jeton.test",
		"password": o.password,
	}, &u)
	if err == nil && u.ID == "" {
		err = errors.New("answer has no id")
	}
	if err != nil {
		return fmt.Errorf("creating the user: %w", err)
	}
	return nil
}

// token posts a token request with the client's Basic credentials and
// decodes the answer.
func (o *oauthSeed) token(ctx context.Context, c creds, form url.Values, out *tokenAnswer) error {
	req, err := newForm(ctx, o.admin.base+"/oauth2/token", form)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Basic "+c.basic())
	data, err := do(o.admin.http, req)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("POST /oauth2/token: decoding answer: %w", err)
	}
	if out.AccessToken == "" {
		return errors.New("POST /oauth2/token: answer has no access_token")
	}
	return nil
}

// deviceGrant runs one device flow to its end and returns the refresh
// token of the new grant.
func (o *oauthSeed) deviceGrant(ctx context.Context, web *browser, csrf string) (string, error) {
	req, err := newForm(ctx, o.admin.base+"/oauth2/device_authorization", url.Values{})
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Basic "+o.opaque.basic())
	data, err := do(o.admin.http, req)
	if err != nil {
		return "", err
	}
	var da struct {
		DeviceCode string `json:"device_code"`
		UserCode   string `json:"user_code"`
	}
	if err := json.Unmarshal(data, &da); err != nil {
		return "", fmt.Errorf("POST /oauth2/device_authorization: decoding answer: %w", err)
	}
	if da.DeviceCode == "" || da.UserCode == "" {
		return "", errors.New("POST /oauth2/device_authorization: answer has no device_code or user_code")
	}

	// The user enters the code, sees the confirmation page, and allows.
	page, err := web.post(ctx, "/device", url.Values{"user_code": {da.UserCode}, "csrf": {csrf}})
	if err != nil {
		return "", err
	}
	if !strings.Contains(page, da.UserCode) || !strings.Contains(page, `name="decision"`) {
		return "", fmt.Errorf("POST /device: no confirmation page for %s: %s", da.UserCode, excerpt(page))
	}
	page, err = web.post(ctx, "/device", url.Values{"user_code": {da.UserCode}, "decision": {"allow"}, "csrf": {csrf}})
	if err != nil {
		return "", err
	}
	if !strings.Contains(page, "Device connected") {
		return "", fmt.Errorf("POST /device decision=allow: not approved: %s", excerpt(page))
	}

	var t tokenAnswer
	if err := o.token(ctx, o.opaque, url.Values{"grant_type": {grantDeviceCode}, "device_code": {da.DeviceCode}}, &t); err != nil {
		return "", err
	}
	if !strings.HasPrefix(t.RefreshToken, "jtr_") {
		return "", errors.New("POST /oauth2/token (device_code): answer has no refresh token")
	}
	return t.RefreshToken, nil
}

// browser is a user agent with a cookie jar, for the sign-in and device
// pages. It sends neither Origin nor Sec-Fetch-Site, which the pages'
// cross-origin protection accepts (non-browser clients).
type browser struct {
	base string
	http *http.Client
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs the user in through the login form and returns the
// browser holding the session cookie.
func (o *oauthSeed) signIn(ctx context.Context) (*browser, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	web := &browser{base: o.admin.base, http: &http.Client{Jar: jar, Timeout: o.admin.http.Timeout, Transport: o.admin.http.Transport}}
	page, err := web.get(ctx, "/login?return_to=%2Fdevice")
	if err != nil {
		return nil, err
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return nil, fmt.Errorf("GET /login: no csrf field: %s", excerpt(page))
	}
	// The redirect to /device is followed: a signed-in user gets the code
	// entry page, not the login form again.
	page, err = web.post(ctx, "/login", url.Values{"username": {o.username}, "password": {o.password},
		"csrf": {m[1]}, "return_to": {"/device"}})
	if err != nil {
		return nil, err
	}
	if strings.Contains(page, `name="password"`) || !strings.Contains(page, `name="user_code"`) {
		return nil, fmt.Errorf("POST /login: not signed in: %s", excerpt(page))
	}
	return web, nil
}

// csrf returns the CSRF token of the browser's forms (an HMAC of its CSRF
// cookie, the same for every form).
func (b *browser) csrf(ctx context.Context) (string, error) {
	page, err := b.get(ctx, "/device")
	if err != nil {
		return "", err
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, `name="user_code"`) {
		return "", fmt.Errorf("GET /device: no code entry form: %s", excerpt(page))
	}
	return m[1], nil
}

func (b *browser) get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+path, nil)
	if err != nil {
		return "", err
	}
	data, err := do(b.http, req)
	return string(data), err
}

func (b *browser) post(ctx context.Context, path string, form url.Values) (string, error) {
	req, err := newForm(ctx, b.base+path, form)
	if err != nil {
		return "", err
	}
	data, err := do(b.http, req)
	return string(data), err
}

func newForm(ctx context.Context, u string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

// do sends req and returns the body of a 2xx answer; any other status is
// an error carrying the start of the answer.
func do(hc *http.Client, req *http.Request) ([]byte, error) {
	what := req.Method + " " + req.URL.Path
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: reading answer: %w", what, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%s: %s: %s", what, resp.Status, excerpt(string(data)))
	}
	return data, nil
}

// excerpt shortens an answer for an error message: pages are long, and
// what they say starts at their heading.
func excerpt(s string) string {
	if i := strings.Index(s, "<h1"); i >= 0 {
		s = s[i:]
	}
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = s[:600] + "… (" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}
