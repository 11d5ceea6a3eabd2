package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Bounds on what is read off the network.
const (
	maxMetadataSize = 1 << 20 // RFC 8414 metadata
	maxJWKSSize     = 1 << 20 // JWKS
	maxVerifySize   = 1 << 20 // a /v1/verify answer (metadata included)
	maxPollSize     = 8 << 20 // a page of /v1/revocations (1000 events)
)

// errTooLarge reports a response body over its bound.
var errTooLarge = errors.New("response body too large")

// metadata is the part of the authorization server metadata (RFC 8414 §2)
// a resource server needs.
type metadata struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// wellKnown is the RFC 8414 §3 metadata path suffix.
const wellKnown = "/.well-known/oauth-authorization-server"

// discover fetches and checks the issuer's metadata. It asks
// Issuer+"/.well-known/oauth-authorization-server" (where Jeton serves it,
// also behind a path prefix) and, for an issuer with a path that answers
// 404 there, the RFC 8414 §3.1 location with the well-known segment
// inserted before the path.
func (v *Verifier) discover(ctx context.Context) (*metadata, error) {
	var m metadata
	_, err := v.getJSON(ctx, v.base+wellKnown, "", maxMetadataSize, &m, nil)
	if u, _ := url.Parse(v.base); errors.Is(err, errNotFound) && u != nil && u.Path != "" {
		alt := u.Scheme + "://" + u.Host + wellKnown + u.Path
		_, err = v.getJSON(ctx, alt, "", maxMetadataSize, &m, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("verify: fetch the issuer's metadata: %w", err)
	}
	// RFC 8414 §3.3: the issuer in the metadata must be identical to the
	// issuer URL the metadata was fetched for.
	if m.Issuer != v.cfg.Issuer {
		return nil, fmt.Errorf("verify: the metadata names issuer %q, not %q (RFC 8414 §3.3: they must be identical)", m.Issuer, v.cfg.Issuer)
	}
	u, err := url.Parse(m.JWKSURI)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("verify: the metadata has no valid jwks_uri (%q)", m.JWKSURI)
	}
	if strings.HasPrefix(v.cfg.Issuer, "https:") && u.Scheme != "https" {
		return nil, fmt.Errorf("verify: the jwks_uri %q is not https like the issuer", m.JWKSURI)
	}
	return &m, nil
}

// errNotFound is a 404 answer.
var errNotFound = errors.New("404 Not Found")

// httpStatusError is an unexpected status from Jeton.
type httpStatusError struct {
	Method, URL string
	Status      int
	Message     string // Jeton's error message, if any
}

func (e *httpStatusError) Error() string {
	s := fmt.Sprintf("%s %s: status %d", e.Method, e.URL, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *httpStatusError) Is(target error) bool {
	return target == errNotFound && e.Status == http.StatusNotFound
}

// getJSON GETs url (with the bearer credential if set) and decodes a 200
// answer of at most limit bytes into dst. A 304 answer to If-None-Match
// (hdr) returns status 304 and leaves dst alone. The response headers are
// returned in hdr.
func (v *Verifier) getJSON(ctx context.Context, u, credential string, limit int64, dst any, hdr http.Header) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	if hdr != nil {
		if etag := hdr.Get("If-None-Match"); etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
	}
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if hdr != nil {
		clear(hdr)
		for k, vs := range resp.Header {
			hdr[k] = vs
		}
	}
	if resp.StatusCode == http.StatusNotModified && hdr != nil {
		return resp.StatusCode, nil
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, statusError(req, resp)
	}
	if err := decodeLimited(resp.Body, limit, dst); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", u, err)
	}
	return resp.StatusCode, nil
}

// decodeLimited decodes one JSON value of at most limit bytes.
func decodeLimited(r io.Reader, limit int64, dst any) error {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > limit {
		return errTooLarge
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

// statusError describes an unexpected answer, with Jeton's error message
// ({"error":{"code","message"}}) when there is one. Jeton never puts a
// secret in an error message.
func statusError(req *http.Request, resp *http.Response) error {
	e := &httpStatusError{Method: req.Method, URL: req.URL.Redacted(), Status: resp.StatusCode}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := decodeLimited(resp.Body, 4<<10, &body); err == nil {
		e.Message = body.Error.Message
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	return e
}
