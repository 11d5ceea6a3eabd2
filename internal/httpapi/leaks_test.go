package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/tokenfmt"
)

func TestLeakReports(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	newKey := func() tokenJSON {
		var k tokenJSON
		e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","name":"k","subject":"cus_2","scopes":["repos:read"]}`, 201, &k)
		return k
	}
	rotated := newKey() // rotated with a grace period: its old secret leaked
	var next tokenJSON
	e.mustDo(t, "POST", "/v1/tokens/"+rotated.ID+"/rotate", e.admin, `{"grace_period":3600}`, 200, &next)
	revoked := newKey()
	e.mustDo(t, "DELETE", "/v1/tokens/"+revoked.ID, e.admin, ``, 200, nil)
	unknown, err := tokenfmt.Generate("jtp")
	if err != nil {
		t.Fatal(err)
	}
	const source = "https://github.com/acme/app/blob/main/.env#L3"
	verifyCode := func(tok string) string {
		t.Helper()
		var v struct{ Code string }
		e.mustDo(t, "POST", "/v1/verify", e.verify, fmt.Sprintf(`{"token":%q,"api":"acme"}`, tok), 200, &v)
		return v.Code
	}
	if got := verifyCode(rotated.Token); got != "valid" {
		t.Fatalf("old secret in its grace period: %s, want valid", got)
	}

	// Anyone may report, without credentials; the answer tells nothing
	// the tokens do not.
	body, _ := json.Marshal(leakRequest{Tokens: []string{e.key, rotated.Token, revoked.Token, "garbage", unknown, e.key}, Source: source})
	resp, b := e.do(t, "POST", "/v1/leaks", "", string(body))
	if resp.StatusCode != 202 || strings.TrimSpace(string(b)) != `{"received":6}` {
		t.Fatalf("anonymous report: %d %s", resp.StatusCode, b)
	}
	for tok, want := range map[string]string{e.key: "revoked", rotated.Token: "expired", next.Token: "valid", revoked.Token: "revoked"} {
		if got := verifyCode(tok); got != want {
			t.Errorf("after the report, %s verifies %s, want %s", tokenfmt.Hint(tok), got, want)
		}
	}
	var k tokenJSON
	e.mustDo(t, "GET", "/v1/tokens/"+e.keyID, e.admin, ``, 200, &k)
	if k.RevokeReason != "leaked" {
		t.Errorf("revoke reason %q, want leaked", k.RevokeReason)
	}

	// Each change is audited once, as a leak report, with where the token
	// was found and its hint, never the token.
	resp, b = e.do(t, "GET", "/v1/audit?action=leak.report", e.admin, ``)
	var audit struct {
		Events []struct {
			Actor, Action, Target string
			RemoteAddr            string `json:"remote_addr"`
			Details               map[string]string
		}
	}
	if err := json.Unmarshal(b, &audit); err != nil || resp.StatusCode != 200 {
		t.Fatalf("audit: %d %s", resp.StatusCode, b)
	}
	type entry struct{ Actor, Target, Kind, Outcome, Hint, Source string }
	var got []entry
	for _, ev := range audit.Events {
		got = append(got, entry{ev.Actor, ev.Target, ev.Details["kind"], ev.Details["outcome"], ev.Details["hint"], ev.Details["source"]})
		if ev.RemoteAddr == "" {
			t.Errorf("audit event without the reporter's address")
		}
	}
	want := []entry{ // newest first
		{"anonymous", rotated.ID, "api_key", "grace_ended", tokenfmt.Hint(rotated.Token), source},
		{"anonymous", e.keyID, "api_key", "revoked", tokenfmt.Hint(e.key), source},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("leak audit events (-got +want):\n%s", diff)
	}
	for _, secret := range []string{e.key, rotated.Token, unknown} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the audit log holds a reported secret")
		}
	}

	// An admin learns what each token was. A second report finds the work
	// done and changes nothing.
	fresh := newKey()
	body, _ = json.Marshal(leakRequest{Tokens: []string{e.key, rotated.Token, revoked.Token, "garbage", unknown, fresh.Token}})
	var res struct{ Results []leakResult }
	e.mustDo(t, "POST", "/v1/leaks", e.admin, string(body), 200, &res)
	wantRes := []leakResult{
		{Hint: tokenfmt.Hint(e.key), Kind: "api_key", Outcome: "inactive", ID: e.keyID},
		{Hint: tokenfmt.Hint(rotated.Token), Kind: "api_key", Outcome: "inactive", ID: rotated.ID},
		{Hint: tokenfmt.Hint(revoked.Token), Kind: "api_key", Outcome: "inactive", ID: revoked.ID},
		{Outcome: "malformed"},
		{Hint: tokenfmt.Hint(unknown), Outcome: "unknown"},
		{Hint: tokenfmt.Hint(fresh.Token), Kind: "api_key", Outcome: "revoked", ID: fresh.ID},
	}
	if diff := cmp.Diff(res.Results, wantRes); diff != "" {
		t.Errorf("admin's answer (-got +want):\n%s", diff)
	}
	if got := verifyCode(next.Token); got != "valid" {
		t.Errorf("the rotated key's current secret: %s, want valid", got)
	}
	_, b = e.do(t, "GET", "/v1/audit?action=leak.report", e.admin, ``)
	audit.Events = nil
	json.Unmarshal(b, &audit)
	if len(audit.Events) != 3 || audit.Events[0].Target != fresh.ID || audit.Events[0].Actor == "anonymous" {
		t.Errorf("audit after the admin's report: %s", b)
	}

	// Prometheus counts the outcomes.
	_, b = e.do(t, "GET", "/metrics", "", ``)
	for _, line := range []string{`jeton_leaked_tokens_total{outcome="revoked"} 2`, `jeton_leaked_tokens_total{outcome="grace_ended"} 1`,
		`jeton_leaked_tokens_total{outcome="inactive"} 4`, `jeton_leaked_tokens_total{outcome="malformed"} 2`} {
		if !strings.Contains(string(b), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func TestAnonymousLeakReportsAreThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	unknown, err := tokenfmt.Generate("jtp")
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"tokens":[%q]}`, unknown)
	for i := range anonymousLeakReportsPerAddress {
		if resp, b := e.do(t, "POST", "/v1/leaks", "", body); resp.StatusCode != 202 {
			t.Fatalf("report %d: %d %s", i+1, resp.StatusCode, b)
		}
	}
	// Bad reports count too: they cost the server as much.
	resp, b := e.do(t, "POST", "/v1/leaks", "", `{"tokens":[]}`)
	if resp.StatusCode != 429 || !strings.Contains(string(b), `"rate_limited"`) {
		t.Errorf("report over the limit: %d %s", resp.StatusCode, b)
	}
	// Over the limit, a report changes nothing; an admin is not limited.
	body = fmt.Sprintf(`{"tokens":[%q]}`, e.key)
	if resp, _ := e.do(t, "POST", "/v1/leaks", "", body); resp.StatusCode != 429 {
		t.Errorf("report over the limit: %d", resp.StatusCode)
	}
	var v struct{ Code string }
	e.mustDo(t, "POST", "/v1/verify", e.verify, fmt.Sprintf(`{"token":%q,"api":"acme"}`, e.key), 200, &v)
	if v.Code != "valid" {
		t.Errorf("a refused report revoked the key: %s", v.Code)
	}
	var res struct{ Results []leakResult }
	e.mustDo(t, "POST", "/v1/leaks", e.admin, body, 200, &res)
	if len(res.Results) != 1 || res.Results[0].Outcome != "revoked" {
		t.Errorf("admin report: %+v", res.Results)
	}
}

// TestLeakSourceKeepsSecretsOutOfTheAudit: a report's source goes to the
// audit log, where no secret may go; whoever pastes where a key was found
// may paste the key, and other live keys, with it.
func TestLeakSourceKeepsSecretsOutOfTheAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	var other tokenJSON
	e.mustDo(t, "POST", "/v1/tokens", e.admin, `{"api":"acme","name":"other","scopes":["repos:read"]}`, 201, &other)
	const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	body, _ := json.Marshal(leakRequest{Tokens: []string{e.key},
		Source: "https://paste.example/x: API_KEY=" + e.key + " BACKUP_KEY=" + other.Token + " AT=" + jwt})
	if resp, b := e.do(t, "POST", "/v1/leaks", "", string(body)); resp.StatusCode != 202 {
		t.Fatalf("report: %d %s", resp.StatusCode, b)
	}
	var v struct{ Code string }
	e.mustDo(t, "POST", "/v1/verify", e.admin, `{"token":"`+other.Token+`"}`, 200, &v)
	if v.Code != "valid" {
		t.Fatalf("the token the report did not list verifies %s", v.Code)
	}
	_, b := e.do(t, "GET", "/v1/audit?action=leak.report", e.admin, ``)
	for name, secret := range map[string]string{"the reported token": e.key, "a live token": other.Token, "a JWT": jwt} {
		if strings.Contains(string(b), secret) {
			t.Errorf("GET /v1/audit shows %s from the report's source: %s", name, b)
		}
	}
	if !strings.Contains(string(b), tokenfmt.Hint(other.Token)) || !strings.Contains(string(b), "https://paste.example/x") {
		t.Errorf("the source lost more than its secrets: %s", b)
	}
}
