package httpapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/logical"
)

// appendEnvelope writes Vault's response envelope. It is the hot path of
// every read, so the common value types are written directly instead of
// through reflection; anything else falls back to encoding/json. Object keys
// are sorted, as encoding/json sorts them.
func appendEnvelope(b []byte, requestID string, resp *logical.Response, mountType string) ([]byte, error) {
	b = append(b, `{"request_id":`...)
	b = appendString(b, requestID)
	b = append(b, `,"lease_id":`...)
	b = appendString(b, resp.LeaseID)
	b = append(b, `,"renewable":`...)
	b = strconv.AppendBool(b, resp.Renewable)
	b = append(b, `,"lease_duration":`...)
	b = strconv.AppendInt(b, int64(resp.LeaseDuration), 10)
	b = append(b, `,"data":`...)
	var err error
	if resp.Data == nil {
		b = append(b, "null"...)
	} else if b, err = appendValue(b, resp.Data); err != nil {
		return nil, err
	}
	b = append(b, `,"wrap_info":null,"warnings":`...)
	if resp.Warnings == nil {
		b = append(b, "null"...)
	} else {
		b = appendStrings(b, resp.Warnings)
	}
	b = append(b, `,"auth":`...)
	if resp.Auth == nil {
		b = append(b, "null"...)
	} else {
		auth, err := json.Marshal(resp.Auth)
		if err != nil {
			return nil, err
		}
		b = append(b, auth...)
	}
	b = append(b, `,"mount_type":`...)
	b = appendString(b, mountType)
	return append(b, "}\n"...), nil
}

// appendValue appends v as JSON.
func appendValue(b []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, t), nil
	case bool:
		return strconv.AppendBool(b, t), nil
	case int:
		return strconv.AppendInt(b, int64(t), 10), nil
	case int64:
		return strconv.AppendInt(b, t, 10), nil
	case uint64:
		return strconv.AppendUint(b, t, 10), nil
	case json.Number:
		if t == "" {
			return append(b, '0'), nil
		}
		if !json.Valid([]byte(t)) {
			return nil, &json.UnsupportedValueError{Str: "invalid number " + string(t)}
		}
		return append(b, t...), nil
	case json.RawMessage:
		if t == nil {
			return append(b, "null"...), nil
		}
		if !json.Valid(t) {
			return nil, &json.UnsupportedValueError{Str: "invalid raw JSON"}
		}
		return append(b, t...), nil
	case []string:
		if t == nil {
			return append(b, "null"...), nil
		}
		return appendStrings(b, t), nil
	case map[string]string:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '{')
		for i, k := range sortedKeys(t) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, t[k])
		}
		return append(b, '}'), nil
	case map[string]any:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '{')
		var err error
		for i, k := range sortedKeys(t) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, err = appendValue(b, t[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		var err error
		for i, item := range t {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, item); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, raw...), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does
// (including <, > and & for HTML safety, and invalid UTF-8 as U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
