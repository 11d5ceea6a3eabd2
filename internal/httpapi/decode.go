package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// decodeJSON reads one JSON object from r's body into v, rejecting unknown
// fields, trailing data and bodies over MaxBodyBytes. An empty body is an
// empty object when allowEmpty.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) error {
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuf(buf)
	body, err := readBody(w, r, buf)
	if err != nil {
		return err
	}
	return decodeBody(body, v, allowEmpty)
}

// decodeBody is decodeJSON for a body already read.
func decodeBody(body []byte, v any, allowEmpty bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return errorf(http.StatusBadRequest, "malformed_json", "request body must be a JSON object")
	}
	return DecodeStrict(body, v)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= MaxBodyBytes {
		b.Reset()
		bufPool.Put(b)
	}
}

// readBody reads r's body, at most MaxBodyBytes, into buf and returns its
// bytes (valid until buf is reused), or a public error.
func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) ([]byte, error) {
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request body is over %d bytes", MaxBodyBytes)
		}
		return nil, errorf(http.StatusBadRequest, "malformed_json", "could not read the request body")
	}
	return buf.Bytes(), nil
}

// DecodeStrict decodes one JSON value from body into v with the rules of
// the admin API: unknown fields, wrong types and trailing data are errors
// with a stable code and a message naming the field.
func DecodeStrict(body []byte, v any) error {
	// JSON text is UTF-8 (RFC 8259 §8.1), and no field of ours holds a
	// NUL, which PostgreSQL's text refuses: both are a clear 400 here
	// rather than a store error later.
	if !utf8.Valid(body) {
		return errorf(http.StatusBadRequest, "malformed_json", "request body is not UTF-8")
	}
	if hasNULEscape(body) {
		return errorf(http.StatusBadRequest, "invalid_request", "request body holds a NUL character (\\u0000)")
	}
	if err := checkJSON(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return errorf(http.StatusBadRequest, "malformed_json", "request body is not valid JSON")
		case errors.As(err, &typ):
			if typ.Field == "" {
				return errorf(http.StatusBadRequest, "malformed_json", "request body must be a JSON object")
			}
			return errorf(http.StatusBadRequest, "invalid_request", "field %q must be %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return errorf(http.StatusBadRequest, "unknown_field", "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return errorf(http.StatusBadRequest, "malformed_json", "request body is not valid JSON")
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "malformed_json", "request body has data after the JSON object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return errorf(http.StatusBadRequest, "malformed_json", "request body has data after the JSON object")
	}
	return nil
}

// hasNULEscape reports whether JSON text b has the escape \u0000 in a
// string (a raw NUL byte is not valid JSON at all).
func hasNULEscape(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // the escaped character, so that \\u0000 is a backslash and text
	}
	return false
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	case "bool":
		return "true or false"
	}
	return "a number"
}
