package oauth

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestRedirectRegistered(t *testing.T) {
	t.Parallel()
	registered := []string{
		"https://app.example.com/cb",
		"http://127.0.0.1/callback",
		"http://[::1]:8080/cb?x=1",
		"http://localhost/cb",
		"com.example.app:/oauth",
	}
	for _, tt := range []struct {
		given string
		want  bool
	}{
		{"https://app.example.com/cb", true},
		{"http://127.0.0.1/callback", true},
		{"com.example.app:/oauth", true},
		// Any port on a loopback IP literal (RFC 8252 §7.3).
		{"http://127.0.0.1:49152/callback", true},
		{"http://127.0.0.1:1/callback", true},
		{"http://[::1]/cb?x=1", true},
		{"http://[::1]:65535/cb?x=1", true},
		// Everything else exactly.
		{"http://127.0.0.1:49152/callback/", false},
		{"http://127.0.0.1:49152/Callback", false},
		{"http://127.0.0.1:49152/callback?x=1", false},
		{"http://127.0.0.1:49152/callback#f", false},
		{"http://[::1]:9/cb?x=2", false},
		{"http://127.0.0.2:49152/callback", false},
		{"http://[::ffff:127.0.0.1]:49152/callback", false},
		{"http://user@127.0.0.1:49152/callback", false},
		{"https://127.0.0.1:49152/callback", false},
		{"HTTP://127.0.0.1:49152/callback", false},
		{"http://localhost:49152/cb", false}, // RFC 8252 §8.3
		{"http://127.0.0.1:49152@evil.example.com/callback", false},
		{"http://127.0.0.1:notaport/callback", false},
		{"https://app.example.com:8443/cb", false},
		{"https://app.example.com/cb/", false},
		{"", false},
	} {
		if got := redirectRegistered(registered, tt.given); got != tt.want {
			t.Errorf("redirectRegistered(%q) = %v, want %v", tt.given, got, tt.want)
		}
	}
}

func FuzzRedirectRegistered(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8080/cb", "http://[::1]/cb", "https://a.example/cb", "http://127.0.0.1:80@x/cb"} {
		f.Add(s)
	}
	registered := []string{"http://127.0.0.1/cb", "http://[::1]/cb", "https://a.example/cb"}
	f.Fuzz(func(t *testing.T, given string) {
		if !redirectRegistered(registered, given) {
			return
		}
		// Whatever matches and is not registered as it is must be an
		// http URI on a loopback IP literal, with the registered path and
		// nothing else: it leads to this machine, where the app listens.
		if slices.Contains(registered, given) {
			return
		}
		u, err := url.Parse(given)
		if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" && u.Hostname() != "::1" || u.User != nil ||
			u.Opaque != "" || u.Path != "/cb" || u.RawPath != "" || u.RawQuery != "" || u.Fragment != "" || strings.Contains(given, "#") {
			t.Fatalf("%q matched", given)
		}
	})
}
