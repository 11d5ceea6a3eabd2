// Command profserve is `jeton serve` with CPU profiling on demand, for the
// load benchmark (bench/run.sh with PROFILE=1). It runs the same server
// (internal/server, with the defaults of `jeton serve`) and, on SIGUSR1,
// starts a CPU profile into DIR/current.pprof; on SIGUSR2 it stops the
// profile and then creates DIR/current.done, so that the caller knows the
// profile is complete and can move it away. With -trace it also writes a
// runtime execution trace of the same span into DIR/current.trace (`go tool
// trace -pprof=sched FILE` shows where goroutines waited for a CPU,
// -pprof=syscall where they sat in system calls). SIGINT or SIGTERM stop the
// server; a profile still in progress then is lost.
//
// Usage:
//
//	profserve -addr 127.0.0.1:8080 -db jeton.db -profile-dir DIR [-trace]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
	"time"

	"github.com/jetonhq/jeton/internal/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	db := flag.String("db", "jeton.db", "store, as for jeton serve --db")
	dir := flag.String("profile-dir", ".", "directory of current.pprof and current.done")
	withTrace := flag.Bool("trace", false, "also write an execution trace, DIR/current.trace")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	var prof, traceFile *os.File
	stopProfile := func() {
		if prof == nil {
			return
		}
		pprof.StopCPUProfile()
		err := prof.Close()
		prof = nil
		if traceFile != nil {
			trace.Stop()
			err = errors.Join(err, traceFile.Close())
			traceFile = nil
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(*dir, "current.done"), nil, 0o644)
		}
		if err != nil {
			log.Error("profserve: writing the profile", "err", err)
		}
	}
	go func() {
		for sig := range sigs {
			switch sig {
			case syscall.SIGUSR1:
				stopProfile()
				os.Remove(filepath.Join(*dir, "current.done"))
				f, err := os.Create(filepath.Join(*dir, "current.pprof"))
				if err != nil {
					log.Error("profserve: creating the profile", "err", err)
					continue
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					f.Close()
					log.Error("profserve: starting the profile", "err", err)
					continue
				}
				prof = f
				if *withTrace {
					tf, err := os.Create(filepath.Join(*dir, "current.trace"))
					if err == nil {
						if err = trace.Start(tf); err != nil {
							tf.Close()
						} else {
							traceFile = tf
						}
					}
					if err != nil {
						log.Error("profserve: starting the trace", "err", err)
					}
				}
				log.Info("profserve: CPU profile started")
			case syscall.SIGUSR2:
				stopProfile()
				log.Info("profserve: CPU profile written")
			}
		}
	}()

	// The same settings as `jeton serve` with its defaults.
	err := server.Run(ctx, server.Config{Addr: *addr, DB: *db, MasterKey: os.Getenv("JETON_MASTER_KEY"), ClientIPHeader: "X-Forwarded-For",
		Retention: 30 * 24 * time.Hour, Logger: log, Notice: os.Stderr, KeyPrePublish: 10 * time.Minute})
	if err != nil {
		fmt.Fprintf(os.Stderr, "profserve: %v\n", err)
		os.Exit(1)
	}
}
