package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// asset is an embedded file served by Static.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// loadAssets names every file of static/ by its content hash
// ("jeton.3f2a9c1b7d4e.css"), so a URL never serves two versions and
// browsers may cache it for a year.
func (p *Pages) loadAssets() error {
	p.assets = make(map[string]asset)
	entries, err := fs.ReadDir(files, "static")
	if err != nil {
		return fmt.Errorf("web: read assets: %w", err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(files, "static/"+e.Name())
		if err != nil {
			return fmt.Errorf("web: read asset: %w", err)
		}
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:6])
		ext := path.Ext(e.Name())
		ct := map[string]string{".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}[ext]
		if ct == "" {
			return fmt.Errorf("web: asset %s: unknown type", e.Name())
		}
		name := strings.TrimSuffix(e.Name(), ext) + "." + h + ext
		p.assets[name] = asset{body: b, contentType: ct, etag: `"` + h + `"`}
		switch ext {
		case ".css":
			p.style = "/static/" + name
		case ".svg":
			p.icon = "/static/" + name
		}
	}
	if p.style == "" || p.icon == "" {
		return fmt.Errorf("web: stylesheet or icon missing")
	}
	return nil
}

// Static serves the pages' stylesheet and icon. Mount it at "GET
// /static/" (with or without the prefix stripped). Their URLs carry a
// content hash, so responses may be cached for a year; any other name is
// 404.
func (p *Pages) Static() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a, ok := p.assets[strings.TrimPrefix(r.URL.Path, "/static/")]
		if !ok {
			h.Set("Cache-Control", "no-store")
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
