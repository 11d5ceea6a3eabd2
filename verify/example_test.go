package verify_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/jetonhq/jeton/verify"
)

// A resource server protects its routes with the Require middleware: each
// request needs a bearer token (RFC 6750 §2.1) with the route's scopes,
// and a refused request gets the RFC 6750 §3 response. JWT access tokens
// (RFC 9068) are verified offline against the issuer's JWKS, found through
// its metadata (RFC 8414); API keys and opaque tokens are checked through
// Jeton with the resource server's own credential.
func Example() {
	ctx := context.Background()
	v, err := verify.New(ctx, verify.Config{
		Issuer:      "https://auth.example.com",
		Audience:    "https://api.example.com",
		Credential:  "jtp_...", // a Jeton token with the "verify" scope; empty: JWTs only
		Revocations: true,      // learn of revoked JWTs at once (GET /v1/revocations/stream)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	mux := http.NewServeMux()
	mux.Handle("GET /repos", v.Require("repos:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.FromContext(r.Context())
		fmt.Fprintf(w, "repositories of %s\n", claims.Subject)
	})))
	mux.Handle("POST /repos", v.Require("repos:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// Verify works without the middleware, for example in a handler that
// decides which scope it needs, or for tokens that do not arrive in an
// Authorization header. Branch on the sentinel errors; WriteError answers
// as RFC 6750 §3 requires.
func ExampleVerifier_Verify() {
	ctx := context.Background()
	v, err := verify.New(ctx, verify.Config{Issuer: "https://auth.example.com", Audience: "https://api.example.com"})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	handler := func(w http.ResponseWriter, r *http.Request) {
		tok, err := verify.BearerToken(r)
		if err != nil {
			verify.WriteError(w, err) // 401 without a token, 400 for a malformed header
			return
		}
		scope := "repos:read"
		if r.Method != http.MethodGet {
			scope = "repos:write"
		}
		claims, err := v.Verify(r.Context(), tok, scope)
		switch {
		case errors.Is(err, verify.ErrUnavailable):
			log.Printf("cannot check tokens: %v", err) // never contains the token
			verify.WriteError(w, err)                  // 503
			return
		case err != nil:
			verify.WriteError(w, err)
			return
		}
		if claims.Kind == verify.KindJWT && time.Until(claims.ExpiresAt) < time.Minute {
			w.Header().Set("X-Token-Expires-Soon", "1")
		}
		fmt.Fprintf(w, "hello %s\n", claims.Subject)
	}
	http.HandleFunc("/repos", handler)
}

// VerifyRequest reads the bearer token and forwards the client's address to
// Jeton, which enforces an API key's allowed address ranges.
func ExampleVerifier_VerifyRequest() {
	v, err := verify.New(context.Background(), verify.Config{Issuer: "https://auth.example.com",
		Audience: "https://api.example.com", Credential: "jtp_..."})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	http.HandleFunc("/usage", func(w http.ResponseWriter, r *http.Request) {
		claims, err := v.VerifyRequest(r, "usage:read")
		if err != nil {
			verify.WriteError(w, err) // 429 with Retry-After and RateLimit-* over a key's rate limit
			return
		}
		if rl := claims.RateLimit; rl != nil {
			verify.SetRateLimitHeaders(w.Header(), rl)
		}
		fmt.Fprintf(w, "metadata: %s\n", claims.Metadata)
	})
}

// WriteError answers as RFC 6750 §3 requires, here for a token that lacks
// a scope: 403 with the scope the request needs.
func ExampleWriteError() {
	w := httptest.NewRecorder()
	verify.WriteError(w, verify.ErrInsufficientScope)
	fmt.Println(w.Code)
	fmt.Println(w.Header().Get("WWW-Authenticate"))
	fmt.Print(w.Body)

	w = httptest.NewRecorder()
	verify.WriteError(w, verify.ErrNoToken)
	fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
	// Output:
	// 403
	// Bearer error="insufficient_scope", error_description="the access token lacks a required scope"
	// {"error":"insufficient_scope","error_description":"the access token lacks a required scope"}
	// 401 Bearer
}

// Config.OnVerify feeds metrics without a metrics dependency. It is called
// concurrently, on the request path: keep it cheap and safe.
func ExampleConfig_onVerify() {
	var accepted, refused, cached atomic.Int64
	v, err := verify.New(context.Background(), verify.Config{
		Issuer:   "https://auth.example.com",
		Audience: "https://api.example.com",
		OnVerify: func(r verify.Result) {
			// Label by r.Kind and the sentinel of r.Err; observe r.Duration.
			if r.Cached {
				cached.Add(1)
			}
			if r.Err == nil {
				accepted.Add(1)
			} else {
				refused.Add(1)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
}
