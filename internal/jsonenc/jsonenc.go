// Package jsonenc writes JSON without reflection for the types the API
// moves on its hot paths (maps of strings and any, slices, numbers, raw
// JSON), byte for byte as encoding/json writes them. A Strings encoder can
// rewrite every string value on the way, which the audit log uses to HMAC
// secrets while it encodes.
package jsonenc

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendValue appends v as JSON, exactly as encoding/json would write it.
func AppendValue(b []byte, v any) ([]byte, error) { return Strings{}.AppendValue(b, v) }

// Strings is an encoder whose string values (not object keys) go through
// Value: the audit log uses it to replace every string by its HMAC. The
// zero Strings writes strings unchanged.
type Strings struct {
	// Value appends the JSON encoding of string value s; nil means AppendString.
	Value func(b []byte, s string) []byte
}

func (e Strings) str(b []byte, s string) []byte {
	if e.Value == nil {
		return AppendString(b, s)
	}
	return e.Value(b, s)
}

// AppendValue appends v as JSON, with every string value written by e.Value.
// The common types are written directly; anything else goes through
// encoding/json first.
func (e Strings) AppendValue(b []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return e.str(b, t), nil
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
		return e.AppendRaw(b, t)
	case []string:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, s := range t {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.str(b, s)
		}
		return append(b, ']'), nil
	case map[string]string:
		if t == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '{')
		for i, k := range sortedKeys(t) {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, k)
			b = append(b, ':')
			b = e.str(b, t[k])
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
			b = AppendString(b, k)
			b = append(b, ':')
			if b, err = e.AppendValue(b, t[k]); err != nil {
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
			if b, err = e.AppendValue(b, item); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return e.AppendRaw(b, raw)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AppendStrings appends ss as a JSON array of strings.
func AppendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping as encoding/json does
// (including <, > and & for HTML safety, and invalid UTF-8 as U+FFFD).
func AppendString(b []byte, s string) []byte {
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

// AppendRaw appends the JSON value raw, compacted, with every string value
// (not object keys) written by e.Value. Invalid JSON is an error.
func (e Strings) AppendRaw(b []byte, raw []byte) ([]byte, error) {
	if !json.Valid(raw) {
		return nil, &json.UnsupportedValueError{Str: "invalid raw JSON"}
	}
	if e.Value == nil {
		return append(b, raw...), nil
	}
	// raw is valid JSON, so a small scanner suffices: it only needs to
	// tell keys from values and find where each string ends.
	var stack []byte // '{' or '[' per open container
	expectKey := false
	for i := 0; i < len(raw); {
		switch c := raw[i]; c {
		case ' ', '\t', '\n', '\r':
			i++
		case '{', '[':
			stack = append(stack, c)
			expectKey = c == '{'
			b = append(b, c)
			i++
		case '}', ']':
			stack = stack[:len(stack)-1]
			expectKey = false
			b = append(b, c)
			i++
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1] == '{'
			b = append(b, c)
			i++
		case ':':
			expectKey = false
			b = append(b, c)
			i++
		case '"':
			end, escaped := stringEnd(raw, i)
			lit := raw[i:end]
			i = end
			if expectKey {
				b = append(b, lit...)
				continue
			}
			if !escaped {
				b = e.Value(b, string(lit[1:len(lit)-1]))
				continue
			}
			var v string
			if err := json.Unmarshal(lit, &v); err != nil {
				return nil, &json.UnsupportedValueError{Str: "invalid raw JSON string"}
			}
			b = e.Value(b, v)
		default: // a number, true, false or null
			j := i
			for j < len(raw) && !bytes.ContainsRune([]byte(",}] \t\n\r"), rune(raw[j])) {
				j++
			}
			b = append(b, raw[i:j]...)
			i = j
		}
	}
	return b, nil
}

// stringEnd returns the index just past the JSON string starting at
// raw[start] (a quote), and whether it holds escapes.
func stringEnd(raw []byte, start int) (int, bool) {
	escaped := false
	for i := start + 1; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return len(raw), escaped
}
