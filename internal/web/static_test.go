package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStatic(t *testing.T) {
	p, _ := newPages(t, nil)
	css, err := files.ReadFile("static/jeton.css")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", p.Static())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	if !strings.HasPrefix(p.style, "/static/jeton.") || !strings.HasSuffix(p.style, ".css") || len(p.style) != len("/static/jeton.0123456789ab.css") {
		t.Fatalf("stylesheet URL %q has no content hash", p.style)
	}
	resp, err := http.Get(srv.URL + p.style)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	got := map[string]string{
		"status":        resp.Status,
		"Content-Type":  resp.Header.Get("Content-Type"),
		"Cache-Control": resp.Header.Get("Cache-Control"),
		"nosniff":       resp.Header.Get("X-Content-Type-Options"),
	}
	want := map[string]string{
		"status":        "200 OK",
		"Content-Type":  "text/css; charset=utf-8",
		"Cache-Control": "public, max-age=31536000, immutable",
		"nosniff":       "nosniff",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("stylesheet response (-got +want):\n%s", diff)
	}
	if body != string(css) {
		t.Error("stylesheet body differs from the embedded file")
	}

	// Revalidation, the icon, and names that do not exist.
	req, _ := http.NewRequest("GET", srv.URL+p.style, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	for _, tt := range []struct {
		name string
		req  *http.Request
		want int
	}{
		{"if-none-match", req, http.StatusNotModified},
		{"icon", mustRequest(t, "GET", srv.URL+p.icon), http.StatusOK},
		{"head", mustRequest(t, "HEAD", srv.URL+p.style), http.StatusOK},
		{"old version", mustRequest(t, "GET", srv.URL+"/static/jeton.000000000000.css"), http.StatusNotFound},
		{"unhashed name", mustRequest(t, "GET", srv.URL+"/static/jeton.css"), http.StatusNotFound},
		{"directory", mustRequest(t, "GET", srv.URL+"/static/"), http.StatusNotFound},
		{"traversal", mustRequest(t, "GET", srv.URL+"/static/../web.go"), http.StatusNotFound},
	} {
		resp, err := http.DefaultClient.Do(tt.req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	if ct := mustGet(t, srv.URL+p.icon).Header.Get("Content-Type"); ct != "image/svg+xml" {
		t.Errorf("icon Content-Type %q", ct)
	}

	// Only GET and HEAD; mounted with the prefix stripped too.
	rec := httptest.NewRecorder()
	p.Static().ServeHTTP(rec, httptest.NewRequest("POST", p.style, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	http.StripPrefix("/static/", p.Static()).ServeHTTP(rec, httptest.NewRequest("GET", p.style, nil))
	if rec.Code != http.StatusOK {
		t.Errorf("stripped prefix: status %d", rec.Code)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
