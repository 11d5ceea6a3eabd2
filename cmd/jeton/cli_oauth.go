package main

// The admin client commands of the OAuth entities: "jeton client …",
// "jeton user …" and "jeton key …". Like "jeton api" and "jeton token"
// they call a running server's admin API (docs/admin-api.md).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jetonhq/jeton/internal/client"
)

// runClient runs "jeton client SUBCOMMAND …"; args are the arguments after
// "client".
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `usage: jeton client <command> [flags]

commands:
  create --name N [--type confidential|public] [--grant-types g1,g2] [--redirect-uris u1,u2]
         [--post-logout-redirect-uris u1,u2] [--apis a,b] [--scopes a,b] [--token-format opaque|jwt] [--signing-alg ES256|RS256|EdDSA]
         [--access-token-ttl 1h] [--refresh-token-ttl 720h]
         [--auth-method client_secret_basic|client_secret_post|private_key_jwt|none]
         [--jwks JSON|@FILE] [--jwks-uri URL]
  list [--limit N] [--cursor C]
  get ID
  update ID [--name N] [--grant-types ..] [--redirect-uris ..] [--post-logout-redirect-uris ..]
            [--apis ..] [--scopes ..]
            [--token-format F] [--signing-alg A] [--access-token-ttl D] [--refresh-token-ttl D]
            [--jwks JSON|@FILE|none] [--jwks-uri URL] [--disable | --enable]
  delete ID
  rotate-secret ID [--grace 24h]

every command accepts --server URL, --token T and --json`
	return dispatch(ctx, "client", usage, map[string]cliFunc{
		"create":        clientCreateCmd,
		"list":          clientListCmd,
		"get":           clientGetCmd,
		"update":        clientUpdateCmd,
		"delete":        clientDeleteCmd,
		"rotate-secret": clientRotateSecretCmd,
	}, args, stdout, stderr)
}

// runUser runs "jeton user SUBCOMMAND …"; args are the arguments after
// "user".
func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `usage: jeton user <command> [flags]

commands:
  create --username U [--email E] (--password-stdin | --password P)
  list [--limit N] [--cursor C]
  get ID
  update ID [--email E] [--disable | --enable] [--password-stdin | --password P]
  delete ID
  end-sessions ID        sign the user out of every browser
  consents ID
  revoke-consent ID CLIENT_ID

--password-stdin reads the password from standard input, which keeps it out
of the shell history and the process list.
every command accepts --server URL, --token T and --json`
	return dispatch(ctx, "user", usage, map[string]cliFunc{
		"create":         userCreateCmd,
		"list":           userListCmd,
		"get":            userGetCmd,
		"update":         userUpdateCmd,
		"delete":         userDeleteCmd,
		"end-sessions":   userEndSessionsCmd,
		"consents":       userConsentsCmd,
		"revoke-consent": userRevokeConsentCmd,
	}, args, stdout, stderr)
}

// runKey runs "jeton key SUBCOMMAND …"; args are the arguments after "key".
func runKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `usage: jeton key <command> [flags]

commands:
  list
  rotate    publish new signing keys; they sign after the server's pre-publication delay

every command accepts --server URL, --token T and --json`
	return dispatch(ctx, "key", usage, map[string]cliFunc{
		"list":   keyListCmd,
		"rotate": keyRotateCmd,
	}, args, stdout, stderr)
}

// oauthClientFlags are the OAuth client settings shared by "client create" and
// "client update".
type oauthClientFlags struct {
	name         string
	grantTypes   listFlag
	redirectURIs listFlag
	postLogout   listFlag
	apis         listFlag
	scopes       listFlag
	tokenFormat  string
	signingAlg   string
	accessTTL    secondsFlag
	refreshTTL   secondsFlag
	jwks         string
	jwksURI      string
}

func (f *oauthClientFlags) register(fs *flag.FlagSet, create bool) {
	fs.StringVar(&f.name, "name", "", "display `name`")
	fs.Var(&f.grantTypes, "grant-types", "comma-separated `grants`: authorization_code, refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:device_code")
	fs.Var(&f.redirectURIs, "redirect-uris", "comma-separated redirect `URIs` (matched exactly)")
	fs.Var(&f.postLogout, "post-logout-redirect-uris", "comma-separated `URIs` where OpenID Connect logout may return (matched exactly)")
	fs.Var(&f.apis, "apis", "comma-separated `APIs` (ids, names or identifiers) the client may get tokens for")
	fs.Var(&f.scopes, "scopes", "comma-separated `scopes`: the most the client may be granted")
	fs.StringVar(&f.tokenFormat, "token-format", "", "access token `format`: opaque or jwt")
	fs.StringVar(&f.signingAlg, "signing-alg", "", "JWT signing `algorithm`: ES256, RS256 or EdDSA")
	fs.Var(&f.accessTTL, "access-token-ttl", "access token lifetime, such as 1h")
	fs.Var(&f.refreshTTL, "refresh-token-ttl", "refresh token lifetime, such as 720h")
	none := ""
	if !create {
		none = `, or "none" to remove them`
	}
	fs.StringVar(&f.jwks, "jwks", "", "public keys for private_key_jwt: a JWK set `JSON`, or @FILE"+none)
	fs.StringVar(&f.jwksURI, "jwks-uri", "", "`URL` of the client's JWK set for private_key_jwt")
}

// maxJWKSFile bounds a --jwks @FILE.
const maxJWKSFile = 64 << 10

// jwksValue reads --jwks: inline JSON or @FILE.
func (f *oauthClientFlags) jwksValue() (json.RawMessage, error) {
	v := f.jwks
	if path, ok := strings.CutPrefix(v, "@"); ok {
		file, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--jwks: %w", err)
		}
		defer file.Close()
		b, err := io.ReadAll(io.LimitReader(file, maxJWKSFile+1))
		if err != nil {
			return nil, fmt.Errorf("--jwks: %w", err)
		}
		if len(b) > maxJWKSFile {
			return nil, fmt.Errorf("--jwks: %s is over %d bytes", path, maxJWKSFile)
		}
		v = string(b)
	}
	m := []byte(strings.TrimSpace(v))
	if !json.Valid(m) || len(m) == 0 || m[0] != '{' {
		return nil, errors.New(`--jwks must be a JSON object ({"keys": [...]}) or @FILE holding one`)
	}
	return m, nil
}

func clientCreateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var req client.CreateClientRequest
	var f oauthClientFlags
	return clientCommand{
		name: "client create",
		flags: func(fs *flag.FlagSet) {
			f.register(fs, true)
			fs.StringVar(&req.Type, "type", "", "`type`: confidential (the default) or public")
			fs.StringVar(&req.AuthMethod, "auth-method", "", "token endpoint authentication `method` (default client_secret_basic, none for public clients)")
		},
		check: func(*flag.FlagSet, []string) error {
			if f.name == "" {
				return errors.New("client create: --name is required")
			}
			req.Name, req.GrantTypes, req.RedirectURIs = f.name, f.grantTypes.v, f.redirectURIs.v
			req.PostLogoutRedirectURIs = f.postLogout.v
			req.APIs, req.Scopes, req.TokenFormat, req.SigningAlg = f.apis.v, f.scopes.v, f.tokenFormat, f.signingAlg
			req.AccessTokenTTL, req.RefreshTokenTTL, req.JWKSURI = f.accessTTL.secs, f.refreshTTL.secs, f.jwksURI
			if (f.accessTTL.set && f.accessTTL.secs == 0) || (f.refreshTTL.set && f.refreshTTL.secs == 0) {
				return errors.New("client create: token lifetimes must be positive")
			}
			if f.jwks != "" {
				j, err := f.jwksValue()
				if err != nil {
					return fmt.Errorf("client create: %w", err)
				}
				req.JWKS = j
			}
			return nil
		},
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			o, err := c.CreateClient(ctx, req)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: o.Raw, show: func() error { return printClientSecret(stdout, "Created client", o) }}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

// pageFlags are --limit and --cursor of the paginated lists, as for tokens.
type pageFlags struct{ p client.Page }

func (pf *pageFlags) register(fs *flag.FlagSet, what string) {
	fs.IntVar(&pf.p.Limit, "limit", 0, "at most `N` "+what+" (server default when 0)")
	fs.StringVar(&pf.p.After, "cursor", "", "continue from this `cursor` (the next_cursor of the previous page)")
}

func (pf *pageFlags) check(cmd string) error {
	if pf.p.Limit < 0 {
		return fmt.Errorf("%s: --limit must not be negative", cmd)
	}
	return nil
}

// printMore tells where the next page starts.
func printMore(w io.Writer, what, next string) {
	if next != "" {
		fmt.Fprintf(w, "more %s: --cursor %s\n", what, next)
	}
}

// pageAnswer is the answer of one page of a list: raw with --json, and
// otherwise a table (header, then the fields of each item, tab-separated)
// followed on stderr by the --cursor of the next page, if there is one.
func pageAnswer[T any](raw json.RawMessage, stdout, stderr io.Writer, what, header string, items []T, fields func(T) []string, next string) answer {
	return answer{raw: raw, show: func() error {
		tw := newTable(stdout)
		fmt.Fprintln(tw, header)
		for _, it := range items {
			fmt.Fprintln(tw, strings.Join(fields(it), "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		printMore(stderr, what, next)
		return nil
	}}
}

func clientListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var pf pageFlags
	return clientCommand{
		name:  "client list",
		flags: func(fs *flag.FlagSet) { pf.register(fs, "clients") },
		check: func(*flag.FlagSet, []string) error { return pf.check("client list") },
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			l, err := c.ListClients(ctx, pf.p)
			if err != nil {
				return answer{}, err
			}
			return pageAnswer(l.Raw, stdout, stderr, "clients", "CLIENT ID\tNAME\tTYPE\tGRANTS\tAPIS\tSCOPES\tFORMAT\tSTATUS", l.Clients,
				func(o client.OAuthClient) []string {
					return []string{o.ID, orDash(o.Name), o.Type, fmtGrants(o.GrantTypes),
						fmtList(o.APIs), fmtList(o.Scopes), o.TokenFormat, enabledWord(o.Disabled)}
				}, l.Next), nil
		},
	}.run(ctx, args, stdout, stderr)
}

// clientAnswer shows a client, after an "Updated client …" style line when
// verb is set.
func clientAnswer(w io.Writer, verb string, o *client.OAuthClient) answer {
	if o == nil {
		return answer{}
	}
	return answer{raw: o.Raw, show: func() error {
		if verb != "" {
			fmt.Fprintf(w, "%s client %s.\n\n", verb, o.ID)
		}
		return printClient(w, o)
	}}
}

func clientGetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "client get", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			o, err := c.GetClient(ctx, pos[0])
			return clientAnswer(stdout, "", o), err
		},
	}.run(ctx, args, stdout, stderr)
}

func clientUpdateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var req client.UpdateClientRequest
	var f oauthClientFlags
	var disable, enable bool
	return clientCommand{
		name: "client update", nargs: 1, argNames: "ID",
		flags: func(fs *flag.FlagSet) {
			f.register(fs, false)
			fs.BoolVar(&disable, "disable", false, "disable the client: it can no longer get tokens")
			fs.BoolVar(&enable, "enable", false, "enable a disabled client")
		},
		check: func(fs *flag.FlagSet, _ []string) error {
			changed := false
			str := func(name string, v string, dst **string) {
				if flagWasSet(fs, name) {
					*dst = &v
					changed = true
				}
			}
			str("name", f.name, &req.Name)
			str("token-format", f.tokenFormat, &req.TokenFormat)
			str("signing-alg", f.signingAlg, &req.SigningAlg)
			str("jwks-uri", f.jwksURI, &req.JWKSURI)
			for _, l := range []struct {
				flag *listFlag
				dst  *[]string
			}{{&f.grantTypes, &req.GrantTypes}, {&f.redirectURIs, &req.RedirectURIs}, {&f.postLogout, &req.PostLogoutRedirectURIs},
				{&f.apis, &req.APIs}, {&f.scopes, &req.Scopes}} {
				if l.flag.set {
					*l.dst = l.flag.v
					changed = true
				}
			}
			for _, d := range []struct {
				flag *secondsFlag
				dst  **int64
			}{{&f.accessTTL, &req.AccessTokenTTL}, {&f.refreshTTL, &req.RefreshTokenTTL}} {
				if d.flag.set {
					if d.flag.secs == 0 {
						return errors.New("client update: token lifetimes must be positive")
					}
					*d.dst = &d.flag.secs
					changed = true
				}
			}
			if flagWasSet(fs, "jwks") {
				if f.jwks == "none" {
					req.JWKS = client.Null[json.RawMessage]()
				} else {
					j, err := f.jwksValue()
					if err != nil {
						return fmt.Errorf("client update: %w", err)
					}
					req.JWKS = client.Set(j)
				}
				changed = true
			}
			switch {
			case disable && enable:
				return errors.New("client update: --disable and --enable exclude each other")
			case disable || enable:
				req.Disabled = &disable
				changed = true
			}
			if !changed {
				return errors.New("client update: nothing to change (see jeton client update -h)")
			}
			return nil
		},
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			o, err := c.UpdateClient(ctx, pos[0], req)
			return clientAnswer(stdout, "Updated", o), err
		},
	}.run(ctx, args, stdout, stderr)
}

// deleted is the answer of a delete: the server sends 204 and no body, so
// --json prints an empty object and scripts always get JSON.
func deleted(w io.Writer, what, id string) answer {
	return answer{raw: json.RawMessage("{}"), show: func() error {
		_, err := fmt.Fprintf(w, "Deleted %s %s.\n", what, id)
		return err
	}}
}

func clientDeleteCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "client delete", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			if err := c.DeleteClient(ctx, pos[0]); err != nil {
				return answer{}, err
			}
			return deleted(stdout, "client", pos[0]), nil
		},
	}.run(ctx, args, stdout, stderr)
}

func clientRotateSecretCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var grace secondsFlag
	return clientCommand{
		name: "client rotate-secret", nargs: 1, argNames: "ID",
		flags: grace.registerGrace,
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			o, err := c.RotateClientSecret(ctx, pos[0], time.Duration(grace.secs)*time.Second)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: o.Raw, show: func() error {
				if err := printClientSecret(stdout, "Rotated the secret of client", o); err != nil {
					return err
				}
				if o.SecretPreviousExpiresAt != nil {
					fmt.Fprintf(stdout, "The old secret keeps working until %s.\n", fmtTime(*o.SecretPreviousExpiresAt))
				} else {
					fmt.Fprintln(stdout, "The old secret no longer works.")
				}
				return nil
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

// printClientSecret prints a client with its new secret, if it has one,
// and that the secret is shown only once.
func printClientSecret(w io.Writer, what string, o *client.OAuthClient) error {
	fmt.Fprintf(w, "%s %s.\n\n", what, o.ID)
	if o.Secret != "" {
		fmt.Fprintf(w, "    %s\n\n", o.Secret)
		fmt.Fprintln(w, "Copy this client secret now: it will not be shown again.")
		fmt.Fprintln(w)
	}
	return printClient(w, o)
}

func printClient(w io.Writer, o *client.OAuthClient) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Client ID:\t%s\n", o.ID)
	fmt.Fprintf(tw, "Name:\t%s\n", orDash(o.Name))
	fmt.Fprintf(tw, "Type:\t%s\n", o.Type)
	fmt.Fprintf(tw, "Status:\t%s\n", enabledWord(o.Disabled))
	fmt.Fprintf(tw, "Grant types:\t%s\n", fmtList(o.GrantTypes))
	fmt.Fprintf(tw, "Redirect URIs:\t%s\n", fmtList(o.RedirectURIs))
	if len(o.PostLogoutRedirectURIs) > 0 {
		fmt.Fprintf(tw, "Post-logout redirect URIs:\t%s\n", fmtList(o.PostLogoutRedirectURIs))
	}
	fmt.Fprintf(tw, "APIs:\t%s\n", fmtList(o.APIs))
	fmt.Fprintf(tw, "Scopes:\t%s\n", fmtList(o.Scopes))
	fmt.Fprintf(tw, "Token format:\t%s\n", orDash(o.TokenFormat))
	fmt.Fprintf(tw, "Signing alg:\t%s\n", orDash(o.SigningAlg))
	fmt.Fprintf(tw, "Access token TTL:\t%s\n", fmtTTL(o.AccessTokenTTL))
	fmt.Fprintf(tw, "Refresh token TTL:\t%s\n", fmtTTL(o.RefreshTokenTTL))
	fmt.Fprintf(tw, "Auth method:\t%s\n", orDash(o.AuthMethod))
	if o.SecretHint != "" {
		fmt.Fprintf(tw, "Secret hint:\t%s\n", o.SecretHint)
	}
	if len(o.JWKS) > 0 && string(o.JWKS) != "null" {
		fmt.Fprintf(tw, "JWKS:\t%s\n", compactJSON(o.JWKS))
	}
	if o.JWKSURI != "" {
		fmt.Fprintf(tw, "JWKS URI:\t%s\n", o.JWKSURI)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(o.CreatedAt))
	fmt.Fprintf(tw, "Updated:\t%s\n", fmtTime(o.UpdatedAt))
	return tw.Flush()
}

// fmtGrants lists grant types with the device code grant's URN shortened.
func fmtGrants(l []string) string {
	short := make([]string, len(l))
	for i, g := range l {
		short[i] = strings.TrimPrefix(g, "urn:ietf:params:oauth:grant-type:")
	}
	return fmtList(short)
}

func enabledWord(disabled bool) string {
	if disabled {
		return "disabled"
	}
	return "enabled"
}

// passwordStdin is where --password-stdin reads; tests replace it.
var passwordStdin io.Reader = os.Stdin

// maxPasswordInput bounds what --password-stdin reads.
const maxPasswordInput = 4096

// passwordFlags are --password and --password-stdin.
type passwordFlags struct {
	password string
	stdin    bool
}

func (p *passwordFlags) register(fs *flag.FlagSet) {
	// The default stays empty so that usage messages never print one.
	fs.StringVar(&p.password, "password", "", "the `password` (visible to other users of this machine: prefer --password-stdin)")
	fs.BoolVar(&p.stdin, "password-stdin", false, "read the password from standard input (one line)")
}

// value returns the password given, and whether one was.
func (p *passwordFlags) value(fs *flag.FlagSet, cmd string) (string, bool, error) {
	given := flagWasSet(fs, "password")
	switch {
	case given && p.stdin:
		return "", false, fmt.Errorf("%s: --password and --password-stdin exclude each other", cmd)
	case given:
		return p.password, true, nil
	case !p.stdin:
		return "", false, nil
	}
	b, err := io.ReadAll(io.LimitReader(passwordStdin, maxPasswordInput+1))
	if err != nil {
		return "", false, fmt.Errorf("%s: read standard input: %w", cmd, err)
	}
	if len(b) > maxPasswordInput {
		return "", false, fmt.Errorf("%s: the password on standard input is over %d bytes", cmd, maxPasswordInput)
	}
	// Only the line end goes: spaces may be part of a password.
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", false, fmt.Errorf("%s: no password on standard input", cmd)
	}
	return pw, true, nil
}

func userCreateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var req client.CreateUserRequest
	var pf passwordFlags
	return clientCommand{
		name: "user create",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&req.Username, "username", "", "login `name` (required)")
			fs.StringVar(&req.Email, "email", "", "email `address`")
			pf.register(fs)
		},
		check: func(fs *flag.FlagSet, _ []string) error {
			if req.Username == "" {
				return errors.New("user create: --username is required")
			}
			pw, ok, err := pf.value(fs, "user create")
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("user create: a password is required (--password-stdin or --password)")
			}
			req.Password = pw
			return nil
		},
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			u, err := c.CreateUser(ctx, req)
			return userAnswer(stdout, "Created", u), err
		},
	}.run(ctx, args, stdout, stderr)
}

// userAnswer shows a user, after a "Created user …" style line when verb
// is set.
func userAnswer(w io.Writer, verb string, u *client.User) answer {
	if u == nil {
		return answer{}
	}
	return answer{raw: u.Raw, show: func() error {
		if verb != "" {
			fmt.Fprintf(w, "%s user %s.\n\n", verb, u.ID)
		}
		tw := newTable(w)
		fmt.Fprintf(tw, "ID:\t%s\n", u.ID)
		fmt.Fprintf(tw, "Username:\t%s\n", u.Username)
		fmt.Fprintf(tw, "Email:\t%s\n", orDash(u.Email))
		fmt.Fprintf(tw, "Status:\t%s\n", enabledWord(u.Disabled))
		fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(u.CreatedAt))
		fmt.Fprintf(tw, "Updated:\t%s\n", fmtTime(u.UpdatedAt))
		fmt.Fprintf(tw, "Sessions ended:\t%s\n", fmtTimePtr(u.SessionsEndedAt, "never"))
		return tw.Flush()
	}}
}

func userListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var pf pageFlags
	return clientCommand{
		name:  "user list",
		flags: func(fs *flag.FlagSet) { pf.register(fs, "users") },
		check: func(*flag.FlagSet, []string) error { return pf.check("user list") },
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			l, err := c.ListUsers(ctx, pf.p)
			if err != nil {
				return answer{}, err
			}
			return pageAnswer(l.Raw, stdout, stderr, "users", "ID\tUSERNAME\tEMAIL\tSTATUS\tCREATED", l.Users,
				func(u client.User) []string {
					return []string{u.ID, u.Username, orDash(u.Email), enabledWord(u.Disabled), fmtTime(u.CreatedAt)}
				}, l.Next), nil
		},
	}.run(ctx, args, stdout, stderr)
}

func userGetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "user get", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			u, err := c.GetUser(ctx, pos[0])
			return userAnswer(stdout, "", u), err
		},
	}.run(ctx, args, stdout, stderr)
}

func userUpdateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var req client.UpdateUserRequest
	var email string
	var disable, enable bool
	var pf passwordFlags
	return clientCommand{
		name: "user update", nargs: 1, argNames: "ID",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&email, "email", "", "new email `address`")
			fs.BoolVar(&disable, "disable", false, "disable the user: they can no longer log in")
			fs.BoolVar(&enable, "enable", false, "enable a disabled user")
			pf.register(fs)
		},
		check: func(fs *flag.FlagSet, _ []string) error {
			if flagWasSet(fs, "email") {
				req.Email = &email
			}
			switch {
			case disable && enable:
				return errors.New("user update: --disable and --enable exclude each other")
			case disable || enable:
				req.Disabled = &disable
			}
			pw, ok, err := pf.value(fs, "user update")
			if err != nil {
				return err
			}
			if ok {
				req.Password = &pw
			}
			if req.Email == nil && req.Disabled == nil && req.Password == nil {
				return errors.New("user update: nothing to change (use --email, --disable, --enable or --password-stdin)")
			}
			return nil
		},
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			u, err := c.UpdateUser(ctx, pos[0], req)
			return userAnswer(stdout, "Updated", u), err
		},
	}.run(ctx, args, stdout, stderr)
}

func userDeleteCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "user delete", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			if err := c.DeleteUser(ctx, pos[0]); err != nil {
				return answer{}, err
			}
			return deleted(stdout, "user", pos[0]), nil
		},
	}.run(ctx, args, stdout, stderr)
}

func userEndSessionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "user end-sessions", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			if err := c.EndSessions(ctx, pos[0]); err != nil {
				return answer{}, err
			}
			return answer{raw: json.RawMessage("{}"), show: func() error {
				_, err := fmt.Fprintf(stdout, "Signed user %s out of every browser. Their grants and tokens are unchanged.\n", pos[0])
				return err
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

func userConsentsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "user consents", nargs: 1, argNames: "ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			l, err := c.ListConsents(ctx, pos[0])
			if err != nil {
				return answer{}, err
			}
			return answer{raw: l.Raw, show: func() error {
				tw := newTable(stdout)
				fmt.Fprintln(tw, "CLIENT ID\tAPI\tSCOPES\tGIVEN\tUPDATED")
				for _, cs := range l.Consents {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cs.ClientID, cs.API, fmtList(cs.Scopes), fmtTime(cs.CreatedAt), fmtTime(cs.UpdatedAt))
				}
				return tw.Flush()
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

func userRevokeConsentCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "user revoke-consent", nargs: 2, argNames: "ID and CLIENT_ID",
		call: func(ctx context.Context, c *client.Client, pos []string) (answer, error) {
			if err := c.RevokeConsent(ctx, pos[0], pos[1]); err != nil {
				return answer{}, err
			}
			return answer{raw: json.RawMessage("{}"), show: func() error {
				_, err := fmt.Fprintf(stdout, "Revoked the consent of user %s to client %s, and the client's grants from them.\n", pos[0], pos[1])
				return err
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

// keysTable prints signing keys.
func keysTable(w io.Writer, keys []client.SigningKey) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tALG\tSTATE\tCREATED\tSIGNS FROM\tRETIRED\tUNPUBLISHED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Alg, k.State, fmtTime(k.CreatedAt), fmtTime(k.ActiveAt),
			fmtTimePtr(k.RetiredAt, "-"), fmtTimePtr(k.ExpiresAt, "-"))
	}
	return tw.Flush()
}

func keyListCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "key list",
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			l, err := c.ListKeys(ctx)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: l.Raw, show: func() error { return keysTable(stdout, l.Keys) }}, nil
		},
	}.run(ctx, args, stdout, stderr)
}

func keyRotateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return clientCommand{
		name: "key rotate",
		call: func(ctx context.Context, c *client.Client, _ []string) (answer, error) {
			l, err := c.RotateKeys(ctx)
			if err != nil {
				return answer{}, err
			}
			return answer{raw: l.Raw, show: func() error {
				fmt.Fprintln(stdout, "Published new signing keys; each signs from its SIGNS FROM time, and the keys it replaces retire then.")
				fmt.Fprintln(stdout)
				return keysTable(stdout, l.Keys)
			}}, nil
		},
	}.run(ctx, args, stdout, stderr)
}
