package policy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/edgevault/edgevault/internal/logical"
)

// CheckParameters applies the parameter constraints of the rule deciding
// path to a request's data, as Vault does for read, create, update and patch
// requests (callers skip it for list and delete):
//
//   - every required parameter must be present;
//   - a request with no data passes;
//   - denied_parameters "*" refuses any data; a parameter listed in
//     denied_parameters is refused when its value is in the list (an empty
//     list refuses every value);
//   - when allowed_parameters is set, each parameter must be listed (or "*"
//     be listed) and its value be in the list (an empty list allows any value).
//
// String values in the lists may start or end with "*" to match a suffix or
// prefix. Parameter names are compared case-insensitively. The error wraps
// logical.ErrPermissionDenied and names the parameter, never its value. The
// root ACL passes everything; a path no rule allows is refused.
func (a *ACL) CheckParameters(path string, data map[string]any) error {
	if a.root {
		return nil
	}
	r := a.match(path, false)
	if r == nil || r.perms.Capabilities == 0 || r.perms.Capabilities.Has(CapDeny) {
		return fmt.Errorf("%w: no policy allows %q", logical.ErrPermissionDenied, path)
	}
	p := &r.perms
	for _, req := range p.RequiredParameters {
		if !hasFold(data, req) {
			return fmt.Errorf("%w: parameter %q is required on %q", logical.ErrPermissionDenied, req, r.path)
		}
	}
	if len(data) == 0 {
		return nil
	}
	if len(p.DeniedParameters) > 0 {
		if _, all := p.DeniedParameters["*"]; all {
			return fmt.Errorf("%w: no parameters are allowed on %q", logical.ErrPermissionDenied, r.path)
		}
		for name, v := range data {
			if list, ok := p.DeniedParameters[strings.ToLower(name)]; ok && valueInList(v, list) {
				return fmt.Errorf("%w: parameter %q: value denied on %q", logical.ErrPermissionDenied, name, r.path)
			}
		}
	}
	if len(p.AllowedParameters) == 0 {
		return nil
	}
	_, allowAll := p.AllowedParameters["*"]
	if allowAll && len(p.AllowedParameters) == 1 {
		return nil
	}
	for name, v := range data {
		list, ok := p.AllowedParameters[strings.ToLower(name)]
		if !ok && !allowAll {
			return fmt.Errorf("%w: parameter %q is not allowed on %q", logical.ErrPermissionDenied, name, r.path)
		}
		if ok && !valueInList(v, list) {
			return fmt.Errorf("%w: parameter %q: value not allowed on %q", logical.ErrPermissionDenied, name, r.path)
		}
	}
	return nil
}

func hasFold(data map[string]any, name string) bool {
	if _, ok := data[name]; ok {
		return true
	}
	for k := range data {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// valueInList reports whether v is one of list; an empty list holds every value.
func valueInList(v any, list []any) bool {
	if len(list) == 0 {
		return true
	}
	for _, el := range list {
		if valueEqual(el, v) {
			return true
		}
	}
	return false
}

// valueEqual compares a policy value (string, int64, float64, bool) with a
// request value (decoded JSON: string, json.Number, bool, ... or a query
// string). Strings match with Vault's leading/trailing "*" globs; numbers
// compare by value; anything else must be deeply equal.
func valueEqual(el, v any) bool {
	if el == nil || v == nil {
		return el == v
	}
	if es, ok := el.(string); ok {
		vs, ok := v.(string)
		return ok && globMatch(es, vs)
	}
	if ef, ok := number(el); ok {
		vf, ok := number(v)
		return ok && ef == vf
	}
	return reflect.DeepEqual(el, v)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := strconv.ParseFloat(n.String(), 64)
		return f, err == nil
	}
	return 0, false
}

// globMatch is Vault's GlobbedStringsMatch: "*x*" contains, "*x" suffix,
// "x*" prefix, otherwise (including a lone "*") equal.
func globMatch(pattern, s string) bool {
	l := len(pattern)
	switch {
	case l < 2:
		return pattern == s
	case pattern[0] == '*' && pattern[l-1] == '*':
		return strings.Contains(s, pattern[1:l-1])
	case pattern[0] == '*':
		return strings.HasSuffix(s, pattern[1:])
	case pattern[l-1] == '*':
		return strings.HasPrefix(s, pattern[:l-1])
	}
	return pattern == s
}
