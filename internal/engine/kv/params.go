package kv

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/logical"
)

// apiError is an error whose text is exactly the message Vault sends for the
// same condition, and which matches kind (a logical sentinel) with errors.Is.
type apiError struct {
	kind error
	msg  string
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

// Vault's messages for the conditions clients and scripts test for.
var (
	errCASMismatch = &apiError{logical.ErrCASMismatch, "check-and-set parameter did not match the current version"}
	errCASRequired = &apiError{logical.ErrInvalidRequest, "check-and-set parameter required for this call"}
	errNoData      = &apiError{logical.ErrInvalidRequest, "no data provided"}
	errNoVersions  = &apiError{logical.ErrInvalidRequest, "no version number provided"}
	errNotFound    = fmt.Errorf("%w: no secret at this path", logical.ErrNotFound)
)

// maxKeyLen bounds a secret path so that every storage key derived from it
// stays well under storage.MaxKeyLen once the mount prefix is added.
const maxKeyLen = 1024

// validateKey checks a secret path taken from the request path.
func validateKey(key string) error {
	if key == "" {
		return logical.InvalidRequest("missing secret path")
	}
	if strings.HasSuffix(key, "/") {
		return logical.InvalidRequest("secret path must not end with \"/\"")
	}
	return validatePath(key)
}

// validatePath checks the parts of a path common to keys and list prefixes
// (a list prefix has had its trailing "/" removed).
func validatePath(p string) error {
	if len(p) > maxKeyLen {
		return logical.InvalidRequest("secret path is %d bytes long, the limit is %d", len(p), maxKeyLen)
	}
	if strings.HasPrefix(p, "/") {
		return logical.InvalidRequest("secret path must not start with \"/\"")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return logical.InvalidRequest("secret path must not contain a NUL byte")
	}
	if strings.Contains(p, "//") {
		return logical.InvalidRequest("secret path must not contain \"//\"")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." || seg == "." {
			return logical.InvalidRequest("secret path must not contain a %q segment", seg)
		}
	}
	return nil
}

// readParam returns a read parameter from the decoded body/query data, or
// from the URL query when httpapi left it there.
func readParam(req *logical.Request, name string) map[string]any {
	if v, ok := req.Data[name]; ok {
		return map[string]any{name: v}
	}
	if vs, ok := req.Query[name]; ok && len(vs) > 0 {
		return map[string]any{name: vs[0]}
	}
	return nil
}

// nonNegativeInt reads an optional integer read parameter that must be >= 0.
func nonNegativeInt(req *logical.Request, name string) (uint64, error) {
	if len(req.Data) == 0 && len(req.Query) == 0 {
		return 0, nil
	}
	m := readParam(req, name)
	if m == nil {
		return 0, nil
	}
	if s, ok := m[name].([]string); ok && len(s) > 0 {
		m[name] = s[0]
	}
	n, _, err := logical.Int(m, name)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, logical.InvalidRequest("field %q: must not be negative", name)
	}
	return uint64(n), nil
}

// parseOptions reads the "options" object of a data write: cas, and the
// api client's "method" hint (accepted and ignored).
func parseOptions(data map[string]any) (cas uint64, hasCAS bool, err error) {
	opts, ok, err := logical.Object(data, "options")
	if err != nil || !ok {
		return 0, false, err
	}
	for k := range opts {
		if k != "cas" && k != "method" {
			return 0, false, logical.InvalidRequest("field \"options\": unknown option %q", k)
		}
	}
	if m, ok := opts["method"]; ok && m != nil {
		if _, isStr := m.(string); !isStr {
			return 0, false, logical.InvalidRequest("field \"options\": option \"method\": expected a string")
		}
	}
	n, ok, err := logical.Int(opts, "cas")
	if err != nil {
		return 0, false, logical.InvalidRequest("field \"options\": %s", strings.TrimPrefix(err.Error(), logical.ErrInvalidRequest.Error()+": "))
	}
	if !ok {
		return 0, false, nil
	}
	if n < 0 {
		return 0, false, logical.InvalidRequest("field \"options\": option \"cas\" must not be negative")
	}
	return uint64(n), true, nil
}

// parseDataObject reads the required "data" object of a data write or patch.
func parseDataObject(data map[string]any) (map[string]any, error) {
	v, ok := data["data"]
	if !ok || v == nil {
		return nil, errNoData
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, logical.InvalidRequest("field \"data\": expected an object, got %s", logical.TypeName(v))
	}
	return obj, nil
}

// parseVersions reads the "versions" field of delete/undelete/destroy: a
// list of integers, one integer, or a comma-separated string, as Vault
// accepts. Each must be >= 1.
func parseVersions(data map[string]any) ([]uint64, error) {
	v, ok := data["versions"]
	if !ok || v == nil {
		return nil, errNoVersions
	}
	var items []any
	switch t := v.(type) {
	case []any:
		items = t
	case []int:
		for _, n := range t {
			items = append(items, n)
		}
	case []string:
		for _, s := range t {
			items = append(items, s)
		}
	case string:
		for s := range strings.SplitSeq(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	case json.Number, float64, int, int64:
		items = []any{t}
	default:
		return nil, logical.InvalidRequest("field \"versions\": expected a list of integers, got %s", logical.TypeName(v))
	}
	if len(items) == 0 {
		return nil, errNoVersions
	}
	out := make([]uint64, 0, len(items))
	for i, item := range items {
		n, _, err := logical.Int(map[string]any{"v": item}, "v")
		if err != nil || n < 1 {
			return nil, logical.InvalidRequest("field \"versions\": item %d: expected a positive integer", i)
		}
		out = append(out, uint64(n))
	}
	return out, nil
}

// parseMaxVersions reads max_versions: 0 <= n <= 2^32-1.
func parseMaxVersions(data map[string]any) (uint32, bool, error) {
	n, ok, err := logical.Int(data, "max_versions")
	if err != nil || !ok {
		return 0, ok, err
	}
	if n < 0 || n > math.MaxUint32 {
		return 0, true, logical.InvalidRequest("field \"max_versions\": must be between 0 and %d", uint32(math.MaxUint32))
	}
	return uint32(n), true, nil
}

// parseSignedDuration reads the mount config's delete_version_after, where
// a negative value means "disabled" as in Vault.
func parseSignedDuration(data map[string]any, name string) (time.Duration, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return 0, false, nil
	}
	neg := false
	switch t := v.(type) {
	case string:
		if s := strings.TrimSpace(t); strings.HasPrefix(s, "-") {
			neg, v = true, s[1:]
		}
	case json.Number:
		if s := t.String(); strings.HasPrefix(s, "-") {
			neg, v = true, json.Number(s[1:])
		}
	}
	if s, isStr := v.(string); neg && isStr && strings.TrimSpace(s) == "" {
		return 0, true, logical.InvalidRequest("field %q: expected seconds or a duration like \"1h\", got \"-\"", name)
	}
	d, ok, err := logical.Duration(map[string]any{name: v}, name)
	if err != nil || !ok {
		return 0, ok, err
	}
	if neg {
		d = -d
	}
	return d, true, nil
}

// Vault's limits on custom_metadata.
const (
	maxCustomKeys     = 64
	maxCustomKeyLen   = 128
	maxCustomValueLen = 512
	customErrPrefix   = "custom_metadata validation failed"
)

// parseCustom reads custom_metadata. With patch set, a null value means
// "remove this key" and is returned in del. Strings and numbers are
// accepted as values (Vault converts numbers too).
func parseCustom(v any, patch bool) (set map[string]string, del []string, err error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, nil, logical.InvalidRequest("field \"custom_metadata\": expected an object of strings, got %s", logical.TypeName(v))
	}
	set = make(map[string]string, len(obj))
	for k, item := range obj {
		switch t := item.(type) {
		case string:
			set[k] = t
		case json.Number:
			set[k] = t.String()
		case float64:
			set[k] = strconv.FormatFloat(t, 'f', -1, 64)
		case nil:
			if patch {
				del = append(del, k)
				continue
			}
			return nil, nil, logical.InvalidRequest("field \"custom_metadata\": key %q: expected a string, got null", k)
		default:
			return nil, nil, logical.InvalidRequest("field \"custom_metadata\": key %q: expected a string, got %s", k, logical.TypeName(item))
		}
	}
	return set, del, nil
}

// validateCustom applies Vault's custom_metadata limits and reports every
// problem found, in key order.
func validateCustom(m map[string]string) error {
	if len(m) > maxCustomKeys {
		return logical.InvalidRequest("%s: payload must contain at most %d keys, provided %d", customErrPrefix, maxCustomKeys, len(m))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var problems []string
	for _, k := range keys {
		v := m[k]
		if n := len(k); n == 0 || n > maxCustomKeyLen {
			problems = append(problems, fmt.Sprintf("length of key %q is %d but must be 0 < len(key) <= %d", k, n, maxCustomKeyLen))
		}
		if n := len(v); n == 0 || n > maxCustomValueLen {
			problems = append(problems, fmt.Sprintf("length of value for key %q is %d but must be 0 < len(value) <= %d", k, n, maxCustomValueLen))
		}
		if !printable(k) {
			problems = append(problems, fmt.Sprintf("key %q contains unprintable characters", k))
		}
		if !printable(v) {
			problems = append(problems, fmt.Sprintf("value for key %q contains unprintable characters", k))
		}
	}
	if len(problems) > 0 {
		return logical.InvalidRequest("%s: %s", customErrPrefix, strings.Join(problems, "; "))
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}
