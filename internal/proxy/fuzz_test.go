package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequestPath feeds request targets, as a client sends them, through
// the proxy's path check and route matching: a path the proxy accepts is
// canonical (the upstream sees the path that was matched), and a route
// only matches paths under its pattern.
func FuzzRequestPath(f *testing.F) {
	rules, err := ParseRules("fuzz.yaml", []byte(testRules))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/repos/a", "/repos", "/public/../repos/a", "/public/%2e%2e/repos", "/a%2Fb", "//repos/a",
		"/repos/a%5C..", "/billing/x?y=1", "/repos/%00", "/events", "/", "*", "/repos/a/", "/public/..;/repos/a",
		"/repos;x/a", "/events/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http refuses it before the proxy sees it
		}
		r := &http.Request{Method: "GET", URL: u}
		if pathProblem(r) != "" {
			return
		}
		p := u.Path
		if CleanPath(p) != p || strings.ContainsAny(p, "\\\x00;") {
			t.Fatalf("accepted a non-canonical path or a path parameter %q (target %q)", p, target)
		}
		if raw := strings.ToLower(u.RawPath); strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
			t.Fatalf("accepted an encoded slash in %q", target)
		}
		route, err := rules.Match("GET", p)
		if err != nil {
			return
		}
		switch route.Name {
		case "read":
			if p != "/repos" && !strings.HasPrefix(p, "/repos/") {
				t.Fatalf("%q matched /repos/**", p)
			}
		case "public":
			if p != "/public" && !strings.HasPrefix(p, "/public/") {
				t.Fatalf("%q matched /public/**", p)
			}
		case "events":
			if p != "/events" && p != "/events/" {
				t.Fatalf("%q matched /events", p)
			}
		}
	})
}
