package main

// The admin client commands: "jeton api …", "jeton token …" and
// "jeton audit list …". They talk to a running server's admin API
// (docs/admin-api.md) through internal/client.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetonhq/jeton/internal/client"
)

// defaultAdminServer is the server the client commands call when neither
// --server nor JETON_SERVER is set.
const defaultAdminServer = "http://127.0.0.1:8080"

// adminHTTPTimeout bounds each admin API call.
const adminHTTPTimeout = 30 * time.Second

// runAPI runs "jeton api SUBCOMMAND …"; args are the arguments after "api".
func runAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `usage: jeton api <command> [flags]

commands:
  create --name N --identifier I --scopes a,b [--key-prefix P] [--default-ttl 1h] [--max-ttl 720h]
  list
  get ID
  update ID [--name N] [--add-scopes a,b] [--default-ttl D] [--max-ttl D]
  delete ID [--force]

every command accepts --server URL, --token T and --json`
	return dispatch(ctx, "api", usage, map[string]cliFunc{
		"create": apiCreateCmd,
		"list":   apiListCmd,
		"get":    apiGetCmd,
		"update": apiUpdateCmd,
		"delete": apiDeleteCmd,
	}, args, stdout, stderr)
}

// runToken runs "jeton token SUBCOMMAND …"; args are the arguments after
// "token".
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `usage: jeton token <command> [flags]

commands:
  create --api A [--name N] [--subject S] [--scopes a,b] [--expires-in 720h] [--metadata JSON]
         [--allowed-cidrs c1,c2] [--rate-limit 100/1m] [--quota 1000] [--quota-refill 1000/daily]
  list [--api A] [--subject S] [--limit N] [--cursor C]
  get ID
  update ID [--name N] [--scopes a,b] [--metadata JSON] [--allowed-cidrs c1,c2]
            [--rate-limit 100/1m|none] [--quota 1000|none] [--quota-refill 1000/daily]
  revoke ID [--reason R]
  rotate ID [--grace 24h]
  usage ID [--from RFC3339] [--to RFC3339]
  verify TOKEN|- [--api A] [--scopes a,b]   ("-" reads the token from standard input)

every command accepts --server URL, --token T and --json`
	return dispatch(ctx, "token", usage, map[string]cliFunc{
		"create": tokenCreateCmd,
		"list":   tokenListCmd,
		"get":    tokenGetCmd,
		"update": tokenUpdateCmd,
		"revoke": tokenRevokeCmd,
		"rotate": tokenRotateCmd,
		"usage":  tokenUsageCmd,
		"verify": tokenVerifyCmd,
	}, args, stdout, stderr)
}

// cliFunc is one client subcommand: it parses args and writes its output.
type cliFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// dispatch runs the subcommand of group named by args[0], or prints usage.
func dispatch(ctx context.Context, group, usage string, cmds map[string]cliFunc, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (strings.HasPrefix(args[0], "-") && !isHelpArg(args[0])) {
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("%s: missing command", group)
	}
	if cmd, ok := cmds[args[0]]; ok {
		return cmd(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, usage)
	if isHelpArg(args[0]) {
		return flag.ErrHelp
	}
	return fmt.Errorf("%s: unknown command %q", group, args[0])
}

// runAuditList runs "jeton audit list …"; args are the arguments after
// "list".
func runAuditList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("audit list", stderr)
	var cf clientFlags
	cf.register(fs)
	action := fs.String("action", "", "only events with this `action`")
	actor := fs.String("actor", "", "only events by this `actor`")
	target := fs.String("target", "", "only events about this `target`")
	var from, to timeFlag
	fs.Var(&from, "from", "only events at or after this RFC 3339 `time`")
	fs.Var(&to, "to", "only events before this RFC 3339 `time`")
	limit := fs.Int("limit", 0, "at most `N` events (server default when 0)")
	cursor := fs.Int64("cursor", 0, "continue from this `cursor` (the next_cursor of the previous page)")
	if _, err := parseCLIArgs(fs, args, 0, ""); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	page, err := c.ListAudit(ctx, client.AuditFilter{
		Action: *action, Actor: *actor, Target: *target,
		From: from.t, To: to.t, Cursor: *cursor, Limit: *limit,
	})
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, page.Raw)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tREMOTE ADDR")
	for _, e := range page.Events {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, fmtTime(e.Time), orDash(e.Actor),
			orDash(e.Action), orDash(e.Target), orDash(e.RemoteAddr))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextCursor != 0 {
		fmt.Fprintf(stderr, "more events: --cursor %d\n", page.NextCursor)
	}
	return nil
}

func apiCreateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("api create", stderr)
	var cf clientFlags
	cf.register(fs)
	name := fs.String("name", "", "display `name` (required)")
	identifier := fs.String("identifier", "", "unique `identifier`, such as a URL (required)")
	var scopes listFlag
	fs.Var(&scopes, "scopes", "comma-separated `scopes` the API defines (required)")
	prefix := fs.String("key-prefix", "", "`prefix` of the API's tokens")
	var defTTL, maxTTL secondsFlag
	fs.Var(&defTTL, "default-ttl", "default token lifetime, such as 720h (none when unset)")
	fs.Var(&maxTTL, "max-ttl", "longest token lifetime allowed (none when unset)")
	if _, err := parseCLIArgs(fs, args, 0, ""); err != nil {
		return err
	}
	switch {
	case *name == "":
		return errors.New("api create: --name is required")
	case *identifier == "":
		return errors.New("api create: --identifier is required")
	case !scopes.set:
		return errors.New("api create: --scopes is required")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	a, err := c.CreateAPI(ctx, client.CreateAPIRequest{
		Name: *name, Identifier: *identifier, Scopes: scopes.v, KeyPrefix: *prefix,
		DefaultTTL: defTTL.secs, MaxTTL: maxTTL.secs,
	})
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, a.Raw)
	}
	fmt.Fprintf(stdout, "Created API %s.\n\n", a.ID)
	return printAPI(stdout, a)
}

func apiListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("api list", stderr)
	var cf clientFlags
	cf.register(fs)
	if _, err := parseCLIArgs(fs, args, 0, ""); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	l, err := c.ListAPIs(ctx)
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, l.Raw)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "ID\tNAME\tIDENTIFIER\tSCOPES\tPREFIX\tDEFAULT TTL\tMAX TTL")
	for _, a := range l.APIs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, orDash(a.Name), orDash(a.Identifier),
			fmtList(a.Scopes), orDash(a.KeyPrefix), fmtTTL(a.DefaultTTL), fmtTTL(a.MaxTTL))
	}
	return tw.Flush()
}

func apiGetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("api get", stderr)
	var cf clientFlags
	cf.register(fs)
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	a, err := c.GetAPI(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, a.Raw)
	}
	return printAPI(stdout, a)
}

func apiUpdateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("api update", stderr)
	var cf clientFlags
	cf.register(fs)
	name := fs.String("name", "", "new display `name`")
	var addScopes listFlag
	fs.Var(&addScopes, "add-scopes", "comma-separated `scopes` to add")
	var defTTL, maxTTL secondsFlag
	fs.Var(&defTTL, "default-ttl", "new default token lifetime (0s for none)")
	fs.Var(&maxTTL, "max-ttl", "new longest token lifetime (0s for none)")
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	var req client.UpdateAPIRequest
	if flagWasSet(fs, "name") {
		req.Name = name
	}
	req.AddScopes = addScopes.v
	if defTTL.set {
		req.DefaultTTL = &defTTL.secs
	}
	if maxTTL.set {
		req.MaxTTL = &maxTTL.secs
	}
	if req.Name == nil && len(req.AddScopes) == 0 && req.DefaultTTL == nil && req.MaxTTL == nil {
		return errors.New("api update: nothing to change (use --name, --add-scopes, --default-ttl or --max-ttl)")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	a, err := c.UpdateAPI(ctx, pos[0], req)
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, a.Raw)
	}
	fmt.Fprintf(stdout, "Updated API %s.\n\n", a.ID)
	return printAPI(stdout, a)
}

func apiDeleteCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("api delete", stderr)
	var cf clientFlags
	cf.register(fs)
	force := fs.Bool("force", false, "delete even if the API has live tokens")
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if err := c.DeleteAPI(ctx, pos[0], *force); err != nil {
		return err
	}
	if cf.json {
		// The server answers 204 with no body; print an empty object so
		// that scripts always get JSON.
		_, err := fmt.Fprintln(stdout, "{}")
		return err
	}
	_, err = fmt.Fprintf(stdout, "Deleted API %s.\n", pos[0])
	return err
}

// tokenFlags are the optional token settings shared by "token create" and
// "token update".
type tokenFlags struct {
	name     string
	subject  string
	scopes   listFlag
	metadata string
	cidrs    listFlag
	rate     rateLimitFlag
	quota    quotaFlag
	refill   refillFlag
}

func (t *tokenFlags) register(fs *flag.FlagSet, create bool) {
	fs.StringVar(&t.name, "name", "", "display `name`")
	if create {
		fs.StringVar(&t.subject, "subject", "", "`subject` (user or service) the token acts for")
	}
	fs.Var(&t.scopes, "scopes", "comma-separated `scopes` granted")
	fs.StringVar(&t.metadata, "metadata", "", "`JSON` object returned by verify")
	fs.Var(&t.cidrs, "allowed-cidrs", "comma-separated client `networks`, such as 10.0.0.0/8")
	none := ""
	if !create {
		none = `, or "none" to remove it`
	}
	fs.Var(&t.rate, "rate-limit", "`LIMIT/WINDOW`, such as 100/1m"+none)
	fs.Var(&t.quota, "quota", "remaining `uses`"+none)
	fs.Var(&t.refill, "quota-refill", "`AMOUNT/daily` or AMOUNT/monthly quota refill (needs --quota)")
}

// metadataJSON checks --metadata and returns it as raw JSON.
func (t *tokenFlags) metadataJSON() (json.RawMessage, error) {
	m := []byte(strings.TrimSpace(t.metadata))
	if !json.Valid(m) || len(m) == 0 || m[0] != '{' {
		return nil, errors.New("--metadata must be a JSON object")
	}
	return m, nil
}

// quotaValue builds the quota from --quota and --quota-refill.
func (t *tokenFlags) quotaValue() (client.Quota, error) {
	if t.refill.set && (!t.quota.set || t.quota.clear) {
		return client.Quota{}, errors.New("--quota-refill needs --quota")
	}
	q := client.Quota{Remaining: t.quota.n}
	if t.refill.set {
		r := t.refill.v
		q.Refill = &r
	}
	return q, nil
}

func tokenCreateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token create", stderr)
	var cf clientFlags
	cf.register(fs)
	api := fs.String("api", "", "id, name or identifier of the `API` (required)")
	var expiresIn secondsFlag
	fs.Var(&expiresIn, "expires-in", "lifetime, such as 720h (the API's default when unset)")
	var tf tokenFlags
	tf.register(fs, true)
	if _, err := parseCLIArgs(fs, args, 0, ""); err != nil {
		return err
	}
	if *api == "" {
		return errors.New("token create: --api is required")
	}
	req := client.CreateTokenRequest{
		API: *api, Name: tf.name, Subject: tf.subject, Scopes: tf.scopes.v,
		ExpiresIn: expiresIn.secs, AllowedCIDRs: tf.cidrs.v,
	}
	if expiresIn.set && expiresIn.secs == 0 {
		return errors.New("token create: --expires-in must be positive")
	}
	if tf.metadata != "" {
		m, err := tf.metadataJSON()
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		req.Metadata = m
	}
	if tf.rate.clear || tf.quota.clear {
		return errors.New(`token create: "none" is only meaningful for token update`)
	}
	if tf.rate.set {
		r := tf.rate.v
		req.RateLimit = &r
	}
	if tf.quota.set || tf.refill.set {
		q, err := tf.quotaValue()
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		req.Quota = &q
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	t, err := c.CreateToken(ctx, req)
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, t.Raw)
	}
	return printSecret(stdout, "Created token", t)
}

func tokenListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token list", stderr)
	var cf clientFlags
	cf.register(fs)
	api := fs.String("api", "", "only tokens of this `API`")
	subject := fs.String("subject", "", "only tokens of this `subject`")
	limit := fs.Int("limit", 0, "at most `N` tokens (server default when 0)")
	cursor := fs.String("cursor", "", "continue from this `cursor` (the next_cursor of the previous page)")
	if _, err := parseCLIArgs(fs, args, 0, ""); err != nil {
		return err
	}
	if *limit < 0 {
		return errors.New("token list: --limit must not be negative")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	l, err := c.ListTokens(ctx, client.TokenFilter{API: *api, Subject: *subject, Cursor: *cursor, Limit: *limit})
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, l.Raw)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "ID\tNAME\tSUBJECT\tSCOPES\tHINT\tEXPIRES\tLAST USED")
	for _, t := range l.Tokens {
		expires := fmtTimePtr(t.ExpiresAt, "never")
		if t.RevokedAt != nil {
			expires = "revoked " + fmtTime(*t.RevokedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, orDash(t.Name), orDash(t.Subject),
			fmtList(t.Scopes), orDash(t.Hint), expires, fmtTimePtr(t.LastUsedAt, "never"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if l.NextCursor != "" {
		fmt.Fprintf(stderr, "more tokens: --cursor %s\n", l.NextCursor)
	}
	return nil
}

func tokenGetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token get", stderr)
	var cf clientFlags
	cf.register(fs)
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	t, err := c.GetToken(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, t.Raw)
	}
	return printToken(stdout, t)
}

func tokenUpdateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token update", stderr)
	var cf clientFlags
	cf.register(fs)
	var tf tokenFlags
	tf.register(fs, false)
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	var req client.UpdateTokenRequest
	changed := false
	if flagWasSet(fs, "name") {
		req.Name = &tf.name
		changed = true
	}
	if tf.scopes.set {
		req.Scopes = tf.scopes.v
		changed = true
	}
	if flagWasSet(fs, "metadata") {
		m, err := tf.metadataJSON()
		if err != nil {
			return fmt.Errorf("token update: %w", err)
		}
		req.Metadata = m
		changed = true
	}
	if tf.cidrs.set {
		req.AllowedCIDRs = tf.cidrs.v
		changed = true
	}
	switch {
	case tf.rate.clear:
		req.RateLimit = client.Null[client.RateLimit]()
		changed = true
	case tf.rate.set:
		req.RateLimit = client.Set(tf.rate.v)
		changed = true
	}
	switch {
	case tf.quota.clear && !tf.refill.set:
		req.Quota = client.Null[client.Quota]()
		changed = true
	case tf.quota.set || tf.refill.set:
		q, err := tf.quotaValue()
		if err != nil {
			return fmt.Errorf("token update: %w", err)
		}
		req.Quota = client.Set(q)
		changed = true
	}
	if !changed {
		return errors.New("token update: nothing to change")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	t, err := c.UpdateToken(ctx, pos[0], req)
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, t.Raw)
	}
	fmt.Fprintf(stdout, "Updated token %s.\n\n", t.ID)
	return printToken(stdout, t)
}

func tokenRevokeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token revoke", stderr)
	var cf clientFlags
	cf.register(fs)
	reason := fs.String("reason", "", "`reason` recorded with the revocation")
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	t, err := c.RevokeToken(ctx, pos[0], *reason)
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, t.Raw)
	}
	fmt.Fprintf(stdout, "Revoked token %s", t.ID)
	if t.RevokedAt != nil {
		fmt.Fprintf(stdout, " at %s", fmtTime(*t.RevokedAt))
	}
	if t.RevokeReason != "" {
		fmt.Fprintf(stdout, " (reason: %s)", t.RevokeReason)
	}
	_, err = fmt.Fprintln(stdout, ".")
	return err
}

func tokenRotateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token rotate", stderr)
	var cf clientFlags
	cf.register(fs)
	var grace secondsFlag
	fs.Var(&grace, "grace", "how long the old secret keeps working, such as 24h (at most 168h; none when unset)")
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	t, err := c.RotateToken(ctx, pos[0], time.Duration(grace.secs)*time.Second)
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, t.Raw)
	}
	if err := printSecret(stdout, "Rotated token", t); err != nil {
		return err
	}
	if grace.secs > 0 {
		fmt.Fprintf(stdout, "The old secret keeps working for %s.\n", fmtTTL(grace.secs))
	} else {
		fmt.Fprintln(stdout, "The old secret no longer works.")
	}
	return nil
}

func tokenUsageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token usage", stderr)
	var cf clientFlags
	cf.register(fs)
	var from, to timeFlag
	fs.Var(&from, "from", "start, an RFC 3339 `time` (default 24 hours ago)")
	fs.Var(&to, "to", "end, an RFC 3339 `time` (default now)")
	pos, err := parseCLIArgs(fs, args, 1, "ID")
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	u, err := c.Usage(ctx, pos[0], from.t, to.t)
	if err != nil {
		return err
	}
	if cf.json {
		return printRawJSON(stdout, u.Raw)
	}
	fmt.Fprintf(stdout, "Token %s: %d uses in total, last used %s", u.TokenID, u.TotalUses, fmtTimePtr(u.LastUsedAt, "never"))
	if u.LastUsedIP != "" {
		fmt.Fprintf(stdout, " from %s", u.LastUsedIP)
	}
	fmt.Fprintln(stdout, ".")
	if len(u.Hours) == 0 {
		return nil
	}
	fmt.Fprintln(stdout)
	tw := newTable(stdout)
	fmt.Fprintln(tw, "HOUR\tALLOWED\tDENIED")
	for _, h := range u.Hours {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", fmtTime(h.Hour), h.Allowed, h.Denied)
	}
	return tw.Flush()
}

// errTokenNotValid is returned by "token verify" for a token the server
// does not accept, so that the command exits non-zero.
var errTokenNotValid = errors.New("token not valid")

// verifyStdin is where "token verify -" reads the token; tests replace it.
var verifyStdin io.Reader = os.Stdin

func tokenVerifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet("token verify", stderr)
	var cf clientFlags
	cf.register(fs)
	api := fs.String("api", "", "require the token to belong to this `API`")
	var scopes listFlag
	fs.Var(&scopes, "scopes", "comma-separated `scopes` the token must grant")
	pos, err := parseCLIArgs(fs, args, 1, "TOKEN")
	if err != nil {
		return err
	}
	secret := pos[0]
	if secret == "-" {
		// Reading from standard input keeps the secret out of the shell
		// history and the process list.
		b, err := io.ReadAll(io.LimitReader(verifyStdin, 4096))
		if err != nil {
			return fmt.Errorf("token verify: read standard input: %w", err)
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return errors.New("token verify: no token on standard input")
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	r, err := c.Verify(ctx, secret, *api, scopes.v)
	if err != nil {
		return err
	}
	if cf.json {
		if err := printRawJSON(stdout, r.Raw); err != nil {
			return err
		}
	} else {
		printVerifyResult(stdout, r)
	}
	if !r.Valid {
		return fmt.Errorf("%w: %s", errTokenNotValid, r.Code)
	}
	return nil
}

func printVerifyResult(w io.Writer, r *client.VerifyResult) {
	tw := newTable(w)
	valid := "no"
	if r.Valid {
		valid = "yes"
	}
	fmt.Fprintf(tw, "Valid:\t%s\n", valid)
	fmt.Fprintf(tw, "Code:\t%s\n", r.Code)
	if t := r.Token; t != nil {
		fmt.Fprintf(tw, "Token:\t%s\n", t.ID)
		fmt.Fprintf(tw, "API:\t%s\n", orDash(t.API))
		fmt.Fprintf(tw, "Subject:\t%s\n", orDash(t.Subject))
		fmt.Fprintf(tw, "Scopes:\t%s\n", fmtList(t.Scopes))
		fmt.Fprintf(tw, "Expires:\t%s\n", fmtTimePtr(t.ExpiresAt, "never"))
		if len(t.Metadata) > 0 && string(t.Metadata) != "null" {
			fmt.Fprintf(tw, "Metadata:\t%s\n", compactJSON(t.Metadata))
		}
	}
	if rl := r.RateLimit; rl != nil {
		fmt.Fprintf(tw, "Rate limit:\t%d of %d remaining\n", rl.Remaining, rl.Limit)
	}
	if q := r.Quota; q != nil {
		fmt.Fprintf(tw, "Quota:\t%d remaining\n", q.Remaining)
	}
	tw.Flush()
}

// printSecret prints a newly issued secret, and that it is shown only once.
func printSecret(w io.Writer, what string, t *client.Token) error {
	fmt.Fprintf(w, "%s %s.\n\n", what, t.ID)
	fmt.Fprintf(w, "    %s\n\n", t.Secret)
	fmt.Fprintln(w, "Copy this token now: it will not be shown again.")
	fmt.Fprintln(w)
	return printToken(w, t)
}

func printToken(w io.Writer, t *client.Token) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "ID:\t%s\n", t.ID)
	fmt.Fprintf(tw, "API:\t%s\n", orDash(t.API))
	fmt.Fprintf(tw, "Name:\t%s\n", orDash(t.Name))
	fmt.Fprintf(tw, "Subject:\t%s\n", orDash(t.Subject))
	fmt.Fprintf(tw, "Scopes:\t%s\n", fmtList(t.Scopes))
	fmt.Fprintf(tw, "Hint:\t%s\n", orDash(t.Hint))
	if len(t.Metadata) > 0 && string(t.Metadata) != "null" && string(t.Metadata) != "{}" {
		fmt.Fprintf(tw, "Metadata:\t%s\n", compactJSON(t.Metadata))
	}
	fmt.Fprintf(tw, "Allowed CIDRs:\t%s\n", fmtList(t.AllowedCIDRs))
	rate := "none"
	if rl := t.RateLimit; rl != nil {
		rate = fmt.Sprintf("%d per %s", rl.Limit, fmtTTL(rl.Window))
	}
	fmt.Fprintf(tw, "Rate limit:\t%s\n", rate)
	quota := "none"
	if q := t.Quota; q != nil {
		quota = fmt.Sprintf("%d remaining", q.Remaining)
		if q.Refill != nil {
			quota += fmt.Sprintf(", refilled to %d %s", q.Refill.Amount, q.Refill.Interval)
		}
	}
	fmt.Fprintf(tw, "Quota:\t%s\n", quota)
	fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(t.CreatedAt))
	fmt.Fprintf(tw, "Expires:\t%s\n", fmtTimePtr(t.ExpiresAt, "never"))
	if t.RevokedAt != nil {
		fmt.Fprintf(tw, "Revoked:\t%s\n", fmtTime(*t.RevokedAt))
		fmt.Fprintf(tw, "Revoke reason:\t%s\n", orDash(t.RevokeReason))
	}
	if t.RotatedAt != nil {
		fmt.Fprintf(tw, "Rotated:\t%s\n", fmtTime(*t.RotatedAt))
	}
	last := fmtTimePtr(t.LastUsedAt, "never")
	if t.LastUsedIP != "" {
		last += " from " + t.LastUsedIP
	}
	fmt.Fprintf(tw, "Last used:\t%s\n", last)
	fmt.Fprintf(tw, "Uses:\t%d\n", t.UseCount)
	return tw.Flush()
}

func printAPI(w io.Writer, a *client.API) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "ID:\t%s\n", a.ID)
	fmt.Fprintf(tw, "Name:\t%s\n", orDash(a.Name))
	fmt.Fprintf(tw, "Identifier:\t%s\n", orDash(a.Identifier))
	fmt.Fprintf(tw, "Scopes:\t%s\n", fmtList(a.Scopes))
	fmt.Fprintf(tw, "Key prefix:\t%s\n", orDash(a.KeyPrefix))
	fmt.Fprintf(tw, "Default TTL:\t%s\n", fmtTTL(a.DefaultTTL))
	fmt.Fprintf(tw, "Max TTL:\t%s\n", fmtTTL(a.MaxTTL))
	if a.Builtin {
		fmt.Fprintf(tw, "Built-in:\tyes\n")
	}
	fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(a.CreatedAt))
	fmt.Fprintf(tw, "Updated:\t%s\n", fmtTime(a.UpdatedAt))
	return tw.Flush()
}

// clientFlags are the flags every client command accepts.
type clientFlags struct {
	server string
	token  string
	json   bool
}

func (cf *clientFlags) register(fs *flag.FlagSet) {
	server := os.Getenv("JETON_SERVER")
	if server == "" {
		server = defaultAdminServer
	}
	fs.StringVar(&cf.server, "server", server, "admin API base `URL`; $JETON_SERVER when set")
	// The default stays empty so that usage messages never print the
	// token; client() falls back to $JETON_TOKEN.
	fs.StringVar(&cf.token, "token", "", "admin `token` (default $JETON_TOKEN)")
	fs.BoolVar(&cf.json, "json", false, "print the server's JSON answer")
}

// client returns the admin API client, or an error when no admin token is
// configured.
func (cf *clientFlags) client() (*client.Client, error) {
	tok := cf.token
	if tok == "" {
		tok = os.Getenv("JETON_TOKEN")
	}
	if tok == "" {
		return nil, errors.New("no admin token: set JETON_TOKEN or pass --token")
	}
	if cf.server == "" {
		return nil, errors.New("no server: set JETON_SERVER or pass --server")
	}
	return &client.Client{
		BaseURL: cf.server,
		Token:   tok,
		HTTP:    &http.Client{Timeout: adminHTTPTimeout},
	}, nil
}

// isHelpArg reports whether arg asks for usage.
func isHelpArg(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

func newCLIFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("jeton "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseCLIArgs parses args into fs, allowing flags before, between and
// after positional arguments ("token revoke tok_1 --reason leaked"). After
// "--" every argument is positional. It returns the positional arguments,
// and an error unless there are exactly want of them (named by names, as
// in "ID").
func parseCLIArgs(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) != want {
		fs.Usage()
		if want == 0 {
			return nil, fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[0])
		}
		return nil, fmt.Errorf("%s: want %s, got %d arguments", fs.Name(), names, len(pos))
	}
	for _, p := range pos {
		if strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("%s: %s must not be empty", fs.Name(), names)
		}
	}
	return pos, nil
}

// flagWasSet reports whether the flag name was given on the command line.
func flagWasSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// listFlag is a comma-separated list. An empty value is an empty list.
type listFlag struct {
	v   []string
	set bool
}

func (l *listFlag) String() string { return strings.Join(l.v, ",") }

func (l *listFlag) Set(s string) error {
	l.v, l.set = []string{}, true
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			l.v = append(l.v, item)
		}
	}
	return nil
}

// secondsFlag is a Go duration ("720h") sent to the API as whole seconds.
type secondsFlag struct {
	secs int64
	set  bool
}

func (d *secondsFlag) String() string {
	if !d.set {
		return ""
	}
	return fmtTTL(d.secs)
}

func (d *secondsFlag) Set(s string) error {
	secs, err := parseSeconds(s)
	if err != nil {
		return err
	}
	d.secs, d.set = secs, true
	return nil
}

// parseSeconds parses a non-negative Go duration of whole seconds.
func parseSeconds(s string) (int64, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration such as 90s, 1h or 720h")
	}
	if d < 0 {
		return 0, errors.New("duration must not be negative")
	}
	if d%time.Second != 0 {
		return 0, errors.New("duration must be whole seconds")
	}
	return int64(d / time.Second), nil
}

// rateLimitFlag is "LIMIT/WINDOW" ("100/1m", "10/s"), or "none".
type rateLimitFlag struct {
	v     client.RateLimit
	set   bool
	clear bool
}

func (r *rateLimitFlag) String() string {
	switch {
	case r.clear:
		return "none"
	case r.set:
		return fmt.Sprintf("%d/%s", r.v.Limit, fmtTTL(r.v.Window))
	}
	return ""
}

func (r *rateLimitFlag) Set(s string) error {
	if s == "none" {
		*r = rateLimitFlag{clear: true}
		return nil
	}
	const want = "want LIMIT/WINDOW, such as 100/1m or 10/s"
	ls, ws, ok := strings.Cut(s, "/")
	if !ok {
		return errors.New(want)
	}
	limit, err := strconv.ParseInt(ls, 10, 64)
	if err != nil || limit <= 0 {
		return errors.New(want + " (LIMIT a positive integer)")
	}
	if ws != "" && (ws[0] < '0' || ws[0] > '9') {
		ws = "1" + ws // "10/s" means 10 per second
	}
	window, err := parseSeconds(ws)
	if err != nil || window == 0 {
		return errors.New(want + " (WINDOW a positive duration of whole seconds)")
	}
	*r = rateLimitFlag{v: client.RateLimit{Limit: limit, Window: window}, set: true}
	return nil
}

// quotaFlag is a non-negative number of uses, or "none".
type quotaFlag struct {
	n     int64
	set   bool
	clear bool
}

func (q *quotaFlag) String() string {
	switch {
	case q.clear:
		return "none"
	case q.set:
		return strconv.FormatInt(q.n, 10)
	}
	return ""
}

func (q *quotaFlag) Set(s string) error {
	if s == "none" {
		*q = quotaFlag{set: true, clear: true}
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New(`want a non-negative number of uses, or "none"`)
	}
	*q = quotaFlag{n: n, set: true}
	return nil
}

// refillFlag is "AMOUNT/daily" or "AMOUNT/monthly".
type refillFlag struct {
	v   client.Refill
	set bool
}

func (r *refillFlag) String() string {
	if !r.set {
		return ""
	}
	return fmt.Sprintf("%d/%s", r.v.Amount, r.v.Interval)
}

func (r *refillFlag) Set(s string) error {
	const want = "want AMOUNT/daily or AMOUNT/monthly, such as 1000/daily"
	as, interval, ok := strings.Cut(s, "/")
	if !ok || (interval != "daily" && interval != "monthly") {
		return errors.New(want)
	}
	amount, err := strconv.ParseInt(as, 10, 64)
	if err != nil || amount <= 0 {
		return errors.New(want + " (AMOUNT a positive integer)")
	}
	*r = refillFlag{v: client.Refill{Amount: amount, Interval: interval}, set: true}
	return nil
}

// timeFlag is an RFC 3339 time.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return errors.New("want an RFC 3339 time, such as 2026-01-02T15:04:05Z")
	}
	f.t = t
	return nil
}

// printRawJSON prints the server's answer, indented.
func printRawJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("indent json: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func compactJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtList(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ",")
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return fmtTime(*t)
}

// fmtTTL formats seconds as a short Go duration ("720h", "1h30m"), or
// "none" for 0.
func fmtTTL(secs int64) string {
	if secs == 0 {
		return "none"
	}
	s := (time.Duration(secs) * time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
