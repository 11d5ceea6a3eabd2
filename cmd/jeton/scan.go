package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jetonhq/jeton/internal/client"
	"github.com/jetonhq/jeton/internal/httpapi"
	"github.com/jetonhq/jeton/internal/tokenfmt"
)

// maxScanFile bounds the size of one file "jeton scan" reads; larger files
// are reported and skipped.
const maxScanFile = 64 << 20

// errTokensFound is what "jeton scan" returns when it found tokens: the
// command exits 1, as grep does when it matches, so that a CI step or a
// pre-commit hook fails.
var errTokensFound = errors.New("found Jeton tokens")

// exitCode is an error that sets the process's exit status.
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string { return e.err.Error() }
func (e *exitCode) Unwrap() error { return e.err }

// finding is one token found by "jeton scan". It never holds the token,
// only its hint.
type finding struct {
	Path   string `json:"path"`
	Line   int    `json:"line"`
	Column int    `json:"column"` // in bytes, from 1
	Kind   string `json:"kind"`
	Hint   string `json:"hint"`
}

// tokenKind names the kind of a token by its prefix. Any other prefix is
// an API's own key prefix.
func tokenKind(prefix string) string {
	switch prefix {
	case tokenfmt.PrefixAccess:
		return "OAuth access token"
	case tokenfmt.PrefixRefresh:
		return "OAuth refresh token"
	case tokenfmt.PrefixClientSecret:
		return "OAuth client secret"
	case tokenfmt.PrefixAuthCode:
		return "OAuth authorization code"
	case tokenfmt.PrefixDeviceCode:
		return "OAuth device code"
	}
	return "API key"
}

// runScan runs "jeton scan [--json] [PATH...]": it looks for Jeton tokens
// (checksum-valid, of any prefix) in files, directories (recursively,
// without following symbolic links or entering .git) or standard input,
// and prints where each is, with its hint only. It exits 0 when it found
// none, 1 when it found some, and 2 when it could not read something and
// found none.
func runScan(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("scan", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: jeton scan [--json] [--report [--source TEXT] [--server URL] [--token T]] [PATH...]

Finds Jeton tokens (API keys, OAuth tokens, client secrets; any key prefix)
in files and directories, or in standard input without PATH or with "-".
Only tokens whose checksum holds are reported, by their hint: the secret is
never printed. Exit status: 0 none found, 1 found, 2 something could not
be read.

With --report, the tokens found are also sent to the Jeton server
(POST /v1/leaks), which makes every one it issued stop working at once. No
admin token is needed; with one, the server says what each token was.`)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "one JSON object per finding")
	report := fs.Bool("report", false, "report the tokens found to the server, which revokes its own")
	source := fs.String("source", "jeton scan", "with --report: where the tokens were found, for the server's audit log")
	var cf clientFlags
	cf.registerServer(fs)
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		paths = []string{"-"}
	}
	var c *client.Client
	if *report {
		if c, err = cf.optionalTokenClient(); err != nil {
			return err
		}
	}
	s := &scanner{stdin: stdin, stderr: stderr, keep: *report, report: func(f finding) error {
		if *asJSON {
			b, err := json.Marshal(f)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s:%d:%d: %s %s\n", f.Path, f.Line, f.Column, f.Kind, f.Hint)
		return err
	}}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.scanPath(ctx, p); err != nil {
			return err
		}
	}
	switch {
	case s.found > 0 && *report:
		if err := reportLeaks(ctx, c, s.tokens, *source, stderr); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "jeton scan: %d token(s) found; remove them.\n", s.found)
		return &exitCode{1, errTokensFound}
	case s.found > 0:
		fmt.Fprintf(stderr, "jeton scan: %d token(s) found. Revoke each (run again with --report, or: an API key, find it by its hint with 'jeton token list', then 'jeton token revoke ID'; an OAuth token, POST it to /oauth2/revoke), then remove it.\n", s.found)
		return &exitCode{1, errTokensFound}
	case s.failed > 0:
		return &exitCode{2, fmt.Errorf("%d path(s) could not be read", s.failed)}
	}
	return nil
}

type scanner struct {
	stdin  io.Reader
	stderr io.Writer
	report func(finding) error
	found  int
	failed int
	// keep: remember each distinct token found, in tokens, for --report.
	keep   bool
	tokens []string
	seen   map[string]bool
}

// scanPath scans a file, a directory tree or ("-") standard input.
// Unreadable paths are reported on stderr and counted; only a failure to
// write the report stops the scan.
func (s *scanner) scanPath(ctx context.Context, p string) error {
	if p == "-" {
		b, err := io.ReadAll(io.LimitReader(s.stdin, maxScanFile+1))
		if err != nil {
			return s.skip("standard input", err)
		}
		if len(b) > maxScanFile {
			return s.skip("standard input", fmt.Errorf("over %d MiB", maxScanFile>>20))
		}
		return s.scanBytes("(standard input)", b)
	}
	// A path named on the command line is followed if it is a symbolic
	// link, and read whatever it is: a file, or a pipe such as the
	// /dev/fd/N of a shell's <(git diff). Only links met while walking a
	// directory are not followed.
	root := p
	if fi, err := os.Stat(p); err != nil {
		return s.skip(p, err)
	} else if !fi.IsDir() {
		return s.scanFile(p)
	} else if li, err := os.Lstat(p); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		root = p + string(filepath.Separator) // walks the directory the link names
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return s.skip(path, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case d.IsDir() && d.Name() == ".git" && path != root:
			return filepath.SkipDir
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return nil // symbolic links, devices, sockets: not followed
		}
		return s.scanFile(path)
	})
}

func (s *scanner) scanFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return s.skip(path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxScanFile+1))
	if err != nil {
		return s.skip(path, err)
	}
	if len(b) > maxScanFile {
		return s.skip(path, fmt.Errorf("over %d MiB", maxScanFile>>20))
	}
	return s.scanBytes(path, b)
}

func (s *scanner) skip(path string, err error) error {
	s.failed++
	fmt.Fprintf(s.stderr, "jeton scan: skipped %s: %v\n", path, err)
	return nil
}

// scanBytes reports every token in b, with its line and column.
func (s *scanner) scanBytes(path string, b []byte) error {
	line, lineStart, at := 1, 0, 0
	for _, m := range tokenfmt.ScanIndex(b) {
		for {
			i := bytes.IndexByte(b[at:m[0]], '\n')
			if i < 0 {
				break
			}
			line++
			at += i + 1
			lineStart = at
		}
		tok := string(b[m[0]:m[1]])
		prefix, _ := tokenfmt.Parse(tok)
		s.found++
		if s.keep && !s.seen[tok] {
			if s.seen == nil {
				s.seen = map[string]bool{}
			}
			s.seen[tok] = true
			s.tokens = append(s.tokens, tok)
		}
		if err := s.report(finding{Path: path, Line: line, Column: m[0] - lineStart + 1, Kind: tokenKind(prefix), Hint: tokenfmt.Hint(tok)}); err != nil {
			return err
		}
	}
	return nil
}

// reportLeaks sends toks to the server's leak endpoint, at most
// httpapi.MaxLeakTokens at a time, and says on stderr what came of them.
func reportLeaks(ctx context.Context, c *client.Client, toks []string, source string, stderr io.Writer) error {
	counts := map[string]int{}
	var received int
	for len(toks) > 0 {
		n := min(len(toks), httpapi.MaxLeakTokens)
		r, err := c.ReportLeaks(ctx, toks[:n], source)
		if err != nil {
			return fmt.Errorf("jeton scan: %w", err)
		}
		received += r.Received
		for _, res := range r.Results {
			counts[res.Outcome]++
			if res.Outcome == "revoked" || res.Outcome == "grace_ended" {
				fmt.Fprintf(stderr, "jeton scan: %s %s: %s (%s)\n", res.Kind, res.Hint, res.Outcome, res.ID)
			}
		}
		toks = toks[n:]
	}
	if len(counts) == 0 {
		fmt.Fprintf(stderr, "jeton scan: reported %d token(s) to %s; every one it issued no longer works.\n", received, c.BaseURL)
		return nil
	}
	var parts []string
	for _, o := range []string{"revoked", "grace_ended", "inactive", "unknown", "malformed"} {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[o], strings.ReplaceAll(o, "_", " ")))
		}
	}
	fmt.Fprintf(stderr, "jeton scan: reported %d token(s) to %s: %s.\n", received, c.BaseURL, strings.Join(parts, ", "))
	return nil
}
