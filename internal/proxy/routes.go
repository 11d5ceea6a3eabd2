package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxRulesFileBytes bounds the size of a route file.
const MaxRulesFileBytes = 1 << 20

// Policy says what happens to a request that no route matches.
type Policy string

// The policies for unmatched requests.
const (
	// Deny answers 403 without calling the upstream (the default).
	Deny Policy = "deny"
	// Allow forwards the request without a token, like a public route.
	Allow Policy = "allow"
)

// Headers names the request headers that carry the caller's identity to the
// upstream. An empty name sends nothing for that field.
type Headers struct {
	Subject  string
	Scopes   string
	TokenID  string
	ClientID string
}

// DefaultHeaders are the identity headers used unless the route file names
// others.
var DefaultHeaders = Headers{
	Subject:  "X-Jeton-Subject",
	Scopes:   "X-Jeton-Scopes",
	TokenID:  "X-Jeton-Token-Id",
	ClientID: "X-Jeton-Client-Id",
}

func (h Headers) names() []string {
	var out []string
	for _, n := range []string{h.Subject, h.Scopes, h.TokenID, h.ClientID} {
		if n != "" {
			out = append(out, http.CanonicalHeaderKey(n))
		}
	}
	return out
}

// Rules is a parsed and validated route file.
type Rules struct {
	// API is the identifier (audience) of the API tokens must be for,
	// unless a route names another.
	API string
	// Default is what happens to requests no route matches.
	Default Policy
	// Headers names the identity headers sent upstream.
	Headers Headers
	// Routes are tried in order; the first match wins.
	Routes []Route
}

// Route maps requests to what they require.
type Route struct {
	// Name labels the route in metrics and logs: the file's name for it, or
	// "line N".
	Name string
	// Line is where the route starts in the route file.
	Line int
	// Methods the route matches; nil matches any. GET also matches HEAD.
	Methods []string
	// Path is the pattern: literal segments, "*" (or "{name}") for exactly
	// one segment, and a final "**" (or "{name...}") for any rest, including
	// none.
	Path string
	// Scopes the token must hold, all of them.
	Scopes []string
	// API overrides Rules.API for this route.
	API string
	// Public routes are forwarded without a token.
	Public bool

	segs []segment
}

type segKind uint8

const (
	segLiteral segKind = iota
	segOne             // exactly one segment
	segRest            // the rest of the path, possibly empty
)

type segment struct {
	kind segKind
	lit  string
}

// Audience returns the API the route's tokens must be for.
func (r *Route) Audience(rules *Rules) string {
	if r.API != "" {
		return r.API
	}
	return rules.API
}

// Errors of Match.
var (
	// ErrNoRoute: no route matches the request.
	ErrNoRoute = errors.New("proxy: no route matches")
	// ErrAmbiguousRoute: the path with its trailing slash and the path
	// without it match different routes.
	ErrAmbiguousRoute = errors.New("proxy: the path with and without its trailing slash match different routes")
)

// Match returns the first route that matches method and path, which must be
// a clean absolute path (see CleanPath), or ErrNoRoute.
//
// Many upstreams serve "/a/b/" as "/a/b" (they strip the slash, redirect,
// or route both alike), so a path other than "/" that ends in a slash also
// matches the routes of the path without it: otherwise "/repos/a/settings/"
// would skip a stricter "/repos/*/settings" and fall through to a later,
// weaker route. When both spellings match a route, and not the same one,
// Match returns ErrAmbiguousRoute: the request cannot be judged without
// knowing which one the upstream serves.
func (rs *Rules) Match(method, path string) (*Route, error) {
	r := rs.first(method, path)
	if n := len(path); n > 1 && path[n-1] == '/' {
		alt := rs.first(method, path[:n-1])
		switch {
		case r == nil:
			r = alt
		case alt != nil && alt != r:
			return nil, ErrAmbiguousRoute
		}
	}
	if r == nil {
		return nil, ErrNoRoute
	}
	return r, nil
}

// first returns the first route that matches method and path as spelled,
// or nil.
func (rs *Rules) first(method, path string) *Route {
	for i := range rs.Routes {
		r := &rs.Routes[i]
		if r.matchMethod(method) && r.matchPath(path) {
			return r
		}
	}
	return nil
}

func (r *Route) matchMethod(m string) bool {
	if r.Methods == nil {
		return true
	}
	for _, want := range r.Methods {
		if m == want || (m == http.MethodHead && want == http.MethodGet) {
			return true
		}
	}
	return false
}

func (r *Route) matchPath(path string) bool {
	rest := path[1:] // path starts with "/"
	for i, s := range r.segs {
		if s.kind == segRest {
			return true
		}
		var seg string
		var more bool
		seg, rest, more = strings.Cut(rest, "/")
		switch s.kind {
		case segLiteral:
			if seg != s.lit {
				return false
			}
		case segOne:
			if seg == "" {
				return false
			}
		}
		last := i == len(r.segs)-1
		if last {
			return !more
		}
		if !more {
			// The path ended; only a following "**" still matches.
			return i+1 == len(r.segs)-1 && r.segs[i+1].kind == segRest
		}
	}
	return false
}

// LineError is a problem in a route file, at a line.
type LineError struct {
	File string
	Line int
	Msg  string
}

func (e *LineError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// LoadRules reads and validates the route file at path.
func LoadRules(path string) (*Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("proxy: route file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRulesFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("proxy: route file %s: %w", path, err)
	}
	return ParseRules(path, data)
}

// ParseRules parses and validates a route file's contents; name is used
// in error messages. Every error names the line it is about.
func ParseRules(name string, data []byte) (*Rules, error) {
	p := parser{file: name}
	if len(data) > MaxRulesFileBytes {
		return nil, p.errf(0, "larger than %d bytes", MaxRulesFileBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, p.errf(0, "the file is empty; it needs at least 'routes:'")
	}
	return p.rules(doc.Content[0])
}

// yamlError turns a YAML syntax error ("yaml: line 3: ...") into a
// LineError.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	return &LineError{File: file, Line: line, Msg: msg}
}

type parser struct{ file string }

func (p parser) errf(line int, format string, args ...any) error {
	return &LineError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// fields walks a mapping node, calling fn for each key in order, and
// refuses unknown and repeated keys.
func (p parser) fields(n *yaml.Node, what string, known []string, fn func(key string, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return p.errf(n.Line, "%s must be a mapping of %s", what, strings.Join(known, ", "))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || !slices.Contains(known, k.Value) {
			return p.errf(k.Line, "unknown key %q in %s (known: %s)", k.Value, what, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return p.errf(k.Line, "%q is given twice in %s", k.Value, what)
		}
		seen[k.Value] = true
		if err := fn(k.Value, v); err != nil {
			return err
		}
	}
	return nil
}

func (p parser) str(v *yaml.Node, key string) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", p.errf(v.Line, "%s must be a string", key)
	}
	return v.Value, nil
}

func (p parser) boolean(v *yaml.Node, key string) (bool, error) {
	if v.Kind == yaml.ScalarNode {
		switch v.Value {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, p.errf(v.Line, "%s must be true or false", key)
}

// list accepts a sequence of strings or a single string.
func (p parser) list(v *yaml.Node, key string) ([]string, error) {
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		return []string{v.Value}, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v.Line, "%s must be a list of strings", key)
	}
	out := make([]string, 0, len(v.Content))
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
			return nil, p.errf(e.Line, "%s must be a list of strings", key)
		}
		out = append(out, e.Value)
	}
	return out, nil
}

func (p parser) rules(root *yaml.Node) (*Rules, error) {
	rs := &Rules{Default: Deny, Headers: DefaultHeaders}
	var routes *yaml.Node
	err := p.fields(root, "the route file", []string{"api", "default", "headers", "routes"}, func(key string, v *yaml.Node) error {
		var err error
		switch key {
		case "api":
			rs.API, err = p.str(v, "api")
			if err == nil && !validAPI(rs.API) {
				err = p.errf(v.Line, "api %q is not an API identifier or name", rs.API)
			}
		case "default":
			var s string
			if s, err = p.str(v, "default"); err == nil {
				rs.Default = Policy(s)
				if rs.Default != Deny && rs.Default != Allow {
					err = p.errf(v.Line, "default must be deny or allow, not %q", s)
				}
			}
		case "headers":
			err = p.headers(v, &rs.Headers)
		case "routes":
			routes = v
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if routes == nil {
		return nil, p.errf(root.Line, "routes is missing")
	}
	if routes.Kind != yaml.SequenceNode {
		return nil, p.errf(routes.Line, "routes must be a list")
	}
	names := map[string]int{}
	for _, n := range routes.Content {
		r, err := p.route(n)
		if err != nil {
			return nil, err
		}
		if !r.Public && r.Audience(rs) == "" {
			return nil, p.errf(r.Line, "route needs an api: set api at the top of the file or on the route")
		}
		if prev, ok := names[r.Name]; ok {
			return nil, p.errf(r.Line, "route name %q is already used on line %d", r.Name, prev)
		}
		names[r.Name] = r.Line
		rs.Routes = append(rs.Routes, r)
	}
	return rs, nil
}

func (p parser) headers(v *yaml.Node, h *Headers) error {
	seen := map[string]int{}
	return p.fields(v, "headers", []string{"subject", "scopes", "token_id", "client_id"}, func(key string, v *yaml.Node) error {
		name := ""
		if !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
			var err error
			if name, err = p.str(v, "headers."+key); err != nil {
				return err
			}
		}
		if name != "" {
			if !validHeaderName(name) {
				return p.errf(v.Line, "headers.%s: %q is not a valid header name", key, name)
			}
			c := http.CanonicalHeaderKey(name)
			if forbiddenIdentityHeader(c) {
				return p.errf(v.Line, "headers.%s: %s cannot carry identity", key, c)
			}
			if prev, ok := seen[c]; ok {
				return p.errf(v.Line, "headers.%s: %s is already used on line %d", key, c, prev)
			}
			seen[c] = v.Line
		}
		switch key {
		case "subject":
			h.Subject = name
		case "scopes":
			h.Scopes = name
		case "token_id":
			h.TokenID = name
		case "client_id":
			h.ClientID = name
		}
		return nil
	})
}

func (p parser) route(n *yaml.Node) (Route, error) {
	r := Route{Line: n.Line}
	err := p.fields(n, "a route", []string{"name", "method", "methods", "path", "scopes", "api", "public"}, func(key string, v *yaml.Node) error {
		var err error
		switch key {
		case "name":
			r.Name, err = p.str(v, "name")
			if err == nil && (r.Name == "" || len(r.Name) > 64 || !printable(r.Name)) {
				err = p.errf(v.Line, "name must be 1-64 printable characters")
			}
		case "method", "methods":
			if r.Methods != nil {
				return p.errf(v.Line, "give method or methods, not both")
			}
			var ms []string
			if ms, err = p.list(v, key); err != nil {
				return err
			}
			for _, m := range ms {
				if m == "*" {
					if len(ms) > 1 {
						return p.errf(v.Line, `"*" stands alone: it already matches every method`)
					}
					r.Methods = nil
					return nil
				}
				if !validMethod(m) {
					return p.errf(v.Line, "%q is not an HTTP method (use upper case, e.g. GET)", m)
				}
				if slices.Contains(r.Methods, m) {
					return p.errf(v.Line, "method %s is listed twice", m)
				}
				r.Methods = append(r.Methods, m)
			}
			if len(r.Methods) == 0 {
				return p.errf(v.Line, "%s is empty; leave it out to match every method", key)
			}
		case "path":
			if r.Path, err = p.str(v, "path"); err == nil {
				r.segs, err = compilePath(r.Path)
				if err != nil {
					err = p.errf(v.Line, "path %q: %v", r.Path, err)
				}
			}
		case "scopes":
			if r.Scopes, err = p.list(v, "scopes"); err == nil {
				for _, s := range r.Scopes {
					if !validScope(s) {
						return p.errf(v.Line, "scope %q must be printable ASCII without spaces", s)
					}
				}
			}
		case "api":
			r.API, err = p.str(v, "api")
			if err == nil && !validAPI(r.API) {
				err = p.errf(v.Line, "api %q is not an API identifier or name", r.API)
			}
		case "public":
			r.Public, err = p.boolean(v, "public")
		}
		return err
	})
	if err != nil {
		return Route{}, err
	}
	if r.Path == "" {
		return Route{}, p.errf(r.Line, "route has no path")
	}
	if r.Public && (len(r.Scopes) > 0 || r.API != "") {
		return Route{}, p.errf(r.Line, "a public route takes no scopes or api: it is forwarded without a token")
	}
	if r.Name == "" {
		r.Name = fmt.Sprintf("line %d", r.Line)
	}
	return r, nil
}

func compilePath(pat string) ([]segment, error) {
	if !strings.HasPrefix(pat, "/") {
		return nil, errors.New("must start with /")
	}
	if len(pat) > 2048 {
		return nil, errors.New("longer than 2048 bytes")
	}
	if CleanPath(pat) != pat {
		return nil, errors.New("must be clean: no //, /./ or /../")
	}
	parts := strings.Split(pat[1:], "/")
	segs := make([]segment, 0, len(parts))
	for i, s := range parts {
		switch {
		case s == "**" || (strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}") && validWildcardName(s[1:len(s)-4])):
			if i != len(parts)-1 {
				return nil, fmt.Errorf("%s may only end the path", s)
			}
			segs = append(segs, segment{kind: segRest})
		case s == "*" || (strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && validWildcardName(s[1:len(s)-1])):
			segs = append(segs, segment{kind: segOne})
		case strings.ContainsAny(s, "*{}"):
			return nil, fmt.Errorf("segment %q: wildcards are whole segments: *, **, {name} or {name...}", s)
		case s == "." || s == "..":
			return nil, errors.New("must be clean: no /./ or /../")
		case s == "" && i != len(parts)-1:
			return nil, errors.New("must be clean: no //")
		default:
			if strings.ContainsAny(s, "?#%") {
				return nil, fmt.Errorf("segment %q: give the decoded path, without ?, # or %%", s)
			}
			segs = append(segs, segment{kind: segLiteral, lit: s})
		}
	}
	return segs, nil
}

func validWildcardName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validMethod reports whether m is an RFC 9110 method token in upper case.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for _, c := range m {
		if !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// forbiddenIdentityHeader reports whether a header may not carry identity:
// ones the proxy or HTTP itself owns.
func forbiddenIdentityHeader(c string) bool {
	switch c {
	case "Authorization", "Host", "Connection", "Content-Length", "Content-Type", "Transfer-Encoding",
		"Upgrade", "Te", "Trailer", "Cookie", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip":
		return true
	}
	return false
}

func validScope(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func validAPI(s string) bool {
	return s != "" && len(s) <= 2048 && printable(s) && !strings.Contains(s, " ")
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// CleanPath returns the canonical form of an absolute URL path: no empty,
// "." or ".." segments. The proxy forwards only requests whose path is
// already canonical, so that the path it matched is the path the upstream
// sees.
func CleanPath(p string) string {
	if p == "" || p[0] != '/' {
		return "/" + p
	}
	var b strings.Builder
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		switch s {
		case ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		case "":
			if i != len(segs)-1 {
				continue
			}
		}
		out = append(out, s)
	}
	b.WriteByte('/')
	b.WriteString(strings.Join(out, "/"))
	return b.String()
}
