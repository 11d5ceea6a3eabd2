package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetonhq/jeton/internal/httpapi/apitest"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

func mustGenerate(t *testing.T, prefix string) string {
	t.Helper()
	tok, err := tokenfmt.Generate(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func scanRun(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runScan(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func exitStatus(err error) int {
	var ec *exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.code
	}
	return 1
}

func TestScan(t *testing.T) {
	t.Parallel()
	key, access, secret, custom := mustGenerate(t, "jtp"), mustGenerate(t, "jta"), mustGenerate(t, "jts"), mustGenerate(t, "acme_live")
	broken := key[:len(key)-1] + "0"
	if broken == key {
		broken = key[:len(key)-1] + "1"
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app", ".env"), "# settings\nJETON_TOKEN="+key+"\nOTHER="+broken+"\n")
	writeFile(t, filepath.Join(dir, "app", "config.yaml"), "a: 1\nb:\n  - x: \""+access+"\" # and "+secret+"\n")
	writeFile(t, filepath.Join(dir, "logs", "run.log"), "API_KEY_"+custom)
	writeFile(t, filepath.Join(dir, ".git", "objects", "x"), key) // not looked at
	writeFile(t, filepath.Join(dir, "clean.txt"), "jtp_ nothing here")
	if err := os.Symlink(filepath.Join(dir, "app", ".env"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	out, errOut, err := scanRun(t, "", dir)
	if exitStatus(err) != 1 || !errors.Is(err, errTokensFound) {
		t.Fatalf("scan: %v (exit %d), want exit 1", err, exitStatus(err))
	}
	rel := func(p string) string { return filepath.Join(dir, p) }
	want := []string{
		rel("app/.env") + ":2:13: API key " + tokenfmt.Hint(key),
		rel("app/config.yaml") + ":3:9: OAuth access token " + tokenfmt.Hint(access),
		rel("app/config.yaml") + ":3:" + itoa(9+len(access)+8) + ": OAuth client secret " + tokenfmt.Hint(secret),
		rel("logs/run.log") + ":1:9: API key " + tokenfmt.Hint(custom),
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if !strings.Contains(errOut, "4 token(s) found") {
		t.Errorf("stderr: %q", errOut)
	}
	for _, tok := range []string{key, access, secret, custom} {
		if strings.Contains(out+errOut, tok[len(tok)-20:]) {
			t.Errorf("the output holds a secret")
		}
	}

	// JSON, and standard input.
	out, _, err = scanRun(t, "before "+key+" after", "--json", "-")
	var f finding
	if exitStatus(err) != 1 || json.Unmarshal([]byte(out), &f) != nil ||
		f != (finding{Path: "(standard input)", Line: 1, Column: 8, Kind: "API key", Hint: tokenfmt.Hint(key)}) {
		t.Errorf("--json on stdin: %q %v", out, err)
	}

	// Nothing found: exit 0, nothing printed.
	out, errOut, err = scanRun(t, "", filepath.Join(dir, "clean.txt"))
	if err != nil || out != "" || errOut != "" {
		t.Errorf("clean file: %q %q %v", out, errOut, err)
	}
	// A path that cannot be read: exit 2, said on stderr, the rest scanned.
	out, errOut, err = scanRun(t, "", filepath.Join(dir, "missing"), filepath.Join(dir, "clean.txt"))
	if exitStatus(err) != 2 || out != "" || !strings.Contains(errOut, "skipped "+filepath.Join(dir, "missing")) {
		t.Errorf("missing path: %q %q %v", out, errOut, err)
	}
	// Found beats unreadable.
	_, _, err = scanRun(t, "", filepath.Join(dir, "missing"), filepath.Join(dir, "logs"))
	if exitStatus(err) != 1 {
		t.Errorf("missing path and a finding: exit %d", exitStatus(err))
	}
	// Flags after paths.
	out, _, err = scanRun(t, "", filepath.Join(dir, "logs"), "--json")
	if exitStatus(err) != 1 || !strings.HasPrefix(out, "{") {
		t.Errorf("--json after the path: %q", out)
	}
	if _, _, err := scanRun(t, "", "--colour"); err == nil {
		t.Errorf("unknown flag accepted")
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestScanReport(t *testing.T) {
	cleanCLIEnv(t)
	s := apitest.New(t)
	ctx := context.Background()
	newKey := func() string {
		t.Helper()
		k, err := s.Tokens.CreateToken(ctx, tokens.CreateParams{API: s.API.ID, Settings: tokens.Settings{Scopes: []string{"repos:read"}}}, tokens.Actor{ID: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return k.Secret
	}
	codeOf := func(tok string) tokens.Code {
		t.Helper()
		res, err := s.Tokens.Verify(ctx, &tokens.Request{Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		return res.Code
	}
	key, unknown := newKey(), mustGenerate(t, "jtp")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app", ".env"), "API_KEY="+key+"\nOTHER="+unknown+"\nAGAIN="+key+"\n")

	// Without an admin token: the server revokes its own and says only how
	// many it received; the exit status still says tokens were found.
	stdout, stderr, err := scanRun(t, "", "--report", "--server", s.URL, dir)
	if exitStatus(err) != 1 || strings.Count(stdout, "\n") != 3 {
		t.Fatalf("scan --report: exit %d, stdout %q, stderr %q", exitStatus(err), stdout, stderr)
	}
	if !strings.Contains(stderr, "reported 2 token(s) to "+s.URL) {
		t.Errorf("stderr does not say what was reported: %q", stderr)
	}
	if got := codeOf(key); got != tokens.Revoked {
		t.Errorf("reported key: %v, want revoked", got)
	}
	evs, _, err := s.DB.ListAudit(ctx, store.AuditFilter{Action: "leak.report", Limit: 10})
	if err != nil || len(evs) != 1 || !strings.Contains(string(evs[0].Details), `"source":"jeton scan"`) {
		t.Errorf("audit of the report: %v %+v", err, evs)
	}

	// With an admin token it says what each was.
	fresh := newKey()
	writeFile(t, filepath.Join(dir, "app", "config.yaml"), "key: "+fresh+"\n")
	_, stderr, err = scanRun(t, "", "--report", "--server", s.URL, "--token", s.Admin, "--source", "https://git.example/app", dir)
	if exitStatus(err) != 1 {
		t.Fatalf("scan --report --token: exit %d: %v", exitStatus(err), err)
	}
	for _, want := range []string{"api_key " + tokenfmt.Hint(fresh) + ": revoked (tok_", "1 revoked, 1 inactive, 1 unknown."} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q: %q", want, stderr)
		}
	}
	if got := codeOf(fresh); got != tokens.Revoked {
		t.Errorf("reported key: %v, want revoked", got)
	}
	for _, secret := range []string{key, fresh, unknown, s.Admin} {
		if strings.Contains(stderr, secret) {
			t.Errorf("stderr shows a secret")
		}
	}

	// A server that cannot be reached is an error, not a silent success.
	if _, _, err := scanRun(t, "", "--report", "--server", "http://127.0.0.1:1", dir); exitStatus(err) != 1 || !strings.Contains(err.Error(), "report leaks") {
		t.Errorf("report to no server: %v", err)
	}
}
