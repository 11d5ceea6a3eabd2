package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestScanFollowsPathsNamedOnTheCommandLine proves that a path the user
// names is read whatever it is (a symbolic link to a file or a directory,
// or a pipe such as the /dev/fd/N of bash's <(git diff)), while links met
// inside a walked directory are still not followed.
func TestScanFollowsPathsNamedOnTheCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := mustGenerate(t, "jtp")
	writeFile(t, filepath.Join(dir, "real", "app.env"), "API_KEY="+key+"\n")
	for _, link := range []struct{ name, target string }{
		{"file-link.env", filepath.Join(dir, "real", "app.env")},
		{"dir-link", filepath.Join(dir, "real")},
	} {
		if err := os.Symlink(link.target, filepath.Join(dir, link.name)); err != nil {
			t.Fatal(err)
		}
	}
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			f.WriteString("token: " + key + "\n")
			f.Close()
		}
	}()
	for _, tt := range []struct {
		path string
		want string // the path a finding names
	}{
		{filepath.Join(dir, "file-link.env"), filepath.Join(dir, "file-link.env") + ":1:"},
		{filepath.Join(dir, "dir-link"), filepath.Join(dir, "dir-link", "app.env") + ":1:"},
		{fifo, fifo + ":1:"},
	} {
		stdout, stderr, err := scanRun(t, "", tt.path)
		mustExit(t, err, 1, "jeton scan "+tt.path)
		if !strings.Contains(stdout, tt.want) || strings.Contains(stderr, "skipped") {
			t.Errorf("jeton scan %s: stdout %q, stderr %q; want a finding at %s", tt.path, stdout, stderr, tt.want)
		}
	}
	// Walking dir: the real file is found once, through neither link.
	stdout, _, err := scanRun(t, "", filepath.Join(dir, "real"), filepath.Join(dir, "file-link.env"))
	mustExit(t, err, 1, "jeton scan")
	if n := strings.Count(stdout, "\n"); n != 2 {
		t.Errorf("two named paths to one file: %d findings, want 2:\n%s", n, stdout)
	}
	stdout, _, _ = scanRun(t, "", dir)
	if strings.Contains(stdout, "link") {
		t.Errorf("a link inside a walked directory was followed:\n%s", stdout)
	}
}

func mustExit(t *testing.T, err error, want int, what string) {
	t.Helper()
	if got := exitStatus(err); got != want {
		t.Errorf("%s: exit status %d (%v), want %d", what, got, err, want)
	}
}
