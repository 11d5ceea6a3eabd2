package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/store"
	"github.com/jetonhq/jeton/internal/store/sqlstore"
)

// cliRequest is a request the fake admin API received.
type cliRequest struct {
	Method string
	Path   string
	Query  string
	Auth   string
	Body   any // decoded JSON; nil without a body
}

// cliAnswer is a canned answer of the fake admin API.
type cliAnswer struct {
	status int
	body   string
}

// fakeAdminAPI is an httptest server that answers "METHOD /path" from a
// table and records every request.
type fakeAdminAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []cliRequest
}

func newFakeAdminAPI(t *testing.T, answers map[string]cliAnswer) *fakeAdminAPI {
	t.Helper()
	f := &fakeAdminAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := cliRequest{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization")}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &rec.Body); err != nil {
				t.Errorf("request body %q is not JSON: %v", b, err)
			}
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		f.mu.Unlock()
		a, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			a = cliAnswer{404, `{"error":{"code":"not_found","message":"no route"}}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAdminAPI) requests() []cliRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cliRequest(nil), f.reqs...)
}

// cliFunc is the signature shared by runAPI, runToken and runAuditList.

// runCLIForTest runs fn with a clean environment.
func runCLIForTest(t *testing.T, fn cliFunc, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = fn(t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func cleanCLIEnv(t *testing.T) {
	t.Setenv("JETON_SERVER", "")
	t.Setenv("JETON_TOKEN", "")
}

func cliJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON in test: %v", err)
	}
	return v
}

const cliTokenJSON = `{"id":"tok_1","api":"api_1","name":"ci","subject":"svc-ci","scopes":["read","write"],
"hint":"jt_ab…yz","metadata":{"team":"x"},"allowed_cidrs":[],"rate_limit":{"limit":100,"window":60},
"quota":null,"created_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:00:00Z",
"expires_at":"2026-12-23T10:00:00Z","revoked_at":null,"revoke_reason":"","rotated_at":null,
"last_used_at":null,"last_used_ip":"","use_count":0}`

var cliTokenWithSecret = strings.Replace(cliTokenJSON, `"use_count":0`, `"use_count":0,"token":"jt_SECRET"`, 1)

const cliAPIJSON = `{"id":"api_1","name":"Billing","identifier":"https://billing","scopes":["read","write"],
"key_prefix":"bill","default_ttl":3600,"max_ttl":2592000,"builtin":false,
"created_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:00:00Z"}`

func TestCLICommands(t *testing.T) {
	answers := map[string]cliAnswer{
		"POST /v1/apis":                {201, cliAPIJSON},
		"GET /v1/apis":                 {200, `{"apis":[` + cliAPIJSON + `]}`},
		"GET /v1/apis/billing":         {200, cliAPIJSON},
		"PATCH /v1/apis/api_1":         {200, cliAPIJSON},
		"DELETE /v1/apis/api_1":        {204, ""},
		"POST /v1/tokens":              {201, cliTokenWithSecret},
		"GET /v1/tokens":               {200, `{"tokens":[` + cliTokenJSON + `],"next_cursor":"c2"}`},
		"GET /v1/tokens/tok_1":         {200, cliTokenJSON},
		"PATCH /v1/tokens/tok_1":       {200, cliTokenJSON},
		"DELETE /v1/tokens/tok_1":      {200, strings.Replace(cliTokenJSON, `"revoked_at":null,"revoke_reason":""`, `"revoked_at":"2026-11-23T11:00:00Z","revoke_reason":"leaked"`, 1)},
		"POST /v1/tokens/tok_1/rotate": {200, cliTokenWithSecret},
		"GET /v1/tokens/tok_1/usage":   {200, `{"token_id":"tok_1","total_uses":3,"last_used_at":"2026-11-23T10:30:00Z","last_used_ip":"10.1.1.1","hours":[{"hour":"2026-11-23T10:00:00Z","allowed":2,"denied":1}]}`},
		"POST /v1/verify":              {200, `{"valid":true,"code":"valid","token":{"id":"tok_1","api":"api_1","subject":"svc-ci","scopes":["read"],"expires_at":null,"metadata":{}},"rate_limit":{"limit":100,"remaining":99,"reset":60}}`},
		"GET /v1/audit":                {200, `{"events":[{"seq":7,"id":"evt_7","time":"2026-11-23T10:00:00Z","actor":"tok_admin","action":"token.create","target":"tok_1","remote_addr":"127.0.0.1","details":{},"prev_hash":"a","hash":"b"}],"next_cursor":6}`},
	}
	tests := []struct {
		name    string
		fn      cliFunc
		args    []string
		want    cliRequest // Auth is always the test token
		wantOut []string   // substrings of stdout, in order
		wantErr string     // substring of stderr
	}{
		{
			name:    "api create",
			fn:      runAPI,
			args:    []string{"create", "--name", "Billing", "--identifier", "https://billing", "--scopes", "read, write", "--key-prefix", "bill", "--default-ttl", "1h", "--max-ttl", "720h"},
			want:    cliRequest{Method: "POST", Path: "/v1/apis", Body: `{"name":"Billing","identifier":"https://billing","scopes":["read","write"],"key_prefix":"bill","default_ttl":3600,"max_ttl":2592000}`},
			wantOut: []string{"Created API api_1.", "Identifier:", "https://billing", "Default TTL:", "1h", "Max TTL:", "720h"},
		},
		{
			name:    "api list",
			fn:      runAPI,
			args:    []string{"list"},
			want:    cliRequest{Method: "GET", Path: "/v1/apis"},
			wantOut: []string{"ID", "NAME", "IDENTIFIER", "SCOPES", "\napi_1", "Billing", "https://billing", "read,write", "bill", "1h", "720h"},
		},
		{
			name:    "api get",
			fn:      runAPI,
			args:    []string{"get", "billing"},
			want:    cliRequest{Method: "GET", Path: "/v1/apis/billing"},
			wantOut: []string{"ID:", "api_1"},
		},
		{
			name:    "api update, flags after the id",
			fn:      runAPI,
			args:    []string{"update", "api_1", "--name", "B2", "--add-scopes", "admin"},
			want:    cliRequest{Method: "PATCH", Path: "/v1/apis/api_1", Body: `{"name":"B2","add_scopes":["admin"]}`},
			wantOut: []string{"Updated API api_1."},
		},
		{
			name: "api create with scope descriptions",
			fn:   runAPI,
			args: []string{"create", "--name", "Billing", "--identifier", "https://billing", "--scopes", "read,write",
				"--scope-description", "read=See invoices, paid=or not", "--scope-description", " write = Send invoices "},
			want: cliRequest{Method: "POST", Path: "/v1/apis", Body: `{"name":"Billing","identifier":"https://billing","scopes":["read","write"],
				"scope_descriptions":{"read":"See invoices, paid=or not","write":"Send invoices"}}`},
			wantOut: []string{"Created API api_1."},
		},
		{
			name:    "api update removes a scope description",
			fn:      runAPI,
			args:    []string{"update", "api_1", "--scope-description", "read="},
			want:    cliRequest{Method: "PATCH", Path: "/v1/apis/api_1", Body: `{"scope_descriptions":{"read":""}}`},
			wantOut: []string{"Updated API api_1."},
		},
		{
			name:    "api update ttl to none",
			fn:      runAPI,
			args:    []string{"update", "--max-ttl", "0s", "api_1"},
			want:    cliRequest{Method: "PATCH", Path: "/v1/apis/api_1", Body: `{"max_ttl":0}`},
			wantOut: []string{"Updated API api_1."},
		},
		{
			name:    "api delete force after id",
			fn:      runAPI,
			args:    []string{"delete", "api_1", "--force"},
			want:    cliRequest{Method: "DELETE", Path: "/v1/apis/api_1", Query: "force=true"},
			wantOut: []string{"Deleted API api_1.\n"},
		},
		{
			name: "token create with every flag",
			fn:   runToken,
			args: []string{"create", "--api", "billing", "--name", "ci", "--subject", "svc-ci", "--scopes", "read,write",
				"--expires-in", "720h", "--metadata", `{"team":"x"}`, "--allowed-cidrs", "10.0.0.0/8,192.168.0.0/16",
				"--rate-limit", "100/1m", "--quota", "1000", "--quota-refill", "1000/daily"},
			want: cliRequest{Method: "POST", Path: "/v1/tokens", Body: `{"api":"billing","name":"ci","subject":"svc-ci",
				"scopes":["read","write"],"expires_in":2592000,"metadata":{"team":"x"},
				"allowed_cidrs":["10.0.0.0/8","192.168.0.0/16"],"rate_limit":{"limit":100,"window":60},
				"quota":{"remaining":1000,"refill":{"amount":1000,"interval":"daily"}}}`},
			wantOut: []string{"Created token tok_1.", "jt_SECRET", "will not be shown again", "Rate limit:", "100 per 1m"},
		},
		{
			name:    "token create minimal, rate per second",
			fn:      runToken,
			args:    []string{"create", "--api", "billing", "--rate-limit", "10/s"},
			want:    cliRequest{Method: "POST", Path: "/v1/tokens", Body: `{"api":"billing","rate_limit":{"limit":10,"window":1}}`},
			wantOut: []string{"jt_SECRET", "will not be shown again"},
		},
		{
			name: "token list",
			fn:   runToken,
			args: []string{"list", "--api", "billing", "--subject", "svc-ci", "--limit", "10", "--cursor", "c1"},
			want: cliRequest{Method: "GET", Path: "/v1/tokens", Query: "api=billing&cursor=c1&limit=10&subject=svc-ci"},
			wantOut: []string{"ID", "NAME", "SUBJECT", "SCOPES", "HINT", "EXPIRES", "LAST USED",
				"\ntok_1", "ci", "svc-ci", "read,write", "jt_ab…yz", "2026-12-23T10:00:00Z", "never"},
			wantErr: "--cursor c2",
		},
		{
			name:    "token get",
			fn:      runToken,
			args:    []string{"get", "tok_1"},
			want:    cliRequest{Method: "GET", Path: "/v1/tokens/tok_1"},
			wantOut: []string{"ID:", "tok_1", "Subject:", "svc-ci", "Metadata:", `{"team":"x"}`, "Expires:", "2026-12-23T10:00:00Z"},
		},
		{
			name: "token update sets and clears",
			fn:   runToken,
			args: []string{"update", "tok_1", "--name", "", "--scopes", "read", "--rate-limit", "none", "--quota", "5", "--allowed-cidrs", ""},
			want: cliRequest{Method: "PATCH", Path: "/v1/tokens/tok_1",
				Body: `{"name":"","scopes":["read"],"allowed_cidrs":[],"rate_limit":null,"quota":{"remaining":5,"refill":null}}`},
			wantOut: []string{"Updated token tok_1."},
		},
		{
			name:    "token update clears quota",
			fn:      runToken,
			args:    []string{"update", "--quota", "none", "tok_1"},
			want:    cliRequest{Method: "PATCH", Path: "/v1/tokens/tok_1", Body: `{"quota":null}`},
			wantOut: []string{"Updated token tok_1."},
		},
		{
			name:    "token update metadata",
			fn:      runToken,
			args:    []string{"update", "tok_1", "--metadata", `{"a":[1,2]}`},
			want:    cliRequest{Method: "PATCH", Path: "/v1/tokens/tok_1", Body: `{"metadata":{"a":[1,2]}}`},
			wantOut: []string{"Updated token tok_1."},
		},
		{
			name:    "token revoke with reason after id",
			fn:      runToken,
			args:    []string{"revoke", "tok_1", "--reason", "leaked"},
			want:    cliRequest{Method: "DELETE", Path: "/v1/tokens/tok_1", Body: `{"reason":"leaked"}`},
			wantOut: []string{"Revoked token tok_1 at 2026-11-23T11:00:00Z (reason: leaked).\n"},
		},
		{
			name:    "token rotate",
			fn:      runToken,
			args:    []string{"rotate", "tok_1", "--grace", "24h"},
			want:    cliRequest{Method: "POST", Path: "/v1/tokens/tok_1/rotate", Body: `{"grace_period":86400}`},
			wantOut: []string{"Rotated token tok_1.", "jt_SECRET", "will not be shown again", "old secret keeps working for 24h"},
		},
		{
			name:    "token rotate without grace",
			fn:      runToken,
			args:    []string{"rotate", "tok_1"},
			want:    cliRequest{Method: "POST", Path: "/v1/tokens/tok_1/rotate", Body: `{"grace_period":0}`},
			wantOut: []string{"jt_SECRET", "old secret no longer works"},
		},
		{
			name:    "token usage",
			fn:      runToken,
			args:    []string{"usage", "tok_1", "--from", "2026-11-23T00:00:00Z", "--to", "2026-11-24T01:00:00+01:00"},
			want:    cliRequest{Method: "GET", Path: "/v1/tokens/tok_1/usage", Query: "from=2026-11-23T00%3A00%3A00Z&to=2026-11-24T00%3A00%3A00Z"},
			wantOut: []string{"Token tok_1: 3 uses in total, last used 2026-11-23T10:30:00Z from 10.1.1.1.", "HOUR", "ALLOWED", "DENIED", "2026-11-23T10:00:00Z", "2", "1"},
		},
		{
			name:    "token verify",
			fn:      runToken,
			args:    []string{"verify", "jt_SECRET", "--api", "billing", "--scopes", "read"},
			want:    cliRequest{Method: "POST", Path: "/v1/verify", Body: `{"token":"jt_SECRET","api":"billing","scopes":["read"]}`},
			wantOut: []string{"Valid:", "yes", "Code:", "valid", "Token:", "tok_1", "Rate limit:", "99 of 100 remaining"},
		},
		{
			name:    "audit list",
			fn:      runAuditList,
			args:    []string{"--action", "token.create", "--actor", "tok_admin", "--target", "tok_1", "--limit", "5", "--cursor", "8"},
			want:    cliRequest{Method: "GET", Path: "/v1/audit", Query: "action=token.create&actor=tok_admin&cursor=8&limit=5&target=tok_1"},
			wantOut: []string{"SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "\n7", "2026-11-23T10:00:00Z", "tok_admin", "token.create", "tok_1", "127.0.0.1"},
			wantErr: "--cursor 6",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanCLIEnv(t)
			srv := newFakeAdminAPI(t, answers)
			args := append([]string{}, tt.args...)
			args = append(args, "--server", srv.URL, "--token", "adm_test")
			stdout, stderr, err := runCLIForTest(t, tt.fn, args...)
			if err != nil {
				t.Fatalf("err = %v; stderr:\n%s", err, stderr)
			}
			want := tt.want
			want.Auth = "Bearer adm_test"
			if s, ok := want.Body.(string); ok {
				want.Body = cliJSON(t, s)
			}
			if diff := cmp.Diff(srv.requests(), []cliRequest{want}); diff != "" {
				t.Errorf("requests (-got +want):\n%s", diff)
			}
			rest := stdout
			for _, s := range tt.wantOut {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order); stdout:\n%s", s, stdout)
				}
				rest = rest[i+len(s):]
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr lacks %q; stderr:\n%s", tt.wantErr, stderr)
			}
		})
	}
}

func TestCLITokenListTable(t *testing.T) {
	cleanCLIEnv(t)
	srv := newFakeAdminAPI(t, map[string]cliAnswer{
		"GET /v1/tokens": {200, `{"tokens":[` + cliTokenJSON + `,
			{"id":"tok_2","api":"api_1","name":"","subject":"","scopes":[],"hint":"jt_cd…wx","created_at":"2026-11-23T10:00:00Z",
			 "updated_at":"2026-11-23T10:00:00Z","expires_at":null,"revoked_at":null,"last_used_at":"2026-11-23T12:00:00Z"}],"next_cursor":""}`},
	})
	stdout, stderr, err := runCLIForTest(t, runToken, "list", "--server", srv.URL, "--token", "t")
	if err != nil {
		t.Fatal(err)
	}
	want := `ID     NAME  SUBJECT  SCOPES      HINT      EXPIRES               LAST USED
tok_1  ci    svc-ci   read,write  jt_ab…yz  2026-12-23T10:00:00Z  never
tok_2  -     -        -           jt_cd…wx  never                 2026-11-23T12:00:00Z
`
	if diff := cmp.Diff(stdout, want); diff != "" {
		t.Errorf("stdout (-got +want):\n%s", diff)
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing (no next cursor)", stderr)
	}
}

func TestCLIJSONOutput(t *testing.T) {
	tests := []struct {
		name string
		fn   cliFunc
		args []string
		want string
	}{
		{"token create", runToken, []string{"create", "--api", "billing"}, cliTokenWithSecret},
		{"token get", runToken, []string{"get", "tok_1"}, cliTokenJSON},
		{"api list", runAPI, []string{"list"}, `{"apis":[` + cliAPIJSON + `]}`},
		{"api delete", runAPI, []string{"delete", "api_1"}, `{}`},
		{"audit", runAuditList, nil, `{"events":[],"next_cursor":0}`},
	}
	srv := newFakeAdminAPI(t, map[string]cliAnswer{
		"POST /v1/tokens":       {201, cliTokenWithSecret},
		"GET /v1/tokens/tok_1":  {200, cliTokenJSON},
		"GET /v1/apis":          {200, `{"apis":[` + cliAPIJSON + `]}`},
		"DELETE /v1/apis/api_1": {204, ""},
		"GET /v1/audit":         {200, `{"events":[],"next_cursor":0}`},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanCLIEnv(t)
			args := append(append([]string{}, tt.args...), "--json", "--server", srv.URL, "--token", "t")
			stdout, _, err := runCLIForTest(t, tt.fn, args...)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, []byte(tt.want), "", "  "); err != nil {
				t.Fatal(err)
			}
			buf.WriteByte('\n')
			if diff := cmp.Diff(stdout, buf.String()); diff != "" {
				t.Errorf("stdout (-got +want):\n%s", diff)
			}
		})
	}
}

func TestCLIEnvironment(t *testing.T) {
	srv := newFakeAdminAPI(t, map[string]cliAnswer{"GET /v1/apis": {200, `{"apis":[]}`}})
	t.Setenv("JETON_SERVER", srv.URL)
	t.Setenv("JETON_TOKEN", "from_env")
	if _, stderr, err := runCLIForTest(t, runAPI, "list"); err != nil {
		t.Fatalf("err = %v; stderr:\n%s", err, stderr)
	}
	if _, stderr, err := runCLIForTest(t, runAPI, "list", "--token", "from_flag"); err != nil {
		t.Fatalf("err = %v; stderr:\n%s", err, stderr)
	}
	var got []string
	for _, r := range srv.requests() {
		got = append(got, r.Auth)
	}
	if diff := cmp.Diff(got, []string{"Bearer from_env", "Bearer from_flag"}); diff != "" {
		t.Errorf("Authorization headers (-got +want):\n%s", diff)
	}
}

func TestCLIHelpDoesNotPrintToken(t *testing.T) {
	cleanCLIEnv(t)
	t.Setenv("JETON_TOKEN", "very-secret-admin-token")
	_, stderr, err := runCLIForTest(t, runToken, "get", "-h")
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("err = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr, "-server") || strings.Contains(stderr, "very-secret-admin-token") {
		t.Errorf("usage should list flags without the token; stderr:\n%s", stderr)
	}
}

// TestCLIGroupHelpListsCommandsTogether: the -h text of each command
// group lists all its commands in one block under "commands:", notes
// about flags after it, not between two commands.
func TestCLIGroupHelpListsCommandsTogether(t *testing.T) {
	t.Parallel()
	groups := []struct {
		run  cliFunc
		cmds []string
	}{
		{runAPI, []string{"create", "list", "get", "update", "delete"}},
		{runToken, []string{"create", "list", "get", "update", "revoke", "rotate", "usage", "verify"}},
		{runClient, nil},
		{runUser, nil},
		{runKey, nil},
	}
	for _, g := range groups {
		_, stderr, err := runCLIForTest(t, g.run, "-h")
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("err = %v, want flag.ErrHelp", err)
		}
		_, rest, ok := strings.Cut(stderr, "\ncommands:\n")
		if !ok {
			t.Fatalf("no commands: block in\n%s", stderr)
		}
		block, _, _ := strings.Cut(rest, "\n\n")
		for line := range strings.SplitSeq(block, "\n") {
			if !strings.HasPrefix(line, "  ") {
				t.Errorf("line %q in the commands block is not a command:\n%s", line, stderr)
			}
		}
		for _, c := range g.cmds {
			if !strings.Contains("\n"+block, "\n  "+c) {
				t.Errorf("command %q is not in the commands block:\n%s", c, stderr)
			}
		}
	}
}

func TestCLIVerify(t *testing.T) {
	cleanCLIEnv(t)
	srv := newFakeAdminAPI(t, map[string]cliAnswer{
		"POST /v1/verify": {200, `{"valid":false,"code":"revoked"}`},
	})
	old := verifyStdin
	t.Cleanup(func() { verifyStdin = old })
	verifyStdin = strings.NewReader("jt_FROM_STDIN\n")

	stdout, _, err := runCLIForTest(t, runToken, "verify", "-", "--server", srv.URL, "--token", "t")
	if !errors.Is(err, errTokenNotValid) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("err = %v, want errTokenNotValid with the code", err)
	}
	if strings.Contains(err.Error(), "jt_FROM_STDIN") {
		t.Errorf("error leaks the token: %v", err)
	}
	if !strings.Contains(stdout, "Valid:") || !strings.Contains(stdout, "no") {
		t.Errorf("stdout:\n%s", stdout)
	}
	want := []cliRequest{{Method: "POST", Path: "/v1/verify", Auth: "Bearer t", Body: cliJSON(t, `{"token":"jt_FROM_STDIN"}`)}}
	if diff := cmp.Diff(srv.requests(), want); diff != "" {
		t.Errorf("requests (-got +want):\n%s", diff)
	}
}

func TestCLIErrors(t *testing.T) {
	srv := newFakeAdminAPI(t, map[string]cliAnswer{
		"GET /v1/tokens/tok_404":       {404, `{"error":{"code":"not_found","message":"no such token"}}`},
		"DELETE /v1/apis/api_1":        {409, `{"error":{"code":"api_in_use","message":"api has 3 live tokens"}}`},
		"POST /v1/tokens":              {400, `{"error":{"code":"invalid_cidr","message":"bad cidr \"x\""}}`},
		"GET /v1/apis":                 {502, `<html>bad gateway</html>`},
		"POST /v1/tokens/tok_1/rotate": {400, `{"error":{"code":"invalid_request","message":"grace period too long"}}`},
	})
	tests := []struct {
		name     string
		fn       cliFunc
		args     []string
		noToken  bool
		wantErr  string // substring of the error
		wantSent bool   // whether a request reached the server
	}{
		{name: "missing token", fn: runToken, args: []string{"get", "tok_1"}, noToken: true, wantErr: "no admin token: set JETON_TOKEN or pass --token"},
		{name: "not found", fn: runToken, args: []string{"get", "tok_404"}, wantErr: "not_found: no such token", wantSent: true},
		{name: "api in use", fn: runAPI, args: []string{"delete", "api_1"}, wantErr: "api_in_use: api has 3 live tokens", wantSent: true},
		{name: "invalid cidr", fn: runToken, args: []string{"create", "--api", "a", "--allowed-cidrs", "x"}, wantErr: `invalid_cidr: bad cidr "x"`, wantSent: true},
		{name: "server without error body", fn: runAPI, args: []string{"list"}, wantErr: "HTTP 502", wantSent: true},
		{name: "server rejects grace", fn: runToken, args: []string{"rotate", "tok_1", "--grace", "720h"}, wantErr: "invalid_request: grace period too long", wantSent: true},
		{name: "bad rate limit", fn: runToken, args: []string{"create", "--api", "a", "--rate-limit", "abc"}, wantErr: `invalid value "abc" for flag -rate-limit`},
		{name: "rate limit zero", fn: runToken, args: []string{"create", "--api", "a", "--rate-limit", "0/1m"}, wantErr: "-rate-limit"},
		{name: "rate limit bad window", fn: runToken, args: []string{"create", "--api", "a", "--rate-limit", "10/fortnight"}, wantErr: "WINDOW"},
		{name: "rate limit none on create", fn: runToken, args: []string{"create", "--api", "a", "--rate-limit", "none"}, wantErr: "only meaningful for token update"},
		{name: "bad duration", fn: runToken, args: []string{"create", "--api", "a", "--expires-in", "30d"}, wantErr: `invalid value "30d" for flag -expires-in`},
		{name: "fractional duration", fn: runToken, args: []string{"rotate", "tok_1", "--grace", "1.5s"}, wantErr: "whole seconds"},
		{name: "negative duration", fn: runAPI, args: []string{"create", "--name", "n", "--identifier", "i", "--scopes", "a", "--max-ttl", "-1h"}, wantErr: "negative"},
		{name: "bad quota", fn: runToken, args: []string{"create", "--api", "a", "--quota", "-5"}, wantErr: "-quota"},
		{name: "bad refill", fn: runToken, args: []string{"create", "--api", "a", "--quota", "5", "--quota-refill", "5/weekly"}, wantErr: "-quota-refill"},
		{name: "refill without quota", fn: runToken, args: []string{"update", "tok_1", "--quota-refill", "5/daily"}, wantErr: "--quota-refill needs --quota"},
		{name: "metadata not an object", fn: runToken, args: []string{"create", "--api", "a", "--metadata", "[1]"}, wantErr: "--metadata must be a JSON object"},
		{name: "metadata not json", fn: runToken, args: []string{"update", "tok_1", "--metadata", "{"}, wantErr: "--metadata must be a JSON object"},
		{name: "bad time", fn: runToken, args: []string{"usage", "tok_1", "--from", "yesterday"}, wantErr: "RFC 3339"},
		{name: "bad limit", fn: runToken, args: []string{"list", "--limit", "x"}, wantErr: "-limit"},
		{name: "negative limit", fn: runToken, args: []string{"list", "--limit", "-1"}, wantErr: "must not be negative"},
		{name: "bad audit cursor", fn: runAuditList, args: []string{"--cursor", "abc"}, wantErr: "-cursor"},
		{name: "unknown flag", fn: runToken, args: []string{"get", "tok_1", "--colour"}, wantErr: "flag provided but not defined: -colour"},
		{name: "empty id", fn: runToken, args: []string{"revoke", "", "--reason", "x"}, wantErr: "must not be empty"},
		{name: "missing api", fn: runToken, args: []string{"create"}, wantErr: "--api is required"},
		{name: "missing api name", fn: runAPI, args: []string{"create", "--identifier", "i", "--scopes", "a"}, wantErr: "--name is required"},
		{name: "missing scopes", fn: runAPI, args: []string{"create", "--name", "n", "--identifier", "i"}, wantErr: "--scopes is required"},
		{name: "scope description without =", fn: runAPI, args: []string{"update", "api_1", "--scope-description", "read"}, wantErr: "want SCOPE=TEXT"},
		{name: "scope described twice", fn: runAPI, args: []string{"update", "api_1", "--scope-description", "read=a", "--scope-description", "read=b"}, wantErr: "described twice"},
		{name: "missing id", fn: runToken, args: []string{"revoke", "--reason", "x"}, wantErr: "want ID, got 0 arguments"},
		{name: "two ids", fn: runToken, args: []string{"get", "tok_1", "tok_2"}, wantErr: "want ID, got 2 arguments"},
		{name: "unexpected argument", fn: runAPI, args: []string{"list", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "nothing to update", fn: runToken, args: []string{"update", "tok_1"}, wantErr: "nothing to change"},
		{name: "nothing to update api", fn: runAPI, args: []string{"update", "api_1"}, wantErr: "nothing to change"},
		{name: "unknown token command", fn: runToken, args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "no api command", fn: runAPI, args: nil, wantErr: "missing command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanCLIEnv(t)
			before := len(srv.requests())
			args := append(append([]string{}, tt.args...), "--server", srv.URL)
			if !tt.noToken {
				args = append(args, "--token", "adm_secret_value")
			}
			_, _, err := runCLIForTest(t, tt.fn, args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "adm_secret_value") {
				t.Errorf("error leaks the admin token: %v", err)
			}
			if sent := len(srv.requests()) > before; sent != tt.wantSent {
				t.Errorf("request sent = %v, want %v", sent, tt.wantSent)
			}
		})
	}
}

func TestParseCLIArgs(t *testing.T) {
	tests := []struct {
		args    []string
		want    []string
		wantVal string
	}{
		{args: []string{"a", "--reason", "r"}, want: []string{"a"}, wantVal: "r"},
		{args: []string{"--reason", "r", "a"}, want: []string{"a"}, wantVal: "r"},
		{args: []string{"a", "--reason=r", "b"}, want: []string{"a", "b"}, wantVal: "r"},
		{args: []string{"--", "--reason", "a"}, want: []string{"--reason", "a"}},
		{args: []string{"a", "--", "-b"}, want: []string{"a", "-b"}},
		{args: []string{"-", "--reason", "r"}, want: []string{"-"}, wantVal: "r"},
	}
	for _, tt := range tests {
		fs := newCLIFlagSet("test", io.Discard)
		reason := fs.String("reason", "", "")
		got, err := parseCLIArgs(fs, tt.args, len(tt.want), "ARGS")
		if err != nil {
			t.Errorf("parseCLIArgs(%q): %v", tt.args, err)
			continue
		}
		if diff := cmp.Diff(got, tt.want); diff != "" || *reason != tt.wantVal {
			t.Errorf("parseCLIArgs(%q) = %q, reason %q; want %q, reason %q", tt.args, got, *reason, tt.want, tt.wantVal)
		}
	}
}

func TestFmtTTL(t *testing.T) {
	for secs, want := range map[int64]string{0: "none", 1: "1s", 60: "1m", 90: "1m30s", 3600: "1h", 5400: "1h30m", 2592000: "720h", 3601: "1h0m1s"} {
		if got := fmtTTL(secs); got != want {
			t.Errorf("fmtTTL(%d) = %q, want %q", secs, got, want)
		}
	}
}

// TestAuditVerifyNeedsADatabase proves that "jeton audit verify" on a path
// that holds no database fails and creates nothing, instead of verifying
// a new, empty log.
func TestAuditVerifyNeedsADatabase(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{"", "sqlite:"} {
		dir := t.TempDir()
		db := scheme + filepath.Join(dir, "jeton.dv")
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"audit", "verify", "--db", db}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "no database") {
			t.Errorf("audit verify --db %s with no database: %v, stdout %q; want an error", db, err, stdout.String())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("audit verify --db %s created %d files", db, len(entries))
		}
	}
}

// TestAuditVerify proves that "jeton audit verify" says how many entries an
// intact log has, and what is wrong with a log tampered with.
func TestAuditVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		tamper     string // SQL run directly against the database file
		wantStdout string
		wantErr    string
	}{
		{"intact", "", "audit log intact: 3 entries verified\n", ""},
		{"deleted entry", `DELETE FROM audit_events WHERE seq = 2`, "", "chain broken at entry 3 (evt_"},
		{"deleted tail", `DELETE FROM audit_events WHERE seq >= 2`, "", "chain broken at entry 2: entries 2 to 3 are missing: the log's head says it ends at entry 3"},
		{"deleted everything", `DELETE FROM audit_events`, "", "chain broken at entry 1: entries 1 to 3 are missing"},
		{"entry numbered 0", `INSERT INTO audit_events (seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash)
			VALUES (0, 'evt_forged', 0, 'tok_admin', 'token.create', 'tok_forged', '10.0.0.1', '{}', '', 'x')`,
			"", "chain broken at entry 0 (evt_forged): is numbered outside the log, which starts at entry 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "jeton.db")
			db, err := sqlstore.Open(ctx, path, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := db.AppendAudit(ctx, store.AuditEvent{Actor: "cli", Action: "token.create"}); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			if tt.tamper != "" {
				raw, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := raw.Exec(tt.tamper); err != nil {
					t.Fatal(err)
				}
				raw.Close()
			}
			var stdout, stderr bytes.Buffer
			err = run(ctx, []string{"audit", "verify", "--db", path}, &stdout, &stderr)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("audit verify = %v, want an error containing %q", err, tt.wantErr)
			}
			if got := stdout.String(); got != tt.wantStdout {
				t.Errorf("audit verify printed %q, want %q", got, tt.wantStdout)
			}
		})
	}
}
