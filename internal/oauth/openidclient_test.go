package oauth_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
)

// openIDClientDir holds the Node.js package of TestOpenIDClientForNode.
var openIDClientDir = filepath.Join("testdata", "openid-client")

// TestOpenIDClientForNode runs openid-client, the most used OpenID Connect
// relying party for JavaScript (and a strict one), against the server:
// discovery, client credentials with a resource, the authorization code
// flow with PKCE, state and nonce (it checks the redirect's iss parameter
// and the ID token's claims), userinfo, refresh, introspection and
// revocation by the client, and the device flow, once for each way of
// client authentication both offer (a public client skips client
// credentials and introspection). Then oauth4webapi,
// under openid-client, checks JWT access tokens signed with each algorithm
// as an RFC 9068 resource server would.
// testdata/openid-client/client.mjs is the application; this test is the
// user who signs in, consents and approves the device, and it checks with
// introspection what the library got.
//
// It needs Node.js and `npm ci` in testdata/openid-client (.ci/run does
// both) and is skipped otherwise.
func TestOpenIDClientForNode(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(filepath.Join(openIDClientDir, "node_modules", "openid-client")); err != nil {
		t.Skipf("openid-client is not installed: run npm ci in %s", openIDClientDir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	for _, method := range []string{oauth.AuthSecretBasic, oauth.AuthSecretPost, oauth.AuthPrivateKeyJWT, oauth.AuthNone} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			testOpenIDClient(t, node, method)
		})
	}
}

func testOpenIDClient(t *testing.T, node, authMethod string) {
	e := newEnv(t, envOptions{})
	credential := "JETON_CLIENT_SECRET="
	var publicJWKS []byte
	if authMethod == oauth.AuthPrivateKeyJWT {
		// The client's key pair: the public half registered, the private
		// half given to the application.
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		private, err := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: "node-1", Algorithm: "ES256", Use: "sig"})
		if err != nil {
			t.Fatal(err)
		}
		credential = "JETON_CLIENT_JWK=" + string(private)
		publicJWKS, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "node-1", Algorithm: "ES256", Use: "sig"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	c, secret := e.client(func(p *oauth.ClientParams) {
		p.Name = "Node app"
		p.PostLogoutRedirectURIs = []string{"https://app.example.com/signed-out"}
		p.AuthMethod = authMethod
		p.JWKS = publicJWKS
		if authMethod == oauth.AuthNone {
			p.Type = store.ClientPublic
		}
	})
	if secret != "" {
		credential += secret
	}
	// JWT access token clients, one per signing algorithm, whose tokens
	// the script checks as a resource server (once is enough).
	type jwtClient struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
		Alg    string `json:"alg"`
	}
	var jwtClients []jwtClient
	if authMethod == oauth.AuthSecretBasic {
		for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
			jc, jsecret := e.client(func(p *oauth.ClientParams) { p.TokenFormat = store.FormatJWT; p.SigningAlg = alg })
			jwtClients = append(jwtClients, jwtClient{jc.ID, jsecret, alg})
		}
	}
	jwtJSON, err := json.Marshal(jwtClients)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = openIDClientDir
	cmd.Env = append(os.Environ(), "JETON_ISSUER="+e.url, "JETON_CLIENT_ID="+c.ID, credential, "JETON_CLIENT_AUTH="+authMethod, "JETON_JWT_CLIENTS="+string(jwtJSON),
		"JETON_REDIRECT_URI=https://app.example.com/callback", "JETON_POST_LOGOUT_REDIRECT_URI=https://app.example.com/signed-out",
		"JETON_RESOURCE="+e.api.Identifier)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var said []string // what the script wrote, for a failure's log
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("openid-client wrote:\n%s\nand on stderr:\n%s", strings.Join(said, "\n"), stderr.Bytes())
		}
	})
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()

	b := e.browser()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64<<10), 64<<10)
	var firstRefresh string
	var jwtChecked []string
	var steps []string
	for lines.Scan() {
		said = append(said, lines.Text())
		var m map[string]string
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("openid-client said %q: %v", lines.Text(), err)
		}
		step := m["step"]
		steps = append(steps, step)
		switch step {
		case "client_credentials":
			in := e.introspect(m["access_token"])
			mustf(t, in["active"] == true && in["client_id"] == c.ID && in["aud"] == e.api.Identifier && in["scope"] == "repos:read",
				"client credentials token: %v", in)
			mustf(t, strings.EqualFold(m["token_type"], "bearer"), "token_type %q", m["token_type"])
		case "authorize":
			q := e.authorize(b, m["url"], true)
			writeLine(t, stdin, "https://app.example.com/callback?"+q.Encode())
		case "authorization_code":
			mustf(t, m["sub"] == e.alice.ID && m["email"] == "alice@example.com" && m["userinfo_email"] == "alice@example.com",
				"authorization code: %v", m)
			mustf(t, e.introspect(m["access_token"])["active"] == true, "the authorization code's access token is inactive")
			firstRefresh = m["refresh_token"]
		case "refresh":
			mustf(t, m["refresh_token"] != "" && m["refresh_token"] != firstRefresh, "the refresh token was not rotated")
			mustf(t, e.introspect(m["access_token"])["active"] == true, "the refreshed access token is inactive")
		case "introspect":
			mustf(t, m["active"] == "true" && m["client_id"] == c.ID && m["sub"] == e.alice.ID, "introspection by the client: %v", m)
		case "revoke":
			mustf(t, e.introspect(m["refresh_token"])["active"] == false, "the revoked refresh token is active")
		case "device":
			e.approveDevice(b, m["verification_uri_complete"])
		case "device_token":
			in := e.introspect(m["access_token"])
			mustf(t, in["active"] == true && in["sub"] == e.alice.ID, "device token: %v", in)
		case "logout":
			p := b.do("GET", m["url"], nil)
			mustf(t, p.status == http.StatusSeeOther && p.location == "https://app.example.com/signed-out?state="+url.QueryEscape(m["state"]),
				"logout: %d %q", p.status, p.location)
			p = b.do("GET", "/device", nil)
			mustf(t, strings.Contains(p.body, `name="password"`), "still signed in after logout")
		case "jwt_access_token":
			mustf(t, len(jwtChecked) < len(jwtClients), "more JWT access tokens than clients")
			jc := jwtClients[len(jwtChecked)]
			jwtChecked = append(jwtChecked, step)
			mustf(t, m["alg"] == jc.Alg && m["sub"] == jc.ID && m["client_id"] == jc.ID && m["aud"] == e.api.Identifier && m["scope"] == "repos:read",
				"%s JWT access token as oauth4webapi read it: %v", jc.Alg, m)
		case "done":
		default:
			t.Fatalf("unknown step %q", step)
		}
		if step != "authorize" && step != "device" && step != "done" {
			writeLine(t, stdin, "ok") // checked: the script may go on
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("openid-client: %v\n%s", err, stderr.Bytes())
	}
	want := []string{"client_credentials", "authorize", "authorization_code", "refresh", "introspect", "revoke", "device", "device_token", "logout"}
	if authMethod == oauth.AuthNone {
		// A public client has no client credentials grant, and cannot
		// introspect.
		want = slices.DeleteFunc(want, func(s string) bool { return s == "client_credentials" || s == "introspect" })
	}
	for range jwtClients {
		want = append(want, "jwt_access_token")
	}
	want = append(want, "done")
	mustf(t, strings.Join(steps, " ") == strings.Join(want, " "), "steps %v, want %v\n%s", steps, want, stderr.Bytes())
}

// writeLine writes s and a newline to w.
func writeLine(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s+"\n"); err != nil {
		t.Fatal(err)
	}
}

// approveDevice plays alice approving a device on the page at uriComplete
// (the verification URI with the user code), signing in first if b has no
// session.
func (e *env) approveDevice(b *browser, uriComplete string) {
	e.t.Helper()
	p := b.do("GET", uriComplete, nil)
	if strings.Contains(p.body, `name="password"`) {
		p = b.login(p, "alice", e.password)
	}
	p = b.do("POST", "/device", p.formValues())
	mustf(e.t, p.status == http.StatusOK && strings.Contains(p.body, `value="allow"`), "device confirmation page: %d %s", p.status, truncateBody(p.body))
	f := p.formValues()
	f.Set("decision", "allow")
	p = b.do("POST", "/device", f)
	mustf(e.t, p.status == http.StatusOK, "device approval: %d %s", p.status, truncateBody(p.body))
}
