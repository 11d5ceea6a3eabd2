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
         [--scope-description SCOPE=TEXT]...
  list
  get ID
  update ID [--name N] [--add-scopes a,b] [--scope-description SCOPE=TEXT]... [--default-ttl D] [--max-ttl D]
  delete ID [--force]

--scope-description says in words what a scope allows, for the consent
pages: --scope-description 'repos:read=Read your repositories'. On update, an
empty TEXT removes the description.

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
	var f client.AuditFilter
	var from, to timeFlag
	return clientCommand{
		name: "audit list",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.Action, "action", "", "only events with this `action`")
			fs.StringVar(&f.Actor, "actor", "", "only events by this `actor`")
			fs.StringVar(&f.Target, "target", "", "only events about this `target`")
			fs.Var(&from, "from", "only events at or after this RFC 3339 `time`")
			fs.Var(&to, "to", "only events before this RFC 3339 `time`")
			fs.IntVar(&f.Limit, "limit", 0, "at most `N` events (server default when 0)")
			fs.Int64Var(&f.Cursor, "cursor", 0, "continue from this `cursor` (the next_cursor of the previous page)")
		},
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			f.From, f.To = from.t, to.t
			page, err := c.ListAudit(ctx, f)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: page.Raw, show: func() error {
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
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

// clientCommand is what every admin client subcommand shares: a flag set
// with --server, --token and --json, its positional arguments, a check of
// the input before the server is contacted, one call to the admin API, and
// either the server's raw JSON or a rendering for people.
type clientCommand struct {
	name     string // e.g. "token get", for errors and -h
	nargs    int    // positional arguments wanted
	argNames string // how errors name them, e.g. "ID"
	flags    func(fs *flag.FlagSet)
	// check validates flags and positionals; nothing is sent when it fails.
	check func(fs *flag.FlagSet, pos []string) error
	call  func(ctx context.Context, c *client.Client, pos []string) (answer, error)
}

// answer is a subcommand's result.
type answer struct {
	raw  json.RawMessage // printed, indented, with --json
	show func() error    // prints it for people otherwise
	err  error           // returned after printing (e.g. "token not valid")
}

func (cmd clientCommand) run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCLIFlagSet(cmd.name, stderr)
	var cf clientFlags
	cf.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseCLIArgs(fs, args, cmd.nargs, cmd.argNames)
	if err != nil {
		return err
	}
	if cmd.check != nil {
		if err := cmd.check(fs, pos); err != nil {
			return err
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	a, err := cmd.call(ctx, c, pos)
	if err != nil {
		return err
	}
	if cf.json {
		err = printRawJSON(stdout, a.raw)
	} else {
		err = a.show()
	}
	if err != nil {
		return err
	}
	return a.err
}

func apiCreateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var req client.CreateAPIRequest
	var scopes listFlag
	var descs describeFlag
	var defTTL, maxTTL secondsFlag
	return clientCommand{
		name: "api create",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&req.Name, "name", "", "display `name` (required)")
			fs.StringVar(&req.Identifier, "identifier", "", "unique `identifier`, such as a URL (required)")
			fs.Var(&scopes, "scopes", "comma-separated `scopes` the API defines (required)")
			fs.Var(&descs, "scope-description", "`SCOPE=TEXT`: what a scope allows, in words (repeatable)")
			fs.StringVar(&req.KeyPrefix, "key-prefix", "", "`prefix` of the API's tokens")
			fs.Var(&defTTL, "default-ttl", "default token lifetime, such as 720h (none when unset)")
			fs.Var(&maxTTL, "max-ttl", "longest token lifetime allowed (none when unset)")
		},
		check: func(*flag.FlagSet, []string) error {
			switch {
			case req.Name == "":
				return errors.New("api create: --name is required")
			case req.Identifier == "":
				return errors.New("api create: --identifier is required")
			case !scopes.set:
				return errors.New("api create: --scopes is required")
			}
			req.Scopes, req.DefaultTTL, req.MaxTTL = scopes.v, defTTL.secs, maxTTL.secs
			req.ScopeDescriptions = descs.m
			return nil
		},
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			a, err := c.CreateAPI(ctx, req)
			return apiAnswer(stdout, "Created", a), err
		},
	}.run(ctx, args, stdout, stderr)
}

// apiAnswer shows an API, after a "Created API …" style line when verb is set.
func apiAnswer(w io.Writer, verb string, a *client.API) answer {
	if a == nil {
		return answer{}
	}
	return answer{raw: a.Raw, show: func() error {
		if verb != "" {
			fmt.Fprintf(w, "%s API %s.\n\n", verb, a.ID)
		}
		return printAPI(w, a)
	}}
}

// tokenAnswer shows a token, after a "Updated token …" style line when verb is set.
func tokenAnswer(w io.Writer, verb string, t *client.Token) answer {
	if t == nil {
		return answer{}
	}
	return answer{raw: t.Raw, show: func() error {
		if verb != "" {
			fmt.Fprintf(w, "%s token %s.\n\n", verb, t.ID)
		}
		return printToken(w, t)
	}}
}

func apiListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "api list",
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			l, err := c.ListAPIs(ctx)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: l.Raw, show: func() error {
				tw := newTable(stdout)
				fmt.Fprintln(tw, "ID\tNAME\tIDENTIFIER\tSCOPES\tPREFIX\tDEFAULT TTL\tMAX TTL")
				for _, a := range l.APIs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, orDash(a.Name), orDash(a.Identifier),
						fmtList(a.Scopes), orDash(a.KeyPrefix), fmtTTL(a.DefaultTTL), fmtTTL(a.MaxTTL))
				}
				return tw.Flush()
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

func apiGetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "api get", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			a, err := c.GetAPI(ctx, pos[0])
			return apiAnswer(stdout, "", a), err
		},
	}.run(ctx, args, stdout, stderr)
}

func apiUpdateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var req client.UpdateAPIRequest
	var name string
	var addScopes listFlag
	var descs describeFlag
	var defTTL, maxTTL secondsFlag
	return clientCommand{
		name: "api update", nargs: 1, argNames: "ID",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&name, "name", "", "new display `name`")
			fs.Var(&addScopes, "add-scopes", "comma-separated `scopes` to add")
			fs.Var(&descs, "scope-description", "`SCOPE=TEXT`: what a scope allows, in words; empty TEXT removes it (repeatable)")
			fs.Var(&defTTL, "default-ttl", "new default token lifetime (0s for none)")
			fs.Var(&maxTTL, "max-ttl", "new longest token lifetime (0s for none)")
		},
		check: func(fs *flag.FlagSet, _ []string) error {
			if flagWasSet(fs, "name") {
				req.Name = &name
			}
			req.AddScopes, req.ScopeDescriptions = addScopes.v, descs.m
			if defTTL.set {
				req.DefaultTTL = &defTTL.secs
			}
			if maxTTL.set {
				req.MaxTTL = &maxTTL.secs
			}
			if req.Name == nil && len(req.AddScopes) == 0 && len(req.ScopeDescriptions) == 0 && req.DefaultTTL == nil && req.MaxTTL == nil {
				return errors.New("api update: nothing to change (use --name, --add-scopes, --scope-description, --default-ttl or --max-ttl)")
			}
			return nil
		},
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			a, err := c.UpdateAPI(ctx, pos[0], req)
			return apiAnswer(stdout, "Updated", a), err
		},
	}.run(ctx, args, stdout, stderr)
}

func apiDeleteCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var force bool
	return clientCommand{
		name: "api delete", nargs: 1, argNames: "ID",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&force, "force", false, "delete even if the API has live tokens")
		},
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			if err := c.DeleteAPI(ctx, pos[0], force); err != nil {
				return answer{}, err
			}
			// The server answers 204 with no body; --json prints an empty
			// object so that scripts always get JSON.
			return answer{raw: json.RawMessage("{}"), show: func() error {
				_, err := fmt.Fprintf(stdout, "Deleted API %s.\n", pos[0])
				return err
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
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
	var req client.CreateTokenRequest
	var expiresIn secondsFlag
	var tf tokenFlags
	return clientCommand{
		name: "token create",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&req.API, "api", "", "id, name or identifier of the `API` (required)")
			fs.Var(&expiresIn, "expires-in", "lifetime, such as 720h (the API's default when unset)")
			tf.register(fs, true)
		},
		check: func(*flag.FlagSet, []string) error {
			if req.API == "" {
				return errors.New("token create: --api is required")
			}
			req.Name, req.Subject, req.Scopes = tf.name, tf.subject, tf.scopes.v
			req.ExpiresIn, req.AllowedCIDRs = expiresIn.secs, tf.cidrs.v
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
			return nil
		},
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			t, err := c.CreateToken(ctx, req)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: t.Raw, show: func() error { return printSecret(stdout, "Created token", t) }}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

func tokenListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f client.TokenFilter
	return clientCommand{
		name: "token list",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.API, "api", "", "only tokens of this `API`")
			fs.StringVar(&f.Subject, "subject", "", "only tokens of this `subject`")
			fs.IntVar(&f.Limit, "limit", 0, "at most `N` tokens (server default when 0)")
			fs.StringVar(&f.Cursor, "cursor", "", "continue from this `cursor` (the next_cursor of the previous page)")
		},
		check: func(*flag.FlagSet, []string) error {
			if f.Limit < 0 {
				return errors.New("token list: --limit must not be negative")
			}
			return nil
		},
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			l, err := c.ListTokens(ctx, f)
			if err != nil {
				return answer{}, err
			}
			return pageAnswer(l.Raw, stdout, stderr, "tokens", "ID\tNAME\tSUBJECT\tSCOPES\tHINT\tEXPIRES\tLAST USED", l.Tokens,
				func(t client.Token) []string {
					expires := fmtTimePtr(t.ExpiresAt, "never")
					if t.RevokedAt != nil {
						expires = "revoked " + fmtTime(*t.RevokedAt)
					}
					return []string{t.ID, orDash(t.Name), orDash(t.Subject), fmtList(t.Scopes), orDash(t.Hint), expires, fmtTimePtr(t.LastUsedAt, "never")}
				}, l.NextCursor), nil
		},
	}.run(ctx, args, stdout, stderr)
}

func tokenGetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "token get", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			t, err := c.GetToken(ctx, pos[0])
			return tokenAnswer(stdout, "", t), err
		},
	}.run(ctx, args, stdout, stderr)
}

func tokenUpdateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var req client.UpdateTokenRequest
	var tf tokenFlags
	return clientCommand{
		name: "token update", nargs: 1, argNames: "ID",
		flags: func(fs *flag.FlagSet) { tf.register(fs, false) },
		check: func(fs *flag.FlagSet, _ []string) error {
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
			return nil
		},
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			t, err := c.UpdateToken(ctx, pos[0], req)
			return tokenAnswer(stdout, "Updated", t), err
		},
	}.run(ctx, args, stdout, stderr)
}

func tokenRevokeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var reason string
	return clientCommand{
		name: "token revoke", nargs: 1, argNames: "ID",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&reason, "reason", "", "`reason` recorded with the revocation")
		},
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			t, err := c.RevokeToken(ctx, pos[0], reason)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: t.Raw, show: func() error {
				fmt.Fprintf(stdout, "Revoked token %s", t.ID)
				if t.RevokedAt != nil {
					fmt.Fprintf(stdout, " at %s", fmtTime(*t.RevokedAt))
				}
				if t.RevokeReason != "" {
					fmt.Fprintf(stdout, " (reason: %s)", t.RevokeReason)
				}
				_, err := fmt.Fprintln(stdout, ".")
				return err
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

func tokenRotateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var grace secondsFlag
	return clientCommand{
		name: "token rotate", nargs: 1, argNames: "ID",
		flags: grace.registerGrace,
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			t, err := c.RotateToken(ctx, pos[0], time.Duration(grace.secs)*time.Second)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: t.Raw, show: func() error {
				if err := printSecret(stdout, "Rotated token", t); err != nil {
					return err
				}
				if grace.secs > 0 {
					fmt.Fprintf(stdout, "The old secret keeps working for %s.\n", fmtTTL(grace.secs))
				} else {
					fmt.Fprintln(stdout, "The old secret no longer works.")
				}
				return nil
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

func tokenUsageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var from, to timeFlag
	return clientCommand{
		name: "token usage", nargs: 1, argNames: "ID",
		flags: func(fs *flag.FlagSet) {
			fs.Var(&from, "from", "start, an RFC 3339 `time` (default 24 hours ago)")
			fs.Var(&to, "to", "end, an RFC 3339 `time` (default now)")
		},
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			u, err := c.Usage(ctx, pos[0], from.t, to.t)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: u.Raw, show: func() error {
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
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

// errTokenNotValid is returned by "token verify" for a token the server
// does not accept, so that the command exits non-zero.
var errTokenNotValid = errors.New("token not valid")

// verifyStdin is where "token verify -" reads the token; tests replace it.
var verifyStdin io.Reader = os.Stdin

func tokenVerifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var api, secret string
	var scopes listFlag
	return clientCommand{
		name: "token verify", nargs: 1, argNames: "TOKEN",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&api, "api", "", "require the token to belong to this `API`")
			fs.Var(&scopes, "scopes", "comma-separated `scopes` the token must grant")
		},
		check: func(_ *flag.FlagSet, pos []string) error {
			secret = pos[0]
			if secret != "-" {
				return nil
			}
			// Reading from standard input keeps the secret out of the shell
			// history and the process list.
			b, err := io.ReadAll(io.LimitReader(verifyStdin, 4096))
			if err != nil {
				return fmt.Errorf("token verify: read standard input: %w", err)
			}
			if secret = strings.TrimSpace(string(b)); secret == "" {
				return errors.New("token verify: no token on standard input")
			}
			return nil
		},
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			r, err := c.Verify(ctx, secret, api, scopes.v)
			if err != nil {
				return answer{}, err
			}
			a := answer{raw: r.Raw, show: func() error { printVerifyResult(stdout, r); return nil }}
			if !r.Valid {
				a.err = fmt.Errorf("%w: %s", errTokenNotValid, r.Code)
			}
			return a, nil
		},
	}.run(ctx, args, stdout, stderr)
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
	for _, sc := range a.Scopes {
		if d := a.ScopeDescriptions[sc]; d != "" {
			fmt.Fprintf(tw, "  %s:\t%s\n", sc, d)
		}
	}
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
	cf.registerServer(fs)
	fs.BoolVar(&cf.json, "json", false, "print the server's JSON answer")
}

// registerServer registers --server and --token only.
func (cf *clientFlags) registerServer(fs *flag.FlagSet) {
	server := os.Getenv("JETON_SERVER")
	if server == "" {
		server = defaultAdminServer
	}
	fs.StringVar(&cf.server, "server", server, "admin API base `URL`; $JETON_SERVER when set")
	// The default stays empty so that usage messages never print the
	// token; client() falls back to $JETON_TOKEN.
	fs.StringVar(&cf.token, "token", "", "admin `token` (default $JETON_TOKEN)")
}

// client returns the admin API client, or an error when no admin token is
// configured.
func (cf *clientFlags) client() (*client.Client, error) {
	c, err := cf.optionalTokenClient()
	if err != nil {
		return nil, err
	}
	if c.Token == "" {
		return nil, errors.New("no admin token: set JETON_TOKEN or pass --token")
	}
	return c, nil
}

// optionalTokenClient is client for the calls that need no admin token:
// without one configured, the client sends none.
func (cf *clientFlags) optionalTokenClient() (*client.Client, error) {
	tok := cf.token
	if tok == "" {
		tok = os.Getenv("JETON_TOKEN")
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
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
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

// parseInterspersed parses args into fs, allowing flags before, between
// and after positional arguments; after "--" every argument is positional.
// It returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
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

// describeFlag collects repeated --scope-description SCOPE=TEXT flags.
// TEXT may hold commas and '='; an empty TEXT removes a description (on
// update).
type describeFlag struct{ m map[string]string }

func (d *describeFlag) String() string { return "" }

func (d *describeFlag) Set(s string) error {
	scope, text, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(scope) == "" {
		return errors.New(`want SCOPE=TEXT, such as repos:read="Read your repositories"`)
	}
	if d.m == nil {
		d.m = map[string]string{}
	}
	scope = strings.TrimSpace(scope)
	if _, dup := d.m[scope]; dup {
		return fmt.Errorf("scope %s is described twice", scope)
	}
	d.m[scope] = strings.TrimSpace(text)
	return nil
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
// registerGrace registers f as --grace, the grace period of a secret
// rotation.
func (f *secondsFlag) registerGrace(fs *flag.FlagSet) {
	fs.Var(f, "grace", "how long the old secret keeps working, such as 24h (at most 168h; none when unset)")
}

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
