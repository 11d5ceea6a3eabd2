// Command seed prepares a running jeton server for the load benchmark: it
// creates an API with a unique name, then creates -n API keys for it
// concurrently through POST /v1/tokens, and writes what the wrk scripts need:
//
//	DIR/api_id.txt  the id of the new API
//	DIR/keys.txt    one key (token secret) per line
//
// With -oauth it also prepares the OAuth runs (see oauth.go): two OAuth
// clients, a user, -access opaque access tokens obtained by
// client_credentials and -refresh refresh tokens, each from its own grant
// obtained through the device flow, and writes
//
//	DIR/oauth_opaque_basic.txt  HTTP Basic credentials (base64 of id:secret) of
//	                            the opaque-token client
//	DIR/oauth_jwt_basic.txt     the same for the JWT (ES256) client
//	DIR/access_tokens.txt       one opaque access token per line
//	DIR/refresh_tokens.txt      one refresh token per line, each of its own grant
//
// It prints how long creating the keys (and the OAuth tokens) took and the
// creates per second. Any non-2xx answer, or an answer without the expected
// fields, stops it with a non-zero exit status and the server's answer on
// stderr.
//
// Usage:
//
//	seed -server http://127.0.0.1:8080 -token "$ADMIN_TOKEN" -n 10000 -out DIR
//	seed ... -oauth -access 10000 -refresh 256
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// scope is the scope of the benchmark API and of every key created for it;
// the wrk scripts ask for it when verifying.
const scope = "repos:read"

func main() {
	server := flag.String("server", "http://127.0.0.1:8080", "base URL of the jeton server")
	token := flag.String("token", "", "admin bearer token (default $JETON_TOKEN)")
	n := flag.Int("n", 10000, "number of keys to create")
	workers := flag.Int("c", 32, "concurrent workers")
	out := flag.String("out", ".", "directory to write keys.txt and api_id.txt into")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	withOAuth := flag.Bool("oauth", false, "also create OAuth clients, a user, access tokens and refresh tokens")
	nAccess := flag.Int("access", 10000, "with -oauth: opaque access tokens to obtain by client_credentials")
	nRefresh := flag.Int("refresh", 256, "with -oauth: refresh tokens to obtain, each through its own device grant")
	flag.Parse()

	if *token == "" {
		*token = os.Getenv("JETON_TOKEN")
	}
	if *token == "" {
		fatalf("an admin token is required (-token or $JETON_TOKEN)")
	}
	if *n < 1 || *workers < 1 {
		fatalf("-n and -c must be positive")
	}
	if *withOAuth && (*nAccess < 1 || *nRefresh < 1) {
		fatalf("-access and -refresh must be positive")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatalf("%v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	c := &client{
		base:  *server,
		token: *token,
		http: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				MaxIdleConns:        *workers * 2,
				MaxIdleConnsPerHost: *workers * 2,
				IdleConnTimeout:     90 * time.Second,
			},
		},
	}

	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	var api struct {
		ID string `json:"id"`
	}
	err := c.post(ctx, "/v1/apis", map[string]any{
		"name":       "bench-" + suffix,
		"identifier": "https://bench-" + suffix + ".jeton.test",
		"scopes":     []string{scope},
	}, &api)
	if err != nil {
		fatalf("creating the API: %v", err)
	}
	if api.ID == "" {
		fatalf("creating the API: answer has no id")
	}
	if err := os.WriteFile(filepath.Join(*out, "api_id.txt"), []byte(api.ID+"\n"), 0o644); err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("seed: created API %s (bench-%s)\n", api.ID, suffix)

	keys := make([]string, *n)
	start := time.Now()
	err = parallel(ctx, len(keys), *workers, func(ctx context.Context, i int) error {
		var tok struct {
			ID    string `json:"id"`
			Token string `json:"token"`
		}
		err := c.post(ctx, "/v1/tokens", map[string]any{
			"api":    api.ID,
			"name":   "bench-key-" + strconv.Itoa(i),
			"scopes": []string{scope},
		}, &tok)
		if err == nil && tok.Token == "" {
			err = errors.New("answer has no token")
		}
		if err != nil {
			return fmt.Errorf("creating key %d: %w", i, err)
		}
		keys[i] = tok.Token
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		fatalf("%v", err)
	}

	if err := writeLines(filepath.Join(*out, "keys.txt"), keys); err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("seed: created %d keys in %s (%.0f creates/s, %d workers)\n",
		len(keys), elapsed.Round(time.Millisecond), float64(len(keys))/elapsed.Seconds(), *workers)

	if *withOAuth {
		o := &oauthSeed{admin: c, apiID: api.ID, suffix: suffix, workers: *workers, out: *out}
		if err := o.run(ctx, *nAccess, *nRefresh); err != nil {
			fatalf("%v", err)
		}
	}
}

// parallel runs fn for i in [0, n) on workers goroutines and returns the
// first error, after which no new calls start. It also fails when ctx ends
// before every call has run.
func parallel(parent context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					errOnce.Do(func() {
						firstErr = err
						cancel()
					})
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return parent.Err()
}

// client posts JSON to a jeton server with the admin bearer token.
type client struct {
	base  string
	token string
	http  *http.Client
}

// post sends body as JSON to path and decodes a 2xx answer into out. Any
// other status is an error carrying the answer's body.
func (c *client) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("POST %s: reading answer: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("POST %s: decoding answer: %w", path, err)
	}
	return nil
}

// writeLines writes lines to path, one per line, replacing the file.
func writeLines(path string, lines []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "seed: "+format+"\n", args...)
	os.Exit(1)
}
