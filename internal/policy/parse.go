package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
)

// maxErrText bounds how much of the HCL library's own message an error quotes.
const maxErrText = 200

// Parse parses the policy text (HCL or JSON) called name.
//
// Top-level keys are "path" blocks (and "name", ignored, as Vault does).
// Inside a path block the keys are capabilities, the legacy policy
// ("deny", "read", "write", "sudo"), allowed_parameters, denied_parameters,
// required_parameters, min_wrapping_ttl, max_wrapping_ttl and comment. Any
// other key, an unknown capability, a "*" anywhere but at the end of a
// pattern, or "+*" is an error wrapping ErrInvalidPolicy that names the line,
// the path and the key. Parse never panics.
func Parse(name, text string) (p *Policy, err error) {
	n, err := NormalizeName(name)
	if err != nil {
		return nil, err
	}
	defer func() {
		// The HCL library panics on some malformed literals; report those
		// as bad input rather than crash the caller.
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("%w: malformed HCL", ErrInvalidPolicy)
		}
	}()
	file, err := hcl.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidPolicy, clip(err.Error()))
	}
	root, ok := file.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("%w: does not contain a root object", ErrInvalidPolicy)
	}
	p = &Policy{Name: n, Raw: text}
	for _, item := range root.Items {
		if len(item.Keys) == 0 {
			return nil, fmt.Errorf("%w: line %d: expected a path block", ErrInvalidPolicy, line(item))
		}
		key, err := keyText(item.Keys[0])
		if err != nil {
			return nil, err
		}
		switch key {
		case "name":
			// Vault accepts and ignores a top-level name.
		case "path":
			if err := p.addPaths(item.Keys[1:], item.Val, line(item)); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: line %d: unknown top-level key %q (expected \"path\")", ErrInvalidPolicy, line(item), key)
		}
	}
	return p, nil
}

// addPaths adds the path block(s) of one top-level "path" item: labels are
// the keys after "path". JSON writes {"path": {"a": {...}, "b": {...}}},
// which reaches here without a label and an object of blocks.
func (p *Policy) addPaths(labels []*ast.ObjectKey, val ast.Node, ln int) error {
	switch len(labels) {
	case 0:
		obj, ok := val.(*ast.ObjectType)
		if !ok {
			return fmt.Errorf("%w: line %d: path needs a pattern: path \"secret/*\" { ... }", ErrInvalidPolicy, ln)
		}
		for _, sub := range obj.List.Items {
			if len(sub.Keys) == 0 {
				return fmt.Errorf("%w: line %d: path needs a pattern", ErrInvalidPolicy, line(sub))
			}
			if err := p.addPaths(sub.Keys, sub.Val, line(sub)); err != nil {
				return err
			}
		}
		return nil
	case 1:
		pattern, err := keyText(labels[0])
		if err != nil {
			return err
		}
		r, err := parsePathBlock(pattern, val, ln)
		if err != nil {
			return err
		}
		p.Paths = append(p.Paths, r)
		return nil
	default:
		return fmt.Errorf("%w: line %d: path takes exactly one pattern, got %d", ErrInvalidPolicy, ln, len(labels))
	}
}

// parsePathBlock parses the body of one path block.
func parsePathBlock(pattern string, val ast.Node, ln int) (PathRule, error) {
	r := PathRule{Path: strings.TrimPrefix(pattern, "/"), Line: ln}
	fail := func(l int, format string, args ...any) error {
		return fmt.Errorf("%w: line %d: path %q: %s", ErrInvalidPolicy, l, r.Path, fmt.Sprintf(format, args...))
	}
	if msg := checkPattern(r.Path); msg != "" {
		return r, fail(ln, "%s", msg)
	}
	obj, ok := val.(*ast.ObjectType)
	if !ok {
		return r, fail(ln, "expected a block { capabilities = [...] }")
	}
	var caps []string
	seen := make(map[string]bool)
	for _, item := range obj.List.Items {
		il := line(item)
		if il == 0 {
			il = ln
		}
		if len(item.Keys) != 1 {
			return r, fail(il, "expected key = value")
		}
		key, err := keyText(item.Keys[0])
		if err != nil {
			return r, err
		}
		if seen[key] {
			return r, fail(il, "key %q is set more than once", key)
		}
		seen[key] = true
		switch key {
		case "capabilities":
			list, err := stringList(item.Val)
			if err != nil {
				return r, fail(il, "capabilities: %v", err)
			}
			caps = append(caps, list...)
		case "policy":
			s, ok := literalString(item.Val)
			if !ok {
				return r, fail(il, "policy: expected a string")
			}
			legacy, ok := legacyCapabilities(s)
			if !ok {
				return r, fail(il, "invalid policy %q (expected deny, read, write or sudo)", s)
			}
			caps = append(caps, legacy...)
		case "comment":
			if _, ok := literalString(item.Val); !ok {
				return r, fail(il, "comment: expected a string")
			}
		case "allowed_parameters", "denied_parameters":
			m, err := parameterMap(item.Val)
			if err != nil {
				return r, fail(il, "%s: %v", key, err)
			}
			if key == "allowed_parameters" {
				r.AllowedParameters = m
			} else {
				r.DeniedParameters = m
			}
		case "required_parameters":
			list, err := stringList(item.Val)
			if err != nil {
				return r, fail(il, "required_parameters: %v", err)
			}
			for i := range list {
				list[i] = strings.ToLower(list[i])
			}
			r.RequiredParameters = list
		case "min_wrapping_ttl", "max_wrapping_ttl":
			d, err := durationValue(item.Val)
			if err != nil {
				return r, fail(il, "%s: %v", key, err)
			}
			if key == "min_wrapping_ttl" {
				r.MinWrappingTTL = d
			} else {
				r.MaxWrappingTTL = d
			}
		case "cache":
			d, err := cacheBlock(item.Val)
			if err != nil {
				return r, fail(il, "cache: %v", err)
			}
			r.CacheMaxStale = d
		case "control_group", "mfa_methods", "subscribe_event_types":
			return r, fail(il, "%q is not supported", key)
		default:
			return r, fail(il, "unknown key %q", key)
		}
	}
	if r.MaxWrappingTTL > 0 && r.MinWrappingTTL > r.MaxWrappingTTL {
		return r, fail(ln, "max_wrapping_ttl cannot be less than min_wrapping_ttl")
	}
	for _, c := range caps {
		bit, ok := ParseCapability(c)
		if !ok {
			return r, fail(ln, "invalid capability %q", c)
		}
		r.Capabilities |= bit
	}
	if r.Capabilities.Has(CapDeny) {
		r.Capabilities = CapDeny
	}
	if r.CacheMaxStale > 0 && !r.Capabilities.Has(CapRead) {
		return r, fail(ln, `cache: only a rule granting "read" can let agents cache`)
	}
	return r, nil
}

// checkPattern returns what is wrong with a path pattern, or "".
func checkPattern(p string) string {
	switch {
	case p == "":
		return "pattern must not be empty"
	case strings.Contains(p, "+*"):
		return "invalid use of wildcards (\"+*\" is forbidden)"
	case strings.Contains(p, "{{"):
		return "templated policy paths are not supported"
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
		return "glob \"*\" is only allowed as the last character"
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return "pattern must not contain control characters"
		}
	}
	return ""
}

// legacyCapabilities maps a pre-0.9 "policy" value to capabilities.
func legacyCapabilities(s string) ([]string, bool) {
	switch s {
	case "deny":
		return []string{"deny"}, true
	case "read":
		return []string{"read", "list"}, true
	case "write":
		return []string{"create", "read", "update", "delete", "list"}, true
	case "sudo":
		return []string{"create", "read", "update", "delete", "list", "sudo"}, true
	}
	return nil, false
}

// stringList reads a list of strings; a single string is a list of one, as
// the HCL decoder Vault uses accepts.
func stringList(n ast.Node) ([]string, error) {
	if s, ok := literalString(n); ok {
		return []string{s}, nil
	}
	list, ok := n.(*ast.ListType)
	if !ok {
		return nil, fmt.Errorf("expected a list of strings")
	}
	out := make([]string, 0, len(list.List))
	for i, el := range list.List {
		s, ok := literalString(el)
		if !ok {
			return nil, fmt.Errorf("item %d: expected a string", i)
		}
		out = append(out, s)
	}
	return out, nil
}

// parameterMap reads { "name" = [values...] }; parameter names are
// lower-cased as Vault does, values are strings, numbers or booleans.
func parameterMap(n ast.Node) (map[string][]any, error) {
	obj, ok := n.(*ast.ObjectType)
	if !ok {
		return nil, fmt.Errorf("expected an object of parameter = [values]")
	}
	out := make(map[string][]any, len(obj.List.Items))
	for _, item := range obj.List.Items {
		if len(item.Keys) != 1 {
			return nil, fmt.Errorf("line %d: expected parameter = [values]", line(item))
		}
		k, err := keyText(item.Keys[0])
		if err != nil {
			return nil, err
		}
		k = strings.ToLower(k)
		var elems []ast.Node
		if list, ok := item.Val.(*ast.ListType); ok {
			elems = list.List
		} else {
			elems = []ast.Node{item.Val}
		}
		vals := make([]any, 0, len(elems))
		for i, el := range elems {
			lit, ok := el.(*ast.LiteralType)
			if !ok {
				return nil, fmt.Errorf("parameter %q: item %d: expected a string, number or boolean", k, i)
			}
			switch lit.Token.Type {
			case token.STRING, token.HEREDOC, token.NUMBER, token.FLOAT, token.BOOL:
				v, err := tokenValue(lit.Token)
				if err != nil {
					return nil, fmt.Errorf("parameter %q: item %d: %v", k, i, err)
				}
				vals = append(vals, v)
			default:
				return nil, fmt.Errorf("parameter %q: item %d: expected a string, number or boolean", k, i)
			}
		}
		out[k] = append(out[k], vals...)
	}
	return out, nil
}

// durationValue reads a TTL: a number of seconds, or a string of seconds
// or a duration like "90s", "1h", "7d".
// cacheBlock parses `cache { max_stale = "24h" }`: how long edge agents may
// serve what the rule grants past their last sync.
func cacheBlock(n ast.Node) (time.Duration, error) {
	obj, ok := n.(*ast.ObjectType)
	if !ok {
		return 0, fmt.Errorf(`expected a block, as in cache { max_stale = "24h" }`)
	}
	var d time.Duration
	for _, item := range obj.List.Items {
		if len(item.Keys) != 1 {
			return 0, fmt.Errorf("expected key = value")
		}
		key, err := keyText(item.Keys[0])
		if err != nil {
			return 0, err
		}
		if key != "max_stale" {
			return 0, fmt.Errorf("unknown key %q (known: max_stale)", key)
		}
		if d, err = durationValue(item.Val); err != nil {
			return 0, fmt.Errorf("max_stale: %v", err)
		}
		if d <= 0 || d > MaxCacheStale {
			return 0, fmt.Errorf("max_stale %s: must be more than 0 and at most %s", d, MaxCacheStale)
		}
	}
	if d == 0 {
		return 0, fmt.Errorf(`max_stale is required, as in cache { max_stale = "24h" }`)
	}
	return d, nil
}

func durationValue(n ast.Node) (time.Duration, error) {
	lit, ok := n.(*ast.LiteralType)
	if !ok {
		return 0, fmt.Errorf("expected seconds or a duration string")
	}
	var d time.Duration
	switch lit.Token.Type {
	case token.NUMBER:
		v, err := tokenValue(lit.Token)
		if err != nil {
			return 0, err
		}
		secs := v.(int64)
		if secs < 0 || secs > int64(1<<62)/int64(time.Second) {
			return 0, fmt.Errorf("%d seconds is out of range", secs)
		}
		d = time.Duration(secs) * time.Second
	case token.STRING:
		v, err := tokenValue(lit.Token)
		if err != nil {
			return 0, err
		}
		if d, err = parseDuration(strings.TrimSpace(v.(string))); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("expected seconds or a duration string")
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	return d, nil
}

// parseDuration accepts what Vault's parseutil.ParseDurationSecond does:
// bare seconds, Go durations, and a whole number of days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		if secs < 0 || secs > int64(1<<62)/int64(time.Second) {
			return 0, fmt.Errorf("%q is out of range", s)
		}
		return time.Duration(secs) * time.Second, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseInt(days, 10, 64); err == nil && n >= 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use seconds or a value like \"1h\")", s)
	}
	return d, nil
}

// tokenValue is token.Value without its panics (on out-of-range numbers,
// bad escapes or odd heredocs).
func tokenValue(t token.Token) (v any, err error) {
	defer func() {
		if recover() != nil {
			v, err = nil, fmt.Errorf("malformed %s literal", strings.ToLower(t.Type.String()))
		}
	}()
	return t.Value(), nil
}

// literalString returns the value of a string (or heredoc) literal.
func literalString(n ast.Node) (string, bool) {
	lit, ok := n.(*ast.LiteralType)
	if !ok || (lit.Token.Type != token.STRING && lit.Token.Type != token.HEREDOC) {
		return "", false
	}
	v, err := tokenValue(lit.Token)
	if err != nil {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// keyText returns the text of an object key (identifier or quoted string).
func keyText(k *ast.ObjectKey) (string, error) {
	switch k.Token.Type {
	case token.IDENT, token.STRING:
		v, err := tokenValue(k.Token)
		if err != nil {
			return "", fmt.Errorf("%w: line %d: %v", ErrInvalidPolicy, k.Token.Pos.Line, err)
		}
		if s, ok := v.(string); ok {
			return s, nil
		}
	}
	return "", fmt.Errorf("%w: line %d: expected a name or a quoted string", ErrInvalidPolicy, k.Token.Pos.Line)
}

// line returns the line an item starts on (0 if unknown).
func line(item *ast.ObjectItem) int {
	if len(item.Keys) == 0 {
		return item.Val.Pos().Line
	}
	return item.Keys[0].Token.Pos.Line
}

// clip shortens a library message so errors stay readable.
func clip(s string) string {
	if len(s) <= maxErrText {
		return s
	}
	cut := maxErrText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
