package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jetonhq/jeton/internal/throttle"
	"github.com/jetonhq/jeton/internal/tokenfmt"
	"github.com/jetonhq/jeton/internal/tokens"
)

// Leak reports (POST /v1/leaks).
const (
	// MaxLeakTokens bounds the tokens of one report.
	MaxLeakTokens = 500
	// MaxLeakSourceBytes bounds a report's source.
	MaxLeakSourceBytes = 1024

	// Reports without credentials are limited per address (IPv6: per /64)
	// and in all, in a sliding hour: leaks are rare, and each report can
	// cost up to MaxLeakTokens lookups.
	anonymousLeakReportsPerAddress = 60
	anonymousLeakReportsInAll      = 1000
	anonymousLeakWindow            = time.Hour
)

// anonymousReporter is the audit actor of a report made without
// credentials.
const anonymousReporter = "anonymous"

type leakRequest struct {
	Tokens []string `json:"tokens"`
	Source string   `json:"source"`
}

// leakResult is one reported token in an admin's answer.
type leakResult struct {
	Hint    string `json:"hint,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Outcome string `json:"outcome"`
	ID      string `json:"id,omitempty"`
}

// newLeakThrottle limits reports made without credentials.
func newLeakThrottle() *throttle.Throttle {
	return throttle.New(anonymousLeakReportsInAll, anonymousLeakReportsPerAddress, anonymousLeakWindow)
}

// reportLeaks serves POST /v1/leaks: anyone who finds a Jeton token where
// it should not be (a public repository, a paste, a log) reports it, and
// every token of this server among them stops working at once. Holding a
// token is the authority to kill it, as with GitHub's credential
// revocation API, so no credentials are needed; such reports are
// throttled, and their answer says only how many tokens were received,
// so that it tells nothing the tokens themselves do not. With an admin
// token the answer says what each token was and what was done.
func (a *API) reportLeaks() handlerFunc {
	asAdmin := a.authenticate(needAdmin, func(w http.ResponseWriter, r *http.Request, c *caller) error {
		return a.leakReport(w, r, c.actor(), true)
	})
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get("Authorization") != "" {
			return asAdmin(w, r)
		}
		ip := a.clientIP(r)
		if !a.leakReports.Fail("", ip, a.cfg.Now()) {
			return errorf(http.StatusTooManyRequests, "rate_limited",
				"too many leak reports without credentials; try again later, or report with an admin token")
		}
		return a.leakReport(w, r, tokens.Actor{ID: anonymousReporter, RemoteAddr: ip.String()}, false)
	}
}

func (a *API) leakReport(w http.ResponseWriter, r *http.Request, by tokens.Actor, detailed bool) error {
	var req leakRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if len(req.Tokens) == 0 || len(req.Tokens) > MaxLeakTokens {
		return errorf(http.StatusBadRequest, "invalid_request", "tokens must list 1 to %d tokens", MaxLeakTokens)
	}
	if err := validSource(req.Source); err != nil {
		return err
	}
	// Each distinct token once: the second copy would only find the
	// first one's work done.
	done := make(map[string]tokens.LeakResult, len(req.Tokens))
	out := make([]leakResult, len(req.Tokens))
	for i, tok := range req.Tokens {
		res, ok := done[tok]
		if !ok {
			var err error
			if res, err = a.reportLeak(r.Context(), tok, req.Source, by); err != nil {
				return err
			}
			done[tok] = res
			a.cfg.Metrics.onLeak(res.Outcome)
		}
		out[i] = leakResult{Kind: res.Kind, Outcome: res.Outcome, ID: res.ID}
		if res.Outcome != tokens.LeakMalformed && !strings.Contains(tok, ".") {
			out[i].Hint = tokenfmt.Hint(tok)
		}
	}
	if !detailed {
		return writeJSON(w, http.StatusAccepted, map[string]int{"received": len(req.Tokens)})
	}
	return writeJSON(w, http.StatusOK, map[string][]leakResult{"results": out})
}

// reportLeak reports one token to whichever part of the server issued it.
func (a *API) reportLeak(ctx context.Context, tok, source string, by tokens.Actor) (tokens.LeakResult, error) {
	if a.cfg.OAuth != nil {
		return a.cfg.OAuth.ReportLeak(ctx, tok, source, by)
	}
	return a.tokens.ReportLeak(ctx, tok, source, by)
}

// validSource checks a report's source: where the tokens were found, such
// as a URL. It is free text for the audit log, so it is bounded and holds
// no control characters.
func validSource(s string) error {
	if len(s) > MaxLeakSourceBytes || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return errorf(http.StatusBadRequest, "invalid_request",
			"source must be at most %d bytes of UTF-8 text without control characters", MaxLeakSourceBytes)
	}
	return nil
}
