// Command baseline is the reference server of the Jeton load benchmark: the
// cheapest useful HTTP handler this machine can run. It answers every POST,
// whatever the path, with about 100 bytes of JSON after reading and discarding
// the request body, so that wrk runs against it measure the ceiling that
// jeton's endpoints are compared with.
//
// GET /healthz answers 200 so that bench/run.sh can wait for it to be up; any
// other method answers 405.
//
// Usage:
//
//	baseline -addr 127.0.0.1:8081
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// answer is the fixed response body: about 100 bytes, shaped like a verify
// answer.
var answer = []byte(`{"valid":true,"code":"valid","token":{"id":"tok_0123456789abcdef","api":"api_0123456789abcdef"}}` + "\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 64<<10)); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(answer)
	})

	srv := &http.Server{
		Addr:              *addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()

	log.Printf("baseline: listening on %s", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("baseline: %v", err)
	}
}
