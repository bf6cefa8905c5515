package kv

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// errBadJSON is returned by parseJSONObject for input that is not a JSON
// object; callers wrap it in ErrCorrupt.
var errBadJSON = errors.New("invalid JSON")

// maxJSONDepth bounds nesting like encoding/json does.
const maxJSONDepth = 10000

// parseJSONObject decodes a JSON object into map[string]any with numbers as
// json.Number, exactly as encoding/json with UseNumber would, but without a
// Decoder, its buffers or reflection: stored secrets are decoded on every
// read, so this is the hot path. Strings with escapes are handed to
// encoding/json so that escape handling stays identical.
func parseJSONObject(data []byte) (map[string]any, error) {
	p := jsonParser{s: data}
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return nil, errBadJSON
	}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, errBadJSON
	}
	return v.(map[string]any), nil
}

type jsonParser struct {
	s []byte
	i int
}

func (p *jsonParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errBadJSON
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, errBadJSON
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, errBadJSON
}

func (p *jsonParser) literal(word string) error {
	if !strings.HasPrefix(string(p.s[p.i:min(len(p.s), p.i+len(word))]), word) {
		return errBadJSON
	}
	p.i += len(word)
	return nil
}

func (p *jsonParser) object(depth int) (any, error) {
	p.i++ // '{'
	m := make(map[string]any)
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return m, nil
	}
	for {
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, errBadJSON
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, errBadJSON
		}
		p.i++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		p.space()
		if p.i >= len(p.s) {
			return nil, errBadJSON
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return m, nil
		default:
			return nil, errBadJSON
		}
	}
}

func (p *jsonParser) array(depth int) (any, error) {
	p.i++ // '['
	a := []any{}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return a, nil
	}
	for {
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.space()
		if p.i >= len(p.s) {
			return nil, errBadJSON
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return a, nil
		default:
			return nil, errBadJSON
		}
	}
}

// str reads a string token. Plain strings are sliced directly; strings
// with escapes or non-ASCII bytes go through encoding/json.
func (p *jsonParser) str() (string, error) {
	start := p.i
	p.i++ // opening quote
	simple := true
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			if simple {
				return string(p.s[start+1 : p.i-1]), nil
			}
			var out string
			if err := json.Unmarshal(p.s[start:p.i], &out); err != nil {
				return "", errBadJSON
			}
			return out, nil
		case c == '\\':
			simple = false
			p.i += 2
		case c < 0x20:
			return "", errBadJSON
		case c >= utf8.RuneSelf:
			simple = false
			p.i++
		default:
			p.i++
		}
	}
	return "", errBadJSON
}

// number reads a number token with JSON's grammar and keeps its text.
func (p *jsonParser) number() (any, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.s) && p.s[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, errBadJSON
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, errBadJSON
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, errBadJSON
		}
	}
	return json.Number(p.s[start:p.i]), nil
}
