package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/logical"
)

// DefaultMaxRequestSize is Vault's default limit on a request body (32 MiB).
const DefaultMaxRequestSize = 32 << 20

// cleanPath validates the part of the URL path after "/v1/" and returns it.
// Vault refuses ".." and "." segments, empty segments ("//"), NUL and other
// control characters; so do we, with a message that says which.
func cleanPath(p string) (string, error) {
	if !utf8.ValidString(p) {
		return "", logical.InvalidRequest("path is not valid UTF-8")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return "", logical.InvalidRequest("path contains a control character")
		}
	}
	if strings.HasPrefix(p, "/") {
		return "", logical.InvalidRequest("path contains an empty segment (\"//\")")
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case s == "..":
			return "", logical.InvalidRequest("path contains a \"..\" segment")
		case s == ".":
			return "", logical.InvalidRequest("path contains a \".\" segment")
		case s == "" && i != len(segs)-1:
			return "", logical.InvalidRequest("path contains an empty segment (\"//\")")
		}
	}
	return p, nil
}

// decodeBody reads a JSON object body of at most limit bytes. An empty body
// is an empty map. Numbers stay json.Number so integers keep their precision.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64) (map[string]any, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return map[string]any{}, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errBodyTooLarge{limit: limit}
		}
		return nil, logical.InvalidRequest("reading request body: %v", err)
	}
	return decodeJSONObject(body)
}

// decodeJSONObject parses body as one JSON object.
func decodeJSONObject(body []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, logical.InvalidRequest("failed to parse JSON input: %s", jsonErrorText(err))
	}
	if dec.More() {
		return nil, logical.InvalidRequest("failed to parse JSON input: unexpected data after the JSON object")
	}
	if v == nil {
		return map[string]any{}, nil // "null": the Vault client's body for a write without data
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, logical.InvalidRequest("failed to parse JSON input: the body must be a JSON object")
	}
	return m, nil
}

func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s at offset %d", syn.Error(), syn.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

// errBodyTooLarge is answered with 413.
type errBodyTooLarge struct{ limit int64 }

func (e errBodyTooLarge) Error() string {
	return fmt.Sprintf("request body larger than %d bytes", e.limit)
}

// operationFor maps the HTTP method (and ?list=true) to Vault's operation.
func operationFor(r *http.Request) (logical.Operation, bool) {
	switch r.Method {
	case http.MethodGet:
		if r.URL.Query().Get("list") == "true" {
			return logical.ListOperation, true
		}
		return logical.ReadOperation, true
	case "LIST":
		return logical.ListOperation, true
	case http.MethodPost, http.MethodPut:
		return logical.UpdateOperation, true
	case http.MethodPatch:
		return logical.PatchOperation, true
	case http.MethodDelete:
		return logical.DeleteOperation, true
	}
	return "", false
}

// decodeStrict decodes a JSON object body into v, refusing unknown fields
// and wrong types with a message naming the field.
func decodeStrict(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return logical.InvalidRequest("request body larger than %d bytes", limit)
		}
		return logical.InvalidRequest("reading request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return logical.InvalidRequest("field %q: expected %s, got a JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return logical.InvalidRequest("unknown field %s", msg)
		}
		return logical.InvalidRequest("failed to parse JSON input: %s", jsonErrorText(err))
	}
	if dec.More() {
		return logical.InvalidRequest("failed to parse JSON input: unexpected data after the JSON object")
	}
	return nil
}
