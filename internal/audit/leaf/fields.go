package leaf

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits of the leaf encoding: a name length is one byte, a field count two.
const (
	// MaxNameLen is the longest field name, in bytes.
	MaxNameLen = 255
	// MaxFields is the largest number of fields in one entry.
	MaxFields = 65535
)

// Field is one committed part of an audit entry.
type Field struct {
	// Name is the top-level key, or "<key>.<member>" for a member of a
	// top-level object.
	Name string
	// Value is the exact JSON text of the value as it appears in the entry
	// line, without surrounding whitespace.
	Value []byte
}

// Fields splits an entry line into its fields, sorted by name (bytewise).
//
// The line must be exactly one JSON object in valid UTF-8 (surrounding
// whitespace, such as the line's newline, is allowed). A top-level member
// whose value is an object contributes one field per member of that object,
// named "<key>.<member>"; any other top-level member is one field named
// "<key>". An empty object contributes no field. Duplicate keys at either
// level, and two fields that end up with the same name ("a.b" next to
// {"a":{"b":…}}), are ErrMalformed, as are names outside 1–255 bytes and
// more than 65535 fields. Values alias line; do not modify line while the
// fields are in use.
func Fields(line []byte) ([]Field, error) {
	if !utf8.Valid(line) {
		return nil, fmt.Errorf("%w: entry line is not valid UTF-8", ErrMalformed)
	}
	// One pass validates the JSON and finds the members of the top-level
	// object and of its object members.
	type span struct{ off, end int }
	var (
		nb     = make([]byte, 0, 512) // all names, converted to one string at the end
		names  = make([]span, 0, 32)
		values = make([][]byte, 0, 32)
		tops   = make([]span, 0, 8)
		keyErr error
	)
	v := validator{b: line}
	v.ws()
	if v.i >= len(line) || line[v.i] != '{' {
		if validJSON(line) {
			return nil, fmt.Errorf("%w: entry line is not a JSON object", ErrMalformed)
		}
		return nil, fmt.Errorf("%w: entry line is not a single valid JSON value", ErrMalformed)
	}
	ok := v.object(0, func(keyLit []byte) bool {
		key := span{off: len(nb)}
		if nb, keyErr = appendKey(nb, keyLit); keyErr != nil {
			return false
		}
		key.end = len(nb)
		tops = append(tops, key)
		if v.b[v.i] != '{' {
			vs := v.i
			if !v.value(1) {
				return false
			}
			names = append(names, key)
			values = append(values, line[vs:v.i])
			return true
		}
		return v.object(1, func(memberLit []byte) bool {
			m := span{off: len(nb)}
			nb = append(nb, nb[key.off:key.end]...)
			nb = append(nb, '.')
			if nb, keyErr = appendKey(nb, memberLit); keyErr != nil {
				return false
			}
			m.end = len(nb)
			vs := v.i
			if !v.value(2) {
				return false
			}
			names = append(names, m)
			values = append(values, line[vs:v.i])
			return true
		})
	})
	if keyErr != nil {
		return nil, keyErr
	}
	if v.ws(); !ok || v.i != len(line) {
		return nil, fmt.Errorf("%w: entry line is not a single valid JSON value (error near byte %d)", ErrMalformed, v.i)
	}
	if len(names) > MaxFields {
		return nil, fmt.Errorf("%w: %d fields, at most %d allowed", ErrMalformed, len(names), MaxFields)
	}
	// Sort indexes, not fields: swapping pointer-free ints is several
	// times cheaper than swapping Field values under the GC write barrier.
	order := make([]int32, len(names))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		return bytes.Compare(nb[names[a].off:names[a].end], nb[names[b].off:names[b].end])
	})
	all := string(nb)
	fields := make([]Field, len(names))
	for i, o := range order {
		n := names[o]
		fields[i] = Field{Name: all[n.off:n.end], Value: values[o]}
	}
	if len(tops) > 1 {
		top := make([]string, len(tops))
		for i, t := range tops {
			top[i] = all[t.off:t.end]
		}
		slices.Sort(top)
		for i := 1; i < len(top); i++ {
			if top[i] == top[i-1] {
				return nil, fmt.Errorf("%w: duplicate top-level key %q", ErrMalformed, top[i])
			}
		}
	}
	for i, f := range fields {
		if len(f.Name) == 0 || len(f.Name) > MaxNameLen {
			return nil, fmt.Errorf("%w: field name %q is %d bytes, must be 1 to %d", ErrMalformed, f.Name, len(f.Name), MaxNameLen)
		}
		if i > 0 && f.Name == fields[i-1].Name {
			return nil, fmt.Errorf("%w: two fields named %q (a duplicate key, or a dotted key that collides with an object member)", ErrMalformed, f.Name)
		}
	}
	return fields, nil
}

// appendKey appends the text of a JSON string literal to dst, resolving
// escapes (RFC 8259). An escaped lone surrogate is ErrMalformed: it has no UTF-8
// form, and decoders disagree on what to do with it.
func appendKey(out, lit []byte) ([]byte, error) {
	if len(lit) < 2 || lit[0] != '"' || lit[len(lit)-1] != '"' {
		return out, fmt.Errorf("%w: object key is not a string", ErrMalformed)
	}
	body := lit[1 : len(lit)-1]
	if !slices.Contains(body, '\\') {
		return append(out, body...), nil
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(body) {
			return out, fmt.Errorf("%w: object key %s: truncated escape", ErrMalformed, lit)
		}
		i++
		switch body[i] {
		case '"', '\\', '/':
			out = append(out, body[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(body[i+1:])
			if !ok {
				return out, fmt.Errorf("%w: object key %s: bad \\u escape", ErrMalformed, lit)
			}
			i += 4
			if utf16.IsSurrogate(r) {
				var r2 rune
				if i+2 < len(body) && body[i+1] == '\\' && body[i+2] == 'u' {
					r2, ok = hex4(body[i+3:])
				} else {
					ok = false
				}
				if ok {
					r = utf16.DecodeRune(r, r2)
				}
				if !ok || r == utf8.RuneError {
					return out, fmt.Errorf("%w: object key %s: lone surrogate escape", ErrMalformed, lit)
				}
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			return out, fmt.Errorf("%w: object key %s: bad escape", ErrMalformed, lit)
		}
	}
	return out, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
