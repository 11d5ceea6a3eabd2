package sqlstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetonhq/jeton/internal/audit"
	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// crashDBEnv names the database the crash child writes to; the child runs
// only when it is set.
const crashDBEnv = "JETON_TEST_CRASH_DB"

// TestKilledProcessKeepsItsWord kills a process in the middle of a stream
// of group-committed writes and checks, on the database it leaves behind,
// that the store kept its word: every write it acknowledged is there, every
// write it answered with an error left nothing behind, and the audit chain
// is intact. Some of the child's callers give up on their writes at random
// moments, as HTTP clients that hang up do.
//
// SIGKILL loses what the process holds in memory, not what the kernel
// holds, so this proves the acknowledgement protocol (no answer before
// COMMIT, no half-applied batch), not the fsync.
func TestKilledProcessKeepsItsWord(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jeton.db")
	db := openSQLiteT(t, path)
	now := time.Now()
	api := store.API{ID: ids.New(ids.API, now), Name: "crash", Identifier: "https://crash.test", KeyPrefix: "jtp", Scopes: []string{}, CreatedAt: now, UpdatedAt: now}
	if err := db.CreateAPI(context.Background(), api, store.AuditEvent{Action: "api.create", Target: api.ID, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDBEnv+"="+path, "JETON_TEST_CRASH_API="+api.ID)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// Read what the child says; kill it once it has acknowledged enough.
	const enough = 1500
	created, revoked, failed := map[string]bool{}, map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(out)
	killed := false
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		verb, id, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue // not ours (the test framework's own output)
		}
		switch verb {
		case "created":
			created[id] = true
		case "revoked":
			revoked[id] = true
		case "failed":
			failed[id] = true
		}
		if !killed && len(created) >= enough {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the child stopped after %d acknowledged creates, before it was killed", len(created))
	}

	db = openSQLiteT(t, path)
	defer db.Close()
	ctx := context.Background()
	for id := range created {
		if _, err := db.GetToken(ctx, id); err != nil {
			t.Errorf("acknowledged create of %s lost: %v", id, err)
		}
	}
	for id := range revoked {
		tok, err := db.GetToken(ctx, id)
		if err != nil || tok.RevokedAt.IsZero() {
			t.Errorf("acknowledged revocation of %s lost (err %v)", id, err)
		}
	}
	for id := range failed {
		if _, err := db.GetToken(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("create of %s answered with an error but stored (err %v)", id, err)
		}
	}
	n, err := audit.Verify(ctx, db)
	if err != nil {
		t.Fatalf("audit chain after the kill: %v", err)
	}
	if want := int64(1 + len(created) + len(revoked)); n < want {
		t.Errorf("%d audit entries, want at least %d (the API, each acknowledged create and revocation)", n, want)
	}
	t.Logf("killed after %d acknowledged creates, %d revocations, %d failed creates; %d audit entries", len(created), len(revoked), len(failed), n)
}

// TestCrashChild is the process TestKilledProcessKeepsItsWord kills. It
// writes until killed, and prints each outcome after the store answered.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashDBEnv)
	if path == "" {
		t.Skip("run by TestKilledProcessKeepsItsWord")
	}
	db := openSQLiteT(t, path)
	apiID := os.Getenv("JETON_TEST_CRASH_API")
	var mu sync.Mutex
	say := func(verb, id string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "%s %s\n", verb, id) // unbuffered: said is acknowledged
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				now := time.Now()
				tok := store.Token{ID: ids.New(ids.Token, now), APIID: apiID, Subject: "crash", Scopes: []string{}, CreatedAt: now, UpdatedAt: now}
				ctx, cancel := context.WithCancel(context.Background())
				if rand.IntN(4) == 0 {
					// This caller hangs up at a random moment.
					time.AfterFunc(time.Duration(rand.IntN(2000))*time.Microsecond, cancel)
				}
				err := db.CreateToken(ctx, tok, tokenfmt.HashOf(tok.ID), store.AuditEvent{Action: "token.create", Target: tok.ID, Actor: "test"})
				cancel()
				if err != nil {
					say("failed", tok.ID)
					continue
				}
				say("created", tok.ID)
				if rand.IntN(3) == 0 {
					_, _, err := db.RevokeToken(context.Background(), tok.ID, "test", time.Now(), store.AuditEvent{Action: "token.revoke", Target: tok.ID, Actor: "test"})
					if err == nil {
						say("revoked", tok.ID)
					}
				}
			}
		})
	}
	wg.Wait()
}
