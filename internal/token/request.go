package token

import (
	"strings"
	"time"
	"unicode"

	"github.com/edgevault/edgevault/internal/logical"
)

// Limits on create requests, beyond what Vault checks, so that one request
// cannot store an unbounded entry.
const (
	maxPolicies      = 256
	maxPolicyNameLen = 256
	maxDisplayName   = 256
	maxMetaPairs     = 256
	maxMetaLen       = 4096
	maxCustomIDLen   = 256
)

// createRequest is a decoded, validated auth/token/create body.
type createRequest struct {
	ID              string
	Policies        []string // as given, trimmed and lower-cased; nil: inherit
	Meta            map[string]string
	NoParent        bool
	NoDefaultPolicy bool
	Renewable       bool
	TTL             time.Duration
	ExplicitMaxTTL  time.Duration
	Period          time.Duration
	DisplayName     string // final form: "token" or "token-<sanitised name>"
	NumUses         int64
}

// sanitiseDisplayName replaces each run of characters other than ASCII
// letters, digits and '-' with one '-', and drops a trailing '-', as Vault does.
func sanitiseDisplayName(s string) string {
	var b strings.Builder
	inRun := false
	for _, c := range s {
		if c == '-' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') {
			b.WriteRune(c)
			inRun = false
			continue
		}
		if !inRun {
			b.WriteByte('-')
			inRun = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// parseCreateRequest decodes the body of auth/token/create. Every error is a
// logical.ErrInvalidRequest naming the field.
func parseCreateRequest(data map[string]any) (createRequest, error) {
	r := createRequest{Renewable: true, DisplayName: "token"}
	if err := logical.CheckFields(data,
		"id", "policies", "meta", "no_parent", "no_default_policy", "renewable",
		"ttl", "lease", "explicit_max_ttl", "display_name", "num_uses", "period",
		"type", "entity_alias"); err != nil {
		return r, err
	}
	var err error
	if r.ID, _, err = logical.String(data, "id"); err != nil {
		return r, err
	}
	if r.ID != "" {
		if len(r.ID) > maxCustomIDLen {
			return r, logical.InvalidRequest("field \"id\": longer than %d bytes", maxCustomIDLen)
		}
		if strings.Contains(r.ID, ".") {
			return r, logical.InvalidRequest("field \"id\": a token id can not contain a '.' character")
		}
		if strings.IndexFunc(r.ID, func(c rune) bool { return unicode.IsSpace(c) || !unicode.IsPrint(c) }) >= 0 {
			return r, logical.InvalidRequest("field \"id\": must not contain spaces or control characters")
		}
	}
	pols, _, err := logical.Strings(data, "policies")
	if err != nil {
		return r, err
	}
	if len(pols) > maxPolicies {
		return r, logical.InvalidRequest("field \"policies\": more than %d policies", maxPolicies)
	}
	for _, p := range pols {
		if len(p) > maxPolicyNameLen {
			return r, logical.InvalidRequest("field \"policies\": policy name longer than %d bytes", maxPolicyNameLen)
		}
		if strings.IndexFunc(p, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
			return r, logical.InvalidRequest("field \"policies\": policy name with a control character")
		}
		if p = strings.ToLower(p); p != "" {
			r.Policies = append(r.Policies, p)
		}
	}
	if r.Meta, _, err = logical.StringMap(data, "meta"); err != nil {
		return r, err
	}
	if len(r.Meta) > maxMetaPairs {
		return r, logical.InvalidRequest("field \"meta\": more than %d keys", maxMetaPairs)
	}
	for k, v := range r.Meta {
		if len(k) > maxMetaLen || len(v) > maxMetaLen {
			return r, logical.InvalidRequest("field \"meta\": key or value longer than %d bytes", maxMetaLen)
		}
	}
	if r.NoParent, _, err = logical.Bool(data, "no_parent"); err != nil {
		return r, err
	}
	if r.NoDefaultPolicy, _, err = logical.Bool(data, "no_default_policy"); err != nil {
		return r, err
	}
	if b, ok, err := logical.Bool(data, "renewable"); err != nil {
		return r, err
	} else if ok {
		r.Renewable = b
	}
	// "lease" is Vault's deprecated name for ttl; ttl wins when both are set.
	if r.TTL, _, err = logical.Duration(data, "lease"); err != nil {
		return r, err
	}
	if ttl, ok, err := logical.Duration(data, "ttl"); err != nil {
		return r, err
	} else if ok && ttl > 0 {
		r.TTL = ttl
	}
	if r.ExplicitMaxTTL, _, err = logical.Duration(data, "explicit_max_ttl"); err != nil {
		return r, err
	}
	if r.Period, _, err = logical.Duration(data, "period"); err != nil {
		return r, err
	}
	name, _, err := logical.String(data, "display_name")
	if err != nil {
		return r, err
	}
	if len(name) > maxDisplayName {
		return r, logical.InvalidRequest("field \"display_name\": longer than %d bytes", maxDisplayName)
	}
	if name != "" {
		r.DisplayName = sanitiseDisplayName("token-" + name)
	}
	if r.NumUses, _, err = logical.Int(data, "num_uses"); err != nil {
		return r, err
	}
	if r.NumUses < 0 {
		return r, logical.InvalidRequest("field \"num_uses\": must not be negative")
	}
	typ, _, err := logical.String(data, "type")
	if err != nil {
		return r, err
	}
	switch typ {
	case "", "service", "default", "default-service":
	default:
		return r, logical.InvalidRequest("field \"type\": only service tokens are supported, got %q", clip(typ))
	}
	alias, _, err := logical.String(data, "entity_alias")
	if err != nil {
		return r, err
	}
	if alias != "" {
		return r, logical.InvalidRequest("field \"entity_alias\": entity aliases are not supported")
	}
	return r, nil
}

// clip shortens user input echoed in an error message.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
