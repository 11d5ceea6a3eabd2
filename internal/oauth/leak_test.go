package oauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/store"
)

// reportLeaks posts tokens to /v1/leaks (with bearer, if set) and returns
// the status and the decoded answer.
func (e *env) reportLeaks(bearer string, toks ...string) (int, map[string]any) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"tokens": toks, "source": "https://paste.example/abc"})
	req, _ := http.NewRequest("POST", e.url+"/v1/leaks", bytes.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func TestLeakReportsOfOAuthTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()

	// A user's grant: a JWT access token, a refresh token, an ID token.
	jc, jsecret, tok, _ := e.userJWT()
	idToken, _ := tok.Extra("id_token").(string)
	mustf(t, tok.RefreshToken != "" && idToken != "", "the grant lacks a refresh or ID token")
	// A machine client: an opaque access token, and a secret rotated with a
	// grace period, so that the leaked previous one still works.
	c, oldSecret := e.client(nil)
	status, m, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"repos:read"}}, c.ID, oldSecret)
	opaque, _ := m["access_token"].(string)
	mustf(t, status == 200 && opaque != "", "client_credentials: %d %v", status, m)
	_, newSecret, err := e.oauth.RotateClientSecret(ctx, c.ID, time.Hour, actor)
	if err != nil {
		t.Fatal(err)
	}
	clientCredentials := func(id, secret string) int {
		status, _, _ := e.postForm("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"repos:read"}}, id, secret)
		return status
	}
	mustf(t, clientCredentials(c.ID, oldSecret) == 200, "previous secret refused in its grace period")

	status, m = e.reportLeaks("", tok.AccessToken, tok.RefreshToken, opaque, oldSecret, jsecret, idToken)
	mustf(t, status == 202 && m["received"] == float64(6), "anonymous report: %d %v", status, m)

	for name, v := range map[string]string{"JWT access token": tok.AccessToken, "refresh token": tok.RefreshToken, "opaque access token": opaque} {
		mustf(t, e.introspect(v)["active"] == false, "reported %s still active", name)
	}
	status, m, _ = e.postForm("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, jc.ID, jsecret)
	mustf(t, status == 400 || status == 401, "refresh after the report: %d %v", status, m)
	mustf(t, clientCredentials(c.ID, oldSecret) == 401, "reported previous secret still works")
	mustf(t, clientCredentials(c.ID, newSecret) == 200, "the current secret stopped working with the previous one")
	mustf(t, clientCredentials(jc.ID, jsecret) == 401, "reported current secret still works")
	stored, err := e.db.GetClient(ctx, jc.ID)
	mustf(t, err == nil && stored.SecretHint == "", "client whose secret leaked: hint %q, %v", stored.SecretHint, err)
	// The JWT reaches resource servers through the revocation feed.
	jti, _ := e.verifyJWT(tok.AccessToken, "at+jwt")["jti"].(string)
	mustf(t, slices.ContainsFunc(e.feed(), func(r store.Revocation) bool { return r.Ref == jti }), "the revoked JWT is not in the feed: %+v", e.feed())

	// Audited as leak reports, one per change.
	evs, _, err := e.db.ListAudit(ctx, store.AuditFilter{Action: "leak.report", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		var d map[string]string
		json.Unmarshal(ev.Details, &d)
		got = append(got, d["kind"]+" "+d["outcome"]+" "+ev.Actor)
	}
	slices.Sort(got)
	want := []string{"access_token revoked anonymous", "access_token revoked anonymous", "client_secret revoked anonymous",
		"client_secret revoked anonymous", "refresh_token revoked anonymous"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("leak audit events (-got +want):\n%s", diff)
	}

	// Reported again by an admin: everything is inactive now, and an ID
	// token is no credential.
	status, m = e.reportLeaks(e.admin, tok.AccessToken, tok.RefreshToken, opaque, oldSecret, jsecret, idToken)
	var outcomes []string
	results, _ := m["results"].([]any)
	for _, r := range results {
		r, _ := r.(map[string]any)
		o, _ := r["outcome"].(string)
		k, _ := r["kind"].(string)
		outcomes = append(outcomes, k+" "+o)
	}
	// Both reported client secrets are gone from the store: unknown now.
	wantOutcomes := []string{"access_token inactive", "refresh_token inactive", "access_token inactive", " unknown", " unknown", " unknown"}
	if diff := cmp.Diff(outcomes, wantOutcomes); status != 200 || diff != "" {
		t.Errorf("admin's report: %d (-got +want):\n%s", status, diff)
	}
}
