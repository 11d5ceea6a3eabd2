package web

import (
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// base is the fixed instant the tests' clocks start at.
var base = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

var testKey = [32]byte{0: 1, 1: 2, 31: 3}

// clock is a settable fixed clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// newPages returns Pages with the test key and a fixed clock, after mut
// (if any) has changed the configuration.
func newPages(t *testing.T, mut func(*Config)) (*Pages, *clock) {
	t.Helper()
	c := &clock{now: base}
	cfg := Config{SessionKey: testKey, Now: c.Now, Logger: slog.New(slog.DiscardHandler)}
	if mut != nil {
		mut(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

func TestNewRefusesZeroKey(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a session key succeeded")
	}
}

func TestSessionTTLBounds(t *testing.T) {
	for _, tt := range []struct {
		ttl time.Duration
		ok  bool
	}{
		{0, true}, // the default
		{MinSessionTTL, true},
		{MaxSessionTTL, true},
		{MinSessionTTL - time.Second, false},
		{MaxSessionTTL + time.Second, false},
		{-time.Hour, false},
	} {
		_, err := New(Config{SessionKey: testKey, SessionTTL: tt.ttl})
		if (err == nil) != tt.ok {
			t.Errorf("SessionTTL %v: err = %v, want ok %v", tt.ttl, err, tt.ok)
		}
	}
}

// hostile is put in every text field: it must come out escaped.
const hostile = `<script>alert("x")</script>' onmouseover="alert(1)" &amp; {{.}}`

func samplePages() map[string]func(*Pages, http.ResponseWriter) error {
	scopes := []string{"repos:read", "repos:write", "openid"}
	descs := map[string]string{"repos:read": "Read your repositories", "unused": "never shown"}
	return map[string]func(*Pages, http.ResponseWriter) error{
		"login": func(p *Pages, w http.ResponseWriter) error {
			return p.Login(w, http.StatusUnauthorized, LoginPage{ReturnTo: "/oauth2/authorize?client_id=cli_1&state=a%20b",
				ClientName: "Acme CLI", Username: "alice", Error: "Wrong username or password.", CSRF: "tok-login"})
		},
		"consent": func(p *Pages, w http.ResponseWriter) error {
			return p.Consent(w, http.StatusOK, ConsentPage{ClientName: "Acme CLI", APIName: "Acme API", Scopes: scopes,
				ScopeDescriptions: descs, Username: "alice", Hidden: []Field{{"client_id", "cli_1"}, {"state", "x&y"}}, CSRF: "tok-consent"})
		},
		"device_entry": func(p *Pages, w http.ResponseWriter) error {
			return p.DeviceEntry(w, http.StatusBadRequest, DeviceEntryPage{UserCode: "BCDF-GHJK", Username: "alice",
				Error: "That code is not valid or has expired.", CSRF: "tok-entry"})
		},
		"device_confirm": func(p *Pages, w http.ResponseWriter) error {
			return p.DeviceConfirm(w, http.StatusOK, DeviceConfirmPage{ClientName: "Acme TV", APIName: "Acme API", Scopes: scopes,
				ScopeDescriptions: descs, UserCode: "BCDF-GHJK", Username: "alice", Hidden: []Field{{"user_code", "BCDF-GHJK"}}, CSRF: "tok-confirm"})
		},
		"logout": func(p *Pages, w http.ResponseWriter) error {
			return p.Logout(w, http.StatusOK, LogoutPage{ClientName: "Acme Dashboard", Username: "alice",
				Hidden: []Field{{"client_id", "cli_1"}, {"post_logout_redirect_uri", "https://app.example.com/bye"}, {"state", "x&y"}}, CSRF: "tok-logout"})
		},
		"message": func(p *Pages, w http.ResponseWriter) error {
			return p.Message(w, http.StatusGone, MessagePage{Title: "This link has expired", Message: "Start again from the application."})
		},
	}
}

// TestPagesRender renders every page, checks it is well-formed and says
// what it should, and leaves a copy in a temporary directory.
func TestPagesRender(t *testing.T) {
	p, _ := newPages(t, nil)
	dir := t.TempDir()
	tests := []struct {
		page       string
		wantStatus int
		want       []string
		wantForms  [][]Field // hidden fields of each form, in order
	}{
		{"login", http.StatusUnauthorized, []string{
			"<title>Sign in · Jeton</title>", "to continue to <strong>Acme CLI</strong>",
			`role="alert">Wrong username or password.</p>`, `name="username" type="text" value="alice"`,
			`type="password"`, `autocomplete="current-password"`, `<label for="password">Password</label>`,
			`action="/login"`,
		}, [][]Field{{{"csrf", "tok-login"}, {"return_to", "/oauth2/authorize?client_id=cli_1&state=a%20b"}}}},
		{"consent", http.StatusOK, []string{
			"<strong>Acme CLI</strong> wants to access <strong>Acme API</strong> on your behalf",
			"Signed in as <strong>alice</strong>", "Not you? Sign out", `action="/logout"`,
			"<li><code>repos:read</code><span>Read your repositories</span></li>", "<li><code>repos:write</code></li>",
			`name="decision" value="allow"`, `name="decision" value="deny"`, `action="/oauth2/authorize"`,
		}, [][]Field{{{"csrf", "tok-consent"}}, {{"csrf", "tok-consent"}, {"client_id", "cli_1"}, {"state", "x&y"}}}},
		{"device_entry", http.StatusBadRequest, []string{
			"<title>Connect a device · Jeton</title>", `value="BCDF-GHJK"`, `maxlength="32"`,
			`aria-describedby="code-hint form-error"`, "That code is not valid or has expired.", `action="/device"`,
		}, [][]Field{{{"csrf", "tok-entry"}}, {{"csrf", "tok-entry"}}}},
		{"device_confirm", http.StatusOK, []string{
			"<strong>Acme TV</strong> wants to access <strong>Acme API</strong>", `<p class="user-code">BCDF-GHJK</p>`,
			"<code>openid</code>", `name="decision" value="allow"`,
		}, [][]Field{{{"csrf", "tok-confirm"}}, {{"csrf", "tok-confirm"}, {"user_code", "BCDF-GHJK"}}}},
		{"logout", http.StatusOK, []string{
			"<title>Sign out? · Jeton</title>", "<h1>Sign out of Jeton?</h1>", "<strong>Acme Dashboard</strong> asks you to sign out of Jeton too.",
			"Signed in as <strong>alice</strong>", `name="decision" value="stay"`, `name="decision" value="signout"`, `action="/oauth2/logout"`,
		}, [][]Field{{{"csrf", "tok-logout"}, {"client_id", "cli_1"}, {"post_logout_redirect_uri", "https://app.example.com/bye"}, {"state", "x&y"}}}},
		{"message", http.StatusGone, []string{
			"<title>This link has expired · Jeton</title>", "<h1>This link has expired</h1>", "Start again from the application.",
		}, nil},
	}
	render := samplePages()
	for _, tt := range tests {
		t.Run(tt.page, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := render[tt.page](p, rec); err != nil {
				t.Fatal(err)
			}
			body := rec.Body.String()
			if err := os.WriteFile(filepath.Join(dir, tt.page+".html"), rec.Body.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if err := checkHTML(body); err != nil {
				t.Errorf("malformed page: %v\n%s", err, body)
			}
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q\n%s", s, body)
				}
			}
			if diff := cmp.Diff(hiddenFields(body), tt.wantForms); diff != "" {
				t.Errorf("hidden fields (-got +want):\n%s", diff)
			}
			for _, s := range []string{p.style, p.icon, "never shown"} {
				if s == "never shown" {
					if strings.Contains(body, s) {
						t.Errorf("page shows the description of a scope not asked for")
					}
				} else if !strings.Contains(body, s) {
					t.Errorf("page does not link %s", s)
				}
			}
		})
	}
}

// TestPagesEscape puts hostile text in every field: it must reach the
// page escaped, hidden fields must post back exactly what was given, and
// a javascript: action must be neutralised.
func TestPagesEscape(t *testing.T) {
	p, _ := newPages(t, nil)
	hidden := []Field{{hostile, hostile}, {`"name"`, `"><img src=x>`}}
	scopes := []string{hostile, `scope"with'quotes`}
	descs := map[string]string{hostile: hostile}
	pages := map[string]func(http.ResponseWriter) error{
		"login": func(w http.ResponseWriter) error {
			return p.Login(w, 200, LoginPage{Action: "javascript:alert(1)", ReturnTo: hostile, ClientName: hostile, Username: hostile, Error: hostile, CSRF: hostile})
		},
		"consent": func(w http.ResponseWriter) error {
			return p.Consent(w, 200, ConsentPage{ClientName: hostile, APIName: hostile, Scopes: scopes, ScopeDescriptions: descs,
				Username: hostile, Action: "javascript:alert(1)", Hidden: hidden, CSRF: hostile})
		},
		"device_entry": func(w http.ResponseWriter) error {
			return p.DeviceEntry(w, 200, DeviceEntryPage{Action: "javascript:alert(1)", UserCode: `"><b>x`, Username: hostile, Error: hostile, CSRF: hostile})
		},
		"device_confirm": func(w http.ResponseWriter) error {
			return p.DeviceConfirm(w, 200, DeviceConfirmPage{ClientName: hostile, APIName: hostile, Scopes: scopes, ScopeDescriptions: descs,
				UserCode: `"><b>x`, Username: hostile, Action: "javascript:alert(1)", Hidden: hidden, CSRF: hostile})
		},
		"logout": func(w http.ResponseWriter) error {
			return p.Logout(w, 200, LogoutPage{ClientName: hostile, Username: hostile, Action: "javascript:alert(1)", Hidden: hidden, CSRF: hostile})
		},
		"message": func(w http.ResponseWriter) error {
			return p.Message(w, 200, MessagePage{Title: hostile, Message: hostile})
		},
	}
	for name, render := range pages {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := render(rec); err != nil {
				t.Fatal(err)
			}
			body := rec.Body.String()
			if err := checkHTML(body); err != nil {
				t.Errorf("malformed page: %v\n%s", err, body)
			}
			for _, bad := range []string{"<script", "<img src=x", "<b>", `" onmouseover`, "javascript:"} {
				if strings.Contains(body, bad) {
					t.Errorf("page contains %q unescaped", bad)
				}
			}
			if !strings.Contains(body, "&lt;script&gt;") {
				t.Errorf("hostile text not shown escaped")
			}
			if name == "message" {
				return
			}
			if !strings.Contains(body, `action="#ZgotmplZ"`) {
				t.Errorf("javascript: form action not neutralised")
			}
			forms := hiddenFields(body)
			var want []Field
			switch name {
			case "login":
				want = []Field{{"csrf", hostile}, {"return_to", hostile}}
			case "consent", "device_confirm", "logout":
				want = append([]Field{{"csrf", hostile}}, hidden...)
			case "device_entry":
				want = []Field{{"csrf", hostile}}
			}
			if diff := cmp.Diff(forms[len(forms)-1], want); diff != "" {
				t.Errorf("hidden fields do not round-trip (-got +want):\n%s", diff)
			}
			if name == "device_entry" {
				if !strings.Contains(body, `value="&#34;&gt;&lt;b&gt;x"`) {
					t.Errorf("user code not escaped in its value attribute")
				}
			}
		})
	}
}

// TestPagesBounds checks that page data over a bound is refused with a
// generic 500 page, and that long display texts are shortened.
func TestPagesBounds(t *testing.T) {
	p, _ := newPages(t, nil)
	many := make([]Field, MaxFields+1)
	for i := range many {
		many[i] = Field{fmt.Sprintf("f%d", i), "v"}
	}
	tests := []struct {
		name   string
		render func(http.ResponseWriter) error
	}{
		{"no csrf token", func(w http.ResponseWriter) error { return p.Login(w, 200, LoginPage{}) }},
		{"too many hidden fields", func(w http.ResponseWriter) error {
			return p.Consent(w, 200, ConsentPage{Hidden: many, CSRF: "t"})
		}},
		{"hidden field too long", func(w http.ResponseWriter) error {
			return p.Consent(w, 200, ConsentPage{Hidden: []Field{{"state", strings.Repeat("x", MaxFieldBytes)}}, CSRF: "t"})
		}},
		{"hidden field named csrf", func(w http.ResponseWriter) error {
			return p.Consent(w, 200, ConsentPage{Hidden: []Field{{"csrf", "x"}}, CSRF: "t"})
		}},
		{"hidden field named decision", func(w http.ResponseWriter) error {
			return p.DeviceConfirm(w, 200, DeviceConfirmPage{Hidden: []Field{{"decision", "allow"}}, CSRF: "t"})
		}},
		{"logout without csrf token", func(w http.ResponseWriter) error { return p.Logout(w, 200, LogoutPage{}) }},
		{"logout hidden field named decision", func(w http.ResponseWriter) error {
			return p.Logout(w, 200, LogoutPage{Hidden: []Field{{"decision", "signout"}}, CSRF: "t"})
		}},
		{"hidden field without a name", func(w http.ResponseWriter) error {
			return p.DeviceConfirm(w, 200, DeviceConfirmPage{Hidden: []Field{{"", "x"}}, CSRF: "t"})
		}},
		{"too many scopes", func(w http.ResponseWriter) error {
			return p.Consent(w, 200, ConsentPage{Scopes: make([]string, MaxScopes+1), CSRF: "t"})
		}},
		{"scope too long", func(w http.ResponseWriter) error {
			return p.DeviceConfirm(w, 200, DeviceConfirmPage{Scopes: []string{strings.Repeat("s", MaxScopeBytes+1)}, CSRF: "t"})
		}},
		{"return_to too long", func(w http.ResponseWriter) error {
			return p.Login(w, 200, LoginPage{ReturnTo: strings.Repeat("/", MaxFieldBytes+1), CSRF: "t"})
		}},
		{"action too long", func(w http.ResponseWriter) error {
			return p.DeviceEntry(w, 200, DeviceEntryPage{Action: "/" + strings.Repeat("a", maxURLBytes), CSRF: "t"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := tt.render(rec)
			if !errors.Is(err, ErrInvalidPage) {
				t.Errorf("err = %v, want ErrInvalidPage", err)
			}
			if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "Something went wrong") {
				t.Errorf("status %d, want a 500 page:\n%s", rec.Code, rec.Body)
			}
		})
	}

	t.Run("long names are shortened", func(t *testing.T) {
		rec := httptest.NewRecorder()
		long := strings.Repeat("é", 500)
		if err := p.Consent(rec, 200, ConsentPage{ClientName: long, Username: "bob\xff", CSRF: "t"}); err != nil {
			t.Fatal(err)
		}
		body := rec.Body.String()
		if strings.Contains(body, strings.Repeat("é", nameRunes)) || !strings.Contains(body, strings.Repeat("é", nameRunes-1)+"…") {
			t.Errorf("client name not cut at %d characters", nameRunes)
		}
		if !strings.Contains(body, "bob\uFFFD") {
			t.Errorf("invalid UTF-8 not replaced")
		}
	})
	t.Run("defaults", func(t *testing.T) {
		rec := httptest.NewRecorder()
		if err := p.Consent(rec, 0, ConsentPage{CSRF: "t"}); err != nil {
			t.Fatal(err)
		}
		body := rec.Body.String()
		for _, s := range []string{"<strong>An application</strong> wants to access your account", "No specific permissions."} {
			if !strings.Contains(body, s) {
				t.Errorf("page lacks %q", s)
			}
		}
		if rec.Code != http.StatusOK || strings.Contains(body, "Signed in as") {
			t.Errorf("status %d; sign-out shown without a user", rec.Code)
		}
	})
}

func TestProductName(t *testing.T) {
	p, _ := newPages(t, func(c *Config) { c.Product = "Acme Login"; c.LogoutPath = "/signout" })
	rec := httptest.NewRecorder()
	p.DeviceEntry(rec, 200, DeviceEntryPage{Username: "alice", CSRF: "t"})
	for _, s := range []string{"<title>Connect a device · Acme Login</title>", "<span>Acme Login</span>", `action="/signout"`} {
		if !strings.Contains(rec.Body.String(), s) {
			t.Errorf("page lacks %q", s)
		}
	}
}

var (
	formRE   = regexp.MustCompile(`(?s)<form\b.*?</form>`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// hiddenFields returns the hidden fields of each form of a page, unescaped
// as a browser would post them.
func hiddenFields(body string) [][]Field {
	var out [][]Field
	for _, f := range formRE.FindAllString(body, -1) {
		var fields []Field
		for _, m := range hiddenRE.FindAllStringSubmatch(f, -1) {
			fields = append(fields, Field{html.UnescapeString(m[1]), html.UnescapeString(m[2])})
		}
		out = append(out, fields)
	}
	return out
}

var (
	voidElements = map[string]bool{"meta": true, "link": true, "input": true, "img": true, "br": true, "hr": true}
	tagNameRE    = regexp.MustCompile(`^[a-z][a-z0-9]*`)
	attrRE       = regexp.MustCompile(`^\s+([a-z][a-z-]*)(="([^"<]*)")?`)
	entityRE     = regexp.MustCompile(`^&(#[0-9]+|#x[0-9a-fA-F]+|[a-zA-Z]+);`)
)

// checkHTML checks that a page is well-formed as far as Jeton's pages
// need: a doctype, balanced tags, quoted attributes, escaped text, unique
// ids, labels and descriptions that point at existing ids, no nested
// forms, a csrf field in every form, a label for every visible input,
// and no script or inline style.
func checkHTML(body string) error {
	if !strings.HasPrefix(body, "<!doctype html>\n") {
		return errors.New("no doctype")
	}
	var stack []string
	ids := map[string]bool{}
	var refs []string
	var inputs []string // ids of visible inputs
	labels := map[string]bool{}
	forms, csrfInForm := 0, false
	s := body
	for s != "" {
		i := strings.IndexByte(s, '<')
		text := s
		if i >= 0 {
			text = s[:i]
		}
		if strings.ContainsAny(text, ">") {
			return fmt.Errorf("raw > in text %q", text)
		}
		for j := strings.IndexByte(text, '&'); j >= 0; j = strings.IndexByte(text, '&') {
			if !entityRE.MatchString(text[j:]) {
				return fmt.Errorf("bare & in text %q", text)
			}
			text = text[j+1:]
		}
		if i < 0 {
			break
		}
		s = s[i+1:]
		switch {
		case strings.HasPrefix(s, "!"):
			end := strings.IndexByte(s, '>')
			if end < 0 {
				return errors.New("unterminated declaration")
			}
			s = s[end+1:]
		case strings.HasPrefix(s, "/"):
			name := tagNameRE.FindString(s[1:])
			if name == "" || !strings.HasPrefix(s[1+len(name):], ">") {
				return fmt.Errorf("bad end tag near %.20q", s)
			}
			if len(stack) == 0 || stack[len(stack)-1] != name {
				return fmt.Errorf("</%s> closes %v", name, stack)
			}
			stack = stack[:len(stack)-1]
			if name == "form" {
				if !csrfInForm {
					return errors.New("a form without a csrf field")
				}
				forms--
			}
			s = s[len(name)+2:]
		default:
			name := tagNameRE.FindString(s)
			if name == "" {
				return fmt.Errorf("raw < near %.20q", s)
			}
			if name == "script" || name == "style" || name == "iframe" {
				return fmt.Errorf("<%s> element", name)
			}
			s = s[len(name):]
			attrs := map[string]string{}
			for {
				m := attrRE.FindStringSubmatch(s)
				if m == nil {
					break
				}
				if _, dup := attrs[m[1]]; dup {
					return fmt.Errorf("<%s> repeats %s", name, m[1])
				}
				if m[1] == "style" || strings.HasPrefix(m[1], "on") {
					return fmt.Errorf("<%s> has attribute %s", name, m[1])
				}
				if m[2] != "" && strings.Contains(m[3], "&") && !entityRE.MatchString(m[3][strings.IndexByte(m[3], '&'):]) {
					return fmt.Errorf("bare & in attribute %q", m[3])
				}
				attrs[m[1]] = html.UnescapeString(m[3])
				s = s[len(m[0]):]
			}
			if !strings.HasPrefix(s, ">") {
				return fmt.Errorf("<%s> not closed properly near %.20q", name, s)
			}
			s = s[1:]
			if id, ok := attrs["id"]; ok {
				if ids[id] {
					return fmt.Errorf("id %q repeated", id)
				}
				ids[id] = true
			}
			if f, ok := attrs["for"]; ok {
				refs = append(refs, f)
				labels[f] = true
			}
			for ref := range strings.FieldsSeq(attrs["aria-describedby"] + " " + attrs["aria-labelledby"]) {
				refs = append(refs, ref)
			}
			switch name {
			case "form":
				if forms > 0 {
					return errors.New("nested forms")
				}
				forms++
				csrfInForm = false
			case "input":
				if attrs["name"] == "csrf" && attrs["type"] == "hidden" {
					csrfInForm = true
				}
				if attrs["type"] != "hidden" {
					inputs = append(inputs, attrs["id"])
				}
			case "img":
				if _, ok := attrs["alt"]; !ok {
					return errors.New("<img> without alt")
				}
			}
			if !voidElements[name] {
				stack = append(stack, name)
			}
		}
	}
	if len(stack) != 0 {
		return fmt.Errorf("unclosed %v", stack)
	}
	for _, r := range refs {
		if !ids[r] {
			return fmt.Errorf("reference to missing id %q", r)
		}
	}
	for _, id := range inputs {
		if !labels[id] {
			return fmt.Errorf("input %q has no label", id)
		}
	}
	return nil
}

func TestCheckHTMLCatchesMistakes(t *testing.T) {
	good := "<!doctype html>\n<html><body><p>a &amp; b</p></body></html>"
	if err := checkHTML(good); err != nil {
		t.Fatalf("good page refused: %v", err)
	}
	for _, bad := range []string{
		"<html></html>",
		"<!doctype html>\n<html><body><p>x</body></html>",
		"<!doctype html>\n<p>a & b</p>",
		"<!doctype html>\n<p>a > b</p>",
		"<!doctype html>\n<p class=x>b</p>",
		`<!doctype html>` + "\n" + `<p id="a"></p><p id="a"></p>`,
		`<!doctype html>` + "\n" + `<label for="x">x</label>`,
		`<!doctype html>` + "\n" + `<form><input id="a" type="text"></form>`,
		`<!doctype html>` + "\n" + `<form><input type="hidden" name="csrf" value=""><form></form></form>`,
		`<!doctype html>` + "\n" + `<script></script>`,
		`<!doctype html>` + "\n" + `<p style="x"></p>`,
	} {
		if checkHTML(bad) == nil {
			t.Errorf("checkHTML accepted %q", bad)
		}
	}
}

// readAll reads a response body for tests.
func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
