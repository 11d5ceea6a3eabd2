package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/client"
	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/password"
	"github.com/jetonhq/jeton/internal/store"
)

// jetonCLI runs the real command line against a real server.
type jetonCLI struct {
	t *testing.T
	s *apitest.Server
}

func newJetonCLI(t *testing.T) *jetonCLI {
	t.Helper()
	cleanCLIEnv(t)
	return &jetonCLI{t: t, s: apitest.New(t)}
}

// run runs "jeton args… --server URL --token ADMIN".
func (j *jetonCLI) run(args ...string) (stdout, stderr string, err error) {
	j.t.Helper()
	args = append(append([]string{}, args...), "--server", j.s.URL, "--token", j.s.Admin)
	var out, errOut bytes.Buffer
	err = run(j.t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// ok runs a command that must succeed and returns its standard output.
func (j *jetonCLI) ok(args ...string) string {
	j.t.Helper()
	stdout, stderr, err := j.run(args...)
	if err != nil {
		j.t.Fatalf("jeton %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

// json runs a command with --json and decodes its answer into out.
func (j *jetonCLI) json(out any, args ...string) {
	j.t.Helper()
	stdout := j.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		j.t.Fatalf("jeton %s --json: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

// showField returns the value of the "Label:   value" line of a shown
// object.
func showField(out, label string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, label); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// withStdin makes --password-stdin read s.
func withStdin(t *testing.T, s string) {
	t.Helper()
	old := passwordStdin
	t.Cleanup(func() { passwordStdin = old })
	passwordStdin = strings.NewReader(s)
}

func TestCLIClientCommands(t *testing.T) {
	j := newJetonCLI(t)

	out := j.ok("client", "create", "--name", "billing", "--grant-types", "client_credentials", "--apis", "acme",
		"--scopes", "repos:read", "--access-token-ttl", "10m")
	id, _, _ := strings.Cut(strings.TrimPrefix(out, "Created client "), ".")
	secret := strings.Fields(out)[3]
	if !strings.HasPrefix(id, "cli_") || !strings.HasPrefix(secret, "jts_") || !strings.Contains(out, "will not be shown again") ||
		showField(out, "Access token TTL:") != "10m" {
		t.Fatalf("client create:\n%s", out)
	}

	// Ids sort by their millisecond, then at random: each client is made in
	// a later one than the one before, so that the list's order is known.
	j.s.Clock.Advance(time.Millisecond)
	var web client.OAuthClient
	j.json(&web, "client", "create", "--name", "web", "--redirect-uris", "https://app.example.com/cb,http://127.0.0.1:9999/cb",
		"--apis", "https://api.acme.test", "--scopes", "openid,repos:read", "--token-format", "jwt", "--signing-alg", "EdDSA")
	if web.Secret == "" || web.TokenFormat != "jwt" || web.SigningAlg != "EdDSA" || len(web.RedirectURIs) != 2 || web.APIs[0] != j.s.API.ID {
		t.Errorf("client create --json: %+v", web)
	}
	out = j.ok("api", "update", "acme", "--scope-description", "repos:read=Read your repositories")
	if !regexp.MustCompile(`(?m)^\s+repos:read:\s+Read your repositories$`).MatchString(out) {
		t.Errorf("api update --scope-description:\n%s", out)
	}
	out = j.ok("client", "update", web.ID, "--post-logout-redirect-uris", "https://app.example.com/bye")
	if !strings.Contains(out, "Post-logout redirect URIs:") || !strings.Contains(out, "https://app.example.com/bye") {
		t.Errorf("client update --post-logout-redirect-uris:\n%s", out)
	}
	var cleared client.OAuthClient
	j.json(&cleared, "client", "update", web.ID, "--post-logout-redirect-uris", "")
	if len(cleared.PostLogoutRedirectURIs) != 0 || len(cleared.RedirectURIs) != 2 {
		t.Errorf("client update --post-logout-redirect-uris '': %+v", cleared)
	}
	j.s.Clock.Advance(time.Millisecond)
	var pub client.OAuthClient
	j.json(&pub, "client", "create", "--name", "tv", "--type", "public",
		"--grant-types", "urn:ietf:params:oauth:grant-type:device_code,refresh_token", "--apis", "acme", "--scopes", "repos:read")
	if pub.Secret != "" || pub.AuthMethod != "none" {
		t.Errorf("public client: %+v", pub)
	}

	out = j.ok("client", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "CLIENT ID") || !strings.HasPrefix(lines[1], pub.ID) ||
		!strings.Contains(lines[1], "device_code,refresh_token") || !strings.HasPrefix(lines[3], id) {
		t.Errorf("client list:\n%s", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, web.Secret) {
		t.Errorf("client list shows a secret:\n%s", out)
	}
	_, stderr, err := j.run("client", "list", "--limit", "1")
	if err != nil || !strings.Contains(stderr, "more clients: --cursor ") {
		t.Errorf("client list --limit 1: %v, stderr %q", err, stderr)
	}

	out = j.ok("client", "get", id)
	if !strings.Contains(out, "Client ID:") || !strings.Contains(out, id) || !strings.Contains(out, "Secret hint:") || strings.Contains(out, secret) {
		t.Errorf("client get:\n%s", out)
	}

	var upd client.OAuthClient
	j.json(&upd, "client", "update", id, "--name", "billing v2", "--disable", "--scopes", "repos:read,repos:write", "--access-token-ttl", "1h")
	if upd.Name != "billing v2" || !upd.Disabled || len(upd.Scopes) != 2 || upd.AccessTokenTTL != 3600 {
		t.Errorf("client update: %+v", upd)
	}
	out = j.ok("client", "update", id, "--enable")
	if !strings.Contains(out, "Updated client "+id) || !strings.Contains(out, "enabled") {
		t.Errorf("client update --enable:\n%s", out)
	}

	out = j.ok("client", "rotate-secret", id, "--grace", "1h")
	if !strings.Contains(out, "jts_") || !strings.Contains(out, "keeps working until") {
		t.Errorf("rotate-secret --grace:\n%s", out)
	}
	out = j.ok("client", "rotate-secret", id)
	if !strings.Contains(out, "no longer works") {
		t.Errorf("rotate-secret:\n%s", out)
	}

	if out := j.ok("client", "delete", id); out != "Deleted client "+id+".\n" {
		t.Errorf("client delete: %q", out)
	}
	_, _, err = j.run("client", "get", id)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("get deleted client: %v", err)
	}
	if out := j.ok("client", "delete", web.ID, "--json"); out != "{}\n" {
		t.Errorf("client delete --json: %q", out)
	}
}

func TestCLIClientJWKS(t *testing.T) {
	j := newJetonCLI(t)
	jwks := `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`
	file := t.TempDir() + "/jwks.json"
	if err := os.WriteFile(file, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	var o client.OAuthClient
	j.json(&o, "client", "create", "--name", "pkj", "--grant-types", "client_credentials", "--auth-method", "private_key_jwt", "--jwks", "@"+file)
	if o.Secret != "" || !strings.Contains(string(o.JWKS), "P-256") {
		t.Errorf("create with --jwks @file: %+v", o)
	}
	j.json(&o, "client", "update", o.ID, "--jwks", "none", "--jwks-uri", "https://app.example.com/jwks.json")
	if string(o.JWKS) != "null" || o.JWKSURI != "https://app.example.com/jwks.json" {
		t.Errorf("update --jwks none: jwks %s, uri %q", o.JWKS, o.JWKSURI)
	}
	j.json(&o, "client", "update", o.ID, "--jwks", jwks, "--jwks-uri", "")
	if !strings.Contains(string(o.JWKS), "P-256") || o.JWKSURI != "" {
		t.Errorf("update --jwks JSON: jwks %s, uri %q", o.JWKS, o.JWKSURI)
	}
}

// checkPassword reports whether pw is the stored password of user id.
func (j *jetonCLI) checkPassword(id, pw string) bool {
	j.t.Helper()
	u, err := j.s.DB.GetUser(context.Background(), id)
	if err != nil {
		j.t.Fatal(err)
	}
	ok, _, err := password.NewHasher(password.Params{}, 0).Verify(context.Background(), u.PasswordHash, pw)
	if err != nil {
		j.t.Fatal(err)
	}
	return ok
}

func TestCLIUserCommands(t *testing.T) {
	j := newJetonCLI(t)
	const pw = "correct horse battery staple"

	withStdin(t, pw+"\n")
	stdout, stderr, err := j.run("user", "create", "--username", "alice", "--email", "alice@example.com", "--password-stdin")
	if err != nil {
		t.Fatalf("user create: %v\n%s", err, stderr)
	}
	if strings.Contains(stdout+stderr, pw) {
		t.Errorf("user create prints the password:\n%s%s", stdout, stderr)
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(stdout, "Created user "), ".")
	if !strings.HasPrefix(id, "usr_") || !strings.Contains(stdout, "alice@example.com") {
		t.Fatalf("user create:\n%s", stdout)
	}
	if !j.checkPassword(id, pw) {
		t.Errorf("the stored password is not the one read from standard input")
	}

	// Ids sort by their millisecond, then at random: bob lists first only if
	// created in a later one than alice.
	j.s.Clock.Advance(time.Millisecond)
	var bob client.User
	j.json(&bob, "user", "create", "--username", "bob", "--password", "hunter2 hunter2 hunter2")
	if bob.Username != "bob" || bob.Email != "" || strings.Contains(string(bob.Raw), "hunter2") {
		t.Errorf("user create --password: %+v", bob)
	}

	out := j.ok("user", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], bob.ID) || !strings.HasPrefix(lines[2], id) {
		t.Errorf("user list:\n%s", out)
	}
	var page client.UserList
	j.json(&page, "user", "list", "--limit", "1", "--cursor", bob.ID)
	if len(page.Users) != 1 || page.Users[0].ID != id || page.Next != "" {
		t.Errorf("user list --cursor: %+v", page)
	}
	if out := j.ok("user", "get", id); showField(out, "Username:") != "alice" || showField(out, "Sessions ended:") != "never" {
		t.Errorf("user get:\n%s", out)
	}
	if out := j.ok("user", "end-sessions", id); !strings.HasPrefix(out, "Signed user "+id+" out of every browser.") {
		t.Errorf("user end-sessions: %q", out)
	}
	var ended client.User
	j.json(&ended, "user", "get", id)
	if ended.SessionsEndedAt == nil {
		t.Errorf("user get after end-sessions: %s", ended.Raw)
	}

	const pw2 = "  spaces at both ends  "
	withStdin(t, pw2+"\r\n")
	var upd client.User
	j.json(&upd, "user", "update", id, "--email", "a@example.com", "--disable", "--password-stdin")
	if upd.Email != "a@example.com" || !upd.Disabled {
		t.Errorf("user update: %+v", upd)
	}
	if !j.checkPassword(id, pw2) || j.checkPassword(id, pw) {
		t.Errorf("user update --password-stdin did not set the password exactly")
	}
	if out := j.ok("user", "update", id, "--enable"); !strings.Contains(out, "enabled") {
		t.Errorf("user update --enable:\n%s", out)
	}

	// Consents: one stored as the consent page does.
	var web client.OAuthClient
	j.json(&web, "client", "create", "--name", "web", "--redirect-uris", "https://app.example.com/cb", "--apis", "acme", "--scopes", "repos:read")
	now := j.s.Clock.Now().UTC().Truncate(time.Second)
	if err := j.s.DB.PutConsent(context.Background(), store.Consent{UserID: id, ClientID: web.ID, APIID: j.s.API.ID,
		Scopes: []string{"repos:read"}, CreatedAt: now, UpdatedAt: now}, store.AuditEvent{}); err != nil {
		t.Fatal(err)
	}
	out = j.ok("user", "consents", id)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "CLIENT ID API SCOPES GIVEN UPDATED" ||
		!strings.Contains(lines[1], web.ID) || !strings.Contains(lines[1], "repos:read") {
		t.Errorf("user consents:\n%s", out)
	}
	out = j.ok("user", "revoke-consent", id, web.ID)
	if !strings.Contains(out, "Revoked the consent of user "+id+" to client "+web.ID) {
		t.Errorf("revoke-consent: %q", out)
	}
	var cs client.ConsentList
	j.json(&cs, "user", "consents", id)
	if len(cs.Consents) != 0 {
		t.Errorf("consents after revoke: %+v", cs)
	}

	if out := j.ok("user", "delete", bob.ID); out != "Deleted user "+bob.ID+".\n" {
		t.Errorf("user delete: %q", out)
	}
}

func TestCLIKeyCommands(t *testing.T) {
	j := newJetonCLI(t)
	var before client.SigningKeyList
	j.json(&before, "key", "list")
	if len(before.Keys) != 1 || before.Keys[0].State != "active" {
		t.Fatalf("key list: %+v", before)
	}
	out := j.ok("key", "rotate")
	if !strings.Contains(out, "Published new signing keys") || !strings.Contains(out, "next") {
		t.Errorf("key rotate:\n%s", out)
	}
	j.s.Clock.Advance(apitest.KeyPrePublish)
	out = j.ok("key", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var states []string
	for _, l := range lines[1:] {
		states = append(states, strings.Fields(l)[2])
	}
	if diff := cmp.Diff(states, []string{"retired", "active"}); diff != "" || !strings.HasPrefix(lines[0], "ID") {
		t.Errorf("key list after the delay (-got +want):\n%s\n%s", diff, out)
	}
}

func TestCLIOAuthErrors(t *testing.T) {
	j := newJetonCLI(t)
	const pw = "correct horse battery staple"
	j.ok("user", "create", "--username", "alice", "--password", pw)
	countUsers := func() int {
		us, _, err := j.s.DB.ListUsers(context.Background(), "", 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(us)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string // in the error
	}{
		{"client create without name", "", []string{"client", "create"}, "--name is required"},
		{"client update nothing", "", []string{"client", "update", "cli_x"}, "nothing to change"},
		{"client update both states", "", []string{"client", "update", "cli_x", "--disable", "--enable"}, "exclude each other"},
		{"client bad jwks", "", []string{"client", "create", "--name", "x", "--jwks", "[1]"}, "--jwks must be a JSON object"},
		{"client zero ttl", "", []string{"client", "create", "--name", "x", "--access-token-ttl", "0s"}, "must be positive"},
		{"client bad redirect", "", []string{"client", "create", "--name", "x", "--redirect-uris", "http://app.example.com/cb"}, "invalid_redirect_uri"},
		{"client undefined scope", "", []string{"client", "create", "--name", "x", "--grant-types", "client_credentials", "--apis", "acme", "--scopes", "nope"}, "invalid_scope"},
		{"user create without password", "", []string{"user", "create", "--username", "bob"}, "a password is required"},
		{"user create empty stdin", "\n", []string{"user", "create", "--username", "bob", "--password-stdin"}, "no password on standard input"},
		{"user create both password flags", pw, []string{"user", "create", "--username", "bob", "--password", pw, "--password-stdin"}, "exclude each other"},
		{"user create without username", pw, []string{"user", "create", "--password-stdin"}, "--username is required"},
		{"user duplicate", pw, []string{"user", "create", "--username", "alice", "--password-stdin"}, "conflict"},
		{"user update nothing", "", []string{"user", "update", "usr_x"}, "nothing to change"},
		{"user revoke-consent one argument", "", []string{"user", "revoke-consent", "usr_x"}, "want ID and CLIENT_ID"},
		{"user end-sessions without ID", "", []string{"user", "end-sessions"}, "want ID"},
		{"unknown subcommand", "", []string{"key", "delete"}, `unknown command "delete"`},
	}
	before := countUsers()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withStdin(t, tt.stdin)
			stdout, stderr, err := j.run(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error()+stdout+stderr, pw) {
				t.Errorf("output or error shows the password")
			}
		})
	}
	if after := countUsers(); after != before {
		t.Errorf("%d users after failed commands, want %d", after, before)
	}
	// Help lists the flags without the admin token or a password.
	t.Setenv("JETON_TOKEN", "very-secret-admin-token")
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"user", "create", "-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("user create -h: %v", err)
	}
	if !strings.Contains(errOut.String(), "-password-stdin") || strings.Contains(errOut.String(), "very-secret-admin-token") {
		t.Errorf("user create -h:\n%s", errOut.String())
	}
	out.Reset()
	if err := run(t.Context(), []string{"help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"client ", "user ", "key "} {
		if !strings.Contains(out.String(), "\n  "+cmd) {
			t.Errorf("usage does not list %q:\n%s", cmd, out.String())
		}
	}
}
