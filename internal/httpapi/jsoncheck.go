package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// checkJSON checks JSON text body against the Go type t that it is about
// to be decoded into, with the rules encoding/json does not keep: a member
// name appears once in an object, and the members of an object decoded into
// a struct are named exactly as its fields (encoding/json matches "API" to
// the field "api", and takes the last of two "api"s, so a proxy reading the
// first one and Jeton would see two different requests). It also names
// each bad value by its path ("rate_limit.limit"), which encoding/json
// words in Go's terms, and checks nested objects for unknown members,
// which DisallowUnknownFields misses below a custom unmarshaler.
//
// Its errors are public *Error values; syntax errors are left to the
// decoder that follows (checkJSON stops at the first one without an
// error of its own).
func checkJSON(body []byte, t reflect.Type) error {
	c := jsonChecker{dec: json.NewDecoder(bytes.NewReader(body))}
	c.dec.UseNumber()
	tok, err := c.dec.Token()
	if err != nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errorf(http.StatusBadRequest, "malformed_json", "request body must be a JSON object")
	}
	err = c.value(tok, t, "", 0)
	if errors.Is(err, errJSONSyntax) {
		return nil
	}
	return err
}

// maxJSONDepth bounds the nesting of a request body.
const maxJSONDepth = 32

// errJSONSyntax stops a check at text the decoder will refuse anyway.
var errJSONSyntax = errors.New("httpapi: JSON syntax")

type jsonChecker struct{ dec *json.Decoder }

// jsonElem is implemented by wrappers whose JSON is that of another type
// (optional[T]).
type jsonElem interface{ jsonElem() reflect.Type }

var (
	jsonElemType = reflect.TypeFor[jsonElem]()
	rawJSONType  = reflect.TypeFor[json.RawMessage]()
	timeType     = reflect.TypeFor[time.Time]()
)

func (c *jsonChecker) token() (json.Token, error) {
	tok, err := c.dec.Token()
	if err != nil {
		return nil, errJSONSyntax
	}
	return tok, nil
}

// value checks the value that starts with tok, at path, for type t (nil:
// anything).
func (c *jsonChecker) value(tok json.Token, t reflect.Type, path string, depth int) error {
	for t != nil {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
			continue
		}
		if reflect.PointerTo(t).Implements(jsonElemType) {
			t = reflect.New(t).Interface().(jsonElem).jsonElem()
			continue
		}
		break
	}
	if tok == nil {
		return nil // null leaves any field as it is
	}
	switch {
	case t == nil || t == rawJSONType || t.Kind() == reflect.Interface:
		t = nil
	case t == timeType:
		if s, ok := tok.(string); ok {
			if _, err := time.Parse(time.RFC3339, s); err == nil {
				return nil
			}
		}
		return errorf(http.StatusBadRequest, "invalid_request", "field %q must be an RFC 3339 time, such as 2030-01-02T15:04:05Z", path)
	}
	switch v := tok.(type) {
	case json.Delim:
		if depth >= maxJSONDepth {
			return errorf(http.StatusBadRequest, "malformed_json", "request body is nested more than %d deep", maxJSONDepth)
		}
		if v == '{' {
			if t != nil && t.Kind() != reflect.Struct && t.Kind() != reflect.Map {
				return kindError(path, t)
			}
			return c.object(t, path, depth+1)
		}
		if t != nil && t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return kindError(path, t)
		}
		var elem reflect.Type
		if t != nil {
			elem = t.Elem()
		}
		for i := 0; ; i++ {
			tok, err := c.token()
			if err != nil {
				return err
			}
			if d, ok := tok.(json.Delim); ok && d == ']' {
				return nil
			}
			if err := c.value(tok, elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	case string:
		if t != nil && t.Kind() != reflect.String {
			return kindError(path, t)
		}
	case bool:
		if t != nil && t.Kind() != reflect.Bool {
			return kindError(path, t)
		}
	case json.Number:
		return checkNumber(v, t, path)
	}
	return nil
}

// object checks the members of an object, its '{' read, for type t (a
// struct, a map, or nil for anything).
func (c *jsonChecker) object(t reflect.Type, path string, depth int) error {
	var fields map[string]reflect.Type
	if t != nil && t.Kind() == reflect.Struct {
		fields = jsonFields(t)
	}
	seen := map[string]bool{}
	for {
		tok, err := c.token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return nil
		}
		name, _ := tok.(string)
		at := name
		if path != "" {
			at = path + "." + name
		}
		if seen[name] {
			return errorf(http.StatusBadRequest, "invalid_request", "field %q appears more than once", at)
		}
		seen[name] = true
		var ft reflect.Type
		switch {
		case fields != nil:
			var ok bool
			if ft, ok = fields[name]; !ok {
				for f := range fields {
					if strings.EqualFold(f, name) {
						return errorf(http.StatusBadRequest, "unknown_field", "unknown field %q (did you mean %q?)", at, joinPath(path, f))
					}
				}
				return errorf(http.StatusBadRequest, "unknown_field", "unknown field %q", at)
			}
		case t != nil && t.Kind() == reflect.Map:
			ft = t.Elem()
		}
		tok, err = c.token()
		if err != nil {
			return err
		}
		if err := c.value(tok, ft, at, depth); err != nil {
			return err
		}
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// jsonFields returns the JSON member names of struct type t, with the
// fields of embedded structs without a name of their own promoted, as
// encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// checkNumber checks that n fits t.
func checkNumber(n json.Number, t reflect.Type, path string) error {
	if t == nil {
		return nil
	}
	var err error
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		_, err = strconv.ParseInt(string(n), 10, t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		_, err = strconv.ParseUint(string(n), 10, t.Bits())
	case reflect.Float32, reflect.Float64:
		_, err = strconv.ParseFloat(string(n), t.Bits())
	default:
		return kindError(path, t)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, strconv.ErrRange) {
		return errorf(http.StatusBadRequest, "invalid_request", "field %q is out of range", path)
	}
	return errorf(http.StatusBadRequest, "invalid_request", "field %q must be an integer", path)
}

func kindError(path string, t reflect.Type) error {
	if path == "" {
		return errorf(http.StatusBadRequest, "malformed_json", "request body must be a JSON object")
	}
	kind := jsonKind(t.Kind().String())
	if t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 {
		kind = "an integer"
	}
	return errorf(http.StatusBadRequest, "invalid_request", "field %q must be %s", path, kind)
}

// decodeElem decodes JSON text b into v, which must not have members it
// does not know (checkJSON has checked the whole body before).
func decodeElem(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err // as encoding/json words it, which DecodeStrict maps
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("json: data after the value")
	}
	return nil
}
