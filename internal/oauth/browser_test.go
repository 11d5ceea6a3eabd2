package oauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/jetonhq/jeton/internal/oauth"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/users"
)

// The tests in this file drive the sign-in, consent and device pages with
// a real browser: headless Chromium, through the DevTools protocol. They
// prove what a Go HTTP client cannot: that the forms work in a browser with
// JavaScript turned off, that the browser's own cross-origin signals
// (Sec-Fetch-Site, Origin) let our forms through and stop another site's,
// that __Host- cookies stick over https, that the pages refuse to be
// framed, that nothing on them breaks their Content-Security-Policy, and
// that a script on another origin may call the endpoints CORS opens to it.
//
// They run when JETON_TEST_CHROMIUM names a Chromium binary (.ci/run
// installs Debian's chromium and sets it) and are skipped otherwise. With
// JETON_TEST_SCREENSHOTS set to a directory, each page is also saved there
// as a PNG, for a person to look at.

// plainHost is a host name that the browser maps to 127.0.0.1. Unlike
// 127.0.0.1 it is not a "potentially trustworthy" origin, so the browser
// sends no Sec-Fetch-* headers to it over http, and the cross-origin check
// must rely on the Origin header: the case of a server reached over plain
// http by its name on a private network, or of an older browser.
const plainHost = "jeton.test"

func TestInBrowser(t *testing.T) {
	t.Parallel()
	bin := os.Getenv("JETON_TEST_CHROMIUM")
	if bin == "" {
		t.Skip("JETON_TEST_CHROMIUM is not set")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // root in CI
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 900),
		chromedp.Flag("host-resolver-rules", "MAP "+plainHost+" 127.0.0.1"),
		// httptest's self-signed certificate, for the https server.
		chromedp.Flag("ignore-certificate-errors", true),
		// The machine has no network beyond loopback: nothing in the
		// background.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The first action starts the browser and ties its life to the
	// context it is given, so it gets one that lasts the whole test.
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}

	for _, o := range []origin{
		{label: "127.0.0.1", host: "127.0.0.1"},
		{label: "http-" + plainHost, host: plainHost},
		{label: "https-" + plainHost, host: plainHost, tls: true},
	} {
		t.Run("authorization code without JavaScript/"+o.label, func(t *testing.T) {
			t.Parallel()
			testBrowserAuthorizationCode(t, newTab(t, browserCtx), o)
		})
		t.Run("device flow without JavaScript/"+o.label, func(t *testing.T) {
			t.Parallel()
			testBrowserDeviceFlow(t, newTab(t, browserCtx), o)
		})
	}
	t.Run("forms posted from another origin change nothing", func(t *testing.T) {
		t.Parallel()
		testBrowserCrossOriginForms(t, newTab(t, browserCtx))
	})
	t.Run("pages refuse to be framed", func(t *testing.T) {
		t.Parallel()
		testBrowserFraming(t, newTab(t, browserCtx))
	})
	t.Run("a browser application calls the token endpoint from its script", func(t *testing.T) {
		t.Parallel()
		testBrowserApplication(t, newTab(t, browserCtx))
	})
	t.Run("an application on another site signs the user out", func(t *testing.T) {
		t.Parallel()
		testBrowserLogout(t, newTab(t, browserCtx))
	})
}

// actionTimeout bounds one navigation or click, well below the tab's
// whole timeout, so that a step that leads nowhere fails on its own.
const actionTimeout = 20 * time.Second

// tab is one browser tab in a browser context of its own (its own
// cookies), with the security messages the browser logged for it.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	security []string // text of the browser's "security" log entries
}

func newTab(t *testing.T, browserCtx context.Context) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)
	tb := &tab{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	logs := chromedp.Events(ctx, log.EntryAdded)
	go func() {
		for ev, err := range logs {
			if err != nil {
				return
			}
			if ev.Entry.Source == log.EntrySourceSecurity {
				tb.mu.Lock()
				tb.security = append(tb.security, ev.Entry.Text)
				tb.mu.Unlock()
			}
		}
	}()
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("log.enable: %v", err)
	}
	return tb
}

// scriptsOff turns JavaScript off in the tab: every page must work
// without it.
func (tb *tab) scriptsOff() {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		tb.t.Fatalf("turn JavaScript off: %v", err)
	}
}

// open navigates to rawURL and returns the status of the page.
func (tb *tab) open(rawURL string) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(rawURL))
	if err != nil {
		tb.t.Fatalf("open %s: %v", rawURL, err)
	}
	return resp.Status
}

// click clicks the element sel, which must submit a form or follow a link,
// and returns the status of the page it leads to.
func (tb *tab) click(sel string) int64 {
	tb.t.Helper()
	// A click that leads nowhere would wait for the tab's whole timeout.
	ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("click %s: %v", sel, err)
	}
	return resp.Status
}

// typeInto types text into the field sel, as a user would.
func (tb *tab) typeInto(sel, text string) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, chromedp.SendKeys(chromedp.CSS(sel), text)); err != nil {
		tb.t.Fatalf("type into %s: %v", sel, err)
	}
}

// text returns the visible text of the first element sel.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	s, err := chromedp.Run(tb.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// formFields returns the name and value of every input of the form sel.
func (tb *tab) formFields(sel string) url.Values {
	tb.t.Helper()
	all, err := chromedp.Run(tb.ctx, chromedp.AttributesAll(chromedp.CSSAll(sel+" input")))
	if err != nil {
		tb.t.Fatalf("fields of %s: %v", sel, err)
	}
	v := url.Values{}
	for _, attrs := range all {
		if attrs["name"] != "" {
			v.Set(attrs["name"], attrs["value"])
		}
	}
	return v
}

// location returns the URL of the page shown.
func (tb *tab) location() string {
	tb.t.Helper()
	loc, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil {
		tb.t.Fatalf("location: %v", err)
	}
	return loc
}

// page checks the page shown for what every page must have (controls a
// screen reader can name) and saves a screenshot of it named name.
func (tb *tab) page(name string) {
	tb.t.Helper()
	tb.checkAccessible(name)
	tb.screenshot(name)
}

// checkAccessible fails the test if a field, button or link of the page
// shown has no accessible name (no label, no text): a screen reader would
// announce it as a bare "edit text" or "button".
func (tb *tab) checkAccessible(name string) {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		tb.t.Fatalf("accessibility tree: %v", err)
	}
	headings := 0
	for _, n := range res.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		switch role := strings.Trim(string(n.Role.Value), `"`); role {
		case "heading":
			headings++
		case "textbox", "button", "link", "checkbox", "combobox":
			if n.Name == nil || strings.Trim(string(n.Name.Value), `" `) == "" {
				tb.t.Errorf("%s page: a %s has no accessible name", name, role)
			}
		}
	}
	mustf(tb.t, headings > 0, "%s page: no heading in the accessibility tree (%d nodes)", name, len(res.Nodes))
}

// screenshot saves the page shown as NAME.png under
// JETON_TEST_SCREENSHOTS, when that is set.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	dir := os.Getenv("JETON_TEST_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// checkFitsPhone lays the page out as a phone would, 375 CSS pixels wide,
// and fails the test if the page is wider than that (a reader would have
// to scroll sideways). It saves a screenshot named shot at that width.
func (tb *tab) checkFitsPhone(shot string) {
	tb.t.Helper()
	phone := emulation.SetDeviceMetricsOverrideParams{Width: 375, Height: 740, DeviceScaleFactor: 1, Mobile: true}
	if _, err := chromedp.Call(tb.ctx, emulation.SetDeviceMetricsOverride, phone); err != nil {
		tb.t.Fatalf("phone viewport: %v", err)
	}
	defer func() {
		if _, err := chromedp.Call(tb.ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{}); err != nil {
			tb.t.Fatalf("back to the window's viewport: %v", err)
		}
		// The page is laid out again at the window's width, which can
		// happen after this returns; a click meanwhile would aim at
		// where a button was on the phone. Wait for it.
		deadline := time.Now().Add(actionTimeout)
		for {
			m, err := chromedp.Call(tb.ctx, cdppage.GetLayoutMetrics, cdp.Empty{})
			if err != nil {
				tb.t.Fatalf("layout metrics: %v", err)
			}
			if m.CSSLayoutViewport.ClientWidth > 375 {
				return
			}
			if time.Now().After(deadline) {
				tb.t.Fatalf("the page stayed at the phone's width")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	m, err := chromedp.Call(tb.ctx, cdppage.GetLayoutMetrics, cdp.Empty{})
	if err != nil {
		tb.t.Fatalf("layout metrics: %v", err)
	}
	mustf(tb.t, m.CSSContentSize.Width <= 375, "the page is %.0f CSS pixels wide on a 375-pixel phone", m.CSSContentSize.Width)
	tb.screenshot(shot)
}

// securityMessages returns what the browser has logged as security
// messages (Content-Security-Policy violations among them).
func (tb *tab) securityMessages() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.security...)
}

// checkStyled fails the test unless the page's stylesheet applies: its
// card is 28rem wide at most, where an unstyled page has no limit.
func (tb *tab) checkStyled() {
	tb.t.Helper()
	props, err := chromedp.Run(tb.ctx, chromedp.ComputedStyle(chromedp.CSS("main")))
	if err != nil {
		tb.t.Fatalf("computed style: %v", err)
	}
	for _, p := range props {
		if p.Name == "max-width" {
			mustf(tb.t, p.Value == "448px", "the page is not styled: max-width of its card is %q", p.Value)
			return
		}
	}
	tb.t.Fatal("the page's card has no computed max-width")
}

// checkClean fails the test if the browser logged a security message:
// every page and its stylesheet must keep to the Content-Security-Policy.
func (tb *tab) checkClean() {
	tb.t.Helper()
	for _, m := range tb.securityMessages() {
		tb.t.Errorf("the browser logged a security message: %s", m)
	}
}

// callback is a client's redirect URI on a listener of its own: it records
// the query of each redirect it receives.
type callback struct {
	*httptest.Server
	got chan url.Values
}

func newCallback(t *testing.T) *callback {
	cb := &callback{got: make(chan url.Values, 4)}
	cb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/signed-out" {
			fmt.Fprint(w, "<!doctype html><title>Signed out of the app</title><p>Signed out of the app.</p>")
			return
		}
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		select {
		case cb.got <- r.URL.Query():
		default:
		}
		fmt.Fprint(w, "<!doctype html><title>Back at the app</title><p>Back at the app.</p>")
	}))
	t.Cleanup(cb.Close)
	return cb
}

// origin is where the browser reaches Jeton: the host name it uses (the
// server listens on 127.0.0.1) and whether over https, in which case the
// issuer is https and the pages' cookies are Secure and __Host- prefixed.
type origin struct {
	label string // for subtest and screenshot names
	host  string
	tls   bool
}

// onHost returns base with its host name replaced by host (the port kept).
func onHost(t *testing.T, base, host string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host + ":" + u.Port()
	return u.String()
}

// checkCookies fails the test unless every cookie the browser holds for
// base is HttpOnly and, over https, Secure with the __Host- prefix (which
// the browser only accepts from a secure origin, for path /, without a
// Domain).
func (tb *tab) checkCookies(base string, tls bool) {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		tb.t.Fatalf("cookies: %v", err)
	}
	mustf(tb.t, len(res.Cookies) > 0, "the browser holds no cookie for %s", base)
	for _, c := range res.Cookies {
		mustf(tb.t, c.HTTPOnly, "cookie %s is not HttpOnly", c.Name)
		if tls {
			mustf(tb.t, c.Secure && strings.HasPrefix(c.Name, "__Host-") && c.Path == "/", "cookie %s over https: secure %v, path %q", c.Name, c.Secure, c.Path)
		}
	}
}

// testBrowserAuthorizationCode signs in (once with a wrong password),
// consents, and follows the redirect back to the client, then redeems the
// code with golang.org/x/oauth2 and PKCE.
func testBrowserAuthorizationCode(t *testing.T, tb *tab, o origin) {
	e := newEnv(t, envOptions{tls: o.tls})
	host := o.label
	cb := newCallback(t)
	c, secret := e.client(func(p *oauth.ClientParams) {
		p.Name = "Photo Printer"
		p.RedirectURIs = []string{cb.URL + "/callback"}
	})
	base := onHost(t, e.url, o.host)
	conf := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: cb.URL + "/callback",
		Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"openid", "repos:read"}}
	verifier := oauth2.GenerateVerifier()
	tb.scriptsOff()

	status := tb.open(conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier)))
	mustf(t, status == http.StatusOK, "authorize: status %d", status)
	mustf(t, tb.text("h1") == "Sign in", "authorize showed %q, want the sign-in page", tb.text("h1"))
	tb.checkStyled()
	tb.page(host + "-login")
	tb.checkFitsPhone(host + "-login-phone")

	tb.typeInto("#username", "alice")
	tb.typeInto("#password", "not her password")
	status = tb.click(`form.stack button`)
	mustf(t, status == http.StatusUnauthorized, "wrong password: status %d, want 401", status)
	mustf(t, strings.Contains(tb.text("main"), "Wrong username or password."), "wrong password: page says %q", tb.text("main"))
	tb.page(host + "-login-error")

	// The username is kept; the password is typed again.
	tb.typeInto("#password", e.password)
	status = tb.click(`form.stack button`)
	mustf(t, status == http.StatusOK, "sign in: status %d", status)
	consent := tb.text("main")
	for _, want := range []string{"Photo Printer", "repos:read", "openid", "Sign you in with your account", "Signed in as alice", "Allow", "Deny"} {
		mustf(t, strings.Contains(consent, want), "consent page lacks %q: %q", want, consent)
	}
	tb.page(host + "-consent")
	tb.checkCookies(base, o.tls)
	tb.checkFitsPhone(host + "-consent-phone")

	status = tb.click(`button[value=allow]`)
	mustf(t, status == http.StatusOK && strings.HasPrefix(tb.location(), cb.URL+"/callback?"), "allow: status %d at %s", status, tb.location())
	var q url.Values
	select {
	case q = <-cb.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the client never got the redirect")
	}
	mustf(t, q.Get("state") == "st4te" && q.Get("iss") == e.url && q.Get("code") != "", "redirect back: %v", q)
	tok, err := conf.Exchange(context.WithValue(context.Background(), oauth2.HTTPClient, e.Client), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	in := e.introspect(tok.AccessToken)
	mustf(t, in["active"] == true && in["sub"] == e.alice.ID && in["client_id"] == c.ID, "introspection: %v", in)
	tb.checkClean()
}

// testBrowserDeviceFlow approves a device code on the /device pages while
// golang.org/x/oauth2 polls for the token.
func testBrowserDeviceFlow(t *testing.T, tb *tab, o origin) {
	e := newEnv(t, envOptions{tls: o.tls})
	host := o.label
	_, conf := e.deviceClient(func(p *oauth.ClientParams) { p.Name = "Living Room TV" })
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), oauth2.HTTPClient, e.Client), time.Minute)
	defer cancel()
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	type result struct {
		tok *oauth2.Token
		err error
	}
	polled := make(chan result, 1)
	go func() {
		tok, err := conf.DeviceAccessToken(ctx, da)
		polled <- result{tok, err}
	}()
	tb.scriptsOff()

	// The user types the address shown on the device, not the complete
	// one, and then the code.
	status := tb.open(onHost(t, da.VerificationURI, o.host))
	mustf(t, status == http.StatusOK && tb.text("h1") == "Sign in", "device page: status %d, %q", status, tb.text("h1"))
	tb.typeInto("#username", "alice")
	tb.typeInto("#password", e.password)
	status = tb.click(`form.stack button`)
	mustf(t, status == http.StatusOK && tb.text("h1") == "Connect a device", "after sign-in: status %d, %q", status, tb.text("h1"))
	tb.page(host + "-device-entry")
	tb.checkFitsPhone(host + "-device-entry-phone")

	tb.typeInto("#user_code", strings.ToLower(strings.ReplaceAll(da.UserCode, "-", "")))
	status = tb.click(`form.stack button`)
	mustf(t, status == http.StatusOK, "code: status %d", status)
	confirm := tb.text("main")
	for _, want := range []string{"Living Room TV", da.UserCode, "repos:read"} {
		mustf(t, strings.Contains(confirm, want), "confirmation page lacks %q: %q", want, confirm)
	}
	tb.page(host + "-device-confirm")
	tb.checkFitsPhone(host + "-device-confirm-phone")

	status = tb.click(`button[value=allow]`)
	mustf(t, status == http.StatusOK, "allow: status %d", status)
	tb.page(host + "-device-done")
	select {
	case r := <-polled:
		if r.err != nil {
			t.Fatalf("device token: %v", r.err)
		}
		in := e.introspect(r.tok.AccessToken)
		mustf(t, in["active"] == true && in["sub"] == e.alice.ID, "introspection: %v", in)
	case <-ctx.Done():
		t.Fatal("the device never got its token")
	}

	// Signing out ends the session: the device page asks to sign in again.
	base := onHost(t, e.url, o.host)
	tb.open(base + "/device")
	mustf(t, tb.click(".who button") == http.StatusOK && tb.text("h1") == "Signed out", "sign out: %q", tb.text("h1"))
	mustf(t, tb.open(base+"/device") == http.StatusOK && tb.text("h1") == "Sign in", "after signing out the device page shows %q", tb.text("h1"))
	tb.checkClean()
}

// attacker is another origin (another port of 127.0.0.1: the same site,
// so the browser sends Jeton's SameSite=Lax cookies along) serving one
// page that a test sets.
type attacker struct {
	*httptest.Server
	mu   sync.Mutex
	page string
}

func newAttacker(t *testing.T) *attacker {
	a := &attacker{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/plain" {
			fmt.Fprint(w, "<!doctype html><title>Plain</title><p>A page anyone may frame.</p>")
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		fmt.Fprint(w, a.page)
	}))
	t.Cleanup(a.Close)
	return a
}

// form sets the attacker's page to a form that posts fields to action.
func (a *attacker) form(action string, fields url.Values) {
	var b strings.Builder
	fmt.Fprintf(&b, `<!doctype html><title>Win a prize</title><form method="post" action="%s">`, html.EscapeString(action))
	for name, vs := range fields {
		fmt.Fprintf(&b, `<input type="hidden" name="%s" value="%s">`, html.EscapeString(name), html.EscapeString(vs[0]))
	}
	b.WriteString(`<button type="submit" id="go">Claim</button></form>`)
	a.mu.Lock()
	a.page = b.String()
	a.mu.Unlock()
}

// testBrowserCrossOriginForms replays, from another origin, forms that a
// signed-in user's own pages would post, with every field they carry (the
// CSRF token included, as if the attacker had learnt it): approving a
// device code and signing in as someone else. The browser sends the user's
// cookies along; only the origin differs. Both are refused, and nothing
// changes: the device code stays pending and the session stays the user's.
// The same approval from Jeton's own page then succeeds, so what stopped
// the replay was its origin.
func testBrowserCrossOriginForms(t *testing.T, tb *tab) {
	e := newEnv(t, envOptions{})
	c, conf := e.deviceClient(nil)
	evil := newAttacker(t)
	da := e.deviceAuth(conf)
	poll := func() string { return e.pollDevice(c, da.DeviceCode) }

	// Alice signs in and reaches the confirmation page of the code.
	tb.open(da.VerificationURIComplete)
	tb.typeInto("#username", "alice")
	tb.typeInto("#password", e.password)
	mustf(t, tb.click(`form.stack button`) == http.StatusOK, "sign in failed")
	entryURL := tb.location() // the code entry page, the code filled in
	mustf(t, tb.click(`form.stack button`) == http.StatusOK && strings.Contains(tb.text("main"), da.UserCode), "no confirmation page: %q", tb.text("main"))
	approve := tb.formFields(`main form[action="/device"]`)
	approve.Set("decision", "allow")
	mustf(t, approve.Get("csrf") != "" && approve.Get("user_code") != "", "confirmation form fields: %v", approve)

	refused := func(what string) {
		t.Helper()
		status := tb.click("#go")
		mustf(t, status == http.StatusForbidden, "%s from another origin: status %d, want 403", what, status)
		mustf(t, strings.Contains(tb.text("main"), "sent from another site"), "%s from another origin: page says %q", what, tb.text("main"))
	}

	evil.form(e.url+"/device", approve)
	tb.open(evil.URL)
	refused("approving the device code")
	tb.page("refused")
	mustf(t, poll() == "authorization_pending", "the device code was approved from another origin")

	// Login CSRF: signing the browser in as the attacker's own account.
	if _, err := e.users.Create(context.Background(), users.CreateParams{Username: "mallory", Email: "mallory@example.com", Password: "mallory's own password"}, actor); err != nil {
		t.Fatal(err)
	}
	evil.form(e.url+"/login", url.Values{"csrf": {approve.Get("csrf")}, "username": {"mallory"}, "password": {"mallory's own password"}, "return_to": {"/device"}})
	tb.open(evil.URL)
	refused("signing in")
	tb.open(e.url + "/device")
	mustf(t, strings.Contains(tb.text("main"), "Signed in as alice"), "the session changed: %q", tb.text("main"))

	// The same approval from Jeton's own page goes through.
	tb.open(entryURL)
	mustf(t, tb.click(`form.stack button`) == http.StatusOK, "code entry failed")
	mustf(t, tb.click(`button[value=allow]`) == http.StatusOK, "approval from Jeton's own page failed")
	mustf(t, poll() == "", "after approval from Jeton's own page the poll says %q", poll())
	tb.checkClean()
}

// testBrowserFraming frames a Jeton page and, as a control, a page that
// allows framing, in a page of another origin: the browser must refuse the
// first and show the second.
func testBrowserFraming(t *testing.T, tb *tab) {
	e := newEnv(t, envOptions{})
	evil := newAttacker(t)
	evil.mu.Lock()
	evil.page = fmt.Sprintf(`<!doctype html><title>Click here</title><iframe name="jeton" src="%s/login"></iframe><iframe name="plain" src="/plain"></iframe>`, html.EscapeString(e.url))
	evil.mu.Unlock()
	tb.open(evil.URL)

	frames := map[string]*cdp.Frame{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tree, err := chromedp.Call(tb.ctx, cdppage.GetFrameTree, cdp.Empty{})
		if err != nil {
			t.Fatalf("frame tree: %v", err)
		}
		for _, child := range tree.FrameTree.ChildFrames {
			frames[child.Frame.Name] = child.Frame
		}
		if frames["plain"] != nil && frames["plain"].URL == evil.URL+"/plain" && frames["jeton"] != nil && frames["jeton"].URL != "about:blank" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the frames never loaded: %+v", frames)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f := frames["jeton"]
	mustf(t, f.UnreachableURL == e.url+"/login" && !strings.HasPrefix(f.URL, e.url), "Jeton's sign-in page was shown in another origin's frame: url %q, unreachable %q", f.URL, f.UnreachableURL)
	tb.screenshot("framed")
	var blocked bool
	for _, m := range tb.securityMessages() {
		blocked = blocked || strings.Contains(m, "frame-ancestors")
	}
	mustf(t, blocked, "the browser logged no frame-ancestors violation: %q", tb.securityMessages())
}

// testBrowserApplication plays a single-page application on another
// origin, a public client: after sign-in and consent, its callback page's
// script redeems the code with fetch() (a simple cross-origin request),
// calls userinfo with the access token (a request with Authorization,
// which the browser preflights) and revokes the refresh token. The
// browser lets the script read each answer only if Jeton's CORS headers
// allow it.
func testBrowserApplication(t *testing.T, tb *tab) {
	e := newEnv(t, envOptions{})
	spa := httptest.NewUnstartedServer(nil)
	spaURL := "http://" + spa.Listener.Addr().String()
	c, _ := e.client(func(p *oauth.ClientParams) {
		p.Name = "Single Page"
		p.Type = store.ClientPublic
		p.GrantTypes = []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}
		p.RedirectURIs = []string{spaURL + "/callback"}
	})
	verifier := oauth2.GenerateVerifier()
	conf := oauth2.Config{ClientID: c.ID, RedirectURL: spaURL + "/callback", Scopes: []string{"openid", "repos:read"},
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/oauth2/authorize"}}
	settings, err := json.Marshal(map[string]string{"client_id": c.ID, "verifier": verifier, "redirect_uri": spaURL + "/callback",
		"token": e.url + "/oauth2/token", "userinfo": e.url + "/oauth2/userinfo", "revoke": e.url + "/oauth2/revoke"})
	if err != nil {
		t.Fatal(err)
	}
	spa.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>Single Page</title><p id="out"></p><script>
const s = %s, q = new URLSearchParams(location.search), out = document.getElementById("out");
(async () => {
  const tr = await fetch(s.token, {method: "POST", body: new URLSearchParams({grant_type: "authorization_code",
    code: q.get("code"), redirect_uri: s.redirect_uri, client_id: s.client_id, code_verifier: s.verifier})});
  const tok = await tr.json();
  if (!tr.ok) throw new Error("token: " + JSON.stringify(tok));
  const ur = await fetch(s.userinfo, {headers: {Authorization: "Bearer " + tok.access_token}});
  const info = await ur.json();
  const rr = await fetch(s.revoke, {method: "POST", body: new URLSearchParams({token: tok.refresh_token, client_id: s.client_id})});
  out.textContent = JSON.stringify({status: tr.status, has_refresh: !!tok.refresh_token, sub: info.sub, revoked: rr.status,
    refresh_token: tok.refresh_token});
})().catch(e => { out.textContent = "failed: " + e; });
</script>`, settings)
	})
	spa.Start()
	t.Cleanup(spa.Close)

	tb.open(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
	tb.typeInto("#username", "alice")
	tb.typeInto("#password", e.password)
	mustf(t, tb.click(`form.stack button`) == http.StatusOK, "sign in failed")
	mustf(t, tb.click(`button[value=allow]`) == http.StatusOK && strings.HasPrefix(tb.location(), spaURL+"/callback?"), "not back at the application: %s", tb.location())

	var got string
	deadline := time.Now().Add(20 * time.Second)
	for got == "" && time.Now().Before(deadline) {
		got = tb.text("#out")
		if got == "" {
			time.Sleep(50 * time.Millisecond)
		}
	}
	var r struct {
		Status       int    `json:"status"`
		HasRefresh   bool   `json:"has_refresh"`
		Sub          string `json:"sub"`
		Revoked      int    `json:"revoked"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(got), &r); err != nil {
		t.Fatalf("the application's script says %q", got)
	}
	mustf(t, r.Status == 200 && r.HasRefresh && r.Sub == e.alice.ID && r.Revoked == 200, "the application got %+v", r)
	mustf(t, e.introspect(r.RefreshToken)["active"] == false, "the refresh token the script revoked is active")
}

// testBrowserLogout signs in to an application on another site (the
// application on 127.0.0.1, Jeton on plainHost) and signs out through
// Jeton's end_session_endpoint: first without an ID token, where Jeton asks
// and the user stays; then as the application's own form post with the
// ID token, from the other site, where the browser withholds the
// SameSite=Lax session cookie from the POST and sends it with the GET that
// Jeton answers it with.
func testBrowserLogout(t *testing.T, tb *tab) {
	e := newEnv(t, envOptions{})
	cb := newCallback(t)
	c, secret := e.client(func(p *oauth.ClientParams) {
		p.Name = "Photo Printer"
		p.RedirectURIs = []string{cb.URL + "/callback"}
		p.PostLogoutRedirectURIs = []string{cb.URL + "/signed-out"}
	})
	base := onHost(t, e.url, plainHost)
	conf := oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: cb.URL + "/callback",
		Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth2/authorize", TokenURL: e.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"openid", "repos:read"}}
	tb.scriptsOff()
	tb.open(conf.AuthCodeURL("s"))
	tb.typeInto("#username", "alice")
	tb.typeInto("#password", e.password)
	mustf(t, tb.click(`form.stack button`) == http.StatusOK, "sign in failed")
	mustf(t, tb.click(`button[value=allow]`) == http.StatusOK, "consent failed")
	var q url.Values
	select {
	case q = <-cb.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the client never got the redirect")
	}
	idToken := func(q url.Values) string {
		t.Helper()
		tok, err := conf.Exchange(context.Background(), q.Get("code"))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		idTok, _ := tok.Extra("id_token").(string)
		mustf(t, idTok != "", "no ID token")
		return idTok
	}
	idToken(q)
	signedIn := func() bool {
		t.Helper()
		tb.open(base + "/device")
		return tb.text("h1") != "Sign in"
	}

	// Without an ID token Jeton asks; the user stays.
	status := tb.open(base + "/oauth2/logout?" + url.Values{"client_id": {c.ID}, "post_logout_redirect_uri": {cb.URL + "/signed-out"}, "state": {"one"}}.Encode())
	mustf(t, status == http.StatusOK && tb.text("h1") == "Sign out of Jeton?", "logout without a hint: %d %q", status, tb.text("h1"))
	mustf(t, strings.Contains(tb.text("main"), "Photo Printer asks you to sign out of Jeton too"), "confirmation page: %q", tb.text("main"))
	tb.page("logout-confirm")
	tb.checkFitsPhone("logout-confirm-phone")
	mustf(t, tb.click(`button[value=stay]`) == http.StatusOK && tb.location() == cb.URL+"/signed-out?state=one", "stay: at %s", tb.location())
	mustf(t, signedIn(), "signed out after choosing to stay")

	// The application's own sign-out form, posted from its site, without
	// an ID token: Jeton must see the session to ask, so the browser sent
	// the cookie along after all.
	app := newAttacker(t) // here, the application's page
	app.form(base+"/oauth2/logout", url.Values{"client_id": {c.ID}, "post_logout_redirect_uri": {cb.URL + "/signed-out"}, "state": {"two"}})
	tb.open(app.URL)
	status = tb.click("#go")
	mustf(t, status == http.StatusOK && strings.HasPrefix(tb.location(), base+"/oauth2/logout?"), "form post logout without a hint: %d at %s", status, tb.location())
	mustf(t, tb.text("h1") == "Sign out of Jeton?", "form post logout without a hint: %q", tb.text("h1"))
	mustf(t, tb.click(`button[value=signout]`) == http.StatusOK && tb.location() == cb.URL+"/signed-out?state=two", "sign out: at %s", tb.location())
	mustf(t, !signedIn(), "still signed in after signing out")

	// Signed in again; now the form carries the ID token: no question.
	tb.open(conf.AuthCodeURL("s"))
	tb.typeInto("#username", "alice")
	tb.typeInto("#password", e.password)
	mustf(t, tb.click(`form.stack button`) == http.StatusOK, "sign in again failed")
	select {
	case q = <-cb.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the client never got the second redirect")
	}
	app.form(base+"/oauth2/logout", url.Values{"id_token_hint": {idToken(q)}, "post_logout_redirect_uri": {cb.URL + "/signed-out"}, "state": {"three"}})
	tb.open(app.URL)
	mustf(t, tb.click("#go") == http.StatusOK && tb.location() == cb.URL+"/signed-out?state=three", "form post logout: at %s", tb.location())
	mustf(t, !signedIn(), "still signed in after the application's sign-out")
	tb.checkClean()
}
