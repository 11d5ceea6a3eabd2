package httpapi

// decodeVerifyFast parses the common shape of a verify body without
// reflection: one object whose members are "token", "api", "client_ip"
// (plain strings) and "scopes" (an array of plain strings), each at most
// once. A plain
// string has only printable ASCII and no escapes. For anything else it
// reports false and the caller uses DecodeStrict, which is the
// specification; FuzzVerifyFastDecode proves the two agree wherever the
// fast path answers.
func decodeVerifyFast(b []byte, req *VerifyRequest) bool {
	p := parser{b: b}
	p.ws()
	if !p.byte('{') {
		return false
	}
	p.ws()
	var seenToken, seenAPI, seenScopes, seenIP bool
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			key, ok := p.str()
			if !ok {
				return false
			}
			p.ws()
			if !p.byte(':') {
				return false
			}
			p.ws()
			switch key {
			case "token":
				if !p.strOnce(&seenToken, &req.Token) {
					return false
				}
			case "api":
				if !p.strOnce(&seenAPI, &req.API) {
					return false
				}
			case "client_ip":
				if !p.strOnce(&seenIP, &req.ClientIP) {
					return false
				}
			case "scopes":
				if seenScopes || !p.byte('[') {
					return false
				}
				seenScopes = true
				req.Scopes = []string{}
				p.ws()
				if p.peek() == ']' {
					p.i++
					break
				}
				for {
					s, ok := p.str()
					if !ok {
						return false
					}
					req.Scopes = append(req.Scopes, s)
					p.ws()
					if p.byte(']') {
						break
					}
					if !p.byte(',') {
						return false
					}
					p.ws()
				}
			default:
				return false
			}
			p.ws()
			if p.byte('}') {
				break
			}
			if !p.byte(',') {
				return false
			}
			p.ws()
		}
	}
	p.ws()
	return p.i == len(p.b)
}

type parser struct {
	b []byte
	i int
}

// strOnce reads a plain string into dst, as a member that *seen says
// whether the object had before; false for a second one, or no plain
// string.
func (p *parser) strOnce(seen *bool, dst *string) bool {
	if *seen {
		return false
	}
	*seen = true
	var ok bool
	*dst, ok = p.str()
	return ok
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a plain string: printable ASCII, no backslash.
func (p *parser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false
		}
		p.i++
	}
	return "", false
}
