package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRulesExample(t *testing.T) {
	t.Parallel()
	rs, err := LoadRules(filepath.Join("testdata", "proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if rs.API != "https://api.example.com" || rs.Default != Deny {
		t.Errorf("api %q default %q", rs.API, rs.Default)
	}
	want := Headers{Subject: "X-User", Scopes: "X-Jeton-Scopes", TokenID: "", ClientID: "X-Jeton-Client-Id"}
	if diff := cmp.Diff(rs.Headers, want); diff != "" {
		t.Errorf("headers (-got +want):\n%s", diff)
	}
	var got []string
	for _, r := range rs.Routes {
		got = append(got, r.Name)
	}
	if diff := cmp.Diff(got, []string{"health", "line 15", "write repos", "billing", "line 29"}); diff != "" {
		t.Errorf("route names (-got +want):\n%s", diff)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	rs, err := LoadRules(filepath.Join("testdata", "proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		want         string // route name, "" for no match
	}{
		{"GET", "/healthz", "health"},
		{"POST", "/healthz", "health"},
		{"GET", "/healthz/", "health"},
		{"GET", "/repos", "line 15"},
		{"HEAD", "/repos", "line 15"},
		{"GET", "/repos/", "line 15"},
		{"GET", "/repos/jeton/issues/4", "line 15"},
		{"POST", "/repos/jeton", "write repos"},
		{"POST", "/repos", ""},
		{"POST", "/repos/jeton/x", ""},
		{"DELETE", "/repos/jeton", "write repos"},
		{"GET", "/billing/invoices/7", "billing"},
		{"GET", "/billing/invoices", ""},
		{"GET", "/billing/invoices/", ""},
		{"GET", "/billing/invoices/7/pdf", ""},
		{"GET", "/", "line 29"},
		{"GET", "/other", ""},
		{"OPTIONS", "/repos", ""},
	}
	for _, tt := range tests {
		r, err := rs.Match(tt.method, tt.path)
		got := ""
		if err == nil {
			got = r.Name
		} else if !errors.Is(err, ErrNoRoute) {
			t.Errorf("Match(%s %s): %v", tt.method, tt.path, err)
		}
		if got != tt.want {
			t.Errorf("Match(%s %s) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

// TestMatchTrailingSlash: a path ending in a slash also matches the
// routes of the path without it; if the two spellings match different
// routes, neither is chosen.
func TestMatchTrailingSlash(t *testing.T) {
	t.Parallel()
	rs, err := ParseRules("slash.yaml", []byte(`
api: x
routes:
  - name: settings
    path: /repos/*/settings
  - name: repos
    path: /repos/**
  - name: exact
    path: /exact
  - name: slashed
    path: /slashed/
  - name: plain
    path: /slashed
  - name: root
    path: /
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string // route name
		err  error
	}{
		{"/repos/a/settings", "settings", nil},
		{"/repos/a/settings/", "", ErrAmbiguousRoute}, // settings without the slash, repos with it
		{"/repos/a", "repos", nil},
		{"/repos/a/", "repos", nil},
		{"/exact", "exact", nil},
		{"/exact/", "exact", nil},
		{"/exact/x/", "", ErrNoRoute},
		{"/slashed/", "", ErrAmbiguousRoute},
		{"/slashed", "plain", nil},
		{"/", "root", nil},
		{"/nowhere/", "", ErrNoRoute},
	}
	for _, tt := range tests {
		r, err := rs.Match("GET", tt.path)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("Match(GET %s) = %q, %v; want %q, %v", tt.path, got, err, tt.want, tt.err)
		}
	}
}

func TestParseRulesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file string
		line       int
		msg        string
	}{
		{"empty", "", 0, "empty"},
		{"not yaml", "routes: [", 1, ""},
		{"routes missing", "api: x\n", 1, "routes is missing"},
		{"routes not a list", "api: x\nroutes: 3\n", 2, "must be a list"},
		{"unknown top key", "api: x\nroutse: []\n", 2, `unknown key "routse"`},
		{"repeated key", "api: x\napi: y\nroutes: []\n", 2, "given twice"},
		{"bad default", "api: x\ndefault: maybe\nroutes: []\n", 2, "deny or allow"},
		{"unknown route key", "api: x\nroutes:\n  - path: /a\n    scope: [a]\n", 4, `unknown key "scope"`},
		{"no path", "api: x\nroutes:\n  - scopes: [a]\n", 3, "no path"},
		{"relative path", "api: x\nroutes:\n  - path: a/b\n", 3, "must start with /"},
		{"dotdot path", "api: x\nroutes:\n  - path: /a/../b\n", 3, "clean"},
		{"double slash", "api: x\nroutes:\n  - path: /a//b\n", 3, "clean"},
		{"partial wildcard", "api: x\nroutes:\n  - path: /a/b*\n", 3, "whole segments"},
		{"rest not last", "api: x\nroutes:\n  - path: /a/**/b\n", 3, "may only end"},
		{"encoded path", "api: x\nroutes:\n  - path: /a%2Fb\n", 3, "decoded path"},
		{"lower-case method", "api: x\nroutes:\n  - path: /a\n    method: get\n", 4, "not an HTTP method"},
		{"method twice", "api: x\nroutes:\n  - path: /a\n    methods: [GET, GET]\n", 4, "listed twice"},
		{"method and methods", "api: x\nroutes:\n  - path: /a\n    method: GET\n    methods: [POST]\n", 5, "not both"},
		{"star with others", "api: x\nroutes:\n  - path: /a\n    methods: ['*', GET]\n", 4, "stands alone"},
		{"empty methods", "api: x\nroutes:\n  - path: /a\n    methods: []\n", 4, "is empty"},
		{"scope with space", "api: x\nroutes:\n  - path: /a\n    scopes: ['a b']\n", 4, "without spaces"},
		{"scopes not strings", "api: x\nroutes:\n  - path: /a\n    scopes: [{a: b}]\n", 4, "list of strings"},
		{"public with scopes", "api: x\nroutes:\n  - path: /a\n    public: true\n    scopes: [a]\n", 3, "public route takes no scopes"},
		{"public not bool", "api: x\nroutes:\n  - path: /a\n    public: yes\n", 4, "true or false"},
		{"no api", "routes:\n  - path: /a\n", 2, "needs an api"},
		{"duplicate name", "api: x\nroutes:\n  - path: /a\n    name: r\n  - path: /b\n    name: r\n", 5, "already used on line 3"},
		{"bad header", "api: x\nheaders:\n  subject: 'X User'\nroutes: []\n", 3, "not a valid header name"},
		{"reserved header", "api: x\nheaders:\n  subject: Authorization\nroutes: []\n", 3, "cannot carry identity"},
		{"header used twice", "api: x\nheaders:\n  subject: X-A\n  scopes: x-a\nroutes: []\n", 4, "already used on line 3"},
		{"unknown header key", "api: x\nheaders:\n  email: X-Email\nroutes: []\n", 3, `unknown key "email"`},
		{"route not a mapping", "api: x\nroutes:\n  - /a\n", 3, "must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseRules("proxy.yaml", []byte(tt.file))
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LineError", err)
			}
			if le.Line != tt.line || !strings.Contains(le.Msg, tt.msg) {
				t.Errorf("got %q (line %d), want line %d containing %q", err, le.Line, tt.line, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "proxy.yaml:") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLoadRulesTooLarge(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte("# "+strings.Repeat("x", MaxRulesFileBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRules(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a size error", err)
	}
}

func TestCleanPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/": "/", "/a": "/a", "/a/": "/a/", "/a//b": "/a/b", "/a/./b": "/a/b", "/a/../b": "/b",
		"/../a": "/a", "/a/..": "/", "/a/b/": "/a/b/", "a": "/a", "": "/",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseRules checks that any route file either parses into rules whose
// every route has a clean pattern, or fails with an error naming the file.
func FuzzParseRules(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "proxy.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("api: x\nroutes:\n  - path: /{a}/{b...}\n    methods: GET\n"))
	f.Add([]byte("routes:\n  - path: /a\n    public: true\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseRules("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, r := range rs.Routes {
			if CleanPath(r.Path) != r.Path || r.Name == "" || r.Line <= 0 {
				t.Fatalf("route %+v accepted", r)
			}
			if !r.Public && r.Audience(rs) == "" {
				t.Fatalf("route %q has no api", r.Name)
			}
			rs.Match("GET", r.Path) // must not panic
		}
	})
}
