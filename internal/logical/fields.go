package logical

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Field readers for Request.Data. httpapi decodes JSON bodies with
// UseNumber, so numbers arrive as json.Number; query parameters arrive as
// strings. Each reader accepts what Vault's own field parser accepts and
// returns an ErrInvalidRequest naming the field otherwise. The boolean result
// says whether the field was present.

// CheckFields returns an error naming the first key of data that is not in allowed.
func CheckFields(data map[string]any, allowed ...string) error {
	var unknown []string
	for k := range data {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return InvalidRequest("unknown field %q", unknown[0])
	}
	return nil
}

// String reads a string field.
func String(data map[string]any, name string) (string, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return "", false, nil
	}
	if t, ok := v.(string); ok {
		return t, true, nil
	}
	return "", true, InvalidRequest("field %q: expected a string, got %s", name, TypeName(v))
}

// Int reads an integer field given as a JSON number or a decimal string.
func Int(data map[string]any, name string) (int64, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return 0, false, nil
	}
	var s string
	switch t := v.(type) {
	case json.Number:
		s = t.String()
	case string:
		s = t
	case float64:
		if t != math.Trunc(t) {
			return 0, true, InvalidRequest("field %q: expected an integer, got %v", name, t)
		}
		return int64(t), true, nil
	case int:
		return int64(t), true, nil
	case int64:
		return t, true, nil
	default:
		return 0, true, InvalidRequest("field %q: expected an integer, got %s", name, TypeName(v))
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, true, InvalidRequest("field %q: expected an integer, got %q", name, s)
	}
	return n, true, nil
}

// Bool reads a boolean field given as a JSON boolean or a string ("true", "1").
func Bool(data map[string]any, name string) (bool, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return false, false, nil
	}
	switch t := v.(type) {
	case bool:
		return t, true, nil
	case string:
		b, err := strconv.ParseBool(t)
		if err != nil {
			return false, true, InvalidRequest("field %q: expected a boolean, got %q", name, t)
		}
		return b, true, nil
	case json.Number:
		n, err := t.Int64()
		if err != nil || (n != 0 && n != 1) {
			return false, true, InvalidRequest("field %q: expected a boolean, got %s", name, t)
		}
		return n == 1, true, nil
	}
	return false, true, InvalidRequest("field %q: expected a boolean, got %s", name, TypeName(v))
}

// Duration reads a duration given as seconds (number or numeric string) or as
// a Go/Vault duration string ("90s", "1h30m", "7d" is not accepted by Vault
// either). Negative durations are refused.
func Duration(data map[string]any, name string) (time.Duration, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return 0, false, nil
	}
	var d time.Duration
	switch t := v.(type) {
	case json.Number:
		n, err := t.Int64()
		if err != nil {
			return 0, true, InvalidRequest("field %q: expected seconds or a duration like \"1h\", got %s", name, t)
		}
		d = time.Duration(n) * time.Second
	case string:
		s := strings.TrimSpace(t)
		if s == "" {
			return 0, true, nil
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			d = time.Duration(n) * time.Second
		} else {
			pd, err := time.ParseDuration(s)
			if err != nil {
				return 0, true, InvalidRequest("field %q: expected seconds or a duration like \"1h\", got %q", name, s)
			}
			d = pd
		}
	case float64:
		d = time.Duration(t) * time.Second
	case int:
		d = time.Duration(t) * time.Second
	default:
		return 0, true, InvalidRequest("field %q: expected seconds or a duration like \"1h\", got %s", name, TypeName(v))
	}
	if d < 0 {
		return 0, true, InvalidRequest("field %q: must not be negative", name)
	}
	return d, true, nil
}

// Strings reads a list of strings given as a JSON array or a comma-separated
// string. Empty items are dropped and surrounding spaces trimmed.
func Strings(data map[string]any, name string) ([]string, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return nil, false, nil
	}
	var raw []string
	switch t := v.(type) {
	case string:
		raw = strings.Split(t, ",")
	case []string:
		raw = t
	case []any:
		for i, item := range t {
			s, ok := item.(string)
			if !ok {
				return nil, true, InvalidRequest("field %q: item %d: expected a string, got %s", name, i, TypeName(item))
			}
			raw = append(raw, s)
		}
	default:
		return nil, true, InvalidRequest("field %q: expected a list of strings, got %s", name, TypeName(v))
	}
	out := make([]string, 0, len(raw))
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, true, nil
}

// StringMap reads an object whose values are all strings.
func StringMap(data map[string]any, name string) (map[string]string, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return nil, false, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, true, InvalidRequest("field %q: expected an object of strings, got %s", name, TypeName(v))
	}
	out := make(map[string]string, len(m))
	for k, item := range m {
		s, ok := item.(string)
		if !ok {
			return nil, true, InvalidRequest("field %q: key %q: expected a string, got %s", name, k, TypeName(item))
		}
		out[k] = s
	}
	return out, true, nil
}

// Object reads a JSON object field.
func Object(data map[string]any, name string) (map[string]any, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return nil, false, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, true, InvalidRequest("field %q: expected an object, got %s", name, TypeName(v))
	}
	return m, true, nil
}

// TypeName names the JSON kind of a decoded value ("a string", "a list"…), for
// error messages.
func TypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number, float64, int, int64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
